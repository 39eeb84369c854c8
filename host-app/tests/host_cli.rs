//! The `host-app` binary: `check-config`, `spy` against a live broker, and `run` stopped
//! by SIGTERM with its STATE offline published and history flushed.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use host_app::history::{HistoryStore, MetricKey, SqliteOptions, SqliteStore};
use host_app_testkit::host::*;
use serde_json::json;
use sparkplug::{Algorithm, BdSeq, Metric, Payload, Seq, State};
use system_tests::http::{Api, TEST_PASSWORD, add_user};
use system_tests::mqtt::ScriptedEdge;
use system_tests::process::{Proc, assert_exit_with_one_line};
use system_tests::stack::now_ms;
use system_tests::wait;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::ChildStderr;

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
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("scada-host"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let mut config = host_config(dir.path(), None);
    config.sparkplug.reorder_timeout_ms = Some(0);
    std::fs::write(&bad, config.to_toml()).unwrap();
    let out = host_app().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // One `FILE: KEY: MESSAGE` line per problem, as edge-node prints them.
    assert_eq!(
        err.trim_end(),
        format!(
            "{}: sparkplug.reorder_timeout_ms: must be 1 to 600000 ms",
            bad.display()
        )
    );
}

#[test]
fn a_bad_file_exits_2_from_check_config_and_run_with_every_problem_placed() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = host_config(dir.path(), None).to_toml().replace(
        "reorder_timeout_ms = 300",
        "reorder_timeout_ms = 0\nrebirth_interval = 1",
    );
    std::fs::write(&bad, text).unwrap();
    let check = host_app().arg("check-config").arg(&bad).output().unwrap();
    let run = host_app()
        .args(["run", "--config"])
        .arg(&bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let prefix = format!("{}:", bad.display());
    for (what, out) in [("check-config", check), ("run", run)] {
        let err = assert_exit_with_one_line(what, &out, 2);
        assert!(
            err.starts_with(&prefix) && err.contains(": sparkplug.rebirth_interval: unknown field"),
            "{what}: {err}"
        );
    }
    // Once the syntax is right, every semantic problem is listed.
    let text = host_config(dir.path(), None)
        .to_toml()
        .replace("reorder_timeout_ms = 300", "reorder_timeout_ms = 0")
        .replace(
            "rebirth_min_interval_ms = 60000",
            "rebirth_min_interval_ms = 3600001",
        );
    std::fs::write(&bad, text).unwrap();
    let out = host_app().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = bad.display();
    assert_eq!(
        err.trim_end(),
        format!(
            "{file}: sparkplug.reorder_timeout_ms: must be 1 to 600000 ms\n{file}: sparkplug.rebirth_min_interval_ms: must be 0 to 3600000 ms"
        )
    );
}

/// A running `host-app spy` that has said it subscribed.
struct Spy {
    child: tokio::process::Child,
    /// Held open so the spy can go on writing to its stderr.
    _stderr: BufReader<ChildStderr>,
}

impl Spy {
    /// Starts `host-app spy` with `args` and waits (bounded) for its "subscribed" line.
    async fn start(args: &[&str]) -> Spy {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_host-app"))
            .arg("spy")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(WAIT, stderr.read_line(&mut line))
            .await
            .expect("spy writes its first line")
            .unwrap();
        assert!(line.contains("subscribed"), "{line}");
        Spy {
            child,
            _stderr: stderr,
        }
    }

    /// Waits (bounded) for the spy to stop after `--count`; its stdout as JSON lines.
    async fn lines(self) -> Vec<serde_json::Value> {
        let out = tokio::time::timeout(WAIT, self.child.wait_with_output())
            .await
            .expect("spy stops after --count")
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Publishes raw `messages` (topic, payload) at QoS 1 as MQTT client `id`, and
/// polls the connection in the background until the returned task is aborted.
async fn publish_raw(
    broker: SocketAddr,
    id: &str,
    messages: Vec<(&str, Vec<u8>)>,
) -> tokio::task::JoinHandle<()> {
    let options = rumqttc::MqttOptions::new(id, (broker.ip().to_string(), broker.port()));
    let (client, mut eventloop) = rumqttc::AsyncClient::builder(options).build();
    for (topic, payload) in messages {
        let qos1 = rumqttc::PublishOptions::new(rumqttc::QoS::AtLeastOnce);
        client.publish(topic, payload, qos1).await.unwrap();
    }
    tokio::spawn(async move {
        for _ in 0..20 {
            if eventloop.poll().await.is_err() {
                break;
            }
        }
    })
}

#[tokio::test]
async fn spy_prints_each_message_as_a_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), None).await;
    let addr = broker_addr(&host);
    let broker = format!("mqtt://{addr}");
    let spy = Spy::start(&["--broker", &broker, "--count", "4", "--duration", "20"]).await;

    let mut edge = ScriptedEdge::connect(addr, "G", "E", 3).await;
    edge.nbirth(vec![Metric::new("Temp", 1.5f64).with_alias(1)])
        .await;
    edge.ndata(vec![Metric::aliased(1, 2.5f64)]).await;
    // A payload that is not protobuf, on a DDATA topic.
    let junk = vec![("spBv1.0/G/DDATA/E/D", vec![0xffu8, 0xff, 0xff])];
    let drive = publish_raw(addr, "junk", junk).await;

    let lines = spy.lines().await;
    drive.abort();
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

