//! The store-and-forward queue on a real SQLite file: order, exact acks, bounds,
//! damaged files, a full disk, and the example configuration.

use std::path::Path;

use edge_node::modbus::{DeviceId, Quality, Value};
use edge_node::store::{
    Overflow, ReplayPacer, SentWindow, Store, StoreConfig, StoreError, StoredSample, Synchronous,
};

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("store.sqlite"),
        ..StoreConfig::default()
    }
}

fn sample(alias: u64, ts: u64, v: f32) -> StoredSample {
    StoredSample {
        device: Some(DeviceId(3)),
        alias,
        timestamp_ms: ts,
        value: Value::F32(v),
        quality: Quality::Good,
    }
}

fn drain(store: &mut Store) -> Vec<StoredSample> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let batch = store.peek_batch(100, 1 << 20).expect("peek");
        let Some(id) = batch.id() else { return out };
        out.extend(batch.samples().iter().cloned());
        store.ack(id).expect("ack");
    }
    panic!("queue did not drain");
}

#[test]
fn replays_in_original_timestamp_order_whatever_the_append_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&config(dir.path())).unwrap();
    // Stored while down, then the sent window (older samples) appended after them.
    store
        .append(&[sample(1, 2_000, 2.0), sample(1, 3_000, 3.0)])
        .unwrap();
    store
        .append(&[sample(1, 1_000, 1.0), sample(2, 1_500, 1.5)])
        .unwrap();
    let ts: Vec<u64> = drain(&mut store).iter().map(|s| s.timestamp_ms).collect();
    assert_eq!(ts, vec![1_000, 1_500, 2_000, 3_000]);
}

#[test]
fn ack_deletes_only_what_was_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&config(dir.path())).unwrap();
    store
        .append(&[sample(1, 10, 1.0), sample(1, 30, 3.0)])
        .unwrap();
    let batch = store.peek_batch(10, 1 << 20).unwrap();
    assert_eq!(batch.len(), 2);
    // Appended between hand-off and ack, inside the batch's timestamp range.
    store.append(&[sample(2, 20, 2.0)]).unwrap();
    assert_eq!(store.ack(batch.id().unwrap()).unwrap(), 2);
    assert_eq!(drain(&mut store), vec![sample(2, 20, 2.0)]);
    // Acking again removes nothing.
    assert_eq!(store.ack(batch.id().unwrap()).unwrap(), 0);
}

#[test]
fn unacked_batch_is_replayed_after_reopen_and_counters_persist() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut store = Store::open(&cfg).unwrap();
    let samples: Vec<_> = (0..50)
        .map(|i| sample(i % 5, 1_000 + i, i as f32))
        .collect();
    store.append(&samples).unwrap();
    let handed = store.peek_batch(20, 1 << 20).unwrap();
    assert_eq!(handed.len(), 20);
    drop(store); // crash between hand-off and ack
    let mut store = Store::open(&cfg).unwrap();
    assert_eq!(store.depth(), 50);
    assert_eq!(
        store.oldest_age(61_000).unwrap().map(|d| d.as_millis()),
        Some(60_000)
    );
    assert_eq!(drain(&mut store), samples);
    assert_eq!(store.oldest_age(61_000).unwrap(), None);
}

#[test]
fn batch_respects_max_bytes_but_never_stalls_on_a_big_sample() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&config(dir.path())).unwrap();
    let big = StoredSample {
        value: Value::String("x".repeat(5_000)),
        ..sample(9, 1, 0.0)
    };
    store.append(&[big.clone(), sample(1, 2, 1.0)]).unwrap();
    let batch = store.peek_batch(10, 100).unwrap();
    assert_eq!(batch.samples(), &[big]);
    store.ack(batch.id().unwrap()).unwrap();
    let batch = store.peek_batch(10, 100).unwrap();
    assert_eq!(batch.samples(), &[sample(1, 2, 1.0)]);
    assert_eq!(batch.bytes(), batch.samples()[0].stored_len());
}

