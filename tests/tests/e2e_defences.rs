//! Forged Sparkplug traffic against the real binaries (host with its embedded broker, edge
//! node, plant simulator): a forged STATE offline for the host is answered and the edge
//! node is not locked out; a flood of large forged NDATA keeps the host's memory under its
//! documented bound, and the host still serves the real edge node afterwards.
//!
//! The forger stands for a client whose account was stolen or is misconfigured: the
//! broker's access rules (tested in host-app's `broker_acl*` tests) would refuse it, so
//! here anonymous clients may publish anything, and what is tested is the host and edge
//! node themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{PublishOptions, QoS};
use sparkplug::{Metric, Payload, State};
use system_tests::free_port;
use system_tests::mqtt::{Watcher, client};
use system_tests::stack::{
    self, Broker, EdgeNode, GROUP, HOST_ID, HostApp, NODE, Plant, Stack, Tree, now_ms,
};

/// The host's resident memory bound under forged traffic with the default limits of
/// `[sparkplug]` (README, "Forged traffic"): its embedded broker included.
const HOST_RSS_BOUND_KIB: u64 = 128 * 1024;
/// Size of each forged NDATA, just under the embedded broker's 256 KiB packet limit.
const FORGED_LEN: usize = 260_000;

fn state_topic() -> String {
    format!("spBv1.0/STATE/{HOST_ID}")
}

/// The STATE a message carries; `None` for anything else.
fn state(m: &system_tests::mqtt::Message) -> Option<State> {
    State::parse(&m.payload).ok()
}

fn all_online(tree: &Tree) -> bool {
    tree.node_state() == Some("online")
        && ["tank-farm", "compressor", "power-meter"]
            .iter()
            .all(|d| tree.device_state(d) == Some("online"))
}

