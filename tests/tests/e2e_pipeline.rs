//! The plant's values through the whole product: plant-sim -> edge-node -> broker ->
//! host-app -> history and API, and an operator write back down to a register.

use rumqttc::QoS;
use serde_json::{Value as Json, json};
use system_tests::Mosquitto;
use system_tests::http::Api;
use system_tests::mqtt::Watcher;
use system_tests::stack::{Broker, GROUP, NODE, Stack, Tree, WAIT, now_ms};
use system_tests::wait;

/// The metrics the test edge node is configured with, per device.
const CONFIGURED: [(&str, &[&str]); 3] = [
    (
        "tank-farm",
        &["Tank 1/Level", "Tank 1/Inflow", "Tank 1/Start Level"],
    ),
    ("compressor", &["Run Seconds", "Suction Pressure"]),
    ("power-meter", &["Voltage L1"]),
];

/// Waits until the node and every device are online with a value for every metric.
fn wait_all_online(stack: &mut Stack) -> Tree {
    stack.wait_tree("node and devices online with values", |tree| {
        tree.node_state() == Some("online")
            && CONFIGURED.iter().all(|(device, names)| {
                tree.device_state(device) == Some("online")
                    && names.iter().all(|name| {
                        tree.metric(GROUP, NODE, Some(device), name)
                            .is_some_and(|m| !m["value"].is_null())
                    })
            })
    })
}

fn value(tree: &Tree, device: &str, name: &str) -> f64 {
    let metric = tree
        .metric(GROUP, NODE, Some(device), name)
        .unwrap_or_else(|| panic!("{device}/{name} not in the tree: {}", tree.0));
    metric["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("{device}/{name} has no number: {metric}"))
}

/// Checks names, qualities, units, timestamps and the values the built-in plant gives.
fn check_live_values(tree: &Tree, started: u64) {
    let now = now_ms();
    for (device, names) in CONFIGURED {
        let metrics = tree.device(GROUP, NODE, device).expect("device in tree")["metrics"]
            .as_array()
            .expect("metrics list")
            .clone();
        let mut got: Vec<&str> = metrics.iter().filter_map(|m| m["name"].as_str()).collect();
        got.sort_unstable();
        let mut want = names.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "{device}: metric names as configured");
        for m in &metrics {
            assert_eq!(m["quality"], 192, "{device}: GOOD quality: {m}");
            let ts = m["timestamp"].as_u64().expect("timestamp");
            assert!(
                (started..=now).contains(&ts),
                "{device}: timestamp {ts} outside the run {started}..={now}: {m}"
            );
        }
    }
    let level = tree.metric(GROUP, NODE, Some("tank-farm"), "Tank 1/Level");
    assert_eq!(level.expect("level")["units"], "m");
    assert_eq!(level.expect("level")["datatype"], "Float");
    // The built-in plant: valve open (180 m3/h in), start level 4 m, 230 V +- 3, 3 bar +- 0.2.
    assert_eq!(value(tree, "tank-farm", "Tank 1/Inflow"), 180.0);
    assert_eq!(value(tree, "tank-farm", "Tank 1/Start Level"), 4.0);
    let level = value(tree, "tank-farm", "Tank 1/Level");
    assert!((0.0..=5.0).contains(&level), "tank level {level} m");
    let volts = value(tree, "power-meter", "Voltage L1");
    assert!((226.9..=233.1).contains(&volts), "voltage {volts} V");
    let suction = value(tree, "compressor", "Suction Pressure");
    assert!((2.79..=3.21).contains(&suction), "suction {suction} bar");
}

/// The stored trend of a counter: at least `n` GOOD, live samples with rising values.
fn wait_rising_history(api: &Api, metric: &str, started: u64, n: usize) -> Vec<Json> {
    wait::until(
        &format!("{n} rising samples of {metric} in history"),
        WAIT,
        || {
            let history = api.history(metric, started, now_ms() + 1);
            let points = history["points"].as_array().cloned().unwrap_or_default();
            (points.len() >= n).then_some(points)
        },
    )
}

fn check_history(points: &[Json], started: u64) {
    let now = now_ms();
    let mut previous: Option<u64> = None;
    for p in points {
        let last = &p["last"];
        assert_eq!(last["quality"], 192, "GOOD in history: {p}");
        assert_eq!(last["is_historical"], false, "live sample: {p}");
        let ts = last["ts"].as_u64().expect("ts");
        assert!((started..=now).contains(&ts), "sample time {ts}: {p}");
        let v = last["value"].as_u64().expect("u32 counter value");
        if let Some(before) = previous {
            assert!(v > before, "Run Seconds counts up: {before} then {v}");
        }
        previous = Some(v);
    }
}

