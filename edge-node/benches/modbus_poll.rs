//! Modbus acquisition benchmark: 10 simulated devices x 1,000 holding registers of mixed
//! types, served by the `plant-sim` binary in a separate process so the CPU and memory
//! measured here are the engine's own.
//!
//!     cargo bench -p edge-node --bench modbus_poll
//!
//! Phases, all against the same server in the same run:
//! 1. the engine polling every register at 1 s: CPU % of one core (getrusage) and peak RSS
//!    (VmHWM, measured before any other phase runs);
//! 2. the limit: raw tokio-modbus clients, one per device, reading the same 125-register
//!    blocks back to back;
//! 3. the engine polling flat out (0.1 ms scan class): requests/s and its ratio to the limit.
//!
//! Phases 2 and 3 alternate over several rounds; the median round's ratio is reported.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edge_node::modbus::config::{AddressField, DeviceConfig, ScanClassConfig, TagConfig};
use edge_node::modbus::{
    Acquisition, ByteOrder, DataType, DeviceId, Event, ModbusConfig, Site, Table,
};
use tokio_modbus::prelude::*;

const DEVICES: u16 = 10;
const REGISTERS: u16 = 1000;
const BLOCK: u16 = 125;
const ROUNDS: usize = 5;

struct PlantSim(Child);

impl Drop for PlantSim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_plant_sim() -> (PlantSim, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plant-sim"))
        .args(["--bench-map", &format!("{DEVICES},{REGISTERS}")])
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start plant-sim");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read plant-sim's address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected plant-sim greeting {line:?}"))
        .to_owned();
    (PlantSim(child), addr)
}

/// The benchmark map's repeating 8-register block: u16, i16, u32, f32 ABCD, f32 CDAB.
/// Built as config structs (not TOML text) so a one-off parse of a 600 kB document does not
/// set the peak RSS; validation is the same as for a file.
fn site(addr: &str, period_ms: f64) -> Site {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut config = ModbusConfig {
        scan_classes: vec![ScanClassConfig {
            name: "scan".into(),
            period_ms,
        }],
        ..Default::default()
    };
    for unit in 1..=DEVICES {
        let mut device = DeviceConfig {
            name: format!("unit{unit}"),
            host: Some(host.to_owned()),
            port: Some(port.parse().expect("port")),
            unit_id: Some(unit as u8),
            max_gap: Some(0),
            ..Default::default()
        };
        for base in (0..REGISTERS).step_by(8) {
            for (offset, ty, order) in [
                (0, DataType::U16, ByteOrder::ABCD),
                (1, DataType::I16, ByteOrder::ABCD),
                (2, DataType::U32, ByteOrder::ABCD),
                (4, DataType::F32, ByteOrder::ABCD),
                (6, DataType::F32, ByteOrder::CDAB),
            ] {
                device.tags.push(TagConfig {
                    name: format!("hr{}", base + offset),
                    table: Some(Table::HoldingRegister),
                    address: AddressField((base + offset).to_string()),
                    data_type: ty,
                    order: Some(order),
                    ..Default::default()
                });
            }
        }
        config.devices.push(device);
    }
    config.validate().expect("bench config is valid")
}

fn rss_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Starts the engine, drains its events (counting samples), waits until every device is online.
async fn start_engine(site: Site) -> (Acquisition, Arc<AtomicU64>) {
    let (acq, mut events) = Acquisition::start(site, Default::default());
    let samples = Arc::new(AtomicU64::new(0));
    let (online_tx, mut online_rx) = tokio::sync::mpsc::channel(16);
    let counted = Arc::clone(&samples);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match &event {
                Event::Online(r) => {
                    let _ = online_tx.try_send(r.device);
                    counted.fetch_add(r.samples.len() as u64, Ordering::Relaxed);
                }
                Event::Data(r) => {
                    counted.fetch_add(r.samples.len() as u64, Ordering::Relaxed);
                }
                Event::Offline { .. } => panic!("a device went offline during the benchmark"),
            }
        }
    });
    for _ in 0..DEVICES {
        tokio::time::timeout(Duration::from_secs(10), online_rx.recv())
            .await
            .expect("every device came online")
            .expect("event task alive");
    }
    (acq, samples)
}

fn total_requests(acq: &Acquisition) -> u64 {
    let h = acq.handle();
    (0..u32::from(DEVICES))
        .map(|d| h.stats(DeviceId(d)).requests)
        .sum()
}

