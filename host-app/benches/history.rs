//! History store throughput and trend latency, each beside its limit measured in the same run.
//!
//!     cargo bench -p host-app --bench history
//!
//! Environment: `HISTORY_BENCH_SAMPLES` (default 2000000) and `HISTORY_BENCH_METRICS`
//! (default 1000) scale the ingest flood; `HISTORY_BENCH_ROUNDS` (default 2) is how many
//! alternating rounds of the three ingest runs are made (best of each is reported).
//!
//! - ingest: a flood of samples (one message per timestamp carrying every metric, as a
//!   Sparkplug DATA payload would) through the real path: channel -> batch writer ->
//!   SQLite. The limit is a plain prepared INSERT of the same rows in one transaction into an
//!   equivalent table with the same settings, on the same disk. Bytes handed to the kernel
//!   during the flood (`wchar`: recent log, WAL, checkpoints) per stored sample beside it.
//! - steady state, the reference plant: 1,000 tags polled at 1 Hz of which about 10 % change
//!   each second (report by exception: 100 samples a second), a commit per second and a WAL
//!   checkpoint per second, for 40 minutes of data (four windows closed): every byte the
//!   process handed to the kernel per stored sample, and the file's bytes per stored sample.
//! - trend: a day of 1 Hz samples of one metric downsampled to 1,000 points, with the last
//!   30 s of every metric still in memory; beside it the same query on today's layout (v1:
//!   a row per sample, the store's own query and aggregation, same data, same run).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{env_u64, value_of};

use host_app::history::{
    HistoryStore, HistoryWriter, MetricId, MetricKey, MetricMeta, Quality, RetentionPolicy,
    RetentionTask, Sample, SampleValue, SqliteOptions, SqliteStore, TimeRange, WriterConfig,
};

const T0: u64 = 1_700_000_000_000;
const INGEST_RATIO_TARGET: f64 = 0.5;
const INGEST_ABSOLUTE_TARGET: f64 = 500_000.0;
const TREND_TARGET_MS: f64 = 50.0;
const WRITTEN_TARGET: f64 = 30.0;
const DISK_TARGET: f64 = 8.0;
const TREND_RUNS: usize = 21;

/// The plain-SQLite limit: same table, same settings, one transaction, prepared INSERT.
/// `cache_kib` 8192 is the store's own writer cache; a larger one shows SQLite's ceiling
/// when a single huge transaction never spills its cache.
fn raw_insert(
    path: &std::path::Path,
    samples: u64,
    metrics: u64,
    cache_kib: u64,
) -> (Duration, u64) {
    let conn = rusqlite::Connection::open(path).expect("open raw database");
    conn.execute_batch(&format!(
        "PRAGMA page_size = 4096; PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL; PRAGMA cache_size = -{cache_kib};
         CREATE TABLE samples (metric_id INTEGER NOT NULL, ts INTEGER NOT NULL,
             kind INTEGER NOT NULL, value ANY, quality INTEGER NOT NULL,
             is_historical INTEGER NOT NULL, PRIMARY KEY (metric_id, ts)) STRICT, WITHOUT ROWID;"
    ))
    .expect("create raw table");
    let started = Instant::now();
    conn.execute_batch("BEGIN").expect("begin");
    {
        let mut insert = conn
            .prepare("INSERT INTO samples VALUES (?1, ?2, 4, ?3, 192, 0)")
            .expect("prepare");
        for i in 0..samples {
            let (step, metric) = (i / metrics, i % metrics);
            insert
                .execute(rusqlite::params![
                    (metric + 1) as i64,
                    (T0 + step * 1_000) as i64,
                    value_of(metric, step)
                ])
                .expect("insert");
        }
    }
    conn.execute_batch("COMMIT").expect("commit");
    let elapsed = started.elapsed();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    drop(conn);
    (elapsed, std::fs::metadata(path).expect("raw file").len())
}

