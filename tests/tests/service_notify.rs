//! The services' systemd notify protocol, with the real binaries: a Unix datagram socket
//! stands in for systemd as `NOTIFY_SOCKET`. READY=1 must come only once the service
//! works, STATUS= lines say what it does, STOPPING=1 follows SIGTERM.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use system_tests::process::{Proc, bin};
use system_tests::stack::{Broker, Plant, WAIT, edge_config, host_config};
use system_tests::{config, free_port};

/// The service manager's end: every datagram a service sends.
struct NotifySocket {
    socket: UnixDatagram,
    path: String,
    seen: Vec<String>,
    /// When the last WATCHDOG=1 came, and the longest wait between two so far.
    last_ping: Option<Instant>,
    longest_gap: Duration,
}

impl NotifySocket {
    fn bind(dir: &Path, name: &str) -> NotifySocket {
        let path = dir.join(name);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        NotifySocket {
            socket,
            path: path.to_str().expect("UTF-8 temp path").to_owned(),
            seen: Vec::new(),
            last_ping: None,
            longest_gap: Duration::ZERO,
        }
    }

    /// Waits (at most `timeout`) for a datagram `pred` accepts and returns it.
    fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.note(&message);
                self.seen.push(message.clone());
                if pred(&message) {
                    return message;
                }
            }
        }
        panic!("no {what} within {timeout:?}; received {:?}", self.seen);
    }
}

fn status_of(message: &str) -> &str {
    message
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= in {message:?}"))
}

/// `GET path` on the host's API: the status code.
fn http_status(port: u16, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| e.to_string())?;
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {reply:?}"))
}

/// A `host-app run` command on a config written to `dir`: the embedded broker on
/// `broker_port`, the API on `http_port`.
fn host_run(dir: &Path, broker_port: u16, http_port: u16) -> Command {
    let host = host_config(dir, Broker::Embedded { port: broker_port }, http_port);
    let host_toml = config::write(&host, dir, "host-app.toml");
    let mut cmd = Command::new(bin("host-app"));
    cmd.arg("run").arg("--config").arg(host_toml);
    cmd
}