/// `VmRSS` or `VmHWM` of a process, KiB; `None` once it is gone.
fn try_memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn memory_kib(pid: u32, field: &str) -> u64 {
    try_memory_kib(pid, field).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The stack of the end-to-end tests, its broker open to anonymous publishers.
fn open_stack(tweak: impl FnOnce(&mut system_tests::config::host::HostConfig)) -> Stack {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::Embedded { port: free_port() };
    let http_port = free_port();
    let mut config = stack::host_config(dir.path(), broker, http_port);
    if let Some(embedded) = config.broker.embedded.as_mut() {
        embedded.anonymous = Some(system_tests::config::host::Anonymous::everything());
    }
    tweak(&mut config);
    let config = system_tests::config::write(&config, dir.path(), "host-app.toml");
    let plant = Plant::start();
    let host = HostApp::start_config(config, broker, http_port);
    let edge = EdgeNode::start(dir.path(), broker.port(), plant.port());
    Stack {
        plant,
        host,
        edge,
        dir,
    }
}

#[test]
fn a_forged_state_offline_is_answered_and_the_edge_node_keeps_publishing() {
    let mut stack = open_stack(|_| {});
    stack.wait_tree("node and devices online", all_online);
    let port = stack.host.broker().port();
    let states = Watcher::start(port, "e2e-states", &state_topic());
    let first = states.next_matching("the host's STATE online", |m| {
        state(m).is_some_and(|s| s.online)
    });
    let data = Watcher::start(port, "e2e-data", &format!("spBv1.0/{GROUP}/+/{NODE}/#"));

    let forged = state(&first).unwrap().timestamp + 30_000;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(client::publish_once(
        ([127, 0, 0, 1], port).into(),
        "forger",
        &state_topic(),
        State::offline(forged).to_json().as_bytes(),
        QoS::AtLeastOnce,
        true,
    ));
    states.next_matching("the forged STATE", |m| {
        state(m) == Some(State::offline(forged))
    });
    let answer = states.next_matching("the host's answer", |m| {
        state(m).is_some_and(|s| s.online && s.timestamp > forged)
    });

    // The retained STATE is the host's newest, online.
    let newcomer = Watcher::start(port, "e2e-newcomer", &state_topic());
    let retained = newcomer.next();
    assert!(retained.retain);
    assert_eq!(state(&retained), state(&answer));

    // The edge node left on the forged STATE, came back on the answer and publishes.
    let reborn = data.next_matching("NBIRTH after the forged STATE", |m| m.kind() == "NBIRTH");
    assert_eq!(reborn.topic, format!("spBv1.0/{GROUP}/NBIRTH/{NODE}"));
    let since = now_ms();
    data.next_matching("DDATA after the rebirth", |m| m.kind() == "DDATA");
    let tree = stack.wait_tree("node and devices online again", all_online);
    assert!(tree.node(GROUP, NODE).is_some());
    assert!(now_ms() >= since);
}

/// An NDATA body of about [`FORGED_LEN`] bytes of tiny metrics (the most memory once
/// decoded); a `seq` and timestamp are appended per message (protobuf merges them).
fn forged_body() -> Vec<u8> {
    // One alias for all: every metric encodes to the same size.
    let metrics = |n: usize| {
        let mut p = Payload::new(1);
        p.timestamp = None;
        p.metrics = vec![Metric::aliased(10_000, 1i32); n];
        p.encode_to_vec().unwrap()
    };
    let each = metrics(2).len() - metrics(1).len();
    let body = metrics((FORGED_LEN - 64) / each);
    assert!(body.len() <= FORGED_LEN && body.len() > FORGED_LEN - 1_000);
    body
}

fn forged(body: &[u8], seq: u64) -> Vec<u8> {
    let mut bytes = body.to_vec();
    let mut tail = Payload::new(now_ms());
    tail.seq = Some(seq);
    tail.encode(&mut bytes).unwrap();
    bytes
}

#[test]
fn a_thousand_forged_260_kb_ndata_keep_the_host_under_its_memory_bound() {
    // A long reorder timeout: only the byte bound keeps held messages from piling up.
    let mut stack = open_stack(|config| config.sparkplug.reorder_timeout_ms = Some(30_000));
    stack.wait_tree("node and devices online", all_online);
    let pid = stack.host.pid();
    let port = stack.host.broker().port();
    let before = memory_kib(pid, "VmRSS");

    // Sample the host's RSS while the flood runs.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (done, peak) = (Arc::clone(&done), Arc::clone(&peak));
        std::thread::spawn(move || {
            for _ in 0..20_000 {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                let Some(rss) = try_memory_kib(pid, "VmRSS") else {
                    return;
                };
                peak.fetch_max(rss, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // The host's Rebirth request to each never-born node tells it has taken that one in:
    // the flood goes at the host's pace, so every message reaches it.
    let rebirths = Watcher::start(port, "e2e-ncmd", &format!("spBv1.0/{GROUP}/NCMD/+"));
    let body = forged_body();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut options = client::options("forger", ([127, 0, 0, 1], port).into());
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (mqtt, mut eventloop) = client::connect(options).await;
        for i in 0..1_000u64 {
            // Half to nodes that never sent a birth, half to the real node with a bogus seq.
            let (node, seq) = if i % 2 == 0 {
                (format!("forged-{i}"), 0)
            } else {
                (NODE.to_owned(), (i * 7 + 100) % 256)
            };
            let topic = format!("spBv1.0/{GROUP}/NDATA/{node}");
            mqtt.publish(
                topic,
                forged(&body, seq),
                PublishOptions::new(QoS::AtLeastOnce),
            )
            .await
            .unwrap();
            client::wait_puback(&mut eventloop).await;
            if i % 2 == 0 {
                let suffix = format!("/{node}");
                rebirths.next_matching(&format!("the Rebirth request to {node}"), |m| {
                    m.topic.ends_with(&suffix)
                });
            }
        }
        client::disconnect(mqtt, eventloop).await;
    });

    // The host still serves the real edge node: online again, its values moving.
    let tree = stack.wait_tree("node and devices online after the flood", all_online);
    assert!(tree.bd_seq().is_some());
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed).max(memory_kib(pid, "VmRSS"));
    let hwm = memory_kib(pid, "VmHWM");
    eprintln!("host RSS: {before} KiB before, peak {peak} KiB sampled, VmHWM {hwm} KiB");
    assert!(
        hwm < HOST_RSS_BOUND_KIB,
        "host peak RSS {hwm} KiB over the bound {HOST_RSS_BOUND_KIB} KiB (before: {before} KiB)\n{}",
        stack.dump()
    );
    let output = stack.host.output().join("\n");
    assert!(
        output.contains("sparkplug.reorder_buffer_bytes"),
        "the reorder buffer bound was reached and logged:\n{output}"
    );
}
