//! The whole product as child processes on loopback, for end-to-end tests: the plant
//! simulator, a host application (embedded broker or an external one) and an edge node
//! polling the simulator's built-in plant. Configs are written into the test's temp dir
//! with ports picked by the OS; the host's API is read with [`crate::http::Api`], the MQTT traffic with
//! [`crate::mqtt::Watcher`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;

use crate::config::{
    self,
    edge::{Device, EdgeConfig, ScanClass, Server, Tag},
    host::{self, Anonymous, HostConfig, User},
};
use crate::free_port;
use crate::http::{Api, percent_encode};
use crate::process::{Proc, bin};
use crate::wait;

/// The Sparkplug group of the test edge node.
pub const GROUP: &str = "e2e";
/// The test edge node's id.
pub const NODE: &str = "gw-1";
/// The test host's Primary Host id (the edge node waits for its STATE).
pub const HOST_ID: &str = "e2e-host";
/// The admin account every stack's host has.
pub const ADMIN: &str = "admin";
/// The test edge node's account at the embedded broker.
pub const EDGE_USERNAME: &str = "edge-gw-1";
pub const EDGE_PASSWORD: &str = "edge-secret";
/// A scripted edge node of [`GROUP`] that [`publish_history`] logs in as.
pub const RECORDER: &str = "recorder";
pub const RECORDER_USERNAME: &str = "edge-recorder";
pub const RECORDER_PASSWORD: &str = "recorder-secret";
/// Bounds every wait of the end-to-end tests.
pub const WAIT: Duration = Duration::from_secs(15);

/// The plant, a host and an edge node started together in one temp dir.
pub struct Stack {
    pub plant: Plant,
    pub host: HostApp,
    pub edge: EdgeNode,
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// The host with its embedded broker on a free port.
    pub fn start() -> Stack {
        Self::start_with(Broker::Embedded { port: free_port() })
    }

    pub fn start_with(broker: Broker) -> Stack {
        Self::start_via(broker, broker.port())
    }

    /// Like [`Stack::start_with`], the edge node reaching the broker at `edge_port`
    /// (e.g. through a proxy) instead of its own port.
    pub fn start_via(broker: Broker, edge_port: u16) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let plant = Plant::start();
        let host = HostApp::start(dir.path(), broker);
        let edge = EdgeNode::start(dir.path(), edge_port, plant.port());
        Stack {
            plant,
            host,
            edge,
            dir,
        }
    }

    pub fn api(&self) -> Api {
        self.host.api()
    }

    /// Polls `/api/tree` until `ready` accepts it; panics with the last tree and every
    /// process's output when it never does.
    pub fn wait_tree(&mut self, what: &str, ready: impl Fn(&Tree) -> bool) -> Tree {
        let api = self.api();
        let mut last = None;
        let found = wait::poll(WAIT, || {
            let tree = api.get("/api/tree").ok().map(Tree);
            let hit = tree.as_ref().is_some_and(&ready);
            last = tree;
            if hit { last.clone() } else { None }
        });
        found.unwrap_or_else(|| {
            panic!(
                "{what}: not within {WAIT:?}\nlast tree: {}\n{}",
                last.map(|t| t.0.to_string()).unwrap_or_default(),
                self.dump()
            )
        })
    }

    /// Waits for an edge node log line containing every one of `parts`; panics with
    /// every process's output when none comes.
    pub fn wait_for_edge_log(&mut self, parts: &[&str]) -> String {
        match self.edge.wait_for_log(parts) {
            Some(line) => line,
            None => panic!(
                "no edge-node log line with {parts:?} within {WAIT:?}\n{}",
                self.dump()
            ),
        }
    }

    /// Every process's output so far, for a failure message.
    pub fn dump(&mut self) -> String {
        format!(
            "--- host-app ---\n{}\n--- edge-node ---\n{}",
            self.host.output().join("\n"),
            self.edge.output().join("\n")
        )
    }
}

/// `plant-sim` serving its built-in plant (units 1 tank farm, 2 compressor, 3 power meter)
/// on an OS-picked port, with its fault commands on stdin.
pub struct Plant {
    proc: Proc,
    port: u16,
}

impl Plant {
    pub fn start() -> Plant {
        Self::start_args::<&str>(&[])
    }

