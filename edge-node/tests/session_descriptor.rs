//! The Edge Node Descriptor (group_id + edge_node_id) is what names a node: two nodes
//! with the same edge_node_id in different groups, on one broker with their default
//! settings, are two sessions that do not disturb each other, each addressed by its own
//! descriptor.

use std::time::Duration;

use edge_node::{Config, EdgeNode};
use edge_node_testkit::session::*;
use sparkplug::{Metric, Payload};
use system_tests::mqtt::Recorder;
use system_tests::rmqtt;

/// An edge node `gw1` in `group` (the client id left to its default) with device `boiler`.
fn config(group: &str, broker: u16, modbus: u16) -> Config {
    load(&EdgeConfig::boiler(group, &[broker], modbus))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_an_edge_node_id_in_two_groups_are_two_undisturbed_sessions() {
    let broker = rmqtt::start();
    let plant = start_plant().await;
    let modbus = plant.local_addr().port();
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let a = EdgeNode::start(config("plant-a", broker, modbus)).unwrap();
    host.next_matching("NBIRTH of plant-a", |m| {
        m.topic == format!("spBv1.0/plant-a/NBIRTH/{NODE}")
    })
    .await;
    let b = EdgeNode::start(config("plant-b", broker, modbus)).unwrap();
    let nbirth_b = host
        .next_matching("NBIRTH of plant-b", |m| {
            m.topic == format!("spBv1.0/plant-b/NBIRTH/{NODE}")
        })
        .await;
    assert_eq!(nbirth_b.bd_seq(), 0);

    // Neither connection takes the other's over: no death, no second birth.
    let seen = host.drain_for(Duration::from_millis(1500)).await;
    let churn: Vec<&str> = seen
        .iter()
        .filter(|m| matches!(m.kind(), "NDEATH" | "NBIRTH"))
        .map(|m| m.topic.as_str())
        .collect();
    assert!(churn.is_empty(), "{churn:?}");

    // A Rebirth sent to plant-a's descriptor reaches plant-a only.
    let rebirth = Payload::new(1)
        .with_metric(Metric::new("Node Control/Rebirth", true))
        .encode_to_vec()
        .unwrap();
    host.publish(&format!("spBv1.0/plant-a/NCMD/{NODE}"), rebirth, false)
        .await;
    let again = host.next_kind("NBIRTH").await;
    assert_eq!(again.topic, format!("spBv1.0/plant-a/NBIRTH/{NODE}"));
    assert_eq!(again.bd_seq(), 0, "a Rebirth, not a reconnect");
    let seen = host.drain_for(Duration::from_millis(500)).await;
    assert!(
        seen.iter()
            .all(|m| !m.topic.starts_with("spBv1.0/plant-b/")),
        "plant-b answered a command for plant-a"
    );

    // Each leaves with an NDEATH under its own descriptor.
    b.shutdown().await.unwrap();
    let ndeath = host.next_kind("NDEATH").await;
    assert_eq!(ndeath.topic, format!("spBv1.0/plant-b/NDEATH/{NODE}"));
    a.shutdown().await.unwrap();
    let ndeath = host.next_kind("NDEATH").await;
    assert_eq!(ndeath.topic, format!("spBv1.0/plant-a/NDEATH/{NODE}"));
    plant.shutdown().await;
}
