//! The Sparkplug B 3.0 edge node: one MQTT session at a time, births, data by
//! exception, deaths, commands, primary host, failover.
//!
//! Per connect: the will is NDEATH with the next bdSeq (QoS 1, not
//! retained); once CONNACK arrives the bdSeq is committed; NCMD, DCMD (and the primary
//! host's STATE) are subscribed at QoS 1 and their SUBACKs awaited; with a primary host
//! births wait for its STATE `online: true`; then NBIRTH (seq 0) and one DBIRTH per
//! online device. Data follows as DDATA by alias; devices die (DDEATH) and are reborn.
//! Retained commands are ignored: they would replay an old order at every subscribe.
//! On shutdown: NDEATH at QoS 1, its PUBACK awaited (bounded), DISCONNECT.
//!
//! Liveness: the MQTT client only pings an idle connection, so a link that goes half-open
//! while data flows would go unnoticed for as long as TCP keeps trying (or forever behind
//! a TCP-accelerating satellite modem). While publishing, the node re-subscribes its NCMD
//! filter every half keep-alive as a probe; the SUBACK confirms everything sent before
//! it, and a probe unanswered for a whole keep-alive ends the session as lost. A link
//! dead since just after an answer is so declared within about 1.5 keep-alives.
//!
//! - [`catalog`]: tags, aliases and device payloads;
//! - [`metrics`]: the node's own metrics; [`commands`]: NCMD/DCMD decoding;
//! - [`publisher`]: seq, encoding; [`forwarder`]: store-and-forward (DDATA kept while
//!   the link is down or the primary host offline, replayed historical after births);
//! - [`bdseq`]: the bdSeq state file.

pub mod bdseq;
pub mod catalog;
pub mod commands;
pub mod exposition;
pub mod forwarder;
pub mod metrics;
pub mod publisher;

use std::sync::Arc;
use std::time::{Duration, Instant};

use infra::link::{LastWill, QoS};
use infra::logging::Escaped;
use infra::watchdog::Progress;
use sparkplug::{BdSeq, MessageType, Payload, State, StateTopic, filter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::config::Config;
use crate::modbus::{Acquisition, AcquisitionHandle, AcquisitionOptions, DeviceId, Event, Site};
use crate::store::HeldDevices;
use bdseq::BdSeqStore;
use catalog::{Catalog, Change};
use commands::NodeCommand;
use forwarder::{Forwarder, LinkMark};
use infra::clock::now_ms;
use infra::link::{Backoff, ByteCounters, Link, LinkEvent, startup_delay};
use metrics::{NodeMetrics, NodeStatus};
use publisher::{PublishCounters, PublishError, Publisher};

/// Device writes from DCMDs waiting for their device at once; more are refused, so a
/// command flood cannot grow memory without bound.
const MAX_WRITES_IN_FLIGHT: usize = 64;

/// How long an NDEATH's PUBACK and the DISCONNECT may take on the way out.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A STATE payload is about 45 bytes of JSON; anything far larger is not a host's.
const MAX_STATE_LEN: usize = 1024;

/// How often stored samples are offered for replay when no scan brings live data.
const REPLAY_PERIOD: Duration = Duration::from_millis(200);

/// Replay batches published at most per scan or replay tick, so commands and live data
/// are served in between even on a fast link.
const REPLAY_BATCHES_PER_TICK: usize = 8;

/// A liveness probe on its way: what it confirms once answered, and the probe ticks
/// seen since it went out.
#[derive(Debug, Clone, Copy)]
struct Probe {
    mark: Option<LinkMark>,
    ticks: u32,
}

/// Probe ticks a probe may stay unanswered: at one tick per half keep-alive, a whole
/// keep-alive.
const PROBE_PATIENCE_TICKS: u32 = 2;

/// Why the edge node could not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("the edge node task failed: {0}")]
    Task(String),
    #[error("store `{path}`: {source}")]
    Store {
        path: String,
        source: crate::store::StoreError,
    },
}

/// A running edge node: stop it with [`NodeHandle::shutdown`].
#[derive(Debug)]
pub struct NodeHandle {
    cancel: CancellationToken,
    task: JoinHandle<Result<(), NodeError>>,
    status: tokio::sync::watch::Receiver<ServiceStatus>,
    liveness: Vec<(String, Arc<Progress>)>,
    metrics: exposition::MetricsSource,
}

