//! Model-based tests of the store-and-forward queue: random sequences of append, peek
//! (from the head or after an outstanding batch, passing over held devices), ack, expire,
//! live scans written ahead, confirmed or lost with the link, and crash/reopen, checked
//! after every step against a sorted in-memory model of what must still be delivered.
//! A second mix appends long scans of few timestamps (samples share rows, rows split,
//! batches end inside rows) and kills the store without closing it (its logs unfolded,
//! batches in flight), as `kill -9` would. A third is an outage: appends in timestamp
//! order with some jitter (mostly into the segment files, sealed every few records; a
//! late one into the table), acks in and out of order, held devices, kills with the
//! active segment unsealed. Then torn segment tails at every byte, a segment file a kill
//! left behind mid-delete.

use edge_node::modbus::{DeviceId, Quality, Value};
use edge_node::store::{BatchId, HeldDevices, Overflow, Store, StoreConfig, StoredSample};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Samples as (timestamp, alias, string padding or none).
    Append(Vec<(u64, u64, Option<usize>)>),
    /// Samples as (timestamp after the outage clock, alias, padding); the clock then
    /// moves on a second.
    AppendLater(Vec<(u64, u64, Option<usize>)>),
    Peek {
        max_samples: usize,
        max_bytes: usize,
        /// Devices (1..4, bit d) passed over.
        held: u8,
        /// Peek after the newest outstanding batch instead of from the head.
        after_outstanding: bool,
    },
    /// Acks outstanding batch `i % outstanding`.
    Ack(usize),
    Expire(u64),
    /// A live scan written ahead before it is published.
    WriteAhead(Vec<(u64, u64, Option<usize>)>),
    /// A probe answered: live samples before mark `m % (next mark + 1)` confirmed.
    Confirm(u64),
    /// The link is lost: the unconfirmed live samples join the queue.
    LinkLost,
    /// Drops the store with its outstanding batches un-acked, then reopens the file.
    Crash,
    /// Leaks the store without closing it (nothing folded, nothing flushed by a
    /// destructor) with its outstanding batches un-acked, then reopens the file.
    Kill,
}

/// Long appends of few timestamps (and so of shared rows), peeks that end inside rows, kills.
fn row_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u64..4, 0u64..4, prop::option::weighted(0.1, 0usize..300)), 0..200)
            .prop_map(Op::Append),
        4 => (0usize..90, 0usize..3_000, prop::option::weighted(0.3, 1u8..16), any::<bool>())
            .prop_map(|(max_samples, max_bytes, held, after_outstanding)| Op::Peek {
                max_samples,
                max_bytes,
                held: held.unwrap_or(0) << 1,
                after_outstanding,
            }),
        3 => any::<usize>().prop_map(Op::Ack),
        2 => prop::collection::vec((0u64..4, 0u64..4, prop::option::weighted(0.1, 0usize..300)), 0..120)
            .prop_map(Op::WriteAhead),
        1 => any::<u64>().prop_map(Op::Confirm),
        1 => Just(Op::LinkLost),
        1 => Just(Op::Crash),
        2 => Just(Op::Kill),
    ]
}

/// An outage: appends mostly in timestamp order, replay with batches in flight.
fn outage_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0u64..3, 0u64..4, prop::option::weighted(0.1, 0usize..60)), 0..30)
            .prop_map(Op::AppendLater),
        4 => (0usize..40, 0usize..1_500, prop::option::weighted(0.2, 1u8..16), any::<bool>())
            .prop_map(|(max_samples, max_bytes, held, after_outstanding)| Op::Peek {
                max_samples,
                max_bytes,
                held: held.unwrap_or(0) << 1,
                after_outstanding,
            }),
        4 => any::<usize>().prop_map(Op::Ack),
        1 => (0u64..60).prop_map(Op::Expire),
        1 => prop::collection::vec((0u64..60, 0u64..4, prop::option::weighted(0.2, 0usize..40)), 0..10)
            .prop_map(Op::WriteAhead),
        1 => any::<u64>().prop_map(Op::Confirm),
        1 => Just(Op::LinkLost),
        1 => Just(Op::Crash),
        1 => Just(Op::Kill),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u64..60, 0u64..4, prop::option::weighted(0.2, 0usize..40)), 0..25)
            .prop_map(Op::Append),
        3 => (0usize..12, 0usize..400, prop::option::weighted(0.3, 1u8..16), any::<bool>())
            .prop_map(|(max_samples, max_bytes, held, after_outstanding)| Op::Peek {
                max_samples,
                max_bytes,
                held: held.unwrap_or(0) << 1,
                after_outstanding,
            }),
        3 => any::<usize>().prop_map(Op::Ack),
        1 => (0u64..120).prop_map(Op::Expire),
        2 => prop::collection::vec((0u64..60, 0u64..4, prop::option::weighted(0.2, 0usize..40)), 0..10)
            .prop_map(Op::WriteAhead),
        1 => any::<u64>().prop_map(Op::Confirm),
        1 => Just(Op::LinkLost),
        1 => Just(Op::Crash),
    ]
}

