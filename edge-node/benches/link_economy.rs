//! What the reference plant costs on a paid link, lever by lever: the real `plant-sim`
//! serving the reference plant (`edge_node::simulator::reference`: 1,000 tags on 10
//! devices at 1 Hz, about 90 changes a second), one real `edge-node` process per
//! configuration, all polling the same plant at once, each through its own counting TCP
//! relay (`system_tests::linksim::LinkSim`) to one Mosquitto. Every byte between edge node
//! and broker is counted both ways: MQTT framing, CONNECT, births, keep-alives, liveness
//! probes.
//!
//!     cargo build --profile bench -p edge-node --bins
//!     cargo bench -p edge-node --bench link_economy
//!
//! `LINK_ECONOMY_SECS` (default 600) sets the run length. A subscriber on the broker counts
//! the live samples each node reported (compressed payloads inflated) and the bytes of
//! its DDATA. Naive Sparkplug (every tag every second, alias, per-metric timestamp, no
//! compression) is today's configuration with its DDATA replaced by what a naive node
//! sends: 10 DDATA of 100 metrics a second, encoded by the same codec from the plant's
//! tag types, plus the same session overhead (connect, births, keep-alives) measured here.
//! CPU: user + system time of each edge-node process (/proc/PID/stat) per 1,000 reported
//! samples; the Modbus polling of 1,000 tags a second is in every row.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edge_node::simulator::reference;
use sparkplug::{DecodeLimits, Metric, Payload, Seq};
use system_tests::Mosquitto;
use system_tests::linksim::LinkSim;
use system_tests::mqtt::Watcher;
use system_tests::process::{Proc, bin};

/// One configuration of the node under test.
struct Setup {
    node: &'static str,
    what: &'static str,
    economy: &'static str,
    keep_alive_s: u64,
}

const WINDOW: &str = "report_window_ms = 10000\n";
const TIMESTAMPS: &str = "metric_timestamps = \"when_different\"\n";
const NARROW: &str = "narrow_types = true\n";
const DEFLATE: &str = "compression = \"deflate\"\n";

const SETUPS: [Setup; 8] = [
    Setup {
        node: "today",
        what: "today's edge node (every lever off)",
        economy: "",
        keep_alive_s: 30,
    },
    Setup {
        node: "timestamps",
        what: "metric timestamps left out where equal",
        economy: TIMESTAMPS,
        keep_alive_s: 30,
    },
    Setup {
        node: "narrow",
        what: "narrowest types",
        economy: NARROW,
        keep_alive_s: 30,
    },
    Setup {
        node: "window",
        what: "report window 10 s",
        economy: WINDOW,
        keep_alive_s: 30,
    },
    Setup {
        node: "deflate",
        what: "DEFLATE compression from 256 B",
        economy: DEFLATE,
        keep_alive_s: 30,
    },
    Setup {
        node: "keepalive",
        what: "keep-alive 300 s (probe every 150 s)",
        economy: "",
        keep_alive_s: 300,
    },
    Setup {
        node: "all",
        what: "all levers together",
        economy: "metric_timestamps = \"when_different\"\nnarrow_types = true\nreport_window_ms = 10000\ncompression = \"deflate\"\n",
        keep_alive_s: 300,
    },
    Setup {
        node: "all60",
        what: "all levers, report window 60 s",
        economy: "metric_timestamps = \"when_different\"\nnarrow_types = true\nreport_window_ms = 60000\ncompression = \"deflate\"\n",
        keep_alive_s: 300,
    },
];

const GROUP: &str = "bench";

/// How long after a cut the reconnect's bytes are counted (reconnect backoff 1 s).
const RECONNECT_WINDOW: Duration = Duration::from_secs(15);

fn edge_config(setup: &Setup, relay: SocketAddr, modbus_port: u16) -> String {
    let economy = if setup.economy.is_empty() {
        String::new()
    } else {
        format!("[economy]\n{}\n", setup.economy)
    };
    format!(
        "[sparkplug]\ngroup_id = \"{GROUP}\"\nedge_node_id = \"{}\"\n\n\
         [mqtt]\nkeep_alive_s = {}\nstartup_delay_max_ms = 0\n\n\
         [[mqtt.servers]]\nhost = \"127.0.0.1\"\nport = {}\n\n{economy}{}",
        setup.node,
        setup.keep_alive_s,
        relay.port(),
        reference::edge_modbus_toml("127.0.0.1", modbus_port)
    )
}