/// The real path: producers -> bounded channel -> batch writer -> SQLite.
fn store_ingest(
    runtime: &tokio::runtime::Runtime,
    store: &Arc<SqliteStore>,
    ids: &[MetricId],
    samples: u64,
) -> (Duration, u64, u64) {
    let metrics = ids.len() as u64;
    let steps = samples / metrics;
    runtime.block_on(async {
        let started = Instant::now();
        let (writer, task) = HistoryWriter::spawn(store.clone(), WriterConfig::default());
        for step in 0..steps {
            let payload: Vec<Sample> = ids
                .iter()
                .enumerate()
                .map(|(m, &metric)| Sample {
                    metric,
                    ts: T0 + step * 1_000,
                    value: SampleValue::F64(value_of(m as u64, step)),
                    quality: Quality::GOOD,
                    is_historical: false,
                })
                .collect();
            writer.append(payload).await.expect("append");
        }
        writer.shutdown().await.expect("shutdown");
        let stats = task.join().await.expect("writer task");
        assert_eq!(
            stats.stored.inserted,
            steps * metrics,
            "every sample stored"
        );
        (started.elapsed(), stats.stored.inserted, stats.commits)
    })
}

/// Bytes this process has handed to write(2)/pwrite(2) so far (Linux), checkpoint thread
/// included.
fn bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn time_ms(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm the page cache and statement cache
    let times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let max = times.iter().copied().fold(0.0, f64::max);
    (median(times), max)
}

/// Today's layout (schema v1), for the trend beside ours: the day in `samples`, the last
/// 30 s of every metric in `samples_recent`, read by v1's own query and aggregated as v1 did
/// (min/max/avg/count/last per bucket, one ordered pass).
fn v1_trend_setup(
    path: &std::path::Path,
    day: &[Sample],
    recent: &[Sample],
) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open v1 database");
    conn.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE samples (metric_id INTEGER NOT NULL, ts INTEGER NOT NULL,
             kind INTEGER NOT NULL, value ANY, quality INTEGER NOT NULL,
             is_historical INTEGER NOT NULL, PRIMARY KEY (metric_id, ts)) STRICT, WITHOUT ROWID;
         CREATE TABLE samples_recent (ts INTEGER NOT NULL, metric_id INTEGER NOT NULL,
             kind INTEGER NOT NULL, value ANY, quality INTEGER NOT NULL,
             is_historical INTEGER NOT NULL, PRIMARY KEY (ts, metric_id)) STRICT, WITHOUT ROWID;
         BEGIN;",
    )
    .expect("create v1 tables");
    for (table, rows) in [("samples", day), ("samples_recent", recent)] {
        let mut insert = conn
            .prepare(&format!(
                "INSERT INTO {table} (metric_id, ts, kind, value, quality, is_historical) \
                 VALUES (?1, ?2, 4, ?3, 192, 0)"
            ))
            .expect("prepare v1 insert");
        for s in rows {
            let SampleValue::F64(v) = s.value else {
                unreachable!("bench values are Doubles")
            };
            insert
                .execute(rusqlite::params![s.metric.0, s.ts as i64, v])
                .expect("v1 insert");
        }
    }
    conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("commit v1");
    conn
}

