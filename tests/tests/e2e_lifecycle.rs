//! Deaths and births across the product: an edge node killed and restarted, a Modbus
//! unit going silent and coming back, a lost message leading to one Rebirth, and a host
//! restart the edge node follows.

use std::time::Duration;

use rumqttc::QoS;
use system_tests::Mosquitto;
use system_tests::mqtt::Watcher;
use system_tests::mqtt_proxy::DroppingProxy;
use system_tests::stack::{Broker, GROUP, NODE, Stack, Tree, WAIT, now_ms};
use system_tests::wait;

const DEVICES: [&str; 3] = ["tank-farm", "compressor", "power-meter"];
const GOOD: i64 = 192;
const STALE: i64 = 500;

fn all_good(tree: &Tree, device: &str) -> bool {
    let qualities = tree.device_qualities(device);
    tree.device_state(device) == Some("online")
        && !qualities.is_empty()
        && qualities.iter().all(|&q| q == GOOD)
}

fn all_stale(tree: &Tree, device: &str) -> bool {
    let qualities = tree.device_qualities(device);
    tree.device_state(device) == Some("offline")
        && !qualities.is_empty()
        && qualities.iter().all(|&q| q == STALE)
}

fn wait_all_online(stack: &mut Stack) -> Tree {
    stack.wait_tree("node and every device online, GOOD", |tree| {
        tree.node_state() == Some("online") && DEVICES.iter().all(|d| all_good(tree, d))
    })
}

#[test]
fn killed_edge_node_goes_stale_by_its_will_and_rebirths_with_the_next_bdseq() {
    let mut stack = Stack::start();
    let tree = wait_all_online(&mut stack);
    let bd_seq = tree.bd_seq().expect("bdSeq from the NBIRTH");
    let watcher = Watcher::start(stack.host.broker().port(), "e2e-watch", "spBv1.0/e2e/#");

    stack.edge.kill();
    // The broker publishes the will: NDEATH with the birth's bdSeq.
    let ndeath = watcher.next_matching("NDEATH (the will)", |m| m.kind() == "NDEATH");
    assert_eq!(ndeath.topic, format!("spBv1.0/{GROUP}/NDEATH/{NODE}"));
    assert_eq!(
        ndeath.bd_seq(),
        bd_seq,
        "the will carries the NBIRTH's bdSeq"
    );
    let tree = stack.wait_tree("node and devices offline, STALE", |tree| {
        tree.node_state() == Some("offline") && DEVICES.iter().all(|d| all_stale(tree, d))
    });
    let node_qualities: Vec<i64> = tree.node(GROUP, NODE).expect("node")["metrics"]
        .as_array()
        .expect("node metrics")
        .iter()
        .filter_map(|m| m["quality"].as_i64())
        .collect();
    assert!(
        !node_qualities.is_empty() && node_qualities.iter().all(|&q| q == STALE),
        "the node's own metrics are STALE: {node_qualities:?}"
    );
    assert_eq!(tree.bd_seq(), Some(bd_seq));

    stack.edge.restart();
    let nbirth = watcher.next_matching("NBIRTH after restart", |m| m.kind() == "NBIRTH");
    let next = (bd_seq + 1) % 256;
    assert_eq!(nbirth.bd_seq(), next, "a new session has the next bdSeq");
    let tree = wait_all_online(&mut stack);
    assert_eq!(tree.bd_seq(), Some(next));
}

#[test]
fn silent_unit_gets_ddeath_then_dbirth_when_it_answers_again() {
    let mut stack = Stack::start();
    wait_all_online(&mut stack);
    let watcher = Watcher::start(
        stack.host.broker().port(),
        "e2e-watch",
        "spBv1.0/e2e/+/gw-1/compressor",
    );

    stack.plant.command("silent 2 on");
    watcher.next_matching("DDEATH of the compressor", |m| m.kind() == "DDEATH");
    let tree = stack.wait_tree("compressor offline, STALE", |tree| {
        all_stale(tree, "compressor")
    });
    for device in ["tank-farm", "power-meter"] {
        assert!(all_good(&tree, device), "{device} stays online: {}", tree.0);
    }
    assert_eq!(tree.node_state(), Some("online"));

    stack.plant.command("silent 2 off");
    let dbirth = watcher.next_matching("DBIRTH of the compressor", |m| m.kind() == "DBIRTH");
    let names: Vec<String> = dbirth
        .sparkplug()
        .metrics
        .iter()
        .filter_map(|m| m.name.clone())
        .collect();
    assert!(
        names.contains(&"Run Seconds".to_owned()) && names.contains(&"Suction Pressure".to_owned()),
        "the DBIRTH names every compressor metric: {names:?}"
    );
    wait_all_online(&mut stack);
}

