//! Accounts: roles, the username and password rules, and argon2id password
//! hashes in PHC string form.
//!
//! The default cost, m = 19 MiB, t = 2, p = 1 (OWASP's argon2id minimum), keeps
//! one login at about 19 MiB and well under a second on a 512 MB ARM gateway;
//! logins are throttled, so at most a few run at once. Each stored hash
//! carries its own parameters, so raising the cost later keeps old hashes valid.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Fewest characters a password may have.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Most bytes a password may have (bounds the work one request can cause).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Most characters a username may have.
pub const MAX_USERNAME_LEN: usize = 32;

/// What an account may do. Ordered: each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads values and history.
    Viewer,
    /// Also writes setpoints and requests Rebirth.
    Operator,
    /// Also manages users and settings.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AccountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(AccountError::UnknownRole(other.to_owned())),
        }
    }
}

/// What is wrong with an account's input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountError {
    #[error("username {name:?}: {reason}")]
    InvalidUsername { name: String, reason: &'static str },
    #[error("password: at least {MIN_PASSWORD_LEN} characters are required")]
    PasswordTooShort,
    #[error("password: at most {MAX_PASSWORD_LEN} bytes are allowed")]
    PasswordTooLong,
    #[error("role {0:?}: expected viewer, operator or admin")]
    UnknownRole(String),
    #[error("password hash: {0}")]
    Hash(String),
}

/// A username that follows the rules: 1 to 32 characters of lowercase ASCII
/// letters, digits, '.', '_' and '-', starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(name: &str) -> Result<Self, AccountError> {
        let bad = |reason| {
            Err(AccountError::InvalidUsername {
                name: name.chars().take(MAX_USERNAME_LEN + 8).collect(),
                reason,
            })
        };
        if name.is_empty() {
            return bad("must not be empty");
        }
        if name.len() > MAX_USERNAME_LEN {
            return bad("at most 32 characters");
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return bad("must start with a lowercase letter or a digit");
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        {
            return bad("only lowercase letters, digits, '.', '_' and '-' are allowed");
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a new password against the length rules.
pub fn check_password(password: &Secret) -> Result<(), AccountError> {
    let p = password.expose();
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(AccountError::PasswordTooShort);
    }
    if p.len() > MAX_PASSWORD_LEN {
        return Err(AccountError::PasswordTooLong);
    }
    Ok(())
}

/// The argon2id cost of new hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for HashParams {
    /// m = 19 MiB, t = 2, p = 1: see the module documentation.
    fn default() -> Self {
        Self {
            m_kib: 19 * 1024,
            t: 2,
            p: 1,
        }
    }
}

impl HashParams {
    /// The smallest cost argon2 accepts; for tests only.
    pub fn insecure_for_tests() -> Self {
        Self {
            m_kib: 8,
            t: 1,
            p: 1,
        }
    }
}

/// Hashes and verifies passwords with argon2id.
pub struct PasswordHasher {
    argon: Argon2<'static>,
    /// A hash of a random password, verified against when the account does not
    /// exist, so both paths take the same time.
    dummy: OnceLock<String>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", self.argon.params())
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    pub fn new(params: HashParams) -> Result<Self, AccountError> {
        let p = Params::new(params.m_kib, params.t, params.p, None)
            .map_err(|e| AccountError::Hash(e.to_string()))?;
        Ok(Self {
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, p),
            dummy: OnceLock::new(),
        })
    }

    /// The PHC string of a fresh argon2id hash with a random 16-byte salt.
    pub fn hash(&self, password: &Secret) -> Result<String, AccountError> {
        let mut salt = [0u8; 16];
        OsRng
            .try_fill_bytes(&mut salt)
            .map_err(|e| AccountError::Hash(format!("OS random source: {e}")))?;
        self.argon
            .hash_password_with_salt(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountError::Hash(e.to_string()))
    }

    /// True when `password` matches `phc`; a malformed hash never matches.
    pub fn verify(&self, password: &Secret, phc: &str) -> bool {
        self.argon
            .verify_password(password.expose().as_bytes(), phc)
            .is_ok()
    }

    /// Does the work of [`verify`](Self::verify) for an account that does not
    /// exist (the answer is always "no match").
    pub fn verify_unknown(&self, password: &Secret) {
        let dummy = self.dummy.get_or_init(|| {
            crate::token::random_token("")
                .ok()
                .and_then(|t| self.hash(&t).ok())
                .unwrap_or_default()
        });
        let _ = self.verify(password, dummy);
    }
}
