//! What the Primary Host knows about every edge node and device, as pure logic (no I/O,
//! no clock: callers pass `now` in ms since the epoch).
//!
//! [`Tracker::handle`] takes one decoded Sparkplug message and
//! - keeps births: bdSeq, metric definitions (datatype, units) and the node's alias table
//!   (3.0: aliases are unique per edge node, device metrics included);
//! - checks `seq` (previous + 1 mod 256 over every node and device message but NDEATH),
//!   holding out-of-order messages up to the reorder timeout before asking for a Rebirth;
//! - turns data into history [`Sample`]s (quality from the `Quality` property, else 192);
//! - marks every metric of a dead node or device STALE (500), and ignores an NDEATH whose
//!   bdSeq is not the current NBIRTH's;
//! - asks for a Rebirth (rate-limited per node) on a seq gap or on data it cannot place;
//! - stays bounded under forged or bursty traffic: held messages by bytes over all nodes,
//!   and the number of nodes, devices per node and metrics (beyond: refused, reported as
//!   [`Action::OverLimit`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use sparkplug::{
    BasicValue, BdSeq, DataType, MessageType, Metric, MetricValue, Payload, PropertyValue, Seq,
    Value, properties::keys,
};

use crate::history::{MetricId, MetricKey, MetricMeta, Quality, Sample, SampleValue};

/// Most messages held while waiting for a missing `seq`; beyond it the gap is given up.
const MAX_HELD: usize = 256;

/// How the tracker registers metrics it learns from births: history gives each a compact id.
pub trait MetricRegistry {
    /// The id for `key`, or `None` when it cannot be registered (its samples are not kept).
    fn register(&mut self, key: &MetricKey, meta: &MetricMeta) -> Option<MetricId>;
}

/// Tunables of the tracking, from `[sparkplug]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerConfig {
    /// How long a message after a `seq` gap waits for the missing ones.
    pub reorder_timeout_ms: u64,
    /// Least time between two Rebirth requests to the same edge node.
    pub rebirth_min_interval_ms: u64,
    /// Bytes (estimated, decoded) of messages held after gaps, over all nodes; beyond,
    /// the gap of the node that overflows it is given up at once.
    pub reorder_buffer_bytes: usize,
    /// Edge nodes tracked; a birth from one more evicts the longest-offline node, or is
    /// refused when every node is online.
    pub max_nodes: usize,
    /// Devices tracked per edge node; a DBIRTH of one more is refused.
    pub max_devices_per_node: usize,
    /// Metrics tracked over all nodes and devices; a birth that would pass it is refused.
    pub max_metrics: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            reorder_timeout_ms: 2_000,
            rebirth_min_interval_ms: 5_000,
            reorder_buffer_bytes: 16 * 1024 * 1024,
            max_nodes: 10_000,
            max_devices_per_node: 1_000,
            max_metrics: 1_000_000,
        }
    }
}

/// An edge node by its topic ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub group_id: String,
    pub edge_node_id: String,
}

impl NodeId {
    pub fn new(group_id: &str, edge_node_id: &str) -> Self {
        Self {
            group_id: group_id.to_owned(),
            edge_node_id: edge_node_id.to_owned(),
        }
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.group_id, self.edge_node_id)
    }
}

/// Whether a node or device is online as far as the host knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    Online,
    Offline,
}

/// Why a Rebirth was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebirthReason {
    /// A `seq` was missing after the reorder timeout.
    SeqGap,
    /// Data from a node without a birth (or after its death).
    UnknownNode,
    /// Data or a death from a device without a birth.
    UnknownDevice,
    /// A metric alias or name not in the birth.
    UnknownMetric,
}

/// A bound of [`TrackerConfig`] that a message ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `max_nodes`: the birth of a new node was refused.
    Nodes,
    /// `max_devices_per_node`: the DBIRTH of a new device was refused.
    Devices,
    /// `max_metrics`: the birth was refused.
    Metrics,
    /// `reorder_buffer_bytes`: the node's gap was given up early.
    ReorderBuffer,
}

