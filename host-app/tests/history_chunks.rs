//! The chunked layout as a model: samples at and across window boundaries, late samples
//! landing in windows already closed into chunks, STALE markers inside chunks, and a file of
//! the previous layout (a row per sample) converted at open without losing a sample.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use host_app::history::{
    HistoryStore, MetricId, Quality, Sample, SampleValue, SqliteOptions, SqliteStore, TimeRange,
};
use host_app_testkit::history::{TempStore, register, sample};
use proptest::prelude::*;

/// A window boundary: chunks cover ten minutes aligned on the epoch.
const T0: u64 = 1_700_000_400_000;
const WINDOW: u64 = 600_000;

fn all(store: &dyn HistoryStore, id: MetricId) -> Vec<Sample> {
    store
        .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
        .unwrap()
}

fn chunk_rows(t: &TempStore) -> i64 {
    rusqlite::Connection::open(t.path())
        .unwrap()
        .query_row("SELECT count(*) FROM sample_chunks", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn samples_on_both_sides_of_window_boundaries_read_back_in_order_and_bounds_are_exact() {
    assert_eq!(T0 % WINDOW, 0, "T0 sits on a boundary");
    let mut t = TempStore::new();
    let id = register(&*t.store, "Edge");
    // Around each of five boundaries: the last ms of a window, the first, the second.
    let stamps: Vec<u64> = (1..=5)
        .flat_map(|k| [T0 + k * WINDOW - 1, T0 + k * WINDOW, T0 + k * WINDOW + 1])
        .collect();
    let samples: Vec<Sample> = stamps
        .iter()
        .map(|&ts| sample(id, ts, SampleValue::I64(ts as i64)))
        .collect();
    // Newest first, so the store sees the late ones after windows closed.
    for s in samples.iter().rev() {
        assert_eq!(t.store.append(std::slice::from_ref(s)).unwrap().inserted, 1);
    }
    for round in 0..2 {
        assert_eq!(all(&*t.store, id), samples, "round {round}");
        for k in 1..=5 {
            let b = T0 + k * WINDOW;
            let at = |from, to| t.store.range(id, TimeRange::new(from, to), 100).unwrap();
            assert_eq!(at(b, b + 1).len(), 1, "[b, b+1) holds the first ms only");
            assert_eq!(at(b - 1, b).len(), 1, "[b-1, b) holds the last ms only");
            assert_eq!(at(b - 1, b + 2).len(), 3);
            assert_eq!(at(b - 1, b + 2)[0].ts, b - 1);
        }
        // A limit stops at the right sample across chunks.
        let first4 = t.store.range(id, TimeRange::new(0, u64::MAX), 4).unwrap();
        assert_eq!(first4, samples[..4]);
        // Buckets that straddle boundaries count every sample once.
        let buckets = t
            .store
            .downsample(id, TimeRange::new(T0, T0 + 6 * WINDOW), 3)
            .unwrap();
        assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), 15);
        t.store.checkpoint().unwrap(); // every window into chunks, then read again
        t.reopen();
    }
    assert_eq!(chunk_rows(&t), 6, "one chunk per window touched");
}

