//! The JSON API's request and response bodies, typed: the handlers build these, the
//! panel's pages and the tests read them. Field names are the wire names.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::tracker::Liveness;

/// Every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// `GET /api/tree`: every group, edge node, device and metric of the fleet: the nodes of
/// the groups this instance owns, and those it observes for other instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub host_id: String,
    /// The host's own MQTT session is up.
    pub connected: bool,
    /// The other host instances of the fleet (`[sparkplug] peers`) and their STATE.
    #[serde(default)]
    pub peers: Vec<PeerView>,
    pub groups: Vec<GroupView>,
}

/// A peer instance: `online` from its latest STATE, `null` before one was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    pub host_id: String,
    pub online: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupView {
    pub group: String,
    pub nodes: Vec<NodeView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub node: String,
    pub state: Liveness,
    /// When `state` last changed, ms since the Unix epoch.
    pub since: u64,
    #[serde(rename = "bdSeq")]
    pub bd_seq: Option<u8>,
    /// This instance owns the node's group (ingests it, takes its commands).
    pub owned: bool,
    /// The host id of the instance that owns the group: this one's when `owned`, a
    /// configured peer's otherwise, `null` when no known instance owns it.
    pub owner: Option<String>,
    pub metrics: Vec<MetricView>,
    pub devices: Vec<DeviceView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceView {
    pub device: String,
    pub state: Liveness,
    pub since: u64,
    pub metrics: Vec<MetricView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricView {
    pub name: String,
    /// The birth's datatype (`Double`, `UInt16`, ...).
    pub datatype: Option<String>,
    pub units: Option<String>,
    pub alias: Option<u64>,
    /// The latest value; `null` until one is known.
    pub value: Option<Json>,
    /// 192 GOOD, 500 STALE, 0 BAD.
    pub quality: i32,
    /// Timestamp of the latest value, ms since the Unix epoch.
    pub timestamp: u64,
}

/// `GET /api/history?metric=group/node[/device]:name&from=&to=&points=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub metric: String,
    pub from: u64,
    pub to: u64,
    pub points: Vec<TrendPoint>,
}

/// One bucket of a trend: min and max keep spikes visible at any width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    pub start: u64,
    pub end: u64,
    pub count: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
    pub last: TrendSample,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendSample {
    pub ts: u64,
    pub value: Json,
    pub quality: i32,
    pub is_historical: bool,
}

/// `POST /api/write` (operator): one value for a metric of an edge node or device.
/// The audited user is the caller; a `user` field is refused.
pub use crate::command::WriteRequest;

/// The answer to a write that was published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteReply {
    /// `sent`: published; the new value comes back in DATA when the edge node took it.
    pub outcome: String,
    /// `NCMD` or `DCMD`.
    pub message: String,
    pub audit_id: i64,
}

/// `POST /api/rebirth` (operator): ask an edge node for its births again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebirthRequest {
    pub group: String,
    pub node: String,
}

/// The answer to a Rebirth request that was published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebirthReply {
    pub outcome: String,
    pub audit_id: i64,
}

/// `GET /api/audit?from=&to=&user=&metric=&limit=`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLog {
    pub entries: Vec<AuditView>,
}

/// One audit entry: an operator's write or Rebirth, or an account event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    pub id: i64,
    pub ts: u64,
    /// The logged-in user (or the account an account event concerns; `""` when none).
    pub user: String,
    /// `write`, `rebirth`, or an account event: `login_succeeded`, `login_failed`,
    /// `locked_out`, `logout`, `setup_completed`, `user_created`, `forbidden`, ...
    pub action: String,
    /// `group/node[/device]` of a write or Rebirth.
    pub node: Option<String>,
    /// `group/node[/device]:name` of a write or Rebirth.
    pub metric: Option<String>,
    /// The value written; for an account event, `{"addr": ...}`.
    pub value: Json,
    /// `sent`, `rejected`, `failed`, `confirmed`, or `done` for an account event.
    pub outcome: String,
    pub detail: Option<String>,
}
