//! The authentication service's handle, [`Auth`]: cheap to clone, holding
//! storage, the clock, the password hasher, the throttle and the audit hook;
//! its configuration, the resolved [`Caller`] and the error type. Its
//! operations live with their concern: login and sessions in
//! [`session`](crate::session), first-run setup in [`setup`](crate::setup),
//! API tokens in [`api_token`](crate::api_token), accounts in
//! [`users`](crate::users).
//!
//! Every method here may block (argon2, SQLite); async code calls them
//! through [`Auth::blocking`], which runs them on tokio's blocking pool.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::account::{AccountError, HashParams, PasswordHasher, Role};
use crate::api_token::Scope;
use crate::audit::{AuditHook, AuthEvent, AuthEventKind};
use crate::clock::{Clock, SystemClock, duration_ms};
use crate::secret::Secret;
use crate::session::SessionConfig;
use crate::setup::PendingSetup;
use crate::store::{AuthStore, StoreError, UserRecord};
use crate::throttle::{Throttle, ThrottleConfig};
use crate::token;

/// Everything an application configures.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub session: SessionConfig,
    pub throttle: ThrottleConfig,
    pub hash: HashParams,
    /// Origins, besides the request's own `Host`, allowed to send
    /// state-changing requests (e.g. `https://panel.example` behind a proxy).
    pub allowed_origins: Vec<String>,
    /// Paths open without login: exact paths (`/`, `/login.html`), or
    /// prefixes written with a trailing `*` (`/static/*`). The login and
    /// setup routes are always public.
    pub public_paths: Vec<String>,
    /// Most password hashes computed at once by the HTTP routes; each takes
    /// `hash.m_kib` of memory, so a burst of logins cannot exhaust a small
    /// gateway.
    pub max_concurrent_hashes: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session: SessionConfig::default(),
            throttle: ThrottleConfig::default(),
            hash: HashParams::default(),
            allowed_origins: Vec::new(),
            public_paths: Vec::new(),
            max_concurrent_hashes: 2,
        }
    }
}

/// Who is calling, resolved from the session cookie or the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub user: String,
    pub role: Role,
    pub via: Via,
}

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session; pages embed the CSRF token in forms and requests.
    Session { csrf_token: Secret },
    /// An API token with its scope.
    ApiToken { id: i64, scope: Scope },
}

impl Caller {
    /// True when the caller's role is at least `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.role >= role
    }

    /// False for a read-only API token.
    pub fn may_write(&self) -> bool {
        !matches!(
            self.via,
            Via::ApiToken {
                scope: Scope::Read,
                ..
            }
        )
    }
}

/// An account as shown to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

impl From<&UserRecord> for UserInfo {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            role: u.role,
        }
    }
}

/// Why an authentication operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("wrong username or password")]
    BadCredentials,
    #[error("too many failed logins; retry in {} s", retry_after.as_secs().max(1))]
    Throttled { retry_after: Duration },
    #[error("setup is closed: an admin account exists")]
    SetupClosed,
    #[error("setup token is wrong or already used")]
    SetupTokenInvalid,
    #[error("setup token file {path}: {source}")]
    SetupFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("OS random source: {0}")]
    Random(String),
    #[error("not logged in")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid request: {0}")]
    BadRequest(&'static str),
    #[error("the last admin account cannot be removed or demoted")]
    LastAdmin,
    #[error("auth task failed: {0}")]
    Task(String),
}

/// Builds an [`Auth`].
pub struct AuthBuilder {
    store: Arc<dyn AuthStore>,
    config: AuthConfig,
    clock: Arc<dyn Clock>,
    hook: Option<Arc<dyn AuditHook>>,
}

