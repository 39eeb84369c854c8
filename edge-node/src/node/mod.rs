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
//! The parts, each with one job; a configuration is a message to them, not a restart:
//! - `supervisor`: the connection supervisor (sessions, failover, backoff, goodbye);
//! - `session`: the session state machine (phases, births, STATE, liveness probe);
//! - `handling`: command handling (NCMD, DCMD); `data`: device data, replay building;
//! - [`lines`]: acquisition control (one polling line per link, restarted alone);
//! - [`apply`]: a new configuration applied to the running parts ([`NodeControl`]);
//! - [`catalog`]: tags, aliases and device payloads;
//! - [`metrics`]: the node's own metrics; [`commands`]: NCMD/DCMD decoding;
//! - [`publisher`]: seq, encoding; [`forwarder`]: store-and-forward (DDATA kept while
//!   the link is down or the primary host offline, replayed historical after births);
//! - [`bdseq`]: the bdSeq state file.

pub mod apply;
pub mod bdseq;
pub mod bill;
pub mod catalog;
pub mod commands;
mod data;
pub mod economy;
pub mod exposition;
pub mod forwarder;
mod handling;
pub mod lines;
pub mod metrics;
pub mod publisher;
mod reporting;
mod session;
mod supervisor;
pub mod window;

pub use apply::{Applied, NodeControl};
use handling::MAX_WRITES_IN_FLIGHT;
use session::{Ending, Phase, Probe};

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
use crate::modbus::Site;
use crate::modbus::{DeviceId, Event};
use crate::store::{AliasMap, HeldDevices, TagAliases};
use bdseq::BdSeqStore;
use catalog::{Catalog, Change};
use commands::NodeCommand;
use forwarder::{Forwarder, LinkMark};
use infra::clock::now_ms;
use infra::link::{Backoff, ByteCounters, Link, LinkEvent, startup_delay};
use metrics::{NodeMetrics, NodeStatus};
use publisher::{PublishCounters, PublishError, Publisher};

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
    control: NodeControl,
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

    /// Sends configurations to the running node (see [`NodeControl::apply`]).
    pub fn control(&self) -> NodeControl {
        self.control.clone()
    }

    /// Applies a checked configuration without a restart; see [`apply`].
    pub async fn apply(&self, config: Config) -> Result<Applied, NodeError> {
        self.control.apply(config).await
    }

    /// The configuration lifecycle of the file at `path` the node runs on: validate,
    /// diff, apply live, roll back, audit (state kept in `state_dir`).
    pub fn configurator(
        &self,
        path: &std::path::Path,
        state_dir: &std::path::Path,
    ) -> Result<crate::configure::Configurator, crate::configure::ApplyError> {
        crate::configure::Configurator::new(path, state_dir, self.control())
    }

    /// The node's status, changed as sessions and devices come and go.
    pub fn status(&self) -> tokio::sync::watch::Receiver<ServiceStatus> {
        self.status.clone()
    }
}

/// The edge node and everything it owns.
pub struct EdgeNode {
    config: Config,
    acquisitions: lines::Acquisitions,
    handle: lines::Lines,
    /// Configurations to apply, from [`NodeControl`]s.
    control: mpsc::Receiver<apply::ApplyRequest>,
    /// The configuration run now, for [`NodeControl::running`].
    running: tokio::sync::watch::Sender<Arc<Config>>,
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
    /// The alias map without a store (with one, the store keeps it).
    aliases: AliasMap,
    /// The liveness probe of the current session, while one is unanswered.
    probe: Option<Probe>,
    /// Messages published when the last probe went out.
    published_at_probe: u64,
    status: tokio::sync::watch::Sender<ServiceStatus>,
    /// Beats at every turn of the publishing loop, for the service watchdog.
    progress: Arc<Progress>,
    gauges: Arc<exposition::LinkGauges>,
    /// Changes held for the report window (`economy.report_window_ms`), if on.
    window: Option<window::ReportWindow>,
    bill: Arc<bill::Bill>,
}

