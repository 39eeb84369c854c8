//! API tokens for integrators' scripts: `Authorization: Bearer <token>`,
//! shown once at creation and stored only hashed. A token acts as its owner
//! with at most its scope; it carries no cookie, so CSRF does not apply.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

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
