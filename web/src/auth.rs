//! The authentication service: ties storage, the clock, password hashing,
//! throttling, sessions, API tokens, first-run setup and auditing together
//! behind one cheap-to-clone handle, [`Auth`].
//!
//! Every method here may block (argon2, SQLite); async code calls them
//! through [`Auth::blocking`], which runs them on tokio's blocking pool.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::account::{
    AccountError, HashParams, MAX_PASSWORD_LEN, MAX_USERNAME_LEN, PasswordHasher, Role, Username,
    check_password,
};
use crate::api_token::{API_TOKEN_PREFIX, NewApiToken, Scope};
use crate::audit::{AuditHook, AuthEvent, AuthEventKind};
use crate::clock::{Clock, SystemClock, duration_ms};
use crate::csrf::csrf_token;
use crate::lock;
use crate::secret::Secret;
use crate::session::SessionConfig;
use crate::setup;
use crate::store::{ApiTokenRecord, AuthStore, NewUser, SessionRecord, StoreError, UserRecord};
use crate::throttle::{Locked, Throttle, ThrottleConfig};
use crate::token::{self, TokenHash};

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

/// An API token as listed (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiTokenInfo {
    pub id: i64,
    pub name: String,
    pub scope: Scope,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

impl From<ApiTokenRecord> for ApiTokenInfo {
    fn from(t: ApiTokenRecord) -> Self {
        Self {
            id: t.id,
            name: t.name,
            scope: t.scope,
            created_ms: t.created_ms,
            last_used_ms: t.last_used_ms,
        }
    }
}

/// A successful login.
#[derive(Debug)]
pub struct Login {
    pub user: UserInfo,
    /// Goes into the session cookie only.
    pub session_token: Secret,
    pub csrf_token: Secret,
    /// The `Set-Cookie` header value (it holds the session token).
    pub set_cookie: Secret,
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

struct PendingSetup {
    hash: TokenHash,
    path: PathBuf,
}

struct Inner {
    store: Arc<dyn AuthStore>,
    clock: Arc<dyn Clock>,
    hasher: PasswordHasher,
    throttle: Throttle,
    hook: Option<Arc<dyn AuditHook>>,
    hash_slots: tokio::sync::Semaphore,
    setup: Mutex<Option<PendingSetup>>,
    config: AuthConfig,
}

/// The authentication service. Cloning is cheap.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn random(prefix: &str) -> Result<Secret, AuthError> {
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

