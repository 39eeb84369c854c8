//! What report by exception costs on the wire and in CPU: 1,000 Float tags (10 devices x
//! 100) all changing at 1 Hz, published as one DDATA per device per second, by alias,
//! without datatype, each metric with its own timestamp. Built by the node's own code
//! (`Catalog::ddata`, the `Publisher`'s topic and encoding).
//!
//!     cargo bench -p edge-node --bench sparkplug_wire
//!
//! Bytes: the MQTT PUBLISH (fixed header, topic, payload) per reported sample, split into
//! topic + MQTT framing, payload header (timestamp, seq) and per-metric overhead; the limit
//! is the raw value bytes (4 per Float). CPU: thread CPU time (/proc/thread-self/schedstat)
//! to build and encode 1,000 samples, against the limit of copying the raw value bytes.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use edge_node::modbus::{DeviceId, ModbusConfig, Quality, Report, Sample, Site, TagId, Value};
use edge_node::node::catalog::Catalog;
use edge_node::store::TagAliases;
use sparkplug::{Payload, Seq};

const DEVICES: u32 = 10;
const TAGS_PER_DEVICE: u32 = 100;
const RAW_VALUE_BYTES: usize = 4;
const ROUNDS: u32 = 2_000;

fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// The bench's devices and Float tags, as a configuration would declare them.
fn site() -> Site {
    let mut toml = String::from("[[modbus.scan_classes]]\nname = \"fast\"\nperiod_ms = 1000\n");
    for d in 0..DEVICES {
        toml += &format!("[[modbus.devices]]\nname = \"boiler-{d:02}\"\nhost = \"127.0.0.1\"\n");
        for t in 0..TAGS_PER_DEVICE {
            toml += &format!(
                "[[modbus.devices.tags]]\nname = \"t{t}\"\naddress = \"4{:04}\"\ntype = \"f32\"\n",
                1 + 2 * t
            );
        }
    }
    ModbusConfig::from_toml(&toml, "bench.toml")
        .and_then(|c| c.validate())
        .expect("bench site is valid")
}

fn reports(round: u32, now: SystemTime) -> Vec<Report> {
    (0..DEVICES)
        .map(|d| Report {
            device: DeviceId(d),
            scan_class: Some(0),
            samples: (0..TAGS_PER_DEVICE)
                .map(|t| Sample {
                    tag: TagId(d * TAGS_PER_DEVICE + t),
                    value: Value::F32(20.0 + (round as f32) * 0.01 + t as f32),
                    quality: Quality::Good,
                    timestamp: now,
                })
                .collect(),
        })
        .collect()
}

/// Bytes of an MQTT 3.1.1 QoS 0 PUBLISH: fixed header, remaining length, topic, payload.
fn publish_len(topic: usize, payload: usize) -> (usize, usize) {
    let remaining = 2 + topic + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    let framing = 1 + length_bytes + 2;
    (framing, remaining + 1 + length_bytes)
}

fn main() {
    let now = SystemTime::now();
    let ms = infra::clock::millis(now);
    let topic = "spBv1.0/plant-1/DDATA/gateway-7/boiler-01";
    let site = Arc::new(site());
    let catalog = Catalog::new(Arc::clone(&site), TagAliases::positional(&site));

    // Bytes, one second's worth.
    let mut total = 0usize;
    let mut header_bytes = 0usize;
    let mut metric_bytes = 0usize;
    let mut framing_bytes = 0usize;
    let mut buffer = Vec::new();
    for report in reports(0, now) {
        let mut payload = catalog.ddata(&report, ms);
        payload.seq = Some(u64::from(Seq::new(200).value()));
        buffer.clear();
        payload.encode(&mut buffer).unwrap();
        let empty = Payload {
            metrics: Vec::new(),
            ..payload.clone()
        }
        .encode_to_vec()
        .unwrap()
        .len();
        let (framing, on_wire) = publish_len(topic.len(), buffer.len());
        total += on_wire;
        header_bytes += empty;
        metric_bytes += buffer.len() - empty;
        framing_bytes += framing + topic.len();
    }
    let samples = (DEVICES * TAGS_PER_DEVICE) as usize;
    let per_sample = total as f64 / samples as f64;
    let per_metric_overhead = metric_bytes as f64 / samples as f64 - RAW_VALUE_BYTES as f64;

    // CPU: build + encode 1,000 samples (reports are made outside the timed part).
    let inputs: Vec<Vec<Report>> = (0..16).map(|r| reports(r, now)).collect();
    let mut buffer = Vec::with_capacity(4096);
    let start = thread_cpu();
    for round in 0..ROUNDS {
        for report in &inputs[(round % 16) as usize] {
            let mut payload = catalog.ddata(report, ms);
            payload.seq = Some(u64::from(round % 256));
            buffer.clear();
            payload.encode(&mut buffer).unwrap();
            black_box(&buffer);
        }
    }
    let node = (thread_cpu() - start) / ROUNDS;

    // The limit: copy the raw value bytes of 1,000 samples.
    let mut raw = Vec::with_capacity(samples * RAW_VALUE_BYTES);
    let start = thread_cpu();
    for round in 0..ROUNDS {
        raw.clear();
        for report in &inputs[(round % 16) as usize] {
            for s in &report.samples {
                if let Value::F32(v) = s.value {
                    raw.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        black_box(&raw);
    }
    let limit = (thread_cpu() - start) / ROUNDS;

    println!("## edge session: DDATA wire cost, 1,000 Float tags changing at 1 Hz");
    println!("(10 devices x 100 tags, one DDATA per device per second, alias only, no datatype,");
    println!(" per-metric timestamp; topic `{topic}`)");
    println!();
    println!("| part | bytes/s | bytes per sample |");
    println!("|---|---|---|");
    let row = |name: &str, b: f64| println!("| {name} | {:.0} | {:.2} |", b, b / samples as f64);
    row("topic + MQTT framing", framing_bytes as f64);
    row("payload header (timestamp, seq)", header_bytes as f64);
    row(
        "per-metric overhead (alias, timestamp, tags, lengths)",
        per_metric_overhead * samples as f64,
    );
    row(
        "raw value bytes (limit)",
        (samples * RAW_VALUE_BYTES) as f64,
    );
    row("**total on the wire**", total as f64);
    println!();
    println!(
        "- bytes per reported sample: **{per_sample:.2}** vs {RAW_VALUE_BYTES} raw: **{:.2}x** the limit",
        per_sample / RAW_VALUE_BYTES as f64
    );
    println!(
        "- per day at 1 Hz: {:.1} MB on the wire (MQTT/Sparkplug only, before TCP/TLS)",
        total as f64 * 86_400.0 / 1e6
    );
    println!();
    println!("| CPU per 1,000 samples | time |");
    println!("|---|---|");
    println!(
        "| build + encode DDATA (node code) | {:.1} µs |",
        node.as_secs_f64() * 1e6
    );
    println!(
        "| copy raw value bytes (limit) | {:.1} µs |",
        limit.as_secs_f64() * 1e6
    );
    println!(
        "- ratio: {:.1}x the limit; at 1,000 samples/s that is {:.3} % of one core",
        node.as_secs_f64() / limit.as_secs_f64().max(1e-9),
        node.as_secs_f64() * 100.0
    );
}