    /// `plant-sim` serving the plant of a config file instead of the built-in one.
    pub fn start_config(config: &Path) -> Plant {
        Self::start_args(&["--config".as_ref(), config.as_os_str()])
    }

    /// `plant-sim --listen 127.0.0.1:0 ARGS`.
    pub fn start_args<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Plant {
        let mut cmd = Command::new(bin("plant-sim"));
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        let mut proc = Proc::spawn_with_stdin("plant-sim", cmd);
        let line = proc.wait_for_line(WAIT, |l| l.starts_with("listening on "));
        let port = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("plant-sim: no port in {line:?}"));
        Plant { proc, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Runs one stdin command and returns its reply line (`ok ...` or `error: ...`).
    pub fn reply(&mut self, command: &str) -> String {
        self.proc.send_line(command);
        self.proc.wait_for_line(WAIT, |l| {
            l == "ok" || l.starts_with("ok ") || l.starts_with("error:")
        })
    }

    /// Ends the command input; the plant keeps serving.
    pub fn close_stdin(&mut self) {
        self.proc.close_stdin();
    }

    /// SIGTERM; the exit status, `None` when it had to be killed.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.terminate(WAIT)
    }

    /// Runs one stdin command and returns what follows `ok` in its reply; panics on
    /// `error: ...`.
    pub fn command(&mut self, command: &str) -> String {
        let reply = self.reply(command);
        match reply.strip_prefix("ok") {
            Some(rest) => rest.trim().to_owned(),
            None => panic!("plant-sim `{command}`: {reply}"),
        }
    }

    /// Raw register (or bit) values, read with `get UNIT TABLE ADDR COUNT`.
    pub fn get(&mut self, unit: u8, table: &str, address: u16, count: u16) -> Vec<u16> {
        let reply = self.command(&format!("get {unit} {table} {address} {count}"));
        let values: Vec<u16> = reply
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter_map(|v| v.parse().ok())
            .collect();
        assert_eq!(
            values.len(),
            usize::from(count),
            "plant-sim get: {reply:?} is not {count} values"
        );
        values
    }
}

/// Where the host finds its broker.
#[derive(Debug, Clone, Copy)]
pub enum Broker {
    /// Its own embedded broker, listening on this port.
    Embedded { port: u16 },
    /// An MQTT broker already running on this loopback port.
    External { port: u16 },
}

impl Broker {
    pub fn port(self) -> u16 {
        match self {
            Broker::Embedded { port } | Broker::External { port } => port,
        }
    }
}

/// The host's config for `broker`, history in `dir`, its API on `http_port`. The embedded
/// broker has the host's account and the test edge node's ([`edge_login`]); anonymous
/// clients (the tests' watchers) may only read.
pub fn host_config(dir: &Path, broker: Broker, http_port: u16) -> HostConfig {
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let broker = match broker {
        Broker::Embedded { port } => host::Broker::embedded(loopback(port))
            .host_account(HOST_ID)
            .user(User::edge(EDGE_USERNAME, EDGE_PASSWORD, GROUP, &[NODE]))
            .user(User::edge(
                RECORDER_USERNAME,
                RECORDER_PASSWORD,
                GROUP,
                &[RECORDER],
            ))
            .anonymous(Anonymous::reader()),
        Broker::External { port } => host::Broker::external(loopback(port)),
    };
    let mut config = HostConfig::new(HOST_ID, broker, dir);
    config.history.flush_interval_ms = Some(100);
    config.sparkplug.reorder_timeout_ms = Some(500);
    config.sparkplug.rebirth_min_interval_ms = Some(1000);
    config.api.listen = loopback(http_port).to_string();
    config
}

/// `host-app run` with [`host_config`], and account `admin` (password
/// [`crate::http::TEST_PASSWORD`]) made with `host-app user add` before it starts.
pub struct HostApp {
    proc: Proc,
    config: PathBuf,
    http: SocketAddr,
    broker: Broker,
    /// The admin's session, opened at the first [`HostApp::api`].
    session: std::sync::OnceLock<Api>,
}

