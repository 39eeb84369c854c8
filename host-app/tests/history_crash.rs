//! Crash recovery mid-chunk: a process appending to the history is killed with SIGKILL at
//! points where some windows are closed into chunks and the open one is only in memory and
//! in the recent log. Reopened, the file holds every acknowledged sample exactly once, and of
//! the batch in flight at the kill either all or nothing.
//!
//! The test binary is its own child: with `HISTORY_CRASH_CHILD` set it is the writer.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use host_app::history::{
    HistoryStore, MetricId, MetricKey, MetricMeta, Quality, Sample, SampleValue, SqliteOptions,
    SqliteStore, TimeRange,
};

const T0: u64 = 1_700_000_400_000;
const METRICS: usize = 5;
/// Each batch is 10 s of 1 Hz data from every metric: 60 batches fill a ten-minute window.
const SECONDS_PER_BATCH: u64 = 10;
const MAX_BATCHES: u64 = 2_000;

fn ids(store: &SqliteStore) -> Vec<MetricId> {
    (0..METRICS)
        .map(|m| {
            store
                .register_metric(
                    &MetricKey::node("Plant1", "Edge1", &format!("M{m}")),
                    &MetricMeta {
                        datatype: "Double".into(),
                        units: None,
                    },
                )
                .expect("register")
        })
        .collect()
}

fn batch(ids: &[MetricId], n: u64) -> Vec<Sample> {
    (0..SECONDS_PER_BATCH)
        .flat_map(|s| {
            let ts = T0 + (n * SECONDS_PER_BATCH + s) * 1_000;
            ids.iter().enumerate().map(move |(m, &metric)| Sample {
                metric,
                ts,
                value: SampleValue::F64(ts as f64 / 1000.0 + m as f64),
                quality: Quality::GOOD,
                is_historical: false,
            })
        })
        .collect()
}

/// The writer: appends batch after batch, printing each one's number once `append`
/// returned (acknowledged), until killed or done.
fn child(dir: &str) {
    let store = SqliteStore::open(
        std::path::Path::new(dir).join("history.db"),
        &SqliteOptions::default(),
    )
    .expect("open");
    let ids = ids(&store);
    let mut out = std::io::stdout().lock();
    for n in 0..MAX_BATCHES {
        store.append(&batch(&ids, n)).expect("append");
        writeln!(out, "acked {n}").expect("stdout");
        out.flush().expect("stdout");
    }
    std::thread::sleep(Duration::from_secs(30)); // the parent kills it before this ends
}

/// Runs a writer, kills it right after batch `kill_after` is acknowledged, and checks the
/// reopened file.
fn round(kill_after: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut writer = Command::new(std::env::current_exe().expect("own binary"))
        .env("HISTORY_CRASH_CHILD", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn writer");
    let stdout = writer.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acked = None;
    while acked.is_none_or(|a| a < kill_after) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            let _ = writer.kill();
            panic!("writer stopped acknowledging (last {acked:?})")
        });
        acked = line
            .strip_prefix("acked ")
            .and_then(|n| n.parse::<u64>().ok());
    }
    writer.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    writer.wait().expect("reap");
    reader.join().expect("stdout reader"); // the pipe closed with the process: every line is in
    // Acknowledgements printed after the one we acted on: the kill came later than that.
    let acked = rx
        .try_iter()
        .filter_map(|l| l.strip_prefix("acked ").and_then(|n| n.parse::<u64>().ok()))
        .fold(kill_after, u64::max);

    let path = dir.path().join("history.db");
    let store = SqliteStore::open(&path, &SqliteOptions::default()).expect("reopen");
    assert!(
        store.recent_samples() > 0,
        "kill after {kill_after}: the open window came back from the recent log"
    );
    let ids = ids(&store);
    for (m, &id) in ids.iter().enumerate() {
        let got = store
            .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
            .expect("range");
        let mut want: Vec<Sample> = (0..=acked)
            .flat_map(|n| batch(&ids, n))
            .filter(|s| s.metric == id)
            .collect();
        // The batch in flight at the kill: all of it or none.
        let in_flight: Vec<Sample> = batch(&ids, acked + 1)
            .into_iter()
            .filter(|s| s.metric == id)
            .collect();
        if got.len() == want.len() + in_flight.len() {
            want.extend(in_flight);
        }
        assert_eq!(
            got.len(),
            want.len(),
            "kill after {kill_after} (acked {acked}), metric {m}: every acknowledged sample, once"
        );
        assert!(
            got == want,
            "kill after {kill_after}, metric {m}: values differ"
        );
    }
    let chunks: i64 = rusqlite::Connection::open(&path)
        .expect("raw")
        .query_row("SELECT count(*) FROM sample_chunks", [], |r| r.get(0))
        .expect("count chunks");
    // A window closes once a sample a minute past its end is stored, before `append`
    // returns; the batch in flight may have been killed before or after it closed one.
    let newest = store.latest(&ids).expect("latest")[0].ts - T0;
    let closed_when_acked = (acked * SECONDS_PER_BATCH + SECONDS_PER_BATCH - 1) * 1_000 >= 660_000;
    if closed_when_acked {
        assert!(
            chunks > 0,
            "kill after {kill_after} (acked {acked}): windows had closed"
        );
    }
    if newest < 660_000 {
        assert_eq!(chunks, 0, "kill after {kill_after}: no window had closed");
    }
    // Closing this store writes the rest; a third open sees the same.
    let before: Vec<usize> = ids
        .iter()
        .map(|&id| {
            store
                .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
                .unwrap()
                .len()
        })
        .collect();
    drop(store);
    let store = SqliteStore::open(&path, &SqliteOptions::default()).expect("open again");
    assert_eq!(
        store.recent_samples(),
        0,
        "a clean close leaves nothing in the log"
    );
    for (&id, n) in ids.iter().zip(before) {
        assert_eq!(
            store
                .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
                .unwrap()
                .len(),
            n
        );
    }
}

fn main() {
    if let Some(dir) = std::env::var_os("HISTORY_CRASH_CHILD") {
        child(dir.to_str().expect("UTF-8 temp dir"));
        return;
    }
    // Mid-window in the first, third and fifth window, and right at a window's close.
    for kill_after in [45, 150, 281, 299] {
        round(kill_after);
        println!("history_crash: kill after batch {kill_after}: ok");
    }
    println!("test result: ok. history_crash");
}