/// Longest the publishing loop goes without a turn while it is not stuck.
const BEAT: Duration = Duration::from_secs(1);

impl EdgeNode {
    /// Starts Modbus acquisition and the MQTT session on the current runtime.
    pub fn start(config: Config) -> Result<NodeHandle, NodeError> {
        Self::start_with_clock(config, bill::system_clock())
    }

    /// [`EdgeNode::start`] with the clock the link bill and daily budget follow.
    pub fn start_with_clock(config: Config, clock: bill::Clock) -> Result<NodeHandle, NodeError> {
        let bdseq = match &config.sparkplug.state_file {
            // An unreadable file (SD card damage) must not keep the node offline: hosts
            // only match NDEATH to NBIRTH by bdSeq, so starting again at 0 is safe.
            Some(path) => BdSeqStore::open(path.clone()).unwrap_or_else(|e| {
                error!(error = %e, "bdSeq state unreadable; starting at 0 and rewriting it");
                BdSeqStore::starting_over(path.clone())
            }),
            None => BdSeqStore::in_memory(),
        };
        let mut forwarder = match &config.store {
            Some(store) => Some(Forwarder::open(store).map_err(|source| NodeError::Store {
                path: store.path.display().to_string(),
                source,
            })?),
            None => None,
        };
        let mut aliases = AliasMap::new();
        let tag_aliases = assign_aliases(forwarder.as_mut(), &mut aliases, &config.site);
        let acquisitions = lines::Acquisitions::start(&config.site);
        let handle = acquisitions.lines();
        let (control_tx, control) = mpsc::channel(4);
        let (running, running_rx) = tokio::sync::watch::channel(Arc::new(config.clone()));
        let published = Arc::new(PublishCounters::default());
        let progress = Progress::new();
        let mut liveness: Vec<(String, Arc<Progress>)> = handle
            .progress()
            .into_iter()
            .map(|(line, p)| (format!("poller of Modbus link {line}"), p))
            .collect();
        liveness.push(("publisher".to_owned(), Arc::clone(&progress)));
        let (status, status_rx) = tokio::sync::watch::channel(ServiceStatus {
            devices: config.site.devices.len(),
            ..ServiceStatus::default()
        });
        let gauges = Arc::new(exposition::LinkGauges::default());
        let bytes: Arc<ByteCounters> = Arc::default();
        let bill = Arc::new(bill::Bill::new(
            Arc::clone(&bytes),
            clock,
            config.economy.daily_budget_bytes,
        ));
        let metrics = exposition::MetricsSource {
            acquisition: handle.clone(),
            published: Arc::clone(&published),
            bytes: Arc::clone(&bytes),
            gauges: Arc::clone(&gauges),
            status: status_rx.clone(),
            bill: Arc::clone(&bill),
        };
        let levers = &config.economy;
        let node = EdgeNode {
            catalog: Catalog::with_levers(Arc::new(config.site.clone()), tag_aliases, levers),
            publisher: Publisher::new(
                &config.sparkplug.group_id,
                &config.sparkplug.edge_node_id,
                Arc::clone(&published),
            )
            .with_levers(levers),
            window: (!levers.report_window.is_zero())
                .then(|| window::ReportWindow::new(config.site.devices.len())),
            bill,
            config,
            acquisitions,
            handle,
            control,
            running,
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
            aliases,
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
            control: NodeControl {
                tx: control_tx,
                running: running_rx,
            },
        })
    }
}

/// The aliases of `site`'s tags: from the store's alias map when there is a store,
/// else from the node's own (kept for the life of the process).
fn assign_aliases(
    forwarder: Option<&mut Forwarder>,
    without_store: &mut AliasMap,
    site: &Site,
) -> TagAliases {
    match forwarder {
        Some(f) => f.assign_aliases(site),
        None => without_store.assign(site),
    }
}