/// What the node is doing, for a service manager's status line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The MQTT server the node is born on, if any.
    pub born_on: Option<String>,
    /// Devices configured.
    pub devices: usize,
    /// Devices answering their polls.
    pub devices_online: usize,
    /// Acquisition has reported at least one device (online or offline): polling runs.
    pub polled: bool,
}

impl std::fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.born_on {
            Some(server) => write!(f, "connected to {server}")?,
            None => f.write_str("not connected")?,
        }
        write!(
            f,
            ", {} of {} devices online",
            self.devices_online, self.devices
        )
    }
}

impl NodeHandle {
    /// What `/metrics` shows, readable while the node runs.
    pub fn metrics(&self) -> exposition::MetricsSource {
        self.metrics.clone()
    }

    /// The parts of the data path and their liveness: each polling line and the publisher.
    pub fn liveness(&self) -> &[(String, Arc<Progress>)] {
        &self.liveness
    }

    /// Publishes NDEATH, disconnects, stops polling and waits for all of it.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        self.cancel.cancel();
        self.task
            .await
            .unwrap_or_else(|e| Err(NodeError::Task(e.to_string())))
    }

    /// The node stopped by itself (only on a fatal error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The node's status, changed as sessions and devices come and go.
    pub fn status(&self) -> tokio::sync::watch::Receiver<ServiceStatus> {
        self.status.clone()
    }
}

/// How one MQTT session ended.
#[derive(Debug, Clone, PartialEq)]
enum Ending {
    /// Shutdown was asked for.
    Shutdown,
    /// Connect failed or the connection broke.
    Lost(String),
    /// A `Next Server` command or the primary host went offline here.
    NextServer,
    /// A `Reboot` command: reconnect to the same server.
    Reboot,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Subscribing { pending: usize },
    AwaitingHost,
    Born,
}

/// The edge node and everything it owns.
pub struct EdgeNode {
    config: Config,
    acquisition: Option<Acquisition>,
    handle: AcquisitionHandle,
    events: mpsc::Receiver<Event>,
    catalog: Catalog,
    publisher: Publisher,
    bdseq: BdSeqStore,
    bytes: Arc<ByteCounters>,
    published: Arc<PublishCounters>,
    node_metrics: NodeMetrics,
    /// Accepted CONNECTs since start.
    connects: u64,
    server: usize,
    /// The newest primary host STATE seen on any server; older STATEs are ignored.
    host_state: Option<State>,
    /// The primary host's STATE online was seen on the current connection.
    host_online_here: bool,
    last_rebirth: Option<Instant>,
    writes_in_flight: Arc<tokio::sync::Semaphore>,
    /// Store-and-forward, when the configuration has a `[store]` table.
    forwarder: Option<Forwarder>,
    /// The liveness probe of the current session, while one is unanswered.
    probe: Option<Probe>,
    /// Messages published when the last probe went out.
    published_at_probe: u64,
    status: tokio::sync::watch::Sender<ServiceStatus>,
    /// Beats at every turn of the publishing loop, for the service watchdog.
    progress: Arc<Progress>,
    gauges: Arc<exposition::LinkGauges>,
}

/// Longest the publishing loop goes without a turn while it is not stuck.
const BEAT: Duration = Duration::from_secs(1);