#[test]
fn byte_cap_drops_oldest_or_stops_storing_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let per = sample(1, 0, 0.0).stored_len() as u64;
    let samples: Vec<_> = (0..100).map(|i| sample(1, i, i as f32)).collect();

    let mut cfg = config(dir.path());
    cfg.max_bytes = 1024;
    let fits = 1024 / per;
    let mut store = Store::open(&cfg).unwrap();
    assert_eq!(store.append(&samples).unwrap(), 100);
    assert_eq!(store.depth(), fits);
    assert_eq!(store.dropped(), 100 - fits);
    let kept = drain(&mut store);
    assert_eq!(
        kept.first().unwrap().timestamp_ms,
        100 - fits,
        "the newest are kept"
    );
    drop(store);

    cfg.path = dir.path().join("stop.sqlite");
    cfg.overflow = Overflow::StopStoring;
    let mut store = Store::open(&cfg).unwrap();
    assert_eq!(store.append(&samples).unwrap() as u64, fits);
    assert_eq!(store.dropped(), 100 - fits);
    let kept = drain(&mut store);
    assert_eq!(
        kept.last().unwrap().timestamp_ms,
        fits - 1,
        "the oldest are kept"
    );
    // Room again after replay.
    assert_eq!(store.append(&samples[..3]).unwrap(), 3);
}

#[test]
fn age_cap_drops_what_is_older_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_age_s = 60;
    let mut store = Store::open(&cfg).unwrap();
    let samples: Vec<_> = (0..10).map(|i| sample(1, i * 10_000, 0.0)).collect();
    store.append(&samples).unwrap();
    assert_eq!(
        store.expire(100_000).unwrap(),
        4,
        "0, 10, 20, 30 s are older than 40 s"
    );
    assert_eq!(store.dropped(), 4);
    assert_eq!(drain(&mut store).first().unwrap().timestamp_ms, 40_000);
}

#[test]
fn corrupt_file_is_moved_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::write(
        &cfg.path,
        b"this is not a database, it is a damaged SD card sector".repeat(200),
    )
    .unwrap();
    let mut store = Store::open(&cfg).unwrap();
    let aside = store.moved_aside().expect("moved aside").to_owned();
    assert!(
        aside
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("store.sqlite.corrupt-")
    );
    assert!(aside.exists());
    assert_eq!(store.depth(), 0);
    store.append(&[sample(1, 1, 1.0)]).unwrap();
    assert_eq!(drain(&mut store).len(), 1);
}

#[test]
fn damaged_pages_are_detected_moved_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut store = Store::open(&cfg).unwrap();
    let samples: Vec<_> = (0..5_000).map(|i| sample(i % 7, i, i as f32)).collect();
    // The sent window goes to the table (appends go to the segment files).
    store.append_unconfirmed(&samples).unwrap();
    drop(store); // closing checkpoints the WAL into the file
    let mut bytes = std::fs::read(&cfg.path).unwrap();
    assert!(bytes.len() > 3 * 4096);
    // Scribble over the b-tree pages after the header page.
    for b in &mut bytes[4096 + 8..4096 * 3] {
        *b = 0xa5;
    }
    std::fs::write(&cfg.path, &bytes).unwrap();
    let mut store = Store::open(&cfg).unwrap();
    assert!(store.moved_aside().is_some());
    assert_eq!(store.depth(), 0);
    store.append(&samples[..10]).unwrap();
    assert_eq!(drain(&mut store), samples[..10].to_vec());
}

#[test]
fn disk_full_is_a_typed_error_and_reads_and_acks_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&config(dir.path())).unwrap();
    let scan: Vec<_> = (0..200).map(|i| sample(i % 20, i, i as f32)).collect();
    store.append(&scan).unwrap();
    let pages = store.file_bytes().unwrap() / 4096;
    store.limit_pages(pages + 2).unwrap();
    let mut full = None;
    for round in 1..1_000u64 {
        let scan: Vec<_> = (0..200)
            .map(|i| sample(i % 20, round * 1_000 + i, 0.5))
            .collect();
        if let Err(e) = store.append(&scan) {
            full = Some(e);
            break;
        }
    }
    let err = full.expect("the page cap is reached");
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    assert!(err.to_string().contains("store.sqlite"), "{err}");
    let depth = store.depth();
    // The refused append left nothing behind; replay drains what was stored.
    let drained = drain(&mut store);
    assert_eq!(drained.len() as u64, depth);
    assert!(
        drained
            .windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
    );
    // Freed pages are reused: storing works again.
    assert_eq!(store.append(&scan).unwrap(), 200);
}

