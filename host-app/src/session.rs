//! The Primary Host session (Sparkplug B 3.0): the host's MQTT connection with its STATE
//! will and birth, the subscriptions of the groups it owns (the whole namespace when it
//! owns every group, see [`fleet`](crate::fleet)), ingest of their messages through the
//! [`Tracker`](crate::tracker::Tracker) into history, Rebirth requests, and the clean
//! offline STATE at shutdown. Births and deaths of groups other instances own go to the
//! observer tracker only: no history, no `seq` check, no Rebirth.
//!
//! Every connection uses a fresh STATE timestamp `T`: the will is
//! `{"online":false,"timestamp":T}` and, once the subscriptions are acknowledged, the birth
//! `{"online":true,"timestamp":T}` (both retained, QoS 1, on `spBv1.0/STATE/<host_id>`).
//! A STATE on its own topic that this host did not send (offline, online with a later
//! timestamp, or garbage; not the retained STATE of an earlier session) is answered at
//! once, rate-limited: STATE online with a new timestamp above both `T` and the stranger's,
//! then a new connection whose will carries it (the will and the birth share a timestamp),
//! so edge nodes that took the stranger's STATE take the host's again.
//!
//! Edge node payloads above `max_payload_bytes` are dropped undecoded; what the tracker
//! refuses by its bounds is logged, at most once per interval per kind.
//!
//! The connection is an [`infra::link::Link`], one per attempt (each with its own will),
//! so a half-open path is noticed by the keep-alive and TCP's give-up time and a request
//! that cannot be queued fails instead of holding the session. With failover servers
//! (`[broker.external] failover`), each lost or refused connection moves to the next
//! server in the list, round and round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use infra::clock::now_ms;
use infra::link::{LastWill, Link, LinkEvent, LinkOptions, QoS, Requests, SubscribeFilter};
use infra::logging::Escaped;
use sparkplug::{
    AnyTopic, DecodeLimits, MessageType, Metric, Payload, State, StateTopic, Topic, names,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::broker::{ConfigError, MqttEndpoint};
use crate::history::{HistoryStore, HistoryWriter, MetricId, MetricKey, MetricMeta, Sample};
use crate::shared::{HostEvent, HostShared};
use crate::tracker::{Action, MetricRegistry, NodeId};

/// How far ahead of the host's clock a stranger's STATE timestamp is still outbid; a
/// forged one further ahead is not followed (the host's timestamps stay near its clock).
const MAX_STATE_AHEAD_MS: u64 = 24 * 3_600_000;
/// Least time between two log lines about the same kind of dropped input.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The session's defences, from `[sparkplug]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Edge node payloads larger than this are dropped undecoded.
    pub max_payload_bytes: usize,
    /// Least time between two re-assertions of the STATE online.
    pub state_reassert_min_interval: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_payload_bytes: 1024 * 1024,
            state_reassert_min_interval: Duration::from_secs(1),
        }
    }
}

/// Logs a kind of refusal at most once per [`REFUSAL_LOG_INTERVAL`], counting the rest.
#[derive(Default)]
struct RefusalLog {
    last: HashMap<&'static str, (Instant, u64)>,
}

