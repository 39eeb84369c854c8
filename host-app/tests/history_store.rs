//! What only the SQLite history store has: files refused at open, the WAL folded at close,
//! exactly once across its recent samples and chunks (the contract both backends share is
//! in history_backends.rs).

use host_app::history::{
    HistoryError, HistoryStore, MetricId, Sample, SampleValue, SqliteOptions, SqliteStore,
    TimeRange,
};
use host_app_testkit::history::{TempStore, count, register, sample, series};

const T0: u64 = 1_700_000_000_000;

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