    fn now(&self) -> i64 {
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

    /// Deletes audit events older than `keep`; returns how many. The
    /// application calls it now and then to bound the table.
    pub fn purge_audit(&self, keep: Duration) -> Result<u64, AuthError> {
        let before = self.now().saturating_sub(duration_ms(keep));
        Ok(self.inner.store.purge_audit(before)?)
    }

    /// The newest audit events, newest first.
    pub fn recent_audit(
        &self,
        kind: Option<AuthEventKind>,
        limit: u32,
    ) -> Result<Vec<AuthEvent>, AuthError> {
        Ok(self.inner.store.recent_audit(kind, limit)?)
    }

    // ---- first-run setup ----

    /// True while no admin account exists.
    pub fn setup_required(&self) -> Result<bool, AuthError> {
        Ok(self.inner.store.count_admins()? == 0)
    }

    /// While no admin exists: issues a one-time setup token, writes it to
    /// `path` (mode 0600) and returns it for the application to show the
    /// installer. `None` once an admin exists.
    pub fn begin_setup(&self, path: &Path) -> Result<Option<Secret>, AuthError> {
        if !self.setup_required()? {
            return Ok(None);
        }
        let token = random("")?;
        setup::write_token_file(path, &token).map_err(|source| AuthError::SetupFile {
            path: path.to_owned(),
            source,
        })?;
        *lock(&self.inner.setup) = Some(PendingSetup {
            hash: token::hash_token(token.expose()),
            path: path.to_owned(),
        });
        tracing::info!(path = %path.display(), "first-run setup token written");
        Ok(Some(token))
    }

    /// Creates the first admin with the setup token. The token works once.
    pub fn complete_setup(
        &self,
        setup_token: &Secret,
        username: &str,
        password: &Secret,
        addr: Option<IpAddr>,
    ) -> Result<UserInfo, AuthError> {
        let refuse = |e: AuthError| {
            self.audit(
                AuthEventKind::SetupRefused,
                Some(username),
                addr,
                e.to_string(),
            );
            Err(e)
        };
        if !self.setup_required()? {
            return refuse(AuthError::SetupClosed);
        }
        let name = Username::parse(username)?;
        check_password(password)?;
        let pending = {
            let mut guard = lock(&self.inner.setup);
            let matches = guard.as_ref().is_some_and(|p| {
                let given = token::hash_token(setup_token.expose());
                token::equal_bytes(&p.hash.0, &given.0)
            });
            if !matches {
                drop(guard);
                return refuse(AuthError::SetupTokenInvalid);
            }
            guard.take()
        };
        let hash = self.inner.hasher.hash(password)?;
        let created = self.inner.store.create_first_admin(&NewUser {
            username: name.as_str(),
            role: Role::Admin,
            password_hash: &hash,
            created_ms: self.now(),
        });
        let id = match created {
            Ok(id) => id,
            Err(StoreError::AdminExists) => return refuse(AuthError::SetupClosed),
            Err(e) => return Err(e.into()),
        };
        if let Some(p) = pending
            && let Err(e) = setup::remove_token_file(&p.path)
        {
            tracing::warn!(path = %p.path.display(), error = %e, "could not remove the used setup token file");
        }
        self.audit(
            AuthEventKind::SetupCompleted,
            Some(name.as_str()),
            addr,
            "first admin created",
        );
        tracing::info!(user = %name, "first admin account created");
        Ok(UserInfo {
            id,
            username: name.as_str().to_owned(),
            role: Role::Admin,
        })
    }

    // ---- login and sessions ----

    /// Checks the password, under the throttle, and opens a session.
    pub fn login(
        &self,
        username: &str,
        password: &Secret,
        addr: Option<IpAddr>,
    ) -> Result<Login, AuthError> {
        let now = self.now();
        // The name as typed goes to the audit log and the throttle, bounded.
        let typed: String = username.chars().take(MAX_USERNAME_LEN * 2).collect();
        let username = typed.as_str();
        if let Err(locked) = self.inner.throttle.check(addr, username, now) {
            self.audit(
                AuthEventKind::LoginFailed,
                Some(username),
                addr,
                format!("refused while locked: {}", locked_text(&locked)),
            );
            return Err(AuthError::Throttled {
                retry_after: locked.retry_after(),
            });
        }
        let user = match Username::parse(username) {
            Ok(name) => self.inner.store.user_by_name(name.as_str())?,
            Err(_) => None,
        };
        // An oversized password is refused unhashed, whether or not the account exists.
        let sized = password.expose().len() <= MAX_PASSWORD_LEN;
        let ok = match &user {
            Some(u) => sized && self.inner.hasher.verify(password, &u.password_hash),
            None => {
                if sized {
                    self.inner.hasher.verify_unknown(password);
                }
                false
            }
        };
        let Some(user) = user.filter(|_| ok) else {
            self.audit(
                AuthEventKind::LoginFailed,
                Some(username),
                addr,
                "wrong username or password",
            );
            tracing::warn!(user = %username.escape_debug(), addr = ?addr, "login failed");
            for locked in self.inner.throttle.failure(addr, username, now) {
                self.audit(
                    AuthEventKind::LockedOut,
                    Some(username),
                    addr,
                    locked_text(&locked),
                );
                tracing::warn!(lock = %locked_text(&locked), "login locked out");
            }
            return Err(AuthError::BadCredentials);
        };
        self.inner.throttle.success(username);
        let session_token = random("")?;
        self.inner.store.insert_session(&SessionRecord {
            token_hash: token::hash_token(session_token.expose()),
            user_id: user.id,
            created_ms: now,
            last_seen_ms: now,
        })?;
        self.audit(
            AuthEventKind::LoginSucceeded,
            Some(&user.username),
            addr,
            "session opened",
        );
        tracing::info!(user = %user.username, addr = ?addr, "login");
        Ok(Login {
            user: UserInfo::from(&user),
            csrf_token: csrf_token(&session_token),
            set_cookie: self.inner.config.session.set_cookie(&session_token),
            session_token,
        })
    }

    /// Ends the session; an unknown token is fine.
    pub fn logout(&self, session_token: &Secret, addr: Option<IpAddr>) -> Result<(), AuthError> {
        let hash = token::hash_token(session_token.expose());
        let user = match self.inner.store.session(&hash)? {
            Some(s) => self.inner.store.user_by_id(s.user_id)?,
            None => None,
        };
        self.inner.store.delete_session(&hash)?;
        if let Some(u) = user {
            self.audit(
                AuthEventKind::Logout,
                Some(&u.username),
                addr,
                "session closed",
            );
        }
        Ok(())
    }

    /// The caller a session token belongs to, if the session is alive.
    /// An expired session is deleted.
    pub fn authenticate_session(
        &self,
        session_token: &Secret,
    ) -> Result<Option<Caller>, AuthError> {
        let cfg = &self.inner.config.session;
        let now = self.now();
        let hash = token::hash_token(session_token.expose());
        let Some(s) = self.inner.store.session(&hash)? else {
            return Ok(None);
        };
        let idle = now.saturating_sub(s.last_seen_ms) >= duration_ms(cfg.idle_timeout);
        let old = now.saturating_sub(s.created_ms) >= duration_ms(cfg.absolute_lifetime);
        if idle || old {
            self.inner.store.delete_session(&hash)?;
            return Ok(None);
        }
        let Some(user) = self.inner.store.user_by_id(s.user_id)? else {
            return Ok(None);
        };
        // Refresh last use at most every 1/20 of the idle timeout (≤ 60 s) to spare writes.
        let step = (duration_ms(cfg.idle_timeout) / 20).min(60_000);
        if now.saturating_sub(s.last_seen_ms) >= step {
            self.inner.store.touch_session(&hash, now)?;
        }
        Ok(Some(Caller {
            user_id: user.id,
            user: user.username,
            role: user.role,
            via: Via::Session {
                csrf_token: csrf_token(session_token),
            },
        }))
    }

    /// Deletes expired sessions; returns how many. Call it now and then.
    pub fn purge_expired_sessions(&self) -> Result<u64, AuthError> {
        let cfg = &self.inner.config.session;
        let now = self.now();
        Ok(self.inner.store.purge_sessions(
            now.saturating_sub(duration_ms(cfg.idle_timeout)),
            now.saturating_sub(duration_ms(cfg.absolute_lifetime)),
        )?)
    }

    // ---- API tokens ----

    /// The caller an API token belongs to, if it is valid.
    pub fn authenticate_bearer(&self, bearer: &Secret) -> Result<Option<Caller>, AuthError> {
        if !bearer.expose().starts_with(API_TOKEN_PREFIX) {
            return Ok(None);
        }
        let Some(t) = self
            .inner
            .store
            .api_token(&token::hash_token(bearer.expose()))?
        else {
            return Ok(None);
        };
        let Some(user) = self.inner.store.user_by_id(t.user_id)? else {
            return Ok(None);
        };
        let now = self.now();
        if t.last_used_ms
            .is_none_or(|last| now.saturating_sub(last) >= 60_000)
        {
            self.inner.store.touch_api_token(t.id, now)?;
        }
        Ok(Some(Caller {
            user_id: user.id,
            user: user.username,
            role: user.role,
            via: Via::ApiToken {
                id: t.id,
                scope: t.scope,
            },
        }))
    }

    /// Creates an API token owned by `by`; its value is in the result only.
    /// Tokens are created from a browser session, never by another token.
    pub fn create_api_token(
        &self,
        by: &Caller,
        name: &str,
        scope: Scope,
    ) -> Result<NewApiToken, AuthError> {
        if !matches!(by.via, Via::Session { .. }) {
            return Err(AuthError::Forbidden(
                "API tokens are created from a login session",
            ));
        }
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(AuthError::BadRequest("token name: 1 to 64 bytes"));
        }
        let token = random(API_TOKEN_PREFIX)?;
        let id = self.inner.store.insert_api_token(
            &token::hash_token(token.expose()),
            by.user_id,
            name,
            scope,
            self.now(),
        )?;
        self.audit(
            AuthEventKind::ApiTokenCreated,
            Some(&by.user),
            None,
            format!("token {id} {name:?} scope {scope}"),
        );
        Ok(NewApiToken {
            id,
            name: name.to_owned(),
            scope,
            token,
        })
    }

