//! What the session, the command path and the API share: the tracker's picture of every
//! edge node this instance owns, the observer's picture of the fleet's other nodes, which
//! groups are whose, the history store, the live event stream and the connection state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::Value as Json;
use tokio::sync::broadcast;

use crate::fleet::Ownership;
use crate::history::{HistoryStore, MetricKey, SampleValue};
use crate::tracker::{Liveness, Tracker, TrackerConfig};

/// Live changes buffered for slow `/api/events` listeners before they skip ahead.
const EVENT_BUFFER: usize = 1024;

/// One live change, as `/api/events` streams it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HostEvent {
    /// A node (device `None`) or device came online or went offline.
    State {
        group: String,
        node: String,
        device: Option<String>,
        state: Liveness,
        ts: u64,
    },
    /// A metric's new value.
    Value {
        group: String,
        node: String,
        device: Option<String>,
        metric: String,
        value: Json,
        quality: i32,
        ts: u64,
        is_historical: bool,
    },
    /// The host's own MQTT session went up or down.
    Host { connected: bool, ts: u64 },
}

impl HostEvent {
    pub fn value(key: &MetricKey, sample: &crate::history::Sample) -> HostEvent {
        HostEvent::Value {
            group: key.group_id.clone(),
            node: key.edge_node_id.clone(),
            device: key.device_id.clone(),
            metric: key.name.clone(),
            value: sample_json(&sample.value),
            quality: sample.quality.0,
            ts: sample.ts,
            is_historical: sample.is_historical,
        }
    }
}

/// A stored value as JSON: numbers as numbers (non-finite floats as strings, as the
/// payload view writes them), bytes as base64.
pub fn sample_json(value: &SampleValue) -> Json {
    use base64::Engine as _;
    match value {
        SampleValue::Null => Json::Null,
        SampleValue::Bool(b) => Json::Bool(*b),
        SampleValue::I64(v) => Json::from(*v),
        SampleValue::U64(v) => Json::from(*v),
        SampleValue::F64(v) => crate::json::value(&sparkplug::Value::Double(*v)),
        SampleValue::Text(s) => Json::String(s.clone()),
        SampleValue::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

/// The host's shared state.
pub struct HostShared {
    pub host_id: String,
    pub store: Arc<dyn HistoryStore>,
    /// Which groups this instance owns and who owns the others.
    pub ownership: Ownership,
    tracker: Mutex<Tracker>,
    /// The nodes of groups other instances own, from their births and deaths.
    observed: Mutex<Tracker>,
    /// Each configured peer's latest STATE: online or not, `None` before one is seen.
    /// Only configured peers: a forged STATE topic cannot grow it.
    peers: Mutex<Vec<(String, Option<bool>)>>,
    events: broadcast::Sender<HostEvent>,
    connected: AtomicBool,
    /// Connections of the session accepted by the broker, over the process's life.
    connects: AtomicU64,
    /// Bytes on the session's MQTT link, over every connection.
    link_bytes: Arc<infra::link::ByteCounters>,
}

impl HostShared {
    /// A host that owns every group.
    pub fn new(host_id: &str, store: Arc<dyn HistoryStore>, config: TrackerConfig) -> Arc<Self> {
        Self::with_ownership(store, config, Ownership::all(host_id))
    }

    /// A host instance of a fleet, owning the groups `ownership` says.
    pub fn with_ownership(
        store: Arc<dyn HistoryStore>,
        config: TrackerConfig,
        ownership: Ownership,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let peers = ownership
            .peer_ids()
            .map(|id| (id.to_owned(), None))
            .collect();
        Arc::new(Self {
            host_id: ownership.host_id().to_owned(),
            store,
            ownership,
            tracker: Mutex::new(Tracker::new(config)),
            observed: Mutex::new(Tracker::observer(config)),
            peers: Mutex::new(peers),
            events,
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            link_bytes: Arc::default(),
        })
    }

    /// The tracker, locked. Held only for the handling of one message or one read.
    pub fn tracker(&self) -> MutexGuard<'_, Tracker> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The observer of the groups other instances own, locked (same rule as `tracker`).
    pub fn observed(&self) -> MutexGuard<'_, Tracker> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a STATE of `host_id`; false when it is not a configured peer.
    pub(crate) fn set_peer_state(&self, host_id: &str, online: bool) -> bool {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        match peers.iter_mut().find(|(id, _)| id == host_id) {
            Some((_, state)) => {
                *state = Some(online);
                true
            }
            None => false,
        }
    }

    /// Each configured peer and its latest STATE (`None`: none seen yet).
    pub fn peer_states(&self) -> Vec<(String, Option<bool>)> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HostEvent> {
        self.events.subscribe()
    }

    /// Whether anyone listens: value events are only built for listeners.
    pub fn has_listeners(&self) -> bool {
        self.events.receiver_count() > 0
    }

    pub fn publish(&self, event: HostEvent) {
        let _ = self.events.send(event); // no listener is fine
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        if !self.connected.swap(connected, Ordering::AcqRel) && connected {
            self.connects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections the broker accepted for the session so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// The session's MQTT byte counts (each connection adds to them).
    pub fn link_bytes(&self) -> &Arc<infra::link::ByteCounters> {
        &self.link_bytes
    }
}