impl Limit {
    /// The configuration key of the bound.
    pub fn key(self) -> &'static str {
        match self {
            Limit::Nodes => "sparkplug.max_nodes",
            Limit::Devices => "sparkplug.max_devices_per_node",
            Limit::Metrics => "sparkplug.max_metrics",
            Limit::ReorderBuffer => "sparkplug.reorder_buffer_bytes",
        }
    }
}

/// What the host must do or tell after a message, besides storing samples.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A message ran into a bound (to log; nothing to send).
    OverLimit { node: NodeId, limit: Limit },
    /// Publish NCMD `Node Control/Rebirth` = true to this node.
    Rebirth { node: NodeId, reason: RebirthReason },
    /// A node or device came online or went offline (device `None` = the node itself).
    Liveness {
        node: NodeId,
        device: Option<String>,
        state: Liveness,
        ts: u64,
    },
}

/// One metric as the birth defined it, with its latest value.
#[derive(Debug, Clone)]
pub struct MetricState {
    pub name: String,
    /// As the birth declared it; `None` only for a birth that left it out.
    pub datatype: Option<DataType>,
    /// The `engUnit` property of the birth.
    pub units: Option<String>,
    /// The alias DATA and commands use in place of the name.
    pub alias: Option<u64>,
    /// The `engLow`/`engHigh` range of the birth.
    pub eng_range: Option<(f64, f64)>,
    /// The birth's `writable` property: the metric takes commands.
    pub writable: bool,
    pub quality: Quality,
    /// The history store's id; `None` when registration failed (samples not kept).
    pub id: Option<MetricId>,
    /// The latest value; `None` until one is known or after a null.
    pub value: Option<SampleValue>,
    /// Timestamp of the latest value, ms since the Unix epoch.
    pub ts: u64,
}

/// The metrics of one birth (node or device), by birth order and by name.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub list: Vec<MetricState>,
    by_name: HashMap<String, usize>,
}

impl Metrics {
    pub fn get(&self, name: &str) -> Option<&MetricState> {
        self.by_name.get(name).map(|&i| &self.list[i])
    }

    /// Marks every metric STALE at `ts`, returning the samples that record it.
    fn mark_stale(&mut self, ts: u64, out: &mut Vec<Sample>) {
        for m in &mut self.list {
            m.quality = Quality::STALE;
            m.ts = ts;
            if let Some(id) = m.id {
                out.push(Sample {
                    metric: id,
                    ts,
                    value: m.value.clone().unwrap_or(SampleValue::Null),
                    quality: Quality::STALE,
                    is_historical: false,
                });
            }
        }
    }
}

/// A device behind an edge node.
#[derive(Debug, Clone)]
pub struct DeviceState {
    pub state: Liveness,
    /// When it last came online or went offline.
    pub since: u64,
    pub metrics: Metrics,
}

/// An edge node.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub state: Liveness,
    pub since: u64,
    pub bd_seq: Option<BdSeq>,
    pub metrics: Metrics,
    pub devices: Vec<(String, DeviceState)>,
    /// When the latest NBIRTH and NDEATH (or loss of the broker) were handled.
    pub last_birth: Option<u64>,
    pub last_death: Option<u64>,
    /// `seq` gaps seen and Rebirths asked of this node.
    pub seq_gaps: u64,
    pub rebirths_requested: u64,
    /// alias -> (device index or `None` for the node, metric index).
    aliases: HashMap<u64, (Option<usize>, usize)>,
    /// The `seq` the next message must carry.
    expected_seq: Option<Seq>,
    /// Messages that came after a gap, waiting for the missing ones.
    held: Vec<Held>,
    /// Estimated memory of `held`.
    held_bytes: usize,
    /// When the oldest held message gives up waiting.
    gap_deadline: Option<u64>,
}

#[derive(Debug, Clone)]
struct Held {
    seq: Seq,
    message_type: MessageType,
    device: Option<String>,
    payload: Payload,
    /// Estimated memory, counted in `NodeState::held_bytes`.
    cost: usize,
}

impl Held {
    /// The payload's memory once decoded, roughly: its wire size plus one `Metric` per
    /// metric (small values grow most when decoded).
    fn cost(payload: &Payload) -> usize {
        std::mem::size_of::<Held>()
            + payload.encoded_len()
            + payload.metrics.len() * std::mem::size_of::<Metric>()
    }
}

