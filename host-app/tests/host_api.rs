//! The panel's API against a running host, logged in: the tree, trends, a write reaching
//! the edge node's DCMD topic audited under the logged-in user, a Rebirth request, the
//! live event stream, and bad input answered with clear errors.

use host_app::host::Host;
use host_app::tracker::{Liveness, NodeId};
use host_app_testkit::host::*;
use prost::Message as _;
use serde_json::json;
use sparkplug::{DataType, Metric, MetricValue, Value, pb};
use system_tests::http::Credentials;
use system_tests::mqtt::{Recorder, ScriptedEdge};
use system_tests::stack::now_ms;
use system_tests::wait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use web::Role;

/// [`born`] with `Pump` holding Setpoint (UInt16, alias 2) and Running (Boolean, alias 3).
async fn born_with_setpoint(dir: &std::path::Path) -> (Host, ScriptedEdge) {
    let pump = vec![
        Metric::new("Setpoint", 50u16).with_alias(2),
        Metric::new("Running", true).with_alias(3),
    ];
    born(dir, 0, pump).await
}

#[tokio::test]
async fn tree_shows_nodes_devices_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _edge) = born_with_setpoint(dir.path()).await;
    let (status, tree) = login(&host, "vera", Role::Viewer)
        .await
        .call_async("GET", "/api/tree", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(tree["host_id"], "scada");
    assert_eq!(tree["connected"], true);
    let node = &tree["groups"][0]["nodes"][0];
    assert_eq!(tree["groups"][0]["group"], "Plant");
    assert_eq!(node["node"], "Edge1");
    assert_eq!(node["state"], "online");
    let temp = node["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Temp")
        .unwrap();
    assert_eq!(temp["datatype"], "Double");
    assert_eq!(temp["units"], "degC");
    assert_eq!(temp["value"], 20.5);
    assert_eq!(temp["quality"], 192);
    let pump = &node["devices"][0];
    assert_eq!(pump["device"], "Pump");
    assert_eq!(pump["metrics"][0]["name"], "Setpoint");
    assert_eq!(pump["metrics"][0]["datatype"], "UInt16");
    host.stop().await.unwrap();
}

#[tokio::test]
async fn history_returns_the_downsampled_trend() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_setpoint(dir.path()).await;
    let t = now_ms() - 10_000;
    let samples: Vec<Metric> = (0..10)
        .map(|i| Metric::aliased(1, 10.0 * f64::from(i)).with_timestamp(t + i as u64 * 100))
        .collect();
    edge.ndata(samples).await;
    let shared = host.shared().clone();
    wait::until_async("NDATA applied", WAIT, || {
        shared.tracker().stats().messages >= 3
    })
    .await;
    host.flush().await.unwrap();
    let path = format!(
        "/api/history?metric=Plant/Edge1:Temp&from={t}&to={}&points=2",
        t + 1_000
    );
    let (status, trend) = admin(&host).await.call_async("GET", &path, None).await;
    assert_eq!(status, 200, "{trend}");
    let points = trend["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(points[0]["count"], 5);
    assert_eq!(points[0]["min"], 0.0);
    assert_eq!(points[0]["max"], 40.0);
    assert_eq!(points[1]["last"]["value"], 90.0);
    host.stop().await.unwrap();
}

