//! Store-and-forward against the raw SQLite limit on the same disk, in one run: what is
//! written per stored sample (every byte handed to the kernel: WAL, checkpoints, the main
//! file, the write-ahead log), disk bytes per stored sample, and rates.
//!
//! 1. **Throughput**: 200,000 F32 samples through `Store::append` in batches of one scan
//!    (200 and 1,000 samples, one transaction each), replayed by `peek_batch` + `ack`,
//!    beside a plain prepared INSERT of one row per sample (the first store layout's
//!    table) in one transaction per batch.
//! 2. **Reference plant**: 1,000 tags on 20 devices of 50, polled at 1 Hz, about 10% of
//!    the tags changing each second, so each device reports about 5 samples a second and
//!    each report is one publish: at steady state the live write-ahead
//!    (`Store::write_ahead` per publish, `Store::forget_sent` every 15 s, as a probe
//!    answered every 15 s would) and the outage queue (`Store::append` per report), each
//!    beside the raw INSERT of the same reports. Then the flood: every tag changing every
//!    scan (50 samples per report), as fast as the store takes it.
//!    After each outage, its replay: `peek_batch` + `ack` in batches of the default
//!    `batch_size` (500), with what it writes per sample (the segments' cursor records;
//!    deleting a replayed segment file writes nothing).
//! 3. Memory over a long fill (an outage of many hours) and over its replay.
//!
//! Bytes written: the deltas of `/proc/self/io` over the timed part: `wchar` (bytes
//! handed to write(2) and pwrite(2)) and `write_bytes` (page-cache pages this process
//! dirtied, 4 KiB each, the storage's side; a page dirtied again before writeback counts
//! once, so it is a lower bound for runs shorter than the kernel's 30 s writeback).
//!
//! `cargo bench -p edge-node --bench store`

use std::path::Path;
use std::time::Instant;

use edge_node::modbus::{DeviceId, Quality, Value};
use edge_node::store::{Store, StoreConfig, StoredSample};

const TOTAL: u64 = 200_000;
const LONG_FILL: u64 = 2_000_000;
const T0: u64 = 1_764_000_000_000;

/// Scans written ahead per answered probe: a 30 s keep-alive with 1 s scans.
const SCANS_PER_PROBE: u64 = 15;

const DEVICES: u64 = 20;
const TAGS_PER_DEVICE: u64 = 50;

fn scan(first: u64, n: u64) -> Vec<StoredSample> {
    (first..first + n)
        .map(|i| StoredSample {
            device: Some(DeviceId((i % 8) as u32)),
            alias: i % 200,
            timestamp_ms: T0 + i / 200 * 1_000,
            value: Value::F32(i as f32 * 0.5),
            quality: Quality::Good,
        })
        .collect()
}

/// The reference plant's reports, second by second, device by device: each tag changes
/// in a second with probability `1 / every` (1: all of them), until `TOTAL` samples.
fn plant_reports(every: u64) -> Vec<Vec<StoredSample>> {
    let mut reports = Vec::new();
    let mut total = 0;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for second in 0.. {
        for device in 0..DEVICES {
            let mut report = Vec::new();
            for tag in 0..TAGS_PER_DEVICE {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if every > 1 && !rng.is_multiple_of(every) {
                    continue;
                }
                report.push(StoredSample {
                    device: Some(DeviceId(device as u32)),
                    alias: device * TAGS_PER_DEVICE + tag,
                    timestamp_ms: T0 + second * 1_000 + device * 3,
                    value: Value::F32(20.0 + (rng % 10_000) as f32 / 100.0),
                    quality: Quality::Good,
                });
            }
            total += report.len() as u64;
            if !report.is_empty() {
                reports.push(report);
            }
            if total >= TOTAL {
                return reports;
            }
        }
    }
    unreachable!("the loop returns")
}

fn config(path: &Path) -> StoreConfig {
    StoreConfig {
        path: path.to_owned(),
        max_bytes: 1 << 40,
        max_age_s: 0,
        ..StoreConfig::default()
    }
}

/// This process's (`wchar`, `write_bytes`) so far (Linux).
fn io_counters() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("wchar:"), field("write_bytes:"))
}

/// What one timed part cost.
struct Cost {
    samples: u64,
    secs: f64,
    wchar: u64,
    write_bytes: u64,
    /// Database pages in use / samples stored, when samples stay stored.
    disk: Option<f64>,
}

