//! The history store's contract, checked on every backend: the same tests run on an
//! SQLite file and on a PostgreSQL database (a throw-away server on loopback). Value round
//! trips, exactly once per (metric, timestamp) across batches and restarts, ordered and
//! limited ranges, trend buckets against an in-memory computation, latest values, metric
//! registry, retention by age, the audit log and its own retention, the batch writer.
//!
//! Each test is a generic function instantiated per backend by `backend_suite!`; what only one
//! backend has (SQLite's files and windows, PostgreSQL's partitions and shared ids) is
//! tested beside it (history_store.rs, history_postgres.rs).

use std::sync::Arc;
use std::time::Duration;

use host_app::history::{
    AuditEntry, AuditQuery, AuditRetention, Bucket, CommandOutcome, HistoryStore, HistoryWriter,
    MetricId, MetricKey, MetricMeta, PostgresOptions, PostgresStore, Quality, RetentionPolicy,
    Sample, SampleValue, TimeRange, WriterConfig,
};
use host_app_testkit::history::{audit_entry, audit_timestamps, count, register, sample, series};
use host_app_testkit::postgres::TempPostgres;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

const T0: u64 = 1_700_000_000_000;
const DAY_MS: u64 = 86_400_000;
const MINUTE_MS: u64 = 60_000;

/// A backend under test: how to open a fresh store and the same one again.
trait Backend: Sized {
    /// Each retention step deletes at most `max_rows` (SQLite). PostgreSQL drops a whole
    /// expired partition in one step, whatever it holds.
    const ROW_BOUNDED_RETENTION: bool;
    /// Property cases per property test (a PostgreSQL database per case is slower).
    const CASES: u32;
    fn create() -> (Self, Arc<dyn HistoryStore>);
    /// Opens the history again, once its store is closed.
    fn open(&self) -> Arc<dyn HistoryStore>;
    /// Closes `store` and opens the same history again.
    fn reopen(&self, store: &mut Arc<dyn HistoryStore>);
    /// Makes sample batches wait, from another connection, until the returned call.
    fn hold_writes(&self) -> Box<dyn FnOnce() + Send>;
}

struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    const ROW_BOUNDED_RETENTION: bool = true;
    const CASES: u32 = 32;
    fn create() -> (Self, Arc<dyn HistoryStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(host_app_testkit::history::open(&dir.path().join("h.db")));
        (Sqlite(dir), store)
    }
    fn open(&self) -> Arc<dyn HistoryStore> {
        Arc::new(host_app_testkit::history::open(&self.0.path().join("h.db")))
    }
    fn reopen(&self, store: &mut Arc<dyn HistoryStore>) {
        // One store per file: the old one closes before the file opens again.
        *store = Arc::new(host_app_testkit::history::open(
            &self.0.path().join("reopening.db"),
        ));
        *store = self.open();
    }
    fn hold_writes(&self) -> Box<dyn FnOnce() + Send> {
        let conn = rusqlite::Connection::open(self.0.path().join("h.db")).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        Box::new(move || conn.execute_batch("COMMIT").unwrap())
    }
}

struct Postgres(String);

impl Backend for Postgres {
    const ROW_BOUNDED_RETENTION: bool = false;
    const CASES: u32 = 12;
    fn create() -> (Self, Arc<dyn HistoryStore>) {
        let pg = TempPostgres::shared().unwrap();
        let url = pg.fresh_database().unwrap();
        let store = open_postgres(&url);
        (Postgres(url), store)
    }
    fn open(&self) -> Arc<dyn HistoryStore> {
        open_postgres(&self.0)
    }
    fn reopen(&self, store: &mut Arc<dyn HistoryStore>) {
        *store = self.open();
    }
    fn hold_writes(&self) -> Box<dyn FnOnce() + Send> {
        let mut client = ::postgres::Client::connect(&self.0, ::postgres::NoTls).unwrap();
        client
            .batch_execute("BEGIN; LOCK TABLE samples IN EXCLUSIVE MODE")
            .unwrap();
        Box::new(move || client.batch_execute("COMMIT").unwrap())
    }
}

fn open_postgres(url: &str) -> Arc<dyn HistoryStore> {
    Arc::new(PostgresStore::open(&PostgresOptions::new(url)).expect("open PostgreSQL history"))
}

/// A store of backend `B` on fresh storage.
struct Fixture<B> {
    store: Arc<dyn HistoryStore>,
    backend: B,
}

impl<B: Backend> Fixture<B> {
    fn new() -> Self {
        let (backend, store) = B::create();
        Fixture { store, backend }
    }

