//! Authentication audit events: what happened, to which account, from which
//! address. Every event is stored through the [`AuthStore`](crate::AuthStore)
//! and handed to the application's [`AuditHook`], if any, so it can route it
//! into its own audit log. Events never carry a password or token.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthEventKind {
    LoginSucceeded,
    LoginFailed,
    /// Too many failures: an address or an account is locked for a while.
    LockedOut,
    Logout,
    SetupCompleted,
    SetupRefused,
    UserCreated,
    UserDeleted,
    RoleChanged,
    PasswordChanged,
    ApiTokenCreated,
    ApiTokenRevoked,
    /// A state-changing request without the right CSRF token.
    CsrfRefused,
    /// A state-changing request from another site, or of unknown origin.
    OriginRefused,
    /// An authenticated caller without the role or token scope a route needs.
    Forbidden,
}

impl AuthEventKind {
    pub const ALL: [AuthEventKind; 15] = [
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::LockedOut,
        Self::Logout,
        Self::SetupCompleted,
        Self::SetupRefused,
        Self::UserCreated,
        Self::UserDeleted,
        Self::RoleChanged,
        Self::PasswordChanged,
        Self::ApiTokenCreated,
        Self::ApiTokenRevoked,
        Self::CsrfRefused,
        Self::OriginRefused,
        Self::Forbidden,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::LockedOut => "locked_out",
            Self::Logout => "logout",
            Self::SetupCompleted => "setup_completed",
            Self::SetupRefused => "setup_refused",
            Self::UserCreated => "user_created",
            Self::UserDeleted => "user_deleted",
            Self::RoleChanged => "role_changed",
            Self::PasswordChanged => "password_changed",
            Self::ApiTokenCreated => "api_token_created",
            Self::ApiTokenRevoked => "api_token_revoked",
            Self::CsrfRefused => "csrf_refused",
            Self::OriginRefused => "origin_refused",
            Self::Forbidden => "forbidden",
        }
    }
}

impl fmt::Display for AuthEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthEventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| s.to_owned())
    }
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthEvent {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub kind: AuthEventKind,
    /// The account concerned (as typed, for failed logins), if any.
    pub username: Option<String>,
    /// The client's address, if known.
    pub addr: Option<String>,
    /// A short human-readable reason.
    pub detail: String,
}

/// Where the application receives audit events (e.g. its own audit log).
/// Called on a blocking thread, never on an async worker.
pub trait AuditHook: Send + Sync + 'static {
    fn record(&self, event: &AuthEvent);
}

impl<F: Fn(&AuthEvent) + Send + Sync + 'static> AuditHook for F {
    fn record(&self, event: &AuthEvent) {
        self(event)
    }
}