/// A GZIP-compressed NBIRTH and a DEFLATE-compressed NDATA through Mosquitto: the spy
/// prints the inflated metrics and says how each payload came.
#[tokio::test]
async fn spy_inflates_compressed_payloads_and_says_so() {
    let broker = system_tests::Mosquitto::start();
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let spy = Spy::start(&[
        "--broker",
        &url,
        "--topic",
        "spBv1.0/Z/#",
        "--count",
        "2",
        "--duration",
        "20",
    ])
    .await;

    let birth = Payload::new(now_ms())
        .with_seq(Seq::new(0))
        .with_metric(BdSeq::new(0).to_metric(now_ms()))
        .with_metric(Metric::new("Flow", 12.5f64).with_alias(7));
    let data = Payload::new(now_ms())
        .with_seq(Seq::new(1))
        .with_metric(Metric::aliased(7, 13.0f64).without_datatype());
    let mut gzip = Vec::new();
    birth.encode_compressed(Algorithm::Gzip, &mut gzip).unwrap();
    let mut deflate = Vec::new();
    data.encode_compressed(Algorithm::Deflate, &mut deflate)
        .unwrap();
    let messages = vec![("spBv1.0/Z/NBIRTH/E", gzip), ("spBv1.0/Z/NDATA/E", deflate)];
    let mosquitto = SocketAddr::from(([127, 0, 0, 1], broker.port()));
    let drive = publish_raw(mosquitto, "zipper", messages).await;

    let lines = spy.lines().await;
    drive.abort();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let nbirth = &lines[0];
    assert_eq!(nbirth["type"], "NBIRTH", "{nbirth}");
    assert_eq!(nbirth["compression"], "GZIP");
    assert_eq!(nbirth["payload"]["seq"], 0);
    let flow = &nbirth["payload"]["metrics"][1];
    assert_eq!((&flow["name"], &flow["alias"]), (&json!("Flow"), &json!(7)));
    assert_eq!(flow["value"], 12.5);
    assert!(nbirth["payload"].get("body").is_none(), "{nbirth}");
    let ndata = &lines[1];
    assert_eq!(ndata["type"], "NDATA", "{ndata}");
    assert_eq!(ndata["compression"], "DEFLATE");
    assert_eq!(
        ndata["payload"]["metrics"][0]["name"], "Flow",
        "named through the birth"
    );
    assert_eq!(ndata["payload"]["metrics"][0]["value"], 13.0);
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
    add_user(
        std::path::Path::new(env!("CARGO_BIN_EXE_host-app")),
        &config,
        "admin",
        "admin",
    );

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
    let admin = Api::login_async(api, "admin", TEST_PASSWORD).await;
    wait::until_read(
        "node in tree",
        WAIT,
        async || admin.call_async("GET", "/api/tree", None).await.1,
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

/// `host-app user ...` on `config`, `stdin` as its standard input.
fn user_cli(config: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = host_app()
        .arg("user")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn user_subcommands_manage_the_accounts_the_panel_uses() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        system_tests::config::write(&host_config(dir.path(), None), dir.path(), "host.toml");
    let ok = |out: &std::process::Output| {
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = |out: &std::process::Output, word: &str| {
        let line = assert_exit_with_one_line("host-app user", out, 2);
        assert!(line.contains(word), "{line}");
    };

    let out = user_cli(
        &config,
        &["add", "root", "--role", "admin"],
        "first password 1\n",
    );
    assert!(ok(&out).contains("root created with role admin"));
    ok(&user_cli(
        &config,
        &["add", "vic", "--role", "viewer"],
        "viewer password 1\n",
    ));
    assert_eq!(
        ok(&user_cli(&config, &["list"], "")),
        "root\tadmin\nvic\tviewer\n"
    );

    refused(
        &user_cli(&config, &["add", "bob", "--role", "boss"], "x\n"),
        "role",
    );
    refused(&user_cli(&config, &["add", "bob"], "short\n"), "password");
    refused(&user_cli(&config, &["add", "bob"], ""), "standard input");
    refused(
        &user_cli(&config, &["add", "vic"], "another password\n"),
        "vic",
    );
    refused(&user_cli(&config, &["remove", "root"], ""), "last admin");
    refused(
        &user_cli(&config, &["passwd", "nobody"], "some password 1\n"),
        "nobody",
    );
    // Never a password on the command line.
    let out = user_cli(&config, &["add", "eve", "--password", "in argv 12345"], "");
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    ok(&user_cli(
        &config,
        &["passwd", "root"],
        "second password 2\n",
    ));
    ok(&user_cli(&config, &["remove", "vic"], ""));
    assert_eq!(ok(&user_cli(&config, &["list"], "")), "root\tadmin\n");

    // The host's accounts database has the new password, not the old one.
    let auth = web::Auth::builder(std::sync::Arc::new(
        web::SqliteStore::open(&dir.path().join("auth.db")).unwrap(),
    ))
    .build()
    .unwrap();
    let login = |p: &str| auth.login("root", &web::Secret::new(p), None).is_ok();
    assert!(!login("first password 1"));
    assert!(login("second password 2"));

    let missing = dir.path().join("none.toml");
    let out = user_cli(&missing, &["list"], "");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