    fn reopen(&mut self) {
        self.backend.reopen(&mut self.store);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

host_app_testkit::backend_suite![
    every_value_type_round_trips,
    duplicate_metric_and_timestamp_is_stored_once_across_batches_and_reopen,
    each_metric_and_timestamp_is_kept_once_with_its_first_value,
    range_is_ordered_half_open_and_limited_whatever_the_arrival_order,
    latest_gives_the_newest_sample_per_metric_even_after_an_older_replay,
    metric_keys_map_to_stable_ids_and_keep_their_birth_metadata,
    audit_log_round_trips_and_filters_newest_first,
    a_timestamp_beyond_the_store_range_is_rejected_not_stored,
    a_measured_sample_replaces_a_stale_marker_on_the_same_millisecond,
    a_day_at_1_hz_downsampled_to_1000_points_matches_memory,
    non_numeric_buckets_carry_only_count_and_last,
    downsampling_matches_an_in_memory_computation,
    age_retention_deletes_exactly_what_is_older_in_bounded_steps,
    the_audit_log_keeps_its_own_age_and_row_limits_apart_from_sample_retention,
    a_replay_through_the_writer_is_stored_once,
    every_method_answers_when_called_from_async_code,
    a_call_waiting_on_the_database_leaves_its_worker_to_other_tasks,
];

/// A property run with `B::CASES` cases, failures kept in `regressions` (under tests/).
fn runner<B: Backend>(regressions: &'static str) -> TestRunner {
    TestRunner::new(Config {
        cases: B::CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    })
}

#[derive(Debug, Clone)]
enum Step {
    /// (metric index, ts offset, value, is_historical)
    Append(Vec<(usize, u64, i64, bool)>),
    /// A retention step with no limits (SQLite: moves the recent samples into chunks).
    Fold,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => proptest::collection::vec((0_usize..3, 0_u64..300, any::<i64>(), any::<bool>()), 0..80)
            .prop_map(Step::Append),
        1 => Just(Step::Fold),
        1 => Just(Step::Reopen),
    ]
}

/// Exactly once, as a property: whatever the batches, their order, duplicates inside and
/// across them, retention steps and restarts, the store holds each (metric, timestamp)
/// once, with the value of the first copy that arrived.
fn each_metric_and_timestamp_is_kept_once_with_its_first_value<B: Backend>() {
    let strategy = proptest::collection::vec(step(), 1..12);
    let regressions = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/history_exactly_once.proptest-regressions"
    );
    runner::<B>(regressions)
        .run(&strategy, |steps| {
            let mut t = Fixture::<B>::new();
            let ids: Vec<MetricId> = (0..3)
                .map(|i| register(&*t.store, &format!("M{i}")))
                .collect();
            let mut model: std::collections::BTreeMap<(MetricId, u64), Sample> = Default::default();
            for step in steps {
                match step {
                    Step::Append(batch) => {
                        let samples: Vec<Sample> = batch
                            .into_iter()
                            .map(|(m, offset, v, is_historical)| Sample {
                                metric: ids[m],
                                ts: T0 + offset,
                                value: SampleValue::I64(v),
                                quality: Quality::GOOD,
                                is_historical,
                            })
                            .collect();
                        let mut fresh = 0;
                        for s in &samples {
                            if let std::collections::btree_map::Entry::Vacant(slot) =
                                model.entry((s.metric, s.ts))
                            {
                                slot.insert(s.clone());
                                fresh += 1;
                            }
                        }
                        let outcome = t.store.append(&samples).unwrap();
                        prop_assert_eq!(outcome.inserted, fresh);
                        prop_assert_eq!(outcome.duplicates, samples.len() as u64 - fresh);
                    }
                    Step::Fold => {
                        t.store
                            .apply_retention(&RetentionPolicy::default(), 0, 1)
                            .unwrap();
                    }
                    Step::Reopen => t.reopen(),
                }
            }
            for &id in &ids {
                let stored = t
                    .store
                    .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
                    .unwrap();
                let expected: Vec<Sample> = model
                    .range((id, 0)..=(id, u64::MAX))
                    .map(|(_, s)| s.clone())
                    .collect();
                prop_assert_eq!(&stored, &expected);
                let latest = t.store.latest(&[id]).unwrap();
                prop_assert_eq!(latest.first(), expected.last());
            }
            Ok(())
        })
        .unwrap();
}

/// Trend buckets against the same computation in memory, for random series, ranges and
/// bucket counts, stored in two batches in either order with a retention step between.
fn downsampling_matches_an_in_memory_computation<B: Backend>() {
    let strategy = (
        proptest::collection::btree_map(0_u64..20_000, (value(), any::<bool>()), 0..400),
        0_u64..10_000,
        1_u64..20_000,
        1_u32..64,
        0_usize..400,
    );
    let regressions = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/history_downsample.proptest-regressions"
    );
    runner::<B>(regressions)
        .run(&strategy, |(points, from, span, buckets, split)| {
            let t = Fixture::<B>::new();
            let id: MetricId = register(&*t.store, "Random");
            let samples: Vec<Sample> = points
                .into_iter()
                .map(|(offset, (value, is_historical))| Sample {
                    is_historical,
                    ..sample(id, T0 + offset, value)
                })
                .collect();
            let split = split.min(samples.len());
            t.store.append(&samples[split..]).unwrap();
            t.store
                .apply_retention(&RetentionPolicy::default(), 0, 1)
                .unwrap();
            t.store.append(&samples[..split]).unwrap();
            let range = TimeRange::new(T0 + from, T0 + from + span);
            let got = t.store.downsample(id, range, buckets).unwrap();
            prop_assert!(got.len() <= buckets as usize);
            if let Err(e) = check(&got, &samples, range, buckets) {
                prop_assert!(false, "{}", e);
            }
            Ok(())
        })
        .unwrap();
}

