//! Errors of the history store, naming the database file, metric or key involved.

use std::path::PathBuf;

use super::types::{MetricId, TimestampMs};

/// Boxed cause from a backend, so the store's seam carries no backend types.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file or server could not be opened at all.
    #[error("history database {path}: cannot open: {source}")]
    Open { path: PathBuf, source: BoxError },

    /// A read or write failed; `what` says which.
    #[error("history database {path}: {what}: {source}")]
    Backend {
        path: PathBuf,
        what: &'static str,
        source: BoxError,
    },

    /// It opened, but what is there is not a history this build can read.
    #[error("history database {path}: not a history database or corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "history database {path}: stored sample of metric {metric} at {ts} ms is invalid: {reason}"
    )]
    BadRow {
        path: PathBuf,
        metric: MetricId,
        ts: i64,
        reason: String,
    },

    #[error("history database {path}: audit entry {id} is invalid: {reason}")]
    BadAuditRow {
        path: PathBuf,
        id: i64,
        reason: String,
    },

    #[error("metric {metric}: timestamp {ts} ms is beyond what the store can keep")]
    TimestampOutOfRange { metric: MetricId, ts: TimestampMs },

    #[error("history writer has stopped; samples can no longer be queued")]
    WriterClosed,

    #[error("history writer: a batch failed to commit: {0}")]
    CommitFailed(String),

    #[error("history task panicked or was cancelled: {0}")]
    TaskFailed(String),
}

pub type Result<T, E = HistoryError> = std::result::Result<T, E>;
