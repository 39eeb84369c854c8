//! The host with independent parts: an edge node written with pysparkplug (paho-mqtt)
//! on our embedded broker, and the host working through Mosquitto instead of it.

mod common;

use common::*;
use host_app::history::{MetricKey, Quality, SampleValue, TimeRange};
use host_app::host::Host;
use host_app::tracker::{Liveness, NodeId};
use sparkplug::{Metric, PropertySet, State};

async fn stored_values(host: &Host, key: &MetricKey) -> Vec<SampleValue> {
    host.flush().await.unwrap();
    let store = host.shared().store.clone();
    let id = store
        .resolve_metric(key)
        .unwrap()
        .expect("metric registered");
    store
        .range(id, TimeRange::new(0, u64::MAX >> 2), 1_000)
        .unwrap()
        .into_iter()
        .map(|s| s.value)
        .collect()
}

#[tokio::test]
async fn host_ingests_a_pysparkplug_edge_node() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), None).await;
    let addr = broker_addr(&host);
    let out = tokio::task::spawn_blocking(move || {
        system_tests::python_command("pysparkplug_edge_node.py")
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .output()
    })
    .await
    .unwrap()
    .expect("python runs");
    assert!(
        out.status.success(),
        "pysparkplug edge node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["data"]["Power"], 2.5);

    let shared = host.shared().clone();
    let node = NodeId::new("Interop", "PyEdge");
    wait_until("pysparkplug data applied", || {
        shared
            .tracker()
            .node(&node)
            .and_then(|n| n.device("Meter"))
            .and_then(|d| d.metrics.get("Power"))
            .is_some_and(|m| m.value == Some(SampleValue::F64(2.5)))
    })
    .await;
    // pysparkplug 0.6.1 re-arms its will before it disconnects, so the NDEATH it sends
    // carries the next session's bdSeq (1), not its NBIRTH's (0): a Primary Host must
    // ignore such a death, and the node stays online until its real death.
    wait_until("mismatched NDEATH seen", || {
        shared.tracker().stats().stale_deaths_ignored == 1
    })
    .await;
    {
        let tracker = shared.tracker();
        let n = tracker.node(&node).unwrap();
        assert_eq!(n.state, Liveness::Online);
        assert_eq!(n.bd_seq, Some(sparkplug::BdSeq::new(0)));
    }

    let (status, tree) = http(host.api_addr(), "GET", "/api/tree", None).await;
    assert_eq!(status, 200);
    let group = tree["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "Interop")
        .unwrap();
    let edge = &group["nodes"][0];
    assert_eq!(edge["node"], "PyEdge");
    assert_eq!(edge["state"], "online");
    let metric = |list: &serde_json::Value, name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in tree"))
    };
    let temp = metric(&edge["metrics"], "Temperature");
    assert_eq!(temp["datatype"], "Double");
    assert_eq!(temp["value"], 22.75);
    assert_eq!(temp["quality"], Quality::GOOD.0);
    assert_eq!(metric(&edge["metrics"], "Count")["value"], 7);
    assert_eq!(metric(&edge["metrics"], "Label")["value"], "line-1");
    let meter = &edge["devices"][0];
    assert_eq!(meter["device"], "Meter");
    let power = metric(&meter["metrics"], "Power");
    assert_eq!(power["datatype"], "Float");
    assert_eq!(power["value"], 2.5);
    assert_eq!(metric(&meter["metrics"], "On")["value"], true);

    let temps = stored_values(&host, &MetricKey::node("Interop", "PyEdge", "Temperature")).await;
    assert_eq!(
        temps[..2],
        [SampleValue::F64(21.5), SampleValue::F64(22.75)]
    );
    let power = stored_values(
        &host,
        &MetricKey::device("Interop", "PyEdge", "Meter", "Power"),
    )
    .await;
    assert_eq!(power[..2], [SampleValue::F64(1.25), SampleValue::F64(2.5)]);
    host.stop().await.unwrap();
}

#[tokio::test]
async fn host_works_through_mosquitto() {
    let mosquitto = system_tests::Mosquitto::start();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], mosquitto.port()).into();
    let dir = tempfile::tempdir().unwrap();
    let mut edge = ScriptedEdge::connect(addr, "Site", "Edge", 2).await;
    let host = start_host(dir.path(), Some(addr)).await;
    let online = edge.next_matching("STATE/scada").await.state();
    assert!(online.online);

    edge.nbirth(vec![
        Metric::new("Flow", 3.5f64)
            .with_alias(1)
            .with_properties(PropertySet::new().with_eng_unit("m3/h")),
    ])
    .await;
    edge.dbirth("Valve", vec![Metric::new("Open", false).with_alias(2)])
        .await;
    edge.ddata(
        "Valve",
        vec![Metric::aliased(2, true).with_timestamp(now() + 5)],
    )
    .await;
    let shared = host.shared().clone();
    let node = NodeId::new("Site", "Edge");
    wait_until("DDATA through mosquitto", || {
        shared
            .tracker()
            .node(&node)
            .and_then(|n| n.device("Valve"))
            .and_then(|d| d.metrics.get("Open"))
            .is_some_and(|m| m.value == Some(SampleValue::Bool(true)))
    })
    .await;
    let open = stored_values(&host, &MetricKey::device("Site", "Edge", "Valve", "Open")).await;
    assert_eq!(open, [SampleValue::Bool(false), SampleValue::Bool(true)]);

    // A write goes out through Mosquitto as a DCMD.
    let body = serde_json::json!({
        "group": "Site", "node": "Edge", "device": "Valve",
        "metric": "Open", "value": false, "user": "ops"
    });
    let (status, reply) = http(
        host.api_addr(),
        "POST",
        "/api/write",
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let cmd = edge.next_matching("/DCMD/").await;
    assert_eq!(cmd.topic, "spBv1.0/Site/DCMD/Edge/Valve");

    // The edge node's connection drops: Mosquitto sends its will, the NDEATH.
    edge.kill();
    wait_until("NDEATH will through mosquitto", || {
        shared
            .tracker()
            .node(&node)
            .is_some_and(|n| n.state == Liveness::Offline)
    })
    .await;

    let mut watcher = ScriptedEdge::connect(addr, "Site", "Watcher", 0).await;
    host.stop().await.unwrap();
    let last = loop {
        let r = watcher.next_matching("STATE/scada").await;
        if !r.state().online {
            break r;
        }
    };
    assert_eq!(last.state(), State::offline(online.timestamp));
}