#[test]
fn late_samples_land_in_closed_chunks_once_and_replace_only_a_stale_marker() {
    let mut t = TempStore::new();
    let id = register(&*t.store, "Flow");
    let other = register(&*t.store, "Other");
    // An hour at 1 Hz with every tenth second missing; then a minute more an hour later,
    // which closes every window of the first hour.
    let hour: Vec<Sample> = (0..3_600u64)
        .filter(|s| s % 10 != 5)
        .map(|s| sample(id, T0 + s * 1_000, SampleValue::F64(s as f64 * 0.5)))
        .collect();
    let stale = Sample {
        quality: Quality::STALE,
        ..sample(id, T0 + 1_800_500, SampleValue::Null)
    };
    t.store.append(&hour).unwrap();
    t.store.append(std::slice::from_ref(&stale)).unwrap();
    let later: Vec<Sample> = (0..60u64)
        .map(|s| {
            sample(
                other,
                T0 + 2 * 3_600_000 + s * 1_000,
                SampleValue::Bool(s % 2 == 0),
            )
        })
        .collect();
    t.store.append(&later).unwrap();
    assert!(chunk_rows(&t) >= 6, "the first hour is in chunks");

    let mut expected: Vec<Sample> = hour.clone();
    expected.push(stale.clone());
    expected.sort_by_key(|s| s.ts);
    for round in 0..2 {
        // The whole hour again, as a store-and-forward replay: every one a duplicate.
        let replay: Vec<Sample> = hour
            .iter()
            .map(|s| Sample {
                is_historical: true,
                value: SampleValue::F64(-1.0),
                ..s.clone()
            })
            .collect();
        let o = t.store.append(&replay).unwrap();
        assert_eq!(
            (o.inserted, o.duplicates),
            (0, hour.len() as u64),
            "round {round}"
        );
        // The missing seconds, late, in closed windows: stored once, in order.
        let gaps: Vec<Sample> = (0..360u64)
            .map(|k| Sample {
                is_historical: true,
                ..sample(
                    id,
                    T0 + (k * 10 + 5) * 1_000,
                    SampleValue::F64(round as f64),
                )
            })
            .collect();
        let o = t.store.append(&gaps).unwrap();
        let fresh = if round == 0 { 360 } else { 0 };
        assert_eq!(
            (o.inserted, o.duplicates),
            (fresh, 360 - fresh),
            "round {round}"
        );
        if round == 0 {
            expected.extend(gaps);
            expected.sort_by_key(|s| s.ts);
        }
        // A measurement on the STALE marker's millisecond replaces it, once.
        let measured = Sample {
            is_historical: true,
            ..sample(id, stale.ts, SampleValue::F64(7.0))
        };
        let o = t.store.append(&[measured.clone(), stale.clone()]).unwrap();
        let replaced = u64::from(round == 0);
        assert_eq!((o.inserted, o.duplicates), (replaced, 2 - replaced));
        if round == 0 {
            let i = expected.iter().position(|s| s.ts == stale.ts).unwrap();
            expected[i] = measured;
        }
        assert_eq!(all(&*t.store, id), expected, "round {round}");
        // Close every window (the late ones merge into their chunks) and read from the file.
        t.reopen();
        assert_eq!(all(&*t.store, id), expected, "round {round} after reopen");
        assert_eq!(all(&*t.store, other), later);
    }
    let latest = t.store.latest(&[id, other]).unwrap();
    assert_eq!(
        latest,
        vec![
            expected.last().unwrap().clone(),
            later.last().unwrap().clone()
        ]
    );
}

#[derive(Debug, Clone)]
enum Step {
    /// (metric index, seconds after T0 within three hours, value)
    Append(Vec<(usize, u64, i64)>),
    /// Close every window into chunks.
    Checkpoint,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => proptest::collection::vec((0_usize..3, 0_u64..10_800, any::<i64>()), 0..120)
            .prop_map(Step::Append),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Batches spread over many windows, in any order, with windows closing between them:
    /// each (metric, ts) is stored once with its first value, and every query agrees.
    #[test]
    fn across_windows_each_sample_is_kept_once_with_its_first_value(
        steps in proptest::collection::vec(step(), 1..16)
    ) {
        let mut t = TempStore::new();
        let ids: Vec<MetricId> = (0..3).map(|i| register(&*t.store, &format!("M{i}"))).collect();
        let mut model: BTreeMap<(MetricId, u64), Sample> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Append(batch) => {
                    let samples: Vec<Sample> = batch
                        .into_iter()
                        .map(|(m, s, v)| sample(ids[m], T0 + s * 1_000, SampleValue::I64(v)))
                        .collect();
                    let mut fresh = 0;
                    for s in &samples {
                        if let Entry::Vacant(slot) = model.entry((s.metric, s.ts)) {
                            slot.insert(s.clone());
                            fresh += 1;
                        }
                    }
                    let o = t.store.append(&samples).unwrap();
                    prop_assert_eq!((o.inserted, o.duplicates), (fresh, samples.len() as u64 - fresh));
                }
                Step::Checkpoint => t.store.checkpoint().unwrap(),
                Step::Reopen => t.reopen(),
            }
        }
        for &id in &ids {
            let expected: Vec<Sample> =
                model.range((id, 0)..=(id, u64::MAX)).map(|(_, s)| s.clone()).collect();
            prop_assert_eq!(&all(&*t.store, id), &expected);
            let latest = t.store.latest(&[id]).unwrap();
            prop_assert_eq!(latest.first(), expected.last());
            let buckets = t.store.downsample(id, TimeRange::new(T0, T0 + 10_800_000), 7).unwrap();
            prop_assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), expected.len() as u64);
        }
    }
}

