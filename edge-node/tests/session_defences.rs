//! What others publish cannot break the node's link, against Mosquitto: a 20 KiB retained
//! STATE on the primary host's topic (JSON or garbage) and a 20 KiB NCMD are logged and
//! ignored, with no reconnect (the bdSeq stays, no NDEATH), and data keeps flowing.

use std::time::Duration;

use edge_node::EdgeNode;
use edge_node_testkit::session::*;
use rumqttc::{PublishOptions, QoS};
use sparkplug::{Metric, Payload, State};
use system_tests::Mosquitto;
use system_tests::mqtt::Recorder;
use system_tests::mqtt::client;

const STATE_TOPIC: &str = "spBv1.0/STATE/scada";
const BIG: usize = 20 * 1024;

/// Publishes one message too large for rumqttc's default 10 KiB limit, QoS 1.
async fn publish_big(port: u16, topic: &str, payload: Vec<u8>, retain: bool) {
    let mut options = client::options("forger", ([127, 0, 0, 1], port).into());
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (mqtt, mut eventloop) = client::connect(options).await;
    mqtt.publish(
        topic,
        payload,
        PublishOptions::new(QoS::AtLeastOnce).retain(retain),
    )
    .await
    .unwrap();
    client::wait_puback(&mut eventloop).await;
    client::disconnect(mqtt, eventloop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_kib_retained_state_or_ncmd_does_not_disconnect_the_node() {
    let broker = Mosquitto::start();
    let plant = start_plant().await;
    // Not `spBv1.0/#`: the recorders' own clients keep rumqttc's 10 KiB limit.
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/plant/NBIRTH/gw1").await;
    let mut deaths = Recorder::start(broker.port(), "deaths", "spBv1.0/plant/NDEATH/gw1").await;
    let mut data = Recorder::start(broker.port(), "data", "spBv1.0/plant/DDATA/gw1/#").await;
    let online = State {
        online: true,
        timestamp: 1_000,
    };
    host.publish(STATE_TOPIC, online.to_json().into_bytes(), true)
        .await;
    let node = EdgeNode::start(load(
        &boiler(&[broker.port()], plant.local_addr().port()).primary_host("scada"),
    ))
    .unwrap();
    let nbirth = host.next_kind("NBIRTH").await;

    // A JSON STATE offline with a later timestamp, padded past 20 KiB; then garbage.
    let padded = format!(
        r#"{{"online":false,"timestamp":2000,"pad":"{}"}}"#,
        "x".repeat(BIG)
    );
    publish_big(broker.port(), STATE_TOPIC, padded.into_bytes(), true).await;
    publish_big(broker.port(), STATE_TOPIC, vec![0xff; BIG], true).await;
    // An NCMD as large, not a Sparkplug payload.
    publish_big(broker.port(), &topic("NCMD", None), vec![0x0a; BIG], false).await;

    // Still the same session: data flows, no NDEATH, and a Rebirth keeps the bdSeq (a
    // reconnect would have taken the next one).
    plant.bank(1).unwrap().set_holding_register(0, 42).unwrap();
    let ddata = data.next_kind("DDATA").await;
    assert_eq!(ddata.topic, topic("DDATA", Some(DEVICE)));
    let rebirth = Payload::new(1).with_metric(Metric::new("Node Control/Rebirth", true));
    host.publish(
        &topic("NCMD", None),
        rebirth.encode_to_vec().unwrap(),
        false,
    )
    .await;
    let again = host.next_kind("NBIRTH").await;
    assert_eq!(again.bd_seq(), nbirth.bd_seq(), "no reconnect in between");
    let after = host.drain_for(Duration::from_millis(1_500)).await;
    assert!(
        after.is_empty(),
        "no reconnect afterwards either: {after:?}"
    );
    let died = deaths.drain_for(Duration::from_millis(100)).await;
    assert!(died.is_empty(), "no NDEATH: {died:?}");
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_rate_out_of_range_or_of_the_wrong_type_is_refused() {
    let broker = Mosquitto::start();
    let plant = start_plant().await;
    let mut births = Recorder::start(broker.port(), "births", "spBv1.0/plant/NBIRTH/gw1").await;
    let mut ndata = Recorder::start(broker.port(), "ndata", "spBv1.0/plant/NDATA/gw1").await;
    let node = EdgeNode::start(load(&boiler(&[broker.port()], plant.local_addr().port()))).unwrap();
    let nbirth = births.next_kind("NBIRTH").await.sparkplug();
    let scan_rate = alias_in(&nbirth, "Node Control/Scan Rate");

    let ncmd = |metric: Metric| Payload::new(1).with_metric(metric).encode_to_vec().unwrap();
    let refused = [
        Metric::new("Node Control/Scan Rate", 5i64),
        Metric::new("Node Control/Scan Rate", -1_000i64),
        Metric::new("Node Control/Scan Rate", 0i64),
        Metric::new("Node Control/Scan Rate", 86_400_001i64),
        Metric::new("Node Control/Scan Rate", 500.0f64),
        Metric::new("Node Control/Scan Rate", "500"),
        Metric::aliased(scan_rate, true),
    ];
    for metric in refused {
        births
            .publish(&topic("NCMD", None), ncmd(metric), false)
            .await;
    }
    births
        .publish(
            &topic("NCMD", None),
            ncmd(Metric::new("Node Control/Scan Rate", 250i64)),
            false,
        )
        .await;
    // The first change the node reports is the one in range: the others did nothing.
    let first = ndata.next_kind("NDATA").await.sparkplug();
    let reported = first
        .metrics
        .iter()
        .find(|m| m.alias == Some(scan_rate))
        .expect("Scan Rate in the NDATA")
        .clone();
    let mut typed = reported;
    typed.resolve(sparkplug::DataType::Int64).unwrap();
    assert_eq!(typed.typed_value(), Some(&sparkplug::Value::Int64(250)));
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}