impl NodeState {
    pub fn device(&self, device_id: &str) -> Option<&DeviceState> {
        self.devices
            .iter()
            .find(|(id, _)| id == device_id)
            .map(|(_, d)| d)
    }

    fn device_index(&self, device_id: &str) -> Option<usize> {
        self.devices.iter().position(|(id, _)| id == device_id)
    }

    /// Metrics of the node and all its devices.
    fn metric_count(&self) -> usize {
        self.metrics.list.len()
            + self
                .devices
                .iter()
                .map(|(_, d)| d.metrics.list.len())
                .sum::<usize>()
    }

    fn clear_held(&mut self) {
        self.held.clear();
        self.held_bytes = 0;
        self.gap_deadline = None;
    }
}

/// Counters over the tracker's life (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    pub messages: u64,
    pub samples: u64,
    pub stale_deaths_ignored: u64,
    pub seq_gaps: u64,
    pub rebirths_requested: u64,
    pub rebirths_suppressed: u64,
    /// Births refused or gaps given up early by a bound of [`TrackerConfig`].
    pub over_limit: u64,
}

/// Every edge node the host has heard of.
#[derive(Debug, Default)]
pub struct Tracker {
    config: TrackerConfig,
    nodes: HashMap<NodeId, NodeState>,
    /// Last Rebirth request per node (also for nodes the host has no birth of).
    last_rebirth: HashMap<NodeId, u64>,
    /// Metrics of every node and device, against `max_metrics`.
    metric_count: usize,
    stats: TrackerStats,
    /// Observes another instance's groups: births and deaths only, no `seq` check (the
    /// data between them is not seen), never a Rebirth.
    observer: bool,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// A tracker of the nodes another host instance owns, fed their births and deaths
    /// only: it keeps their state and metric definitions within the same bounds, checks
    /// no `seq` and asks for no Rebirth.
    pub fn observer(config: TrackerConfig) -> Self {
        Self {
            config,
            observer: true,
            ..Self::default()
        }
    }

    pub fn config(&self) -> TrackerConfig {
        self.config
    }

    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    pub fn node(&self, node: &NodeId) -> Option<&NodeState> {
        self.nodes.get(node)
    }

    /// Every node, sorted by group then node id.
    pub fn nodes(&self) -> Vec<(&NodeId, &NodeState)> {
        let mut nodes: Vec<_> = self.nodes.iter().collect();
        nodes.sort_by(|a, b| a.0.cmp(b.0));
        nodes
    }

    /// Handles one message from an edge node: samples to store go to `samples`, what
    /// else must happen to `actions`.
    #[allow(clippy::too_many_arguments)]
    pub fn handle(
        &mut self,
        group_id: &str,
        message_type: MessageType,
        edge_node_id: &str,
        device_id: Option<&str>,
        payload: Payload,
        now: u64,
        registry: &mut dyn MetricRegistry,
        samples: &mut Vec<Sample>,
        actions: &mut Vec<Action>,
    ) {
        self.stats.messages += 1;
        let before = samples.len();
        let mut out = Out {
            samples,
            actions,
            registry,
        };
        match message_type {
            MessageType::NBirth => self.nbirth(group_id, edge_node_id, payload, now, &mut out),
            MessageType::NDeath => self.ndeath(group_id, edge_node_id, &payload, now, &mut out),
            MessageType::NCmd | MessageType::DCmd => {} // the host's own commands
            _ => self.sequenced(
                group_id,
                message_type,
                edge_node_id,
                device_id,
                payload,
                now,
                &mut out,
            ),
        }
        self.stats.samples += (out.samples.len() - before) as u64;
    }

    /// Gives up on gaps whose reorder timeout has passed: their held messages are applied
    /// in `seq` order and a Rebirth is asked for.
    pub fn tick(
        &mut self,
        now: u64,
        registry: &mut dyn MetricRegistry,
        samples: &mut Vec<Sample>,
        actions: &mut Vec<Action>,
    ) {
        let expired: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.gap_deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Out {
            samples,
            actions,
            registry,
        };
        for id in expired {
            self.give_up_gap(&id, now, &mut out);
        }
    }

    /// The earliest time [`Tracker::tick`] has work to do.
    pub fn next_deadline(&self) -> Option<u64> {
        self.nodes.values().filter_map(|n| n.gap_deadline).min()
    }

