//! The fleet simulator: N Sparkplug edge nodes with M tags each on one tokio runtime, for
//! load tests of the hosts (the `fleet-sim` binary is its command line).
//!
//! Each node keeps what the spec asks of an edge node: an NDEATH will carrying the bdSeq of
//! the connection, an NBIRTH with seq 0, that bdSeq, `Node Control/Rebirth` and every tag
//! with its alias; NDATA by alias with seq 1, 2, ... wrapping at 255; a new NBIRTH when an
//! NCMD asks for a Rebirth; on a lost connection a new bdSeq and the next server of its
//! list. Node `k` starts on server `k mod S` and belongs to group `k mod G`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, LastWill, MqttOptions, Outgoing, PublishOptions, QoS};
use sparkplug::{BdSeq, Metric, MetricValue, Payload, Seq, Value};
use tokio::sync::mpsc;

use crate::stack::now_ms;

/// The metric a host writes to ask for a Rebirth.
const REBIRTH: &str = "Node Control/Rebirth";
/// The pause before reconnecting after a lost connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// What the fleet looks like and where it publishes.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// MQTT servers; nodes are spread over them and move to the next on a lost connection.
    pub servers: Vec<SocketAddr>,
    /// Groups; nodes are spread over them.
    pub groups: Vec<String>,
    pub nodes: usize,
    pub tags: usize,
    /// NDATA per node per second (every tag changes in each).
    pub rate_hz: f64,
    /// Node ids are this prefix and a number (`sim0000`, `sim0001`...).
    pub node_prefix: String,
    /// Login for every node (username, password).
    pub login: Option<(String, String)>,
}

impl FleetOptions {
    /// Node `k`'s (group, node id).
    pub fn node(&self, k: usize) -> (String, String) {
        (
            self.groups[k % self.groups.len()].clone(),
            format!("{}{k:04}", self.node_prefix),
        )
    }
}

/// What the fleet has sent so far (shared by every node task).
#[derive(Debug, Default)]
pub struct Counters {
    /// Tag values written to the network in NDATA (births not counted).
    pub samples: AtomicU64,
    /// NDATA messages written to the network.
    pub ndata: AtomicU64,
    pub births: AtomicU64,
    /// Connections accepted (the first of each node included).
    pub connects: AtomicU64,
    /// NCMDs that asked for a Rebirth.
    pub rebirths: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub samples: u64,
    pub ndata: u64,
    pub births: u64,
    pub connects: u64,
    pub rebirths: u64,
}

impl Counters {
    pub fn report(&self) -> Report {
        Report {
            samples: self.samples.load(Ordering::Relaxed),
            ndata: self.ndata.load(Ordering::Relaxed),
            births: self.births.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            rebirths: self.rebirths.load(Ordering::Relaxed),
        }
    }
}

/// Starts every node on the current runtime; they run until the returned tasks are
/// aborted (or the runtime stops).
pub fn spawn(options: FleetOptions, counters: Arc<Counters>) -> Vec<tokio::task::JoinHandle<()>> {
    let options = Arc::new(options);
    (0..options.nodes)
        .map(|k| {
            let options = options.clone();
            let counters = counters.clone();
            tokio::spawn(async move { SimNode::new(&options, k, counters).run(&options).await })
        })
        .collect()
}

/// What one node's connection reports to the node.
enum Link {
    Connected,
    /// An NCMD payload.
    Command(bytes::Bytes),
    /// A PUBLISH written to the network.
    Written,
    Lost,
}

/// What a message put on the wire counts as.
#[derive(Clone, Copy)]
enum Sent {
    Birth,
    Data,
}

/// One simulated edge node.
struct SimNode {
    group: String,
    node: String,
    server: usize,
    bd_seq: BdSeq,
    seq: Seq,
    /// The NDATA payload, its metrics updated in place for each message.
    data: Payload,
    buffer: Vec<u8>,
    tick: u64,
    /// What each queued PUBLISH counts as, in order, until it is written.
    queued: VecDeque<Sent>,
    counters: Arc<Counters>,
}

