//! The plant's values through the whole product: plant-sim -> edge-node -> broker ->
//! host-app -> history and API, and an operator write back down to a register.

use serde_json::{Value as Json, json};
use system_tests::Mosquitto;
use system_tests::stack::{Api, Broker, GROUP, NODE, Stack, Tree, WAIT, now_ms, wait_until};

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
    wait_until(
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
    let level = api.history("e2e/gw-1/tank-farm:Tank 1/Level", started, now_ms() + 1);
    assert!(
        !level["points"].as_array().expect("points").is_empty(),
        "tank level in history: {level}"
    );
}

#[test]
fn api_write_reaches_the_register_is_audited_and_comes_back() {
    let mut stack = Stack::start();
    let api = stack.api();
    wait_all_online(&mut stack);
    let plant = &mut stack.plant;
    // Default start level 4.0 m: f32 0x40800000.
    assert_eq!(plant.get(1, "hr", 1, 2), [0x4080, 0x0000]);

    let request = json!({
        "group": GROUP,
        "node": NODE,
        "device": "tank-farm",
        "metric": "Tank 1/Start Level",
        "value": 4.5,
        "user": "operator-e2e",
    });
    let (status, answer) = api.post("/api/write", &request);
    assert_eq!(status, 200, "write accepted: {answer}");
    assert_eq!(answer["outcome"], "sent");
    assert_eq!(answer["message"], "DCMD");
    let audit_id = answer["audit_id"].as_i64().expect("audit id");

    // 4.5 as f32 is 0x40900000.
    wait_until("4.5 m in holding registers 1..2 of unit 1", WAIT, || {
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
    assert_eq!(entry["user"], "operator-e2e");
    assert_eq!(entry["metric"], "e2e/gw-1/tank-farm:Tank 1/Start Level");
    assert_eq!(entry["value"], 4.5);
    assert_eq!(entry["outcome"], "sent");

    wait_until("4.5 back in the tree", WAIT, || {
        let tree = api.tree();
        (value(&tree, "tank-farm", "Tank 1/Start Level") == 4.5).then_some(())
    });

    // A write the edge node cannot place is refused at the API and audited as such.
    let (status, answer) = api.post(
        "/api/write",
        &json!({
            "group": GROUP, "node": NODE, "device": "tank-farm",
            "metric": "No Such Tag", "value": 1, "user": "operator-e2e",
        }),
    );
    assert_eq!(status, 404, "unknown metric: {answer}");
    assert_eq!(plant.get(1, "hr", 1, 2), [0x4090, 0x0000]);
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
}
