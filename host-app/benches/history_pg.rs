//! PostgreSQL history ingest beside its limit, measured in the same run on the same table.
//!
//!     cargo bench -p host-app --bench history_pg
//!
//! Starts its own server (`TempPostgres`: PostgreSQL installed, fsync off for both runs).
//! Environment: `HISTORY_PG_BENCH_SAMPLES` (default 1000000), `HISTORY_PG_BENCH_METRICS`
//! (default 1000), `HISTORY_PG_BENCH_BATCH` (default 5000, the writer's default
//! `batch_size`), `HISTORY_PG_BENCH_ROUNDS` (default 3; each round starts with the next
//! run, so every run goes first once; best of each reported).
//!
//! - ours: `PostgresStore::append` of batches of Double samples (one timestamp carrying
//!   every metric, as Sparkplug DATA does), each batch one transaction kept exactly once
//!   (the store's COPY straight in, which the primary key refuses if a sample is stored);
//! - ours again: the same batches appended a second time, every sample a duplicate, so
//!   every batch takes the checked path (staging table, `INSERT ... ON CONFLICT`);
//! - the limit: a binary `COPY` of the same rows, in the same order, into the same `samples`
//!   table (emptied between runs, partitions kept), one COPY and transaction per batch of
//!   the same size, no duplicate check at all;
//! - for reference, the same COPY with each batch's rows sorted by (metric, ts) beforehand
//!   (outside the timing): the limit had the rows come in key order, as ours sends them.

mod support;

use std::time::{Duration, Instant};
use support::{env_u64, value_of};

use host_app::history::{
    HistoryStore, MetricId, MetricKey, MetricMeta, PostgresOptions, PostgresStore, Quality, Sample,
    SampleValue,
};
use host_app_testkit::postgres::TempPostgres;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;

const T0: u64 = 1_700_000_000_000;
const RATIO_TARGET: f64 = 0.5;

fn batches(ids: &[MetricId], samples: u64, batch: u64) -> Vec<Vec<Sample>> {
    let metrics = ids.len() as u64;
    (0..samples)
        .map(|i| {
            let (step, metric) = (i / metrics, i % metrics);
            Sample {
                metric: ids[metric as usize],
                ts: T0 + step * 1_000,
                value: SampleValue::F64(value_of(metric, step)),
                quality: Quality::GOOD,
                is_historical: false,
            }
        })
        .collect::<Vec<_>>()
        .chunks(batch as usize)
        .map(<[Sample]>::to_vec)
        .collect()
}

/// Appends every batch; `new`: whether every sample is new, else every one is stored.
fn ours(store: &PostgresStore, batches: &[Vec<Sample>], new: bool) -> Duration {
    let started = Instant::now();
    for batch in batches {
        let outcome = store.append(batch).expect("append");
        let expected = if new { batch.len() as u64 } else { 0 };
        assert_eq!(outcome.inserted, expected, "every sample new: {new}");
    }
    started.elapsed()
}

/// `batches` with each batch's rows in (metric, ts) order.
fn sorted(batches: &[Vec<Sample>]) -> Vec<Vec<Sample>> {
    let mut out = batches.to_vec();
    for batch in &mut out {
        batch.sort_by_key(|s| (s.metric, s.ts));
    }
    out
}

fn copy(client: &mut postgres::Client, batches: &[Vec<Sample>]) -> Duration {
    let types = [
        Type::INT8,
        Type::INT8,
        Type::INT2,
        Type::INT4,
        Type::BOOL,
        Type::FLOAT8,
    ];
    let started = Instant::now();
    for batch in batches {
        let mut tx = client.transaction().expect("begin");
        let sink = tx
            .copy_in("COPY samples (metric, ts, kind, quality, historical, num) FROM STDIN BINARY")
            .expect("copy in");
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for s in batch {
            let SampleValue::F64(v) = s.value else {
                unreachable!("the bench writes Doubles")
            };
            writer
                .write(&[
                    &s.metric.0,
                    &(s.ts as i64),
                    &4i16,
                    &s.quality.0,
                    &s.is_historical,
                    &v,
                ])
                .expect("copy row");
        }
        writer.finish().expect("finish copy");
        tx.commit().expect("commit");
    }
    started.elapsed()
}