impl AuthBuilder {
    pub fn config(mut self, config: AuthConfig) -> Self {
        self.config = config;
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where audit events go besides the store (e.g. the application's audit log).
    pub fn audit_hook(mut self, hook: Arc<dyn AuditHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Builds the service; hashes one dummy password (see
    /// [`PasswordHasher::verify_unknown`]), so call it off the async workers.
    pub fn build(self) -> Result<Auth, AuthError> {
        let hasher = PasswordHasher::new(self.config.hash)?;
        // Warm the dummy hash now so the first unknown-user login is not faster.
        hasher.verify_unknown(&Secret::new(""));
        Ok(Auth {
            inner: Arc::new(Inner {
                store: self.store,
                clock: self.clock,
                hasher,
                throttle: Throttle::new(self.config.throttle.clone()),
                hook: self.hook,
                hash_slots: tokio::sync::Semaphore::new(self.config.max_concurrent_hashes.max(1)),
                setup: Mutex::new(None),
                config: self.config,
            }),
        })
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn AuthStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hasher: PasswordHasher,
    pub(crate) throttle: Throttle,
    pub(crate) hook: Option<Arc<dyn AuditHook>>,
    pub(crate) hash_slots: tokio::sync::Semaphore,
    pub(crate) setup: Mutex<Option<PendingSetup>>,
    pub(crate) config: AuthConfig,
}

/// The authentication service. Cloning is cheap.
#[derive(Clone)]
pub struct Auth {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn random(prefix: &str) -> Result<Secret, AuthError> {
    token::random_token(prefix).map_err(|e| AuthError::Random(e.to_string()))
}

fn addr_text(addr: Option<IpAddr>) -> Option<String> {
    addr.map(|a| a.to_string())
}

impl Auth {
    /// Starts building a service on `store`, with default config and the system clock.
    pub fn builder(store: Arc<dyn AuthStore>) -> AuthBuilder {
        AuthBuilder {
            store,
            config: AuthConfig::default(),
            clock: Arc::new(SystemClock),
            hook: None,
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Runs `f` on tokio's blocking pool: how async code calls this service.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&Auth) -> Result<T, AuthError> + Send + 'static,
    {
        let auth = self.clone();
        tokio::task::spawn_blocking(move || f(&auth))
            .await
            .map_err(|e| AuthError::Task(e.to_string()))?
    }

    /// Like [`blocking`](Self::blocking), for work that hashes a password:
    /// waits (without holding a thread) for one of `max_concurrent_hashes` slots.
    pub async fn blocking_hash<T, F>(&self, f: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&Auth) -> Result<T, AuthError> + Send + 'static,
    {
        let _slot = self
            .inner
            .hash_slots
            .acquire()
            .await
            .map_err(|e| AuthError::Task(e.to_string()))?;
        self.blocking(f).await
    }

    /// Records an audit event in the store and hands it to the hook. A store
    /// failure is logged, never returned: auditing must not block a refusal.
    pub fn audit(
        &self,
        kind: AuthEventKind,
        username: Option<&str>,
        addr: Option<IpAddr>,
        detail: impl Into<String>,
    ) {
        let event = AuthEvent {
            at_ms: self.now(),
            kind,
            username: username.map(str::to_owned),
            addr: addr_text(addr),
            detail: detail.into(),
        };
        if let Err(e) = self.inner.store.append_audit(&event) {
            tracing::error!(error = %e, kind = %kind, "could not store auth audit event");
        }
        if let Some(hook) = &self.inner.hook {
            hook.record(&event);
        }
    }

    /// Deletes audit events older than `keep`, and the oldest beyond the newest
    /// `max_rows`; returns how many. Called now and then to bound the table
    /// ([`crate::state::purge_expired`]).
    pub fn purge_audit(&self, keep: Duration, max_rows: u64) -> Result<u64, AuthError> {
        let before = self.now().saturating_sub(duration_ms(keep));
        Ok(self.inner.store.purge_audit(before, max_rows)?)
    }

    /// The newest audit events, newest first.
    pub fn recent_audit(
        &self,
        kind: Option<AuthEventKind>,
        limit: u32,
    ) -> Result<Vec<AuthEvent>, AuthError> {
        Ok(self.inner.store.recent_audit(kind, limit)?)
    }

    /// The throttle, for inspection.
    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }
}