    /// The caller's own API tokens.
    pub fn list_api_tokens(&self, by: &Caller) -> Result<Vec<ApiTokenInfo>, AuthError> {
        Ok(self
            .inner
            .store
            .list_api_tokens(by.user_id)?
            .into_iter()
            .map(ApiTokenInfo::from)
            .collect())
    }

    /// Revokes one of the caller's own API tokens.
    pub fn revoke_api_token(&self, by: &Caller, id: i64) -> Result<(), AuthError> {
        if !self.inner.store.delete_api_token(by.user_id, id)? {
            return Err(AuthError::NotFound(format!("API token {id}")));
        }
        self.audit(
            AuthEventKind::ApiTokenRevoked,
            Some(&by.user),
            None,
            format!("token {id}"),
        );
        Ok(())
    }

    // ---- accounts (admin) ----

    fn admin(by: Option<&Caller>) -> Result<(), AuthError> {
        match by {
            Some(c) if !c.has_role(Role::Admin) => Err(AuthError::Forbidden("admin role required")),
            _ => Ok(()),
        }
    }

    fn actor(by: Option<&Caller>) -> String {
        by.map_or_else(|| "local".to_owned(), |c| c.user.clone())
    }

    fn user(&self, username: &str) -> Result<UserRecord, AuthError> {
        self.inner
            .store
            .user_by_name(username)?
            .ok_or_else(|| AuthError::NotFound(format!("user {username:?}")))
    }