/// What must still be delivered, in delivery order: (timestamp, insertion number, sample).
struct Model {
    rows: Vec<(u64, u64, StoredSample)>,
    next: u64,
    bytes: u64,
    dropped: u64,
    max_bytes: u64,
    max_age_ms: u64,
    overflow: Overflow,
}

impl Model {
    fn append(&mut self, samples: &[StoredSample]) -> usize {
        let mut stored = 0;
        for s in samples {
            let len = s.stored_len() as u64;
            if self.overflow == Overflow::StopStoring && self.bytes + len > self.max_bytes {
                break;
            }
            let key = (s.timestamp_ms, self.next);
            let at = self.rows.partition_point(|r| (r.0, r.1) < key);
            self.rows.insert(at, (key.0, key.1, s.clone()));
            self.next += 1;
            self.bytes += len;
            stored += 1;
        }
        self.dropped += (samples.len() - stored) as u64;
        while self.bytes > self.max_bytes {
            let (_, _, s) = self.rows.remove(0);
            self.bytes -= s.stored_len() as u64;
            self.dropped += 1;
        }
        stored
    }

    /// The insertion numbers handed out, and the (timestamp, number) of the last one.
    fn peek(
        &self,
        after: Option<(u64, u64)>,
        held: u8,
        max_samples: usize,
        max_bytes: usize,
    ) -> Vec<u64> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let candidates = self
            .rows
            .iter()
            .filter(|r| after.is_none_or(|a| (r.0, r.1) > a))
            .filter(|r| r.2.device.is_none_or(|d| held & (1 << d.0) == 0));
        for (_, n, s) in candidates.take(max_samples) {
            if !out.is_empty() && bytes + s.stored_len() > max_bytes {
                break;
            }
            bytes += s.stored_len();
            out.push(*n);
        }
        out
    }

    fn ack(&mut self, handed: &[u64]) -> u64 {
        let before = self.rows.len();
        self.rows.retain(|r| !handed.contains(&r.1));
        self.bytes = self.rows.iter().map(|r| r.2.stored_len() as u64).sum();
        (before - self.rows.len()) as u64
    }

    /// Live samples of a killed process, queued when the file is opened, then the byte
    /// cap applied (whatever the overflow policy: they are already stored).
    fn recover(&mut self, samples: &[StoredSample]) {
        for s in samples {
            let key = (s.timestamp_ms, self.next);
            let at = self.rows.partition_point(|r| (r.0, r.1) < key);
            self.rows.insert(at, (key.0, key.1, s.clone()));
            self.next += 1;
            self.bytes += s.stored_len() as u64;
        }
        while self.bytes > self.max_bytes {
            let (_, _, s) = self.rows.remove(0);
            self.bytes -= s.stored_len() as u64;
            self.dropped += 1;
        }
    }

    fn expire(&mut self, now: u64) {
        if self.max_age_ms == 0 {
            return;
        }
        let cutoff = now.saturating_sub(self.max_age_ms);
        let before = self.rows.len();
        self.rows.retain(|r| r.0 >= cutoff);
        self.bytes = self.rows.iter().map(|r| r.2.stored_len() as u64).sum();
        self.dropped += (before - self.rows.len()) as u64;
    }
}

fn to_samples(specs: &[(u64, u64, Option<usize>)], id: &mut i64) -> Vec<StoredSample> {
    specs
        .iter()
        .map(|&(ts, alias, pad)| {
            *id += 1;
            StoredSample {
                device: (alias != 0).then_some(DeviceId(alias as u32)),
                alias,
                timestamp_ms: ts * 1000,
                value: match pad {
                    Some(n) => Value::String(format!("{id}:{}", "x".repeat(n))),
                    None => Value::I64(*id),
                },
                quality: if *id % 5 == 0 {
                    Quality::Stale
                } else {
                    Quality::Good
                },
            }
        })
        .collect()
}

