//! A panel's state directory: created owner-only, the accounts database in it (mode
//! 0600: it holds password hashes), the first-run setup token file, and the periodic
//! purge of expired sessions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::secret::Secret;
use crate::sqlite::SqliteStore;
use crate::store::StoreError;

/// The accounts and sessions database in a state directory.
pub const AUTH_DB: &str = "auth.db";

/// The setup token's file in the state directory.
pub const SETUP_TOKEN_FILE: &str = "setup-token";

/// Creates the state directory (mode 0700: it holds the accounts and keys) if absent.
pub fn ensure_state_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens (creating, mode 0600) the accounts database at `path`. SQLite gives its WAL
/// and shared-memory files the same mode.
pub fn open_store(path: &Path) -> Result<SqliteStore, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    SqliteStore::open(path).map_err(|e: StoreError| format!("{}: {e}", path.display()))
}

/// Before the first admin exists: a fresh one-time setup token, written (mode 0600) to
/// the state directory's token file; `None` once an admin exists.
pub fn begin_setup(auth: &Auth, state_dir: &Path) -> Result<Option<(Secret, PathBuf)>, String> {
    let path = state_dir.join(SETUP_TOKEN_FILE);
    match auth.begin_setup(&path) {
        Ok(token) => Ok(token.map(|t| (t, path))),
        Err(e) => Err(e.to_string()),
    }
}

/// How often expired sessions and old account events are deleted from the accounts
/// database.
const PURGE_PERIOD: Duration = Duration::from_secs(10 * 60);
/// How long account events (logins, failed logins, account changes) are kept, and how
/// many at most, so failed logins from anywhere cannot fill a gateway's disk: both panels'
/// `account_audit_retention_days` and `account_audit_max_rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountAuditRetention {
    pub keep: Duration,
    pub max_rows: u64,
}

impl AccountAuditRetention {
    pub const DEFAULT_DAYS: u64 = 90;
    pub const DEFAULT_MAX_ROWS: u64 = 100_000;

    /// From the keys as configured (checked by [`check_account_audit_keys`]).
    pub fn from_keys(retention_days: u64, max_rows: u64) -> AccountAuditRetention {
        AccountAuditRetention {
            keep: Duration::from_secs(retention_days.saturating_mul(24 * 3600)),
            max_rows,
        }
    }
}

impl Default for AccountAuditRetention {
    fn default() -> Self {
        AccountAuditRetention::from_keys(Self::DEFAULT_DAYS, Self::DEFAULT_MAX_ROWS)
    }
}

/// The checks both panels make of `account_audit_retention_days` and
/// `account_audit_max_rows` under the table `table` (`api`, `ui`).
pub fn check_account_audit_keys(
    table: &str,
    retention_days: u64,
    max_rows: u64,
    problems: &mut infra::Problems,
) {
    if !(1..=36_500).contains(&retention_days) {
        problems.push(
            format!("{table}.account_audit_retention_days"),
            "must be 1 to 36500 days",
        );
    }
    if !(1_000..=10_000_000).contains(&max_rows) {
        problems.push(
            format!("{table}.account_audit_max_rows"),
            "must be 1000 to 10000000",
        );
    }
}

/// Deletes expired sessions and account events past `retention` at once and then now and
/// then until `shutdown`, so the tables stay bounded.
pub async fn purge_expired(
    auth: Auth,
    retention: AccountAuditRetention,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(PURGE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = auth.blocking(|a| a.purge_expired_sessions()).await {
                    tracing::warn!(error = %e, "expired sessions not purged");
                }
                let purged = auth
                    .blocking(move |a| a.purge_audit(retention.keep, retention.max_rows))
                    .await;
                if let Err(e) = purged {
                    tracing::warn!(error = %e, "old account events not purged");
                }
            }
        }
    }
}

/// An address as a browser would type it (`localhost` for every interface).
pub fn shown_addr(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// The origin a panel's `public_url` names: `scheme://authority` of an http(s) URL with
/// no path beyond `/`; `None` for anything else.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

/// The checks both panels make of their shared keys (`public_url`, `idle_timeout_s`,
/// `session_lifetime_s`) under the table `table` (`api`, `ui`), each problem by its key.
pub fn check_session_keys(
    table: &str,
    public_url: Option<&str>,
    idle_timeout_s: u64,
    session_lifetime_s: u64,
    problems: &mut infra::Problems,
) {
    if let Some(url) = public_url
        && origin_of(url).is_none()
    {
        problems.push(
            format!("{table}.public_url"),
            format!("{url:?} must be http(s)://HOST[:PORT] with no path"),
        );
    }
    if !(60..=7 * 24 * 3600).contains(&idle_timeout_s) {
        problems.push(
            format!("{table}.idle_timeout_s"),
            "must be 60 to 604800 seconds",
        );
    }
    if !(60..=30 * 24 * 3600).contains(&session_lifetime_s) {
        problems.push(
            format!("{table}.session_lifetime_s"),
            "must be 60 to 2592000 seconds",
        );
    } else if session_lifetime_s < idle_timeout_s {
        problems.push(
            format!("{table}.session_lifetime_s"),
            format!("must be at least {table}.idle_timeout_s"),
        );
    }
}