#[test]
fn both_services_are_ready_only_once_they_work_report_status_and_say_when_they_stop() {
    let dir = tempfile::tempdir().expect("temp dir");

    // The host: ready means broker listening, history open and API answering.
    let mut host_notify = NotifySocket::bind(dir.path(), "host.sock");
    let broker_port = free_port();
    let http_port = free_port();
    let mut cmd = host_run(dir.path(), broker_port, http_port);
    cmd.env("NOTIFY_SOCKET", &host_notify.path)
        .env("NO_COLOR", "1");
    let mut host = Proc::spawn("host-app", cmd);
    let ready = host_notify.wait_for("host READY=1", WAIT, |m| m.contains("READY=1"));
    TcpStream::connect(("127.0.0.1", broker_port))
        .expect("the broker accepts connections once READY=1 is sent");
    assert_eq!(
        http_status(http_port, "/auth/setup"),
        Ok(200),
        "the API answers once READY=1 is sent"
    );
    assert!(
        status_of(&ready).contains(&format!("broker listening on 127.0.0.1:{broker_port}")),
        "{ready:?}"
    );
    assert!(
        host_notify.seen[..host_notify.seen.len() - 1]
            .iter()
            .all(|m| !m.contains("READY=1")),
        "one READY=1"
    );

    // The edge node: ready means acquisition polled the simulator.
    let plant = Plant::start();
    let mut edge_notify = NotifySocket::bind(dir.path(), "edge.sock");
    let edge_toml = config::write(
        &edge_config(dir.path(), broker_port, plant.port()),
        dir.path(),
        "edge-node.toml",
    );
    let mut cmd = Command::new(bin("edge-node"));
    cmd.arg("--config")
        .arg(&edge_toml)
        .env("NOTIFY_SOCKET", &edge_notify.path)
        .env("NO_COLOR", "1");
    let mut edge = Proc::spawn("edge-node", cmd);
    let ready = edge_notify.wait_for("edge READY=1", WAIT, |m| m.contains("READY=1"));
    let status = status_of(&ready).to_owned();
    let online: usize = status
        .split(", ")
        .nth(1)
        .and_then(|part| part.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no device count in {status:?}"));
    assert!(
        online >= 1 && status.ends_with("of 3 devices online"),
        "READY=1 only after the simulator answered Modbus requests: {status:?}"
    );
    edge_notify.wait_for("edge STATUS connected", WAIT, |m| {
        m.contains(&format!(
            "STATUS=connected to mqtt://127.0.0.1:{broker_port}"
        ))
    });
    host_notify.wait_for("host STATUS with the node online", WAIT, |m| {
        m.contains("STATUS=") && m.contains(", 1 edge nodes online")
    });

    // SIGTERM: STOPPING=1, then a clean exit.
    edge.signal("TERM");
    edge_notify.wait_for("edge STOPPING=1", WAIT, |m| m.contains("STOPPING=1"));
    let exit = edge
        .wait_exit(WAIT)
        .expect("the edge node exits after SIGTERM");
    assert!(exit.success(), "edge-node: {exit:?}");
    host.signal("TERM");
    host_notify.wait_for("host STOPPING=1", WAIT, |m| m.contains("STOPPING=1"));
    let exit = host.wait_exit(WAIT).expect("the host exits after SIGTERM");
    assert!(exit.success(), "host-app: {exit:?}");
}

#[test]
fn without_notify_socket_the_host_runs_and_stops_as_before() {
    let dir = tempfile::tempdir().expect("temp dir");
    let http_port = free_port();
    let mut cmd = host_run(dir.path(), free_port(), http_port);
    cmd.env_remove("NOTIFY_SOCKET");
    let mut host = Proc::spawn("host-app", cmd);
    host.wait_for_line(WAIT, |l| l.starts_with("host-app: running as"));
    assert_eq!(http_status(http_port, "/auth/setup"), Ok(200));
    host.signal("TERM");
    let exit = host.wait_exit(WAIT).expect("the host exits after SIGTERM");
    assert!(exit.success(), "host-app: {exit:?}");
}

/// The watchdog period the tests give the services: pings every second.
const WATCHDOG_USEC: &str = "2000000";

fn is_ping(message: &str) -> bool {
    message.lines().any(|l| l == "WATCHDOG=1")
}

impl NotifySocket {
    /// Keeps the ping timing.
    fn note(&mut self, message: &str) {
        if is_ping(message) {
            let now = Instant::now();
            if let Some(last) = self.last_ping {
                self.longest_gap = self.longest_gap.max(now - last);
            }
            self.last_ping = Some(now);
        }
    }

    /// The longest wait between pings since the last call (counting the wait for the
    /// next one until now).
    fn take_longest_gap(&mut self) -> Duration {
        let open = self.last_ping.map_or(Duration::ZERO, |last| last.elapsed());
        let longest = self.longest_gap.max(open);
        self.longest_gap = Duration::ZERO;
        longest
    }

    /// Waits for `count` watchdog pings.
    fn pings(&mut self, who: &str, count: usize) {
        for i in 0..count {
            self.wait_for(&format!("{who} ping {i}"), WAIT, is_ping);
        }
    }

    /// Every datagram that arrives within `window` (a bounded read, for "none came").
    fn drain(&mut self, window: Duration) -> Vec<String> {
        self.drain_timed(window)
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    }

    /// As [`NotifySocket::drain`], each datagram with when it arrived.
    fn drain_timed(&mut self, window: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + window;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.note(&message);
                got.push((Instant::now(), message));
            }
        }
        got
    }
}

