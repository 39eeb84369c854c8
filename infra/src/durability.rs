//! SQLite's `synchronous` level under WAL, the one durability setting of the edge store
//! and the host history.

use serde::Deserialize;

/// When a commit is durable. In WAL mode `Normal` never corrupts the database and loses at
/// most the last commits on power loss (not on a crash of the process); `Full` syncs the
/// WAL on every commit, which costs an fsync per commit on an SD card.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

impl Synchronous {
    /// The value for `PRAGMA synchronous`.
    pub fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }

    /// The level `PRAGMA synchronous` reports (1 or 2); other levels are none of ours.
    pub fn from_pragma(level: i64) -> Option<Synchronous> {
        match level {
            1 => Some(Synchronous::Normal),
            2 => Some(Synchronous::Full),
            _ => None,
        }
    }
}