/// v1's trend query and bucket scan; returns the number of buckets.
fn v1_trend(conn: &rusqlite::Connection, metric: i64, range: TimeRange, buckets: u32) -> usize {
    let width = range.bucket_width(buckets);
    let mut stmt = conn
        .prepare_cached(
            "SELECT ts, kind, value, quality, is_historical FROM samples \
             WHERE metric_id = ?1 AND ts >= ?2 AND ts < ?3 \
             UNION ALL \
             SELECT ts, kind, value, quality, is_historical FROM samples_recent \
             WHERE metric_id = ?1 AND ts >= ?2 AND ts < ?3 \
             ORDER BY ts",
        )
        .expect("prepare v1 trend");
    let mut rows = stmt
        .query(rusqlite::params![
            metric,
            range.from as i64,
            range.to as i64
        ])
        .expect("v1 trend");
    let (mut out, mut index, mut count) = (0, u64::MAX, 0u64);
    let (mut min, mut max, mut sum, mut last) = (0.0f64, 0.0f64, 0.0f64, (0i64, 0.0f64, 0i64));
    while let Some(row) = rows.next().expect("row") {
        let ts: i64 = row.get(0).expect("ts");
        let i = (ts as u64 - range.from) / width;
        if count > 0 && i != index {
            std::hint::black_box((min, max, sum / count as f64, last));
            out += 1;
            count = 0;
        }
        let x: f64 = row.get(2).expect("value");
        if count == 0 {
            (min, max, sum) = (x, x, 0.0);
        }
        (min, max, sum, index, count) = (min.min(x), max.max(x), sum + x, i, count + 1);
        last = (ts, x, row.get(3).expect("quality"));
    }
    if count > 0 {
        out += 1;
    }
    out
}

/// The reference plant's steady state: `metrics` tags at 1 Hz, `changing` of them with a
/// new value each second (a different pseudo-random set each second), one commit and one
/// WAL checkpoint per second of data. Returns (bytes handed to the kernel, samples stored).
fn steady_state(
    store: &SqliteStore,
    ids: &[MetricId],
    checkpointer: &rusqlite::Connection,
    first_second: u64,
    seconds: u64,
    changing: usize,
) -> (Option<u64>, u64) {
    let before = bytes_written();
    let mut stored = 0;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for second in first_second..first_second + seconds {
        let mut picked: Vec<usize> = (0..changing)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % ids.len() as u64) as usize
            })
            .collect();
        picked.sort_unstable();
        picked.dedup();
        let batch: Vec<Sample> = picked
            .into_iter()
            .map(|m| Sample {
                metric: ids[m],
                ts: T0 + second * 1_000,
                value: SampleValue::F64(value_of(m as u64, second)),
                quality: Quality::GOOD,
                is_historical: false,
            })
            .collect();
        stored += store.append(&batch).expect("steady-state commit").inserted;
        checkpointer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .expect("checkpoint");
    }
    let written = bytes_written().zip(before).map(|(a, b)| a - b);
    (written, stored)
}

