//! The `edge-node` binary: `check-config` and a run ended by SIGTERM (NDEATH, then exit 0).

mod session_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use rumqttc::QoS;
use session_support::*;
use system_tests::Mosquitto;
use system_tests::mqtt::Recorder;

const BINARY: &str = env!("CARGO_BIN_EXE_edge-node");

fn config_text(mqtt_port: u16, modbus_port: u16) -> String {
    format!(
        r#"
[sparkplug]
group_id = "{GROUP}"
edge_node_id = "{NODE}"

[mqtt]
startup_delay_max_ms = 0

[[mqtt.servers]]
url = "mqtt://127.0.0.1:{mqtt_port}"

[[modbus.scan_classes]]
name = "fast"
period_ms = 100

[[modbus.devices]]
name = "{DEVICE}"
host = "127.0.0.1"
port = {modbus_port}

[[modbus.devices.tags]]
name = "setpoint"
address = "40001"
type = "u16"
"#
    )
}

#[test]
fn check_config_accepts_a_good_file_and_lists_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let store = "\n[store]\npath = \"store.sqlite\"\nbatch_size = 100\n";
    std::fs::write(&good, config_text(1883, 502) + store).unwrap();
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
    let text = config_text(1883, 502)
        .replace("edge_node_id = \"gw1\"", "edge_node_id = \"gw#1\"")
        .replace(
            "startup_delay_max_ms = 0",
            "keep_alive_s = 0\npassword_file = \"missing\"",
        );
    std::fs::write(&bad, text).unwrap();
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
    let text = config_text(1883, 502).replace(
        "[[modbus.scan_classes]]",
        "[modbus]\ntag_files = [\"tags.csv\"]\n\n[[modbus.scan_classes]]",
    );
    std::fs::write(&bad, text).unwrap();
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
    for out in [check, run] {
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with(&expected), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
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
    let file = dir.path().join("edge-node.toml");
    std::fs::write(&file, config_text(broker.port(), plant.local_addr().port())).unwrap();
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let mut child = Command::new(BINARY)
        .arg("--config")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let nbirth = host.next_kind("NBIRTH").await;
    host.next_kind("DBIRTH").await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let ndeath = host.next_kind("NDEATH").await;
    assert_eq!(ndeath.qos, QoS::AtLeastOnce);
    assert_eq!(ndeath.bd_seq(), nbirth.bd_seq());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    assert!(exited.expect("exits within 5 s of SIGTERM").success());
    // Only one NDEATH: DISCONNECT kept the broker from sending the will too.
    let after = host.drain_for(Duration::from_millis(500)).await;
    assert!(after.iter().all(|m| m.kind() != "NDEATH"), "{after:?}");
    plant.shutdown().await;
}