impl SimNode {
    fn new(options: &FleetOptions, k: usize, counters: Arc<Counters>) -> SimNode {
        let (group, node) = options.node(k);
        let mut data = Payload::new(0);
        data.metrics = (0..options.tags)
            .map(|i| Metric::aliased(alias(i), 0.0f64))
            .collect();
        SimNode {
            group,
            node,
            server: k % options.servers.len(),
            bd_seq: BdSeq::new(0),
            seq: Seq::new(0),
            data,
            buffer: Vec::with_capacity(16 * options.tags + 64),
            tick: 0,
            queued: VecDeque::new(),
            counters,
        }
    }

    fn topic(&self, kind: &str) -> String {
        format!("spBv1.0/{}/{kind}/{}", self.group, self.node)
    }

    /// Connection after connection, each with the next bdSeq and the next server.
    async fn run(mut self, options: &FleetOptions) {
        let period = Duration::from_secs_f64(1.0 / options.rate_hz);
        loop {
            self.session(options, period).await;
            self.bd_seq = self.bd_seq.next();
            self.server = (self.server + 1) % options.servers.len();
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    }

    /// One connection: returns when it is lost.
    async fn session(&mut self, options: &FleetOptions, period: Duration) {
        let server = options.servers[self.server];
        let mut mqtt = MqttOptions::new(
            format!("{}:{}", self.group, self.node),
            (server.ip().to_string(), server.port()),
        );
        mqtt.set_keep_alive(30);
        mqtt.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((username, password)) = &options.login {
            mqtt.set_credentials(username.clone(), password.clone());
        }
        let death = Payload::new(now_ms()).with_metric(self.bd_seq.to_metric(now_ms()));
        mqtt.set_last_will(LastWill::new(
            self.topic("NDEATH"),
            death.encode_to_vec().unwrap_or_default(),
            QoS::AtLeastOnce,
            false,
        ));
        let (client, mut eventloop) = AsyncClient::builder(mqtt).capacity(64).build();
        let (tx, mut link) = mpsc::channel(64);
        let ncmd = self.topic("NCMD");
        let driver = tokio::spawn(async move {
            loop {
                let report = match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => Link::Connected,
                    Ok(Event::Incoming(Incoming::Publish(p))) if p.topic == ncmd.as_bytes() => {
                        Link::Command(p.payload)
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(_))) => Link::Written,
                    Ok(_) => continue,
                    Err(_) => {
                        let _ = tx.send(Link::Lost).await;
                        return;
                    }
                };
                if tx.send(report).await.is_err() {
                    return;
                }
            }
        });
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut born = false;
        self.queued.clear();
        loop {
            tokio::select! {
                report = link.recv() => match report {
                    Some(Link::Connected) => {
                        self.counters.connects.fetch_add(1, Ordering::Relaxed);
                        let _ = client.subscribe(self.topic("NCMD"), QoS::AtLeastOnce).await;
                        self.birth(&client, options).await;
                        born = true;
                    }
                    Some(Link::Command(payload)) => {
                        if asks_rebirth(&payload) {
                            self.counters.rebirths.fetch_add(1, Ordering::Relaxed);
                            self.birth(&client, options).await;
                        }
                    }
                    Some(Link::Written) => match self.queued.pop_front() {
                        Some(Sent::Birth) => {
                            self.counters.births.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Sent::Data) => {
                            self.counters.ndata.fetch_add(1, Ordering::Relaxed);
                            self.counters
                                .samples
                                .fetch_add(self.data.metrics.len() as u64, Ordering::Relaxed);
                        }
                        None => {}
                    },
                    Some(Link::Lost) | None => break,
                },
                _ = ticks.tick(), if born => self.ndata(&client).await,
            }
        }
        driver.abort();
    }

    /// NBIRTH: seq 0, bdSeq, the Rebirth metric and every tag by name and alias.
    async fn birth(&mut self, client: &AsyncClient, options: &FleetOptions) {
        let now = now_ms();
        self.seq = Seq::new(0);
        let mut birth = Payload::new(now)
            .with_seq(self.next_seq())
            .with_metric(self.bd_seq.to_metric(now))
            .with_metric(Metric::new(REBIRTH, false));
        birth.metrics.extend(
            (0..options.tags).map(|i| {
                Metric::new(format!("Tag/{i:04}"), value(self.tick, i)).with_alias(alias(i))
            }),
        );
        self.buffer.clear();
        if birth.encode(&mut self.buffer).is_ok() {
            self.send("NBIRTH", client, Sent::Birth).await;
        }
    }

    /// NDATA: every tag by alias with a new value, one timestamp.
    async fn ndata(&mut self, client: &AsyncClient) {
        self.tick += 1;
        let now = now_ms();
        let tick = self.tick;
        for (i, metric) in self.data.metrics.iter_mut().enumerate() {
            metric.value = MetricValue::Value(Value::Double(value(tick, i)));
            metric.timestamp = Some(now);
        }
        self.data.timestamp = Some(now);
        self.data.seq = Some(self.next_seq().value().into());
        self.buffer.clear();
        if self.data.encode(&mut self.buffer).is_ok() {
            self.send("NDATA", client, Sent::Data).await;
        }
    }

    async fn send(&mut self, kind: &str, client: &AsyncClient, sent: Sent) {
        let bytes = bytes::Bytes::copy_from_slice(&self.buffer);
        if client
            .publish(
                self.topic(kind),
                bytes,
                PublishOptions::new(QoS::AtMostOnce),
            )
            .await
            .is_ok()
        {
            self.queued.push_back(sent);
        }
    }

    fn next_seq(&mut self) -> Seq {
        let seq = self.seq;
        self.seq = seq.next();
        seq
    }
}

