//! Login and browser sessions: password check under the throttle, session
//! lifetimes, logout and the session cookie.
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
use std::net::IpAddr;

use crate::account::{MAX_PASSWORD_LEN, MAX_USERNAME_LEN, Username};
use crate::audit::AuthEventKind;
use crate::auth::{Auth, AuthError, Caller, UserInfo, Via, random};
use crate::clock::duration_ms;
use crate::csrf::csrf_token;
use crate::store::SessionRecord;
use crate::throttle::Locked;
use crate::token;

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

impl Auth {
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
            tracing::warn!(user = ?username, addr = ?addr, "login failed");
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
        tracing::info!(user = ?user.username, addr = ?addr, "login");
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
}

fn locked_text(l: &Locked) -> String {
    match l {
        Locked::Address(ip, d) => format!("address {ip} locked for {} s", d.as_secs().max(1)),
        Locked::Account(name, d) => {
            format!("account {:?} locked for {} s", name, d.as_secs().max(1))
        }
    }
}