/// The samples `tests/fixtures/history-v1.db` was made with, by the store of schema
/// version 1 (commit 50c63df): 6,000 of them appended in one large batch (three copies of
/// each, so they went straight into `samples`) and 3,000 in batches of 100 (left in
/// `samples_recent`, as a run that did not fold before it stopped), plus one audit entry.
fn expected(ids: &[MetricId]) -> Vec<Sample> {
    const T0: u64 = 1_700_000_000_000;
    let mut out = Vec::new();
    for (m, &id) in ids.iter().enumerate() {
        for i in 0..3_000u64 {
            let ts = T0 + i * 2_500 + m as u64 * 7;
            let value = match (m, i % 17) {
                (_, 0) => SampleValue::Null,
                (_, 1) => SampleValue::F64(f64::NAN),
                (_, 2) => SampleValue::F64(-0.0),
                (_, 3) => SampleValue::F64(f64::INFINITY),
                (0, _) => SampleValue::F64((i as f64 * 0.37).sin() * 1e3),
                (1, 4) => SampleValue::U64(u64::MAX - i),
                (1, _) => SampleValue::I64(i as i64 * -13),
                (2, 5) => SampleValue::Text(format!("state {i}")),
                (2, 6) => SampleValue::Bytes(vec![i as u8; (i % 5) as usize]),
                (2, _) => SampleValue::Bool(i % 3 == 0),
                _ => unreachable!(),
            };
            out.push(Sample {
                metric: id,
                ts,
                value,
                quality: match i % 11 {
                    0 => Quality::BAD,
                    1 => Quality::STALE,
                    2 => Quality(7),
                    _ => Quality::GOOD,
                },
                is_historical: i % 13 == 0,
            });
        }
    }
    out
}

#[test]
fn a_file_of_the_previous_layout_is_converted_at_open_without_losing_a_sample() {
    converted_without_loss("history-v1.db", &["samples", "samples_recent"]);
}