    /// Creates an account. `by` is the admin doing it, or `None` for a
    /// local tool (e.g. a command line run by the service's owner).
    pub fn create_user(
        &self,
        by: Option<&Caller>,
        username: &str,
        password: &Secret,
        role: Role,
    ) -> Result<UserInfo, AuthError> {
        Self::admin(by)?;
        let name = Username::parse(username)?;
        check_password(password)?;
        let hash = self.inner.hasher.hash(password)?;
        let id = self.inner.store.create_user(&NewUser {
            username: name.as_str(),
            role,
            password_hash: &hash,
            created_ms: self.now(),
        })?;
        self.audit(
            AuthEventKind::UserCreated,
            Some(name.as_str()),
            None,
            format!("role {role}, by {}", Self::actor(by)),
        );
        Ok(UserInfo {
            id,
            username: name.as_str().to_owned(),
            role,
        })
    }

    /// All accounts (admin).
    pub fn list_users(&self, by: Option<&Caller>) -> Result<Vec<UserInfo>, AuthError> {
        Self::admin(by)?;
        Ok(self
            .inner
            .store
            .list_users()?
            .iter()
            .map(UserInfo::from)
            .collect())
    }

    /// Changes an account's role (admin); the last admin stays an admin.
    pub fn set_role(
        &self,
        by: Option<&Caller>,
        username: &str,
        role: Role,
    ) -> Result<(), AuthError> {
        Self::admin(by)?;
        let user = self.user(username)?;
        if user.role == Role::Admin && role != Role::Admin && self.inner.store.count_admins()? <= 1
        {
            return Err(AuthError::LastAdmin);
        }
        self.inner.store.set_role(user.id, role)?;
        self.audit(
            AuthEventKind::RoleChanged,
            Some(username),
            None,
            format!("{} -> {role}, by {}", user.role, Self::actor(by)),
        );
        Ok(())
    }

    /// Sets a new password (the account itself or an admin) and ends the
    /// account's sessions.
    pub fn set_password(
        &self,
        by: Option<&Caller>,
        username: &str,
        password: &Secret,
    ) -> Result<(), AuthError> {
        if by.is_some_and(|c| c.user != username) {
            Self::admin(by)?;
        }
        check_password(password)?;
        let user = self.user(username)?;
        let hash = self.inner.hasher.hash(password)?;
        self.inner.store.set_password_hash(user.id, &hash)?;
        self.inner.store.delete_user_sessions(user.id)?;
        self.audit(
            AuthEventKind::PasswordChanged,
            Some(username),
            None,
            format!("by {}", Self::actor(by)),
        );
        Ok(())
    }

    /// Deletes an account with its sessions and tokens (admin); the last
    /// admin cannot be deleted.
    pub fn delete_user(&self, by: Option<&Caller>, username: &str) -> Result<(), AuthError> {
        Self::admin(by)?;
        let user = self.user(username)?;
        if user.role == Role::Admin && self.inner.store.count_admins()? <= 1 {
            return Err(AuthError::LastAdmin);
        }
        self.inner.store.delete_user(user.id)?;
        self.audit(
            AuthEventKind::UserDeleted,
            Some(username),
            None,
            format!("by {}", Self::actor(by)),
        );
        Ok(())
    }

    /// The throttle, for inspection.
    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }
}

fn locked_text(l: &Locked) -> String {
    match l {
        Locked::Address(ip, d) => format!("address {ip} locked for {} s", d.as_secs().max(1)),
        Locked::Account(name, d) => {
            format!("account {:?} locked for {} s", name, d.as_secs().max(1))
        }
    }
}