#[tokio::test]
async fn write_reaches_the_dcmd_topic_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_setpoint(dir.path()).await;
    let alice = login(&host, "alice", Role::Operator).await;
    let body = json!({
        "group": "Plant", "node": "Edge1", "device": "Pump",
        "metric": "Setpoint", "value": 75
    });
    let (status, reply) = alice
        .call_async("POST", "/api/write", Some(&body.to_string()))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["message"], "DCMD");

    let cmd = edge.next_matching("/DCMD/").await;
    assert_eq!(cmd.topic, "spBv1.0/Plant/DCMD/Edge1/Pump");
    cmd.assert_command_form();
    let payload = cmd.sparkplug();
    assert_eq!(payload.metrics.len(), 1);
    let mut m = payload.metrics[0].clone();
    assert_eq!((m.name.as_deref(), m.alias), (None, Some(2)));
    m.resolve(DataType::UInt16).unwrap();
    assert_eq!(m.value, MetricValue::Value(Value::UInt16(75)));

    // A node metric goes out as an NCMD.
    let body = json!({
        "group": "Plant", "node": "Edge1", "metric": "Temp", "value": 19.5
    });
    let (status, node_reply) = alice
        .call_async("POST", "/api/write", Some(&body.to_string()))
        .await;
    assert_eq!(status, 200, "{node_reply}");
    assert_eq!(node_reply["message"], "NCMD");
    let cmd = edge.next_matching("/NCMD/").await;
    assert_eq!(cmd.topic, "spBv1.0/Plant/NCMD/Edge1");
    cmd.assert_command_form();
    let mut m = cmd.sparkplug().metrics[0].clone();
    assert_eq!((m.name.as_deref(), m.alias), (None, Some(1)));
    m.resolve(DataType::Double).unwrap();
    assert_eq!(m.value, MetricValue::Value(Value::Double(19.5)));

    let (status, audit) = alice.call_async("GET", "/api/audit?user=alice", None).await;
    assert_eq!(status, 200);
    let writes: Vec<&serde_json::Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "write")
        .collect();
    assert_eq!(writes.len(), 2, "{audit}");
    assert_eq!(writes[0]["metric"], "Plant/Edge1:Temp");
    let entry = writes[1];
    assert_eq!(entry["user"], "alice");
    assert_eq!(entry["node"], "Plant/Edge1/Pump");
    assert_eq!(entry["metric"], "Plant/Edge1/Pump:Setpoint");
    assert_eq!(entry["value"], 75);
    assert_eq!(entry["outcome"], "sent");
    assert_eq!(entry["id"], reply["audit_id"]);
    host.stop().await.unwrap();
}

/// The raw protobuf metric of a command as it crossed the broker (the typed model would
/// hide a name or datatype field that is present but empty).
fn wire_metric(bytes: &[u8]) -> pb::payload::Metric {
    let payload = pb::Payload::decode(bytes).expect("a Sparkplug protobuf payload");
    assert_eq!(payload.metrics.len(), 1);
    payload.metrics.into_iter().next().unwrap()
}

/// Sparkplug 3.0: a command to an aliased metric carries the alias only, no name
/// (tck-id-payloads-alias-data-cmd-requirement) and no datatype
/// (tck-id-payloads-metric-datatype-not-req); a metric born without alias goes by name.
#[tokio::test]
async fn aliased_writes_carry_the_alias_alone_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_setpoint(dir.path()).await;
    let mut wire = Recorder::start(broker_addr(&host).port(), "wire", "spBv1.0/+/+/Edge1/#").await;
    let bob = login(&host, "bob", Role::Operator).await;
    let write = |device: Option<&str>, metric: &str, value: serde_json::Value| {
        let mut body = json!({
            "group": "Plant", "node": "Edge1", "metric": metric, "value": value
        });
        if let Some(d) = device {
            body["device"] = json!(d);
        }
        let bob = bob.clone();
        async move {
            let (status, reply) = bob
                .call_async("POST", "/api/write", Some(&body.to_string()))
                .await;
            assert_eq!(status, 200, "{reply}");
        }
    };

    write(Some("Pump"), "Running", json!(false)).await;
    let dcmd = wire.next_kind("DCMD").await;
    assert_eq!(dcmd.topic, "spBv1.0/Plant/DCMD/Edge1/Pump");
    let m = wire_metric(&dcmd.payload);
    assert_eq!(m.alias, Some(3));
    assert_eq!(m.name, None, "DCMD by alias carries no name");
    assert_eq!(m.datatype, None, "DCMD by alias carries no datatype");
    assert_eq!(
        m.value,
        Some(pb::payload::metric::Value::BooleanValue(false))
    );

    write(None, "Temp", json!(21.25)).await;
    let ncmd = wire.next_kind("NCMD").await;
    assert_eq!(ncmd.topic, "spBv1.0/Plant/NCMD/Edge1");
    let m = wire_metric(&ncmd.payload);
    assert_eq!((m.alias, m.name, m.datatype), (Some(1), None, None));
    assert_eq!(
        m.value,
        Some(pb::payload::metric::Value::DoubleValue(21.25))
    );

    // The host's own Rebirth request names its metric: it has no alias.
    edge.ndata(vec![Metric::aliased(77, 1.0f64)]).await;
    let rebirth = wire.next_kind("NCMD").await;
    let m = wire_metric(&rebirth.payload);
    assert_eq!(m.name.as_deref(), Some("Node Control/Rebirth"));
    assert_eq!(m.alias, None);
    host.stop().await.unwrap();
}