#[test]
fn watchdog_pings_flow_while_the_data_path_works_and_stop_while_history_is_wedged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_port = free_port();
    let host_cfg = host_config(
        dir.path(),
        Broker::Embedded { port: broker_port },
        free_port(),
    );
    let history = host_cfg.history.path.clone().expect("a SQLite history");
    let host_toml = config::write(&host_cfg, dir.path(), "host-app.toml");
    let mut host_notify = NotifySocket::bind(dir.path(), "host.sock");
    let mut cmd = Command::new(bin("host-app"));
    cmd.arg("run")
        .arg("--config")
        .arg(host_toml)
        .env("NOTIFY_SOCKET", &host_notify.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env_remove("WATCHDOG_PID")
        .env("NO_COLOR", "1");
    let mut host = Proc::spawn("host-app", cmd);
    host_notify.wait_for("host READY=1", WAIT, |m| m.contains("READY=1"));

    // The edge node publishes the plant into the host: both data paths run.
    let plant = Plant::start();
    let mut edge_notify = NotifySocket::bind(dir.path(), "edge.sock");
    let edge_toml = config::write(
        &edge_config(dir.path(), broker_port, plant.port()),
        dir.path(),
        "edge-node.toml",
    );
    let mut cmd = Command::new(bin("edge-node"));
    cmd.arg("--config")
        .arg(&edge_toml)
        .env("NOTIFY_SOCKET", &edge_notify.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env_remove("WATCHDOG_PID")
        .env("NO_COLOR", "1");
    let mut edge = Proc::spawn("edge-node", cmd);
    edge_notify.wait_for("edge READY=1", WAIT, |m| m.contains("READY=1"));
    edge_notify.pings("edge", 3);
    host_notify.pings("host", 3);

    // Another process holds the history database's write lock: commits cannot land while
    // the edge node keeps sending samples, so the writer is wedged and pings stop.
    let db = rusqlite::Connection::open(&history).expect("open the history database");
    db.execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    let wedged = host_notify.wait_for("host wedge status", WAIT * 2, |m| {
        m.contains("STATUS=history writer: no progress")
    });
    assert!(!is_ping(&wedged), "{wedged:?}");
    let quiet = host_notify.drain(Duration::from_secs(3));
    assert!(
        !quiet.iter().any(|m| is_ping(m)),
        "no ping while history is wedged: {quiet:?}"
    );
    // The edge node's own data path is unaffected.
    edge_notify.pings("edge", 1);

    // The lock goes: the writer commits again and the pings resume.
    db.execute_batch("ROLLBACK")
        .expect("release the write lock");
    host_notify.pings("host after the wedge", 2);

    edge.signal("TERM");
    assert!(edge.wait_exit(WAIT).expect("edge exits").success());
    host.signal("TERM");
    assert!(host.wait_exit(WAIT).expect("host exits").success());
}

#[test]
fn edge_watchdog_pings_stop_while_its_store_is_locked_by_another_process_and_resume_after() {
    use system_tests::config::edge::Store;
    let dir = tempfile::tempdir().expect("temp dir");
    let plant = Plant::start();
    // No broker: every scan goes to the store, written by the publisher's loop.
    let mut edge_cfg = edge_config(dir.path(), free_port(), plant.port());
    let store = dir.path().join("store.sqlite");
    edge_cfg.store = Some(Store {
        path: store.clone(),
        ..Store::default()
    });
    let edge_toml = config::write(&edge_cfg, dir.path(), "edge-node.toml");
    let mut notify = NotifySocket::bind(dir.path(), "edge.sock");
    let mut cmd = Command::new(bin("edge-node"));
    cmd.arg("--config")
        .arg(&edge_toml)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env_remove("WATCHDOG_PID")
        .env("NO_COLOR", "1");
    let mut edge = Proc::spawn("edge-node", cmd);
    notify.wait_for("edge READY=1", WAIT, |m| m.contains("READY=1"));
    notify.pings("edge", 3);

    // Another process (a backup, a sqlite3 shell left open) holds the store's write lock:
    // each write into the file waits out SQLite's busy timeout (5 s) in the publisher's
    // loop, longer than the watchdog period, so the pings stop for longer than systemd
    // allows. The watchdog names the first part it finds stalled: the publisher, or a
    // poller whose reports wait for it.
    let db = rusqlite::Connection::open(&store).expect("open the store");
    let steady = notify.take_longest_gap();
    db.execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    let wedged = notify.wait_for("edge wedge status", WAIT * 2, |m| {
        m.starts_with("STATUS=") && m.contains(": no progress; watchdog not pinged")
    });
    assert!(!is_ping(&wedged), "{wedged:?}");
    edge.wait_for_line(WAIT, |l| l.contains("watchdog: no progress; not pinging"));
    edge.wait_for_line(WAIT, |l| l.contains("database is locked"));
    let period = Duration::from_micros(WATCHDOG_USEC.parse().expect("usec"));
    notify.drain(period * 2);
    let longest = notify.take_longest_gap();
    assert!(
        longest > period,
        "pings stop for more than the watchdog period while the store is locked: \
         {longest:?} (before: {steady:?})"
    );

    // The lock goes: the publisher's loop turns again and the pings resume for good.
    db.execute_batch("ROLLBACK")
        .expect("release the write lock");
    drop(db);
    edge.wait_for_line(WAIT, |l| l.contains("watchdog: moving again; pinging"));
    notify.pings("edge after the wedge", 3);
    let after = notify.drain(period * 2);
    assert!(
        after.iter().any(|m| is_ping(m)) && !after.iter().any(|m| m.contains("no progress")),
        "steady pings once the lock is gone: {after:?}"
    );

    edge.signal("TERM");
    assert!(edge.wait_exit(WAIT).expect("edge exits").success());
}

/// `GET /metrics` on a port: whether it answered 200.
/// `host-app run --config host_toml` telling `notify`, once it said READY=1.
fn host_notifying(host_toml: &Path, notify: &mut NotifySocket) -> Proc {
    let mut cmd = Command::new(bin("host-app"));
    cmd.arg("run")
        .arg("--config")
        .arg(host_toml)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("NO_COLOR", "1");
    let host = Proc::spawn("host-app", cmd);
    notify.wait_for("host READY=1", WAIT, |m| m.contains("READY=1"));
    host
}

fn metrics_answer(port: u16) -> bool {
    http_status(port, "/metrics") == Ok(200)
}

#[test]
fn sighup_keeps_the_running_config_on_a_bad_file_and_applies_a_good_one() {
    use system_tests::config::edge::Metrics;
    let dir = tempfile::tempdir().expect("temp dir");
    let plant = Plant::start();
    let (port_a, port_b) = (free_port(), free_port());
    let mut edge_cfg = edge_config(dir.path(), free_port(), plant.port());
    let metrics_on = |port: u16| {
        Some(Metrics {
            listen: format!("127.0.0.1:{port}"),
        })
    };
    edge_cfg.metrics = metrics_on(port_a);
    let edge_toml = config::write(&edge_cfg, dir.path(), "edge-node.toml");
    let mut notify = NotifySocket::bind(dir.path(), "edge.sock");
    let mut cmd = Command::new(bin("edge-node"));
    cmd.arg("--config")
        .arg(&edge_toml)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("NO_COLOR", "1");
    let mut edge = Proc::spawn("edge-node", cmd);
    notify.wait_for("edge READY=1", WAIT, |m| m.contains("READY=1"));
    assert!(metrics_answer(port_a));

    // A file with a problem: refused by key, the service and its listener stay.
    edge_cfg.metrics = Some(Metrics {
        listen: format!("0.0.0.0:{port_b}"),
    });
    config::write(&edge_cfg, dir.path(), "edge-node.toml");
    edge.signal("HUP");
    let refused = notify.wait_for("reload refused", WAIT, |m| m.contains("reload refused"));
    assert!(refused.contains("metrics.listen"), "{refused:?}");
    edge.wait_for_line(WAIT, |l| {
        l.contains("reload refused") && l.contains("metrics.listen")
    });
    assert!(metrics_answer(port_a), "the running listener stays");

    // A good file: [metrics] moves live; a new edge_node_id reconnects under it.
    edge_cfg.metrics = metrics_on(port_b);
    edge_cfg.sparkplug.edge_node_id = "renamed".to_owned();
    config::write(&edge_cfg, dir.path(), "edge-node.toml");
    edge.signal("HUP");
    let applied = notify.wait_for("reloaded", WAIT, |m| m.contains("configuration reloaded"));
    assert!(
        applied.contains("sparkplug.edge_node_id") && applied.contains("reconnect"),
        "{applied:?}"
    );
    assert!(metrics_answer(port_b), "the new listener serves");
    assert!(!metrics_answer(port_a), "the old listener is closed");

    edge.signal("TERM");
    assert!(edge.wait_exit(WAIT).expect("edge exits").success());

    // The host: a bad file on SIGHUP is refused by key, the host keeps serving.
    let mut host_notify = NotifySocket::bind(dir.path(), "host.sock");
    let http_port = free_port();
    let mut host_cfg = host_config(
        dir.path(),
        Broker::Embedded { port: free_port() },
        http_port,
    );
    let host_toml = config::write(&host_cfg, dir.path(), "host-app.toml");
    let mut host = host_notifying(&host_toml, &mut host_notify);
    host_cfg.sparkplug.host_id = "a/b".to_owned();
    config::write(&host_cfg, dir.path(), "host-app.toml");
    host.signal("HUP");
    let refused = host_notify.wait_for("host reload refused", WAIT, |m| {
        m.contains("reload refused")
    });
    assert!(refused.contains("sparkplug.host_id"), "{refused:?}");
    assert_eq!(http_status(http_port, "/auth/setup"), Ok(200));
    host.signal("TERM");
    assert!(host.wait_exit(WAIT).expect("host exits").success());
}

/// An edge node's MQTT options for `user` (password `user-pw`) as node `node` of the
/// test group, on the broker at `port`.
fn edge_login(node: &str, user: &str, password: &str, port: u16) -> rumqttc::MqttOptions {
    let mut options = system_tests::mqtt::client::options(
        &format!("{}:{node}", system_tests::stack::GROUP),
        ([127, 0, 0, 1], port).into(),
    );
    options.set_credentials(user.to_owned(), password.to_owned());
    options
}

#[test]
fn sighup_applies_broker_accounts_and_the_other_connections_go_on() {
    use rumqttc::{ConnectionError, PublishOptions};
    use system_tests::config::host::User;
    use system_tests::mqtt::client::{connect, wait_closed, wait_connack, wait_puback};
    use system_tests::stack::{EDGE_PASSWORD, EDGE_USERNAME, GROUP, NODE};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_port = free_port();
    let mut host_cfg = host_config(
        dir.path(),
        Broker::Embedded { port: broker_port },
        free_port(),
    );
    fn accounts(cfg: &mut system_tests::config::host::HostConfig) -> &mut Vec<User> {
        &mut cfg.broker.embedded.as_mut().expect("embedded").users
    }
    accounts(&mut host_cfg).push(User::edge("line9", "line9-pw", GROUP, &["Line9"]));
    let host_toml = config::write(&host_cfg, dir.path(), "host-app.toml");
    let mut notify = NotifySocket::bind(dir.path(), "host.sock");
    let mut host = host_notifying(&host_toml, &mut notify);
    let (gateway, mut gateway_loop) = rt.block_on(connect(edge_login(
        NODE,
        EDGE_USERNAME,
        EDGE_PASSWORD,
        broker_port,
    )));
    let (_line9, mut line9_loop) = rt.block_on(connect(edge_login(
        "Line9",
        "line9",
        "line9-pw",
        broker_port,
    )));

    // line9 leaves, line10 arrives: applied live, nothing waits for a restart.
    accounts(&mut host_cfg).retain(|u| u.username != "line9");
    accounts(&mut host_cfg).push(User::edge("line10", "line10-pw", GROUP, &["Line10"]));
    config::write(&host_cfg, dir.path(), "host-app.toml");
    host.signal("HUP");
    let applied = notify.wait_for("reloaded", WAIT, |m| m.contains("configuration reloaded"));
    assert!(
        applied.contains("broker accounts applied: 1 added, 1 removed or changed")
            && applied.contains("1 connection(s) ended")
            && !applied.contains("restart"),
        "{applied:?}"
    );
    rt.block_on(async {
        wait_closed(&mut line9_loop).await;
        let (_again, mut again_loop) =
            rumqttc::AsyncClient::builder(edge_login("Line9", "line9", "line9-pw", broker_port))
                .build();
        assert!(
            matches!(
                wait_connack(&mut again_loop).await,
                Err(ConnectionError::ConnectionRefused(_))
            ),
            "line9 logs in no more"
        );
        connect(edge_login("Line10", "line10", "line10-pw", broker_port)).await;
        // The gateway's connection went on through the reload.
        gateway
            .publish(
                format!("spBv1.0/{GROUP}/NDATA/{NODE}"),
                &b"x"[..],
                PublishOptions::at_least_once(),
            )
            .await
            .unwrap();
        wait_puback(&mut gateway_loop).await;
    });
    host.signal("TERM");
    assert!(host.wait_exit(WAIT).expect("host exits").success());
}

/// A TLS handshake with `localhost` on `port`, trusting only `ca`: whether the server's
/// certificate chains to it.
fn handshake(port: u16, ca: &Path) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(WAIT))
        .map_err(|e| e.to_string())?;
    // Bounded: each turn reads or writes a flight, and the read times out.
    for _ in 0..10 {
        if !tls.is_handshaking() {
            return Ok(());
        }
        tls.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Err("handshake did not finish in 10 flights".to_owned())
}

