//! The whole product as child processes on loopback, for end-to-end tests: the plant
//! simulator, a host application (embedded broker or an external one) and an edge node
//! polling the simulator's built-in plant. Configs are written into the test's temp dir
//! with ports picked by the OS; the host's API is read with [`Api`], the MQTT traffic with
//! [`crate::mqtt::Watcher`].

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::free_port;
use crate::process::{Proc, bin};

/// The Sparkplug group of the test edge node.
pub const GROUP: &str = "e2e";
/// The test edge node's id.
pub const NODE: &str = "gw-1";
/// The test host's Primary Host id (the edge node waits for its STATE).
pub const HOST_ID: &str = "e2e-host";
/// Bounds every wait of the end-to-end tests.
pub const WAIT: Duration = Duration::from_secs(15);

/// Polls `probe` every 100 ms until it returns `Some`, at most `timeout`.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`poll_until`], panicking naming `what` when `probe` never says yes.
pub fn wait_until<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, probe).unwrap_or_else(|| panic!("{what}: not within {timeout:?}"))
}

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
        let found = poll_until(WAIT, || {
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
        Self::spawn(None)
    }

    /// `plant-sim` serving the plant of a config file instead of the built-in one.
    pub fn start_config(config: &Path) -> Plant {
        Self::spawn(Some(config))
    }

    fn spawn(config: Option<&Path>) -> Plant {
        let mut cmd = Command::new(bin("plant-sim"));
        cmd.args(["--listen", "127.0.0.1:0"]);
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
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

    /// Runs one stdin command and returns what follows `ok` in its reply; panics on
    /// `error: ...`.
    pub fn command(&mut self, command: &str) -> String {
        self.proc.send_line(command);
        let reply = self.proc.wait_for_line(WAIT, |l| {
            l == "ok" || l.starts_with("ok ") || l.starts_with("error:")
        });
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

/// The host's config file for `broker`, history in `dir`, its API on `http_port`.
pub fn host_config(dir: &Path, broker: Broker, http_port: u16) -> String {
    let broker_section = match broker {
        Broker::Embedded { port } => format!(
            "[broker]\nmode = \"embedded\"\n\n[broker.embedded.plain]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"
        ),
        Broker::External { port } => format!(
            "[broker]\nmode = \"external\"\n\n[broker.external]\nhost = \"127.0.0.1\"\nport = {port}\n"
        ),
    };
    format!(
        r#"{broker_section}
[history]
path = "{history}"
flush_interval_ms = 100

[sparkplug]
host_id = "{HOST_ID}"
reorder_timeout_ms = 500
rebirth_min_interval_ms = 1000

[api]
listen = "127.0.0.1:{http_port}"
"#,
        history = dir.join("history.db").display(),
    )
}

/// `host-app run` with [`host_config`].
pub struct HostApp {
    proc: Proc,
    config: PathBuf,
    http: SocketAddr,
    broker: Broker,
}

impl HostApp {
    /// Writes the config into `dir` and starts the host on `broker`, the API on a free port.
    pub fn start(dir: &Path, broker: Broker) -> HostApp {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = dir.join("host-app.toml");
        std::fs::write(&config, host_config(dir, broker, http.port()))
            .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        Self::start_config(config, broker, http.port())
    }

    /// Starts the host with a config file already written, which uses `broker` and
    /// serves its API on `http_port`.
    pub fn start_config(config: PathBuf, broker: Broker, http_port: u16) -> HostApp {
        let proc = Self::spawn(&config);
        HostApp {
            proc,
            config,
            http: SocketAddr::from(([127, 0, 0, 1], http_port)),
            broker,
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

    pub fn api(&self) -> Api {
        Api { addr: self.http }
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

/// The test edge node's config: the built-in plant's three units, small periods so state
/// changes show within a second or two.
pub fn edge_config(dir: &Path, broker_port: u16, plant_port: u16) -> String {
    format!(
        r#"[sparkplug]
group_id = "{GROUP}"
edge_node_id = "{NODE}"
primary_host_id = "{HOST_ID}"
rebirth_debounce_ms = 0
state_file = "{state}"
metrics_period_ms = 60000

[mqtt]
keep_alive_s = 5
startup_delay_max_ms = 0
backoff_min_ms = 100
backoff_max_ms = 500
connect_timeout_ms = 2000

[[mqtt.servers]]
host = "127.0.0.1"
port = {broker_port}

[[modbus.scan_classes]]
name = "fast"
period_ms = 100

[[modbus.scan_classes]]
name = "normal"
period_ms = 250

[[modbus.devices]]
name = "tank-farm"
host = "127.0.0.1"
port = {plant_port}
unit_id = 1
timeout_ms = 300
offline_after_failures = 2
reconnect_min_ms = 100
reconnect_max_ms = 500

[[modbus.devices.tags]]
name = "Tank 1/Level"
table = "input"
address = 0
type = "f32"
units = "m"
scan_class = "fast"

[[modbus.devices.tags]]
name = "Tank 1/Inflow"
table = "input"
address = 2
type = "f32"
units = "m3/h"
scan_class = "normal"

[[modbus.devices.tags]]
name = "Tank 1/Start Level"
table = "holding"
address = 1
type = "f32"
units = "m"
access = "read_write"
scan_class = "normal"

[[modbus.devices]]
name = "compressor"
host = "127.0.0.1"
port = {plant_port}
unit_id = 2
timeout_ms = 300
offline_after_failures = 2
reconnect_min_ms = 100
reconnect_max_ms = 500

[[modbus.devices.tags]]
name = "Run Seconds"
table = "input"
address = 6
type = "u32"
units = "s"
scan_class = "normal"

[[modbus.devices.tags]]
name = "Suction Pressure"
table = "input"
address = 0
type = "f32"
units = "bar"
scan_class = "normal"

[[modbus.devices]]
name = "power-meter"
host = "127.0.0.1"
port = {plant_port}
unit_id = 3
timeout_ms = 300
offline_after_failures = 2
reconnect_min_ms = 100
reconnect_max_ms = 500

[[modbus.devices.tags]]
name = "Voltage L1"
table = "input"
address = 0
type = "f32"
units = "V"
scan_class = "normal"
"#,
        state = dir.join("edge-node.bdseq").display(),
    )
}

/// `edge-node --config FILE`.
pub struct EdgeNode {
    proc: Proc,
    config: PathBuf,
}

impl EdgeNode {
    /// Writes [`edge_config`] into `dir` and starts the node.
    pub fn start(dir: &Path, broker_port: u16, plant_port: u16) -> EdgeNode {
        let config = dir.join("edge-node.toml");
        std::fs::write(&config, edge_config(dir, broker_port, plant_port))
            .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
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

/// A minimal HTTP/1.1 client for the host's JSON API (one request per connection).
#[derive(Debug, Clone, Copy)]
pub struct Api {
    addr: SocketAddr,
}

impl Api {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One request; the status and body, or why there is none.
    pub fn request(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        use std::io::{Read as _, Write as _};
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("send {method} {path}: {e}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .map_err(|e| format!("read {method} {path}: {e}"))?;
        let text = String::from_utf8(raw).map_err(|e| format!("{method} {path}: {e}"))?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("{method} {path}: no end of headers in {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
        let chunked = head.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
        });
        let body = if chunked {
            dechunk(body)?
        } else {
            body.to_owned()
        };
        Ok((status, body))
    }

    /// Reads `/api/events` (server-sent events) until an event `accept` takes, at most
    /// `timeout`; the event's JSON, or why there is none.
    pub fn wait_event(
        &self,
        timeout: Duration,
        accept: impl Fn(&Json) -> bool,
    ) -> Result<Json, String> {
        use std::io::{BufRead as _, BufReader, Write as _};
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        write!(
            stream,
            "GET /api/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            self.addr
        )
        .map_err(|e| format!("send GET /api/events: {e}"))?;
        let deadline = Instant::now() + timeout;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return Err("/api/events: stream ended".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("/api/events: {e}")),
            }
            // Chunk-size lines carry no "data:" prefix: skipped like comments.
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            // An event split over two chunks does not parse: skip it, others follow.
            let Ok(event) = serde_json::from_str::<Json>(data.trim()) else {
                continue;
            };
            if accept(&event) {
                return Ok(event);
            }
        }
        Err(format!("/api/events: no such event within {timeout:?}"))
    }

    /// GET `path`, expecting 200 and JSON.
    pub fn get(&self, path: &str) -> Result<Json, String> {
        let (status, body) = self.request("GET", path, "")?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e} in {body:?}"))
    }

    /// POST a JSON body; the status and the JSON answer.
    pub fn post(&self, path: &str, body: &Json) -> (u16, Json) {
        let (status, text) = self
            .request("POST", path, &body.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let json =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e} in {text:?}"));
        (status, json)
    }

    /// `/api/tree`, once the API answers.
    pub fn tree(&self) -> Tree {
        Tree(wait_until("GET /api/tree", WAIT, || {
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
}

fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| "chunk size line missing".to_owned())?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| "chunk shorter than its size".to_owned())?;
        out.push_str(chunk);
        body = rest.get(size + 2..).unwrap_or("");
    }
}

/// Percent-encodes a query value (everything but the unreserved characters).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
