//! The `edge-node` binary: `check-config` and a run ended by SIGTERM (NDEATH, then exit 0).

mod session_support;

use std::process::Command;
use std::time::Duration;

use rumqttc::QoS;
use session_support::*;
use system_tests::Mosquitto;
use system_tests::config::edge::{Device, ScanClass, Server, Store, Tag};
use system_tests::mqtt::Recorder;
use system_tests::process::Proc;

const BINARY: &str = env!("CARGO_BIN_EXE_edge-node");

fn node(mqtt_port: u16, modbus_port: u16) -> EdgeConfig {
    let mut config = EdgeConfig::new(GROUP, NODE);
    config.mqtt.servers = vec![Server::url(format!("mqtt://127.0.0.1:{mqtt_port}"))];
    config.modbus.scan_classes = vec![ScanClass::new("fast", 100.0)];
    let setpoint = Tag::numbered("setpoint", "40001", "u16");
    config.modbus.devices = vec![Device {
        unit_id: None,
        ..Device::tcp(DEVICE, modbus_port, 1).tag(setpoint)
    }];
    config
}

#[test]
fn check_config_accepts_a_good_file_and_lists_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let mut config = node(1883, 502);
    config.store = Some(Store {
        path: "store.sqlite".into(),
        batch_size: Some(100),
        ..Store::default()
    });
    std::fs::write(&good, config.to_toml()).unwrap();
    let out = Command::new(BINARY)
        .args(["check-config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad.toml");
    let mut config = node(1883, 502);
    config.sparkplug.edge_node_id = "gw#1".to_owned();
    config.mqtt.keep_alive_s = 0;
    config.mqtt.password_file = Some("missing".into());
    std::fs::write(&bad, config.to_toml()).unwrap();
    let out = Command::new(BINARY)
        .args(["check-config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "sparkplug.edge_node_id",
        "mqtt.keep_alive_s",
        "mqtt.password_file",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_publishes_ndeath_then_exits_cleanly() {
    let broker = Mosquitto::start();
    let plant = start_plant().await;
    let dir = tempfile::tempdir().unwrap();
    let file = system_tests::config::write(
        &node(broker.port(), plant.local_addr().port()),
        dir.path(),
        "edge-node.toml",
    );
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let mut command = Command::new(BINARY);
    command.arg("--config").arg(&file);
    let mut child = Proc::spawn("edge-node", command);
    let nbirth = host.next_kind("NBIRTH").await;
    host.next_kind("DBIRTH").await;
    child.signal("TERM");
    let ndeath = host.next_kind("NDEATH").await;
    assert_eq!(ndeath.qos, QoS::AtLeastOnce);
    assert_eq!(ndeath.bd_seq(), nbirth.bd_seq());
    let exited = child.wait_exit(Duration::from_secs(5));
    assert!(exited.expect("exits within 5 s of SIGTERM").success());
    // Only one NDEATH: DISCONNECT kept the broker from sending the will too.
    let after = host.drain_for(Duration::from_millis(500)).await;
    assert!(after.iter().all(|m| m.kind() != "NDEATH"), "{after:?}");
    plant.shutdown().await;
}
