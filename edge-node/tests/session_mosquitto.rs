//! The Sparkplug session against Mosquitto (Debian package): QoS on the wire, the will,
//! the primary host's STATE (retained, so Mosquitto), failover between servers.

use std::time::Duration;

use edge_node::EdgeNode;
use edge_node_testkit::session::*;
use rumqttc::QoS;
use sparkplug::{Metric, Payload, State};
use system_tests::Mosquitto;
use system_tests::linksim::LinkSim;
use system_tests::mqtt::Recorder;

const STATE_TOPIC: &str = "spBv1.0/STATE/scada";

fn state(online: bool, timestamp: u64) -> Vec<u8> {
    State { online, timestamp }.to_json().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_and_data_are_qos0_the_will_qos1_and_subscriptions_come_first() {
    let broker = Mosquitto::start();
    let link = LinkSim::start(([127, 0, 0, 1], broker.port()).into())
        .await
        .unwrap();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let node = EdgeNode::start(load(&boiler(
        &[link.addr().port()],
        plant.local_addr().port(),
    )))
    .unwrap();
    let nbirth = host.next_kind("NBIRTH").await;
    assert_eq!(nbirth.qos, QoS::AtMostOnce);
    assert!(!nbirth.retain);
    // The subscriptions exist before the birth: a command sent right after the
    // NBIRTH is acted on (Rebirth answered by a second NBIRTH).
    let dbirth = host.next_kind("DBIRTH").await;
    assert_eq!(dbirth.qos, QoS::AtMostOnce);
    assert!(!dbirth.retain);
    let rebirth = Payload::new(1).with_metric(Metric::new("Node Control/Rebirth", true));
    host.publish(
        &topic("NCMD", None),
        rebirth.encode_to_vec().unwrap(),
        false,
    )
    .await;
    let again = host.next_kind("NBIRTH").await;
    assert_eq!(again.bd_seq(), nbirth.bd_seq());
    plant.bank(1).unwrap().set_holding_register(0, 9).unwrap();
    let ddata = host.next_kind("DDATA").await;
    assert_eq!(ddata.qos, QoS::AtMostOnce);
    assert!(!ddata.retain);

    link.cut();
    let will = host.next_kind("NDEATH").await;
    // The broker saw the link die: the node may connect again.
    link.restore();
    assert_eq!(will.qos, QoS::AtLeastOnce);
    assert!(!will.retain);
    assert_eq!(will.bd_seq(), nbirth.bd_seq());
    let next = host.next_kind("NBIRTH").await;
    assert_eq!(next.bd_seq(), nbirth.bd_seq() + 1);

    node.shutdown().await.unwrap();
    let goodbye = host.next_kind("NDEATH").await;
    assert_eq!(goodbye.qos, QoS::AtLeastOnce, "explicit NDEATH at QoS 1");
    assert_eq!(goodbye.bd_seq(), next.bd_seq());
    // DISCONNECT followed: the will is not also delivered.
    let after = host.drain_for(Duration::from_millis(500)).await;
    assert!(after.iter().all(|m| m.kind() != "NDEATH"), "{after:?}");
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_wait_for_the_primary_host_and_its_offline_state_ends_the_session() {
    let broker = Mosquitto::start();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/+/+/gw1/#").await;
    let node = EdgeNode::start(load(
        &boiler(&[broker.port()], plant.local_addr().port()).primary_host("scada"),
    ))
    .unwrap();
    let early = host.drain_for(Duration::from_millis(800)).await;
    assert!(
        early.is_empty(),
        "no birth before the host is online: {early:?}"
    );

    host.publish(STATE_TOPIC, state(true, 1_000), true).await;
    let nbirth = host.next_kind("NBIRTH").await;
    host.next_kind("DBIRTH").await;

    // An offline STATE older than the online one is ignored.
    host.publish(STATE_TOPIC, state(false, 999), true).await;
    let quiet = host.drain_for(Duration::from_millis(800)).await;
    assert!(quiet.iter().all(|m| m.kind() != "NDEATH"), "{quiet:?}");

    // A newer offline STATE: NDEATH, disconnect, next server (here the same one, after
    // backoff), where the retained offline STATE sends it on again without births.
    host.publish(STATE_TOPIC, state(false, 2_000), true).await;
    let ndeath = host.next_kind("NDEATH").await;
    assert_eq!(ndeath.bd_seq(), nbirth.bd_seq());
    let waiting = host.drain_for(Duration::from_millis(800)).await;
    assert!(
        waiting.iter().all(|m| m.kind() != "NBIRTH"),
        "no birth while the host is offline: {waiting:?}"
    );
    let walked = waiting.iter().filter(|m| m.kind() == "NDEATH").count();
    assert!(
        walked >= 1,
        "the node keeps walking the server list: {waiting:?}"
    );

    host.publish(STATE_TOPIC, state(true, 3_000), true).await;
    let reborn = host.next_kind("NBIRTH").await;
    assert!(
        reborn.bd_seq() > nbirth.bd_seq(),
        "a new connect, a new bdSeq"
    );
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_fails_over_to_the_second_server_and_moves_on_next_server() {
    let mut first = Mosquitto::start();
    let second = Mosquitto::start();
    let plant = start_plant().await;
    let mut on_first = Recorder::start(first.port(), "host-a", "spBv1.0/#").await;
    let mut on_second = Recorder::start(second.port(), "host-b", "spBv1.0/#").await;
    let node = EdgeNode::start(load(&boiler(
        &[first.port(), second.port()],
        plant.local_addr().port(),
    )))
    .unwrap();
    let a = on_first.next_kind("NBIRTH").await;
    assert_eq!(a.bd_seq(), 0);

    // Next Server: explicit NDEATH here, births on the second server.
    let next = Payload::new(1).with_metric(Metric::new("Node Control/Next Server", true));
    on_first
        .publish(&topic("NCMD", None), next.encode_to_vec().unwrap(), false)
        .await;
    let ndeath = on_first.next_kind("NDEATH").await;
    assert_eq!(ndeath.bd_seq(), 0);
    let b = on_second.next_kind("NBIRTH").await;
    assert_eq!(b.bd_seq(), 1);
    on_second.next_kind("DBIRTH").await;

    // Back to the first with Next Server, then the first dies: failover to the second.
    on_second
        .publish(&topic("NCMD", None), next.encode_to_vec().unwrap(), false)
        .await;
    let back = on_first.next_kind("NBIRTH").await;
    assert_eq!(back.bd_seq(), 2);
    drop(on_first);
    first.kill();
    let failover = on_second.next_kind("NBIRTH").await;
    assert_eq!(failover.bd_seq(), 3);
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_walks_past_a_server_where_the_primary_host_is_offline() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("edge_node=debug")
        .try_init();
    let first = Mosquitto::start();
    let second = Mosquitto::start();
    let plant = start_plant().await;
    let mut on_first = Recorder::start(first.port(), "host-a", "spBv1.0/#").await;
    let mut on_second = Recorder::start(second.port(), "host-b", "spBv1.0/#").await;
    on_first
        .publish(STATE_TOPIC, state(false, 5_000), true)
        .await;
    on_second
        .publish(STATE_TOPIC, state(true, 5_000), true)
        .await;
    on_first.next().await;
    on_second.next().await;
    let node = EdgeNode::start(load(
        &boiler(&[first.port(), second.port()], plant.local_addr().port()).primary_host("scada"),
    ))
    .unwrap();
    let nbirth = on_second.next_kind("NBIRTH").await;
    assert_eq!(
        nbirth.bd_seq(),
        1,
        "bdSeq 0 went to the first server's CONNECT"
    );
    let seen_first = on_first.drain_for(Duration::from_millis(300)).await;
    assert!(
        seen_first.iter().all(|m| m.kind() != "NBIRTH"),
        "no birth where the host is offline: {seen_first:?}"
    );
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_command_is_not_acted_on_at_subscribe_or_at_liveness_probes() {
    let broker = Mosquitto::start();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let rebirth = Payload::new(1).with_metric(Metric::new("Node Control/Rebirth", true));
    let rebirth = rebirth.encode_to_vec().unwrap();
    // Left by a misbehaving tool before the node came up.
    host.publish(&topic("NCMD", None), rebirth.clone(), true)
        .await;
    let mut config = direct_config(broker.port(), &plant);
    // A probe (a re-subscribe, which re-delivers retained messages) every 500 ms.
    config.mqtt.keep_alive = Duration::from_secs(1);
    let node = EdgeNode::start(config).unwrap();
    host.next_kind("NBIRTH").await;
    // Twelve changes 250 ms apart keep the node publishing across several probes.
    let bank = plant.bank(1).unwrap();
    for value in 1..=12u16 {
        bank.set_holding_register(0, value).unwrap();
        host.next_kind("DDATA").await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let seen = host.drain_for(Duration::from_millis(300)).await;
    assert!(seen.iter().all(|m| m.kind() != "NBIRTH"), "{seen:?}");
    // The same command sent live is acted on.
    host.publish(&topic("NCMD", None), rebirth, false).await;
    host.next_kind("NBIRTH").await;
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}