async fn raw_rate(addr: std::net::SocketAddr, window: Duration) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + window;
    let mut tasks = Vec::new();
    for unit in 1..=DEVICES {
        let count = Arc::clone(&count);
        tasks.push(tokio::spawn(async move {
            let mut ctx = tcp::connect_slave(addr, Slave(unit as u8))
                .await
                .expect("connect");
            let mut start = 0;
            while Instant::now() < stop {
                let words = ctx
                    .read_holding_registers(start, BLOCK)
                    .await
                    .expect("io")
                    .expect("no exception");
                assert_eq!(words.len(), usize::from(BLOCK));
                count.fetch_add(1, Ordering::Relaxed);
                start = (start + BLOCK) % REGISTERS;
            }
        }));
    }
    let began = Instant::now();
    for t in tasks {
        t.await.expect("raw client task");
    }
    count.load(Ordering::Relaxed) as f64 / began.elapsed().as_secs_f64()
}

fn main() {
    let (_sim, addr) = start_plant_sim();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let measure = Duration::from_secs(10);
    let flat = Duration::from_secs(3);
    runtime.block_on(async {
        // 1. Engine at 1 s, first, so the peak RSS is the engine's alone.
        let (acq, samples) = start_engine(site(&addr, 1000.0)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (cpu0, req0, s0, t0) = (
            cpu_seconds(),
            total_requests(&acq),
            samples.load(Ordering::Relaxed),
            Instant::now(),
        );
        tokio::time::sleep(measure).await;
        let wall = t0.elapsed().as_secs_f64();
        let cpu_pct = (cpu_seconds() - cpu0) / wall * 100.0;
        let slow_req = (total_requests(&acq) - req0) as f64 / wall;
        let slow_samples = (samples.load(Ordering::Relaxed) - s0) as f64 / wall;
        let rss_mib = rss_kib("VmRSS:") as f64 / 1024.0;
        let hwm_mib = rss_kib("VmHWM:") as f64 / 1024.0;
        acq.shutdown().await;

        // 2 and 3, alternated in rounds: the machine is shared, so each round's ratio
        // compares two runs seconds apart, and the median round is reported.
        let target = addr.parse().expect("socket address");
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            let raw = raw_rate(target, flat).await;
            let (acq, samples) = start_engine(site(&addr, 0.1)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (req0, s0, t0) = (
                total_requests(&acq),
                samples.load(Ordering::Relaxed),
                Instant::now(),
            );
            tokio::time::sleep(flat).await;
            let wall = t0.elapsed().as_secs_f64();
            let rate = (total_requests(&acq) - req0) as f64 / wall;
            let sample_rate = (samples.load(Ordering::Relaxed) - s0) as f64 / wall;
            acq.shutdown().await;
            rounds.push((rate / raw, raw, rate, sample_rate));
        }
        rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, raw, fast_req, fast_samples) = rounds[rounds.len() / 2];
        let all: Vec<String> = rounds.iter().map(|r| format!("{:.1} %", r.0 * 100.0)).collect();

        let regs = f64::from(BLOCK);
        println!(
            "## modbus_poll: {DEVICES} devices x {REGISTERS} holding registers (625 tags each), plant-sim in a separate process"
        );
        println!();
        println!("| measurement | requests/s | registers/s | samples/s | CPU % of one core | RSS MiB (now / peak) |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| engine, 1 s scan | {slow_req:.1} | {:.0} | {slow_samples:.0} | {cpu_pct:.2} | {rss_mib:.1} / {hwm_mib:.1} |",
            slow_req * regs
        );
        println!(
            "| raw tokio-modbus, flat out (limit) | {raw:.0} | {:.0} | - | - | - |",
            raw * regs
        );
        println!(
            "| engine, flat out (0.1 ms scan) | {fast_req:.0} | {:.0} | {fast_samples:.0} | - | - |",
            fast_req * regs
        );
        println!();
        println!(
            "ratio engine/raw flat out (median of {ROUNDS} rounds): {:.1} % (target >= 90 %); rounds: {}",
            ratio * 100.0,
            all.join(", ")
        );
        println!(
            "1 s scan: CPU {cpu_pct:.2} % of one core (target < 2 %), RSS {rss_mib:.1} MiB, peak {hwm_mib:.1} MiB (target < 10 MB)"
        );
    });
}
