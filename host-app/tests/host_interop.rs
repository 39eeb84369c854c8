//! The host with independent parts: an edge node written with pysparkplug (paho-mqtt)
//! on our embedded broker, and the host working through Mosquitto instead of it.

use host_app::history::{MetricKey, Quality, SampleValue};
use host_app::host::Host;
use host_app::tracker::{Liveness, NodeId};
use host_app_testkit::host::*;
use sparkplug::{Metric, PropertySet, State};
use system_tests::mqtt::ScriptedEdge;
use system_tests::stack::now_ms;
use system_tests::wait;

async fn stored_values(host: &Host, key: &MetricKey) -> Vec<SampleValue> {
    stored(host, key, 1_000)
        .await
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
    wait::until_async("pysparkplug data applied", WAIT, || {
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
    wait::until_async("mismatched NDEATH seen", WAIT, || {
        shared.tracker().stats().stale_deaths_ignored == 1
    })
    .await;
    {
        let tracker = shared.tracker();
        let n = tracker.node(&node).unwrap();
        assert_eq!(n.state, Liveness::Online);
        assert_eq!(n.bd_seq, Some(sparkplug::BdSeq::new(0)));
    }

    let (status, tree) = admin(&host)
        .await
        .call_async("GET", "/api/tree", None)
        .await;
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
    let birth = edge.next_matching("STATE/scada").await;
    let online = birth.state();
    assert!(online.online);
    assert_eq!(birth.qos, rumqttc::QoS::AtLeastOnce, "STATE birth at QoS 1");

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
        vec![Metric::aliased(2, true).with_timestamp(now_ms() + 5)],
    )
    .await;
    let shared = host.shared().clone();
    let node = NodeId::new("Site", "Edge");
    wait::until_async("DDATA through mosquitto", WAIT, || {
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
        "metric": "Open", "value": false
    });
    let (status, reply) = admin(&host)
        .await
        .call_async("POST", "/api/write", Some(&body.to_string()))
        .await;
    assert_eq!(status, 200, "{reply}");
    let cmd = edge.next_matching("/DCMD/").await;
    assert_eq!(cmd.topic, "spBv1.0/Site/DCMD/Edge/Valve");
    cmd.assert_command_form();
    // Subscribed at QoS 1; Mosquitto delivers at the publisher's QoS when lower.
    assert_eq!(cmd.qos, rumqttc::QoS::AtMostOnce);
    let m = &cmd.sparkplug().metrics[0];
    assert_eq!(
        (m.name.as_deref(), m.alias),
        (None, Some(2)),
        "by alias alone"
    );

    // The edge node's connection drops: Mosquitto sends its will, the NDEATH.
    edge.kill();
    wait::until_async("NDEATH will through mosquitto", WAIT, || {
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
    // Subscribed at QoS 1 through Mosquitto: the death went out at QoS 1, and retained.
    assert_eq!(last.qos, rumqttc::QoS::AtLeastOnce);
    let mut newcomer = ScriptedEdge::connect(addr, "Site", "Newcomer", 0).await;
    let retained = newcomer.next_matching("STATE/scada").await;
    assert!(retained.retain);
    assert_eq!(retained.qos, rumqttc::QoS::AtLeastOnce);
    assert_eq!(retained.state(), State::offline(online.timestamp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_broker_marks_everything_stale_and_the_host_is_born_again() {
    let mut mosquitto = system_tests::Mosquitto::start();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], mosquitto.port()).into();
    let dir = tempfile::tempdir().unwrap();
    let mut edge = ScriptedEdge::connect(addr, "Site", "Edge", 0).await;
    let host = start_host(dir.path(), Some(addr)).await;
    let first = edge.next_matching("STATE/scada").await.state();
    edge.nbirth(vec![Metric::new("Flow", 3.5f64).with_alias(1)])
        .await;
    edge.dbirth("Valve", vec![Metric::new("Open", true).with_alias(2)])
        .await;
    let shared = host.shared().clone();
    let node = NodeId::new("Site", "Edge");
    wait::until_async("births tracked", WAIT, || {
        shared
            .tracker()
            .node(&node)
            .and_then(|n| n.device("Valve").map(|d| d.state == Liveness::Online))
            .unwrap_or(false)
    })
    .await;

    tokio::task::block_in_place(|| mosquitto.kill());
    wait::until_async("host sees the loss", WAIT, || !shared.is_connected()).await;
    {
        let tracker = shared.tracker();
        let n = tracker.node(&node).unwrap();
        assert_eq!(n.state, Liveness::Offline);
        assert_eq!(n.device("Valve").unwrap().state, Liveness::Offline);
        assert_eq!(n.metrics.get("Flow").unwrap().quality, Quality::STALE);
        let open = n.device("Valve").unwrap().metrics.get("Open").unwrap();
        assert_eq!(open.quality, Quality::STALE);
    }
    host.flush().await.unwrap();
    let store = host.shared().store.clone();
    let id = store
        .resolve_metric(&MetricKey::node("Site", "Edge", "Flow"))
        .unwrap()
        .unwrap();
    let latest = store.latest(&[id]).unwrap();
    assert_eq!(latest[0].quality, Quality::STALE, "staleness is in history");

    tokio::task::block_in_place(|| mosquitto.restart());
    wait::until_async("host connected again", WAIT, || shared.is_connected()).await;
    let mut watcher = ScriptedEdge::connect(addr, "Site", "Watcher", 0).await;
    let again = watcher.next_matching("STATE/scada").await;
    let again = again.state();
    assert!(
        again.online,
        "a new session publishes the STATE birth again"
    );
    assert!(again.timestamp >= first.timestamp);
    host.stop().await.unwrap();
}