fn config(batch_size: usize, flush_interval: Duration) -> WriterConfig {
    WriterConfig {
        batch_size,
        flush_interval,
        channel_capacity: 8,
    }
}

fn every_value_type() -> Vec<SampleValue> {
    vec![
        SampleValue::Null,
        SampleValue::Bool(true),
        SampleValue::Bool(false),
        SampleValue::I64(i64::MIN),
        SampleValue::I64(-1),
        SampleValue::I64(i64::MAX),
        SampleValue::U64(0),
        SampleValue::U64(i64::MAX as u64 + 1),
        SampleValue::U64(u64::MAX),
        SampleValue::F64(f64::NAN),
        SampleValue::F64(f64::INFINITY),
        SampleValue::F64(f64::NEG_INFINITY),
        SampleValue::F64(-0.0),
        SampleValue::F64(f64::MIN_POSITIVE),
        SampleValue::F64(1.0e308),
        SampleValue::F64(std::f64::consts::PI),
        SampleValue::Text(String::new()),
        SampleValue::Text("Überdruck ⚠ 3.5 bar".into()),
        SampleValue::Bytes(vec![]),
        SampleValue::Bytes(vec![0, 255, 1, 254, 0]),
    ]
}

fn every_value_type_round_trips<B: Backend>() {
    let mut t = Fixture::<B>::new();
    let id = register(&*t.store, "Mixed");
    let written: Vec<Sample> = every_value_type()
        .into_iter()
        .enumerate()
        .map(|(i, value)| Sample {
            metric: id,
            ts: T0 + i as u64,
            value,
            quality: [Quality::GOOD, Quality::BAD, Quality::STALE][i % 3],
            is_historical: i % 2 == 0,
        })
        .collect();
    let outcome = t.store.append(&written).unwrap();
    assert_eq!(outcome.inserted, written.len() as u64);

    t.reopen();
    let read = t
        .store
        .range(id, TimeRange::new(T0, T0 + 1_000), 1_000)
        .unwrap();
    assert_eq!(read.len(), written.len());
    for (w, r) in written.iter().zip(&read) {
        assert_eq!(
            (w.metric, w.ts, w.quality, w.is_historical),
            (r.metric, r.ts, r.quality, r.is_historical)
        );
        assert!(
            w.value.same_as(&r.value),
            "wrote {:?}, read {:?}",
            w.value,
            r.value
        );
        if let (SampleValue::F64(a), SampleValue::F64(b)) = (&w.value, &r.value) {
            assert_eq!(a.is_sign_negative(), b.is_sign_negative(), "sign of {a}");
        }
    }
    assert!(matches!(read[9].value, SampleValue::F64(v) if v.is_nan()));
    assert_eq!(read[8].value, SampleValue::U64(u64::MAX));
}

fn duplicate_metric_and_timestamp_is_stored_once_across_batches_and_reopen<B: Backend>() {
    let mut t = Fixture::<B>::new();
    let id = register(&*t.store, "Pressure");
    let other = register(&*t.store, "Flow");
    let live = series(id, T0, 100, 1_000);

    // The same timestamp twice inside one batch, and the other metric at the same ts.
    let mut first = live[..60].to_vec();
    first.push(live[10].clone());
    first.push(sample(other, T0, SampleValue::I64(7)));
    let o = t.store.append(&first).unwrap();
    assert_eq!((o.inserted, o.duplicates), (61, 1));

    // A half-open link re-sends a window of recent samples in the next batch.
    let o = t.store.append(&live[50..100]).unwrap();
    assert_eq!((o.inserted, o.duplicates), (40, 10));

    // After a restart the edge node replays its store-and-forward buffer flagged historical,
    // with a different value: the first stored copy stays.
    t.reopen();
    let replay: Vec<Sample> = live
        .iter()
        .map(|s| Sample {
            is_historical: true,
            value: SampleValue::F64(-1.0),
            ..s.clone()
        })
        .collect();
    let o = t.store.append(&replay).unwrap();
    assert_eq!((o.inserted, o.duplicates), (0, 100));

    let stored = t
        .store
        .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
        .unwrap();
    assert_eq!(
        stored, live,
        "exactly the live samples, once each, unchanged"
    );
    assert_eq!(count(&*t.store, other), 1);
}