/// CPU time (user + system) of a process so far.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Bytes of an MQTT 3.1.1 QoS 0 PUBLISH: fixed header, remaining length, topic, payload.
fn publish_len(topic: usize, payload: usize) -> usize {
    let remaining = 2 + topic + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

/// One second of naive Sparkplug DDATA for the whole plant: every tag, alias, its own
/// timestamp, no compression.
fn naive_ddata_bytes_per_s(second: u64) -> usize {
    let ms = 1_780_000_000_000 + second * 1000;
    let mut total = 0;
    for d in 0..reference::DEVICES {
        let mut p = Payload::new(ms + 3);
        p.seq = Some(u64::from(Seq::new((second * 10 + d as u64) as u8).value()));
        for t in 0..reference::TAGS_PER_DEVICE {
            let alias = 64 + (d * reference::TAGS_PER_DEVICE + t) as u64;
            let m = if t < reference::ANALOGS {
                Metric::aliased(alias, 20.0f32 + (t as f32) * 0.731 + second as f32 * 0.013)
            } else if t < reference::ANALOGS + reference::COUNTERS {
                Metric::aliased(alias, (second / 10 + t as u64) as u32)
            } else {
                Metric::aliased(alias, t % 2 == 0)
            };
            p.metrics.push(m.without_datatype().with_timestamp(ms));
        }
        let topic = format!("spBv1.0/{GROUP}/DDATA/naive/line-{:02}", d + 1);
        total += publish_len(topic.len(), p.encode_to_vec().unwrap().len());
    }
    total
}

#[derive(Default, Clone, Copy)]
struct Seen {
    samples: u64,
    ddata_bytes: u64,
}

fn count(seen: &mut HashMap<String, Seen>, topic: &str, payload: &[u8]) {
    let parts: Vec<&str> = topic.split('/').collect();
    if parts.len() < 5 || parts[2] != "DDATA" {
        return;
    }
    let Ok(outer) = Payload::decode(payload) else {
        return;
    };
    let Ok(inner) = sparkplug::decompress(&outer, &DecodeLimits::default()) else {
        return;
    };
    let e = seen.entry(parts[3].to_owned()).or_default();
    e.samples += inner.metrics.iter().filter(|m| !m.is_historical).count() as u64;
    e.ddata_bytes += publish_len(topic.len(), payload.len()) as u64;
}

fn main() {
    let secs: u64 = std::env::var("LINK_ECONOMY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Mosquitto::start();
    let broker_addr: SocketAddr = ([127, 0, 0, 1], broker.port()).into();

    let plant_file = dir.path().join("reference-plant.toml");
    std::fs::write(&plant_file, reference::plant_sim_toml()).expect("write plant");
    let mut cmd = std::process::Command::new(bin("plant-sim"));
    cmd.arg("--config")
        .arg(&plant_file)
        .arg("--listen")
        .arg("127.0.0.1:0");
    let mut plant = Proc::spawn("plant-sim", cmd);
    let line = plant.wait_for_line(Duration::from_secs(10), |l| l.starts_with("listening on"));
    let modbus_port: u16 = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .expect("plant-sim port");

    let watcher = Watcher::start(broker.port(), "link-economy-counter", "spBv1.0/#");
    let mut relays = Vec::new();
    let mut nodes = Vec::new();
    for setup in &SETUPS {
        let relay = runtime
            .block_on(LinkSim::start(broker_addr))
            .expect("relay");
        let file = dir.path().join(format!("{}.toml", setup.node));
        std::fs::write(&file, edge_config(setup, relay.addr(), modbus_port)).expect("write");
        let mut cmd = std::process::Command::new(bin("edge-node"));
        cmd.arg("--config").arg(&file).env("RUST_LOG", "warn");
        nodes.push(Proc::spawn(setup.node, cmd));
        relays.push(relay);
    }

    eprintln!("link_economy: {} configurations for {secs} s", SETUPS.len());
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let start = Instant::now();
    let run = Duration::from_secs(secs);
    while start.elapsed() < run {
        for m in watcher.drain_for(Duration::from_secs(1)) {
            count(&mut seen, &m.topic, &m.payload);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu: Vec<Duration> = nodes.iter().map(|n| cpu_of(n.id())).collect();
    let wire: Vec<(u64, u64)> = relays
        .iter()
        .map(|r| (r.bytes_up(), r.bytes_down()))
        .collect();

    // The reconnect: every link cut for 2 s and restored; the bytes of the next
    // RECONNECT_WINDOW beyond the run's average rate are the reconnect's cost (CONNECT,
    // subscriptions, births, replay of what the cut held).
    let before: Vec<u64> = relays
        .iter()
        .map(|r| r.bytes_up() + r.bytes_down())
        .collect();
    let cut_at = Instant::now();
    relays.iter().for_each(LinkSim::cut);
    std::thread::sleep(Duration::from_secs(2));
    relays.iter().for_each(LinkSim::restore);
    while cut_at.elapsed() < RECONNECT_WINDOW {
        let _ = watcher.drain_for(Duration::from_secs(1));
    }
    let window = cut_at.elapsed().as_secs_f64();
    let reconnect: Vec<f64> = relays
        .iter()
        .zip(&before)
        .enumerate()
        .map(|(i, (r, b))| {
            let rate = (wire[i].0 + wire[i].1) as f64 / elapsed;
            (r.bytes_up() + r.bytes_down() - b) as f64 - rate * window
        })
        .collect();
    for n in &mut nodes {
        n.terminate(Duration::from_secs(5));
    }
    plant.terminate(Duration::from_secs(5));

    let naive_ddata_per_s = (0..60).map(naive_ddata_bytes_per_s).sum::<usize>() as f64 / 60.0;
    let today = seen.get("today").copied().unwrap_or_default();
    let today_overhead_per_s =
        (wire[0].0 + wire[0].1).saturating_sub(today.ddata_bytes) as f64 / elapsed;
    let naive_per_s = naive_ddata_per_s + today_overhead_per_s;
    let naive_per_sample = naive_ddata_per_s
        / (reference::DEVICES * reference::TAGS_PER_DEVICE) as f64
        + today_overhead_per_s / (reference::DEVICES * reference::TAGS_PER_DEVICE) as f64;

    println!(
        "## link economy: the reference plant on the wire ({elapsed:.0} s per configuration, all at once)"
    );
    println!();
    println!(
        "| configuration | bytes sent | bytes received | reported samples | bytes per reported sample | MB per day | vs naive per day | CPU ms per 1,000 samples | reconnect bytes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| naive Sparkplug (every tag every second; computed DDATA + today's measured session overhead) | - | - | {:.0}/s | {naive_per_sample:.2} | {:.1} | 1 | - | - |",
        (reference::DEVICES * reference::TAGS_PER_DEVICE) as f64,
        naive_per_s * 86_400.0 / 1e6
    );
    for (i, setup) in SETUPS.iter().enumerate() {
        let s = seen.get(setup.node).copied().unwrap_or_default();
        let (up, down) = wire[i];
        let total = (up + down) as f64;
        let per_day = total / elapsed * 86_400.0;
        let per_sample = if s.samples > 0 {
            total / s.samples as f64
        } else {
            f64::NAN
        };
        let cpu_per_k = cpu[i].as_secs_f64() * 1000.0 / (s.samples as f64 / 1000.0);
        println!(
            "| {} | {up} | {down} | {} ({:.1}/s) | **{per_sample:.2}** | {:.1} | 1/{:.1} | {cpu_per_k:.2} | {:.0} |",
            setup.what,
            s.samples,
            s.samples as f64 / elapsed,
            per_day / 1e6,
            naive_per_s * 86_400.0 / per_day,
            reconnect[i],
        );
    }
    println!();
    println!(
        "naive DDATA {naive_ddata_per_s:.0} B/s; today's session overhead (wire minus DDATA publishes: CONNECT, subscriptions, births, NDATA, keep-alives, probes) {today_overhead_per_s:.1} B/s"
    );
    drop(broker);
}
