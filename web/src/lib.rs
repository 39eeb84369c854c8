//! What the edge-node and host web panels share: authentication.
//!
//! - [`account`]: roles, username and password rules, argon2id hashes.
//! - [`store`]: the storage trait; [`sqlite`] implements it.
//! - [`token`]: random tokens and their hashed, stored form.
//! - [`session`]: login, session lifetimes and the cookie.
//! - [`csrf`]: CSRF tokens and the origin check.
//! - [`api_token`]: bearer tokens for scripts.
//! - [`throttle`]: login throttling per address and per account.
//! - [`setup`]: first-run setup and its one-time token file.
//! - [`users`]: account management.
//! - [`audit`]: authentication audit events and the application's hook.
//! - [`auth`]: the service tying these together, [`Auth`].
//! - [`http`]: the axum layer, extractors and routes.
//! - [`shell`]: the pages' frame: layout, login and setup pages, embedded assets.
//! - [`cli`]: the `user add|passwd|list|remove` command of both services.
//! - [`serve`]: the connection loop (limits, TLS, header timeout, graceful end).
//! - [`cert`]: the configured or self-signed HTTPS certificate.
//! - [`state`]: the state directory, accounts database, setup token file, session purge.
//! - [`secret`], [`clock`]: redacted secrets and the injectable clock.

pub mod account;
pub mod api_token;
pub mod audit;
pub mod auth;
pub mod cert;
pub mod cli;
pub mod clock;
pub mod csrf;
pub mod http;
pub mod secret;
pub mod serve;
pub mod session;
pub mod setup;
pub mod shell;
pub mod sqlite;
pub mod state;
pub mod store;
pub mod throttle;
pub mod token;
pub mod users;

pub use account::{HashParams, Role};
pub use api_token::{API_TOKEN_PREFIX, ApiTokenInfo, NewApiToken, Scope};
pub use audit::{AuditHook, AuthEvent, AuthEventKind};
pub use auth::{Auth, AuthBuilder, AuthConfig, AuthError, Caller, UserInfo, Via};
pub use clock::{Clock, ManualClock, SystemClock};
pub use http::{AuthLayer, ClientAddr, RequireLayer};
pub use secret::Secret;
pub use session::{Login, SessionConfig};
pub use sqlite::SqliteStore;
pub use store::{AuthStore, StoreError};
pub use throttle::ThrottleConfig;

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every update replaces whole values).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
