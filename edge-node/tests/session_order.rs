//! Order on the wire, against rmqtt in process: every message after NBIRTH carries the
//! seq one above the last (NDATA included, across 255 -> 0), and the live metrics of a
//! birth or data message are listed oldest first.

use std::time::Duration;

use edge_node::EdgeNode;
use edge_node_testkit::session::*;
use sparkplug::{Metric, Payload};
use system_tests::mqtt::{Message, Recorder};
use system_tests::rmqtt;

fn ncmd(metric: Metric) -> Vec<u8> {
    Payload::new(1).with_metric(metric).encode_to_vec().unwrap()
}

/// Checks that `seen` carries the seq one above `last` (255 wraps to 0) and returns it.
fn next_seq(last: &mut Option<u64>, seen: &Message) -> u64 {
    let seq = seen
        .seq()
        .unwrap_or_else(|| panic!("{} without seq", seen.topic));
    assert!(seq <= 255, "{}: seq {seq}", seen.topic);
    if let Some(previous) = *last {
        assert_eq!(
            seq,
            (previous + 1) % 256,
            "{}: seq after {previous}",
            seen.topic
        );
    }
    *last = Some(seq);
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndata_seq_is_one_above_the_last_message_and_wraps_255_to_0() {
    let broker = rmqtt::start();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let mut config = direct_config(broker, &plant);
    // A fast scan so the run to seq 255 takes a moment; node metrics are checked only
    // when a Scan Rate command asks (the period stays 60 s), so each NDATA is placed.
    config.site.scan_classes[0].period = Duration::from_millis(5);
    config.sparkplug.scan_rate_min_ms = 1;
    let node = EdgeNode::start(config).unwrap();
    let nbirth = host.next_kind("NBIRTH").await;
    let mut last = None;
    assert_eq!(next_seq(&mut last, &nbirth), 0);

    // DDATA up to seq 100 and up to 255, with a Scan Rate command after each: its NDATA
    // must come next with seq 101, then 0.
    let scan_rate = ncmd(Metric::new("Node Control/Scan Rate", 5i64));
    let bank = plant.bank(1).unwrap();
    let mut ndata = Vec::new();
    let mut value = 0u16;
    for stop in [100, 255] {
        while last != Some(stop) {
            value += 1;
            assert!(value < 1000, "seq {stop} not reached");
            bank.set_holding_register(0, value).unwrap();
            // The DDATA of this value, or a DBIRTH (the device reborn after the Scan
            // Rate restart) that already holds it.
            loop {
                let seen = host.next_from_edge_node().await;
                next_seq(&mut last, &seen);
                if matches!(seen.kind(), "DDATA" | "DBIRTH") {
                    break;
                }
            }
        }
        host.publish(&topic("NCMD", None), scan_rate.clone(), false)
            .await;
        let seen = host.next_from_edge_node().await;
        assert_eq!(seen.kind(), "NDATA", "{}", seen.topic);
        ndata.push(next_seq(&mut last, &seen));
    }
    assert_eq!(ndata, [101, 0]);
    // The device is born again after the restart, and the run goes on from 0.
    let dbirth = host.next_kind("DBIRTH").await;
    assert_eq!(next_seq(&mut last, &dbirth), 1);
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

/// The timestamps of the live (not historical) metrics, in list order.
fn live_timestamps(payload: &Payload) -> Vec<Option<u64>> {
    payload
        .metrics
        .iter()
        .filter(|m| !m.is_historical)
        .map(|m| m.timestamp)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_metrics_are_listed_oldest_first_in_births_and_data() {
    let broker = rmqtt::start();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let node = EdgeNode::start(direct_config(broker, &plant)).unwrap();
    let mut seen = vec![
        host.next_kind("NBIRTH").await,
        host.next_kind("DBIRTH").await,
    ];
    // `setpoint`, first of the device's tags, gets a value newer than the others'.
    plant.bank(1).unwrap().set_holding_register(0, 7).unwrap();
    seen.push(host.next_kind("DDATA").await);
    host.publish(
        &topic("NCMD", None),
        ncmd(Metric::new("Node Control/Rebirth", true)),
        false,
    )
    .await;
    seen.push(host.next_kind("NBIRTH").await);
    let reborn = host.next_kind("DBIRTH").await;
    seen.push(reborn.clone());
    host.publish(
        &topic("NCMD", None),
        ncmd(Metric::new("Node Control/Scan Rate", 100i64)),
        false,
    )
    .await;
    seen.push(host.next_kind("NDATA").await);

    // In the tags' own order the reborn device would list its newest value first.
    let d = reborn.sparkplug();
    let setpoint = d.metric("setpoint").unwrap().timestamp.unwrap();
    let temperature = d.metric("Process/temperature").unwrap().timestamp.unwrap();
    assert!(setpoint > temperature, "{setpoint} vs {temperature}");
    assert_eq!(
        d.metrics.last().unwrap().name.as_deref(),
        Some("setpoint"),
        "the newest value comes last"
    );
    for message in &seen {
        let timestamps = live_timestamps(&message.sparkplug());
        assert!(
            timestamps.iter().all(Option::is_some),
            "{}: {timestamps:?}",
            message.topic
        );
        assert!(timestamps.is_sorted(), "{}: {timestamps:?}", message.topic);
    }
    let kinds: Vec<&str> = seen.iter().map(Message::kind).collect();
    assert_eq!(
        kinds,
        ["NBIRTH", "DBIRTH", "DDATA", "NBIRTH", "DBIRTH", "NDATA"]
    );
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}
