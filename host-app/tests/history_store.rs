//! The SQLite history store on a real file: value round trips, exactly-once storage of
//! (metric, timestamp), ordering, latest values, metric registry, audit log, corrupt files.

use host_app::history::{
    AuditEntry, AuditQuery, CommandOutcome, HistoryError, HistoryStore, MetricId, MetricKey,
    MetricMeta, Quality, Sample, SampleValue, SqliteOptions, SqliteStore, TimeRange,
};
use host_app_testkit::history::{TempStore, count, register, sample, series};

const T0: u64 = 1_700_000_000_000;

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

#[test]
fn every_value_type_round_trips_through_the_file() {
    let mut t = TempStore::new();
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

#[test]
fn duplicate_metric_and_timestamp_is_stored_once_across_batches_and_reopen() {
    let mut t = TempStore::new();
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

#[test]
fn range_is_ordered_half_open_and_limited_whatever_the_arrival_order() {
    let t = TempStore::new();
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

#[test]
fn latest_gives_the_newest_sample_per_metric_even_after_an_older_replay() {
    let t = TempStore::new();
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

#[test]
fn metric_keys_map_to_stable_ids_and_keep_their_birth_metadata() {
    let mut t = TempStore::new();
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

    // Registration answers from memory; the rows reach the file with the next sample
    // commit, a checkpoint, or when the store closes.
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
    assert_eq!((all[0].id, &all[0].key), (n, &node_metric));
    assert_eq!(
        (&all[1].key, &all[1].meta),
        (&device_metric, &meta("Double", Some("1/min")))
    );
}

#[test]
fn audit_log_round_trips_and_filters_newest_first() {
    let mut t = TempStore::new();
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

#[test]
fn a_file_that_is_not_a_database_is_refused_at_open_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(&path, &SqliteOptions::default())
        .err()
        .expect("refused");
    assert!(matches!(err, HistoryError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_damaged_header_is_refused_at_open() {
    let mut t = TempStore::new();
    let id = register(&*t.store, "P");
    t.store.append(&series(id, T0, 1_000, 1_000)).unwrap();
    t.store.checkpoint().unwrap();
    let path = t.path();
    t.store = std::sync::Arc::new(host_app_testkit::history::open(
        &t.dir.path().join("other.db"),
    ));
    // Overwrite the "SQLite format 3" magic.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..16].copy_from_slice(b"not a sqlite db\0");
    std::fs::write(&path, bytes).unwrap();
    let err = SqliteStore::open(&path, &SqliteOptions::default())
        .err()
        .expect("refused");
    assert!(matches!(err, HistoryError::Corrupt { .. }), "{err:?}");
}

#[test]
fn a_database_of_another_program_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buffer.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE outbox (id INTEGER PRIMARY KEY, payload BLOB);")
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path, &SqliteOptions::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("outbox"), "{err}");
}

#[test]
fn a_timestamp_beyond_the_store_range_is_rejected_not_stored() {
    let t = TempStore::new();
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

#[test]
fn closing_the_store_folds_the_wal_into_the_database_file() {
    let t = TempStore::new();
    let id = register(&*t.store, "P");
    t.store.append(&series(id, T0, 10_000, 1_000)).unwrap();
    let wal = t.path().with_extension("db-wal");
    assert!(wal.exists(), "ingest goes through the WAL");
    let path = t.path();
    let TempStore { dir, store } = t;
    drop(store);
    assert!(
        !wal.exists(),
        "the last connection to close checkpoints and removes the WAL"
    );
    let again = host_app_testkit::history::open(&path);
    assert_eq!(count(&again, id), 10_000);
    drop(dir);
}

#[test]
fn exactly_once_holds_across_the_recent_and_main_tables() {
    let mut t = TempStore::new();
    let ids: Vec<MetricId> = (0..10)
        .map(|i| register(&*t.store, &format!("M{i}")))
        .collect();
    // 80,000 samples over 8,000 s: windows close as the data goes, so it ends up split
    // across chunks and the samples still in memory.
    let all: Vec<Sample> = (0..8_000_u64)
        .flat_map(|step| {
            ids.iter()
                .map(move |&id| sample(id, T0 + step * 1_000, SampleValue::U64(step)))
        })
        .collect();
    // Small batches and one large one.
    let (small, rest) = all.split_at(30_000);
    let (large, tail) = rest.split_at(20_000);
    for chunk in small.chunks(5_000).chain([large]).chain(tail.chunks(5_000)) {
        assert_eq!(t.store.append(chunk).unwrap().inserted, chunk.len() as u64);
    }

    let raw = rusqlite::Connection::open(t.path()).unwrap();
    let chunks: i64 = raw
        .query_row("SELECT count(*) FROM sample_chunks", [], |r| r.get(0))
        .unwrap();
    assert!(
        chunks > 0 && t.store.recent_samples() > 0,
        "data split across chunks and the recent samples"
    );
    drop(raw);

    // Replayed in small batches (checked against both tables) and in one large batch.
    let replay = |store: &dyn HistoryStore| {
        for chunk in all.chunks(1_000) {
            let o = store.append(chunk).unwrap();
            assert_eq!((o.inserted, o.duplicates), (0, chunk.len() as u64));
        }
        let o = store.append(&all).unwrap();
        assert_eq!((o.inserted, o.duplicates), (0, all.len() as u64));
    };
    replay(&*t.store);
    t.reopen(); // folds what was recent
    replay(&*t.store);
    // A newer sample while older ones are folded: latest and range see both tables.
    t.store
        .append(&[sample(ids[3], T0 + 8_000_000, SampleValue::U64(u64::MAX))])
        .unwrap();
    let latest = t.store.latest(&ids).unwrap();
    assert_eq!(latest.len(), ids.len());
    assert_eq!(
        (latest[3].ts, &latest[3].value),
        (T0 + 8_000_000, &SampleValue::U64(u64::MAX))
    );
    assert_eq!(
        (latest[0].ts, &latest[0].value),
        (T0 + 7_999_000, &SampleValue::U64(7_999))
    );
    let stored = t
        .store
        .range(ids[3], TimeRange::new(0, u64::MAX), u32::MAX)
        .unwrap();
    assert_eq!(stored.len(), 8_001);
    assert!(stored.windows(2).all(|w| w[0].ts < w[1].ts));
    let trend = t
        .store
        .downsample(ids[3], TimeRange::new(T0, T0 + 8_001_000), 8)
        .unwrap();
    assert_eq!(trend.iter().map(|b| b.count).sum::<u64>(), 8_001);
    assert_eq!(trend.last().unwrap().last.value, SampleValue::U64(u64::MAX));
}

/// The host writes a STALE marker at its own clock when a node dies; a sample the edge
/// measured on that same millisecond, arriving later (replayed from its store), replaces
/// the marker instead of being refused as a duplicate — in the recent table and after the
/// marker went straight to the main table in a large batch. A marker never replaces a
/// measurement.
#[test]
fn a_measured_sample_replaces_a_stale_marker_on_the_same_millisecond() {
    let t = TempStore::new();
    let id = register(&*t.store, "Level");
    let stale = |ts: u64| Sample {
        quality: Quality::STALE,
        ..sample(id, ts, SampleValue::F64(1.0))
    };
    let measured = |ts: u64| Sample {
        is_historical: true,
        ..sample(id, ts, SampleValue::F64(2.0))
    };

    // Marker in the recent table.
    t.store.append(&[stale(T0)]).unwrap();
    let o = t.store.append(&[measured(T0)]).unwrap();
    assert_eq!((o.inserted, o.duplicates), (1, 0));

    // Marker written straight into the main table (a batch above the direct threshold).
    let mut big = series(id, T0 + 1_000, 20_000, 1);
    big.push(stale(T0 + 500));
    t.store.append(&big).unwrap();
    let o = t.store.append(&[measured(T0 + 500)]).unwrap();
    assert_eq!((o.inserted, o.duplicates), (1, 0));

    // A marker after the measurement, and the measurement again: both refused.
    let o = t.store.append(&[stale(T0), measured(T0)]).unwrap();
    assert_eq!((o.inserted, o.duplicates), (0, 2));

    let read = t
        .store
        .range(id, TimeRange::new(T0, T0 + 1_000), 1_000)
        .unwrap();
    assert_eq!(read, vec![measured(T0), measured(T0 + 500)]);
}