fn range_is_ordered_half_open_and_limited_whatever_the_arrival_order<B: Backend>() {
    let t = Fixture::<B>::new();
    let id = register(&*t.store, "Level");
    let mut samples = series(id, T0, 500, 100);
    samples.reverse(); // a historical backlog may arrive newest first
    let (newer, older) = samples.split_at(250);
    t.store.append(older).unwrap();
    t.store.append(newer).unwrap();

    let all = t
        .store
        .range(id, TimeRange::new(T0, T0 + 50_000), u32::MAX)
        .unwrap();
    assert_eq!(all.len(), 500);
    assert!(all.windows(2).all(|w| w[0].ts < w[1].ts));

    let window = t
        .store
        .range(id, TimeRange::new(T0 + 1_000, T0 + 2_000), 100)
        .unwrap();
    let ts: Vec<u64> = window.iter().map(|s| s.ts).collect();
    assert_eq!(
        ts,
        (0..10).map(|i| T0 + 1_000 + i * 100).collect::<Vec<_>>()
    );

    let limited = t
        .store
        .range(id, TimeRange::new(T0, T0 + 50_000), 3)
        .unwrap();
    assert_eq!(
        limited.iter().map(|s| s.ts).collect::<Vec<_>>(),
        vec![T0, T0 + 100, T0 + 200]
    );
    assert!(
        t.store
            .range(id, TimeRange::new(T0 + 5, T0 + 5), 10)
            .unwrap()
            .is_empty()
    );
}

fn latest_gives_the_newest_sample_per_metric_even_after_an_older_replay<B: Backend>() {
    let t = Fixture::<B>::new();
    let a = register(&*t.store, "A");
    let b = register(&*t.store, "B");
    let never = register(&*t.store, "NeverSent");
    t.store
        .append(&[
            sample(a, T0 + 5_000, SampleValue::I64(5)),
            sample(b, T0 + 1_000, SampleValue::Text("on".into())),
        ])
        .unwrap();
    // Older historical samples arrive after the live one.
    t.store.append(&series(a, T0, 4, 1_000)).unwrap();

    let latest = t.store.latest(&[a, b, never]).unwrap();
    assert_eq!(latest.len(), 2);
    assert_eq!(
        (latest[0].metric, latest[0].ts, &latest[0].value),
        (a, T0 + 5_000, &SampleValue::I64(5))
    );
    assert_eq!(
        (latest[1].metric, &latest[1].value),
        (b, &SampleValue::Text("on".into()))
    );
}

fn metric_keys_map_to_stable_ids_and_keep_their_birth_metadata<B: Backend>() {
    let mut t = Fixture::<B>::new();
    let node_metric = MetricKey::node("Plant1", "Edge1", "Node Control/Rebirth");
    let device_metric = MetricKey::device("Plant1", "Edge1", "PLC1", "Pump/Speed");
    let meta = |datatype: &str, units: Option<&str>| MetricMeta {
        datatype: datatype.into(),
        units: units.map(Into::into),
    };
    let n = t
        .store
        .register_metric(&node_metric, &meta("Boolean", None))
        .unwrap();
    let d = t
        .store
        .register_metric(&device_metric, &meta("Float", Some("rpm")))
        .unwrap();
    assert_ne!(n, d);

    // Registration answers from memory; the rows reach the database with the next sample
    // commit or a checkpoint.
    t.store.checkpoint().unwrap();
    t.reopen();
    // A new birth re-registers with changed metadata: same id, metadata updated.
    assert_eq!(
        t.store
            .register_metric(&device_metric, &meta("Double", Some("1/min")))
            .unwrap(),
        d
    );
    assert_eq!(t.store.resolve_metric(&node_metric).unwrap(), Some(n));
    assert_eq!(t.store.resolve_metric(&device_metric).unwrap(), Some(d));
    assert_eq!(
        t.store
            .resolve_metric(&MetricKey::node("Plant1", "Edge1", "Pump/Speed"))
            .unwrap(),
        None,
        "a node metric is not the device metric of the same name"
    );
    let all = t.store.metrics().unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "by id");
    let by_id = |id| all.iter().find(|m| m.id == id).unwrap();
    assert_eq!(&by_id(n).key, &node_metric);
    assert_eq!(
        (&by_id(d).key, &by_id(d).meta),
        (&device_metric, &meta("Double", Some("1/min")))
    );
}