/// `tests/fixtures/history-v2.db` was made by the store of schema version 2 (commit
/// ea8835d, a chunk in one row whatever its size) from the same samples as the v1 file:
/// 6,000 appended in one batch, 3,000 in batches of 100, one audit entry, then closed.
#[test]
fn a_file_of_whole_row_chunks_is_converted_at_open_without_losing_a_sample() {
    converted_without_loss("history-v2.db", &["sample_chunks_whole"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/history-v2.db"),
        &path,
    )
    .unwrap();
    drop(SqliteStore::open(&path, &SqliteOptions::default()).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (version, rows, parts0): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), count(*), \
                    sum(part = 0) FROM sample_chunks",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(version, 3);
    assert_eq!(
        (rows, parts0),
        (39, 39),
        "each old chunk is part 0 of its chunk"
    );
}

/// Opens a copy of `fixture` (made from [`expected`]) twice: every sample and the audit
/// entry are there, appending goes on, and the `old` tables are gone.
fn converted_without_loss(fixture: &str, old: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture),
        &path,
    )
    .unwrap();
    for round in 0..2 {
        let store = SqliteStore::open(&path, &SqliteOptions::default()).unwrap();
        let metrics = store.metrics().unwrap();
        assert_eq!(metrics.len(), 3, "round {round}");
        let ids: Vec<MetricId> = metrics.iter().map(|m| m.id).collect();
        let mut want = expected(&ids);
        want.sort_by_key(|s| (s.metric, s.ts));
        let mut got = Vec::new();
        for &id in &ids {
            got.extend(all(&store, id));
        }
        assert_eq!(got.len(), 9_000, "round {round}");
        for (g, w) in got.iter().zip(&want) {
            let same_value = match (&g.value, &w.value) {
                (SampleValue::F64(a), SampleValue::F64(b)) => {
                    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
                }
                (a, b) => a == b,
            };
            assert!(
                same_value
                    && g.ts == w.ts
                    && g.metric == w.metric
                    && g.quality == w.quality
                    && g.is_historical == w.is_historical,
                "round {round}: {g:?} != {w:?}"
            );
        }
        let audit = store
            .audit_query(&host_app::history::AuditQuery {
                range: TimeRange::new(0, u64::MAX),
                user: None,
                metric: None,
                limit: 10,
            })
            .unwrap();
        assert_eq!(audit.len(), 1);
        // Appending goes on where the old file left off; a replayed old sample is a duplicate.
        let o = store.append(&want[..10]).unwrap();
        assert_eq!((o.inserted, o.duplicates), (0, 10));
        drop(store);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let old_tables: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM sqlite_schema WHERE name IN ('{}')",
                    old.join("', '")
                ),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_tables, 0, "the old layout's tables are gone");
    }
}

fn open_bounded(path: &std::path::Path, bound: u64) -> SqliteStore {
    SqliteStore::open(
        path,
        &SqliteOptions {
            open_window_max_bytes: bound,
            ..SqliteOptions::default()
        },
    )
    .unwrap()
}