impl HostApp {
    /// Writes the config into `dir` and starts the host on `broker`, the API on a free port.
    pub fn start(dir: &Path, broker: Broker) -> HostApp {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = config::write(&host_config(dir, broker, http.port()), dir, "host-app.toml");
        Self::start_config(config, broker, http.port())
    }

    /// [`HostApp::start`] for first-run tests ([`HostApp::start_first_run`]): no account,
    /// the setup token in `dir`'s `setup-token` file.
    pub fn start_without_accounts(dir: &Path, broker: Broker) -> HostApp {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = config::write(&host_config(dir, broker, http.port()), dir, "host-app.toml");
        Self::start_first_run(config, broker, http.port())
    }

    /// Starts the host with a config file already written, which uses `broker` and
    /// serves its API on `http_port`; makes [`ADMIN`] unless the accounts have it (those
    /// of a PostgreSQL history are shared by every instance on it).
    pub fn start_config(config: PathBuf, broker: Broker, http_port: u16) -> HostApp {
        let host_app = bin("host-app");
        if !crate::http::has_user(&host_app, &config, ADMIN) {
            crate::http::add_user(&host_app, &config, ADMIN, "admin");
        }
        Self::start_first_run(config, broker, http_port)
    }

    /// Like [`HostApp::start_config`] with no account yet: the host serves only setup
    /// and logs its one-time setup link (first-run tests). [`HostApp::api`] works once
    /// setup created [`ADMIN`] with [`crate::http::TEST_PASSWORD`].
    pub fn start_first_run(config: PathBuf, broker: Broker, http_port: u16) -> HostApp {
        let proc = Self::spawn(&config);
        HostApp {
            proc,
            config,
            http: SocketAddr::from(([127, 0, 0, 1], http_port)),
            broker,
            session: std::sync::OnceLock::new(),
        }
    }

    fn spawn(config: &Path) -> Proc {
        let mut cmd = Command::new(bin("host-app"));
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1");
        let mut proc = Proc::spawn("host-app", cmd);
        proc.wait_for_line(WAIT, |l| l.starts_with("host-app: running as "));
        proc
    }

    pub fn broker(&self) -> Broker {
        self.broker
    }