fn empty(client: &mut postgres::Client) {
    // Separate statements: VACUUM refuses to run inside a multi-statement batch.
    for sql in ["TRUNCATE samples", "VACUUM ANALYZE samples"] {
        client.batch_execute(sql).expect("empty samples");
    }
}

fn rate(samples: u64, took: Duration) -> f64 {
    samples as f64 / took.as_secs_f64()
}

fn main() {
    let samples = env_u64("HISTORY_PG_BENCH_SAMPLES", 1_000_000);
    let metrics = env_u64("HISTORY_PG_BENCH_METRICS", 1_000).max(1);
    let batch = env_u64("HISTORY_PG_BENCH_BATCH", 5_000).max(1);
    let rounds = env_u64("HISTORY_PG_BENCH_ROUNDS", 3).max(1);

    let pg = TempPostgres::start().expect("start PostgreSQL");
    let url = pg.create_database("bench").expect("create database");
    let store = PostgresStore::open(&PostgresOptions::new(&url)).expect("open store");
    let ids: Vec<MetricId> = (0..metrics)
        .map(|m| {
            store
                .register_metric(
                    &MetricKey::node("Plant1", "Edge1", &format!("Tag{m}")),
                    &MetricMeta {
                        datatype: "Double".into(),
                        units: None,
                    },
                )
                .expect("register")
        })
        .collect();
    store.checkpoint().expect("write metrics");
    let work = batches(&ids, samples, batch);
    let work_sorted = sorted(&work);
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).expect("connect");

    const RUNS: [&str; 3] = ["ours", "COPY", "COPY sorted"];
    // Best of each: ours, ours replaying, COPY, COPY sorted.
    let mut best = [Duration::MAX; 4];
    for round in 0..rounds as usize {
        let mut took = [Duration::ZERO; 4];
        for k in 0..RUNS.len() {
            let run = (round + k) % RUNS.len();
            empty(&mut raw);
            match run {
                0 => {
                    took[0] = ours(&store, &work, true);
                    took[1] = ours(&store, &work, false);
                }
                1 => took[2] = copy(&mut raw, &work),
                _ => took[3] = copy(&mut raw, &work_sorted),
            }
        }
        for (b, t) in best.iter_mut().zip(took) {
            *b = (*b).min(t);
        }
        println!(
            "round {} ({} first): ours {:>9.0} samples/s (replayed {:>9.0}), COPY {:>9.0} samples/s, COPY sorted {:>9.0} samples/s",
            round + 1,
            RUNS[round % RUNS.len()],
            rate(samples, took[0]),
            rate(samples, took[1]),
            rate(samples, took[2]),
            rate(samples, took[3]),
        );
    }
    let [ours_rate, replay_rate, copy_rate, sorted_rate] = best.map(|d| rate(samples, d));
    let ratio = ours_rate / copy_rate;
    println!(
        "postgres ingest: {samples} samples, {metrics} metrics, batches of {batch}, best of {rounds}"
    );
    println!("  ours (append, exactly once) {ours_rate:>10.0} samples/s");
    println!("  ours, the same rows again   {replay_rate:>10.0} samples/s (every one a duplicate)");
    println!("  raw binary COPY             {copy_rate:>10.0} samples/s");
    println!("  raw binary COPY, key order  {sorted_rate:>10.0} samples/s");
    println!(
        "  ratio {ratio:.2} (target >= {RATIO_TARGET}): {}; against COPY in key order {:.2}",
        if ratio >= RATIO_TARGET {
            "met"
        } else {
            "NOT met"
        },
        ours_rate / sorted_rate
    );
}
