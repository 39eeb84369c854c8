//! The Overview page: every group, edge node and device of the fleet with ONLINE /
//! OFFLINE / STALE and since when, each node's bdSeq, last birth and death, seq gaps,
//! Rebirths requested and its store-and-forward figures (the node's `Store/*` metrics).
//! Nodes of groups another instance owns are listed as observed, with their owner: their
//! state comes from their births and deaths, their figures from (shared) history.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use web::shell::Shell;
use web::{Caller, Role};

use super::{PanelState, metric_key, shown_state};
use crate::shared::sample_json;
use crate::tracker::{Liveness, Metrics, NodeId, NodeState};

/// The node metrics an edge node reports its store-and-forward with.
const STORE_METRICS: [&str; 4] = [
    "Store/Depth",
    "Store/Oldest Age",
    "Store/Replay Rate",
    "Store/Dropped",
];

pub struct StoreFigure {
    /// The metric's name, `Store/Depth`...
    pub name: &'static str,
    pub key: String,
    pub text: String,
    pub units: String,
}

pub struct DeviceRow {
    pub id: String,
    pub href: String,
    pub state: &'static str,
    pub since: u64,
    pub metrics: usize,
}

pub struct NodeRow {
    pub group: String,
    pub id: String,
    /// The node's page; empty for an observed node (this instance has no detail of it).
    pub href: String,
    /// This instance owns the node's group.
    pub owned: bool,
    /// The owning instance's host id; `None` when no known instance owns the group.
    pub owner: Option<String>,
    pub state: &'static str,
    pub since: u64,
    pub bd_seq: String,
    pub last_birth: u64,
    pub last_death: u64,
    /// Seq gaps seen and Rebirths asked: `–` for an observed node (its owner checks).
    pub seq_gaps: String,
    pub rebirths: String,
    pub store: Vec<StoreFigure>,
    pub devices: Vec<DeviceRow>,
}

pub struct GroupRow {
    pub id: String,
    pub nodes: Vec<NodeRow>,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    shell: Shell,
    host_id: String,
    connected: bool,
    /// The fleet's other instances: host id and `ONLINE`, `OFFLINE` or `UNKNOWN`.
    peers: Vec<(String, &'static str)>,
    groups: Vec<GroupRow>,
    operator: bool,
}

/// A metric's latest value as text, with its units; `–` when none.
pub fn value_text(metrics: &Metrics, name: &str) -> String {
    let Some(m) = metrics.get(name) else {
        return "–".into();
    };
    let value = match &m.value {
        Some(v) => super::value_text(&sample_json(v), m.datatype),
        None => return "–".into(),
    };
    match &m.units {
        Some(u) if !u.is_empty() => format!("{value} {u}"),
        _ => value,
    }
}

/// The groups as the tracker (owned nodes) and the observer (the fleet's others) see them.
pub fn groups(state: &PanelState) -> Vec<GroupRow> {
    let shared = &state.shared;
    let connected = shared.is_connected();
    let mut rows: Vec<(NodeId, NodeRow)> = Vec::new();
    for (id, node) in shared.tracker().nodes() {
        rows.push((
            id.clone(),
            node_row(id, node, connected, Some(&shared.host_id)),
        ));
    }
    for (id, node) in shared.observed().nodes() {
        let owner = shared.ownership.owner(&id.group_id);
        let mut row = node_row(id, node, connected, owner);
        row.owned = false;
        row.href = String::new();
        row.seq_gaps = "–".into();
        row.rebirths = "–".into();
        rows.push((id.clone(), row));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut groups: Vec<GroupRow> = Vec::new();
    for (id, row) in rows {
        match groups.last_mut() {
            Some(group) if group.id == id.group_id => group.nodes.push(row),
            _ => groups.push(GroupRow {
                id: id.group_id,
                nodes: vec![row],
            }),
        }
    }
    groups
}

fn node_row(id: &NodeId, node: &NodeState, connected: bool, owner: Option<&str>) -> NodeRow {
    let (g, n) = (&id.group_id, &id.edge_node_id);
    NodeRow {
        group: g.clone(),
        id: n.clone(),
        href: format!("/node/{}/{}", path_segment(g), path_segment(n)),
        owned: true,
        owner: owner.map(str::to_owned),
        state: shown_state(connected, node.state == Liveness::Online),
        since: node.since,
        bd_seq: node
            .bd_seq
            .map_or_else(|| "–".into(), |b| b.value().to_string()),
        last_birth: node.last_birth.unwrap_or(0),
        last_death: node.last_death.unwrap_or(0),
        seq_gaps: node.seq_gaps.to_string(),
        rebirths: node.rebirths_requested.to_string(),
        store: STORE_METRICS
            .iter()
            .map(|&name| StoreFigure {
                name,
                key: metric_key(g, n, None, name),
                text: value_text(&node.metrics, name),
                units: node
                    .metrics
                    .get(name)
                    .and_then(|m| m.units.clone())
                    .unwrap_or_default(),
            })
            .collect(),
        devices: node
            .devices
            .iter()
            .map(|(d, dev)| DeviceRow {
                id: d.clone(),
                href: format!(
                    "/device/{}/{}/{}",
                    path_segment(g),
                    path_segment(n),
                    path_segment(d)
                ),
                state: shown_state(connected, dev.state == Liveness::Online),
                since: dev.since,
                metrics: dev.metrics.list.len(),
            })
            .collect(),
    }
}

/// Percent-encodes an id for one path segment.
pub fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn page(State(state): State<PanelState>, caller: Caller) -> Response {
    let page = OverviewPage {
        shell: state.shell(&caller, "Overview", "/", &["host.js"]),
        host_id: state.shared.host_id.clone(),
        connected: state.shared.is_connected(),
        peers: state
            .shared
            .peer_states()
            .into_iter()
            .map(|(id, online)| {
                let shown = match online {
                    Some(true) => "ONLINE",
                    Some(false) => "OFFLINE",
                    None => "UNKNOWN",
                };
                (id, shown)
            })
            .collect(),
        groups: groups(&state),
        operator: caller.has_role(Role::Operator) && caller.may_write(),
    };
    web::shell::html(StatusCode::OK, &page)
}
