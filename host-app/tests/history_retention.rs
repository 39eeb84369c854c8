//! Retention on a real SQLite file: by size, and the retention task beside ingest (the
//! retention both backends share is in history_backends.rs).

use std::sync::Arc;
use std::time::Duration;

use host_app::history::{AuditRetention, HistoryStore, RetentionPolicy, RetentionTask, TimeRange};
use host_app_testkit::history::{
    TempStore, audit_entry, audit_timestamps, count, register, series,
};

const T0: u64 = 1_700_000_000_000;
const DAY_MS: u64 = 86_400_000;
const MINUTE_MS: u64 = 60_000;

/// Applies the policy step by step until done; returns (steps, deleted).
fn run_to_completion(
    store: &dyn HistoryStore,
    policy: &RetentionPolicy,
    now: u64,
    rows: u32,
) -> (u32, u64) {
    let (mut steps, mut deleted) = (0, 0);
    for _ in 0..100_000 {
        let step = store.apply_retention(policy, now, rows).unwrap();
        steps += 1;
        deleted += step.deleted;
        assert!(
            step.deleted <= u64::from(rows),
            "a step deleted {} > {rows}",
            step.deleted
        );
        if !step.more {
            return (steps, deleted);
        }
    }
    panic!("retention did not finish in 100000 steps");
}

#[test]
fn size_retention_shrinks_the_file_under_the_limit_keeping_the_newest() {
    let t = TempStore::new();
    let metrics: Vec<_> = (0..10)
        .map(|i| register(&*t.store, &format!("M{i}")))
        .collect();
    // Enough to exceed four times the limit even at a few bytes per sample.
    let per_metric = 80_000;
    for &id in &metrics {
        for chunk in series(id, T0, per_metric, 1_000).chunks(5_000) {
            t.store.append(chunk).unwrap();
        }
    }
    t.store.checkpoint().unwrap();
    let before = std::fs::metadata(t.path()).unwrap().len();
    let limit: u64 = 1024 * 1024;
    assert!(
        before > 4 * limit,
        "test data must exceed the limit: {before} bytes"
    );

    let policy = RetentionPolicy {
        max_age: None,
        max_bytes: Some(limit),
    };
    let (steps, deleted) = run_to_completion(&*t.store, &policy, T0 + per_metric * 1_000, 2_000);
    assert!(steps > 1 && deleted > 0);
    t.store.checkpoint().unwrap();
    let after = std::fs::metadata(t.path()).unwrap().len();
    assert!(after <= limit, "file is {after} bytes, limit {limit}");
    assert_eq!(t.store.database_bytes().unwrap(), after);

    let newest = T0 + (per_metric - 1) * 1_000;
    let mut kept_total = 0;
    for &id in &metrics {
        let kept = t
            .store
            .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
            .unwrap();
        assert!(
            !kept.is_empty(),
            "size retention must not empty a metric here"
        );
        assert_eq!(kept.last().unwrap().ts, newest, "the newest sample is kept");
        // What is kept is a contiguous newest suffix: only the oldest went.
        let first = kept[0].ts;
        assert_eq!(kept.len() as u64, (newest - first) / 1_000 + 1);
        kept_total += kept.len() as u64;
    }
    assert_eq!(kept_total + deleted, 10 * per_metric);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_task_applies_the_policy_periodically() {
    let t = TempStore::new();
    let id = register(&*t.store, "Old");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Two days of minute samples ending now; keep one day.
    let start = now_ms - 2 * DAY_MS;
    t.store
        .append(&series(id, start, 2 * 24 * 60, MINUTE_MS))
        .unwrap();
    let store: Arc<dyn HistoryStore> = t.store.clone();
    let task = RetentionTask::spawn(
        store,
        RetentionPolicy {
            max_age: Some(Duration::from_millis(DAY_MS)),
            max_bytes: None,
        },
        AuditRetention::default(),
        Duration::from_millis(10),
    );
    let mut remaining = count(&*t.store, id);
    for _ in 0..500 {
        if remaining <= 24 * 60 + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        remaining = count(&*t.store, id);
    }
    task.shutdown().await;
    let oldest = t.store.range(id, TimeRange::new(0, u64::MAX), 1).unwrap()[0].ts;
    assert!(remaining <= 24 * 60 + 1, "{remaining} samples left");
    assert!(
        oldest >= now_ms - DAY_MS,
        "a sample older than a day is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_beside_ingest_without_losing_new_samples() {
    let t = TempStore::new();
    let id = register(&*t.store, "Busy");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Three days of minute samples ending two days ago (all older than the one day kept),
    // then fresh 100 ms samples streaming in.
    let old = series(id, now_ms - 5 * DAY_MS, 3 * 24 * 60, MINUTE_MS);
    t.store.append(&old).unwrap();
    let store: Arc<dyn HistoryStore> = t.store.clone();
    let retention = RetentionTask::spawn(
        store.clone(),
        RetentionPolicy {
            max_age: Some(Duration::from_millis(DAY_MS)),
            max_bytes: None,
        },
        AuditRetention::default(),
        Duration::from_millis(5),
    );
    let (writer, task) = host_app::history::HistoryWriter::spawn(
        store,
        host_app::history::WriterConfig {
            batch_size: 500,
            flush_interval: Duration::from_millis(20),
            channel_capacity: 4,
        },
    );
    let fresh = series(id, now_ms, 30_000, 100);
    for chunk in fresh.chunks(100) {
        writer.append(chunk.to_vec()).await.unwrap();
    }
    writer.shutdown().await.unwrap();
    let stats = task.join().await.unwrap();
    assert_eq!((stats.stored.inserted, stats.lost), (30_000, 0));
    // Let retention finish the old data (bounded wait), then stop it.
    let mut left = count(&*t.store, id);
    for _ in 0..500 {
        if left == fresh.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = count(&*t.store, id);
    }
    retention.shutdown().await;
    let kept = t
        .store
        .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
        .unwrap();
    assert_eq!(kept, fresh, "old samples gone, every fresh one kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_task_bounds_an_audit_flood_by_rows() {
    let t = TempStore::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for i in 0..2_000 {
        t.store
            .audit_append(&audit_entry(now_ms - 2_000 + i))
            .unwrap();
    }
    let store: Arc<dyn HistoryStore> = t.store.clone();
    let task = RetentionTask::spawn(
        store,
        RetentionPolicy::default(),
        AuditRetention {
            max_age: None,
            max_rows: Some(500),
        },
        Duration::from_millis(10),
    );
    let mut kept = audit_timestamps(&*t.store);
    for _ in 0..500 {
        if kept.len() <= 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        kept = audit_timestamps(&*t.store);
    }
    task.shutdown().await;
    assert_eq!(kept.len(), 500);
    assert_eq!(
        kept[0],
        now_ms - 500,
        "the newest entries are the ones kept"
    );
}
