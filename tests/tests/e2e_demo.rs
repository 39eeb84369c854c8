//! The demo's config templates (`config/demo/*.toml`, filled in by `demo.sh`): they pass
//! both binaries' `check-config`, and the demo edge node's tags read the simulator's
//! built-in plant with GOOD values end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

use system_tests::free_port;
use system_tests::process::bin;
use system_tests::stack::{Broker, EdgeNode, HostApp, Plant, Tree};
use system_tests::workspace_root;

struct Ports {
    plant: u16,
    broker: u16,
    http: u16,
    ui: u16,
}

/// Fills a template as demo.sh does (same placeholders, a password file per broker
/// account in `dir/secrets`) and writes it into `dir`.
fn fill(template: &str, ports: &Ports, dir: &Path) -> PathBuf {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    for account in ["host", "gateway-1", "viewer"] {
        std::fs::write(
            secrets.join(format!("mqtt-{account}")),
            format!("{account}-pw\n"),
        )
        .expect("write a password file");
    }
    let source = workspace_root().join("config/demo").join(template);
    let text = std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
    let filled = text
        .replace("@PLANT_PORT@", &ports.plant.to_string())
        .replace("@BROKER_PORT@", &ports.broker.to_string())
        .replace("@HTTP_PORT@", &ports.http.to_string())
        .replace("@UI_PORT@", &ports.ui.to_string())
        .replace("@STATE_DIR@", &dir.display().to_string());
    let leftover: Vec<&str> = filled
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.matches('@').count() >= 2)
        .collect();
    assert!(
        leftover.is_empty(),
        "{template}: placeholders demo.sh does not fill: {leftover:?}"
    );
    let out = dir.join(template);
    std::fs::write(&out, filled).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
    out
}

fn check_config(binary: &str, file: &Path) {
    let output = Command::new(bin(binary))
        .arg("check-config")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("run {binary}: {e}"));
    assert!(
        output.status.success(),
        "{binary} check-config {}: {}\n{}{}",
        file.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(": ok"),
        "{binary} check-config says ok"
    );
}

#[test]
fn demo_config_templates_pass_check_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports {
        plant: 5020,
        broker: free_port(),
        http: free_port(),
        ui: free_port(),
    };
    check_config("edge-node", &fill("edge-node.toml", &ports, dir.path()));
    check_config("host-app", &fill("host-app.toml", &ports, dir.path()));
}

/// Every tag of the demo edge node, by device, from its template.
fn demo_tags(edge_config: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(edge_config).expect("demo edge config");
    let mut device = String::new();
    let mut tags = Vec::new();
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = if line == "[[modbus.devices]]" {
                "device"
            } else if line == "[[modbus.devices.tags]]" {
                "tag"
            } else {
                ""
            };
            continue;
        }
        let Some(name) = line
            .strip_prefix("name = \"")
            .and_then(|n| n.strip_suffix('"'))
        else {
            continue;
        };
        match section {
            "device" => device = name.to_owned(),
            "tag" => tags.push((device.clone(), name.to_owned())),
            _ => {}
        }
    }
    tags
}

#[test]
fn demo_configs_read_the_built_in_plant_end_to_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plant = Plant::start();
    let ports = Ports {
        plant: plant.port(),
        broker: free_port(),
        http: free_port(),
        ui: free_port(),
    };
    let host_config = fill("host-app.toml", &ports, dir.path());
    let edge_config = fill("edge-node.toml", &ports, dir.path());
    let tags = demo_tags(&edge_config);
    assert!(tags.len() >= 20, "demo tags found: {tags:?}");

    let mut host = HostApp::start_config(
        host_config,
        Broker::Embedded { port: ports.broker },
        ports.http,
    );
    let mut edge = EdgeNode::start_config(edge_config);
    let api = host.api();
    let missing = |tree: &Tree| -> Vec<String> {
        tags.iter()
            .filter(|(device, name)| {
                !tree
                    .metric("demo", "gateway-1", Some(device), name)
                    .is_some_and(|m| !m["value"].is_null() && m["quality"] == 192)
            })
            .map(|(device, name)| format!("{device}/{name}"))
            .collect()
    };
    let mut last = Vec::new();
    let ready = system_tests::wait::poll(system_tests::stack::WAIT, || {
        let tree = api.get("/api/tree").ok().map(Tree)?;
        last = missing(&tree);
        last.is_empty().then_some(())
    });
    assert!(
        ready.is_some(),
        "demo tags without a GOOD value: {last:?}\n--- edge-node ---\n{}\n--- host-app ---\n{}",
        edge.output().join("\n"),
        host.output().join("\n")
    );
}

fn run_demo(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(workspace_root().join("demo.sh"))
        .args(args)
        .output()
        .expect("run demo.sh")
}

#[test]
fn demo_refuses_a_taken_port_naming_it_before_building_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback bind");
    let port = taken.local_addr().expect("address").port().to_string();
    let state = tempfile::tempdir().expect("temp dir");
    let state_dir = state.path().join("demo");
    let free = free_port().to_string();
    for (flag, other, what) in [
        ("--broker-port", "--http-port", "the broker (--broker-port)"),
        ("--http-port", "--broker-port", "the HTTP API (--http-port)"),
    ] {
        let output = run_demo(&[
            flag,
            &port,
            other,
            &free,
            "--state-dir",
            &state_dir.display().to_string(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{flag} taken: {stderr}");
        assert!(
            stderr.contains(&format!("127.0.0.1:{port} is already in use"))
                && stderr.contains(what),
            "{flag} taken: the message names the port and its use: {stderr}"
        );
        assert!(!state_dir.exists(), "nothing created when refusing");
    }
    let output = run_demo(&["--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown argument '--no-such-flag'"));
}
