//! What the reference plant costs on a paid link, lever by lever: the real `plant-sim`
//! serving the reference plant (`edge_node::simulator::reference`: 1,000 tags on 10
//! devices at 1 Hz, about 90 changes a second), one real `edge-node` process per
//! configuration, all polling the same plant at once, each through its own counting TCP
//! relay (`system_tests::linksim::LinkSim`) to one Mosquitto. Every byte between edge node
//! and broker is counted both ways: MQTT framing, CONNECT, births, keep-alives, liveness
//! probes, and TLS records for the row over TLS (Mosquitto's TLS listener, a throwaway CA).
//!
//!     cargo build --profile bench -p edge-node --bins
//!     cargo bench -p edge-node --bench link_economy
//!
//! `LINK_ECONOMY_SECS` (default 600, the documented run) sets the run length; a quick run
//! of 180 s shows the same picture with births weighing more. A subscriber on the broker
//! counts the live samples each node reported (compressed payloads inflated) and the bytes
//! of its DDATA, and splits the compressed DDATA into MQTT header, envelope, timestamps,
//! aliases and values.
//!
//! Naive Sparkplug runs in the same run (`naive`): a node that reads the same plant over
//! Modbus every second and publishes every tag every second (alias, per-metric timestamp,
//! no compression, keep-alive 30 s), through its own counting relay to the same broker.
//!
//! The report window rows hold each value at most one window (10 s, or 60 s in its own
//! row). After the run every link is cut for 2 s: the reconnect's bytes (CONNECT,
//! subscriptions, births, the TLS handshake, resumed over TLS) are the 15 s after the cut
//! beyond the run's average rate; the server-to-node bytes of the first connection and of
//! the reconnect show whether TLS resumed the session (no certificate the second time), and
//! the attempts the cut refused why not (each used up one of the session tickets).
//!
//! CPU: user + system time of each edge-node process (/proc/PID/stat) per 1,000 reported
//! samples; the Modbus polling of 1,000 tags a second is in every row.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[path = "link_economy/naive.rs"]
mod naive;

use edge_node::simulator::reference;
use sparkplug::{Algorithm, DecodeLimits, Metric, Payload, Seq};
use system_tests::Mosquitto;
use system_tests::linksim::LinkSim;
use system_tests::mqtt::Watcher;
use system_tests::pki::Pki;
use system_tests::process::{Proc, bin};

/// One configuration of the node under test.
struct Setup {
    node: &'static str,
    what: &'static str,
    economy: &'static str,
    keep_alive_s: u64,
    /// Over TLS to the broker's TLS listener (the relay counts TLS records).
    tls: bool,
}

const WINDOW: &str = "report_window_ms = 10000\n";
const TIMESTAMPS: &str = "metric_timestamps = \"when_different\"\n";
const NARROW: &str = "narrow_types = true\n";
const DEFLATE: &str = "compression = \"deflate\"\n";

const ALL: &str = "metric_timestamps = \"when_different\"\nnarrow_types = true\nreport_window_ms = 10000\ncompression = \"deflate\"\n";

const SETUPS: [Setup; 9] = [
    Setup {
        node: "today",
        what: "today's edge node (every lever off)",
        economy: "",
        keep_alive_s: 30,
        tls: false,
    },
    Setup {
        node: "timestamps",
        what: "metric timestamps left out where equal",
        economy: TIMESTAMPS,
        keep_alive_s: 30,
        tls: false,
    },
    Setup {
        node: "narrow",
        what: "narrowest types",
        economy: NARROW,
        keep_alive_s: 30,
        tls: false,
    },
    Setup {
        node: "window",
        what: "report window 10 s",
        economy: WINDOW,
        keep_alive_s: 30,
        tls: false,
    },
    Setup {
        node: "deflate",
        what: "DEFLATE compression from 256 B",
        economy: DEFLATE,
        keep_alive_s: 30,
        tls: false,
    },
    Setup {
        node: "keepalive",
        what: "keep-alive 300 s (probe every 150 s)",
        economy: "",
        keep_alive_s: 300,
        tls: false,
    },
    Setup {
        node: "all",
        what: "all levers together",
        economy: ALL,
        keep_alive_s: 300,
        tls: false,
    },
    Setup {
        node: "tls",
        what: "all levers together, over TLS",
        economy: ALL,
        keep_alive_s: 300,
        tls: true,
    },
    Setup {
        node: "all60",
        what: "all levers, report window 60 s",
        economy: "metric_timestamps = \"when_different\"\nnarrow_types = true\nreport_window_ms = 60000\ncompression = \"deflate\"\n",
        keep_alive_s: 300,
        tls: false,
    },
];