/// Most bytes of one part row (0 with no chunk written yet): past 1,002 a row of a 4 KiB
/// page spills to an overflow page.
fn largest_part(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT coalesce(max(length(data) + 40), 0) FROM sample_chunks",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// A flood through the store: 100 metrics every second for half an hour, one append per
/// second. The open windows' memory never passes its bound after an append; reaching it
/// writes them early, the rest of each window adds parts, and every sample reads back once.
#[test]
fn a_flood_keeps_the_open_windows_within_their_memory_bound() {
    const BOUND: u64 = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let store = open_bounded(&path, BOUND);
    let ids: Vec<MetricId> = (0..100)
        .map(|i| register(&store, &format!("F{i}")))
        .collect();
    let (mut folds, mut held_before, mut most) = (0, 0, 0);
    for second in 0..1_800u64 {
        let batch: Vec<Sample> = ids
            .iter()
            .enumerate()
            .map(|(m, &id)| {
                let value = ((second as f64) * 0.01 + m as f64).sin() * 1e3;
                sample(id, T0 + second * 1_000, SampleValue::F64(value))
            })
            .collect();
        assert_eq!(store.append(&batch).unwrap().inserted, 100);
        let bytes = store.open_window_bytes();
        assert!(bytes <= BOUND, "second {second}: {bytes} bytes open");
        most = most.max(bytes);
        let held = store.recent_samples();
        if held < held_before {
            folds += 1;
        }
        held_before = held;
    }
    assert!(
        folds >= 5,
        "the bound was reached and the windows written {folds} times"
    );
    assert!(
        most > BOUND / 2,
        "the open windows used their room: {most} bytes"
    );
    // A late sample inside a window written early lands once, between its neighbours.
    let late = sample(ids[3], T0 + 100_500, SampleValue::F64(0.5));
    assert_eq!(
        store.append(std::slice::from_ref(&late)).unwrap().inserted,
        1
    );
    store.checkpoint().unwrap();
    for (m, &id) in ids.iter().enumerate() {
        let got = all(&store, id);
        assert_eq!(got.len(), 1_800 + usize::from(m == 3), "metric {m}");
        assert!(
            got.windows(2).all(|w| w[0].ts < w[1].ts),
            "metric {m} in order"
        );
        if m == 3 {
            assert_eq!(got[101], late);
        }
    }
    drop(store);
    assert!(
        largest_part(&path) <= 1_002,
        "no part spills to an overflow page"
    );
}

#[derive(Debug, Clone)]
enum BoundedStep {
    /// (metric index, seconds after T0 within three hours, value)
    Append(Vec<(usize, u64, i64)>),
    /// One metric every second from a start, for a while: parts are cut inside a window.
    Run(usize, u64, u64, i64),
    Checkpoint,
    Reopen,
}

fn bounded_step() -> impl Strategy<Value = BoundedStep> {
    prop_oneof![
        6 => proptest::collection::vec((0_usize..3, 0_u64..10_800, any::<i64>()), 0..120)
            .prop_map(BoundedStep::Append),
        2 => (0_usize..3, 0_u64..10_800, 1_u64..700, any::<i64>())
            .prop_map(|(m, start, len, seed)| BoundedStep::Run(m, start.min(10_800 - len), len, seed)),
        1 => Just(BoundedStep::Checkpoint),
        1 => Just(BoundedStep::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// With an open-window bound of a few KiB nearly every append writes the open windows
    /// early, so later samples add parts to chunks or merge into them (in order or late):
    /// each (metric, ts) is still stored once with its first value, every query agrees, and
    /// the bound holds after every append.
    #[test]
    fn with_a_tiny_memory_bound_each_sample_is_kept_once_with_its_first_value(
        steps in proptest::collection::vec(bounded_step(), 1..16)
    ) {
        const BOUND: u64 = 4 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let mut store = open_bounded(&path, BOUND);
        let ids: Vec<MetricId> = (0..3).map(|i| register(&store, &format!("M{i}"))).collect();
        let mut model: BTreeMap<(MetricId, u64), Sample> = BTreeMap::new();
        for step in steps {
            let samples: Vec<Sample> = match step {
                BoundedStep::Append(batch) => batch
                    .into_iter()
                    .map(|(m, s, v)| sample(ids[m], T0 + s * 1_000, SampleValue::I64(v)))
                    .collect(),
                BoundedStep::Run(m, start, len, seed) => (start..start + len)
                    .map(|s| {
                        let v = seed.wrapping_mul(s as i64 + 1).rotate_left(s as u32);
                        sample(ids[m], T0 + s * 1_000, SampleValue::I64(v))
                    })
                    .collect(),
                BoundedStep::Checkpoint => {
                    store.checkpoint().unwrap();
                    continue;
                }
                BoundedStep::Reopen => {
                    drop(store);
                    store = open_bounded(&path, BOUND);
                    continue;
                }
            };
            let mut fresh = 0;
            for s in &samples {
                if let Entry::Vacant(slot) = model.entry((s.metric, s.ts)) {
                    slot.insert(s.clone());
                    fresh += 1;
                }
            }
            let o = store.append(&samples).unwrap();
            prop_assert_eq!((o.inserted, o.duplicates), (fresh, samples.len() as u64 - fresh));
            prop_assert!(store.open_window_bytes() <= BOUND);
        }
        for &id in &ids {
            let expected: Vec<Sample> =
                model.range((id, 0)..=(id, u64::MAX)).map(|(_, s)| s.clone()).collect();
            prop_assert_eq!(&all(&store, id), &expected);
            let latest = store.latest(&[id]).unwrap();
            prop_assert_eq!(latest.first(), expected.last());
            let buckets = store.downsample(id, TimeRange::new(T0, T0 + 10_800_000), 7).unwrap();
            prop_assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), expected.len() as u64);
        }
        drop(store);
        prop_assert!(largest_part(&path) <= 1_002);
    }
}