    /// The host lost the broker: every node and device is offline and every metric STALE.
    pub fn all_offline(&mut self, now: u64, samples: &mut Vec<Sample>, actions: &mut Vec<Action>) {
        for (id, node) in &mut self.nodes {
            if node.state == Liveness::Online {
                set_node_offline(id, node, now, samples, actions);
            }
        }
    }

    fn nbirth(&mut self, group: &str, edge: &str, payload: Payload, now: u64, out: &mut Out) {
        let id = NodeId::new(group, edge);
        let known = self.nodes.get(&id).map(|n| n.metrics.list.len());
        if known.is_none() && !self.make_room_for_node() {
            self.over_limit(&id, Limit::Nodes, out);
            return;
        }
        let projected = (self.metric_count.saturating_sub(known.unwrap_or(0)))
            .saturating_add(payload.metrics.len());
        if projected > self.config.max_metrics {
            self.over_limit(&id, Limit::Metrics, out);
            return;
        }
        let bd_seq = BdSeq::from_payload(&payload).ok();
        let seq = payload.seq.and_then(|s| Seq::try_from(s).ok());
        let ts = payload.timestamp.unwrap_or(now);
        let node = match self.nodes.entry(id.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(NodeState {
                state: Liveness::Offline,
                since: ts,
                bd_seq: None,
                metrics: Metrics::default(),
                devices: Vec::new(),
                last_birth: None,
                last_death: None,
                seq_gaps: 0,
                rebirths_requested: 0,
                aliases: HashMap::new(),
                expected_seq: None,
                held: Vec::new(),
                held_bytes: 0,
                gap_deadline: None,
            }),
        };
        // A new birth replaces everything: devices must be born again after it.
        for (device_id, device) in &mut node.devices {
            if device.state == Liveness::Online {
                device.state = Liveness::Offline;
                device.since = ts;
                device.metrics.mark_stale(ts, out.samples);
                out.actions.push(Action::Liveness {
                    node: id.clone(),
                    device: Some(device_id.clone()),
                    state: Liveness::Offline,
                    ts,
                });
            }
        }
        node.aliases.clear();
        node.clear_held();
        node.bd_seq = bd_seq;
        node.expected_seq = seq.map(Seq::next);
        node.state = Liveness::Online;
        node.since = ts;
        node.last_birth = Some(ts);
        let key = |name: &str| MetricKey::node(group, edge, name);
        let before = node.metrics.list.len();
        let unplaced = define_metrics(&mut node.metrics, &payload, ts, &key, out);
        self.metric_count = self.metric_count.saturating_sub(before) + node.metrics.list.len();
        bind_aliases(&mut node.aliases, None, &node.metrics);
        out.actions.push(Action::Liveness {
            node: id.clone(),
            device: None,
            state: Liveness::Online,
            ts,
        });
        if unplaced {
            self.request_rebirth(&id, RebirthReason::UnknownMetric, now, out);
        }
    }

    fn ndeath(&mut self, group: &str, edge: &str, payload: &Payload, now: u64, out: &mut Out) {
        let id = NodeId::new(group, edge);
        let Some(node) = self.nodes.get_mut(&id) else {
            return; // never born: nothing to mark
        };
        let bd_seq = BdSeq::from_payload(payload).ok();
        let mismatch = bd_seq.is_some() && node.bd_seq.is_some() && bd_seq != node.bd_seq;
        if node.state == Liveness::Offline || mismatch {
            // The will of an older session, delivered after the node was born again (a
            // birth without bdSeq cannot be matched: its death is taken as it comes).
            self.stats.stale_deaths_ignored += 1;
            return;
        }
        // The host's own time: the NDEATH payload timestamp is the will's, set at CONNECT.
        set_node_offline(&id, node, now, out.samples, out.actions);
    }

