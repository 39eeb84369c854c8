//! The `[history]` table of the host configuration, validated at load.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use infra::{ConfigError, Problems};
use serde::Deserialize;

use super::HistoryStore;
use super::error::HistoryError;
use super::postgres::{PostgresOptions, PostgresStore};
use super::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use super::types::{AuditRetention, RetentionPolicy};
use super::writer::WriterConfig;

/// `[history]` in the host configuration: which backend keeps the history (`backend`, with
/// that backend's own keys beside it) and the keys common to both. Examples:
///
/// ```toml
/// [history]
/// backend = "sqlite"          # the default when absent
/// path = "/var/lib/host-app/history.db"
/// synchronous = "normal"
/// open_window_max_mb = 16
/// batch_size = 5000
/// retention_days = 90
///
/// [history]
/// backend = "postgres"
/// url = "postgresql://sparkplug@127.0.0.1:5432/history"
/// password_file = "/etc/host-app/pg-password"
/// partition_hours = 24
/// sslmode = "verify-full"     # TLS, the server checked; "disable" (the default) for none
/// ca_file = "/etc/host-app/pg-ca.pem"
/// ```
///
/// The file is read flat (every key at the top of `[history]`) so each problem is named by
/// its key and place; [`HistoryBackend`] is the tagged result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    pub backend: HistoryBackend,
    /// Commit once this many samples are pending.
    pub batch_size: usize,
    /// Commit pending samples at most this long after the first arrived.
    pub flush_interval_ms: u64,
    /// Sample batches queued before ingest waits for the database.
    pub channel_capacity: usize,
    /// Delete samples older than this many days; 0 keeps them for ever.
    pub retention_days: u32,
    /// Keep the samples under this many MiB by deleting the oldest; 0 = no limit. SQLite:
    /// the database file; PostgreSQL: the samples' partitions, dropped oldest first.
    pub max_size_mb: u64,
    /// Delete audit entries older than this many days; 0 keeps them by age (the row limit
    /// still applies). Apart from `retention_days`: sample retention never deletes them.
    pub audit_retention_days: u32,
    /// Keep at most this many audit entries, deleting the oldest, so a flood of writes
    /// cannot fill the disk.
    pub audit_max_rows: u64,
    /// Seconds between retention runs.
    pub retention_interval_s: u64,
}

/// The backend that keeps the history, tagged by `backend` in `[history]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryBackend {
    /// An embedded SQLite file (the default).
    Sqlite(SqliteConfig),
    /// A PostgreSQL database, which several host instances may share.
    Postgres(PostgresConfig),
}

/// `backend = "sqlite"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// The SQLite database file (created if absent).
    pub path: PathBuf,
    /// `normal` (WAL: never corrupts, may lose the last commits on power loss) or `full`
    /// (an fsync per commit).
    pub synchronous: Synchronous,
    /// Most MiB the samples of the open (not yet chunked) windows hold in memory; reaching
    /// it writes them to the database early (a flood), so memory stays bounded.
    pub open_window_max_mb: u64,
}

/// `backend = "postgres"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgresql://user@host:port/database` (or the key=value form); never a password.
    pub url: String,
    /// A file holding the password, if the server asks for one.
    pub password_file: Option<PathBuf>,
    /// Width of one partition of the samples table, fixed when the database is created.
    pub partition_hours: u32,
    /// Whether the connection is encrypted (and the server checked).
    pub sslmode: PostgresSslMode,
    /// PEM CA certificates the server's certificate must chain to (`verify-full`).
    pub ca_file: Option<PathBuf>,
}

/// `history.sslmode`, as libpq spells its modes (the two this host offers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresSslMode {
    /// No TLS: loopback or a trusted network.
    #[default]
    Disable,
    /// TLS required; the server's certificate must chain to `ca_file` and name the URL's
    /// host.
    VerifyFull,
}

/// Which backend, as `backend` spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BackendKind {
    #[default]
    Sqlite,
    Postgres,
}

