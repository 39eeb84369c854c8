//! A store file written by the first layout (one row per sample, schema version 1),
//! kept in tests/fixtures as that code left it: 200 samples appended, the first 30 of
//! them replayed and acked, 100 live samples written ahead of which the first 40 were
//! confirmed. Opening it with this build loses no queued sample, brings back no acked or
//! confirmed one, and replays in the order the old file would have. The same for a file
//! of the layout before segment files (schema version 3), with its queue and write-ahead
//! logs as a killed process left them.

use std::path::Path;

use edge_node::modbus::{DeviceId, Quality, Value};
use edge_node::store::{Store, StoreConfig, StoredSample};

/// The samples the fixture was made from (the generator that wrote it).
fn sample(i: u64) -> StoredSample {
    StoredSample {
        device: if i.is_multiple_of(9) {
            None
        } else {
            Some(DeviceId((i % 3) as u32))
        },
        alias: i % 11,
        timestamp_ms: 1_764_000_000_000 + (i / 5) * 1_000,
        value: match i % 4 {
            0 => Value::F32(i as f32 * 0.5),
            1 => Value::I64(-(i as i64)),
            2 => Value::Bool(i.is_multiple_of(3)),
            _ => Value::String(format!("s{i}")),
        },
        quality: if i.is_multiple_of(7) {
            Quality::Stale
        } else {
            Quality::Good
        },
    }
}

/// A copy of `tests/fixtures/<name>` (with the files of `suffixes` beside it) as
/// `store.sqlite` in a new directory, and the store's configuration.
fn fixture_copy(name: &str, suffixes: &[&str]) -> (tempfile::TempDir, StoreConfig) {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for suffix in suffixes {
        std::fs::copy(
            fixtures.join(format!("{name}{suffix}")),
            dir.path().join(format!("store.sqlite{suffix}")),
        )
        .unwrap();
    }
    let cfg = StoreConfig {
        path: dir.path().join("store.sqlite"),
        ..StoreConfig::default()
    };
    (dir, cfg)
}

/// The fixture opened whole: `expected` queued, of which the unconfirmed live samples.
fn assert_opened_with(store: &Store, expected: &[StoredSample]) {
    assert!(store.moved_aside().is_none());
    assert_eq!(store.recovered(), 60, "the unconfirmed live samples");
    assert_eq!(store.depth(), expected.len() as u64);
    assert_eq!(
        store.bytes(),
        expected.iter().map(|s| s.stored_len() as u64).sum::<u64>()
    );
}

fn drain(store: &mut Store) -> Vec<StoredSample> {
    let mut out = Vec::new();
    for _ in 0..1_000 {
        let batch = store.peek_batch(17, 1 << 20).expect("peek");
        let Some(id) = batch.id() else { return out };
        out.extend(batch.samples().iter().cloned());
        store.ack(id).expect("ack");
    }
    panic!("queue did not drain");
}

#[test]
fn a_first_layout_file_is_converted_without_losing_a_queued_sample() {
    let (_dir, cfg) = fixture_copy("store-v1.sqlite", &[""]);
    let expected: Vec<StoredSample> = (30..200).chain(240..300).map(sample).collect();

    let mut store = Store::open(&cfg).unwrap();
    assert_opened_with(&store, &expected);
    // Half of it replayed and acked, then a restart: the rest is still there, once.
    let batch = store.peek_batch(100, 1 << 20).unwrap();
    assert_eq!(batch.samples(), &expected[..100]);
    store.ack(batch.id().unwrap()).unwrap();
    drop(store);

    let mut store = Store::open(&cfg).unwrap();
    assert_eq!(store.recovered(), 0);
    assert_eq!(drain(&mut store), expected[100..]);
    assert_eq!(store.depth(), 0);
}

/// `tests/fixtures/store-v3.sqlite` and its logs, written by the build before segment
/// files (schema version 3) from the samples of [`sample`]: 200 appended in reports of
/// 5, a batch of the first 30 replayed and acked (folding the queue log into the table),
/// 100 more appended (left in the queue log `-queue`), 100 live samples written ahead in
/// scans of 10 (`-ahead`) of which the first 40 were confirmed, then killed (the WAL
/// checkpointed into the file, the logs as they were).
#[test]
fn a_file_and_logs_of_the_layout_before_segments_open_and_replay_every_sample() {
    let (_dir, cfg) = fixture_copy("store-v3.sqlite", &["", "-queue", "-ahead"]);
    let expected: Vec<StoredSample> = (30..300).chain(340..400).map(sample).collect();

    let mut store = Store::open(&cfg).unwrap();
    assert_opened_with(&store, &expected);
    let batch = store.peek_batch(100, 1 << 20).unwrap();
    assert_eq!(batch.samples(), &expected[..100]);
    store.ack(batch.id().unwrap()).unwrap();
    // Newer samples now go to the segment files, after the converted ones.
    let newer: Vec<StoredSample> = (400..450).map(sample).collect();
    for report in newer.chunks(5) {
        store.append(report).unwrap();
    }
    std::mem::forget(store);

    let mut store = Store::open(&cfg).unwrap();
    assert_eq!(store.recovered(), 0);
    let rest: Vec<StoredSample> = expected[100..].iter().chain(&newer).cloned().collect();
    assert_eq!(drain(&mut store), rest);
    assert_eq!(store.depth(), 0);
}