#[test]
fn example_config_loads_and_bad_keys_are_named() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/store.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = StoreConfig::from_toml(&text).unwrap();
    assert_eq!(cfg.overflow, Overflow::DropOldest);
    assert_eq!(cfg.sent_window_samples, 50_000);
    assert!(cfg.persist_sent_window);
    assert_eq!(cfg.max_bytes, 268_435_456);

    let err = StoreConfig::from_toml("[store]\nbatch_size = 0\n").unwrap_err();
    assert_eq!(err.keys(), ["store.batch_size"], "{err}");
    assert!(err.to_string().contains("store.batch_size"), "{err}");
    let err = StoreConfig::from_toml("[store]\nbatch_size = 0\nmax_bytes = 1\n").unwrap_err();
    assert_eq!(err.keys(), ["store.max_bytes", "store.batch_size"], "{err}");
    let err = StoreConfig::from_toml("[store]\noverflow = \"drop_newest\"\n").unwrap_err();
    assert_eq!(err.keys(), ["store.overflow"], "{err}");
    assert!(
        err.to_string().starts_with("2:12: store.overflow: "),
        "{err}"
    );
    let err = StoreConfig::from_toml("[store]\nmax_bytez = 5\n").unwrap_err();
    assert!(err.to_string().contains("max_bytez"), "{err}");
    assert_eq!(StoreConfig::from_toml("").unwrap(), StoreConfig::default());
}

#[test]
fn numeric_samples_cost_few_bytes_of_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&config(dir.path())).unwrap();
    let now = 1_764_000_000_000u64;
    for scan in 0..50u64 {
        let samples: Vec<_> = (0..200)
            .map(|i| sample(i, now + scan * 1_000, i as f32))
            .collect();
        store.append(&samples).unwrap();
    }
    let per_sample = store.file_bytes().unwrap() as f64 / store.depth() as f64;
    assert!(
        per_sample < 48.0,
        "{per_sample:.1} bytes of disk per stored sample"
    );
}

#[test]
fn synchronous_level_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    assert_eq!(
        Store::open(&cfg).unwrap().synchronous().unwrap(),
        Synchronous::Normal
    );
    cfg.synchronous = Synchronous::Full;
    assert_eq!(
        Store::open(&cfg).unwrap().synchronous().unwrap(),
        Synchronous::Full
    );
}

