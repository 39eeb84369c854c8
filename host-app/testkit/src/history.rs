//! Helpers shared by the history tests: a store on a real file in a temporary directory.

use std::path::PathBuf;
use std::sync::Arc;

use host_app::history::{
    AuditEntry, AuditQuery, CommandOutcome, HistoryStore, MetricId, MetricKey, MetricMeta, Quality,
    Sample, SampleValue, SqliteOptions, SqliteStore, TimeRange,
};

pub struct TempStore {
    pub dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
}

impl Default for TempStore {
    fn default() -> Self {
        Self::new()
    }
}

impl TempStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(open(&dir.path().join("history.db")));
        Self { dir, store }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("history.db")
    }

    /// Closes the store and opens the same file again.
    pub fn reopen(&mut self) {
        let path = self.path();
        // One store per file: the old one closes before the file opens again.
        let closing = std::mem::replace(
            &mut self.store,
            Arc::new(open(&self.dir.path().join("reopening.db"))),
        );
        drop(closing);
        self.store = Arc::new(open(&path));
    }
}

pub fn open(path: &std::path::Path) -> SqliteStore {
    SqliteStore::open(path, &SqliteOptions::default()).expect("open history store")
}

pub fn register(store: &dyn HistoryStore, name: &str) -> MetricId {
    store
        .register_metric(
            &MetricKey::device("Plant1", "Edge1", "PLC1", name),
            &MetricMeta {
                datatype: "Double".into(),
                units: Some("bar".into()),
            },
        )
        .expect("register metric")
}

pub fn sample(metric: MetricId, ts: u64, value: SampleValue) -> Sample {
    Sample {
        metric,
        ts,
        value,
        quality: Quality::GOOD,
        is_historical: false,
    }
}

/// 1 Hz samples of one metric, value = f(ts).
pub fn series(metric: MetricId, start: u64, count: u64, step_ms: u64) -> Vec<Sample> {
    (0..count)
        .map(|i| {
            let ts = start + i * step_ms;
            sample(
                metric,
                ts,
                SampleValue::F64((ts as f64 / 1000.0).sin() * 100.0),
            )
        })
        .collect()
}

pub fn count(store: &dyn HistoryStore, metric: MetricId) -> usize {
    store
        .range(
            metric,
            host_app::history::TimeRange::new(0, u64::MAX),
            u32::MAX,
        )
        .expect("range")
        .len()
}

/// A command of the audit log at `ts`.
pub fn audit_entry(ts: u64) -> AuditEntry {
    AuditEntry {
        ts,
        user: "alice".into(),
        metric: MetricKey::node("G", "E", "Setpoint"),
        value: "1".into(),
        outcome: CommandOutcome::Sent,
        detail: None,
    }
}

/// Every audit entry's timestamp, oldest first.
pub fn audit_timestamps(store: &dyn HistoryStore) -> Vec<u64> {
    let all = store
        .audit_query(&AuditQuery {
            range: TimeRange::new(0, u64::MAX),
            user: None,
            metric: None,
            limit: u32::MAX,
        })
        .unwrap();
    let mut ts: Vec<u64> = all.iter().map(|r| r.entry.ts).collect();
    ts.sort_unstable();
    ts
}
