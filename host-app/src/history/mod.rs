//! History: every sample the host ingests, kept exactly once per (metric, timestamp), plus the
//! audit log of operator commands.
//!
//! The store sits behind [`HistoryStore`], a narrow synchronous seam with two backends,
//! chosen by `[history] backend` ([`HistoryConfig::build`]): [`SqliteStore`], an embedded
//! file, and [`PostgresStore`], a database several host instances share.
//!
//! The seam is **blocking** on purpose: embedded SQLite is blocking, the PostgreSQL client
//! drives its connections on a runtime of its own, and one trait shape keeps every backend
//! simple. Every method may still be called from async code: both backends run their
//! database work through `blocking::run`, which hands a multi-threaded runtime's worker to
//! its other tasks for the call's length (`block_in_place`) and, on a current-thread
//! runtime, runs it on a thread of its own (the PostgreSQL client cannot run inside a
//! runtime at all). The host keeps database work off its workers anyway:
//! - ingest sends sample batches to a [`HistoryWriter`] (bounded channel, backpressure by
//!   `.await`); its task groups them into commits by size or time and runs each commit on
//!   the blocking pool, one commit in flight while the next fills (under a flood commits
//!   grow, up to 8 batch sizes, so their fixed cost is amortised);
//! - [`RetentionTask`] runs retention in bounded steps the same way;
//! - queries (trend, latest, audit) are called through `tokio::task::spawn_blocking` or from
//!   a blocking handler (account events reach the audit log from a thread of their own);
//!   both backends answer them on reader connections that never wait for the writer;
//! - the one call made on a worker, [`HistoryStore::register_metric`] (under the tracker
//!   lock at a birth), answers from memory in both backends.
//!
//! Exactly once: a sample is identified by (metric, timestamp). The first copy stored wins;
//! live samples, replays flagged `is_historical` and windows re-sent after a half-open link
//! are all de-duplicated by the store, across batches and restarts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), host_app::history::HistoryError> {
//! use std::sync::Arc;
//! use host_app::history::*;
//! let store = Arc::new(SqliteStore::open("history.db", &SqliteOptions::default())?);
//! let id = store.register_metric(
//!     &MetricKey::node("Plant1", "Edge1", "Pump/Speed"),
//!     &MetricMeta { datatype: "Double".into(), units: Some("rpm".into()) },
//! )?;
//! let (writer, task) = HistoryWriter::spawn(store.clone(), WriterConfig::default());
//! writer.append(vec![Sample {
//!     metric: id, ts: 1_700_000_000_000, value: SampleValue::F64(1480.0),
//!     quality: Quality::GOOD, is_historical: false,
//! }]).await?;
//! drop(writer);
//! task.join().await?; // flushes what was queued
//! let trend = store.downsample(id, TimeRange::new(1_700_000_000_000, 1_700_086_400_000), 1000)?;
//! # let _ = trend; Ok(()) }
//! ```

mod blocking;
mod config;
mod error;
mod postgres;
mod retention;
mod sqlite;
mod types;
mod writer;

pub use config::{HistoryBackend, HistoryConfig, PostgresConfig, PostgresSslMode, SqliteConfig};
pub use error::{BoxError, HistoryError, Result};
pub use postgres::{PostgresOptions, PostgresStore};
pub use retention::RetentionTask;
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};
pub use types::{
    AppendOutcome, AuditEntry, AuditQuery, AuditRecord, AuditRetention, Bucket, CommandOutcome,
    MetricId, MetricInfo, MetricKey, MetricMeta, Quality, RetentionPolicy, RetentionStep, Sample,
    SampleValue, TimeRange, TimestampMs,
};
pub use writer::{HistoryWriter, WriterConfig, WriterMetrics, WriterStats, WriterTask};

/// The seam between the host and its history backend. All methods block; each may be called
/// from a plain thread or straight from async code (see the module docs).
pub trait HistoryStore: Send + Sync {
    /// Registers a metric (or updates its birth metadata) and returns its compact id; the
    /// same key always maps to the same id. Called under the host's tracker lock at every
    /// birth, so it must answer without waiting for a commit in flight (the SQLite store
    /// answers from memory and writes the row with the next sample commit).
    fn register_metric(&self, key: &MetricKey, meta: &MetricMeta) -> Result<MetricId>;

    /// The id of a registered metric, if any.
    fn resolve_metric(&self, key: &MetricKey) -> Result<Option<MetricId>>;

    /// Every registered metric, by id.
    fn metrics(&self) -> Result<Vec<MetricInfo>>;

    /// Stores a batch atomically. A sample whose (metric, ts) is already stored is ignored
    /// (counted as a duplicate): replays and re-sent windows never double the record.
    /// Metric ids must come from [`HistoryStore::register_metric`] on this store.
    fn append(&self, samples: &[Sample]) -> Result<AppendOutcome>;

    /// Samples of one metric in `range`, oldest first, at most `limit`.
    fn range(&self, metric: MetricId, range: TimeRange, limit: u32) -> Result<Vec<Sample>>;

    /// `range` split into `buckets` equal buckets (see [`Bucket`]); empty buckets left out.
    fn downsample(&self, metric: MetricId, range: TimeRange, buckets: u32) -> Result<Vec<Bucket>>;

    /// The newest stored sample of each listed metric that has one.
    fn latest(&self, metrics: &[MetricId]) -> Result<Vec<Sample>>;

    /// Deletes at most `max_rows` samples that the policy no longer keeps, and reclaims the
    /// space. Bounded so ingest waits at most one short step; call again while `more`.
    fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        now: TimestampMs,
        max_rows: u32,
    ) -> Result<RetentionStep>;

    /// Deletes at most `max_rows` audit entries that `policy` no longer keeps, oldest
    /// first; samples are untouched. Call again while `more`.
    fn apply_audit_retention(
        &self,
        policy: &AuditRetention,
        now: TimestampMs,
        max_rows: u32,
    ) -> Result<RetentionStep>;

    /// Appends one command to the audit log and returns its sequence number. Durable when
    /// this returns (not batched).
    fn audit_append(&self, entry: &AuditEntry) -> Result<i64>;

    /// Audit entries matching the query, newest first.
    fn audit_query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>>;

    /// Writes what the store holds only in memory (registrations, recent samples) to the
    /// database; called at stop. A store whose every commit is complete does nothing more.
    fn checkpoint(&self) -> Result<()> {
        Ok(())
    }
}
