//! Browser sessions: lifetimes and the session cookie.
//!
//! A session is a random token (see [`token`](crate::token)) held by the
//! browser in an HttpOnly, SameSite=Strict cookie scoped to `/`; under HTTPS
//! the cookie is also Secure and named with the `__Host-` prefix, so no
//! subdomain or plain-HTTP page can set or shadow it. The server keeps only
//! the token's hash, with the creation and last-use times that bound it.

use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

use crate::secret::Secret;

/// Cookie name over plain HTTP.
pub const COOKIE_NAME: &str = "session";
/// Cookie name over HTTPS.
pub const SECURE_COOKIE_NAME: &str = "__Host-session";

/// How long sessions live and how their cookie is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after login, however busy.
    pub absolute_lifetime: Duration,
    /// True when the application is served over HTTPS: Secure + `__Host-`.
    pub https: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_lifetime: Duration::from_secs(12 * 60 * 60),
            https: false,
        }
    }
}

impl SessionConfig {
    pub fn cookie_name(&self) -> &'static str {
        if self.https {
            SECURE_COOKIE_NAME
        } else {
            COOKIE_NAME
        }
    }

    fn attributes(&self) -> &'static str {
        if self.https {
            "Path=/; HttpOnly; SameSite=Strict; Secure"
        } else {
            "Path=/; HttpOnly; SameSite=Strict"
        }
    }

    /// The `Set-Cookie` value that starts a session (a secret: it holds the token).
    pub fn set_cookie(&self, token: &Secret) -> Secret {
        Secret::new(format!(
            "{}={}; {}; Max-Age={}",
            self.cookie_name(),
            token.expose(),
            self.attributes(),
            self.absolute_lifetime.as_secs()
        ))
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> String {
        format!("{}=; {}; Max-Age=0", self.cookie_name(), self.attributes())
    }

    /// The session token the request's `Cookie` headers carry, if any.
    pub fn token_from(&self, headers: &HeaderMap) -> Option<Secret> {
        let name = self.cookie_name();
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, v)| *k == name && !v.is_empty())
            .map(|(_, v)| Secret::new(v))
    }
}