impl EdgeNode {
    /// Starts Modbus acquisition and the MQTT session on the current runtime.
    pub fn start(config: Config) -> Result<NodeHandle, NodeError> {
        let bdseq = match &config.sparkplug.state_file {
            // An unreadable file (SD card damage) must not keep the node offline: hosts
            // only match NDEATH to NBIRTH by bdSeq, so starting again at 0 is safe.
            Some(path) => BdSeqStore::open(path.clone()).unwrap_or_else(|e| {
                error!(error = %e, "bdSeq state unreadable; starting at 0 and rewriting it");
                BdSeqStore::starting_over(path.clone())
            }),
            None => BdSeqStore::in_memory(),
        };
        let forwarder = match &config.store {
            Some(store) => Some(Forwarder::open(store).map_err(|source| NodeError::Store {
                path: store.path.display().to_string(),
                source,
            })?),
            None => None,
        };
        let (acquisition, events) =
            Acquisition::start(config.site.clone(), AcquisitionOptions::default());
        let handle = acquisition.handle();
        let published = Arc::new(PublishCounters::default());
        let progress = Progress::new();
        let mut liveness: Vec<(String, Arc<Progress>)> = handle
            .progress()
            .iter()
            .map(|(line, p)| (format!("poller of Modbus link {line}"), Arc::clone(p)))
            .collect();
        liveness.push(("publisher".to_owned(), Arc::clone(&progress)));
        let (status, status_rx) = tokio::sync::watch::channel(ServiceStatus {
            devices: config.site.devices.len(),
            ..ServiceStatus::default()
        });
        let gauges = Arc::new(exposition::LinkGauges::default());
        let bytes: Arc<ByteCounters> = Arc::default();
        let metrics = exposition::MetricsSource {
            acquisition: handle.clone(),
            published: Arc::clone(&published),
            bytes: Arc::clone(&bytes),
            gauges: Arc::clone(&gauges),
            status: status_rx.clone(),
        };
        let node = EdgeNode {
            catalog: Catalog::new(Arc::new(config.site.clone())),
            publisher: Publisher::new(
                &config.sparkplug.group_id,
                &config.sparkplug.edge_node_id,
                Arc::clone(&published),
            ),
            config,
            acquisition: Some(acquisition),
            handle,
            events,
            bdseq,
            bytes,
            published,
            node_metrics: NodeMetrics::default(),
            connects: 0,
            server: 0,
            host_state: None,
            host_online_here: false,
            last_rebirth: None,
            writes_in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_WRITES_IN_FLIGHT)),
            forwarder,
            probe: None,
            published_at_probe: 0,
            status,
            progress,
            gauges,
        };
        let cancel = CancellationToken::new();
        let span = info_span!(
            "edge_node",
            group_id = %node.config.sparkplug.group_id,
            edge_node_id = %node.config.sparkplug.edge_node_id
        );
        let task = tokio::spawn(node.run(cancel.clone()).instrument(span));
        Ok(NodeHandle {
            cancel,
            task,
            status: status_rx,
            liveness,
            metrics,
        })
    }

    async fn run(mut self, cancel: CancellationToken) -> Result<(), NodeError> {
        let mut backoff = Backoff::new(self.config.mqtt.backoff);
        let delay = startup_delay(self.config.mqtt.startup_delay_max);
        if self.wait(delay, &cancel).await {
            loop {
                let span = info_span!("mqtt", server = %self.current_server(), bd_seq = %self.bdseq.next());
                let (ending, born) = self.session(&cancel).instrument(span).await;
                if born {
                    backoff.reset();
                }
                let pause = match &ending {
                    Ending::Shutdown => break,
                    Ending::Lost(reason) => {
                        warn!(server = %self.current_server(), %reason, "MQTT link lost");
                        self.next_server();
                        backoff.next_delay()
                    }
                    Ending::NextServer => {
                        self.next_server();
                        backoff.next_delay()
                    }
                    Ending::Reboot => Duration::ZERO,
                };
                debug!(?pause, "before the next connect");
                if !self.wait(pause, &cancel).await {
                    break;
                }
            }
        }
        if let Some(acquisition) = self.acquisition.take() {
            acquisition.shutdown().await;
        }
        Ok(())
    }

    fn set_born_on(&self, server: Option<String>) {
        self.status.send_if_modified(|s| {
            let changed = s.born_on != server;
            if changed {
                self.gauges
                    .link_since_ms
                    .store(now_ms(), std::sync::atomic::Ordering::Relaxed);
            }
            s.born_on = server;
            changed
        });
    }

    /// Sleeps while still taking in device events; false when shutdown came first.
    async fn wait(&mut self, pause: Duration, cancel: &CancellationToken) -> bool {
        let deadline = tokio::time::sleep(pause);
        tokio::pin!(deadline);
        let mut beat = tokio::time::interval(BEAT);
        loop {
            self.progress.beat();
            tokio::select! {
                _ = beat.tick() => {}
                _ = cancel.cancelled() => return false,
                _ = &mut deadline => return true,
                Some(event) = self.events.recv() => { self.absorb(&event); }
            }
        }
    }

    fn current_server(&self) -> String {
        self.config
            .mqtt
            .servers
            .get(self.server)
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    fn next_server(&mut self) {
        self.server = (self.server + 1) % self.config.mqtt.servers.len().max(1);
    }

    /// The node's NCMD topic, subscribed at connect and again as the liveness probe.
    fn ncmd_filter(&self) -> String {
        let sparkplug = &self.config.sparkplug;
        filter::node_commands(&sparkplug.group_id, &sparkplug.edge_node_id).unwrap_or_default()
    }

    /// NCMD, DCMD of every device and the Primary Host's STATE (ids were validated with
    /// the configuration, so none is skipped in practice).
    fn topic_filters(&self) -> Vec<String> {
        let g = &self.config.sparkplug.group_id;
        let n = &self.config.sparkplug.edge_node_id;
        let host = self.config.sparkplug.primary_host_id.as_deref();
        [filter::node_commands(g, n), filter::device_commands(g, n)]
            .into_iter()
            .chain(host.map(filter::state))
            .filter_map(Result::ok)
            .collect()
    }

    /// One MQTT session; returns how it ended and whether births were published.
    async fn session(&mut self, cancel: &CancellationToken) -> (Ending, bool) {
        let Some(server) = self.config.mqtt.servers.get(self.server).cloned() else {
            return (Ending::Lost("no server configured".into()), false);
        };
        let bd_seq = self.bdseq.next();
        self.host_online_here = false;
        self.probe = None;
        let will = LastWill::new(
            self.publisher.topic(MessageType::NDeath, None),
            Publisher::ndeath_payload(bd_seq, now_ms()),
            QoS::AtLeastOnce,
            false,
        );
        let mut link = match Link::open(
            self.config.mqtt.link_options(&server, will),
            Arc::clone(&self.bytes),
        ) {
            Ok(link) => link,
            Err(e) => return (Ending::Lost(e.to_string()), false),
        };
        info!("connecting");
        let mut phase = Phase::Connecting;
        let mut born = false;
        let connect_deadline = tokio::time::sleep(self.config.mqtt.connect_timeout);
        tokio::pin!(connect_deadline);
        let period = self.config.sparkplug.metrics_period;
        // The first check is one period after the connect, not at once.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut replay_tick = tokio::time::interval(REPLAY_PERIOD);
        replay_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let probe_period = (self.config.mqtt.keep_alive / 2).max(Duration::from_millis(500));
        let mut probe_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + probe_period, probe_period);
        probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval(BEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ending = loop {
            self.progress.beat();
            tokio::select! {
                _ = beat.tick() => {}
                _ = cancel.cancelled() => break Ending::Shutdown,
                _ = &mut connect_deadline, if phase == Phase::Connecting => {
                    break Ending::Lost(format!("no CONNACK within {:?}", self.config.mqtt.connect_timeout));
                }
                event = link.recv() => {
                    let Some(event) = event else { break Ending::Lost("connection closed".into()) };
                    match self.on_link_event(&link, event, &mut phase, bd_seq).await {
                        Ok(None) => {}
                        Ok(Some(ending)) => break ending,
                        Err(e) => break Ending::Lost(e.to_string()),
                    }
                    if phase == Phase::Born && !born {
                        born = true;
                        self.set_born_on(Some(server.to_string()));
                    }
                }
                Some(event) = self.events.recv() => {
                    if let Err(e) = self.on_device_event(&link, event, phase).await {
                        break Ending::Lost(e.to_string());
                    }
                }
                _ = tick.tick() => {
                    if let Some(f) = self.forwarder.as_mut() {
                        let now = now_ms();
                        f.expire(now);
                        f.measure_rate(now);
                        self.gauges.set_store(&f.stats(now));
                    }
                    if phase == Phase::Born && let Err(e) = self.publish_node_changes(&link).await {
                        break Ending::Lost(e.to_string());
                    }
                }
                _ = replay_tick.tick(), if phase == Phase::Born && self.forwarder.is_some() => {
                    if let Err(e) = self.replay(&link).await {
                        break Ending::Lost(e.to_string());
                    }
                }
                _ = probe_tick.tick(), if phase == Phase::Born => {
                    match self.on_probe_tick(&link).await {
                        Ok(None) => {}
                        Ok(Some(ending)) => break ending,
                        Err(e) => break Ending::Lost(e.to_string()),
                    }
                }
            }
        };
        self.set_born_on(None);
        if matches!(ending, Ending::Lost(_) | Ending::NextServer)
            && let Some(f) = self.forwarder.as_mut()
        {
            f.link_lost();
        }
        match &ending {
            Ending::Lost(_) => link.abort(),
            _ if phase == Phase::Connecting => link.abort(),
            _ => self.say_goodbye(link, bd_seq).await,
        }
        (ending, born)
    }

    /// Sends a liveness probe, or ends the session when the last one went unanswered
    /// too long. Probes go out only while there is something to confirm.
    async fn on_probe_tick(&mut self, link: &Link) -> Result<Option<Ending>, PublishError> {
        if let Some(probe) = self.probe.as_mut() {
            probe.ticks += 1;
            if probe.ticks >= PROBE_PATIENCE_TICKS {
                return Ok(Some(Ending::Lost(format!(
                    "the broker did not answer a liveness probe within {:?}: the link is half-open",
                    self.config.mqtt.keep_alive
                ))));
            }
            return Ok(None);
        }
        let published = self
            .published
            .messages
            .load(std::sync::atomic::Ordering::Relaxed);
        let unconfirmed = self.forwarder.as_ref().is_some_and(Forwarder::unconfirmed);
        if published == self.published_at_probe && !unconfirmed {
            // Idle: the MQTT client's own keep-alive pings watch the link.
            return Ok(None);
        }
        self.published_at_probe = published;
        let mark = self.forwarder.as_ref().map(Forwarder::mark);
        link.subscribe(&self.ncmd_filter(), QoS::AtLeastOnce)
            .await?;
        self.probe = Some(Probe { mark, ticks: 0 });
        Ok(None)
    }

    /// The broker answered the probe: everything published before it reached the broker.
    fn on_probe_answer(&mut self) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        debug!("liveness probe answered");
        if let (Some(f), Some(mark)) = (self.forwarder.as_mut(), probe.mark) {
            f.confirmed(mark);
        }
    }

    /// NDEATH at QoS 1, its PUBACK (bounded), then DISCONNECT. The PUBACK confirms all
    /// that went out before; without it, unconfirmed samples are kept for the next start.
    async fn say_goodbye(&mut self, mut link: Link, bd_seq: BdSeq) {
        info!("publishing NDEATH and disconnecting");
        let now = now_ms();
        let mark = self.forwarder.as_ref().map(Forwarder::mark);
        if let Err(e) = self.publisher.publish_ndeath(&link, bd_seq, now).await {
            warn!(error = %e, "NDEATH not sent");
            if let Some(f) = self.forwarder.as_mut() {
                f.link_lost();
            }
            link.abort();
            return;
        }
        let acknowledged = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(event) = link.recv().await {
                match event {
                    LinkEvent::Acknowledged => return true,
                    LinkEvent::Lost(_) => return false,
                    _ => {}
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if let Some(f) = self.forwarder.as_mut() {
            match (acknowledged, mark) {
                (true, Some(mark)) => f.confirmed(mark),
                _ => f.link_lost(),
            }
        }
        link.close(CLOSE_WAIT).await;
    }

    async fn on_link_event(
        &mut self,
        link: &Link,
        event: LinkEvent,
        phase: &mut Phase,
        bd_seq: BdSeq,
    ) -> Result<Option<Ending>, PublishError> {
        match event {
            LinkEvent::Connected => {
                info!("connected");
                self.connects += 1;
                self.gauges
                    .connects
                    .store(self.connects, std::sync::atomic::Ordering::Relaxed);
                if let Err(e) = self.bdseq.commit(bd_seq) {
                    error!(error = %e, "bdSeq not persisted; a restart may repeat it");
                }
                let filters = self.topic_filters();
                for filter in &filters {
                    link.subscribe(filter, QoS::AtLeastOnce).await?;
                }
                *phase = Phase::Subscribing {
                    pending: filters.len(),
                };
            }
            LinkEvent::Subscribed { granted } => {
                if !granted {
                    warn!("the server refused a subscription; commands may not arrive");
                }
                if *phase == Phase::Born {
                    self.on_probe_answer();
                } else if let Phase::Subscribing { pending } = *phase {
                    if pending > 1 {
                        *phase = Phase::Subscribing {
                            pending: pending - 1,
                        };
                    } else if self.config.sparkplug.primary_host_id.is_some()
                        && !self.host_online_here
                    {
                        info!("waiting for the primary host's STATE online");
                        *phase = Phase::AwaitingHost;
                    } else {
                        self.births(link, bd_seq).await?;
                        *phase = Phase::Born;
                    }
                }
            }
            LinkEvent::Acknowledged => {}
            LinkEvent::Message {
                topic,
                payload,
                retain,
            } => {
                return self
                    .on_message(link, &topic, &payload, retain, phase, bd_seq)
                    .await;
            }
            LinkEvent::Lost(reason) => return Ok(Some(Ending::Lost(reason))),
        }
        Ok(None)
    }

    async fn on_message(
        &mut self,
        link: &Link,
        topic: &str,
        payload: &[u8],
        retain: bool,
        phase: &mut Phase,
        bd_seq: BdSeq,
    ) -> Result<Option<Ending>, PublishError> {
        if let Ok(state_topic) = StateTopic::parse(topic) {
            return self
                .on_host_state(link, state_topic.host_id(), payload, phase, bd_seq)
                .await;
        }
        let parsed = match sparkplug::Topic::parse(topic) {
            Ok(t) => t,
            Err(e) => {
                warn!(topic, error = %e, "message on an unexpected topic ignored");
                return Ok(None);
            }
        };
        if *phase != Phase::Born {
            warn!(topic, "command before births ignored");
            return Ok(None);
        }
        if retain {
            // A retained command is an old order replayed at every subscribe (and every
            // liveness probe): a host must publish commands with retain false.
            warn!(
                topic,
                "retained command ignored: commands must not be retained"
            );
            return Ok(None);
        }
        match (parsed.message_type(), parsed.device_id()) {
            (MessageType::NCmd, None) => self.on_ncmd(link, payload, bd_seq).await,
            (MessageType::DCmd, Some(device)) => {
                self.on_dcmd(device, payload);
                Ok(None)
            }
            _ => {
                warn!(topic, "message on an unexpected topic ignored");
                Ok(None)
            }
        }
    }

    async fn on_host_state(
        &mut self,
        link: &Link,
        host_id: &str,
        payload: &[u8],
        phase: &mut Phase,
        bd_seq: BdSeq,
    ) -> Result<Option<Ending>, PublishError> {
        if self.config.sparkplug.primary_host_id.as_deref() != Some(host_id) {
            return Ok(None);
        }
        if payload.len() > MAX_STATE_LEN {
            warn!(host_id, len = payload.len(), "oversized STATE ignored");
            return Ok(None);
        }
        let state = match State::parse(payload) {
            Ok(s) => s,
            Err(e) => {
                warn!(host_id, error = %e, "malformed STATE ignored");
                return Ok(None);
            }
        };
        if let Some(seen) = self.host_state
            && state.timestamp < seen.timestamp
        {
            debug!(
                host_id,
                ?state,
                ?seen,
                "STATE older than the last one ignored"
            );
            return Ok(None);
        }
        self.host_state = Some(state);
        self.gauges.set_host_state(state.online, state.timestamp);
        self.host_online_here = state.online;
        info!(host_id, online = state.online, "primary host STATE");
        if !state.online {
            // The host cannot see this server: leave it for the next one.
            info!(
                host_id,
                "primary host offline here: moving to the next server"
            );
            return Ok(Some(Ending::NextServer));
        }
        if *phase == Phase::AwaitingHost {
            self.births(link, bd_seq).await?;
            *phase = Phase::Born;
        }
        Ok(None)
    }

    async fn on_ncmd(
        &mut self,
        link: &Link,
        payload: &[u8],
        bd_seq: BdSeq,
    ) -> Result<Option<Ending>, PublishError> {
        let sparkplug = &self.config.sparkplug;
        let scan_rate_ms = sparkplug.scan_rate_min_ms..=sparkplug.scan_rate_max_ms;
        let (commands, refused) = match commands::node_commands(payload, scan_rate_ms) {
            Ok(decoded) => decoded,
            Err(e) => {
                warn!(error = %e, "malformed NCMD ignored");
                return Ok(None);
            }
        };
        for r in refused {
            warn!(metric = ?r.metric, reason = %r.reason, "NCMD metric refused");
        }
        for command in commands {
            match command {
                NodeCommand::Rebirth => {
                    let debounce = self.config.sparkplug.rebirth_debounce;
                    if self.last_rebirth.is_some_and(|t| t.elapsed() < debounce) {
                        info!(
                            ?debounce,
                            "Rebirth ignored: one was done within the debounce"
                        );
                        continue;
                    }
                    info!("Rebirth requested");
                    self.births(link, bd_seq).await?;
                }
                NodeCommand::NextServer => {
                    info!("Next Server requested");
                    return Ok(Some(Ending::NextServer));
                }
                NodeCommand::Reboot => {
                    info!("Reboot requested: restarting the MQTT session");
                    return Ok(Some(Ending::Reboot));
                }
                NodeCommand::ScanRate(ms) => {
                    info!(ms, "Scan Rate requested: restarting acquisition");
                    self.restart_acquisition(Duration::from_millis(ms.unsigned_abs()))
                        .await;
                    self.publish_node_changes(link).await?;
                }
            }
        }
        Ok(None)
    }

    fn on_dcmd(&mut self, device: &str, payload: &[u8]) {
        let Some(index) = self.catalog.device_index(device) else {
            warn!(device, "DCMD for an unknown device ignored");
            return;
        };
        let (writes, refused) = match commands::device_writes(&self.catalog, index, payload) {
            Ok(decoded) => decoded,
            Err(e) => {
                warn!(device, error = %e, "malformed DCMD ignored");
                return;
            }
        };
        for r in refused {
            warn!(device, metric = ?r.metric, reason = %r.reason, "DCMD write refused");
        }
        for (tag, value) in writes {
            let Ok(permit) = Arc::clone(&self.writes_in_flight).try_acquire_owned() else {
                warn!(
                    device,
                    tag = tag.0,
                    "DCMD write refused: {MAX_WRITES_IN_FLIGHT} writes already in flight"
                );
                continue;
            };
            let handle = self.handle.clone();
            let device = device.to_owned();
            // The new value comes back through polling, in the next DDATA.
            tokio::spawn(async move {
                match handle.write(tag, value.clone()).await {
                    Ok(()) => {
                        info!(device, tag = tag.0, value = %Escaped(&value), "DCMD write done")
                    }
                    Err(e) => warn!(device, error = %e, "DCMD write failed"),
                }
                drop(permit);
            });
        }
    }

    /// Scan Rate sets every scan class to the new period; the engine restarts and
    /// devices are born again as they answer.
    async fn restart_acquisition(&mut self, period: Duration) {
        let mut site: Site = self.config.site.clone();
        for class in &mut site.scan_classes {
            class.period = period;
        }
        if let Some(old) = self.acquisition.take() {
            old.shutdown().await;
        }
        self.config.site = site.clone();
        let (acquisition, events) = Acquisition::start(site, AcquisitionOptions::default());
        self.handle = acquisition.handle();
        self.events = events;
        self.acquisition = Some(acquisition);
        self.catalog.forget_devices();
    }

    async fn on_device_event(
        &mut self,
        link: &Link,
        event: Event,
        phase: Phase,
    ) -> Result<(), PublishError> {
        if phase != Phase::Born {
            self.absorb(&event);
            return Ok(());
        }
        let change = self.catalog.apply(&event);
        let now = now_ms();
        match change {
            Change::Born(d) => {
                self.publish_dbirth(link, d, now).await?;
                // Samples held for this device may go now.
                self.replay(link).await
            }
            Change::Data(d) => {
                let Event::Data(report) = &event else {
                    return Ok(());
                };
                if report.samples.is_empty() {
                    return Ok(());
                }
                let name = self.catalog.device_name(d).to_owned();
                // Kept before it goes: a publish that fails ends the session, and the
                // link loss stores what was kept.
                if let Some(f) = self.forwarder.as_mut() {
                    f.sending_live(report);
                }
                self.publisher
                    .publish(
                        link,
                        MessageType::DData,
                        Some(&name),
                        Catalog::ddata(report, now),
                    )
                    .await?;
                if let Some(f) = self.forwarder.as_mut() {
                    f.published_live(self.publisher.last_payload_len());
                }
                // Live first, then what the link share leaves for history.
                self.replay(link).await
            }
            Change::Died(d) => {
                let name = self.catalog.device_name(d).to_owned();
                info!(device = %name, "device offline: DDEATH");
                self.publisher
                    .publish(link, MessageType::DDeath, Some(&name), Catalog::ddeath(now))
                    .await
            }
        }
    }

    /// A device event while there are no births on a link (link down, connecting,
    /// primary host offline): the catalog takes it, and its samples are kept for replay.
    /// Offline reports are not kept: their device is dead, and DDEATH says so.
    fn absorb(&mut self, event: &Event) {
        self.catalog.apply(event);
        let online = (0..self.catalog.site().devices.len())
            .filter(|&d| self.catalog.is_online(d))
            .count();
        self.status.send_if_modified(|s| {
            let changed = !s.polled || s.devices_online != online;
            s.polled = true;
            s.devices_online = online;
            changed
        });
        if let (Some(f), Event::Data(report) | Event::Online(report)) =
            (self.forwarder.as_mut(), event)
        {
            f.keep(report);
        }
    }

    /// Publishes stored samples as historical DDATA while the pacer allows, one DDATA
    /// per device in each batch, and acks each batch once the MQTT client took it.
    async fn replay(&mut self, link: &Link) -> Result<(), PublishError> {
        let Some(mut forwarder) = self.forwarder.take() else {
            return Ok(());
        };
        let result = self.replay_with(&mut forwarder, link).await;
        self.forwarder = Some(forwarder);
        result
    }

    async fn replay_with(
        &mut self,
        forwarder: &mut Forwarder,
        link: &Link,
    ) -> Result<(), PublishError> {
        let mut held = HeldDevices::default();
        for d in 0..self.catalog.site().devices.len() {
            if !self.catalog.is_online(d) {
                // Past the set's capacity the device rule below waits instead.
                held.insert(DeviceId(d as u32));
            }
        }
        let mut devices: Vec<DeviceId> = Vec::new();
        for _ in 0..REPLAY_BATCHES_PER_TICK {
            let Some(batch) = forwarder.next_batch(held) else {
                return Ok(());
            };
            devices.clear();
            for s in batch.samples() {
                if let Some(d) = s.device
                    && !devices.contains(&d)
                {
                    devices.push(d);
                }
            }
            // The device rule of the forwarder module: wait for every device's birth.
            if batch.samples().iter().any(|s| s.device.is_none())
                || devices.iter().any(|d| !self.catalog.is_online(d.index()))
            {
                debug!("replay waits for a device to be born again");
                return Ok(());
            }
            let now = now_ms();
            let mut bytes = 0;
            for &device in &devices {
                let mut payload = Payload::new(now);
                payload.metrics.extend(
                    batch
                        .samples()
                        .iter()
                        .filter(|s| s.device == Some(device))
                        .map(|s| {
                            let mut m =
                                catalog::data_metric(s.alias, &s.value, s.quality, s.timestamp_ms);
                            m.is_historical = true;
                            m
                        }),
                );
                let name = self.catalog.device_name(device.index()).to_owned();
                self.publisher
                    .publish(link, MessageType::DData, Some(&name), payload)
                    .await?;
                bytes += self.publisher.last_payload_len();
            }
            forwarder.replayed(&batch, bytes);
        }
        Ok(())
    }

    async fn publish_dbirth(
        &mut self,
        link: &Link,
        device: usize,
        now: u64,
    ) -> Result<(), PublishError> {
        let name = self.catalog.device_name(device).to_owned();
        let payload = self.catalog.dbirth(device, now);
        self.publisher
            .publish(link, MessageType::DBirth, Some(&name), payload)
            .await
    }

    /// NBIRTH (seq 0, this session's bdSeq, every node metric), then a DBIRTH per
    /// online device.
    async fn births(&mut self, link: &Link, bd_seq: BdSeq) -> Result<(), PublishError> {
        let now = now_ms();
        let mut nbirth = Payload::new(now).with_metric(bd_seq.to_metric(now));
        let status = self.status(link);
        self.node_metrics.birth(&status, now, &mut nbirth);
        self.publisher
            .publish(link, MessageType::NBirth, None, nbirth)
            .await?;
        let online: Vec<usize> = self.catalog.online_devices().collect();
        for device in online {
            self.publish_dbirth(link, device, now).await?;
        }
        self.last_rebirth = Some(Instant::now());
        info!(bd_seq = %bd_seq, "births published");
        self.replay(link).await
    }

    async fn publish_node_changes(&mut self, link: &Link) -> Result<(), PublishError> {
        let now = now_ms();
        let status = self.status(link);
        match self.node_metrics.changes(&status, now) {
            Some(ndata) => {
                self.publisher
                    .publish(link, MessageType::NData, None, ndata)
                    .await
            }
            None => Ok(()),
        }
    }

    fn status(&self, link: &Link) -> NodeStatus {
        let site = self.handle.site();
        let poll_errors = (0..site.devices.len())
            .map(|d| {
                let s = self.handle.stats(crate::modbus::DeviceId(d as u32));
                s.failures + s.exceptions
            })
            .sum();
        let scan_rate_ms = site
            .scan_classes
            .iter()
            .map(|c| c.period)
            .min()
            .map(|p| i64::try_from(p.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        NodeStatus {
            scan_rate_ms,
            hardware: self.config.sparkplug.hardware.clone(),
            link_state: "online",
            server: link.server().to_owned(),
            reconnects: self.connects.saturating_sub(1),
            bytes_sent: self.bytes.sent(),
            bytes_received: self.bytes.received(),
            messages_published: self
                .published
                .messages
                .load(std::sync::atomic::Ordering::Relaxed),
            poll_errors,
            store: self
                .forwarder
                .as_ref()
                .map(|f| f.stats(now_ms()))
                .unwrap_or_default(),
        }
    }
}
