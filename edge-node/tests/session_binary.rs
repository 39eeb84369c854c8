//! The `edge-node` binary: `check-config` and a run ended by SIGTERM (NDEATH, then exit 0).

use std::process::{Command, Stdio};
use std::time::Duration;

use edge_node_testkit::session::*;
use rumqttc::QoS;
use system_tests::Mosquitto;
use system_tests::config::edge::{Device, ScanClass, Server, Store, Tag};
use system_tests::mqtt::Recorder;
use system_tests::process::{Proc, assert_exit_with_one_line};

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
    assert_eq!(
        out.status.code(),
        Some(0),
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
    // A bad configuration exits 2, one `FILE: KEY: MESSAGE` line per problem.
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let file = bad.display().to_string();
    assert_eq!(lines.len(), 3, "{err}");
    for (line, key) in lines.iter().zip([
        "sparkplug.edge_node_id",
        "mqtt.keep_alive_s",
        "mqtt.password_file",
    ]) {
        assert!(
            line.starts_with(&format!("{file}: {key}: ")),
            "{key} missing from: {err}"
        );
    }
}

#[test]
fn a_bad_file_given_to_run_or_check_config_exits_2_and_a_csv_row_is_placed() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let mut config = node(1883, 502);
    config.modbus.tag_files = vec!["tags.csv".into()];
    std::fs::write(&bad, config.to_toml()).unwrap();
    let csv = dir.path().join("tags.csv");
    std::fs::write(
        &csv,
        format!("device,name,address,type\n{DEVICE},t2,40002,float\n"),
    )
    .unwrap();
    let expected = format!("{}:2:4: type: unknown variant `float`", csv.display());
    let check = Command::new(BINARY)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    let run = Command::new(BINARY)
        .arg("--config")
        .arg(&bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    for (what, out) in [("check-config", check), ("run", run)] {
        let err = assert_exit_with_one_line(what, &out, 2);
        assert!(err.starts_with(&expected), "{what}: {err}");
    }
    let syntax = dir.path().join("syntax.toml");
    std::fs::write(&syntax, "[sparkplug]\ngroup_id = = 1\n").unwrap();
    let out = Command::new(BINARY)
        .arg("check-config")
        .arg(&syntax)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("{}:2:", syntax.display())),
        "{err}"
    );
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
