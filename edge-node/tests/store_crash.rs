//! Crash safety for real: a child process (this test binary, re-executed) appends scans,
//! replays (peek + ack), and writes live scans ahead (confirming them now and then) in a
//! loop and is SIGKILLed at random points. After every kill the file is reopened: every
//! append that returned is present exactly once or was acked, every live scan written
//! ahead and not confirmed is queued, nothing acked or confirmed comes back.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use edge_node::modbus::{DeviceId, Quality, Value};
use edge_node::store::{Store, StoreConfig, StoredSample};
use rand::Rng;

const CHILD_ENV: &str = "STORE_CRASH_CHILD_PATH";
const START_ENV: &str = "STORE_CRASH_CHILD_START";
const SCAN: i64 = 50;

fn config(path: &str) -> StoreConfig {
    StoreConfig {
        path: path.into(),
        ..StoreConfig::default()
    }
}

/// The child: append scans, every third scan replay one batch; report each step on stdout
/// after it returned (append, ack) or before it is attempted (hand-off).
fn child(path: &str, start: i64) -> ! {
    let mut store = Store::open(&config(path)).expect("child opens the store");
    // Small segments: kills land mid-seal and mid-delete too.
    store.seal_segments_at(2048);
    let mut out = std::io::stdout().lock();
    let mut next = start;
    let mut mark = 0u64;
    for round in 0..100_000 {
        store.append(&scan(next)).expect("append");
        writeln!(out, "appended {next} {}", next + SCAN - 1).unwrap();
        out.flush().unwrap();
        next += SCAN;
        // A live scan, kept in the file before it would be published.
        store.write_ahead(mark, &scan(next)).expect("write ahead");
        writeln!(out, "sent {next} {}", next + SCAN - 1).unwrap();
        out.flush().unwrap();
        mark += SCAN as u64;
        next += SCAN;
        if round % 4 == 3 {
            writeln!(out, "confirming").unwrap();
            out.flush().unwrap();
            store.forget_sent(mark).expect("forget sent");
            writeln!(out, "confirmed").unwrap();
            out.flush().unwrap();
        }
        if round % 3 == 2 {
            let batch = store.peek_batch(40, 1 << 20).expect("peek");
            let ids: Vec<String> = batch
                .samples()
                .iter()
                .map(|s| match s.value {
                    Value::I64(id) => id.to_string(),
                    _ => unreachable!(),
                })
                .collect();
            writeln!(out, "handed {}", ids.join(" ")).unwrap();
            out.flush().unwrap();
            store.ack(batch.id().expect("non-empty")).expect("ack");
            writeln!(out, "acked").unwrap();
            out.flush().unwrap();
        }
    }
    std::process::exit(0)
}

/// `SCAN` samples with ids (values and timestamps) from `first`.
fn scan(first: i64) -> Vec<StoredSample> {
    (first..first + SCAN)
        .map(|id| StoredSample {
            device: Some(DeviceId((id % 4) as u32)),
            alias: (id % 17) as u64,
            timestamp_ms: id as u64,
            value: Value::I64(id),
            quality: Quality::Good,
        })
        .collect()
}

#[test]
fn kill_9_during_appends_and_replay_loses_nothing() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let start = std::env::var(START_ENV).unwrap().parse().unwrap();
        child(&path, start);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let path_str = path.to_str().unwrap().to_owned();
    let mut rng = rand::rng();
    let mut appended = BTreeSet::new();
    let mut maybe_acked = HashSet::new();
    let mut acked = HashSet::new();
    // Written ahead and not confirmed; being confirmed when the kill came; confirmed.
    let mut sent = BTreeSet::new();
    let mut maybe_confirmed = HashSet::new();
    let mut confirmed = HashSet::new();
    let mut kills = 0;
    for round in 0..8i64 {
        let mut proc = Command::new(std::env::current_exe().unwrap())
            .args([
                "kill_9_during_appends_and_replay_loses_nothing",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path_str)
            .env(START_ENV, (round * 10_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
        let kill_after = rng.random_range(1..300);
        let mut seen = 0;
        let mut record = |line: &str, pending: &mut Vec<i64>| {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("appended") => {
                    let a: i64 = words.next().unwrap().parse().unwrap();
                    let b: i64 = words.next().unwrap().parse().unwrap();
                    appended.extend(a..=b);
                }
                Some("handed") => {
                    *pending = words.map(|w| w.parse().unwrap()).collect();
                    maybe_acked.extend(pending.iter().copied());
                }
                Some("acked") => acked.extend(pending.drain(..)),
                Some("sent") => {
                    let a: i64 = words.next().unwrap().parse().unwrap();
                    let b: i64 = words.next().unwrap().parse().unwrap();
                    sent.extend(a..=b);
                }
                Some("confirming") => maybe_confirmed.extend(std::mem::take(&mut sent)),
                Some("confirmed") => confirmed.extend(maybe_confirmed.drain()),
                _ => {}
            }
        };
        let mut pending = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            record(&line, &mut pending);
            seen += 1;
            if seen >= kill_after {
                break;
            }
        }
        // SIGKILL at a random point of the child's loop.
        std::thread::sleep(std::time::Duration::from_micros(rng.random_range(0..3_000)));
        proc.kill().unwrap();
        proc.wait().unwrap();
        kills += 1;
        for line in lines {
            record(&line.unwrap(), &mut pending);
        }

        // Reopen and check without consuming: peek everything, ack nothing.
        let store = Store::open(&config(&path_str)).unwrap();
        let batch = store.peek_batch(usize::MAX, usize::MAX).unwrap();
        let present: Vec<i64> = batch
            .samples()
            .iter()
            .map(|s| match s.value {
                Value::I64(id) => id,
                ref v => panic!("unexpected value {v:?}"),
            })
            .collect();
        let unique: HashSet<i64> = present.iter().copied().collect();
        assert_eq!(unique.len(), present.len(), "a sample is stored twice");
        assert!(
            present.windows(2).all(|w| w[0] < w[1]),
            "replay order broken"
        );
        for id in &appended {
            assert!(
                unique.contains(id) || maybe_acked.contains(id),
                "round {round}: sample {id} was appended, never acked, and is gone"
            );
        }
        for id in &acked {
            assert!(
                !unique.contains(id),
                "round {round}: acked sample {id} came back"
            );
        }
        // The reopen queued the unconfirmed live samples: from now on they are appended.
        for id in std::mem::take(&mut sent) {
            assert!(
                unique.contains(&id),
                "round {round}: live sample {id} was written ahead, never confirmed, and is gone"
            );
            appended.insert(id);
        }
        for id in maybe_confirmed.drain() {
            if unique.contains(&id) {
                appended.insert(id);
            }
        }
        for id in &confirmed {
            assert!(
                !unique.contains(id),
                "round {round}: confirmed live sample {id} came back"
            );
        }
        assert!(store.depth() == present.len() as u64);
    }
    assert_eq!(kills, 8);
    assert!(
        appended.len() > 8 * SCAN as usize,
        "the children made progress"
    );
}
