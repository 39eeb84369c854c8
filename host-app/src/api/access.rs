//! Who may use the panel: the accounts and sessions database (the state directory's
//! SQLite file, or the PostgreSQL history's database, which every host instance on it
//! shares), the web auth service built on it, its audit events routed into the host's
//! audit log, and the first-run setup token.

use std::path::Path;
use std::sync::Arc;

use web::{Auth, AuthConfig, AuthEvent, AuthEventKind, AuthStore, SessionConfig};

use super::config::ApiConfig;
use super::postgres_accounts::PostgresAuthStore;
use crate::history::{
    AuditEntry, CommandOutcome, HistoryBackend, HistoryConfig, HistoryStore, MetricKey,
};

/// Paths open without login besides web's login and setup routes: the panel's
/// embedded static assets and its login and setup pages.
pub const PUBLIC_PATHS: &[&str] = &["/static/*", "/login", "/setup"];

/// Opens the accounts beside the history: with a PostgreSQL history, tables in its
/// database (created if absent); otherwise the SQLite file in `state_dir` (created, mode
/// 0600). Blocking.
pub fn open_store(state_dir: &Path, history: &HistoryConfig) -> Result<Arc<dyn AuthStore>, String> {
    let local = ApiConfig::auth_db(state_dir);
    match &history.backend {
        HistoryBackend::Postgres(pg) => {
            let options = pg.options().map_err(|e| e.to_string())?;
            let store = PostgresAuthStore::open(&options).map_err(|e| e.to_string())?;
            if local.exists() {
                take_over_local_accounts(&local, &store)?;
            }
            Ok(Arc::new(store))
        }
        HistoryBackend::Sqlite(_) => Ok(Arc::new(web::state::open_store(&local)?)),
    }
}

/// A host moved from a SQLite to a PostgreSQL history: the accounts of its state
/// directory's file (and their API tokens) are copied into PostgreSQL when it has none
/// yet, so its admins keep their logins; after that the file is no longer used.
fn take_over_local_accounts(local: &Path, to: &PostgresAuthStore) -> Result<(), String> {
    let from = web::SqliteStore::open(local).map_err(|e| format!("{}: {e}", local.display()))?;
    let copied = web::store::copy_accounts(&from, to).map_err(|e| e.to_string())?;
    if copied > 0 {
        tracing::info!(
            file = %local.display(),
            accounts = copied,
            "the panel's accounts copied into PostgreSQL, where they live from now on"
        );
    } else {
        tracing::warn!(
            file = %local.display(),
            "the panel's accounts are in PostgreSQL with the history; this file's are not used"
        );
    }
    Ok(())
}

/// The auth settings `[api]` asks for.
pub fn auth_config(config: &ApiConfig) -> AuthConfig {
    AuthConfig {
        session: SessionConfig {
            idle_timeout: config.idle_timeout(),
            absolute_lifetime: config.session_lifetime(),
            https: config.https,
        },
        allowed_origins: config.public_origin().into_iter().collect(),
        public_paths: PUBLIC_PATHS.iter().map(|p| (*p).to_owned()).collect(),
        ..AuthConfig::default()
    }
}

/// The auth service on the accounts [`open_store`] opens, its audit events also appended
/// to the host's audit log (`audit`), when given, by a thread of their own. Blocking.
pub fn build(
    config: &ApiConfig,
    state_dir: &Path,
    history: &HistoryConfig,
    audit: Option<Arc<dyn HistoryStore>>,
) -> Result<Auth, String> {
    let store = open_store(state_dir, history)?;
    let mut builder = Auth::builder(store).config(auth_config(config));
    if let Some(history) = audit {
        builder = builder.audit_hook(Arc::new(forward_to(history)?));
    }
    builder.build().map_err(|e| e.to_string())
}

/// Account events waiting for the audit log; beyond this many, new ones are dropped
/// (and said so in the log) rather than hold up logins.
const AUDIT_QUEUE: usize = 1024;

/// A hook handing account events, in order, to a thread that appends them to the host's
/// audit log: a login never waits for a history commit in progress.
fn forward_to(history: Arc<dyn HistoryStore>) -> Result<impl Fn(&AuthEvent) + Send + Sync, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<AuditEntry>(AUDIT_QUEUE);
    std::thread::Builder::new()
        .name("auth-audit".into())
        .spawn(move || {
            // Ends when the auth service (the sender) is dropped.
            for entry in rx {
                if let Err(e) = history.audit_append(&entry) {
                    tracing::error!(error = %e, action = %entry.metric.name, "account event not in the audit log");
                }
            }
        })
        .map_err(|e| format!("audit thread: {e}"))?;
    let tx = std::sync::Mutex::new(tx);
    Ok(move |event: &AuthEvent| {
        let sent = tx
            .lock()
            .map_err(|_| ())
            .and_then(|tx| tx.try_send(audit_entry(event)).map_err(|_| ()));
        if sent.is_err() {
            tracing::error!(kind = %event.kind, "audit queue full: account event not in the audit log");
        }
    })
}

/// An account event as a row of the host's audit log: no node, the event's kind as the
/// metric name, the client's address as the value.
pub fn audit_entry(event: &AuthEvent) -> AuditEntry {
    use AuthEventKind as K;
    let outcome = match event.kind {
        K::LoginFailed
        | K::LockedOut
        | K::SetupRefused
        | K::CsrfRefused
        | K::OriginRefused
        | K::Forbidden => CommandOutcome::Rejected,
        _ => CommandOutcome::Done,
    };
    AuditEntry {
        ts: u64::try_from(event.at_ms).unwrap_or(0),
        user: event.username.clone().unwrap_or_default(),
        metric: MetricKey::node("", "", event.kind.as_str()),
        value: serde_json::json!({ "addr": event.addr }).to_string(),
        outcome,
        detail: Some(event.detail.clone()),
    }
}

pub use web::state::{SETUP_TOKEN_FILE, begin_setup, ensure_state_dir};

/// The panel page that completes setup; the logged link opens it with `?token=`.
pub const SETUP_PAGE: &str = "/setup";
