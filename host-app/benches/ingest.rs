//! Host ingest throughput: encoded DDATA payloads decoded, tracked and stored, beside the
//! raw SQLite insert rate of the same rows measured in the same run.
//!
//!     cargo bench -p host-app --bench ingest
//!
//! Environment: `INGEST_BENCH_SAMPLES` (default 1000000), `INGEST_BENCH_METRICS` (default
//! 1000 per DDATA), `INGEST_BENCH_ROUNDS` (default 2; the two runs alternate and each
//! keeps its best, so a burst of load from other processes does not fall on one side).
//!
//! - host: every payload goes `Payload::decode_envelope` -> `Tracker::handle` (seq check,
//!   alias resolution through the DBIRTH, typing, quality) -> `HistoryWriter` (batch 5,000,
//!   group commit) -> `SqliteStore`; timed from the first decode until the writer's final
//!   flush has committed everything. Encoding the payloads is not timed.
//! - raw: a plain rusqlite prepared `INSERT` of the same rows in one transaction into an
//!   equivalent table (same DDL, page size, WAL, synchronous, 8 MiB cache) in the same
//!   directory.
//! - decode + track only: the same flood through `Payload::decode_envelope` and
//!   `Tracker::handle` with the samples dropped, to show what the host costs before the store.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{env_u64, value_of};

use host_app::history::{
    HistoryStore, HistoryWriter, MetricId, MetricKey, MetricMeta, SqliteOptions, SqliteStore,
    WriterConfig,
};
use host_app::tracker::{MetricRegistry, Tracker, TrackerConfig};
use sparkplug::{BdSeq, DecodeLimits, MessageType, Metric, Payload, Seq};

const T0: u64 = 1_700_000_000_000;
const RATIO_TARGET: f64 = 0.5;
const ABSOLUTE_TARGET: f64 = 500_000.0;

struct Registry(Arc<SqliteStore>);

impl MetricRegistry for Registry {
    fn register(&mut self, key: &MetricKey, meta: &MetricMeta) -> Option<MetricId> {
        self.0.register_metric(key, meta).ok()
    }
}

/// NBIRTH, DBIRTH of `metrics` Double metrics (aliases 1..), then `steps` DDATA payloads
/// each carrying every metric by alias, with seq continuing from the births.
fn encoded_flood(metrics: u64, steps: u64) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let mut nbirth = Vec::new();
    Payload::new(T0)
        .with_seq(Seq::new(0))
        .with_metric(BdSeq::new(0).to_metric(T0))
        .encode(&mut nbirth)
        .expect("encode NBIRTH");
    let mut dbirth = Payload::new(T0).with_seq(Seq::new(1));
    for m in 0..metrics {
        dbirth = dbirth.with_metric(Metric::new(format!("Tag{m}"), 0.0f64).with_alias(m + 1));
    }
    let mut dbirth_bytes = Vec::new();
    dbirth.encode(&mut dbirth_bytes).expect("encode DBIRTH");
    let mut seq = Seq::new(2);
    let flood = (0..steps)
        .map(|step| {
            let ts = T0 + 1_000 + step * 1_000;
            let mut p = Payload::new(ts).with_seq(seq);
            seq = seq.next();
            for m in 0..metrics {
                let mut metric = Metric::aliased(m + 1, value_of(m, step)).with_timestamp(ts);
                metric.datatype = None; // as DATA messages usually leave it to the birth
                p.metrics.push(metric);
            }
            let mut bytes = Vec::new();
            p.encode(&mut bytes).expect("encode DDATA");
            bytes
        })
        .collect();
    (nbirth, dbirth_bytes, flood)
}

fn host_ingest(
    runtime: &tokio::runtime::Runtime,
    path: &std::path::Path,
    births: (&[u8], &[u8]),
    flood: &[Vec<u8>],
) -> (Duration, u64) {
    let store = Arc::new(SqliteStore::open(path, &SqliteOptions::default()).expect("open store"));
    let mut registry = Registry(store.clone());
    let mut tracker = Tracker::new(TrackerConfig::default());
    let limits = DecodeLimits::default();
    let mut samples = Vec::new();
    let mut actions = Vec::new();
    let mut feed = |mt: MessageType, device: Option<&str>, bytes: &[u8], samples: &mut Vec<_>| {
        let payload = Payload::decode_envelope(bytes, &limits).expect("decode");
        tracker.handle(
            "Bench",
            mt,
            "Edge",
            device,
            payload,
            T0,
            &mut registry,
            samples,
            &mut actions,
        );
        assert!(
            actions
                .iter()
                .all(|a| !matches!(a, host_app::tracker::Action::Rebirth { .. }))
        );
        actions.clear();
    };
    // Births register the metrics; not part of the flood.
    let mut birth_samples = Vec::new();
    feed(MessageType::NBirth, None, births.0, &mut birth_samples);
    feed(
        MessageType::DBirth,
        Some("Dev"),
        births.1,
        &mut birth_samples,
    );
    let stats = runtime.block_on(async {
        let started = Instant::now();
        let (writer, task) = HistoryWriter::spawn(store.clone(), WriterConfig::default());
        for bytes in flood {
            feed(MessageType::DData, Some("Dev"), bytes, &mut samples);
            let batch = std::mem::replace(&mut samples, Vec::with_capacity(1_024));
            writer.append(batch).await.expect("writer open");
        }
        writer.shutdown().await.expect("writer open");
        let stats = task.join().await.expect("writer task");
        (started.elapsed(), stats.stored.inserted)
    });
    drop(store);
    stats
}