const GROUP: &str = "bench";

/// How long after a cut the reconnect's bytes are counted (reconnect backoff 1 s).
const RECONNECT_WINDOW: Duration = Duration::from_secs(15);

fn edge_config(setup: &Setup, relay: SocketAddr, modbus_port: u16, ca: &Path) -> String {
    let economy = if setup.economy.is_empty() {
        String::new()
    } else {
        format!("[economy]\n{}\n", setup.economy)
    };
    let tls = if setup.tls {
        format!(
            "tls = true\nca_file = \"{}\"\nserver_name = \"localhost\"\n",
            ca.display()
        )
    } else {
        String::new()
    };
    format!(
        "[sparkplug]\ngroup_id = \"{GROUP}\"\nedge_node_id = \"{}\"\n\n\
         [mqtt]\nkeep_alive_s = {}\nstartup_delay_max_ms = 0\n\n\
         [[mqtt.servers]]\nhost = \"127.0.0.1\"\nport = {}\n{tls}\n{economy}{}",
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

/// Where the bytes of one node's DDATA go, summed over the run.
#[derive(Default, Clone, Copy)]
struct Breakdown {
    payloads: u64,
    samples: u64,
    /// MQTT fixed header, remaining length, topic.
    mqtt: u64,
    /// The compressed envelope around the body: uuid, `algorithm` metric, timestamp,
    /// seq, field tags.
    envelope: u64,
    /// The compressed metrics (zlib stream).
    body: u64,
    /// The inner payload before compression.
    inner: u64,
    /// The body again with every metric timestamp left out.
    body_without_timestamps: u64,
    /// The body again with only the values (no alias, no timestamp).
    body_values_only: u64,
}

fn deflated_len(p: &Payload) -> u64 {
    sparkplug::compress(p, Algorithm::Deflate)
        .ok()
        .and_then(|e| e.body.map(|b| b.len() as u64))
        .unwrap_or(0)
}

fn count(
    seen: &mut HashMap<String, Seen>,
    breakdown: &mut HashMap<String, Breakdown>,
    topic: &str,
    payload: &[u8],
) {
    let parts: Vec<&str> = topic.split('/').collect();
    if parts.len() < 5 || parts[2] != "DDATA" {
        return;
    }
    let limits = DecodeLimits::default();
    let Ok(outer) = Payload::decode_envelope(payload, &limits) else {
        return;
    };
    let Ok(inner) = sparkplug::decompress(&outer, &limits) else {
        return;
    };
    let live = inner.metrics.iter().filter(|m| !m.is_historical).count() as u64;
    let e = seen.entry(parts[3].to_owned()).or_default();
    e.samples += live;
    let wire = publish_len(topic.len(), payload.len()) as u64;
    e.ddata_bytes += wire;
    let Some(body) = outer.body.as_ref() else {
        return;
    };
    let b = breakdown.entry(parts[3].to_owned()).or_default();
    b.payloads += 1;
    b.samples += live;
    b.mqtt += wire - payload.len() as u64;
    b.envelope += (payload.len() - body.len()) as u64;
    b.body += body.len() as u64;
    b.inner += inner.encoded_len() as u64;
    let mut bare = inner.clone();
    bare.metrics.iter_mut().for_each(|m| m.timestamp = None);
    b.body_without_timestamps += deflated_len(&bare);
    bare.metrics.iter_mut().for_each(|m| m.alias = None);
    b.body_values_only += deflated_len(&bare);
}

/// Bytes so far, both ways, of every relay.
fn wire_of(relays: &[LinkSim]) -> Vec<(u64, u64)> {
    relays
        .iter()
        .map(|r| (r.bytes_up(), r.bytes_down()))
        .collect()
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
    let pki = Pki::generate();
    let tls_port = system_tests::free_port();
    let broker = Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display()
    ));
    let broker_addr: SocketAddr = ([127, 0, 0, 1], broker.port()).into();
    let broker_tls: SocketAddr = ([127, 0, 0, 1], tls_port).into();

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
        let target = if setup.tls { broker_tls } else { broker_addr };
        let relay = runtime.block_on(LinkSim::start(target)).expect("relay");
        let file = dir.path().join(format!("{}.toml", setup.node));
        let config = edge_config(setup, relay.addr(), modbus_port, &pki.ca);
        std::fs::write(&file, config).expect("write");
        let mut cmd = std::process::Command::new(bin("edge-node"));
        cmd.arg("--config").arg(&file).env("RUST_LOG", "warn");
        nodes.push(Proc::spawn(setup.node, cmd));
        relays.push(relay);
    }
    // Naive Sparkplug, last relay.
    let stop = Arc::new(AtomicBool::new(false));
    let naive_relay = runtime
        .block_on(LinkSim::start(broker_addr))
        .expect("relay");
    let naive_task = runtime.spawn(naive::run(
        GROUP.to_owned(),
        naive_relay.addr(),
        ([127, 0, 0, 1], modbus_port).into(),
        Arc::clone(&stop),
    ));
    relays.push(naive_relay);
    let naive_i = relays.len() - 1;

    eprintln!(
        "link_economy: {} configurations and naive Sparkplug for {secs} s",
        SETUPS.len()
    );
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut breakdown: HashMap<String, Breakdown> = HashMap::new();
    let start = Instant::now();
    let run = Duration::from_secs(secs);
    // Bytes of each relay in the first RECONNECT_WINDOW: the first connection (TLS
    // handshake in full, CONNECT, subscriptions, births).
    let mut first_window: Option<Vec<(u64, u64)>> = None;
    while start.elapsed() < run {
        for m in watcher.drain_for(Duration::from_secs(1)) {
            count(&mut seen, &mut breakdown, &m.topic, &m.payload);
        }
        if first_window.is_none() && start.elapsed() >= RECONNECT_WINDOW {
            first_window = Some(wire_of(&relays));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu: Vec<Duration> = nodes.iter().map(|n| cpu_of(n.id())).collect();
    let wire = wire_of(&relays);
    let first_window = first_window.unwrap_or_else(|| wire.clone());

    // The reconnect: every link cut for 2 s and restored; the bytes of the next
    // RECONNECT_WINDOW beyond the run's average rate are the reconnect's cost (CONNECT,
    // subscriptions, births, replay of what the cut held; the TLS handshake over TLS).
    let before = wire_of(&relays);
    let cut_at = Instant::now();
    let accepted_before: Vec<u64> = relays.iter().map(LinkSim::accepted).collect();
    relays.iter().for_each(LinkSim::cut);
    std::thread::sleep(Duration::from_secs(2));
    // Attempts the cut refused after accepting them: over TLS each one carried a
    // ClientHello, and so used up one of the session tickets (each is offered once).
    let refused: Vec<u64> = (0..relays.len())
        .map(|i| relays[i].accepted() - accepted_before[i])
        .collect();
    relays.iter().for_each(LinkSim::restore);
    // Birth bytes on the wire per node after the cut (MQTT framing included).
    let mut births: HashMap<String, u64> = HashMap::new();
    while cut_at.elapsed() < RECONNECT_WINDOW {
        for m in watcher.drain_for(Duration::from_secs(1)) {
            let parts: Vec<&str> = m.topic.split('/').collect();
            if parts.len() >= 4 && (parts[2] == "NBIRTH" || parts[2] == "DBIRTH") {
                *births.entry(parts[3].to_owned()).or_default() +=
                    publish_len(m.topic.len(), m.payload.len()) as u64;
            }
        }
    }
    let window = cut_at.elapsed().as_secs_f64();
    let after = wire_of(&relays);
    let reconnect: Vec<f64> = (0..relays.len())
        .map(|i| {
            let rate = (wire[i].0 + wire[i].1) as f64 / elapsed;
            let spent = (after[i].0 + after[i].1) - (before[i].0 + before[i].1);
            spent as f64 - rate * window
        })
        .collect();
    // Server-to-node bytes: CONNACK, SUBACKs and the server's handshake flights; the data
    // flows the other way.
    let down_after_cut: Vec<u64> = (0..relays.len())
        .map(|i| after[i].1 - before[i].1)
        .collect();
    stop.store(true, Ordering::Relaxed);
    let _ = runtime.block_on(naive_task);
    for n in &mut nodes {
        n.terminate(Duration::from_secs(5));
    }
    plant.terminate(Duration::from_secs(5));

    let tags = (reference::DEVICES * reference::TAGS_PER_DEVICE) as f64;
    let naive_seen = seen.get(naive::NODE).copied().unwrap_or_default();
    let naive_total = (wire[naive_i].0 + wire[naive_i].1) as f64;
    let naive_per_s = naive_total / elapsed;
    let naive_per_sample = naive_total / naive_seen.samples.max(1) as f64;
    // The naive node drops what it reads while the link is down (no store), so its
    // reconnect is counted as what it sends again: NBIRTH and DBIRTHs.
    let naive_births = births.get(naive::NODE).copied().unwrap_or_default();
    let naive_computed_ddata_per_s =
        (0..60).map(naive_ddata_bytes_per_s).sum::<usize>() as f64 / 60.0;

    println!(
        "## link economy: the reference plant on the wire ({elapsed:.0} s per configuration, all at once)"
    );
    println!();
    println!(
        "| configuration | bytes sent | bytes received | reported samples | bytes per reported sample | MB per day | vs naive per day | CPU ms per 1,000 samples | reconnect bytes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| naive Sparkplug (every tag every second, run) | {} | {} | {} ({:.1}/s) | **{naive_per_sample:.2}** | {:.1} | 1 | - | {naive_births} (births) |",
        wire[naive_i].0,
        wire[naive_i].1,
        naive_seen.samples,
        naive_seen.samples as f64 / elapsed,
        naive_per_s * 86_400.0 / 1e6,
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
        "naive run: {:.0} B/s on the wire ({:.0} samples/s); the same plant's naive DDATA computed by the codec alone: {naive_computed_ddata_per_s:.0} B/s of {tags:.0} samples/s",
        naive_per_s,
        naive_seen.samples as f64 / elapsed
    );
    println!();
    println!(
        "TLS handshake: server-to-node bytes (server hello, certificate, tickets; CONNACK, SUBACKs), first {:.0} s of the first connection vs the {window:.0} s after the cut (resumed session):",
        RECONNECT_WINDOW.as_secs_f64()
    );
    for (i, setup) in SETUPS.iter().enumerate() {
        if setup.node == "all" || setup.tls {
            println!(
                "- {}: first connection {} B down, reconnect {} B down ({} attempts refused by the cut first)",
                setup.what, first_window[i].1, down_after_cut[i], refused[i]
            );
        }
    }
    println!();
    println!("Where the bytes of a DEFLATE-compressed DDATA go (per reported sample):");
    println!();
    println!(
        "| configuration | samples per DDATA | MQTT header + topic | envelope | compressed metrics | of which timestamps | of which aliases + framing | values alone, deflated | inner payload before DEFLATE |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for setup in &SETUPS {
        let Some(b) = breakdown.get(setup.node).copied() else {
            continue;
        };
        if b.samples == 0 || b.payloads < 10 {
            continue;
        }
        let per = |v: u64| v as f64 / b.samples as f64;
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            setup.what,
            b.samples as f64 / b.payloads as f64,
            per(b.mqtt),
            per(b.envelope),
            per(b.body),
            per(b.body) - per(b.body_without_timestamps),
            per(b.body_without_timestamps) - per(b.body_values_only),
            per(b.body_values_only),
            per(b.inner),
        );
    }
    drop(broker);
}