#[test]
fn plant_values_reach_the_host_tree_and_history() {
    let started = now_ms();
    let mut stack = Stack::start();
    let api = stack.api();

    let tree = wait_all_online(&mut stack);
    check_live_values(&tree, started);
    assert_eq!(tree.0["host_id"], "e2e-host");
    assert_eq!(tree.0["connected"], true);

    let points = wait_rising_history(&api, "e2e/gw-1/compressor:Run Seconds", started, 3);
    check_history(&points, started);
    // The live stream carries the same values as they change.
    let event = api
        .wait_event(WAIT, |e| {
            e["type"] == "value" && e["device"] == "tank-farm" && e["metric"] == "Tank 1/Level"
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(event["group"], GROUP);
    assert_eq!(event["node"], NODE);
    assert_eq!(event["quality"], 192);
    assert_eq!(event["is_historical"], false);
    let level = event["value"].as_f64().expect("level value");
    assert!((0.0..=5.0).contains(&level), "tank level {level} m");

    let level = api.history("e2e/gw-1/tank-farm:Tank 1/Level", started, now_ms() + 1);
    assert!(
        !level["points"].as_array().expect("points").is_empty(),
        "tank level in history: {level}"
    );
}

/// Writes 4.5 m to the tank's start level through the API and follows it: the DCMD on
/// the wire, the register in the plant, the audit entry and the value back in the tree.
/// Both brokers deliver at the lower of publish and subscription QoS.
fn write_reaches_the_register_is_audited_and_comes_back(stack: &mut Stack) {
    let api = stack.api();
    wait_all_online(stack);
    // Default start level 4.0 m: f32 0x40800000.
    assert_eq!(stack.plant.get(1, "hr", 1, 2), [0x4080, 0x0000]);

    let watcher = Watcher::start(
        stack.host.broker().port(),
        "e2e-watch",
        "spBv1.0/e2e/DCMD/gw-1/#",
    );
    let sent_after = now_ms();
    let request = json!({
        "group": GROUP,
        "node": NODE,
        "device": "tank-farm",
        "metric": "Tank 1/Start Level",
        "value": 4.5,
    });
    let (status, answer) = api.post("/api/write", &request);
    assert_eq!(status, 200, "write accepted: {answer}");
    assert_eq!(answer["outcome"], "sent");
    assert_eq!(answer["message"], "DCMD");
    let audit_id = answer["audit_id"].as_i64().expect("audit id");

    let dcmd = watcher.next_matching("the DCMD", |m| m.kind() == "DCMD");
    assert_eq!(dcmd.topic, "spBv1.0/e2e/DCMD/gw-1/tank-farm");
    assert_eq!(dcmd.qos, QoS::AtMostOnce, "DCMD published at QoS 0");
    assert!(!dcmd.retain, "DCMD not retained");
    let payload = dcmd.sparkplug();
    assert_eq!(payload.seq, None, "a DCMD carries no seq");
    let sent = payload.timestamp.expect("DCMD timestamp");
    assert!(
        (sent_after..=now_ms()).contains(&sent),
        "DCMD sent at {sent}"
    );
    assert_eq!(payload.metrics.len(), 1, "one metric written: {payload:?}");
    let mut metric = payload.metrics[0].clone();
    // Sparkplug 3.0: a command to an aliased metric carries the alias alone.
    let born = api.tree();
    let alias = born
        .metric(GROUP, NODE, Some("tank-farm"), "Tank 1/Start Level")
        .and_then(|m| m["alias"].as_u64());
    assert!(alias.is_some(), "the birth aliases Tank 1/Start Level");
    assert_eq!((metric.name.as_deref(), metric.alias), (None, alias));
    assert_eq!(metric.datatype, None, "no datatype by alias");
    metric
        .resolve(sparkplug::DataType::Float)
        .expect("a Float value");
    assert_eq!(
        metric.typed_value().cloned(),
        Some(sparkplug::Value::Float(4.5)),
        "the birth's datatype (Float) with the written value"
    );

    // 4.5 as f32 is 0x40900000.
    let plant = &mut stack.plant;
    wait::until("4.5 m in holding registers 1..2 of unit 1", WAIT, || {
        (plant.get(1, "hr", 1, 2) == [0x4090, 0x0000]).then_some(())
    });

    let audit = api.get("/api/audit").expect("audit");
    let entry = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["id"] == audit_id)
        .unwrap_or_else(|| panic!("audit entry {audit_id} in {audit}"))
        .clone();
    assert_eq!(
        entry["user"],
        system_tests::stack::ADMIN,
        "the logged-in user"
    );
    assert_eq!(entry["metric"], "e2e/gw-1/tank-farm:Tank 1/Start Level");
    assert_eq!(entry["value"], 4.5);
    assert_eq!(entry["outcome"], "sent");

    stack.wait_tree("4.5 back in the tree", |tree| {
        tree.metric(GROUP, NODE, Some("tank-farm"), "Tank 1/Start Level")
            .is_some_and(|m| m["value"] == 4.5)
    });

    // A metric the edge node never declared is refused at the API and never sent.
    let (status, answer) = api.post(
        "/api/write",
        &json!({
            "group": GROUP, "node": NODE, "device": "tank-farm",
            "metric": "No Such Tag", "value": 1,
        }),
    );
    assert_eq!(status, 404, "unknown metric: {answer}");
    let after = watcher.drain_for(std::time::Duration::from_millis(300));
    assert!(
        after.is_empty(),
        "nothing published for a refused write: {after:?}"
    );
    assert_eq!(stack.plant.get(1, "hr", 1, 2), [0x4090, 0x0000]);
}

#[test]
fn api_write_reaches_the_register_is_audited_and_comes_back() {
    let mut stack = Stack::start();
    write_reaches_the_register_is_audited_and_comes_back(&mut stack);
}

#[test]
fn values_flow_through_mosquitto() {
    let started = now_ms();
    let mosquitto = Mosquitto::start();
    let mut stack = Stack::start_with(Broker::External {
        port: mosquitto.port(),
    });
    let api = stack.api();

    let tree = wait_all_online(&mut stack);
    check_live_values(&tree, started);
    let points = wait_rising_history(&api, "e2e/gw-1/compressor:Run Seconds", started, 3);
    check_history(&points, started);
    write_reaches_the_register_is_audited_and_comes_back(&mut stack);
}