fn audit_log_round_trips_and_filters_newest_first<B: Backend>() {
    let mut t = Fixture::<B>::new();
    let pump = MetricKey::device("Plant1", "Edge1", "PLC1", "Pump/Run");
    let valve = MetricKey::node("Plant1", "Edge2", "Valve/Open");
    let entry = |ts, user: &str, metric: &MetricKey, value: &str, outcome, detail: Option<&str>| {
        AuditEntry {
            ts,
            user: user.into(),
            metric: metric.clone(),
            value: value.into(),
            outcome,
            detail: detail.map(Into::into),
        }
    };
    let written = [
        entry(T0, "alice", &pump, "true", CommandOutcome::Sent, None),
        entry(
            T0 + 1,
            "bob",
            &valve,
            "42.5",
            CommandOutcome::Rejected,
            Some("not permitted"),
        ),
        entry(
            T0 + 2,
            "alice",
            &pump,
            "false",
            CommandOutcome::Confirmed,
            None,
        ),
        entry(
            T0 + 3,
            "alice",
            &valve,
            "{\"x\":1}",
            CommandOutcome::Failed,
            Some("edge node offline"),
        ),
    ];
    let ids: Vec<i64> = written
        .iter()
        .map(|e| t.store.audit_append(e).unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    t.reopen();
    let everything = AuditQuery {
        range: TimeRange::new(0, u64::MAX),
        user: None,
        metric: None,
        limit: 100,
    };
    let all = t.store.audit_query(&everything).unwrap();
    let read: Vec<&AuditEntry> = all.iter().map(|r| &r.entry).collect();
    assert_eq!(read, written.iter().rev().collect::<Vec<_>>());
    assert_eq!(all[0].id, ids[3]);

    let alice_pump = t
        .store
        .audit_query(&AuditQuery {
            user: Some("alice".into()),
            metric: Some(pump.clone()),
            ..everything.clone()
        })
        .unwrap();
    assert_eq!(
        alice_pump.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[2], ids[0]]
    );

    let window = t
        .store
        .audit_query(&AuditQuery {
            range: TimeRange::new(T0 + 1, T0 + 3),
            limit: 1,
            ..everything
        })
        .unwrap();
    assert_eq!(
        window.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
}

fn a_timestamp_beyond_the_store_range_is_rejected_not_stored<B: Backend>() {
    let t = Fixture::<B>::new();
    let id = register(&*t.store, "P");
    let o = t
        .store
        .append(&[
            sample(id, u64::MAX, SampleValue::I64(1)),
            sample(id, T0, SampleValue::I64(2)),
        ])
        .unwrap();
    assert_eq!((o.inserted, o.rejected), (1, 1));
    assert_eq!(count(&*t.store, id), 1);
    assert_eq!(count(&*t.store, MetricId(id.0 + 99)), 0);
}

/// The host writes a STALE marker at its own clock when a node dies; a sample the edge
/// measured on that same millisecond, arriving later (replayed from its store), replaces
/// the marker instead of being refused as a duplicate — after a small batch and after a
/// large one (SQLite writes those straight to its main table). A marker never replaces a
/// measurement.
fn a_measured_sample_replaces_a_stale_marker_on_the_same_millisecond<B: Backend>() {
    let t = Fixture::<B>::new();
    let id = register(&*t.store, "Level");
    let stale = |ts: u64| Sample {
        quality: Quality::STALE,
        ..sample(id, ts, SampleValue::F64(1.0))
    };
    let measured = |ts: u64| Sample {
        is_historical: true,
        ..sample(id, ts, SampleValue::F64(2.0))
    };

    // Marker in a small batch.
    t.store.append(&[stale(T0)]).unwrap();
    let o = t.store.append(&[measured(T0)]).unwrap();
    assert_eq!((o.inserted, o.duplicates), (1, 0));

    // Marker in a large batch.
    let mut big = series(id, T0 + 1_000, 20_000, 1);
    big.push(stale(T0 + 500));
    t.store.append(&big).unwrap();
    let o = t.store.append(&[measured(T0 + 500)]).unwrap();
    assert_eq!((o.inserted, o.duplicates), (1, 0));

    // A marker after the measurement, and the measurement again: both refused.
    let o = t.store.append(&[stale(T0), measured(T0)]).unwrap();
    assert_eq!((o.inserted, o.duplicates), (0, 2));

    // Marker and measurement in one batch count as stored one after the other: both
    // accepted on a new millisecond, the measurement alone over a stored marker.
    let o = t
        .store
        .append(&[stale(T0 + 600), measured(T0 + 600)])
        .unwrap();
    assert_eq!((o.inserted, o.duplicates), (2, 0));
    t.store.append(&[stale(T0 + 700)]).unwrap();
    let o = t
        .store
        .append(&[stale(T0 + 700), measured(T0 + 700), stale(T0 + 800)])
        .unwrap();
    assert_eq!((o.inserted, o.duplicates), (2, 1));

    let read = t
        .store
        .range(id, TimeRange::new(T0, T0 + 1_000), 1_000)
        .unwrap();
    assert_eq!(
        read,
        vec![
            measured(T0),
            measured(T0 + 500),
            measured(T0 + 600),
            measured(T0 + 700),
            stale(T0 + 800)
        ]
    );
}

/// The expected buckets, computed straight from the samples.
fn reference(samples: &[Sample], range: TimeRange, buckets: u32) -> Vec<Bucket> {
    let width = range.bucket_width(buckets);
    let mut sorted: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.ts >= range.from && s.ts < range.to)
        .collect();
    sorted.sort_by_key(|s| s.ts);
    let mut out: Vec<Bucket> = Vec::new();
    let mut sums: Vec<(f64, u64)> = Vec::new();
    for s in sorted {
        let start = range.from + (s.ts - range.from) / width * width;
        if out.last().is_none_or(|b| b.start != start) {
            out.push(Bucket {
                start,
                end: (start + width).min(range.to),
                count: 0,
                min: None,
                max: None,
                avg: None,
                last: s.clone(),
            });
            sums.push((0.0, 0));
        }
        let (b, sum) = (out.last_mut().unwrap(), sums.last_mut().unwrap());
        b.count += 1;
        b.last = s.clone();
        if let Some(x) = s.value.as_f64() {
            b.min = Some(b.min.map_or(x, |m| m.min(x)));
            b.max = Some(b.max.map_or(x, |m| m.max(x)));
            sum.0 += x;
            sum.1 += 1;
            b.avg = Some(sum.0 / sum.1 as f64);
        }
    }
    out
}

