//! The `host-app` binary: `check-config`, `spy` against a live broker, and `run` stopped
//! by SIGTERM with its STATE offline published and history flushed.

mod common;

use std::process::{Command, Stdio};

use common::*;
use host_app::history::{HistoryStore, MetricKey, SqliteOptions, SqliteStore};
use sparkplug::{Metric, State};
use system_tests::http::Api;
use system_tests::mqtt::ScriptedEdge;
use system_tests::process::Proc;
use system_tests::wait;

fn host_app() -> Command {
    Command::new(env!("CARGO_BIN_EXE_host-app"))
}

#[test]
fn check_config_accepts_the_example_and_names_a_wrong_key() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config")
        .join("host-app.example.toml");
    let out = host_app()
        .arg("check-config")
        .arg(&example)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("scada-host"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let mut config = host_config(dir.path(), None);
    config.sparkplug.reorder_timeout_ms = Some(0);
    std::fs::write(&bad, config.to_toml()).unwrap();
    let out = host_app().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sparkplug.reorder_timeout_ms"), "{err}");
}

#[tokio::test]
async fn spy_prints_each_message_as_a_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), None).await;
    let addr = broker_addr(&host);
    let mut spy = tokio::process::Command::new(env!("CARGO_BIN_EXE_host-app"))
        .args([
            "spy",
            "--broker",
            &format!("mqtt://{addr}"),
            "--count",
            "4",
            "--duration",
            "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = spy.stderr.take().unwrap();
    let mut stderr = tokio::io::BufReader::new(stderr);
    let mut line = String::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(line.contains("subscribed"), "{line}");

    let mut edge = ScriptedEdge::connect(addr, "G", "E", 3).await;
    edge.nbirth(vec![Metric::new("Temp", 1.5f64).with_alias(1)])
        .await;
    edge.ndata(vec![Metric::aliased(1, 2.5f64)]).await;
    // A payload that is not protobuf, on a DDATA topic.
    let options = rumqttc::MqttOptions::new("junk", (addr.ip().to_string(), addr.port()));
    let (client, mut eventloop) = rumqttc::AsyncClient::builder(options).build();
    client
        .publish(
            "spBv1.0/G/DDATA/E/D",
            vec![0xffu8, 0xff, 0xff],
            rumqttc::PublishOptions::new(rumqttc::QoS::AtLeastOnce),
        )
        .await
        .unwrap();
    let drive = tokio::spawn(async move {
        for _ in 0..20 {
            if eventloop.poll().await.is_err() {
                break;
            }
        }
    });

    let out = tokio::time::timeout(WAIT, spy.wait_with_output())
        .await
        .expect("spy stops after --count")
        .unwrap();
    drive.abort();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let state = lines.iter().find(|l| l["type"] == "STATE").unwrap();
    assert_eq!(state["host_id"], "scada");
    assert_eq!(state["state"]["online"], true);
    let birth = lines.iter().find(|l| l["type"] == "NBIRTH").unwrap();
    assert_eq!(birth["group"], "G");
    assert_eq!(birth["node"], "E");
    assert_eq!(birth["payload"]["seq"], 0);
    let data = lines.iter().find(|l| l["type"] == "NDATA").unwrap();
    assert_eq!(data["payload"]["metrics"][0]["alias"], 1);
    assert_eq!(
        data["payload"]["metrics"][0]["name"], "Temp",
        "named through the NBIRTH"
    );
    let junk = lines.iter().find(|l| l["type"] == "DDATA").unwrap();
    assert_eq!(junk["device"], "D");
    assert!(junk["error"].is_string(), "{junk}");
    host.stop().await.unwrap();
}

#[tokio::test]
async fn run_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // An external broker so the edge node outlives the host process.
    let broker = embedded_broker().await;
    let addr = broker.plain_addr().unwrap();
    let config = system_tests::config::write(
        &host_config(dir.path(), Some(addr)),
        dir.path(),
        "host.toml",
    );
    let mut edge = ScriptedEdge::connect(addr, "G", "E", 0).await;

    let mut command = host_app();
    command.arg("run").arg("--config").arg(&config);
    let mut child = Proc::spawn("host-app", command);
    let banner = child
        .wait_for_line_async(WAIT, |l| l.starts_with("host-app: running as "))
        .await;
    assert!(banner.contains("running as scada"), "{banner}");
    let online = edge.next_matching("STATE/scada").await.state();
    assert!(online.online);
    edge.nbirth(vec![Metric::new("Temp", 7.0f64)]).await;
    // The banner names the API; wait until the tree shows the node.
    let api: std::net::SocketAddr = banner
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    wait::until_read(
        "node in tree",
        WAIT,
        async || Api::new(api).call_async("GET", "/api/tree", None).await.1,
        |tree| tree["groups"][0]["nodes"][0]["node"] == "E",
    )
    .await;

    child.signal("TERM");
    let exit = child.wait_exit_async(WAIT).await;
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
    let offline = edge.next_matching("STATE/scada").await;
    assert_eq!(offline.state(), State::offline(online.timestamp));

    let store =
        SqliteStore::open(dir.path().join("history.db"), &SqliteOptions::default()).unwrap();
    let id = store
        .resolve_metric(&MetricKey::node("G", "E", "Temp"))
        .unwrap()
        .unwrap();
    assert_eq!(store.latest(&[id]).unwrap().len(), 1, "history flushed");
    broker.stop().await;
}
