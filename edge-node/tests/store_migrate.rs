//! A store file written by the first layout (one row per sample, schema version 1),
//! kept in tests/fixtures as that code left it: 200 samples appended, the first 30 of
//! them replayed and acked, 100 live samples written ahead of which the first 40 were
//! confirmed. Opening it with this build loses no queued sample, brings back no acked or
//! confirmed one, and replays in the order the old file would have.

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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1.sqlite");
    std::fs::copy(&fixture, &path).unwrap();
    let cfg = StoreConfig {
        path: path.clone(),
        ..StoreConfig::default()
    };
    let expected: Vec<StoredSample> = (30..200).chain(240..300).map(sample).collect();

    let mut store = Store::open(&cfg).unwrap();
    assert!(store.moved_aside().is_none());
    assert_eq!(store.recovered(), 60, "the unconfirmed live samples");
    assert_eq!(store.depth(), expected.len() as u64);
    assert_eq!(
        store.bytes(),
        expected.iter().map(|s| s.stored_len() as u64).sum::<u64>()
    );
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