#[tokio::test]
async fn bad_requests_are_refused_with_a_message_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _edge) = born_with_setpoint(dir.path()).await;
    let api = login(&host, "bob", Role::Operator).await;
    let write = |body: serde_json::Value| {
        let api = api.clone();
        async move {
            api.call_async("POST", "/api/write", Some(&body.to_string()))
                .await
        }
    };
    let base = json!({
        "group": "Plant", "node": "Edge1", "device": "Pump",
        "metric": "Setpoint", "value": 75
    });
    let with = |key: &str, value: serde_json::Value| {
        let mut b = base.clone();
        b[key] = value;
        b
    };

    let (status, e) = write(with("value", json!(70_000))).await;
    assert_eq!(status, 400);
    assert!(
        e["error"].as_str().unwrap().contains("does not fit UInt16"),
        "{e}"
    );
    let (status, e) = write(with("value", json!("fast"))).await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("integer"), "{e}");
    let (status, e) = write(with("metric", json!("Nope"))).await;
    assert_eq!(status, 404);
    assert!(e["error"].as_str().unwrap().contains("Nope"), "{e}");
    let (status, e) = write(with("device", json!("Valve"))).await;
    assert_eq!(status, 404);
    assert!(e["error"].as_str().unwrap().contains("Valve"), "{e}");
    let (status, e) = write(with("node", json!("Edge9"))).await;
    assert_eq!(status, 404);
    assert!(e["error"].as_str().unwrap().contains("Edge9"), "{e}");
    // The audited user is the caller: a request naming one is refused.
    let (status, e) = write(with("user", json!("mallory"))).await;
    assert_eq!(status, 400);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `user`"),
        "{e}"
    );
    let (status, e) = write(with("node", json!(""))).await;
    assert_eq!(status, 400);
    assert!(
        e["error"].as_str().unwrap().contains("`node` is empty"),
        "{e}"
    );
    let (status, e) = api
        .call_async("POST", "/api/write", Some("{not json"))
        .await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("request body"), "{e}");
    let (status, e) = write(json!({"group": "Plant"})).await;
    assert_eq!(status, 400);
    assert!(
        e["error"].as_str().unwrap().contains("missing field"),
        "{e}"
    );

    for (path, word) in [
        ("/api/history", "metric"),
        ("/api/history?metric=nocolon", "group/node"),
        ("/api/history?metric=Plant/Edge1:Temp&from=x", "from"),
        ("/api/history?metric=Plant/Edge1:Temp&from=5&to=5", "before"),
        ("/api/history?metric=Plant/Edge1:Temp&points=0", "points"),
        ("/api/audit?limit=-3", "limit"),
    ] {
        let (status, e) = api.call_async("GET", path, None).await;
        assert_eq!(status, 400, "{path}: {e}");
        assert!(e["error"].as_str().unwrap().contains(word), "{path}: {e}");
    }
    let (status, _) = api
        .call_async("GET", "/api/history?metric=Plant/Edge1:Nope", None)
        .await;
    assert_eq!(status, 404);

    // Refused writes are in the audit log too, under the caller.
    let (_, audit) = api.call_async("GET", "/api/audit?user=bob", None).await;
    let entries: Vec<&serde_json::Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "write")
        .collect();
    assert_eq!(entries.len(), 5, "{audit}");
    assert!(entries.iter().all(|e| e["outcome"] == "rejected"));
    host.stop().await.unwrap();
}