/// Tag `i`'s alias (0 is left unused).
fn alias(i: usize) -> u64 {
    i as u64 + 1
}

/// Tag `i`'s value at tick `t`: distinct per tag and tick, so a stored sample names both.
fn value(tick: u64, i: usize) -> f64 {
    tick as f64 + i as f64 / 100_000.0
}

/// Whether an NCMD payload sets `Node Control/Rebirth` to true.
fn asks_rebirth(payload: &[u8]) -> bool {
    Payload::decode(payload).is_ok_and(|p| {
        p.metrics.iter().any(|m| {
            m.name.as_deref() == Some(REBIRTH)
                && matches!(m.value, MetricValue::Value(Value::Boolean(true)))
        })
    })
}

/// Runs a fleet for `duration` (or until Ctrl-C / SIGTERM when `None`) and returns what it
/// sent, with the time it ran.
pub async fn run(options: FleetOptions, duration: Option<Duration>) -> (Report, Duration) {
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let tasks = spawn(options, counters.clone());
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        }
    }
    for task in &tasks {
        task.abort();
    }
    (counters.report(), started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_spread_over_groups_and_servers() {
        let options = FleetOptions {
            servers: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ],
            groups: vec!["A".into(), "B".into(), "C".into()],
            nodes: 6,
            tags: 1,
            rate_hz: 1.0,
            node_prefix: "sim".into(),
            login: None,
        };
        assert_eq!(options.node(4), ("B".to_owned(), "sim0004".to_owned()));
        let counters = Arc::new(Counters::default());
        assert_eq!(SimNode::new(&options, 3, counters).server, 1);
    }

    #[test]
    fn a_rebirth_command_is_recognised() {
        let ask = Payload::new(1).with_metric(Metric::new(REBIRTH, true));
        let other = Payload::new(1).with_metric(Metric::new("Node Control/Next Server", true));
        assert!(asks_rebirth(&ask.encode_to_vec().unwrap()));
        assert!(!asks_rebirth(&other.encode_to_vec().unwrap()));
        assert!(!asks_rebirth(b"not a payload"));
    }
}