    /// Every message that carries a `seq`: NDATA, DBIRTH, DDATA, DDEATH.
    #[allow(clippy::too_many_arguments)]
    fn sequenced(
        &mut self,
        group: &str,
        message_type: MessageType,
        edge: &str,
        device: Option<&str>,
        payload: Payload,
        now: u64,
        out: &mut Out,
    ) {
        let id = NodeId::new(group, edge);
        let Some(node) = self
            .nodes
            .get_mut(&id)
            .filter(|n| n.state == Liveness::Online)
        else {
            self.request_rebirth(&id, RebirthReason::UnknownNode, now, out);
            return;
        };
        let seq = payload.seq.and_then(|s| Seq::try_from(s).ok());
        match (seq, node.expected_seq) {
            _ if self.observer => {} // the data between births is not seen: no order to check
            (Some(seq), Some(expected)) if seq != expected => {
                if node.held.is_empty() {
                    self.stats.seq_gaps += 1;
                    node.seq_gaps += 1;
                    node.gap_deadline = Some(now.saturating_add(self.config.reorder_timeout_ms));
                }
                let cost = Held::cost(&payload);
                node.held.push(Held {
                    seq,
                    message_type,
                    device: device.map(str::to_owned),
                    payload,
                    cost,
                });
                node.held_bytes += cost;
                let full = node.held.len() >= MAX_HELD;
                let held_bytes: usize = self.nodes.values().map(|n| n.held_bytes).sum();
                if held_bytes > self.config.reorder_buffer_bytes {
                    self.over_limit(&id, Limit::ReorderBuffer, out);
                    self.give_up_gap(&id, now, out);
                } else if full {
                    self.give_up_gap(&id, now, out);
                }
                return;
            }
            (Some(seq), _) => node.expected_seq = Some(seq.next()),
            (None, _) => {} // no seq to check: accept, as the payload is otherwise valid
        }
        self.apply(&id, message_type, device, payload, now, out);
        self.release_held(&id, now, out);
    }

    /// Applies held messages that are now in order; closes the gap when none is held.
    fn release_held(&mut self, id: &NodeId, now: u64, out: &mut Out) {
        loop {
            let Some(node) = self.nodes.get_mut(id) else {
                return;
            };
            let Some(expected) = node.expected_seq else {
                return;
            };
            let Some(pos) = node.held.iter().position(|h| h.seq == expected) else {
                if node.held.is_empty() {
                    node.gap_deadline = None;
                }
                return;
            };
            let held = node.held.swap_remove(pos);
            node.held_bytes -= held.cost;
            node.expected_seq = Some(held.seq.next());
            self.apply(
                id,
                held.message_type,
                held.device.as_deref(),
                held.payload,
                now,
                out,
            );
        }
    }

    /// The missing messages never came: apply what is held, in `seq` order from the first
    /// held one, and ask for a Rebirth so the host's picture is whole again.
    fn give_up_gap(&mut self, id: &NodeId, now: u64, out: &mut Out) {
        let Some(node) = self.nodes.get_mut(id) else {
            return;
        };
        let mut held = std::mem::take(&mut node.held);
        node.clear_held();
        if let Some(first) = held.first().map(|h| h.seq) {
            held.sort_by_key(|h| h.seq.value().wrapping_sub(first.value()));
        }
        if let Some(last) = held.last() {
            node.expected_seq = Some(last.seq.next());
        }
        for h in held {
            self.apply(id, h.message_type, h.device.as_deref(), h.payload, now, out);
        }
        self.request_rebirth(id, RebirthReason::SeqGap, now, out);
    }

    /// Applies one in-order message of an online node.
    fn apply(
        &mut self,
        id: &NodeId,
        message_type: MessageType,
        device: Option<&str>,
        payload: Payload,
        now: u64,
        out: &mut Out,
    ) {
        let Some(node) = self.nodes.get_mut(id) else {
            return;
        };
        let problem = match (message_type, device) {
            (MessageType::NData, _) => ingest_data(node, None, payload, now, out.samples),
            (MessageType::DBirth, Some(device)) => {
                let budget = Budget {
                    config: &self.config,
                    metric_count: &mut self.metric_count,
                };
                match dbirth(id, node, device, payload, now, budget, out) {
                    Ok(problem) => problem,
                    Err(limit) => {
                        self.over_limit(id, limit, out);
                        return;
                    }
                }
            }
            (MessageType::DData, Some(device)) => match node.device_index(device) {
                Some(i) if node.devices[i].1.state == Liveness::Online => {
                    ingest_data(node, Some(i), payload, now, out.samples)
                }
                _ => Some(RebirthReason::UnknownDevice),
            },
            (MessageType::DDeath, Some(device)) => match node.device_index(device) {
                Some(i) if node.devices[i].1.state == Liveness::Online => {
                    let ts = payload.timestamp.unwrap_or(now);
                    let (device_id, d) = &mut node.devices[i];
                    d.state = Liveness::Offline;
                    d.since = ts;
                    d.metrics.mark_stale(ts, out.samples);
                    out.actions.push(Action::Liveness {
                        node: id.clone(),
                        device: Some(device_id.clone()),
                        state: Liveness::Offline,
                        ts,
                    });
                    None
                }
                Some(_) => None, // already offline: a repeated death changes nothing
                None => Some(RebirthReason::UnknownDevice),
            },
            _ => None,
        };
        if let Some(reason) = problem {
            self.request_rebirth(id, reason, now, out);
        }
    }