#[test]
fn sighup_serves_renewed_certificates_to_new_connections_and_keeps_them_on_a_bad_file() {
    use system_tests::config::host::{ApiTls, TlsListener};
    use system_tests::pki::Pki;
    let dir = tempfile::tempdir().expect("temp dir");
    let (old, new) = (Pki::generate(), Pki::generate());
    let live = |name: &str| dir.path().join(name);
    let install = |pki: &Pki| {
        for (from, to) in [
            (&pki.server_cert, "panel.pem"),
            (&pki.server_key, "panel.key"),
            (&pki.server_cert, "broker.pem"),
            (&pki.server_key, "broker.key"),
        ] {
            std::fs::copy(from, live(to)).expect("install a certificate file");
        }
    };
    install(&old);
    let (broker_port, tls_port, https_port) = (free_port(), free_port(), free_port());
    let mut host_cfg = host_config(
        dir.path(),
        Broker::Embedded { port: broker_port },
        https_port,
    );
    host_cfg.api.https = Some(true);
    host_cfg.api.tls = Some(ApiTls {
        cert_file: live("panel.pem"),
        key_file: live("panel.key"),
    });
    host_cfg.broker.embedded.as_mut().expect("embedded").tls = Some(TlsListener {
        listen: format!("127.0.0.1:{tls_port}"),
        ..TlsListener::new(&live("broker.pem"), &live("broker.key"))
    });
    let host_toml = config::write(&host_cfg, dir.path(), "host-app.toml");
    let mut notify = NotifySocket::bind(dir.path(), "host.sock");
    let mut host = host_notifying(&host_toml, &mut notify);
    for port in [https_port, tls_port] {
        assert_eq!(handshake(port, &old.ca), Ok(()), "port {port}");
        assert!(handshake(port, &new.ca).is_err(), "port {port}");
    }

    // Renewed files, then SIGHUP: new connections get the new certificates.
    install(&new);
    host.signal("HUP");
    let renewed = notify.wait_for("certificates renewed", WAIT, |m| {
        m.contains("api.tls certificate renewed")
    });
    assert!(
        renewed.contains("broker.embedded.tls certificate renewed"),
        "{renewed:?}"
    );
    host.wait_for_line(WAIT, |l| {
        l.contains("new certificate served to new connections")
    });
    for port in [https_port, tls_port] {
        assert_eq!(handshake(port, &new.ca), Ok(()), "port {port}");
        assert!(handshake(port, &old.ca).is_err(), "port {port}");
    }

    // A key that does not match its certificate: refused by key, the running one stays.
    std::fs::copy(&old.server_key, live("panel.key")).expect("write a mismatched key");
    host.signal("HUP");
    let kept = notify.wait_for("certificate kept", WAIT, |m| {
        m.contains("api.tls.key_file not loaded")
    });
    assert!(
        kept.contains("running on the previous certificate"),
        "{kept:?}"
    );
    host.wait_for_line(WAIT, |l| {
        l.contains("certificate not loaded; the running one stays")
            && l.contains("api.tls.key_file")
    });
    assert_eq!(handshake(https_port, &new.ca), Ok(()));
    assert_eq!(handshake(tls_port, &new.ca), Ok(()));

    host.signal("TERM");
    assert!(host.wait_exit(WAIT).expect("host exits").success());
}