impl Cost {
    fn measure(samples: u64, work: impl FnOnce() -> Option<f64>) -> Cost {
        let (wchar, write_bytes) = io_counters();
        let start = Instant::now();
        let disk = work();
        let secs = start.elapsed().as_secs_f64();
        let (wchar_after, write_bytes_after) = io_counters();
        Cost {
            samples,
            secs,
            wchar: wchar_after - wchar,
            write_bytes: write_bytes_after - write_bytes,
            disk,
        }
    }

    fn rate(&self) -> f64 {
        self.samples as f64 / self.secs
    }

    fn row(&self, what: &str, raw: &Cost) -> String {
        let per = |b: u64| b as f64 / self.samples as f64;
        format!(
            "| {what} | {:.0} | {:.0} | {:.0}% | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
            raw.rate(),
            self.rate(),
            self.rate() / raw.rate() * 100.0,
            per(self.wchar),
            per(self.write_bytes),
            self.disk.map_or("-".to_owned(), |d| format!("{d:.1}")),
            per(raw.wchar),
            raw.disk.unwrap_or(0.0),
        )
    }
}

/// The limit: `reports` as rows of the first layout's table (one per sample), one
/// prepared INSERT, one transaction per report, the store's pragmas of that layout.
fn raw_insert(path: &Path, reports: &[Vec<StoredSample>]) -> Cost {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.pragma_update(None, "journal_size_limit", 4 * 1024 * 1024)
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE samples (ts INTEGER NOT NULL, seq INTEGER NOT NULL, device INTEGER,
         alias INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ts, seq)) WITHOUT ROWID",
    )
    .unwrap();
    let total = reports.iter().map(|r| r.len() as u64).sum();
    Cost::measure(total, || {
        let mut seq = 0i64;
        for report in reports {
            let tx = conn.transaction().unwrap();
            {
                let mut stmt = tx
                    .prepare_cached("INSERT INTO samples (ts, seq, device, alias, value) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .unwrap();
                for s in report {
                    let Value::F32(v) = s.value else {
                        unreachable!()
                    };
                    let mut blob = [8u8; 5];
                    blob[1..].copy_from_slice(&v.to_le_bytes());
                    stmt.execute(rusqlite::params![
                        s.timestamp_ms as i64,
                        seq,
                        s.device.map(|d| d.0),
                        s.alias as i64,
                        &blob[..],
                    ])
                    .unwrap();
                    seq += 1;
                }
            }
            tx.commit().unwrap();
        }
        let bytes: i64 = conn
            .query_row(
                "SELECT (page_count - freelist_count) * page_size
                 FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
                [],
                |r| r.get(0),
            )
            .unwrap();
        Some(bytes as f64 / total as f64)
    })
}

/// The outage queue: one append per report. The store is returned for replay.
fn appended(path: &Path, reports: &[Vec<StoredSample>]) -> (Cost, Store) {
    let mut store = Store::open(&config(path)).unwrap();
    let total = reports.iter().map(|r| r.len() as u64).sum();
    let cost = Cost::measure(total, || {
        for report in reports {
            store.append(report).unwrap();
        }
        Some(store.file_bytes().unwrap() as f64 / store.depth() as f64)
    });
    (cost, store)
}

/// The live write-ahead: one `write_ahead` per publish, all forgotten every
/// [`SCANS_PER_PROBE`] scans of `per_scan` publishes.
fn written_ahead(path: &Path, reports: &[Vec<StoredSample>], per_scan: usize) -> Cost {
    let mut store = Store::open(&config(path)).unwrap();
    let total = reports.iter().map(|r| r.len() as u64).sum();
    Cost::measure(total, || {
        let mut mark = 0u64;
        for (n, report) in reports.iter().enumerate() {
            store.write_ahead(mark, report).unwrap();
            mark += report.len() as u64;
            if (n + 1).is_multiple_of(per_scan * SCANS_PER_PROBE as usize) {
                store.forget_sent(mark).unwrap();
            }
        }
        store.forget_sent(mark).unwrap();
        None
    })
}

/// Replays the whole queue by `peek_batch` + `ack`; `at_half` runs once half is out.
fn replay(store: &mut Store, batch: usize, mut at_half: impl FnMut()) -> Cost {
    let depth = store.depth();
    Cost::measure(depth, || {
        let mut replayed = 0;
        loop {
            let batch = store.peek_batch(batch, usize::MAX).unwrap();
            let Some(id) = batch.id() else { break };
            let before = replayed;
            replayed += batch.len() as u64;
            store.ack(id).unwrap();
            if before < depth / 2 && replayed >= depth / 2 {
                at_half();
            }
        }
        assert_eq!(replayed, depth);
        None
    })
}