    /// Room for one more node: true when under `max_nodes` or once the longest-offline
    /// node is forgotten.
    fn make_room_for_node(&mut self) -> bool {
        if self.nodes.len() < self.config.max_nodes {
            return true;
        }
        let oldest = self
            .nodes
            .iter()
            .filter(|(_, n)| n.state == Liveness::Offline)
            .min_by_key(|(_, n)| n.since)
            .map(|(id, _)| id.clone());
        let Some(oldest) = oldest else {
            return false;
        };
        if let Some(node) = self.nodes.remove(&oldest) {
            self.metric_count = self.metric_count.saturating_sub(node.metric_count());
        }
        self.last_rebirth.remove(&oldest);
        true
    }

    fn over_limit(&mut self, id: &NodeId, limit: Limit, out: &mut Out) {
        self.stats.over_limit += 1;
        out.actions.push(Action::OverLimit {
            node: id.clone(),
            limit,
        });
    }

    fn request_rebirth(&mut self, id: &NodeId, reason: RebirthReason, now: u64, out: &mut Out) {
        if self.observer {
            return; // the owner asks, not an observer
        }
        let min = self.config.rebirth_min_interval_ms;
        match self.last_rebirth.get_mut(id) {
            Some(last) if now.saturating_sub(*last) < min => {
                self.stats.rebirths_suppressed += 1;
                return;
            }
            Some(last) => *last = now,
            None => {
                // Forged topics must not grow the map without end: entries past the
                // interval limit nothing and go first.
                let cap = self.config.max_nodes.saturating_mul(2);
                if self.last_rebirth.len() >= cap {
                    self.last_rebirth
                        .retain(|_, last| now.saturating_sub(*last) < min);
                }
                if self.last_rebirth.len() >= cap {
                    self.stats.rebirths_suppressed += 1;
                    return;
                }
                self.last_rebirth.insert(id.clone(), now);
            }
        }
        self.stats.rebirths_requested += 1;
        if let Some(node) = self.nodes.get_mut(id) {
            node.rebirths_requested += 1;
        }
        out.actions.push(Action::Rebirth {
            node: id.clone(),
            reason,
        });
    }
}

/// What a DBIRTH may take: the configured bounds and the running metric count.
struct Budget<'a> {
    config: &'a TrackerConfig,
    metric_count: &'a mut usize,
}

/// Where handling writes its results.
struct Out<'a> {
    samples: &'a mut Vec<Sample>,
    actions: &'a mut Vec<Action>,
    registry: &'a mut dyn MetricRegistry,
}

fn set_node_offline(
    id: &NodeId,
    node: &mut NodeState,
    ts: u64,
    samples: &mut Vec<Sample>,
    actions: &mut Vec<Action>,
) {
    node.state = Liveness::Offline;
    node.since = ts;
    node.last_death = Some(ts);
    node.clear_held();
    node.metrics.mark_stale(ts, samples);
    for (device_id, device) in &mut node.devices {
        if device.state == Liveness::Online {
            device.state = Liveness::Offline;
            device.since = ts;
            device.metrics.mark_stale(ts, samples);
            actions.push(Action::Liveness {
                node: id.clone(),
                device: Some(device_id.clone()),
                state: Liveness::Offline,
                ts,
            });
        }
    }
    actions.push(Action::Liveness {
        node: id.clone(),
        device: None,
        state: Liveness::Offline,
        ts,
    });
}

