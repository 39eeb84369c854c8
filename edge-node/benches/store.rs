//! Store-and-forward throughput against the raw SQLite limit on the same disk, in one run:
//! samples stored per second through `Store::append` in batches of one scan, samples
//! replayed per second (peek + ack), a plain prepared INSERT of equivalent rows in one
//! transaction per batch, disk bytes per stored sample, memory over a long fill, and the
//! live path's write-ahead (`persist_sent_window`): scans written ahead and forgotten at
//! each probe answer, beside the same raw INSERT, with the bytes written per sample.
//!
//! `cargo bench -p edge-node --bench store`

use std::path::Path;
use std::time::Instant;

use edge_node::modbus::{DeviceId, Quality, Value};
use edge_node::store::{Store, StoreConfig, StoredSample};

const TOTAL: u64 = 200_000;
const LONG_FILL: u64 = 2_000_000;

fn scan(first: u64, n: u64, t0: u64) -> Vec<StoredSample> {
    (first..first + n)
        .map(|i| StoredSample {
            device: Some(DeviceId((i % 8) as u32)),
            alias: i % 200,
            timestamp_ms: t0 + i / 200 * 1_000,
            value: Value::F32(i as f32 * 0.5),
            quality: Quality::Good,
        })
        .collect()
}

fn config(path: &Path) -> StoreConfig {
    StoreConfig {
        path: path.to_owned(),
        max_bytes: 1 << 40,
        max_age_s: 0,
        ..StoreConfig::default()
    }
}

/// The limit: the same rows, one prepared INSERT, one transaction per batch, same pragmas.
fn raw_insert_rate(path: &Path, batch: u64, t0: u64) -> f64 {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE samples (ts INTEGER NOT NULL, seq INTEGER NOT NULL, device INTEGER,
         alias INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ts, seq)) WITHOUT ROWID",
    )
    .unwrap();
    let rows = scan(0, TOTAL, t0);
    let start = Instant::now();
    for (b, chunk) in rows.chunks(batch as usize).enumerate() {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO samples (ts, seq, device, alias, value) VALUES (?1, ?2, ?3, ?4, ?5)")
                .unwrap();
            for (i, s) in chunk.iter().enumerate() {
                let Value::F32(v) = s.value else {
                    unreachable!()
                };
                let mut blob = [8u8; 5];
                blob[1..].copy_from_slice(&v.to_le_bytes());
                stmt.execute(rusqlite::params![
                    s.timestamp_ms as i64,
                    (b * batch as usize + i) as i64,
                    s.device.map(|d| d.0),
                    s.alias as i64,
                    &blob[..],
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    TOTAL as f64 / start.elapsed().as_secs_f64()
}

fn store_rates(path: &Path, batch: u64, t0: u64) -> (f64, f64, f64) {
    let mut store = Store::open(&config(path)).unwrap();
    let rows = scan(0, TOTAL, t0);
    let start = Instant::now();
    for chunk in rows.chunks(batch as usize) {
        store.append(chunk).unwrap();
    }
    let store_rate = TOTAL as f64 / start.elapsed().as_secs_f64();
    let per_sample = store.file_bytes().unwrap() as f64 / store.depth() as f64;
    let start = Instant::now();
    let mut replayed = 0;
    loop {
        let batch = store.peek_batch(batch as usize, usize::MAX).unwrap();
        let Some(id) = batch.id() else { break };
        replayed += batch.len();
        store.ack(id).unwrap();
    }
    assert_eq!(replayed as u64, TOTAL);
    let replay_rate = TOTAL as f64 / start.elapsed().as_secs_f64();
    (store_rate, replay_rate, per_sample)
}

/// Scans written ahead per answered probe: a 30 s keep-alive with 1 s scans.
const SCANS_PER_PROBE: u64 = 15;

/// The live path with `persist_sent_window`: each scan of `batch` samples written ahead,
/// forgotten every [`SCANS_PER_PROBE`] scans. Returns (samples/s, bytes written/sample).
fn write_ahead_rate(path: &Path, batch: u64, t0: u64) -> (f64, Option<f64>) {
    let mut store = Store::open(&config(path)).unwrap();
    let rows = scan(0, TOTAL, t0);
    let before = bytes_written();
    let start = Instant::now();
    let mut mark = 0u64;
    for (n, chunk) in rows.chunks(batch as usize).enumerate() {
        store.write_ahead(mark, chunk).unwrap();
        mark += chunk.len() as u64;
        if (n as u64 + 1).is_multiple_of(SCANS_PER_PROBE) {
            store.forget_sent(mark).unwrap();
        }
    }
    store.forget_sent(mark).unwrap();
    let rate = TOTAL as f64 / start.elapsed().as_secs_f64();
    let written = bytes_written()
        .zip(before)
        .map(|(a, b)| (a - b) as f64 / TOTAL as f64);
    (rate, written)
}

/// Bytes this process has handed to write(2)/pwrite(2) so far (Linux).
fn bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// (VmRSS, VmHWM) in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let t0 = 1_764_000_000_000;
    println!("store-and-forward, {TOTAL} samples per run, F32 values, WAL synchronous=NORMAL");
    println!(
        "| batch | raw INSERT samples/s | append samples/s | append / raw | replay (peek+ack) samples/s | disk bytes/sample |"
    );
    println!("|---|---|---|---|---|---|");
    for batch in [200u64, 1_000] {
        let raw = raw_insert_rate(&dir.path().join(format!("raw-{batch}.sqlite")), batch, t0);
        let (stored, replayed, per_sample) =
            store_rates(&dir.path().join(format!("store-{batch}.sqlite")), batch, t0);
        println!(
            "| {batch} | {raw:.0} | {stored:.0} | {:.0}% | {replayed:.0} | {per_sample:.1} |",
            stored / raw * 100.0
        );
    }

    println!();
    println!("live write-ahead (persist_sent_window), forgotten every {SCANS_PER_PROBE} scans");
    println!(
        "| scan | raw INSERT samples/s | write-ahead samples/s | write-ahead / raw | bytes written/sample |"
    );
    println!("|---|---|---|---|---|");
    for batch in [200u64, 1_000] {
        let raw = raw_insert_rate(
            &dir.path().join(format!("raw-wa-{batch}.sqlite")),
            batch,
            t0,
        );
        let (rate, written) =
            write_ahead_rate(&dir.path().join(format!("wa-{batch}.sqlite")), batch, t0);
        let written = written.map_or("n/a".to_owned(), |w| format!("{w:.0}"));
        println!(
            "| {batch} | {raw:.0} | {rate:.0} | {:.0}% | {written} |",
            rate / raw * 100.0
        );
    }

    // Memory over a long fill (an outage of many hours): RSS at 10% and 100%.
    let mut store = Store::open(&config(&dir.path().join("long.sqlite"))).unwrap();
    let (rss_start, _) = memory_kib();
    let mut rss_10 = 0;
    let mut buf = Vec::with_capacity(1_000);
    for first in (0..LONG_FILL).step_by(1_000) {
        buf.clear();
        buf.extend(scan(first, 1_000, t0));
        store.append(&buf).unwrap();
        if first + 1_000 == LONG_FILL / 10 {
            rss_10 = memory_kib().0;
        }
    }
    let (rss_100, hwm) = memory_kib();
    println!();
    println!(
        "long fill {LONG_FILL} samples ({} MiB on disk): VmRSS before {rss_start} KiB, at 10% {rss_10} KiB, at 100% {rss_100} KiB; VmHWM {hwm} KiB",
        store.file_bytes().unwrap() / (1 << 20)
    );
}
