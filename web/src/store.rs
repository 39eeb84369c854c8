//! The storage seam: accounts, sessions, API tokens and audit events behind
//! one plain, synchronous trait. SQLite implements it here
//! ([`SqliteStore`](crate::SqliteStore)); an application may bring another
//! backend (the host's PostgreSQL store, shared by its instances). Calls may
//! block, so async code reaches them only through `spawn_blocking` (the axum
//! layer does).

use std::fmt;

use crate::account::Role;
use crate::api_token::Scope;
use crate::audit::{AuthEvent, AuthEventKind};
use crate::token::TokenHash;

/// A stored account.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    pub created_ms: i64,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("password_hash", &"[redacted]")
            .field("created_ms", &self.created_ms)
            .finish()
    }
}

/// An account to create.
#[derive(Clone)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub role: Role,
    pub password_hash: &'a str,
    pub created_ms: i64,
}

/// A stored session: the token itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub token_hash: TokenHash,
    pub user_id: i64,
    pub created_ms: i64,
    pub last_seen_ms: i64,
}

/// A stored API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: i64,
    pub token_hash: TokenHash,
    pub user_id: i64,
    pub name: String,
    pub scope: Scope,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

/// What went wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("auth database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Another backend's failure (a lost server, a refused statement).
    #[error("auth database: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync + 'static>),
    #[error("auth database: {what} already exists")]
    Duplicate { what: String },
    #[error("auth database: an admin account already exists")]
    AdminExists,
    #[error("auth database: the last admin account cannot be removed or demoted")]
    LastAdmin,
    #[error("auth database: {what} not found")]
    NotFound { what: String },
    #[error("auth database: {column} holds {value:?}, which is not valid")]
    Corrupt { column: &'static str, value: String },
    #[error("auth database: a previous writer panicked")]
    Poisoned,
}

/// Storage for accounts, sessions, API tokens and audit events.
pub trait AuthStore: Send + Sync + 'static {
    /// Creates an account; [`StoreError::Duplicate`] if the name is taken.
    fn create_user(&self, user: &NewUser<'_>) -> Result<i64, StoreError>;
    /// Creates the first admin in one transaction, refusing with
    /// [`StoreError::AdminExists`] if any admin exists.
    fn create_first_admin(&self, user: &NewUser<'_>) -> Result<i64, StoreError>;
    fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError>;
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    fn count_admins(&self) -> Result<u64, StoreError>;
    /// Sets the account's role; refuses with [`StoreError::LastAdmin`] to demote the last
    /// admin, checked in the same transaction (so two concurrent demotions, from one
    /// process or several sharing the store, never leave none).
    fn set_role(&self, id: i64, role: Role) -> Result<(), StoreError>;
    fn set_password_hash(&self, id: i64, password_hash: &str) -> Result<(), StoreError>;
    /// Deletes the account with its sessions and API tokens; refuses with
    /// [`StoreError::LastAdmin`] to delete the last admin, as [`AuthStore::set_role`].
    fn delete_user(&self, id: i64) -> Result<(), StoreError>;

    fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    fn session(&self, token_hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError>;
    fn touch_session(&self, token_hash: &TokenHash, last_seen_ms: i64) -> Result<(), StoreError>;
    fn delete_session(&self, token_hash: &TokenHash) -> Result<(), StoreError>;
    fn delete_user_sessions(&self, user_id: i64) -> Result<(), StoreError>;
    /// Deletes sessions last seen at or before `idle_before_ms` or created at
    /// or before `created_before_ms`; returns how many.
    fn purge_sessions(
        &self,
        idle_before_ms: i64,
        created_before_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Stores a token; returns its id.
    fn insert_api_token(
        &self,
        token_hash: &TokenHash,
        user_id: i64,
        name: &str,
        scope: Scope,
        created_ms: i64,
    ) -> Result<i64, StoreError>;
    fn api_token(&self, token_hash: &TokenHash) -> Result<Option<ApiTokenRecord>, StoreError>;
    fn touch_api_token(&self, id: i64, last_used_ms: i64) -> Result<(), StoreError>;
    fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiTokenRecord>, StoreError>;
    /// Deletes the token `id` if it belongs to `user_id`; false if there was none.
    fn delete_api_token(&self, user_id: i64, id: i64) -> Result<bool, StoreError>;

    fn append_audit(&self, event: &AuthEvent) -> Result<(), StoreError>;
    /// Deletes events older than `before_ms`, and the oldest beyond the newest
    /// `max_rows`; returns how many.
    fn purge_audit(&self, before_ms: i64, max_rows: u64) -> Result<u64, StoreError>;
    /// The newest `limit` events of `kind` (all kinds when `None`), newest first.
    fn recent_audit(
        &self,
        kind: Option<AuthEventKind>,
        limit: u32,
    ) -> Result<Vec<AuthEvent>, StoreError>;
}

/// Copies every account of `from` (name, role, password hash, creation time) and its API
/// tokens (stored hashes: the tokens keep working) into `to`, when `to` has no account
/// yet; returns how many accounts were copied (0 when `to` had some). Sessions are not
/// copied: their holders log in again. Used once when the accounts move to another store
/// (the host's move from a SQLite to a PostgreSQL history); an account another process
/// copied meanwhile is skipped, not an error.
pub fn copy_accounts(from: &dyn AuthStore, to: &dyn AuthStore) -> Result<usize, StoreError> {
    if !to.list_users()?.is_empty() {
        return Ok(0);
    }
    let mut copied = 0;
    for user in from.list_users()? {
        let new = NewUser {
            username: &user.username,
            role: user.role,
            password_hash: &user.password_hash,
            created_ms: user.created_ms,
        };
        let id = match to.create_user(&new) {
            Ok(id) => id,
            Err(StoreError::Duplicate { .. }) => continue,
            Err(e) => return Err(e),
        };
        for token in from.list_api_tokens(user.id)? {
            to.insert_api_token(
                &token.token_hash,
                id,
                &token.name,
                token.scope,
                token.created_ms,
            )?;
        }
        copied += 1;
    }
    Ok(copied)
}