fn close(a: Option<f64>, b: Option<f64>, scale: f64) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * scale.max(1.0),
        _ => false,
    }
}

fn check(got: &[Bucket], samples: &[Sample], range: TimeRange, buckets: u32) -> Result<(), String> {
    let want = reference(samples, range, buckets);
    if got.len() != want.len() {
        return Err(format!("{} buckets, expected {}", got.len(), want.len()));
    }
    let scale = samples
        .iter()
        .filter_map(|s| s.value.as_f64())
        .fold(0.0_f64, |m, x| m.max(x.abs()));
    for (g, w) in got.iter().zip(&want) {
        let ok = (g.start, g.end, g.count) == (w.start, w.end, w.count)
            && close(g.min, w.min, scale)
            && close(g.max, w.max, scale)
            && close(g.avg, w.avg, scale)
            && (g.last.ts, g.last.quality, g.last.is_historical)
                == (w.last.ts, w.last.quality, w.last.is_historical)
            && g.last.value.same_as(&w.last.value);
        if !ok {
            return Err(format!("got {g:?}\nexpected {w:?}"));
        }
    }
    Ok(())
}

fn a_day_at_1_hz_downsampled_to_1000_points_matches_memory<B: Backend>() {
    let t = Fixture::<B>::new();
    let id = register(&*t.store, "Pressure");
    let day = series(id, T0, 86_400, 1_000);
    for chunk in day.chunks(5_000) {
        t.store.append(chunk).unwrap();
    }
    let range = TimeRange::new(T0, T0 + 86_400_000);
    let got = t.store.downsample(id, range, 1_000).unwrap();
    assert!(
        got.len() <= 1_000 && got.len() > 900,
        "{} buckets",
        got.len()
    );
    assert_eq!(got.iter().map(|b| b.count).sum::<u64>(), 86_400);
    check(&got, &day, range, 1_000).unwrap();
}

fn non_numeric_buckets_carry_only_count_and_last<B: Backend>() {
    let t = Fixture::<B>::new();
    let id = register(&*t.store, "State");
    let samples = vec![
        sample(id, T0, SampleValue::Text("idle".into())),
        sample(id, T0 + 10, SampleValue::Text("run".into())),
        sample(id, T0 + 20, SampleValue::F64(f64::NAN)),
        sample(id, T0 + 110, SampleValue::Bytes(vec![1, 2])),
        sample(id, T0 + 120, SampleValue::U64(u64::MAX)),
        sample(id, T0 + 130, SampleValue::Null),
    ];
    t.store.append(&samples).unwrap();
    let range = TimeRange::new(T0, T0 + 200);
    let got = t.store.downsample(id, range, 2).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].count, got[0].min, got[0].avg), (3, None, None));
    assert!(matches!(got[0].last.value, SampleValue::F64(v) if v.is_nan()));
    assert_eq!((got[1].count, got[1].max), (3, Some(u64::MAX as f64)));
    assert_eq!(got[1].last.value, SampleValue::Null);
    check(&got, &samples, range, 2).unwrap();
}

fn value() -> impl Strategy<Value = SampleValue> {
    prop_oneof![
        6 => (-1.0e6..1.0e6_f64).prop_map(SampleValue::F64),
        2 => (-1_000_000_i64..1_000_000).prop_map(SampleValue::I64),
        1 => (0_u64..2_000_000).prop_map(SampleValue::U64),
        1 => any::<bool>().prop_map(SampleValue::Bool),
        1 => Just(SampleValue::F64(f64::NAN)),
        1 => "[a-z]{0,4}".prop_map(SampleValue::Text),
        1 => Just(SampleValue::Null),
    ]
}

/// Applies the policy step by step until done; returns (steps, deleted).
fn run_to_completion<B: Backend>(
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
            !B::ROW_BOUNDED_RETENTION || step.deleted <= u64::from(rows),
            "a step deleted {} > {rows}",
            step.deleted
        );
        if !step.more {
            return (steps, deleted);
        }
    }
    panic!("retention did not finish in 100000 steps");
}