/// `[history]` as written: every key of every backend, so serde names each problem by its
/// key and place; [`Raw::into_config`] checks which belong to the chosen backend.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    backend: BackendKind,
    // SQLite
    path: Option<PathBuf>,
    synchronous: Option<Synchronous>,
    open_window_max_mb: Option<u64>,
    // PostgreSQL
    url: Option<String>,
    password_file: Option<PathBuf>,
    partition_hours: Option<u32>,
    sslmode: Option<PostgresSslMode>,
    ca_file: Option<PathBuf>,
    // Common
    #[serde(default = "defaults::batch_size")]
    batch_size: usize,
    #[serde(default = "defaults::flush_interval_ms")]
    flush_interval_ms: u64,
    #[serde(default = "defaults::channel_capacity")]
    channel_capacity: usize,
    #[serde(default)]
    retention_days: u32,
    #[serde(default)]
    max_size_mb: u64,
    #[serde(default = "defaults::audit_retention_days")]
    audit_retention_days: u32,
    #[serde(default = "defaults::audit_max_rows")]
    audit_max_rows: u64,
    #[serde(default = "defaults::retention_interval_s")]
    retention_interval_s: u64,
}

impl Raw {
    fn into_config(self) -> Result<HistoryConfig, ConfigError> {
        let mut problems = Problems::new();
        let mut foreign = |key: &str, given: bool, owner: &str| {
            if given {
                problems.push(
                    format!("history.{key}"),
                    format!("belongs to backend = \"{owner}\", not this one"),
                );
            }
        };
        let backend = match self.backend {
            BackendKind::Sqlite => {
                foreign("url", self.url.is_some(), "postgres");
                foreign("password_file", self.password_file.is_some(), "postgres");
                foreign(
                    "partition_hours",
                    self.partition_hours.is_some(),
                    "postgres",
                );
                foreign("sslmode", self.sslmode.is_some(), "postgres");
                foreign("ca_file", self.ca_file.is_some(), "postgres");
                match self.path {
                    Some(path) => Some(HistoryBackend::Sqlite(SqliteConfig {
                        path,
                        synchronous: self.synchronous.unwrap_or_default(),
                        open_window_max_mb: self
                            .open_window_max_mb
                            .unwrap_or_else(defaults::open_window_max_mb),
                    })),
                    None => {
                        problems.push("history.path", "missing: the SQLite database file");
                        None
                    }
                }
            }
            BackendKind::Postgres => {
                foreign("path", self.path.is_some(), "sqlite");
                foreign("synchronous", self.synchronous.is_some(), "sqlite");
                foreign(
                    "open_window_max_mb",
                    self.open_window_max_mb.is_some(),
                    "sqlite",
                );
                match self.url {
                    Some(url) => Some(HistoryBackend::Postgres(PostgresConfig {
                        url,
                        password_file: self.password_file,
                        partition_hours: self
                            .partition_hours
                            .unwrap_or_else(defaults::partition_hours),
                        sslmode: self.sslmode.unwrap_or_default(),
                        ca_file: self.ca_file,
                    })),
                    None => {
                        problems.push("history.url", "missing: the PostgreSQL server's URL");
                        None
                    }
                }
            }
        };
        let config = backend.map(|backend| HistoryConfig {
            backend,
            batch_size: self.batch_size,
            flush_interval_ms: self.flush_interval_ms,
            channel_capacity: self.channel_capacity,
            retention_days: self.retention_days,
            max_size_mb: self.max_size_mb,
            audit_retention_days: self.audit_retention_days,
            audit_max_rows: self.audit_max_rows,
            retention_interval_s: self.retention_interval_s,
        });
        problems.complete(config)
    }
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
    pub fn partition_hours() -> u32 {
        24
    }
    pub fn open_window_max_mb() -> u64 {
        super::SqliteOptions::DEFAULT_OPEN_WINDOW_MAX_BYTES / (1024 * 1024)
    }
}

#[derive(Deserialize)]
struct Document {
    history: Option<Raw>,
}

