//! A node's or device's page: its state, and the live tag table (name, value, units,
//! quality, timestamp and age, historical flag), kept current by `/api/events`; a Write
//! button on writable metrics for operators, and the node's Rebirth request.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use web::shell::Shell;
use web::{Caller, Role};

use super::overview::{path_segment, value_text};
use super::{PanelState, metric_key, shown_state};
use crate::history::Quality;
use crate::shared::sample_json;
use crate::tracker::{Liveness, MetricState, Metrics, NodeId};

pub struct TagRow {
    pub name: String,
    pub key: String,
    pub value: String,
    /// The value as JSON, for the write dialog.
    pub value_json: String,
    pub datatype: String,
    pub units: String,
    pub quality: &'static str,
    pub stale: bool,
    pub ts: u64,
    pub writable: bool,
    pub low: String,
    pub high: String,
}

#[derive(Template)]
#[template(path = "tags.html")]
struct TagsPage {
    shell: Shell,
    group: String,
    node: String,
    device: String,
    node_href: String,
    state: &'static str,
    since: u64,
    tags: Vec<TagRow>,
    /// The node's link bill (its `Link/Bytes ... This Hour/Today` metrics), when it has one.
    bill: Vec<BillFigure>,
    operator: bool,
}

/// The node metrics an edge node reports its link bill with, their captions and how the
/// page shows them (`host.js` formats: `bytes`, `budget`, `replay`).
const BILL_METRICS: [(&str, &str, &str); 6] = [
    ("Link/Bytes Sent This Hour", "sent this hour", "bytes"),
    (
        "Link/Bytes Received This Hour",
        "received this hour",
        "bytes",
    ),
    ("Link/Bytes Sent Today", "sent today (UTC)", "bytes"),
    ("Link/Bytes Received Today", "received today", "bytes"),
    ("Link/Daily Budget", "daily budget", "budget"),
    ("Store/Replay Paused", "historical replay", "replay"),
];

/// One figure of the link bill: the exact value as text, and as JSON for the page to format.
pub struct BillFigure {
    pub caption: &'static str,
    pub key: String,
    pub text: String,
    pub value_json: String,
    pub format: &'static str,
}

/// The bill figures of a node's metrics; empty when it reports none.
fn bill(group: &str, node: &str, metrics: &Metrics) -> Vec<BillFigure> {
    if metrics.get(BILL_METRICS[0].0).is_none() {
        return Vec::new();
    }
    BILL_METRICS
        .iter()
        .map(|&(name, caption, format)| BillFigure {
            caption,
            key: metric_key(group, node, None, name),
            text: value_text(metrics, name),
            value_json: metrics
                .get(name)
                .and_then(|m| m.value.as_ref())
                .map_or_else(|| "null".into(), |v| sample_json(v).to_string()),
            format,
        })
        .collect()
}

/// Quality codes as the table shows them.
pub fn quality_text(q: Quality) -> &'static str {
    match q.0 {
        192 => "GOOD",
        500 => "STALE",
        0 => "BAD",
        _ => "OTHER",
    }
}

fn rows(
    group: &str,
    node: &str,
    device: Option<&str>,
    metrics: &[MetricState],
    online: bool,
) -> Vec<TagRow> {
    metrics
        .iter()
        .map(|m| {
            let json = m.value.as_ref().map(sample_json);
            let value = json
                .as_ref()
                .map_or_else(|| "–".into(), |v| super::value_text(v, m.datatype));
            let (low, high) = m
                .eng_range
                .map_or((String::new(), String::new()), |(l, h)| {
                    (l.to_string(), h.to_string())
                });
            TagRow {
                name: m.name.clone(),
                key: metric_key(group, node, device, &m.name),
                value,
                value_json: json.map_or_else(|| "null".into(), |v| v.to_string()),
                datatype: m.datatype.map_or_else(String::new, |d| d.to_string()),
                units: m.units.clone().unwrap_or_default(),
                quality: quality_text(m.quality),
                stale: !online || m.quality == Quality::STALE,
                ts: m.ts,
                writable: m.writable && m.datatype.is_some(),
                low,
                high,
            }
        })
        .collect()
}

pub async fn node_page(
    State(state): State<PanelState>,
    caller: Caller,
    Path((group, node)): Path<(String, String)>,
) -> Response {
    render(state, caller, group, node, None)
}

pub async fn device_page(
    State(state): State<PanelState>,
    caller: Caller,
    Path((group, node, device)): Path<(String, String, String)>,
) -> Response {
    render(state, caller, group, node, Some(device))
}

fn render(
    state: PanelState,
    caller: Caller,
    group: String,
    node: String,
    device: Option<String>,
) -> Response {
    let connected = state.shared.is_connected();
    let found = {
        let tracker = state.shared.tracker();
        tracker
            .node(&NodeId::new(&group, &node))
            .and_then(|n| match &device {
                None => Some((
                    n.state,
                    n.since,
                    n.metrics.list.clone(),
                    bill(&group, &node, &n.metrics),
                )),
                Some(d) => n.device(d).map(|dev| {
                    // A device of an offline node is as good as offline.
                    let online = dev.state == Liveness::Online && n.state == Liveness::Online;
                    let state = if online {
                        Liveness::Online
                    } else {
                        Liveness::Offline
                    };
                    (state, dev.since, dev.metrics.list.clone(), Vec::new())
                }),
            })
    };
    let title = match &device {
        Some(d) => format!("{group}/{node}/{d}"),
        None => format!("{group}/{node}"),
    };
    let Some((liveness, since, metrics, bill)) = found else {
        return state.message(
            &caller,
            StatusCode::NOT_FOUND,
            "Not found",
            format!("The host knows no {title}."),
        );
    };
    let online = connected && liveness == Liveness::Online;
    let page = TagsPage {
        shell: state.shell(&caller, &title, "", &["host.js"]),
        tags: rows(&group, &node, device.as_deref(), &metrics, online),
        bill,
        node_href: format!("/node/{}/{}", path_segment(&group), path_segment(&node)),
        group,
        node,
        device: device.unwrap_or_default(),
        state: shown_state(connected, liveness == Liveness::Online),
        since,
        operator: caller.has_role(Role::Operator) && caller.may_write(),
    };
    web::shell::html(StatusCode::OK, &page)
}