fn age_retention_deletes_exactly_what_is_older_in_bounded_steps<B: Backend>() {
    let t = Fixture::<B>::new();
    let metrics: Vec<_> = (0..3)
        .map(|i| register(&*t.store, &format!("M{i}")))
        .collect();
    for &id in &metrics {
        // Ten days at one sample per minute.
        t.store
            .append(&series(id, T0, 10 * 24 * 60, MINUTE_MS))
            .unwrap();
    }
    let now = T0 + 10 * DAY_MS;
    let policy = RetentionPolicy {
        max_age: Some(Duration::from_millis(3 * DAY_MS)),
        max_bytes: None,
    };
    let cutoff = now - 3 * DAY_MS;
    let (steps, deleted) = run_to_completion::<B>(&*t.store, &policy, now, 500);

    let expected_gone = (cutoff - T0) / MINUTE_MS; // per metric
    assert_eq!(deleted, 3 * expected_gone);
    assert!(
        !B::ROW_BOUNDED_RETENTION || steps as u64 >= deleted / 500,
        "{steps} steps for {deleted} rows"
    );
    for &id in &metrics {
        let kept = t
            .store
            .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
            .unwrap();
        assert_eq!(kept.len() as u64, 10 * 24 * 60 - expected_gone);
        assert_eq!(
            kept[0].ts, cutoff,
            "the oldest kept sample is the first at the cutoff"
        );
    }
    // Nothing more to do: a further step deletes nothing.
    assert_eq!(
        t.store.apply_retention(&policy, now, 500).unwrap().deleted,
        0
    );
}

fn the_audit_log_keeps_its_own_age_and_row_limits_apart_from_sample_retention<B: Backend>() {
    let t = Fixture::<B>::new();
    let id = register(&*t.store, "M");
    t.store.append(&series(id, T0, 10 * 24, 3_600_000)).unwrap();
    // Ten days of audit entries, one an hour.
    for hour in 0..10 * 24 {
        t.store
            .audit_append(&audit_entry(T0 + hour * 3_600_000))
            .unwrap();
    }
    let now = T0 + 10 * DAY_MS;

    // Sample retention keeping one day, and a size limit of 1 byte, leave every entry.
    let samples_only = RetentionPolicy {
        max_age: Some(Duration::from_millis(DAY_MS)),
        max_bytes: Some(1),
    };
    run_to_completion::<B>(&*t.store, &samples_only, now, 1_000);
    assert!(count(&*t.store, id) < 10 * 24);
    assert_eq!(audit_timestamps(&*t.store).len(), 10 * 24);

    // By age: entries older than three days go, in steps of at most 50.
    let by_age = AuditRetention {
        max_age: Some(Duration::from_millis(3 * DAY_MS)),
        max_rows: None,
    };
    let mut steps = 0;
    loop {
        let step = t.store.apply_audit_retention(&by_age, now, 50).unwrap();
        assert!(step.deleted <= 50);
        steps += 1;
        assert!(steps < 100, "audit retention does not finish");
        if !step.more {
            break;
        }
    }
    let kept = audit_timestamps(&*t.store);
    assert_eq!(kept.len(), 3 * 24);
    assert_eq!(kept[0], now - 3 * DAY_MS);

    // By rows: the newest 10 stay.
    let by_rows = AuditRetention {
        max_age: None,
        max_rows: Some(10),
    };
    let step = t
        .store
        .apply_audit_retention(&by_rows, now, 10_000)
        .unwrap();
    assert_eq!(step.deleted, 3 * 24 - 10);
    assert!(!step.more);
    let kept = audit_timestamps(&*t.store);
    assert_eq!(
        kept,
        (0..10)
            .map(|i| now - (10 - i) * 3_600_000)
            .collect::<Vec<_>>()
    );
    // Nothing left to do: a second pass deletes nothing.
    let again = t
        .store
        .apply_audit_retention(&by_rows, now, 10_000)
        .unwrap();
    assert_eq!((again.deleted, again.more), (0, false));
}

fn a_replay_through_the_writer_is_stored_once<B: Backend>() {
    let t = Fixture::<B>::new();
    runtime().block_on(a_replay_through_the_writer(t));
}

async fn a_replay_through_the_writer<B: Backend>(t: Fixture<B>) {
    let id = register(&*t.store, "P");
    let (writer, task) =
        HistoryWriter::spawn(t.store.clone(), config(64, Duration::from_millis(50)));
    let live = series(id, T0, 1_000, 1_000);
    writer.append(live.clone()).await.unwrap();
    writer.flush().await.unwrap();
    let replay: Vec<Sample> = live
        .iter()
        .map(|s| Sample {
            is_historical: true,
            ..s.clone()
        })
        .collect();
    writer.append(replay).await.unwrap();
    writer.shutdown().await.unwrap();
    let stats = task.join().await.unwrap();
    assert_eq!(
        (stats.stored.inserted, stats.stored.duplicates),
        (1_000, 1_000)
    );
    // Queries from async code go through the blocking pool.
    let store = t.store.clone();
    let stored =
        tokio::task::spawn_blocking(move || store.range(id, TimeRange::new(0, u64::MAX), u32::MAX))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(stored, live);
    // The last handle, dropped on a runtime worker, closes the store without blocking it.
    drop(t);
}