/// The publisher's calls across an outage: live with the sent window, a link that dies
/// unnoticed, storing, then paced replay after reconnect. Nothing is lost, per metric the
/// replay is in original timestamp order, and replay never exceeds what live leaves.
#[test]
fn outage_through_window_store_and_pacer_delivers_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.replay_bytes_per_s = 2_000;
    cfg.batch_size = 20;
    let mut store = Store::open(&cfg).unwrap();
    let mut window = SentWindow::from_config(&cfg);
    let mut pacer = ReplayPacer::from_config(&cfg, 0);
    let mut delivered: Vec<StoredSample> = Vec::new();
    let scan = |t: u64| -> Vec<StoredSample> { (0..5).map(|a| sample(a, t, t as f32)).collect() };

    let mut t = 0;
    // A liveness probe every 1.5 s (a 3 s keep-alive), answered one scan later while the
    // link lives. 1..=10 s: link up; from 6 s on it is dead but not yet noticed
    // (publishes and probes vanish).
    let mut probe = None;
    while t < 10_000 {
        t += 100;
        for s in scan(t) {
            if t <= 6_000 {
                delivered.push(s.clone());
            }
            window.record(&s);
        }
        pacer.spend_live(5 * 20, t);
        match probe {
            Some((sent, mark)) if t == sent + 100 && t <= 6_000 => {
                window.confirm(mark);
                probe = None;
            }
            None if t % 1_500 == 0 => probe = Some((t, window.mark())),
            _ => {}
        }
    }
    // The unanswered probe (sent at 6 s) declares the link down at 9 s or so; here at
    // 10 s. The window holds everything since the last answered probe (sent at 4.5 s).
    let mut gap = Vec::new();
    window.drain_into(&mut gap);
    assert_eq!(gap.first().unwrap().timestamp_ms, 4_600);
    store.append(&gap).unwrap();
    // 10..=20 s: link down, each scan stored.
    while t < 20_000 {
        t += 100;
        store.append(&scan(t)).unwrap();
    }
    let stored = store.depth();
    // 20 s on: link up, births done; each scan live first, then paced replay.
    let mut replayed_bytes = 0;
    let start = t;
    while store.depth() > 0 && t < 200_000 {
        t += 100;
        let live = scan(t);
        delivered.extend(live.iter().cloned());
        pacer.spend_live(5 * 20, t);
        while let Some(grant) = pacer.grant(t) {
            let batch = store
                .peek_batch(grant.max_samples, grant.max_bytes)
                .unwrap();
            let Some(id) = batch.id() else { break };
            assert!(batch.len() <= 20);
            delivered.extend(batch.samples().iter().cloned());
            replayed_bytes += batch.bytes();
            pacer.spend_replay(batch.bytes(), t);
            store.ack(id).unwrap();
        }
    }
    assert_eq!(store.depth(), 0, "backlog of {stored} drained");
    // Replay got at most its share: 2000 B/s minus live's 1000 B/s, plus one sample overdraw.
    let secs = (t - start) as f64 / 1000.0;
    assert!(
        replayed_bytes as f64 <= 1_000.0 * secs + 2_000.0,
        "{replayed_bytes} in {secs} s"
    );
    // Per metric: everything from the lost 6.1 s on arrived exactly once, in timestamp
    // order; before it, at least once (4.6..6 s twice: live and window, host de-duplicates).
    for alias in 0..5 {
        let ts: Vec<u64> = delivered
            .iter()
            .filter(|s| s.alias == alias && s.timestamp_ms > 6_000 && s.timestamp_ms <= 20_000)
            .map(|s| s.timestamp_ms)
            .collect();
        let expected: Vec<u64> = (61..=200).map(|i| i * 100).collect();
        assert_eq!(ts, expected, "alias {alias}");
        for i in 1..=60 {
            assert!(
                delivered
                    .iter()
                    .any(|s| s.alias == alias && s.timestamp_ms == i * 100)
            );
        }
    }
}

/// The suffix of the newest segment file (`seg-<n>`) beside `store.sqlite` in `dir`.
fn newest_segment(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("store.sqlite-").map(str::to_owned)
        })
        .filter(|suffix| suffix.starts_with("seg-"))
        .max()
        .expect("a segment file")
}

/// A record torn by a crash (the write that never returned) ends what the logs give back:
/// the records before it are recovered, nothing after it is misread.
#[test]
fn a_torn_log_record_is_left_out_and_the_ones_before_it_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let scan = |t: u64| -> Vec<StoredSample> { (0..5).map(|a| sample(a, t, t as f32)).collect() };
    let chop = |suffix: &str| {
        let path = dir.path().join(format!("store.sqlite-{suffix}"));
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
    };

    let mut store = Store::open(&cfg).unwrap();
    store.write_ahead(0, &scan(1_000)).unwrap();
    store.write_ahead(5, &scan(2_000)).unwrap();
    store.forget_sent(5).unwrap();
    store.write_ahead(10, &scan(3_000)).unwrap();
    // Killed: nothing closed, nothing folded.
    std::mem::forget(store);
    chop("ahead");
    let mut store = Store::open(&cfg).unwrap();
    assert_eq!(store.recovered(), 5);
    assert_eq!(drain(&mut store), scan(2_000));

    store.append(&scan(4_000)).unwrap();
    store.append(&scan(5_000)).unwrap();
    std::mem::forget(store);
    chop(&newest_segment(dir.path()));
    let mut store = Store::open(&cfg).unwrap();
    assert_eq!(store.depth(), 5);
    assert_eq!(drain(&mut store), scan(4_000));
}