#[tokio::test]
async fn write_to_an_offline_device_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_setpoint(dir.path()).await;
    edge.ddeath("Pump").await;
    let shared = host.shared().clone();
    wait::until_async("device offline", WAIT, || {
        shared
            .tracker()
            .node(&NodeId::new("Plant", "Edge1"))
            .and_then(|n| n.device("Pump").map(|d| d.state == Liveness::Offline))
            .unwrap_or(false)
    })
    .await;
    let body = json!({
        "group": "Plant", "node": "Edge1", "device": "Pump",
        "metric": "Setpoint", "value": 1
    });
    let (status, e) = login(&host, "carol", Role::Operator)
        .await
        .call_async("POST", "/api/write", Some(&body.to_string()))
        .await;
    assert_eq!(status, 409);
    assert!(e["error"].as_str().unwrap().contains("offline"), "{e}");
    host.stop().await.unwrap();
}

#[tokio::test]
async fn events_stream_live_values_and_states() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_setpoint(dir.path()).await;
    let Credentials::Session { cookie, .. } = admin(&host).await.credentials().clone() else {
        unreachable!("a login holds a session")
    };
    let mut stream = tokio::net::TcpStream::connect(host.api_addr())
        .await
        .unwrap();
    stream
        .write_all(
            format!("GET /api/events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let shared = host.shared().clone();
    wait::until_async("listener subscribed", WAIT, || shared.has_listeners()).await;
    edge.ndata(vec![Metric::aliased(1, 33.5f64).with_timestamp(now_ms())])
        .await;
    edge.ddeath("Pump").await;
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !(text.contains("33.5") && text.contains("\"offline\"")) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream closed early: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("events in time");
    assert!(text.contains("text/event-stream"));
    assert!(text.contains(r#""type":"value""#), "{text}");
    assert!(text.contains(r#""metric":"Temp""#), "{text}");
    assert!(text.contains(r#""device":"Pump""#), "{text}");
    host.stop().await.unwrap();
}

#[tokio::test]
async fn rebirth_request_reaches_the_node_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_setpoint(dir.path()).await;
    let olga = login(&host, "olga", Role::Operator).await;
    let body = json!({ "group": "Plant", "node": "Edge1" });
    let (status, reply) = olga
        .call_async("POST", "/api/rebirth", Some(&body.to_string()))
        .await;
    assert_eq!(status, 200, "{reply}");
    let cmd = edge.next_matching("/NCMD/").await;
    assert_eq!(cmd.topic, "spBv1.0/Plant/NCMD/Edge1");
    let m = &cmd.sparkplug().metrics[0];
    assert_eq!(m.name.as_deref(), Some("Node Control/Rebirth"));
    assert_eq!(m.value, MetricValue::Value(Value::Boolean(true)));

    let unknown = json!({ "group": "Plant", "node": "Edge9" });
    let (status, e) = olga
        .call_async("POST", "/api/rebirth", Some(&unknown.to_string()))
        .await;
    assert_eq!(status, 404, "{e}");

    let (_, audit) = olga.call_async("GET", "/api/audit?user=olga", None).await;
    let rebirths: Vec<&serde_json::Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "rebirth")
        .collect();
    assert_eq!(rebirths.len(), 2, "{audit}");
    assert_eq!(rebirths[0]["outcome"], "rejected");
    assert_eq!(rebirths[1]["outcome"], "sent");
    assert_eq!(rebirths[1]["node"], "Plant/Edge1");
    assert_eq!(rebirths[1]["id"], reply["audit_id"]);
    host.stop().await.unwrap();
}

#[tokio::test]
async fn api_refuses_to_start_on_a_taken_port() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut config = host_config(dir.path(), None);
    config.api.listen = addr.to_string();
    let config = host_app::config::HostConfig::from_toml(&config.to_toml()).unwrap();
    let e = Host::start(&config).await.err().expect("port is taken");
    let message = e.to_string();
    assert!(message.contains("already in use"), "{message}");
    assert!(message.contains(&addr.to_string()), "{message}");
}
