//! The batch writer: channel -> batches -> SQLite; commits by size and by time, flushes on
//! shutdown, de-duplicates replays, and readers work while it ingests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use host_app::history::{
    AppendOutcome, AuditEntry, AuditQuery, AuditRecord, AuditRetention, Bucket, HistoryError,
    HistoryStore, HistoryWriter, MetricId, MetricInfo, MetricKey, MetricMeta, Result,
    RetentionPolicy, RetentionStep, Sample, SampleValue, TimeRange, WriterConfig,
};
use host_app_testkit::history::{TempStore, count, register, series};

const T0: u64 = 1_700_000_000_000;

fn config(batch_size: usize, flush_interval: Duration) -> WriterConfig {
    WriterConfig {
        batch_size,
        flush_interval,
        channel_capacity: 8,
    }
}

/// Polls `f` until it is true, at most 500 times 10 ms apart.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_everything_queued_from_every_producer() {
    let t = TempStore::new();
    let ids: Vec<_> = (0..4)
        .map(|i| register(&*t.store, &format!("P{i}")))
        .collect();
    // Neither size nor time would ever commit: only the shutdown flush can.
    let (writer, task) = HistoryWriter::spawn(
        t.store.clone(),
        config(1_000_000, Duration::from_secs(3_600)),
    );
    let producers: Vec<_> = ids
        .iter()
        .map(|&id| {
            let writer = writer.clone();
            tokio::spawn(async move {
                for chunk in series(id, T0, 5_000, 1_000).chunks(7) {
                    writer.append(chunk.to_vec()).await.unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    writer.shutdown().await.unwrap();
    let stats = task.join().await.unwrap();
    assert_eq!(
        (stats.received, stats.stored.inserted, stats.lost),
        (20_000, 20_000, 0)
    );
    assert_eq!(stats.commits, 1, "only the shutdown flush committed");
    for &id in &ids {
        assert_eq!(count(&*t.store, id), 5_000);
    }
    assert!(
        writer.append(series(ids[0], T0, 1, 1)).await.is_err(),
        "a stopped writer refuses samples"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_writer_handle_also_flushes() {
    let t = TempStore::new();
    let id = register(&*t.store, "P");
    let (writer, task) = HistoryWriter::spawn(
        t.store.clone(),
        config(1_000_000, Duration::from_secs(3_600)),
    );
    writer.append(series(id, T0, 123, 1_000)).await.unwrap();
    drop(writer);
    let stats = task.join().await.unwrap();
    assert_eq!(stats.stored.inserted, 123);
    assert_eq!(count(&*t.store, id), 123);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_by_size_without_waiting_for_the_interval() {
    let t = TempStore::new();
    let id = register(&*t.store, "P");
    let (writer, task) =
        HistoryWriter::spawn(t.store.clone(), config(100, Duration::from_secs(3_600)));
    for chunk in series(id, T0, 250, 1_000).chunks(50) {
        writer.append(chunk.to_vec()).await.unwrap();
    }
    // The interval is an hour: only reaching the batch size can have committed these.
    assert!(eventually(|| count(&*t.store, id) >= 200).await);
    writer.shutdown().await.unwrap();
    let stats = task.join().await.unwrap();
    assert!(stats.commits >= 2, "{stats:?}");
    assert_eq!(count(&*t.store, id), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_by_time_when_the_batch_stays_small() {
    let t = TempStore::new();
    let id = register(&*t.store, "P");
    let (writer, task) = HistoryWriter::spawn(
        t.store.clone(),
        config(1_000_000, Duration::from_millis(20)),
    );
    writer.append(series(id, T0, 3, 1_000)).await.unwrap();
    assert!(
        eventually(|| count(&*t.store, id) == 3).await,
        "the flush interval commits a small batch"
    );
    writer.shutdown().await.unwrap();
    let stats = task.join().await.unwrap();
    assert_eq!(stats.commits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_query_consistent_snapshots_while_ingest_runs() {
    let t = TempStore::new();
    let id = register(&*t.store, "P");
    let total = 100_000_u64;

    // An independent connection holding a read snapshot open: WAL lets ingest commit anyway.
    let snapshot = rusqlite::Connection::open(t.path()).unwrap();
    snapshot.execute_batch("BEGIN").unwrap();
    let before: i64 = snapshot
        .query_row("SELECT count(*) FROM sample_chunks", [], |r| r.get(0))
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (t.store.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut queries, mut last_count) = (0_u64, 0_usize);
            loop {
                let finished = done.load(Ordering::Acquire);
                let got = store
                    .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
                    .unwrap();
                // Each read is a committed prefix of the series, in order, never shrinking.
                assert!(got.len() >= last_count);
                assert!(
                    got.iter()
                        .enumerate()
                        .all(|(i, s)| s.ts == T0 + i as u64 * 1_000)
                );
                let trend = store
                    .downsample(id, TimeRange::new(T0, T0 + total * 1_000), 100)
                    .unwrap();
                assert!(trend.iter().map(|b| b.count).sum::<u64>() >= got.len() as u64);
                last_count = got.len();
                queries += 1;
                if finished || queries >= 100_000 {
                    return (queries, last_count);
                }
            }
        })
    };

    let (writer, task) =
        HistoryWriter::spawn(t.store.clone(), config(5_000, Duration::from_millis(250)));
    for chunk in series(id, T0, total, 1_000).chunks(1_000) {
        writer.append(chunk.to_vec()).await.unwrap();
    }
    writer.shutdown().await.unwrap();
    let stats = task.join().await.unwrap();
    done.store(true, Ordering::Release);
    let (queries, last_seen) = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();

    assert_eq!(stats.stored.inserted, total);
    assert!(queries >= 1);
    assert_eq!(
        last_seen as u64, total,
        "the read after ingest ended sees everything"
    );
    let still: i64 = snapshot
        .query_row("SELECT count(*) FROM sample_chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        still, before,
        "the open snapshot kept its view while ingest committed"
    );
    snapshot.execute_batch("COMMIT").unwrap();
    let latest = t.store.latest(&[id]).unwrap();
    assert_eq!(latest[0].ts, T0 + (total - 1) * 1_000);
    assert_eq!(
        latest[0].value,
        SampleValue::F64((latest[0].ts as f64 / 1000.0).sin() * 100.0)
    );
}

/// A backend whose disk is gone: every append fails. The writer must report it, keep the
/// samples for retries, count what is still unstored at shutdown as lost, and keep running.
struct FailingStore;

impl HistoryStore for FailingStore {
    fn register_metric(&self, _: &MetricKey, _: &MetricMeta) -> Result<MetricId> {
        Ok(MetricId(1))
    }
    fn resolve_metric(&self, _: &MetricKey) -> Result<Option<MetricId>> {
        Ok(None)
    }
    fn metrics(&self) -> Result<Vec<MetricInfo>> {
        Ok(Vec::new())
    }
    fn append(&self, samples: &[Sample]) -> Result<AppendOutcome> {
        Err(HistoryError::Backend {
            path: "/nonexistent/history.db".into(),
            what: "insert sample",
            source: format!("disk I/O error writing {} samples", samples.len()).into(),
        })
    }
    fn range(&self, _: MetricId, _: TimeRange, _: u32) -> Result<Vec<Sample>> {
        Ok(Vec::new())
    }
    fn downsample(&self, _: MetricId, _: TimeRange, _: u32) -> Result<Vec<Bucket>> {
        Ok(Vec::new())
    }
    fn latest(&self, _: &[MetricId]) -> Result<Vec<Sample>> {
        Ok(Vec::new())
    }
    fn apply_retention(&self, _: &RetentionPolicy, _: u64, _: u32) -> Result<RetentionStep> {
        Ok(RetentionStep::default())
    }
    fn apply_audit_retention(&self, _: &AuditRetention, _: u64, _: u32) -> Result<RetentionStep> {
        Ok(RetentionStep::default())
    }
    fn audit_append(&self, _: &AuditEntry) -> Result<i64> {
        Ok(0)
    }
    fn audit_query(&self, _: &AuditQuery) -> Result<Vec<AuditRecord>> {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_commit_is_reported_at_flush_counted_and_ingest_goes_on() {
    let (writer, task) = HistoryWriter::spawn(
        Arc::new(FailingStore),
        config(10, Duration::from_millis(20)),
    );
    let id = MetricId(1);
    writer.append(series(id, T0, 25, 1_000)).await.unwrap();
    let err = writer.flush().await.unwrap_err();
    assert!(err.to_string().contains("disk I/O error"), "{err}");
    // The failure was reported once; the writer still accepts samples.
    writer.append(series(id, T0, 5, 1_000)).await.unwrap();
    writer.shutdown().await.unwrap();
    let stats = task.join().await.unwrap();
    assert_eq!(
        (stats.received, stats.lost, stats.stored.inserted),
        (30, 30, 0)
    );
    assert!(stats.failed_commits >= 2, "{stats:?}");
}

/// Another process holds the history file's write lock for longer than the busy timeout
/// (a backup tool, say): the commit fails with SQLITE_BUSY, the samples wait, and the
/// retry after the lock is gone stores every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_refused_by_a_locked_file_is_retried_and_nothing_is_lost() {
    let t = TempStore::new();
    let id = register(&*t.store, "Pressure");
    let locker = rusqlite::Connection::open(t.path()).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (writer, task) =
        HistoryWriter::spawn(t.store.clone(), config(100, Duration::from_millis(20)));
    let samples = series(id, T0, 250, 1_000);
    writer.append(samples[..200].to_vec()).await.unwrap();
    // The first commit waits out the busy timeout and fails; release the lock after it.
    let err = writer.flush().await.unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    locker.execute_batch("COMMIT").unwrap();
    drop(locker);
    writer.append(samples[200..].to_vec()).await.unwrap();
    assert!(
        eventually(|| count(&*t.store, id) == 250).await,
        "stored {} of 250 after the lock went",
        count(&*t.store, id)
    );
    writer.shutdown().await.unwrap();
    let stats = task.join().await.unwrap();
    assert_eq!((stats.stored.inserted, stats.lost), (250, 0), "{stats:?}");
    assert!(stats.failed_commits >= 1, "{stats:?}");
}