impl HistoryConfig {
    /// Reads `[history]` from a host configuration document (other tables are left to
    /// their owners) and validates it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let document: Document =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text))?;
        let config = document
            .history
            .ok_or_else(|| ConfigError::new("history", "missing table"))?
            .into_config()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value is in its working range; each bad one is named `history.<key>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        match &self.backend {
            HistoryBackend::Sqlite(sqlite) => {
                if sqlite.path.as_os_str().is_empty() {
                    problems.push("history.path", "must name the database file");
                } else if sqlite.path.is_dir() {
                    problems.push("history.path", "is a directory; name the database file");
                }
                if !(1..=4_096).contains(&sqlite.open_window_max_mb) {
                    problems.push("history.open_window_max_mb", "must be 1 to 4096 MiB");
                }
            }
            HistoryBackend::Postgres(pg) => pg.check(&mut problems),
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
        problems.finish(())
    }

    /// Opens (creating if need be) the configured store. Blocking: connects, creates or
    /// migrates the schema.
    pub fn build(&self) -> Result<Arc<dyn HistoryStore>, HistoryError> {
        Ok(match &self.backend {
            HistoryBackend::Sqlite(sqlite) => {
                Arc::new(SqliteStore::open(&sqlite.path, &sqlite.options())?)
            }
            HistoryBackend::Postgres(pg) => Arc::new(PostgresStore::open(&pg.options()?)?),
        })
    }

    /// Where the history is, for people: the file, or the server's URL.
    pub fn location(&self) -> String {
        match &self.backend {
            HistoryBackend::Sqlite(sqlite) => sqlite.path.display().to_string(),
            HistoryBackend::Postgres(pg) => pg.url.clone(),
        }
    }

    /// The SQLite file, when that is the backend.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.backend {
            HistoryBackend::Sqlite(sqlite) => Some(&sqlite.path),
            HistoryBackend::Postgres(_) => None,
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

impl SqliteConfig {
    pub fn options(&self) -> SqliteOptions {
        SqliteOptions {
            synchronous: self.synchronous,
            open_window_max_bytes: self.open_window_max_mb * 1024 * 1024,
        }
    }
}

impl PostgresConfig {
    fn check(&self, problems: &mut Problems) {
        match self.url.parse::<postgres::Config>() {
            Err(e) => problems.push("history.url", format!("not a PostgreSQL URL: {e}")),
            Ok(parsed) => {
                if parsed.get_password().is_some() {
                    problems.push(
                        "history.url",
                        "holds a password; put it in the file named by history.password_file",
                    );
                }
                if parsed.get_hosts().is_empty() {
                    problems.push("history.url", "names no host");
                }
                if parsed.get_ssl_mode() != postgres::config::SslMode::Prefer {
                    problems.push("history.url", "sets sslmode; use history.sslmode");
                }
            }
        }
        match (self.sslmode, &self.ca_file) {
            (PostgresSslMode::VerifyFull, None) => problems.push(
                "history.ca_file",
                "missing: required with history.sslmode = \"verify-full\"",
            ),
            (PostgresSslMode::VerifyFull, Some(_)) => {
                if let Ok(Some(tls)) = self.tls()
                    && let Err(e) = infra::tls::client_config(&tls)
                {
                    problems.push(e.key("history"), e);
                }
            }
            (PostgresSslMode::Disable, Some(_)) => problems.push(
                "history.ca_file",
                "does nothing with history.sslmode = \"disable\"",
            ),
            (PostgresSslMode::Disable, None) => {}
        }
        if let Some(path) = &self.password_file
            && let Err(e) = infra::secret::read_secret_file(path)
        {
            problems.push("history.password_file", e);
        }
        if !(1..=8_760).contains(&self.partition_hours) {
            problems.push("history.partition_hours", "must be 1 to 8760 hours");
        }
    }

    /// The connection settings, with the password read from its file.
    pub fn options(&self) -> Result<PostgresOptions, HistoryError> {
        let password = match &self.password_file {
            Some(path) => {
                Some(
                    infra::secret::read_secret_file(path).map_err(|e| HistoryError::Open {
                        path: PathBuf::from(&self.url),
                        source: Box::new(e),
                    })?,
                )
            }
            None => None,
        };
        Ok(PostgresOptions {
            url: self.url.clone(),
            password,
            partition: Duration::from_secs(u64::from(self.partition_hours) * 3_600),
            tls: self.tls().map_err(|e| HistoryError::Open {
                path: PathBuf::from(&self.url),
                source: e.into(),
            })?,
        })
    }

    /// TLS to the server, if `sslmode` asks for it.
    fn tls(&self) -> Result<Option<infra::tls::ClientTls>, String> {
        match (self.sslmode, &self.ca_file) {
            (PostgresSslMode::Disable, _) => Ok(None),
            (PostgresSslMode::VerifyFull, Some(ca_file)) => Ok(Some(infra::tls::ClientTls {
                ca_file: ca_file.clone(),
                server_name: None,
                client_auth: None,
            })),
            (PostgresSslMode::VerifyFull, None) => {
                Err("history.sslmode = \"verify-full\" without history.ca_file".into())
            }
        }
    }
}