fn replay_rate(store: &mut Store, batch: usize) -> f64 {
    replay(store, batch, || {}).rate()
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

const HEADER: &str = "| part | raw INSERT samples/s | store samples/s | store / raw | wchar bytes/sample | write_bytes/sample | disk bytes/sample | raw wchar bytes/sample | raw disk bytes/sample |\n|---|---|---|---|---|---|---|---|---|";

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = |name: &str| dir.path().join(format!("{name}.sqlite"));
    println!("store-and-forward, {TOTAL} F32 samples per part, WAL synchronous=NORMAL");

    println!();
    println!("throughput: scans of one device's 200 or 1,000 samples");
    println!("{HEADER}");
    let mut replays = Vec::new();
    for batch in [200u64, 1_000] {
        let reports: Vec<_> = (0..TOTAL)
            .step_by(batch as usize)
            .map(|first| scan(first, batch))
            .collect();
        let raw = raw_insert(&file(&format!("raw-{batch}")), &reports);
        let (cost, mut store) = appended(&file(&format!("store-{batch}")), &reports);
        println!("{}", cost.row(&format!("append, {batch} a scan"), &raw));
        replays.push((batch, replay_rate(&mut store, batch as usize)));
        let raw = raw_insert(&file(&format!("raw-wa-{batch}")), &reports);
        let cost = written_ahead(&file(&format!("wa-{batch}")), &reports, 1);
        println!(
            "{}",
            cost.row(&format!("write-ahead, {batch} a scan"), &raw)
        );
    }
    for (batch, rate) in replays {
        println!("replay (peek + ack), batches of {batch}: {rate:.0} samples/s");
    }

    println!();
    println!(
        "reference plant: {} tags on {DEVICES} devices, 1 Hz, one publish per device report",
        DEVICES * TAGS_PER_DEVICE
    );
    println!("{HEADER}");
    let mut replays_plant = Vec::new();
    for (name, every) in [("steady, ~10% changing", 10u64), ("flood, all changing", 1)] {
        let reports = plant_reports(every);
        let per_report = TOTAL as f64 / reports.len() as f64;
        let raw = raw_insert(&file(&format!("raw-wa-plant-{every}")), &reports);
        let cost = written_ahead(
            &file(&format!("wa-plant-{every}")),
            &reports,
            DEVICES as usize,
        );
        println!(
            "{}",
            cost.row(
                &format!("write-ahead, {name} ({per_report:.1} a publish)"),
                &raw
            )
        );
        let raw = raw_insert(&file(&format!("raw-plant-{every}")), &reports);
        let (cost, mut store) = appended(&file(&format!("plant-{every}")), &reports);
        println!(
            "{}",
            cost.row(
                &format!("outage queue, {name} ({per_report:.1} a report)"),
                &raw
            )
        );
        let replayed = replay(&mut store, 500, || {});
        replays_plant.push((name, cost, replayed));
    }
    for (name, append, replayed) in replays_plant {
        let per = |c: &Cost| c.wchar as f64 / c.samples as f64;
        println!(
            "outage queue {name}: replay (peek + ack, batches of 500) {:.0} samples/s, wchar {:.2} bytes/sample; append + replay {:.1} bytes/sample",
            replayed.rate(),
            per(&replayed),
            per(&append) + per(&replayed),
        );
    }

    // Memory over a long fill (an outage of many hours): RSS at 10% and 100%.
    let mut store = Store::open(&config(&file("long"))).unwrap();
    let (rss_start, _) = memory_kib();
    let mut rss_10 = 0;
    let mut buf = Vec::with_capacity(1_000);
    for first in (0..LONG_FILL).step_by(1_000) {
        buf.clear();
        buf.extend(scan(first, 1_000));
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
    let mut rss_half = 0;
    let replayed = replay(&mut store, 500, || rss_half = memory_kib().0);
    let (rss_end, hwm) = memory_kib();
    println!(
        "its replay (batches of 500, {:.0} samples/s): VmRSS at 50% {rss_half} KiB, at 100% {rss_end} KiB; VmHWM {hwm} KiB",
        replayed.rate()
    );
}
