//! API tokens for integrators' scripts: `Authorization: Bearer <token>`,
//! shown once at creation and stored only hashed. A token acts as its owner
//! with at most its scope; it carries no cookie, so CSRF does not apply.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::audit::AuthEventKind;
use crate::auth::{Auth, AuthError, Caller, Via, random};
use crate::secret::Secret;
use crate::store::ApiTokenRecord;
use crate::token;

/// Every API token starts with this, so a leaked one is easy to recognise.
pub const API_TOKEN_PREFIX: &str = "spk_";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Safe methods only (GET, HEAD, OPTIONS).
    Read,
    /// Also state-changing methods, within the owner's role.
    ReadWrite,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::ReadWrite => "read_write",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Scope::Read),
            "read_write" => Ok(Scope::ReadWrite),
            other => Err(other.to_owned()),
        }
    }
}

/// A token just created: the only time its value is available.
#[derive(Debug)]
pub struct NewApiToken {
    pub id: i64,
    pub name: String,
    pub scope: Scope,
    pub token: Secret,
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

impl Auth {
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
}