fn dbirth(
    id: &NodeId,
    node: &mut NodeState,
    device: &str,
    payload: Payload,
    now: u64,
    budget: Budget,
    out: &mut Out,
) -> Result<Option<RebirthReason>, Limit> {
    let ts = payload.timestamp.unwrap_or(now);
    let known = node.device_index(device);
    let before = known.map_or(0, |i| node.devices[i].1.metrics.list.len());
    if known.is_none() && node.devices.len() >= budget.config.max_devices_per_node {
        return Err(Limit::Devices);
    }
    if budget.metric_count.saturating_sub(before) + payload.metrics.len()
        > budget.config.max_metrics
    {
        return Err(Limit::Metrics);
    }
    let index = match known {
        Some(i) => i,
        None => {
            node.devices.push((
                device.to_owned(),
                DeviceState {
                    state: Liveness::Offline,
                    since: ts,
                    metrics: Metrics::default(),
                },
            ));
            node.devices.len() - 1
        }
    };
    node.aliases.retain(|_, (d, _)| *d != Some(index));
    let key = |name: &str| MetricKey::device(&id.group_id, &id.edge_node_id, device, name);
    let d = &mut node.devices[index].1;
    let unplaced = define_metrics(&mut d.metrics, &payload, ts, &key, out);
    *budget.metric_count = budget.metric_count.saturating_sub(before) + d.metrics.list.len();
    d.state = Liveness::Online;
    d.since = ts;
    bind_aliases(&mut node.aliases, Some(index), &d.metrics);
    out.actions.push(Action::Liveness {
        node: id.clone(),
        device: Some(device.to_owned()),
        state: Liveness::Online,
        ts,
    });
    Ok(unplaced.then_some(RebirthReason::UnknownMetric))
}

/// Replaces `metrics` with the birth's definitions, registers them and stores the birth
/// values. Returns true when a birth metric had no name (it cannot be placed).
fn define_metrics(
    metrics: &mut Metrics,
    birth: &Payload,
    ts: u64,
    key: &dyn Fn(&str) -> MetricKey,
    out: &mut Out,
) -> bool {
    let old = std::mem::take(metrics);
    let mut unplaced = false;
    for m in &birth.metrics {
        let Some(name) = m.name.as_deref() else {
            unplaced = true;
            continue;
        };
        let datatype = m.datatype.or_else(|| m.typed_value().map(Value::datatype));
        let units = m
            .properties
            .as_ref()
            .and_then(|p| p.eng_unit())
            .map(str::to_owned);
        let eng_range = m.properties.as_ref().and_then(|p| p.eng_range());
        let writable = m.properties.as_ref().is_some_and(|p| p.writable());
        // Keep the id of a metric born before with the same datatype and units.
        let previous = old.get(name);
        let id = match previous {
            Some(p) if p.datatype == datatype && p.units == units && p.id.is_some() => p.id,
            _ => out.registry.register(
                &key(name),
                &MetricMeta {
                    datatype: datatype.map(|d| d.to_string()).unwrap_or_default(),
                    units: units.clone(),
                },
            ),
        };
        let state = MetricState {
            name: name.to_owned(),
            datatype,
            units,
            alias: m.alias,
            eng_range,
            writable,
            id,
            value: None,
            quality: Quality::GOOD,
            ts: 0, // the birth value sets it, whatever its timestamp
        };
        match metrics.by_name.entry(name.to_owned()) {
            Entry::Occupied(e) => metrics.list[*e.get()] = state,
            Entry::Vacant(e) => {
                e.insert(metrics.list.len());
                metrics.list.push(state);
            }
        }
        let index = metrics.by_name[name];
        update(&mut metrics.list[index], m, ts, out.samples);
    }
    unplaced
}

fn bind_aliases(
    aliases: &mut HashMap<u64, (Option<usize>, usize)>,
    device: Option<usize>,
    metrics: &Metrics,
) {
    for (i, m) in metrics.list.iter().enumerate() {
        if let Some(alias) = m.alias {
            aliases.insert(alias, (device, i));
        }
    }
}

