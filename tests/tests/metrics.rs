//! Prometheus `/metrics` of both services, scraped from the real binaries while the demo
//! plant runs: the exposition parses, every family has its type, and the figures move
//! with the plant (requests count up; a plant that goes away shows failures).

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;

use system_tests::config::edge::Metrics;
use system_tests::process::{Proc, bin};
use system_tests::stack::{Broker, Plant, WAIT, edge_config, host_config};
use system_tests::{config, free_port, wait};

/// One scrape: (family types, samples by `name{labels}`).
struct Scrape {
    types: HashMap<String, String>,
    samples: HashMap<String, f64>,
}

impl Scrape {
    fn value(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in {:?}", self.samples))
    }
}

fn scrape(port: u16) -> Result<Scrape, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| e.to_string())?;
    let (head, body) = reply.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") || !head.contains("text/plain; version=0.0.4") {
        return Err(format!("unexpected head {head:?}"));
    }
    let mut types = HashMap::new();
    let mut samples = HashMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE {line:?}"))?;
            types.insert(name.to_owned(), kind.to_owned());
        } else if line.starts_with("# HELP ") {
        } else {
            let (key, value) = line
                .rsplit_once(' ')
                .ok_or(format!("bad sample {line:?}"))?;
            let value: f64 = value.parse().map_err(|_| format!("bad value {line:?}"))?;
            let family = key.split('{').next().unwrap_or(key);
            if !types.contains_key(family) {
                return Err(format!("sample {key} before its TYPE"));
            }
            samples.insert(key.to_owned(), value);
        }
    }
    Ok(Scrape { types, samples })
}

#[test]
fn both_services_expose_prometheus_metrics_that_move_with_the_plant() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_port = free_port();
    let host_metrics = free_port();
    let http_port = free_port();
    let mut host_cfg = host_config(
        dir.path(),
        Broker::Embedded { port: broker_port },
        http_port,
    );
    host_cfg.metrics = Some(Metrics {
        listen: format!("127.0.0.1:{host_metrics}"),
    });
    let host_toml = config::write(&host_cfg, dir.path(), "host-app.toml");
    let mut cmd = Command::new(bin("host-app"));
    cmd.arg("run")
        .arg("--config")
        .arg(host_toml)
        .env("NO_COLOR", "1");
    let mut host = Proc::spawn("host-app", cmd);
    host.wait_for_line(WAIT, |l| l.starts_with("host-app: running as"));

    let mut plant = Plant::start();
    let edge_metrics = free_port();
    let mut edge_cfg = edge_config(dir.path(), broker_port, plant.port());
    edge_cfg.metrics = Some(Metrics {
        listen: format!("127.0.0.1:{edge_metrics}"),
    });
    let edge_toml = config::write(&edge_cfg, dir.path(), "edge-node.toml");
    let mut cmd = Command::new(bin("edge-node"));
    cmd.arg("--config").arg(&edge_toml).env("NO_COLOR", "1");
    let mut edge = Proc::spawn("edge-node", cmd);

    // The edge node: born, polling, publishing.
    let first = wait::until("edge connected and polling", WAIT, || {
        scrape(edge_metrics)
            .ok()
            .filter(|s| s.samples.get("edge_mqtt_connected") == Some(&1.0))
    });
    assert_eq!(first.types["edge_modbus_requests_total"], "counter");
    assert_eq!(first.types["edge_mqtt_connected"], "gauge");
    let device = first
        .samples
        .keys()
        .find(|k| k.starts_with("edge_modbus_requests_total{device="))
        .expect("a per-device request counter")
        .clone();
    let later = wait::until("requests counting up", WAIT, || {
        scrape(edge_metrics)
            .ok()
            .filter(|s| s.value(&device) > first.value(&device))
    });
    assert!(later.value("edge_sparkplug_messages_published_total") > 0.0);
    assert!(later.value("edge_mqtt_sent_bytes_total") > 0.0);

    // The host: receiving, committing history, the node online.
    let host_first = wait::until("host ingesting", WAIT, || {
        scrape(host_metrics).ok().filter(|s| {
            s.samples.get("host_edge_nodes_online") == Some(&1.0)
                && s.samples
                    .get("host_history_commits_total")
                    .is_some_and(|&c| c > 0.0)
        })
    });
    assert_eq!(
        host_first.types["host_sparkplug_messages_received_total"],
        "counter"
    );
    assert_eq!(host_first.value("host_session_connected"), 1.0);
    for (family, kind) in [
        ("host_broker_connections", "gauge"),
        ("host_broker_messages_received_total", "counter"),
        ("host_broker_messages_sent_total", "counter"),
        ("host_history_samples_committed_total", "counter"),
        ("host_history_commit_seconds_total", "counter"),
        ("host_history_pending_samples", "gauge"),
        ("host_sparkplug_rebirths_requested_total", "counter"),
        ("host_session_sent_bytes_total", "counter"),
        ("host_api_requests_total", "counter"),
    ] {
        assert_eq!(host_first.types[family], kind, "{family}");
    }
    // The host's session and the edge node are logged in to the embedded broker.
    assert!(host_first.value("host_broker_connections") >= 2.0);
    assert!(host_first.value("host_history_commit_seconds_total") > 0.0);
    assert!(host_first.value("host_session_received_bytes_total") > 0.0);
    assert_eq!(host_first.value("host_session_reconnects_total"), 0.0);
    // The plant's values flow: through the broker, into the session, into the history.
    let moving = [
        "host_sparkplug_messages_received_total",
        "host_broker_messages_received_total",
        "host_broker_messages_sent_total",
        "host_history_samples_committed_total",
        "host_session_received_bytes_total",
    ];
    let host_later = wait::until("host figures counting up", WAIT, || {
        scrape(host_metrics)
            .ok()
            .filter(|s| moving.iter().all(|k| s.value(k) > host_first.value(k)))
    });
    assert!(
        host_later.value("host_history_commits_total")
            >= host_first.value("host_history_commits_total")
    );
    // API requests count by status class.
    let api = system_tests::http::Api::new(([127, 0, 0, 1], http_port).into());
    let class = |status: u16| format!("host_api_requests_total{{code=\"{}xx\"}}", status / 100);
    for path in ["/auth/setup", "/api/tree"] {
        let before = scrape(host_metrics).expect("scrape");
        let (status, _) = api.call("GET", path, None);
        let after = scrape(host_metrics).expect("scrape");
        let key = class(status);
        assert_eq!(
            after.value(&key),
            before.value(&key) + 1.0,
            "GET {path}: {status}"
        );
    }

    // The plant goes away: the edge node's failures count up.
    let failures_key = device.replace("requests", "failures");
    let before = scrape(edge_metrics).expect("scrape").value(&failures_key);
    plant.terminate();
    wait::until("failures counting up", WAIT * 2, || {
        scrape(edge_metrics)
            .ok()
            .filter(|s| s.value(&failures_key) > before)
    });

    // The edge node stops: it goes offline and leaves the broker.
    let connections = scrape(host_metrics)
        .expect("scrape")
        .value("host_broker_connections");
    edge.signal("TERM");
    assert!(edge.wait_exit(WAIT).expect("edge exits").success());
    wait::until("node offline and gone from the broker", WAIT, || {
        scrape(host_metrics).ok().filter(|s| {
            s.value("host_edge_nodes_online") == 0.0
                && s.value("host_broker_connections") < connections
        })
    });
    host.signal("TERM");
    assert!(host.wait_exit(WAIT).expect("host exits").success());
}