fn check(ops: Vec<Op>, overflow: Overflow, max_age_s: u64) -> Result<(), TestCaseError> {
    check_capped(ops, overflow, max_age_s, 1024, None)
}

/// `seal`: the segment size, when not the default.
fn check_capped(
    ops: Vec<Op>,
    overflow: Overflow,
    max_age_s: u64,
    max_bytes: u64,
    seal: Option<u64>,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let config = StoreConfig {
        path: dir.path().join("store.sqlite"),
        max_bytes,
        max_age_s,
        overflow,
        ..StoreConfig::default()
    };
    let open = || -> Result<Store, TestCaseError> {
        let mut store = Store::open(&config).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Some(bytes) = seal {
            store.seal_segments_at(bytes);
        }
        Ok(store)
    };
    let mut store = open()?;
    let mut model = Model {
        rows: Vec::new(),
        next: 0,
        bytes: 0,
        dropped: 0,
        max_bytes: config.max_bytes,
        max_age_ms: max_age_s * 1000,
        overflow,
    };
    // Each outstanding batch: its id, the numbers it handed out, its last key.
    let mut outstanding: Vec<(BatchId, Vec<u64>, (u64, u64))> = Vec::new();
    // Live samples written ahead and not yet confirmed, by mark; the next mark.
    let mut sent: Vec<(u64, StoredSample)> = Vec::new();
    let mut mark = 0u64;
    let mut id = 0i64;
    let mut clock = 0u64;
    for op in ops {
        match op {
            Op::AppendLater(specs) => {
                let specs: Vec<_> = specs.iter().map(|&(dt, a, p)| (clock + dt, a, p)).collect();
                clock += 1;
                let samples = to_samples(&specs, &mut id);
                let stored = store
                    .append(&samples)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(stored, model.append(&samples));
            }
            Op::Append(specs) => {
                let samples = to_samples(&specs, &mut id);
                let stored = store
                    .append(&samples)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(stored, model.append(&samples));
            }
            Op::Peek {
                max_samples,
                max_bytes,
                held,
                after_outstanding,
            } => {
                let after = outstanding.last().filter(|_| after_outstanding);
                let mut held_devices = HeldDevices::default();
                for d in 1..4u32 {
                    if held & (1 << d) != 0 {
                        held_devices.insert(DeviceId(d));
                    }
                }
                let batch = store
                    .peek_batch_after(after.map(|a| a.0), held_devices, max_samples, max_bytes)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let handed = model.peek(after.map(|a| a.2), held, max_samples, max_bytes);
                let expected: Vec<&(u64, u64, StoredSample)> = handed
                    .iter()
                    .map(|n| model.rows.iter().find(|r| r.1 == *n).unwrap())
                    .collect();
                let got: Vec<&StoredSample> = batch.samples().iter().collect();
                prop_assert_eq!(got, expected.iter().map(|r| &r.2).collect::<Vec<_>>());
                if let (Some(batch_id), Some(last)) = (batch.id(), expected.last()) {
                    outstanding.push((batch_id, handed, (last.0, last.1)));
                }
            }
            Op::Ack(i) => {
                if !outstanding.is_empty() {
                    let (batch_id, handed, _) = outstanding.remove(i % outstanding.len());
                    let acked = store
                        .ack(batch_id)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(acked, model.ack(&handed));
                }
            }
            Op::Expire(now_s) => {
                store
                    .expire(now_s * 1000)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.expire(now_s * 1000);
            }
            Op::WriteAhead(specs) => {
                let samples = to_samples(&specs, &mut id);
                store
                    .write_ahead(mark, &samples)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                for s in samples {
                    sent.push((mark, s));
                    mark += 1;
                }
            }
            Op::Confirm(m) => {
                let upto = m % (mark + 1);
                store
                    .forget_sent(upto)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                sent.retain(|(m, _)| *m >= upto);
            }
            Op::LinkLost => {
                let window: Vec<StoredSample> = sent.drain(..).map(|(_, s)| s).collect();
                let stored = store
                    .append_unconfirmed(&window)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(stored, model.append(&window));
            }
            Op::Crash | Op::Kill => {
                if matches!(op, Op::Kill) {
                    std::mem::forget(store);
                } else {
                    drop(store);
                }
                outstanding.clear();
                store = open()?;
                model.dropped = 0;
                let window: Vec<StoredSample> = sent.drain(..).map(|(_, s)| s).collect();
                prop_assert_eq!(store.recovered(), window.len() as u64);
                model.recover(&window);
                mark = 0;
            }
        }
        prop_assert_eq!(store.depth(), model.rows.len() as u64);
        prop_assert_eq!(store.bytes(), model.bytes);
        prop_assert_eq!(store.dropped(), model.dropped);
    }
    // What the store will replay, after a final reopen (which queues what was written
    // ahead and never confirmed), is the model's content in order.
    drop(store);
    let mut store = open()?;
    let window: Vec<StoredSample> = sent.drain(..).map(|(_, s)| s).collect();
    model.recover(&window);
    let mut replayed = Vec::new();
    loop {
        let batch = store
            .peek_batch(7, 200)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Some(batch_id) = batch.id() else { break };
        replayed.extend(batch.samples().iter().cloned());
        store
            .ack(batch_id)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    let expected: Vec<StoredSample> = model.rows.iter().map(|r| r.2.clone()).collect();
    prop_assert_eq!(replayed, expected);
    prop_assert_eq!(store.depth(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 512, ..ProptestConfig::default() })]

    #[test]
    fn drop_oldest_replays_exactly_the_unacked_in_order(ops in prop::collection::vec(op(), 1..40)) {
        check(ops, Overflow::DropOldest, 0)?;
    }

    #[test]
    fn stop_storing_replays_exactly_the_unacked_in_order(ops in prop::collection::vec(op(), 1..40)) {
        check(ops, Overflow::StopStoring, 0)?;
    }

    #[test]
    fn age_cap_drops_exactly_the_old(ops in prop::collection::vec(op(), 1..40)) {
        check(ops, Overflow::DropOldest, 20)?;
    }

    #[test]
    fn rows_shared_and_split_and_kills_mid_batch_lose_and_repeat_nothing(ops in prop::collection::vec(row_op(), 1..30)) {
        check_capped(ops, Overflow::DropOldest, 0, 16 * 1024, None)?;
    }

    #[test]
    fn rows_and_kills_at_the_cap_with_stop_storing(ops in prop::collection::vec(row_op(), 1..30)) {
        check_capped(ops, Overflow::StopStoring, 0, 6 * 1024, None)?;
    }

    #[test]
    fn segment_boundaries_and_partial_acks_across_segments_lose_and_repeat_nothing(ops in prop::collection::vec(outage_op(), 1..60)) {
        check_capped(ops, Overflow::DropOldest, 0, 1 << 20, Some(200))?;
    }

    #[test]
    fn segments_at_the_byte_cap_drop_oldest(ops in prop::collection::vec(outage_op(), 1..60)) {
        check_capped(ops, Overflow::DropOldest, 0, 2 * 1024, Some(300))?;
    }

    #[test]
    fn segments_at_the_byte_cap_stop_storing(ops in prop::collection::vec(outage_op(), 1..60)) {
        check_capped(ops, Overflow::StopStoring, 0, 2 * 1024, Some(300))?;
    }

    #[test]
    fn segments_and_the_age_cap(ops in prop::collection::vec(outage_op(), 1..60)) {
        check_capped(ops, Overflow::DropOldest, 10, 1 << 20, Some(200))?;
    }
}