impl RefusalLog {
    /// Whether to log now, and how many of this kind went unlogged since the last line.
    fn admit(&mut self, kind: &'static str) -> Option<u64> {
        let now = Instant::now();
        match self.last.get_mut(kind) {
            Some((at, quiet)) if now.duration_since(*at) < REFUSAL_LOG_INTERVAL => {
                *quiet += 1;
                None
            }
            Some((at, quiet)) => {
                *at = now;
                Some(std::mem::take(quiet))
            }
            None => {
                self.last.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

/// Pause before reconnecting after the broker is lost.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Longest wait for the offline STATE to be acknowledged at shutdown.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);
/// Outgoing requests queued in the client (commands, Rebirths, STATE).
const REQUEST_CAPACITY: usize = 256;
/// MQTT keep-alive: also how soon a path that swallows everything is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("MQTT endpoint: {0}")]
    Endpoint(#[from] ConfigError),
    #[error("host_id {0:?} is not a valid Sparkplug host id")]
    HostId(String),
}

/// Sends commands to edge nodes on the host's current connection. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    /// The connection of the moment; `None` between connections.
    link: watch::Receiver<Option<Requests>>,
}

impl Publisher {
    /// Publishes an NCMD (device `None`) or DCMD carrying `metrics`, at QoS 0 as Sparkplug
    /// commands are sent.
    pub async fn command(
        &self,
        node: &NodeId,
        device: Option<&str>,
        metrics: Vec<Metric>,
    ) -> Result<(), String> {
        let message_type = if device.is_some() {
            MessageType::DCmd
        } else {
            MessageType::NCmd
        };
        let topic = Topic::new(
            node.group_id.as_str(),
            message_type,
            node.edge_node_id.as_str(),
            device,
        )
        .map_err(|e| e.to_string())?;
        let mut payload = Payload::new(now_ms());
        payload.metrics = metrics;
        let mut bytes = Vec::new();
        payload.encode(&mut bytes).map_err(|e| e.to_string())?;
        let mut name = String::new();
        topic.write_to(&mut name);
        let link = self.link.borrow().clone();
        let link = link.ok_or_else(|| "MQTT client: not connected to the broker".to_owned())?;
        link.publish(&name, QoS::AtMostOnce, false, &bytes)
            .await
            .map_err(|e| format!("MQTT client: {e}"))
    }

    /// Asks an edge node to publish its births again.
    pub async fn rebirth(&self, node: &NodeId) -> Result<(), String> {
        let metric = Metric::new(names::NODE_CONTROL_REBIRTH, true).with_timestamp(now_ms());
        self.command(node, None, vec![metric]).await
    }
}

/// Registers metrics in the history store; remembers keys for live events.
struct StoreRegistry {
    store: Arc<dyn HistoryStore>,
    keys: HashMap<MetricId, MetricKey>,
}

impl MetricRegistry for StoreRegistry {
    fn register(&mut self, key: &MetricKey, meta: &MetricMeta) -> Option<MetricId> {
        // Under the tracker lock: the store answers from memory, never waiting for a commit.
        match self.store.register_metric(key, meta) {
            Ok(id) => {
                self.keys.insert(id, key.clone());
                Some(id)
            }
            Err(e) => {
                warn!(metric = %Escaped(&key), error = %e, "metric not registered; its samples are not kept");
                None
            }
        }
    }
}

/// The Primary Host session; [`Session::run`] drives it until shutdown.
pub struct Session {
    shared: Arc<HostShared>,
    writer: HistoryWriter,
    /// How every connection is made; the will and the server are set per connection.
    options: LinkOptions,
    /// The broker's servers, tried in order: the first, then each failover server.
    servers: Vec<MqttEndpoint>,
    /// The index in `servers` of the next connection's server.
    server: usize,
    /// The connection of the moment (connecting or connected).
    link: Option<Link>,
    /// Tells every [`Publisher`] which connection to use.
    current: watch::Sender<Option<Requests>>,
    state_topic: String,
    /// The STATE timestamp of the current connection (will and birth).
    state_ts: u64,
    /// The birth of this connection has been published.
    born: bool,
    registry: StoreRegistry,
    limits: DecodeLimits,
    config: SessionConfig,
    /// When the STATE was last re-asserted.
    last_reassert: Option<Instant>,
    /// A stranger's STATE waiting for the re-assert interval: the timestamp to outbid.
    pending_reassert: Option<u64>,
    refusals: RefusalLog,
    samples: Vec<Sample>,
    actions: Vec<Action>,
}

/// The MQTT client id of host `host_id`'s session (the broker binds it to the host account).
pub fn client_id(host_id: &str) -> String {
    format!("host-{host_id}")
}

impl Session {
    /// Prepares the session (nothing is sent before [`Session::run`]).
    pub fn new(
        endpoint: &MqttEndpoint,
        shared: Arc<HostShared>,
        writer: HistoryWriter,
    ) -> Result<(Session, Publisher), SessionError> {
        let host_id = shared.host_id.clone();
        let topic =
            StateTopic::new(host_id.as_str()).map_err(|_| SessionError::HostId(host_id.clone()))?;
        let mut state_topic = String::new();
        topic.write_to(&mut state_topic);
        let state_ts = now_ms();
        let options = LinkOptions {
            keep_alive: KEEP_ALIVE,
            request_capacity: REQUEST_CAPACITY,
            ..crate::mqtt::link_options(endpoint, &client_id(&host_id))?
        };
        let (current, link) = watch::channel(None);
        let registry = StoreRegistry {
            store: Arc::clone(&shared.store),
            keys: HashMap::new(),
        };
        let publisher = Publisher { link };
        Ok((
            Session {
                shared,
                writer,
                servers: vec![options.endpoint.clone()],
                server: 0,
                options,
                link: None,
                current,
                state_topic,
                state_ts,
                born: false,
                registry,
                limits: DecodeLimits::default(),
                config: SessionConfig::default(),
                last_reassert: None,
                pending_reassert: None,
                refusals: RefusalLog::default(),
                samples: Vec::new(),
                actions: Vec::new(),
            },
            publisher,
        ))
    }

    /// Sets the MQTT keep-alive (30 s by default): a silent path is noticed within about
    /// two keep-alives, and a request waits at most one for room in the queue.
    pub fn with_keep_alive(mut self, keep_alive: Duration) -> Session {
        self.options.keep_alive = keep_alive;
        self
    }

    /// Adds servers to fail over to, in order, after the one given to [`Session::new`]
    /// (cluster nodes of one broker: same TLS settings and login).
    pub fn with_failover(mut self, servers: impl IntoIterator<Item = MqttEndpoint>) -> Session {
        self.servers.extend(servers);
        self
    }

    /// Sets the payload bound and the STATE re-assert interval.
    pub fn with_config(mut self, config: SessionConfig) -> Session {
        self.config = config;
        self
    }

    /// Runs until `shutdown` is cancelled, then publishes the offline STATE and
    /// disconnects. Losing the broker marks every edge node offline and reconnects.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = tracing::info_span!("primary_host", host_id = %self.shared.host_id);
        self.run_until(shutdown).instrument(span).await;
    }

    async fn run_until(mut self, shutdown: CancellationToken) {
        loop {
            if self.link.is_none()
                && let Err(e) = self.connect()
            {
                warn!(error = %e, "cannot connect");
                self.server = (self.server + 1) % self.servers.len().max(1);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(RECONNECT_DELAY) => continue,
                }
            }
            let deadline = self.shared.tracker().next_deadline();
            let reassert_due = self.reassert_due();
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = sleep_until_instant(reassert_due) => {
                    if let Some(beat) = self.pending_reassert.take() {
                        self.reassert(beat).await;
                    }
                }
                () = sleep_until_ms(deadline) => {
                    let now = now_ms();
                    {
                        let mut tracker = self.shared.tracker();
                        tracker.tick(now, &mut self.registry, &mut self.samples, &mut self.actions);
                    }
                    self.after_message().await;
                }
                event = next_event(&mut self.link) => match event {
                    LinkEvent::Lost(e) => {
                        self.on_connection_lost(&e).await;
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(RECONNECT_DELAY) => {}
                        }
                    }
                    event => self.on_event(event).await,
                }
            }
        }
        self.stop().await;
    }

    /// Opens a connection whose will carries the current STATE timestamp.
    fn connect(&mut self) -> Result<(), infra::link::LinkError> {
        let mut options = self.options.clone();
        options.will = Some(state_will(&self.state_topic, self.state_ts));
        if let Some(server) = self.servers.get(self.server) {
            options.endpoint = server.clone();
        }
        let link = Link::open(options, Arc::clone(self.shared.link_bytes()))?;
        self.current.send_replace(Some(link.requests()));
        self.link = Some(link);
        Ok(())
    }

    async fn on_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connected => {
                let server = self.servers.get(self.server).map(ToString::to_string);
                info!(state_ts = self.state_ts, server, "connected; subscribing");
                self.born = false;
                // One SUBSCRIBE for all, so its SUBACK means all are in place.
                let filters: Vec<SubscribeFilter> = self
                    .shared
                    .ownership
                    .filters(&self.state_topic)
                    .into_iter()
                    .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce))
                    .collect();
                if let Some(link) = &self.link
                    && let Err(e) = link.subscribe_many(filters).await
                {
                    warn!(error = %e, "subscribe not queued");
                }
            }
            LinkEvent::Subscribed { .. } if !self.born => {
                self.born = true;
                self.publish_state(true).await;
                self.shared.set_connected(true);
                self.shared.publish(HostEvent::Host {
                    connected: true,
                    ts: now_ms(),
                });
                info!("STATE online published");
            }
            LinkEvent::Message {
                topic,
                payload,
                retain,
            } => {
                self.on_publish(Publish {
                    topic,
                    payload,
                    retain,
                })
                .await
            }
            _ => {}
        }
    }

    async fn on_publish(&mut self, publish: Publish) {
        let topic = publish.topic.as_str();
        match AnyTopic::parse(topic) {
            Ok(AnyTopic::State(state)) => {
                if state.host_id() == self.shared.host_id {
                    if let Some(beat) = self.stranger_state(&publish) {
                        self.reassert(beat).await;
                    }
                } else if let Ok(peer) = State::parse(&publish.payload) {
                    // Another instance of the fleet: shown beside the nodes it owns.
                    if self.shared.set_peer_state(state.host_id(), peer.online) {
                        debug!(peer = %Escaped(state.host_id()), online = peer.online, "peer STATE");
                    }
                }
            }
            Ok(AnyTopic::Edge(edge)) => {
                let owned = self.shared.ownership.owns(edge.group_id());
                let lifecycle = matches!(
                    edge.message_type(),
                    MessageType::NBirth
                        | MessageType::NDeath
                        | MessageType::DBirth
                        | MessageType::DDeath
                );
                if !owned && !lifecycle {
                    return; // another instance's data, on a pattern's wide subscription
                }
                if publish.payload.len() > self.config.max_payload_bytes {
                    if let Some(unlogged) = self.refusals.admit("payload") {
                        warn!(
                            topic = %Escaped(topic),
                            len = publish.payload.len(),
                            max = self.config.max_payload_bytes,
                            unlogged,
                            "payload over sparkplug.max_payload_bytes dropped"
                        );
                    }
                    return;
                }
                let payload = match Payload::decode_with(&publish.payload, &self.limits) {
                    Ok(payload) => payload,
                    Err(e) => {
                        warn!(topic, error = %e, "undecodable payload ignored");
                        return;
                    }
                };
                let now = now_ms();
                // Observed nodes' metrics are registered so shared history can show their
                // values; their birth values are the owner's to store.
                {
                    let mut not_ours = Vec::new();
                    let (mut tracker, samples) = if owned {
                        (self.shared.tracker(), &mut self.samples)
                    } else {
                        (self.shared.observed(), &mut not_ours)
                    };
                    tracker.handle(
                        edge.group_id(),
                        edge.message_type(),
                        edge.edge_node_id(),
                        edge.device_id(),
                        payload,
                        now,
                        &mut self.registry,
                        samples,
                        &mut self.actions,
                    );
                }
                self.after_message().await;
            }
            Err(e) => debug!(topic, error = %e, "not a Sparkplug topic; ignored"),
        }
    }

    /// A STATE on our topic that we did not send and must answer: returns the timestamp to
    /// outbid (0 for garbage). Ours (online at `T`, or an older online echo) and the
    /// retained STATE of an earlier session (older than `T`, replaced by our birth) are not.
    fn stranger_state(&self, publish: &Publish) -> Option<u64> {
        if !self.born {
            return None; // the birth that follows the SUBACK replaces whatever is there
        }
        match State::parse(&publish.payload) {
            Ok(state) if publish.retain && state.timestamp < self.state_ts => None,
            Ok(state) if state.online && state.timestamp <= self.state_ts => None,
            Ok(state) => {
                warn!(
                    online = state.online,
                    timestamp = state.timestamp,
                    retain = publish.retain,
                    "a STATE for this host id that this host did not send"
                );
                Some(state.timestamp)
            }
            // A retained one came before our birth, which replaced it.
            Err(_) if publish.retain => None,
            Err(e) => {
                warn!(error = %e, len = publish.payload.len(), "an invalid STATE on this host's topic");
                Some(0)
            }
        }
    }

    /// When a waiting re-assert may go.
    fn reassert_due(&self) -> Option<Instant> {
        self.pending_reassert?;
        Some(self.last_reassert.map_or_else(Instant::now, |at| {
            at + self.config.state_reassert_min_interval
        }))
    }

    /// Publishes STATE online with a timestamp above ours and `beat`, then reconnects so
    /// the will carries it too. Within the interval of the last one, waits for it instead.
    async fn reassert(&mut self, beat: u64) {
        let now = Instant::now();
        if let Some(at) = self.last_reassert
            && now.duration_since(at) < self.config.state_reassert_min_interval
        {
            self.pending_reassert = Some(self.pending_reassert.unwrap_or(0).max(beat));
            debug!("STATE re-assert waits for sparkplug.state_reassert_min_interval_ms");
            return;
        }
        if self.link.is_none() || !self.born {
            return; // the next connection publishes a new birth anyway
        }
        self.last_reassert = Some(now);
        let clock = now_ms();
        let beat = if beat > clock.saturating_add(MAX_STATE_AHEAD_MS) {
            warn!(
                timestamp = beat,
                "the stranger's STATE timestamp is over a day ahead; not followed"
            );
            0
        } else {
            beat
        };
        self.state_ts = clock.max(self.state_ts + 1).max(beat.saturating_add(1));
        warn!(
            state_ts = self.state_ts,
            "re-asserting STATE online with a new timestamp"
        );
        self.publish_state(true).await;
        // The will must carry the birth's timestamp: a new connection with a new will. A
        // clean DISCONNECT first, so the old will is not published.
        if let Some(link) = self.link.take() {
            link.close(SHUTDOWN_WAIT).await;
        }
        self.current.send_replace(None);
        self.born = false;
    }

    /// Sends the samples and actions one message (or a tick) produced.
    async fn after_message(&mut self) {
        if self.shared.has_listeners() {
            for sample in &self.samples {
                if let Some(key) = self.registry.keys.get(&sample.metric) {
                    self.shared.publish(HostEvent::value(key, sample));
                }
            }
        }
        if !self.samples.is_empty() {
            let batch = std::mem::replace(&mut self.samples, Vec::with_capacity(16));
            if let Err(e) = self.writer.append(batch).await {
                warn!(error = %e, "history writer closed; samples dropped");
            }
        }
        for action in std::mem::take(&mut self.actions) {
            match action {
                Action::OverLimit { node, limit } => {
                    if let Some(unlogged) = self.refusals.admit(limit.key()) {
                        warn!(node = %Escaped(&node), bound = limit.key(), unlogged, "refused: over a configured bound");
                    }
                }
                Action::Rebirth { node, reason } => {
                    info!(node = %Escaped(&node), ?reason, "requesting Rebirth");
                    let publisher = Publisher {
                        link: self.current.subscribe(),
                    };
                    if let Err(e) = publisher.rebirth(&node).await {
                        warn!(node = %Escaped(&node), error = %e, "Rebirth request not sent");
                    }
                }
                Action::Liveness {
                    node,
                    device,
                    state,
                    ts,
                } => {
                    info!(node = %Escaped(&node), device = device.as_deref(), ?state, "liveness");
                    self.shared.publish(HostEvent::State {
                        group: node.group_id,
                        node: node.edge_node_id,
                        device,
                        state,
                        ts,
                    });
                }
            }
        }
    }

    async fn on_connection_lost(&mut self, error: &str) {
        // This link is finished; the next attempt opens a new one, on the next server.
        self.link = None;
        if self.servers.len() > 1 {
            self.server = (self.server + 1) % self.servers.len();
            let next = &self.servers[self.server];
            // Once per outage at INFO; attempts while every server is down at DEBUG.
            if self.shared.is_connected() {
                info!(%next, "failing over to the next server");
            } else {
                debug!(%next, "trying the next server");
            }
        }
        self.current.send_replace(None);
        let was_connected = self.shared.is_connected();
        self.born = false;
        if was_connected {
            warn!(%error, "broker connection lost; every edge node is now offline");
            // Offline first, so whoever sees the host disconnected also sees its nodes stale.
            self.mark_all_offline().await;
            self.shared.set_connected(false);
            self.shared.publish(HostEvent::Host {
                connected: false,
                ts: now_ms(),
            });
        } else {
            debug!(%error, "cannot reach the broker");
        }
        // Next connection: a new STATE timestamp for both the will and the birth, never
        // below one already published.
        self.state_ts = now_ms().max(self.state_ts + 1);
    }

    async fn mark_all_offline(&mut self) {
        let now = now_ms();
        self.shared
            .tracker()
            .all_offline(now, &mut self.samples, &mut self.actions);
        self.after_message().await;
    }

    async fn publish_state(&self, online: bool) {
        let state = if online {
            State::online(self.state_ts)
        } else {
            State::offline(self.state_ts)
        };
        let Some(link) = &self.link else {
            return;
        };
        if let Err(e) = link
            .publish(
                &self.state_topic,
                QoS::AtLeastOnce,
                true,
                state.to_json().as_bytes(),
            )
            .await
        {
            warn!(error = %e, online, "STATE not queued");
        }
    }

    /// Clean stop: STATE offline (retained, acknowledged), DISCONNECT, edge nodes marked
    /// offline in history.
    async fn stop(mut self) {
        if self.shared.is_connected() {
            self.publish_state(false).await;
            let acked = match self.link.as_mut() {
                Some(link) => tokio::time::timeout(SHUTDOWN_WAIT, async {
                    loop {
                        match link.recv().await {
                            Some(LinkEvent::Acknowledged) => return true,
                            Some(LinkEvent::Lost(_)) | None => return false,
                            Some(_) => {}
                        }
                    }
                })
                .await
                .unwrap_or(false),
                None => false,
            };
            if let Some(link) = self.link.take() {
                link.close(SHUTDOWN_WAIT).await;
            }
            info!(acked, "STATE offline published; disconnected");
        }
        self.current.send_replace(None);
        self.shared.set_connected(false);
        self.mark_all_offline().await;
    }
}

fn state_will(topic: &str, ts: u64) -> LastWill {
    LastWill::new(
        topic,
        State::offline(ts).to_json().into_bytes(),
        QoS::AtLeastOnce,
        true,
    )
}

/// A message received on one of the host's subscriptions.
struct Publish {
    topic: String,
    payload: Bytes,
    retain: bool,
}

/// The next event of the connection; a missing connection waits for ever (the caller
/// opens one first).
async fn next_event(link: &mut Option<Link>) -> LinkEvent {
    match link {
        Some(link) => link
            .recv()
            .await
            .unwrap_or_else(|| LinkEvent::Lost("connection ended".into())),
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever without it.
async fn sleep_until_instant(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until the wall-clock deadline (ms since the epoch), or forever without one.
async fn sleep_until_ms(deadline: Option<u64>) {
    match deadline {
        Some(at) => {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}