/// Decode and track only, samples dropped: what the host itself costs before the store.
fn decode_and_track(births: (&[u8], &[u8]), flood: &[Vec<u8>]) -> (Duration, u64) {
    struct Ids(i64);
    impl MetricRegistry for Ids {
        fn register(&mut self, _: &MetricKey, _: &MetricMeta) -> Option<MetricId> {
            self.0 += 1;
            Some(MetricId(self.0))
        }
    }
    let mut registry = Ids(0);
    let mut tracker = Tracker::new(TrackerConfig::default());
    let limits = DecodeLimits::default();
    let (mut samples, mut actions) = (Vec::new(), Vec::new());
    let mut feed = |mt, device, bytes: &[u8], samples: &mut Vec<_>| {
        let payload = Payload::decode_envelope(bytes, &limits).expect("decode");
        tracker.handle(
            "Bench",
            mt,
            "Edge",
            device,
            payload,
            T0,
            &mut registry,
            samples,
            &mut actions,
        );
    };
    feed(MessageType::NBirth, None, births.0, &mut samples);
    feed(MessageType::DBirth, Some("Dev"), births.1, &mut samples);
    samples.clear();
    let started = Instant::now();
    let mut count = 0;
    for bytes in flood {
        feed(MessageType::DData, Some("Dev"), bytes, &mut samples);
        count += samples.len() as u64;
        samples.clear();
    }
    (started.elapsed(), count)
}

/// The plain-SQLite limit: same table, same settings, one transaction, prepared INSERT.
fn raw_insert(path: &std::path::Path, metrics: u64, steps: u64) -> (Duration, u64) {
    let conn = rusqlite::Connection::open(path).expect("open raw database");
    conn.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL; PRAGMA cache_size = -8192;
         CREATE TABLE samples (metric_id INTEGER NOT NULL, ts INTEGER NOT NULL,
             kind INTEGER NOT NULL, value ANY, quality INTEGER NOT NULL,
             is_historical INTEGER NOT NULL, PRIMARY KEY (metric_id, ts)) STRICT, WITHOUT ROWID;",
    )
    .expect("create raw table");
    let started = Instant::now();
    conn.execute_batch("BEGIN").expect("begin");
    let mut rows = 0;
    {
        let mut insert = conn
            .prepare("INSERT INTO samples VALUES (?1, ?2, 4, ?3, 192, 0)")
            .expect("prepare");
        for step in 0..steps {
            let ts = T0 + 1_000 + step * 1_000;
            for m in 0..metrics {
                rows += insert
                    .execute(rusqlite::params![
                        (m + 1) as i64,
                        ts as i64,
                        value_of(m, step)
                    ])
                    .expect("insert") as u64;
            }
        }
    }
    conn.execute_batch("COMMIT").expect("commit");
    (started.elapsed(), rows)
}

fn rate(samples: u64, elapsed: Duration) -> f64 {
    samples as f64 / elapsed.as_secs_f64()
}

fn main() {
    let metrics = env_u64("INGEST_BENCH_METRICS", 1_000).max(1);
    let samples = env_u64("INGEST_BENCH_SAMPLES", 1_000_000).max(metrics);
    let rounds = env_u64("INGEST_BENCH_ROUNDS", 2).max(1);
    let steps = samples / metrics;
    let samples = steps * metrics;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (nbirth, dbirth, flood) = encoded_flood(metrics, steps);
    let payload_bytes: usize = flood.iter().map(Vec::len).sum();

    let mut best_host = Duration::MAX;
    let mut best_raw = Duration::MAX;
    let mut best_track = Duration::MAX;
    for round in 0..rounds {
        let dir = tempfile::tempdir().expect("temp dir");
        let (host, stored) = host_ingest(
            &runtime,
            &dir.path().join("host.db"),
            (&nbirth, &dbirth),
            &flood,
        );
        assert_eq!(stored, samples, "every flood sample stored once");
        let (raw, rows) = raw_insert(&dir.path().join("raw.db"), metrics, steps);
        assert_eq!(rows, samples);
        eprintln!(
            "round {}: host {:.2} s, raw {:.2} s",
            round + 1,
            host.as_secs_f64(),
            raw.as_secs_f64()
        );
        best_host = best_host.min(host);
        best_raw = best_raw.min(raw);
        let (track, tracked) = decode_and_track((&nbirth, &dbirth), &flood);
        assert_eq!(tracked, samples);
        best_track = best_track.min(track);
    }

    let host_rate = rate(samples, best_host);
    let raw_rate = rate(samples, best_raw);
    let ratio = host_rate / raw_rate;
    println!(
        "{samples} samples: {steps} DDATA payloads of {metrics} aliased Double metrics ({:.1} MB encoded); best of {rounds} alternating rounds",
        payload_bytes as f64 / 1e6
    );
    println!();
    println!("| measure | ours | limit / target | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| ingest: decode + track + store | {host_rate:.0} samples/s ({:.2} s) | raw prepared INSERT, one transaction, same settings: {raw_rate:.0} samples/s ({:.2} s) | ours/raw = **{ratio:.2}** (target >= {RATIO_TARGET:.2}) |",
        best_host.as_secs_f64(),
        best_raw.as_secs_f64()
    );
    println!(
        "| decode + track only (samples dropped) | {:.0} samples/s ({:.2} s) | | share of the host run: {:.0}% |",
        rate(samples, best_track),
        best_track.as_secs_f64(),
        100.0 * best_track.as_secs_f64() / best_host.as_secs_f64()
    );
    println!(
        "| ingest, absolute | {host_rate:.0} samples/s | target {ABSOLUTE_TARGET:.0} samples/s | **{:.2}**{} |",
        host_rate / ABSOLUTE_TARGET,
        if host_rate >= ABSOLUTE_TARGET {
            ""
        } else {
            " (not met)"
        }
    );
}
