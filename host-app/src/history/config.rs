//! The `[history]` table of the host configuration, validated at load.

use std::path::PathBuf;
use std::time::Duration;

use infra::{ConfigError, Problems};
use serde::Deserialize;

use super::sqlite::{SqliteOptions, Synchronous};
use super::types::{AuditRetention, RetentionPolicy};
use super::writer::WriterConfig;

/// `[history]` in the host configuration. Example:
///
/// ```toml
/// [history]
/// path = "/var/lib/host-app/history.db"
/// batch_size = 5000
/// flush_interval_ms = 250
/// retention_days = 90
/// max_size_mb = 4096
/// audit_retention_days = 365
/// audit_max_rows = 1000000
/// synchronous = "normal"
/// open_window_max_mb = 16
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// The SQLite database file (created if absent).
    pub path: PathBuf,
    /// Commit once this many samples are pending.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Commit pending samples at most this long after the first arrived.
    #[serde(default = "defaults::flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Sample batches queued before ingest waits for the disk.
    #[serde(default = "defaults::channel_capacity")]
    pub channel_capacity: usize,
    /// Delete samples older than this many days; 0 keeps them for ever.
    #[serde(default)]
    pub retention_days: u32,
    /// Keep the database file under this many MiB by deleting the oldest samples; 0 = no
    /// limit.
    #[serde(default)]
    pub max_size_mb: u64,
    /// Delete audit entries older than this many days; 0 keeps them by age (the row limit
    /// still applies). Apart from `retention_days`: sample retention never deletes them.
    #[serde(default = "defaults::audit_retention_days")]
    pub audit_retention_days: u32,
    /// Keep at most this many audit entries, deleting the oldest, so a flood of writes
    /// cannot fill the disk.
    #[serde(default = "defaults::audit_max_rows")]
    pub audit_max_rows: u64,
    /// Seconds between retention runs.
    #[serde(default = "defaults::retention_interval_s")]
    pub retention_interval_s: u64,
    /// `normal` (WAL: never corrupts, may lose the last commits on power loss) or `full`
    /// (an fsync per commit).
    #[serde(default)]
    pub synchronous: Synchronous,
    /// Most MiB the samples of the open (not yet chunked) windows hold in memory; reaching
    /// it writes them to the database early (a flood), so memory stays bounded.
    #[serde(default = "defaults::open_window_max_mb")]
    pub open_window_max_mb: u64,
}

mod defaults {
    pub fn batch_size() -> usize {
        5_000
    }
    pub fn flush_interval_ms() -> u64 {
        250
    }
    pub fn channel_capacity() -> usize {
        256
    }
    pub fn retention_interval_s() -> u64 {
        60
    }
    pub fn audit_retention_days() -> u32 {
        365
    }
    pub fn audit_max_rows() -> u64 {
        1_000_000
    }
    pub fn open_window_max_mb() -> u64 {
        super::SqliteOptions::DEFAULT_OPEN_WINDOW_MAX_BYTES / (1024 * 1024)
    }
}

#[derive(Deserialize)]
struct Document {
    history: Option<HistoryConfig>,
}

impl HistoryConfig {
    /// Reads `[history]` from a host configuration document (other tables are left to
    /// their owners) and validates it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let document: Document =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text))?;
        let config = document
            .history
            .ok_or_else(|| ConfigError::new("history", "missing table"))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value is in its working range; each bad one is named `history.<key>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        if self.path.as_os_str().is_empty() {
            problems.push("history.path", "must name the database file");
        } else if self.path.is_dir() {
            problems.push("history.path", "is a directory; name the database file");
        }
        if !(1..=1_000_000).contains(&self.batch_size) {
            problems.push("history.batch_size", "must be 1 to 1000000 samples");
        }
        if !(1..=60_000).contains(&self.flush_interval_ms) {
            problems.push("history.flush_interval_ms", "must be 1 to 60000 ms");
        }
        if !(1..=65_536).contains(&self.channel_capacity) {
            problems.push("history.channel_capacity", "must be 1 to 65536 batches");
        }
        if self.retention_days > 36_500 {
            problems.push("history.retention_days", "must be 0 (keep) to 36500 days");
        }
        if self.max_size_mb > 16 * 1024 * 1024 {
            problems.push(
                "history.max_size_mb",
                "must be 0 (no limit) to 16777216 MiB",
            );
        }
        if self.audit_retention_days > 36_500 {
            problems.push(
                "history.audit_retention_days",
                "must be 0 (keep) to 36500 days",
            );
        }
        if !(1..=1_000_000_000).contains(&self.audit_max_rows) {
            problems.push("history.audit_max_rows", "must be 1 to 1000000000 entries");
        }
        if !(1..=86_400).contains(&self.retention_interval_s) {
            problems.push("history.retention_interval_s", "must be 1 to 86400 s");
        }
        if !(1..=4_096).contains(&self.open_window_max_mb) {
            problems.push("history.open_window_max_mb", "must be 1 to 4096 MiB");
        }
        problems.finish(())
    }

    pub fn store_options(&self) -> SqliteOptions {
        SqliteOptions {
            synchronous: self.synchronous,
            open_window_max_bytes: self.open_window_max_mb * 1024 * 1024,
        }
    }

    pub fn writer_config(&self) -> WriterConfig {
        WriterConfig {
            batch_size: self.batch_size,
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            channel_capacity: self.channel_capacity,
        }
    }

    pub fn retention_policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            max_age: (self.retention_days > 0)
                .then(|| Duration::from_secs(u64::from(self.retention_days) * 86_400)),
            max_bytes: (self.max_size_mb > 0).then(|| self.max_size_mb * 1024 * 1024),
        }
    }

    pub fn audit_retention(&self) -> AuditRetention {
        AuditRetention {
            max_age: (self.audit_retention_days > 0)
                .then(|| Duration::from_secs(u64::from(self.audit_retention_days) * 86_400)),
            max_rows: Some(self.audit_max_rows),
        }
    }

    pub fn retention_interval(&self) -> Duration {
        Duration::from_secs(self.retention_interval_s)
    }
}
