//! The `[store]` TOML section: where the queue lives, its bounds and its replay pacing.

use std::path::PathBuf;

use infra::{ConfigError, Problems};
use serde::Deserialize;

/// What `append` does once the byte cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Delete the oldest samples to make room (the newest data is the most useful).
    #[default]
    DropOldest,
    /// Keep what is stored and refuse new samples until replay makes room.
    StopStoring,
}

pub use infra::durability::Synchronous;

/// The `[store]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The SQLite file; its logs are `<path>-queue` and `<path>-ahead`, its segment files
    /// `<path>-seg-<n>`.
    pub path: PathBuf,
    /// Cap on stored bytes, counted as values plus 16 bytes per sample. The files are
    /// smaller: about half for numeric samples, plus a WAL of up to 4 MiB, the logs and
    /// the replayed part of the oldest segment file (at most 64 KiB).
    pub max_bytes: u64,
    /// Samples older than this are dropped (0: no age cap).
    pub max_age_s: u64,
    pub overflow: Overflow,
    /// Most samples replayed in one publish.
    pub batch_size: usize,
    /// Link share for the forwarder (live first, replay fills the rest), bytes per second.
    pub replay_bytes_per_s: u64,
    pub synchronous: Synchronous,
    /// Most live samples kept until the link confirms them (re-sent after a link loss).
    pub sent_window_samples: usize,
    /// Also keep those samples on disk, written before they are published, so that a
    /// killed process loses none of them: one record appended to `<path>-ahead` per
    /// publish.
    pub persist_sent_window: bool,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            path: PathBuf::from("/var/lib/edge-node/store.sqlite"),
            max_bytes: 256 * 1024 * 1024,
            max_age_s: 30 * 24 * 3600,
            overflow: Overflow::DropOldest,
            batch_size: 500,
            replay_bytes_per_s: 4096,
            synchronous: Synchronous::Normal,
            sent_window_samples: 50_000,
            persist_sent_window: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    store: StoreConfig,
}

impl StoreConfig {
    /// Reads the `[store]` section of a TOML document (defaults when absent) and validates it.
    pub fn from_toml(text: &str) -> Result<StoreConfig, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text))?;
        file.store.validate()?;
        Ok(file.store)
    }

    /// Checks every key; the error names each bad one as `store.<key>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        if self.path.as_os_str().is_empty() {
            problems.push("store.path", "must not be empty");
        }
        if self.max_bytes < 1024 {
            problems.push("store.max_bytes", "must be at least 1024");
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            problems.push("store.batch_size", "must be between 1 and 100000");
        }
        if self.replay_bytes_per_s == 0 {
            problems.push("store.replay_bytes_per_s", "must be above 0");
        }
        if self.sent_window_samples == 0 {
            problems.push("store.sent_window_samples", "must be above 0");
        }
        problems.finish(())
    }
}