/// Five samples of timestamp `t` s, one per alias (device 1), valued `t`.
fn scan(t: u64) -> Vec<StoredSample> {
    (0..5)
        .map(|a| StoredSample {
            device: Some(DeviceId(1)),
            alias: a,
            timestamp_ms: t * 1_000,
            value: Value::I64(t as i64),
            quality: Quality::Good,
        })
        .collect()
}

fn drain(store: &mut Store) -> Vec<StoredSample> {
    let mut out = Vec::new();
    for _ in 0..1_000 {
        let batch = store.peek_batch(7, 1 << 20).unwrap();
        let Some(id) = batch.id() else { return out };
        out.extend(batch.samples().iter().cloned());
        store.ack(id).unwrap();
    }
    panic!("queue did not drain");
}

/// The segment files beside `store.sqlite` in `dir`, oldest first.
fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("store.sqlite-seg-")
        })
        .collect();
    files.sort();
    files
}

/// Copies every file of `from` into `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let path = e.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// A kill in the middle of an append leaves part of its record at the end of the active
/// segment. Cut at every byte of the last record: the reopened store holds exactly the
/// appends before it, in order, once, and appends after it go on being kept.
#[test]
fn a_segment_torn_at_any_byte_keeps_exactly_the_records_before() {
    let made = tempfile::tempdir().unwrap();
    let cfg = |dir: &std::path::Path| StoreConfig {
        path: dir.join("store.sqlite"),
        ..StoreConfig::default()
    };
    let mut store = Store::open(&cfg(made.path())).unwrap();
    store.append(&scan(1)).unwrap();
    store.append(&scan(2)).unwrap();
    let [segment] = &segment_files(made.path())[..] else {
        panic!("one segment file");
    };
    let whole = std::fs::metadata(segment).unwrap().len();
    store.append(&scan(3)).unwrap();
    let torn = std::fs::metadata(segment).unwrap().len();
    std::mem::forget(store);
    assert!(torn > whole + 5);
    for cut in whole..torn {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(made.path(), dir.path());
        let copy = dir.path().join(segment.file_name().unwrap());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let mut store = Store::open(&cfg(dir.path())).unwrap();
        assert_eq!(store.depth(), 10, "cut at {cut} of {torn}");
        store.append(&scan(4)).unwrap();
        std::mem::forget(store);
        let mut store = Store::open(&cfg(dir.path())).unwrap();
        let expected: Vec<StoredSample> = [1, 2, 4].into_iter().flat_map(scan).collect();
        assert_eq!(drain(&mut store), expected, "cut at {cut} of {torn}");
    }
}