fn main() {
    let samples = env_u64("HISTORY_BENCH_SAMPLES", 2_000_000);
    let metrics = env_u64("HISTORY_BENCH_METRICS", 1_000).max(1);
    let samples = samples / metrics * metrics;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("bench dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let register_all = |store: &SqliteStore, n: u64| -> Vec<MetricId> {
        (0..n)
            .map(|m| {
                store
                    .register_metric(
                        &MetricKey::device("Bench", "Edge1", "PLC1", &format!("Tag{m}")),
                        &MetricMeta {
                            datatype: "Double".into(),
                            units: None,
                        },
                    )
                    .expect("register")
            })
            .collect()
    };

    // Rounds alternate the three ingest runs so a burst of load from other processes does
    // not fall on one side only; each side keeps its best round.
    let rounds = env_u64("HISTORY_BENCH_ROUNDS", 2).max(1);
    let (mut raw_time, mut big_time, mut ours_time) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let (mut raw_bytes, mut ours_bytes, mut commits, mut stored) = (0, 0, 0, 0);
    let mut flood_written = None;
    let mut store = None;
    for round in 0..rounds {
        let (t, bytes) = raw_insert(
            &dir.path().join(format!("raw-{round}.db")),
            samples,
            metrics,
            8_192,
        );
        (raw_time, raw_bytes) = (raw_time.min(t), bytes);

        let path = dir.path().join(format!("history-{round}.db"));
        let ours =
            Arc::new(SqliteStore::open(&path, &SqliteOptions::default()).expect("open store"));
        let ids = register_all(&ours, metrics);
        let before = bytes_written();
        let (t, n, c) = store_ingest(&runtime, &ours, &ids, samples);
        ours.checkpoint().expect("checkpoint");
        let written = bytes_written().zip(before).map(|(a, b)| a - b);
        if t < ours_time {
            (ours_time, stored, commits, flood_written) = (t, n, c, written);
        }
        ours_bytes = std::fs::metadata(&path).expect("store file").len();
        store = Some((ours, path, ids));

        let (t, _) = raw_insert(
            &dir.path().join(format!("raw-big-{round}.db")),
            samples,
            metrics,
            512 * 1024,
        );
        big_time = big_time.min(t);
    }
    let raw_rate = samples as f64 / raw_time.as_secs_f64();
    let big_rate = samples as f64 / big_time.as_secs_f64();
    let ours_rate = stored as f64 / ours_time.as_secs_f64();
    let Some((store, _path, ids)) = store else {
        unreachable!("at least one round runs")
    };

    // Trend: one day at 1 Hz for one more metric, written through the store's append.
    let trend_id = store
        .register_metric(
            &MetricKey::node("Bench", "Edge1", "Trend"),
            &MetricMeta {
                datatype: "Double".into(),
                units: None,
            },
        )
        .expect("register trend");
    let day: Vec<Sample> = (0..86_400u64)
        .map(|s| Sample {
            metric: trend_id,
            ts: T0 + s * 1_000,
            value: SampleValue::F64((s as f64 / 600.0).sin()),
            quality: Quality::GOOD,
            is_historical: false,
        })
        .collect();
    for chunk in day.chunks(5_000) {
        store.append(chunk).expect("append day");
    }
    store.checkpoint().expect("close every window");
    // As in service: the last 30 s of every metric are still in memory, inside the range.
    let recent: Vec<Sample> = ids
        .iter()
        .flat_map(|&metric| {
            (0..30_u64).map(move |k| Sample {
                metric,
                ts: T0 + 3_000_000 + k * 1_000,
                value: SampleValue::F64(k as f64),
                quality: Quality::GOOD,
                is_historical: false,
            })
        })
        .collect();
    store.append(&recent).expect("append recent");
    let range = TimeRange::new(T0, T0 + 86_400_000);
    let mut points = 0;
    let (trend_ms, trend_max_ms) = time_ms(TREND_RUNS, || {
        points = store
            .downsample(trend_id, range, 1_000)
            .expect("trend")
            .len();
    });
    let v1 = v1_trend_setup(&dir.path().join("v1.db"), &day, &recent);
    let (v1_ms, v1_max_ms) = time_ms(TREND_RUNS, || {
        assert_eq!(v1_trend(&v1, trend_id.0, range, 1_000), points);
    });
    drop(v1);

    // Retention: age-based deletion of the oldest 200 s of the flood (200,000 samples) in
    // the store's bounded steps; each step holds the writer for its duration.
    let policy = RetentionPolicy {
        max_age: Some(Duration::from_secs(1_000_000)),
        max_bytes: None,
    };
    let now = T0 + 200_000 + 1_000_000_000;
    let mut step_ms = Vec::new();
    let mut retained_deleted = 0;
    for _ in 0..10_000 {
        let started = Instant::now();
        let step = store
            .apply_retention(&policy, now, RetentionTask::STEP_ROWS)
            .expect("retention step");
        step_ms.push(started.elapsed().as_secs_f64() * 1e3);
        retained_deleted += step.deleted;
        if !step.more {
            break;
        }
    }
    let steps = step_ms.len();
    let step_max_ms = step_ms.iter().copied().fold(0.0, f64::max);
    let step_median_ms = median(step_ms);
    drop(store);

    // Steady state on a fresh file, as a gateway runs: the reference plant for 40 minutes.
    let plant_path = dir.path().join("plant.db");
    let plant = SqliteStore::open(&plant_path, &SqliteOptions::default()).expect("open plant");
    let plant_ids = register_all(&plant, 1_000);
    let checkpointer = rusqlite::Connection::open(&plant_path).expect("checkpoint connection");
    const PLANT_SECONDS: u64 = 2_400;
    // A first minute settles registration and the log; then the measured run.
    steady_state(&plant, &plant_ids, &checkpointer, 0, 60, 100);
    let (plant_written, plant_stored) =
        steady_state(&plant, &plant_ids, &checkpointer, 60, PLANT_SECONDS, 100);
    drop(checkpointer);
    drop(plant); // writes the open window too, so the file holds every sample
    let plant_bytes = std::fs::metadata(&plant_path).expect("plant file").len();
    let plant_total = plant_stored + 60 * 100;

    println!("## host history benchmark");
    println!();
    println!(
        "{samples} samples over {metrics} metrics, writer batch 5000 / 250 ms, synchronous=NORMAL, WAL, page 4096; \
         best of {rounds} alternating rounds; the writer made {commits} commits \
         ({:.0} samples each on average)",
        stored as f64 / commits.max(1) as f64
    );
    println!();
    println!("| measure | ours | limit / target | ratio |");
    println!("|---|---|---|---|");
    let per_sample = |written: Option<u64>, n: u64| {
        written.map_or("/proc/self/io unavailable".to_owned(), |w| {
            format!("{:.1}", w as f64 / n as f64)
        })
    };
    println!(
        "| steady state, reference plant (1,000 tags at 1 Hz, ~10 % changing each second: {plant_stored} samples in {PLANT_SECONDS} s, a commit and a checkpoint per second) | {} bytes written per stored sample (recent log, WAL, checkpoints, window closes) | target <= {WRITTEN_TARGET:.0} (v1: 493) | |",
        per_sample(plant_written, plant_stored)
    );
    println!(
        "| disk per stored sample, reference plant | {:.2} bytes ({plant_bytes} bytes / {plant_total} samples) | target <= {DISK_TARGET:.0} (v1: 32.9) | |",
        plant_bytes as f64 / plant_total as f64
    );
    println!(
        "| flood: bytes written per stored sample | {} bytes (ingest and closing every window) | target <= {WRITTEN_TARGET:.0} | |",
        per_sample(flood_written, stored)
    );
    println!(
        "| disk per stored sample, flood | {:.2} bytes | raw table {:.1} bytes | {:.2} |",
        ours_bytes as f64 / stored as f64,
        raw_bytes as f64 / samples as f64,
        (ours_bytes as f64 / stored as f64) / (raw_bytes as f64 / samples as f64)
    );
    println!(
        "| ingest, channel -> writer -> store | {:.0} samples/s ({:.2} s) | raw prepared INSERT, one transaction, same 8 MiB cache: {:.0} samples/s ({:.2} s) | ours/raw = {:.2} (target >= {INGEST_RATIO_TARGET:.2}) |",
        ours_rate,
        ours_time.as_secs_f64(),
        raw_rate,
        raw_time.as_secs_f64(),
        ours_rate / raw_rate
    );
    println!(
        "| ingest, same path | {:.0} samples/s | raw INSERT, one transaction, 512 MiB cache (no spill): {:.0} samples/s ({:.2} s) | ours/raw = {:.2} |",
        ours_rate,
        big_rate,
        big_time.as_secs_f64(),
        ours_rate / big_rate
    );
    println!(
        "| ingest, absolute | {:.0} samples/s | target {INGEST_ABSOLUTE_TARGET:.0} samples/s | {:.2} |",
        ours_rate,
        ours_rate / INGEST_ABSOLUTE_TARGET
    );
    println!(
        "| 24 h 1 Hz trend -> 1000 points ({points} buckets) | {trend_ms:.1} ms median, {trend_max_ms:.1} ms max of {TREND_RUNS} | v1 layout, same data and query: {v1_ms:.1} ms median, {v1_max_ms:.1} ms max; target {TREND_TARGET_MS:.0} ms | ours/v1 = {:.2} |",
        trend_ms / v1_ms
    );
    println!(
        "| retention step ({} rows max) | {step_median_ms:.1} ms median, {step_max_ms:.1} ms max over {steps} steps ({retained_deleted} samples deleted) | | |",
        RetentionTask::STEP_ROWS
    );
}