/// NDATA (device `None`) or DDATA: each metric by alias or name. Returns a reason to ask
/// for a Rebirth when a metric cannot be placed; the others are still stored.
fn ingest_data(
    node: &mut NodeState,
    device: Option<usize>,
    payload: Payload,
    now: u64,
    samples: &mut Vec<Sample>,
) -> Option<RebirthReason> {
    let ts = payload.timestamp.unwrap_or(now);
    let mut problem = None;
    for m in &payload.metrics {
        let index = match (m.alias, m.name.as_deref()) {
            (Some(alias), _) => match node.aliases.get(&alias) {
                Some(&(d, i)) if d == device => Some(i),
                _ => None,
            },
            (None, Some(name)) => metrics_of(node, device).by_name.get(name).copied(),
            (None, None) => None,
        };
        let Some(index) = index else {
            problem = Some(RebirthReason::UnknownMetric);
            continue;
        };
        update(&mut metrics_of(node, device).list[index], m, ts, samples);
    }
    problem
}

fn metrics_of(node: &mut NodeState, device: Option<usize>) -> &mut Metrics {
    match device {
        Some(i) => &mut node.devices[i].1.metrics,
        None => &mut node.metrics,
    }
}

/// Records a metric's new value and queues its sample.
fn update(state: &mut MetricState, m: &Metric, payload_ts: u64, samples: &mut Vec<Sample>) {
    let ts = m.timestamp.unwrap_or(payload_ts);
    let value = match (&m.value, state.datatype) {
        (MetricValue::Null, _) => SampleValue::Null,
        (MetricValue::Value(v), _) => sample_value(v),
        (MetricValue::Untyped(w), Some(dt)) => match w.clone().into_value(dt) {
            Ok(v) => sample_value(&v),
            Err(_) => return, // does not fit the birth's datatype: not a value of this metric
        },
        (MetricValue::Untyped(_), None) => return,
    };
    let quality = metric_quality(m);
    if !m.is_historical && ts >= state.ts {
        state.value = Some(value.clone());
        state.quality = quality;
        state.ts = ts;
    }
    if let Some(id) = state.id {
        samples.push(Sample {
            metric: id,
            ts,
            value,
            quality,
            is_historical: m.is_historical,
        });
    }
}

/// The metric's `Quality` property, any Int32 code passed through; GOOD when absent.
fn metric_quality(m: &Metric) -> Quality {
    let Some(props) = &m.properties else {
        return Quality::GOOD;
    };
    match props.get(keys::QUALITY) {
        Some(PropertyValue::Value(BasicValue::Int32(code))) => Quality(*code),
        Some(PropertyValue::Value(BasicValue::Int64(code))) => {
            i32::try_from(*code).map(Quality).unwrap_or(Quality::BAD)
        }
        Some(PropertyValue::Value(BasicValue::UInt32(code))) => {
            i32::try_from(*code).map(Quality).unwrap_or(Quality::BAD)
        }
        _ => Quality::GOOD,
    }
}

/// A Sparkplug value as history keeps it; complex values (arrays, DataSet, Template) as
/// their JSON text.
pub fn sample_value(v: &Value) -> SampleValue {
    match v {
        Value::Int8(x) => SampleValue::I64(i64::from(*x)),
        Value::Int16(x) => SampleValue::I64(i64::from(*x)),
        Value::Int32(x) => SampleValue::I64(i64::from(*x)),
        Value::Int64(x) => SampleValue::I64(*x),
        Value::UInt8(x) => SampleValue::I64(i64::from(*x)),
        Value::UInt16(x) => SampleValue::I64(i64::from(*x)),
        Value::UInt32(x) => SampleValue::I64(i64::from(*x)),
        Value::UInt64(x) => SampleValue::U64(*x),
        Value::DateTime(x) => SampleValue::U64(*x),
        Value::Float(x) => SampleValue::F64(f64::from(*x)),
        Value::Double(x) => SampleValue::F64(*x),
        Value::Boolean(x) => SampleValue::Bool(*x),
        Value::String(s) | Value::Text(s) | Value::Uuid(s) => SampleValue::Text(s.clone()),
        Value::Bytes(b) | Value::File(b) => SampleValue::Bytes(b.clone()),
        other => SampleValue::Text(crate::json::value(other).to_string()),
    }
}

#[cfg(test)]
mod tests;