/// Every method called straight from async code, as a handler may call it: in a task on a
/// multi-threaded runtime's worker, in that runtime's `block_on`, and in a task on a
/// current-thread runtime (the PostgreSQL client used to panic in all three). Each answers
/// as it does from a plain thread, and the store's last handle may be dropped in a task.
fn every_method_answers_when_called_from_async_code<B: Backend>() {
    let Fixture { store, backend } = Fixture::<B>::new();
    let multi = runtime();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let on_worker = Arc::clone(&store);
    let ids = vec![
        multi
            .block_on(async { tokio::spawn(every_method(on_worker, "OnWorker")).await })
            .unwrap(),
        multi.block_on(every_method(Arc::clone(&store), "InBlockOn")),
        current
            .block_on(async {
                tokio::spawn(every_method(Arc::clone(&store), "OnCurrentThread")).await
            })
            .unwrap(),
    ];

    let mut store = Some(store);
    for rt in [&multi, &current] {
        let last = store.take().unwrap();
        rt.block_on(async { tokio::spawn(async move { drop(last) }).await })
            .unwrap();
        let reopened = backend.open();
        for &id in &ids {
            assert_eq!(count(&*reopened, id), 3, "samples kept after the close");
        }
        store = Some(reopened);
    }
}

/// Calls each store method once, on a metric of its own named `name`; returns its id.
async fn every_method(store: Arc<dyn HistoryStore>, name: &str) -> MetricId {
    let key = MetricKey::device("Plant1", "Edge1", "PLC1", name);
    let meta = MetricMeta {
        datatype: "Double".into(),
        units: Some("bar".into()),
    };
    let id = store.register_metric(&key, &meta).unwrap();
    let samples = series(id, T0, 3, 1_000);
    let o = store.append(&samples).unwrap();
    assert_eq!((o.inserted, o.duplicates), (3, 0));
    let o = store.append(&samples).unwrap();
    assert_eq!((o.inserted, o.duplicates), (0, 3));
    assert_eq!(store.resolve_metric(&key).unwrap(), Some(id));
    let listed = store.metrics().unwrap();
    assert!(
        listed
            .iter()
            .any(|m| (m.id, &m.key, &m.meta) == (id, &key, &meta))
    );

    let span = TimeRange::new(T0, T0 + 3_000);
    assert_eq!(store.range(id, span, 10).unwrap(), samples);
    let buckets = store.downsample(id, span, 3).unwrap();
    assert_eq!(
        buckets.iter().map(|b| b.count).collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
    assert_eq!(store.latest(&[id]).unwrap(), vec![samples[2].clone()]);

    let entry = AuditEntry {
        metric: key.clone(),
        ..audit_entry(T0)
    };
    let seq = store.audit_append(&entry).unwrap();
    let found = store
        .audit_query(&AuditQuery {
            range: TimeRange::new(0, u64::MAX),
            user: None,
            metric: Some(key),
            limit: 10,
        })
        .unwrap();
    assert_eq!(
        found.iter().map(|r| (r.id, &r.entry)).collect::<Vec<_>>(),
        vec![(seq, &entry)]
    );

    let decade = Some(Duration::from_secs(3_650 * 86_400));
    let now = T0 + 3_000;
    let step = store
        .apply_retention(
            &RetentionPolicy {
                max_age: decade,
                max_bytes: None,
            },
            now,
            1_000,
        )
        .unwrap();
    assert_eq!((step.deleted, step.more), (0, false));
    let step = store
        .apply_audit_retention(
            &AuditRetention {
                max_age: decade,
                max_rows: None,
            },
            now,
            1_000,
        )
        .unwrap();
    assert_eq!((step.deleted, step.more), (0, false));
    store.checkpoint().unwrap();
    id
}

/// A store call that waits on the database does not hold its runtime worker: on a runtime
/// of one worker, a task spawned just before the call (so queued behind it on that worker)
/// runs while the call waits, and it is the one that lets the call through.
fn a_call_waiting_on_the_database_leaves_its_worker_to_other_tasks<B: Backend>() {
    let t = Fixture::<B>::new();
    let id = register(&*t.store, "Held");
    let samples = series(id, T0, 10, 1_000);
    let release = t.backend.hold_writes();
    let one_worker = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::clone(&t.store);
    let (done, outcome) = std::sync::mpsc::channel();
    one_worker.spawn(async move {
        let releasing = tokio::spawn(async move {
            tokio::task::spawn_blocking(release).await.unwrap();
        });
        let appended = store.append(&samples);
        releasing.await.unwrap();
        let _ = done.send(appended);
    });
    // A held worker would never run the release (PostgreSQL waits for the lock for ever).
    let appended = outcome
        .recv_timeout(Duration::from_secs(60))
        .expect("the append finished: its worker ran the task that released the lock");
    assert_eq!(appended.unwrap().inserted, 10);
    one_worker.shutdown_background();
}