/// A site of u16 tags by device, as a configuration file declares them.
fn site(devices: &[(&str, &[&str])]) -> edge_node::modbus::Site {
    let mut toml = String::from("[[modbus.scan_classes]]\nname = \"fast\"\nperiod_ms = 100\n");
    for (device, tags) in devices {
        toml += &format!("[[modbus.devices]]\nname = \"{device}\"\nhost = \"127.0.0.1\"\n");
        for (i, tag) in tags.iter().enumerate() {
            toml += &format!(
                "[[modbus.devices.tags]]\nname = \"{tag}\"\naddress = \"4{:04}\"\ntype = \"u16\"\n",
                i + 1
            );
        }
    }
    edge_node_testkit::modbus::site(&toml)
}

/// Writes a first-layout file whose samples were stored under positional aliases
/// (64 + the tag's index in the site), as the builds before the alias map did.
fn first_layout_file(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE samples (ts INTEGER NOT NULL, seq INTEGER NOT NULL, device INTEGER,
             alias INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ts, seq)) WITHOUT ROWID;
         CREATE TABLE sent (mark INTEGER PRIMARY KEY, ts INTEGER NOT NULL, device INTEGER,
             alias INTEGER NOT NULL, value BLOB NOT NULL);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    // Value blob: kind 3 (u16, GOOD), then little-endian bytes.
    let u16_blob = |v: u16| [vec![3u8], v.to_le_bytes().to_vec()].concat();
    let ts = 1_764_000_000_000i64;
    for (seq, (device, alias, v)) in [(0, 64, 1u16), (0, 65, 2), (1, 66, 3)]
        .into_iter()
        .enumerate()
    {
        conn.execute(
            "INSERT INTO samples (ts, seq, device, alias, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![ts, seq as i64, device, alias, u16_blob(v)],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO sent (mark, ts, device, alias, value) VALUES (0, ?1, 1, 66, ?2)",
        rusqlite::params![ts + 1_000, u16_blob(4)],
    )
    .unwrap();
}

/// (device name, tag name, value) of every queued sample, through the site's aliases.
fn named(
    store: &mut Store,
    site: &edge_node::modbus::Site,
    aliases: &edge_node::store::TagAliases,
) -> Vec<(String, String, Value)> {
    let batch = store.peek_batch(100, 1 << 20).unwrap();
    batch
        .samples()
        .iter()
        .map(|s| {
            let tag = &site.tags[aliases.tag(s.alias).unwrap().index()];
            assert_eq!(s.device, Some(DeviceId(tag.device as u32)));
            let device = site.devices[tag.device].name.clone();
            (device, tag.name.clone(), s.value.clone())
        })
        .collect()
}

#[test]
fn an_old_file_s_samples_keep_their_metrics_through_the_map_derived_at_first_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    first_layout_file(&path);
    let cfg = StoreConfig {
        path,
        ..StoreConfig::default()
    };
    let n = |d: &str, t: &str, v: u16| (d.to_owned(), t.to_owned(), Value::U16(v));
    // The configuration in force when the file was written, at the first open.
    let old = site(&[("a", &["x", "y"]), ("b", &["z"])]);
    let mut store = Store::open(&cfg).unwrap();
    let aliases = store.assign_aliases(&old);
    store.save_aliases().unwrap();
    assert_eq!(
        named(&mut store, &old, &aliases),
        [
            n("a", "x", 1),
            n("a", "y", 2),
            n("b", "z", 3),
            n("b", "z", 4)
        ]
    );
    drop(store);
    // Restarted with an edited file: devices swapped, a tag inserted before x, y removed.
    let new = site(&[("b", &["z"]), ("a", &["new", "x"])]);
    let mut store = Store::open(&cfg).unwrap();
    let aliases = store.assign_aliases(&new);
    store.save_aliases().unwrap();
    assert_eq!(store.alias_map().alias("a", "new"), Some(67));
    let batch = store.peek_batch(100, 1 << 20).unwrap();
    assert_eq!(batch.retired(), 1, "y's sample has no metric any more");
    assert_eq!(
        named(&mut store, &new, &aliases),
        [n("a", "x", 1), n("b", "z", 3), n("b", "z", 4)]
    );
    assert_eq!(store.ack(batch.id().unwrap()).unwrap(), 4);
    assert_eq!(store.depth(), 0);
}