/// A kill after the cursor passed a sealed segment and before the file was deleted (or a
/// file come back from a backup) replays none of its samples.
#[test]
fn segments_left_behind_mid_delete_or_mid_seal_replay_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        path: dir.path().join("store.sqlite"),
        ..StoreConfig::default()
    };
    let mut store = Store::open(&cfg).unwrap();
    store.seal_segments_at(100);
    for t in 1..=10 {
        store.append(&scan(t)).unwrap();
    }
    let files: Vec<(std::path::PathBuf, Vec<u8>)> = segment_files(dir.path())
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    assert!(files.len() >= 4, "sealed every two or three appends");
    // Two batches across segment boundaries: the files behind the cursor go.
    for _ in 0..2 {
        let batch = store.peek_batch(12, 1 << 20).unwrap();
        store.ack(batch.id().unwrap()).unwrap();
    }
    assert!(segment_files(dir.path()).len() < files.len());
    std::mem::forget(store);
    for (path, bytes) in &files {
        if !path.exists() {
            std::fs::write(path, bytes).unwrap();
        }
    }
    let mut store = Store::open(&cfg).unwrap();
    let all: Vec<StoredSample> = (1..=10).flat_map(scan).collect();
    assert_eq!(store.depth(), 26);
    assert_eq!(drain(&mut store), all[24..]);
    assert_eq!(store.depth(), 0);
}

/// Found by `segments_at_the_byte_cap_stop_storing`: a segment sealed after an ack cut
/// into it lost its first samples from its cache, so a later ack inside that record
/// moved it into the table with every place shifted and removed one sample too many.
#[test]
fn a_segment_sealed_after_an_ack_inside_it_keeps_its_places() {
    let first = (0..12)
        .map(|_| (0, 0, None))
        .chain([(0, 0, Some(17)), (1, 0, Some(42))])
        .collect();
    let head = Op::Peek {
        max_samples: 1,
        max_bytes: 0,
        held: 0,
        after_outstanding: false,
    };
    let ops = vec![
        Op::AppendLater(first),
        head.clone(),
        Op::Ack(0),
        // Seals the segment (300 bytes) with its first sample behind the cursor.
        Op::AppendLater(vec![(0, 0, None), (1, 1, None), (0, 0, None)]),
        head,
        Op::Peek {
            max_samples: 1,
            max_bytes: 0,
            held: 0,
            after_outstanding: true,
        },
        // The second batch, acked while the first is still out.
        Op::Ack(1),
    ];
    check_capped(ops, Overflow::StopStoring, 0, 2 * 1024, Some(300)).unwrap();
}