#[test]
fn lost_data_message_leads_to_exactly_one_rebirth() {
    // Mosquitto delivers at the lower of the publish and subscription QoS, so the
    // watcher sees the QoS the host published its NCMD at.
    let mosquitto = Mosquitto::start();
    let broker_port = mosquitto.port();
    let proxy = DroppingProxy::start(broker_port);
    let mut stack = Stack::start_via(Broker::External { port: broker_port }, proxy.port());
    let tree = wait_all_online(&mut stack);
    let bd_seq = tree.bd_seq().expect("bdSeq");
    let watcher = Watcher::start(broker_port, "e2e-watch", "spBv1.0/e2e/#");

    let started = now_ms();
    proxy.drop_next("/DDATA/");
    wait::until("one DDATA dropped on its way to the broker", WAIT, || {
        (proxy.dropped() == 1).then_some(())
    });

    let ncmd = watcher.next_matching("NCMD after the gap", |m| m.kind() == "NCMD");
    assert_eq!(ncmd.topic, format!("spBv1.0/{GROUP}/NCMD/{NODE}"));
    // Subscribed at QoS 1: a QoS 0 delivery means it was published at QoS 0.
    assert_eq!(ncmd.qos, QoS::AtMostOnce, "NCMD at QoS 0");
    assert!(!ncmd.retain, "NCMD not retained");
    let payload = ncmd.sparkplug();
    assert_eq!(payload.seq, None, "an NCMD carries no seq");
    let sent = payload.timestamp.expect("NCMD timestamp");
    assert!((started..=now_ms()).contains(&sent), "NCMD sent at {sent}");
    let rebirth = payload
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("Node Control/Rebirth"))
        .and_then(|m| m.typed_value().cloned());
    assert_eq!(
        rebirth,
        Some(sparkplug::Value::Boolean(true)),
        "NCMD Rebirth"
    );

    let nbirth = watcher.next_matching("NBIRTH answering the Rebirth", |m| m.kind() == "NBIRTH");
    assert_eq!(
        nbirth.bd_seq(),
        bd_seq,
        "a Rebirth keeps the session's bdSeq"
    );
    assert_eq!(nbirth.sparkplug().seq, Some(0), "births restart seq at 0");
    let mut dbirths = Vec::new();
    while dbirths.len() < DEVICES.len() {
        let m = watcher.next_matching("DBIRTHs after the NBIRTH", |m| {
            m.kind() == "DBIRTH" || m.kind() == "NCMD"
        });
        assert_ne!(m.kind(), "NCMD", "a second Rebirth request: {}", m.topic);
        dbirths.push(m.topic);
    }
    for device in DEVICES {
        assert!(
            dbirths.iter().any(|t| t.ends_with(&format!("/{device}"))),
            "DBIRTH of {device} in {dbirths:?}"
        );
    }

    // Longer than the host's reorder timeout and Rebirth interval: nothing more is asked.
    let later = watcher.drain_for(Duration::from_millis(2500));
    let more: Vec<&str> = later
        .iter()
        .filter(|m| m.kind() == "NCMD")
        .map(|m| m.topic.as_str())
        .collect();
    assert!(
        more.is_empty(),
        "only one Rebirth request, then also {more:?}"
    );
    assert!(
        later.iter().any(|m| m.kind() == "DDATA"),
        "data flows again after the births"
    );
    wait_all_online(&mut stack);
}

#[test]
fn host_restart_is_followed_by_the_edge_node_and_history_continues() {
    let started = now_ms();
    let mut stack = Stack::start();
    let tree = wait_all_online(&mut stack);
    let bd_seq = tree.bd_seq().expect("bdSeq");

    stack.host.stop();
    // The host's STATE offline: the edge node ends its session with an NDEATH.
    stack.wait_for_edge_log(&["primary host STATE", "online=false"]);
    stack.wait_for_edge_log(&["publishing NDEATH and disconnecting"]);

    let restarted = now_ms();
    stack.host.restart();
    stack.wait_for_edge_log(&["primary host STATE", "online=true"]);
    let tree = wait_all_online(&mut stack);
    let new_bd_seq = tree.bd_seq().expect("bdSeq after the restart");
    assert_ne!(new_bd_seq, bd_seq, "a new MQTT session has a new bdSeq");

    // History kept the samples from before the restart and has new ones after it.
    let api = stack.api();
    let metric = "e2e/gw-1/compressor:Run Seconds";
    let points = wait::until("Run Seconds samples after the restart", WAIT, || {
        let history = api.history(metric, started, now_ms() + 1);
        let points = history["points"].as_array().cloned().unwrap_or_default();
        let after = points
            .iter()
            .filter(|p| p["last"]["ts"].as_u64().is_some_and(|ts| ts >= restarted))
            .count();
        (after >= 2).then_some(points)
    });
    assert!(
        points
            .iter()
            .any(|p| p["last"]["ts"].as_u64().is_some_and(|ts| ts < restarted)),
        "samples from before the restart are kept: {points:?}"
    );
    let last = points.last().expect("points");
    assert_eq!(last["last"]["quality"], GOOD);
}