    /// The host process's id (to read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// The API as the admin (logged in once; the session outlives restarts).
    pub fn api(&self) -> Api {
        self.session
            .get_or_init(|| {
                Api::login(self.http, ADMIN, crate::http::TEST_PASSWORD)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .clone()
    }

    /// The API without credentials.
    pub fn anonymous(&self) -> Api {
        Api::new(self.http)
    }

    /// SIGTERM, and asserts a clean exit.
    pub fn stop(&mut self) {
        let status = self.proc.terminate(WAIT);
        assert!(
            status.is_some_and(|s| s.success()),
            "host-app did not stop cleanly on SIGTERM ({status:?}); output:\n{}",
            self.proc.output().join("\n")
        );
    }

    /// Starts again with the same config (same ports, same history file).
    pub fn restart(&mut self) {
        self.proc = Self::spawn(&self.config);
    }

    pub fn output(&mut self) -> Vec<String> {
        self.proc.output().to_vec()
    }
}

/// Logs the test edge node in with its account ([`EDGE_USERNAME`]), its password written
/// to `dir/edge-node.password`. Brokers without accounts (Mosquitto in these tests) ignore it.
pub fn edge_login(config: &mut EdgeConfig, dir: &Path) {
    let password_file = dir.join("edge-node.password");
    std::fs::write(&password_file, EDGE_PASSWORD)
        .unwrap_or_else(|e| panic!("write {}: {e}", password_file.display()));
    config.mqtt.username = Some(EDGE_USERNAME.to_owned());
    config.mqtt.password_file = Some(password_file);
}

/// The test edge node's config: the built-in plant's three units, small periods so state
/// changes show within a second or two; logged in with [`edge_login`].
pub fn edge_config(dir: &Path, broker_port: u16, plant_port: u16) -> EdgeConfig {
    let mut config = EdgeConfig::new(GROUP, NODE);
    edge_login(&mut config, dir);
    config.sparkplug.primary_host_id = Some(HOST_ID.to_owned());
    config.sparkplug.state_file = Some(dir.join("edge-node.bdseq"));
    config.mqtt.backoff_min_ms = 100;
    config.mqtt.backoff_max_ms = 500;
    config.mqtt.servers = vec![Server::loopback(broker_port)];
    config.modbus.scan_classes = vec![
        ScanClass::new("fast", 100.0),
        ScanClass::new("normal", 250.0),
    ];
    let device = |name: &str, unit| Device::tcp(name, plant_port, unit).timing(300, 2, (100, 500));
    let input = |name: &str, address, data_type: &str, units: &str, scan_class: &str| {
        Tag::new(name, "input", address, data_type)
            .units(units)
            .scan_class(scan_class)
    };
    config.modbus.devices = vec![
        device("tank-farm", 1)
            .tag(input("Tank 1/Level", 0, "f32", "m", "fast"))
            .tag(input("Tank 1/Inflow", 2, "f32", "m3/h", "normal"))
            .tag(
                Tag::new("Tank 1/Start Level", "holding", 1, "f32")
                    .units("m")
                    .writable()
                    .scan_class("normal"),
            ),
        device("compressor", 2)
            .tag(input("Run Seconds", 6, "u32", "s", "normal"))
            .tag(input("Suction Pressure", 0, "f32", "bar", "normal")),
        device("power-meter", 3).tag(input("Voltage L1", 0, "f32", "V", "normal")),
    ];
    config
}

/// `edge-node --config FILE`.
pub struct EdgeNode {
    proc: Proc,
    config: PathBuf,
}

impl EdgeNode {
    /// Writes [`edge_config`] into `dir` and starts the node.
    pub fn start(dir: &Path, broker_port: u16, plant_port: u16) -> EdgeNode {
        let config = config::write(
            &edge_config(dir, broker_port, plant_port),
            dir,
            "edge-node.toml",
        );
        Self::start_config(config)
    }

    /// Starts the node with a config file already written.
    pub fn start_config(config: PathBuf) -> EdgeNode {
        let proc = Self::spawn(&config);
        EdgeNode { proc, config }
    }

    fn spawn(config: &Path) -> Proc {
        let mut cmd = Command::new(bin("edge-node"));
        cmd.arg("--config").arg(config).env("NO_COLOR", "1");
        Proc::spawn("edge-node", cmd)
    }

    /// SIGKILL: no NDEATH from the node, only its will.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts again with the same config (same bdSeq file).
    pub fn restart(&mut self) {
        self.proc = Self::spawn(&self.config);
    }

    /// Waits for a log line containing every one of `parts`; `None` when none comes in time.
    pub fn wait_for_log(&mut self, parts: &[&str]) -> Option<String> {
        self.wait_for_log_within(WAIT, parts)
    }

    /// [`EdgeNode::wait_for_log`] with its own bound.
    pub fn wait_for_log_within(&mut self, timeout: Duration, parts: &[&str]) -> Option<String> {
        self.proc
            .try_wait_for_line(timeout, |l| parts.iter().all(|p| l.contains(p)))
    }

    pub fn output(&mut self) -> Vec<String> {
        self.proc.output().to_vec()
    }
}

impl Api {
    /// `/api/tree`, once the API answers.
    pub fn tree(&self) -> Tree {
        Tree(wait::until("GET /api/tree", WAIT, || {
            self.get("/api/tree").ok()
        }))
    }

    /// `/api/history` of `metric` (`group/node[/device]:name`) over `from..to` ms.
    pub fn history(&self, metric: &str, from: u64, to: u64) -> Json {
        let path = format!(
            "/api/history?metric={}&from={from}&to={to}&points=10000",
            percent_encode(metric)
        );
        self.get(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every sample of `metric` in `from..to`, raw (each one's `last` object): the API
    /// downsamples, so each range is asked for in buckets narrow enough to hold one sample,
    /// and a bucket holding more is asked for again, narrower (the host keeps one sample
    /// per metric and millisecond).
    pub fn raw_history(&self, metric: &str, from: u64, to: u64) -> Vec<Json> {
        // 10,000 buckets of 100 ms: one sample each at 1 Hz.
        const SPAN_MS: u64 = 1_000_000;
        let mut out = Vec::new();
        let mut start = from;
        while start < to {
            let end = (start + SPAN_MS).min(to);
            self.collect_buckets(metric, start, end, &mut out);
            start = end;
        }
        out
    }

    fn collect_buckets(&self, metric: &str, from: u64, to: u64, out: &mut Vec<Json>) {
        let answer = self.history(metric, from, to);
        let buckets = answer["points"]
            .as_array()
            .unwrap_or_else(|| panic!("{metric}: no points in {answer}"));
        for bucket in buckets {
            let field = |name: &str| {
                bucket[name]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{metric}: bucket without `{name}`: {bucket}"))
            };
            let (count, start, end) = (field("count"), field("start"), field("end"));
            if count == 1 {
                out.push(bucket["last"].clone());
            } else {
                assert!(
                    end - start > 1,
                    "{metric}: {count} samples in the 1 ms bucket {start}..{end}: {bucket}"
                );
                self.collect_buckets(metric, start, end, out);
            }
        }
    }
}

/// A `/api/tree` answer with lookups by id.
#[derive(Debug, Clone)]
pub struct Tree(pub Json);

impl Tree {
    pub fn node(&self, group: &str, node: &str) -> Option<&Json> {
        self.0["groups"]
            .as_array()?
            .iter()
            .find(|g| g["group"] == group)?["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["node"] == node)
    }

    pub fn device(&self, group: &str, node: &str, device: &str) -> Option<&Json> {
        self.node(group, node)?["devices"]
            .as_array()?
            .iter()
            .find(|d| d["device"] == device)
    }

    /// A metric of `device` (or of the node itself when `device` is `None`).
    pub fn metric(
        &self,
        group: &str,
        node: &str,
        device: Option<&str>,
        name: &str,
    ) -> Option<&Json> {
        let owner = match device {
            Some(device) => self.device(group, node, device)?,
            None => self.node(group, node)?,
        };
        owner["metrics"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == name)
    }

    /// The test node's own state (`"online"` / `"offline"`).
    pub fn node_state(&self) -> Option<&str> {
        self.node(GROUP, NODE)?["state"].as_str()
    }

    /// The test node's bdSeq, as the host took it from the NBIRTH.
    pub fn bd_seq(&self) -> Option<u64> {
        self.node(GROUP, NODE)?["bdSeq"].as_u64()
    }

    pub fn device_state(&self, device: &str) -> Option<&str> {
        self.device(GROUP, NODE, device)?["state"].as_str()
    }

    /// The qualities of every metric of `device`.
    pub fn device_qualities(&self, device: &str) -> Vec<i64> {
        self.device(GROUP, NODE, device)
            .and_then(|d| d["metrics"].as_array())
            .map(|ms| ms.iter().filter_map(|m| m["quality"].as_i64()).collect())
            .unwrap_or_default()
    }
}

/// Milliseconds since the epoch, as Sparkplug timestamps are.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The scripted edge node [`GROUP`]/[`RECORDER`], logged in with its account, born on the
/// broker at `broker`, publishes `metric` (Double) every `step_ms` over `from..to` as
/// historical NDATA, 1,000 samples a message: a sine of period 1 h, amplitude 10, with one
/// spike of +50 halfway through.
pub async fn publish_history(
    broker: SocketAddr,
    metric: &str,
    (from, to, step_ms): (u64, u64, u64),
) {
    use sparkplug::Metric;
    let mut edge = crate::mqtt::ScriptedEdge::connect_as(
        broker,
        (GROUP, RECORDER),
        0,
        Some((RECORDER_USERNAME, RECORDER_PASSWORD)),
    )
    .await;
    edge.nbirth(vec![Metric::new(metric, 0.0f64).with_timestamp(to)])
        .await;
    let spike = from + (to - from) / 2 / step_ms * step_ms;
    let times: Vec<u64> = (from..to).step_by(step_ms as usize).collect();
    for chunk in times.chunks(1000) {
        let metrics = chunk
            .iter()
            .map(|&ts| {
                let t = (ts - from) as f64 / 3_600_000.0 * std::f64::consts::TAU;
                let value = t.sin() * 10.0 + if ts == spike { 50.0 } else { 0.0 };
                Metric::new(metric, value).with_timestamp(ts).historical()
            })
            .collect();
        edge.ndata(metrics).await;
    }
    edge.disconnect().await;
}
