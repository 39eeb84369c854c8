//! Naive Sparkplug, run for real: a node that reads the reference plant over Modbus every
//! second and publishes every tag every second, as plain Sparkplug examples do. NBIRTH
//! (bdSeq, Node Control/Rebirth) and one DBIRTH per device (every tag by name, alias,
//! datatype, value) on each connect; then per second one DDATA per device with all of its
//! metrics by alias, each with its own timestamp and no datatype, uncompressed, QoS 0;
//! keep-alive 30 s like today's node; commands subscribed as a node does. Its bytes go
//! through its own counting relay to the same broker as the edge nodes'.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_node::simulator::reference::{ANALOGS, BITS, COUNTERS, DEVICES, TAGS_PER_DEVICE};
use rumqttc::{AsyncClient, Event, Incoming, LastWill, MqttOptions, PublishOptions, QoS};
use sparkplug::{BdSeq, Metric, Payload, Seq, Value};
use tokio_modbus::prelude::{Reader, Slave, SlaveContext};

/// The node id of the naive node.
pub const NODE: &str = "naive";

/// The first tag alias (after the node's own metrics), as the edge node numbers them.
const FIRST_ALIAS: u64 = 64;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One device's tag values as read in one scan.
struct Scan {
    analogs: Vec<f32>,
    counters: Vec<u32>,
    bits: Vec<bool>,
}

async fn read_device(ctx: &mut tokio_modbus::client::Context, unit: u8) -> Option<Scan> {
    ctx.set_slave(Slave(unit));
    let words = 2 * (ANALOGS + COUNTERS) as u16;
    let mut regs = ctx.read_input_registers(0, 125).await.ok()?.ok()?;
    regs.extend(
        ctx.read_input_registers(125, words - 125)
            .await
            .ok()?
            .ok()?,
    );
    let bits = ctx.read_discrete_inputs(0, BITS as u16).await.ok()?.ok()?;
    let pair = |i: usize| (u32::from(regs[2 * i]) << 16) | u32::from(regs[2 * i + 1]);
    Some(Scan {
        analogs: (0..ANALOGS).map(|a| f32::from_bits(pair(a))).collect(),
        counters: (0..COUNTERS).map(|c| pair(ANALOGS + c)).collect(),
        bits,
    })
}

/// The metrics of one device's scan: by name with datatype for a birth, by alias only
/// for data; every one with the scan's timestamp.
fn metrics(d: usize, scan: &Scan, ts: u64, birth: bool) -> Vec<Metric> {
    let mut out = Vec::with_capacity(TAGS_PER_DEVICE);
    let alias = |t: usize| FIRST_ALIAS + (d * TAGS_PER_DEVICE + t) as u64;
    let mut push = |t: usize, name: String, value: Value| {
        let m = if birth {
            Metric::new(name, value).with_alias(alias(t))
        } else {
            Metric::aliased(alias(t), value).without_datatype()
        };
        out.push(m.with_timestamp(ts));
    };
    for (a, &v) in scan.analogs.iter().enumerate() {
        push(a, format!("a{a:02}"), Value::Float(v));
    }
    for (c, &v) in scan.counters.iter().enumerate() {
        push(ANALOGS + c, format!("c{c}"), Value::UInt32(v));
    }
    for (b, &v) in scan.bits.iter().enumerate() {
        push(ANALOGS + COUNTERS + b, format!("s{b}"), Value::Boolean(v));
    }
    out
}

fn encode(p: &Payload) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(p.encoded_len());
    // Scalar metrics always encode.
    let _ = p.encode(&mut bytes);
    bytes
}

/// Runs the naive node against the broker at `relay` until `stop` is set.
pub async fn run(group: String, relay: SocketAddr, plant: SocketAddr, stop: Arc<AtomicBool>) {
    let bd_seq = BdSeq::new(0);
    let mut options = MqttOptions::new(format!("{group}-{NODE}"), ("127.0.0.1", relay.port()));
    options.set_keep_alive(30);
    options.set_max_packet_size(1 << 20, 1 << 20);
    options.set_last_will(LastWill::new(
        format!("spBv1.0/{group}/NDEATH/{NODE}"),
        encode(&Payload::new(now_ms()).with_metric(bd_seq.to_metric(now_ms()))),
        QoS::AtLeastOnce,
        false,
    ));
    let (client, mut eventloop) = AsyncClient::builder(options).capacity(4096).build();
    // Births go out again after every CONNACK.
    let connected = Arc::new(AtomicBool::new(false));
    let needs_birth = Arc::new(AtomicBool::new(false));
    let events = {
        let (connected, needs_birth, client, group) = (
            Arc::clone(&connected),
            Arc::clone(&needs_birth),
            client.clone(),
            group.clone(),
        );
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        for f in [
                            format!("spBv1.0/{group}/NCMD/{NODE}"),
                            format!("spBv1.0/{group}/DCMD/{NODE}/+"),
                        ] {
                            let _ = client.try_subscribe(f, QoS::AtLeastOnce);
                        }
                        connected.store(true, Ordering::Relaxed);
                        needs_birth.store(true, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        connected.store(false, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    };
    let Ok(mut ctx) = tokio_modbus::client::tcp::connect(plant).await else {
        eprintln!("naive node: plant unreachable at {plant}");
        events.abort();
        return;
    };
    let mut seq = Seq::ZERO;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let publish = |topic: String, p: &Payload| {
        let _ = client.try_publish(topic, encode(p), PublishOptions::new(QoS::AtMostOnce));
    };
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let mut scans = Vec::with_capacity(DEVICES);
        for d in 0..DEVICES {
            let scan = read_device(&mut ctx, (d + 1) as u8).await;
            scans.push((now_ms(), scan));
        }
        if !connected.load(Ordering::Relaxed) {
            continue;
        }
        let birth = needs_birth.swap(false, Ordering::Relaxed);
        if birth {
            seq = Seq::ZERO;
            let now = now_ms();
            let p = Payload::new(now)
                .with_seq(seq)
                .with_metric(bd_seq.to_metric(now))
                .with_metric(Metric::new("Node Control/Rebirth", false));
            seq = seq.next();
            publish(format!("spBv1.0/{group}/NBIRTH/{NODE}"), &p);
        }
        for (d, (ts, scan)) in scans.iter().enumerate() {
            let Some(scan) = scan else { continue };
            let kind = if birth { "DBIRTH" } else { "DDATA" };
            let mut p = Payload::new(*ts).with_seq(seq);
            seq = seq.next();
            p.metrics = metrics(d, scan, *ts, birth);
            publish(
                format!("spBv1.0/{group}/{kind}/{NODE}/line-{:02}", d + 1),
                &p,
            );
        }
    }
    let _ = client.try_disconnect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    events.abort();
}
