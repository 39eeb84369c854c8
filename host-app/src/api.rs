//! The panel's HTTP API (JSON): the tree of edge nodes, devices and metrics, history
//! trends, writes with their audit log, and a server-sent event stream of live changes.
//! Every input is checked; errors are `{"error": "..."}` with 400, 404, 409 or 500.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use infra::clock::now_ms;
use serde_json::{Value as Json, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::command::{self, WriteError, WriteRequest};
use crate::history::{AuditQuery, MetricKey, TimeRange};
use crate::session::Publisher;
use crate::shared::{HostShared, sample_json};
use crate::tracker::{MetricState, Metrics};

/// Most trend points one request may ask for.
const MAX_POINTS: u32 = 10_000;
/// Most audit entries one request returns.
const MAX_AUDIT: u32 = 10_000;
/// Default trend window when `from` is absent.
const DEFAULT_WINDOW_MS: u64 = 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("api.listen {addr} is already in use by another program")]
    AddrInUse { addr: SocketAddr },
    #[error("api.listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct ApiState {
    shared: Arc<HostShared>,
    publisher: Publisher,
    shutdown: CancellationToken,
}

/// The running API server.
pub struct ApiServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Binds `listen` (refusing clearly when the port is taken) and serves until
    /// `shutdown` is cancelled.
    pub async fn start(
        listen: SocketAddr,
        shared: Arc<HostShared>,
        publisher: Publisher,
        shutdown: CancellationToken,
    ) -> Result<ApiServer, ApiError> {
        let listener =
            tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::AddrInUse => ApiError::AddrInUse { addr: listen },
                    _ => ApiError::Bind {
                        addr: listen,
                        source,
                    },
                })?;
        let addr = listener.local_addr().map_err(|source| ApiError::Bind {
            addr: listen,
            source,
        })?;
        let state = ApiState {
            shared,
            publisher,
            shutdown: shutdown.clone(),
        };
        let app = router(state);
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "API server stopped");
            }
        });
        tracing::info!(%addr, "API listening");
        Ok(ApiServer { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the server to finish after its shutdown token was cancelled.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/tree", get(tree))
        .route("/api/history", get(history))
        .route("/api/write", post(write))
        .route("/api/audit", get(audit))
        .route("/api/events", get(events))
        .with_state(state)
}

/// An error answer: status and a message naming what is wrong.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(message: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message.into())
}

fn internal(message: impl std::fmt::Display) -> Failure {
    Failure(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::history::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal)?
        .map_err(internal)
}

async fn tree(State(state): State<ApiState>) -> axum::Json<Json> {
    let tracker = state.shared.tracker();
    let mut groups: Vec<(String, Vec<Json>)> = Vec::new();
    for (id, node) in tracker.nodes() {
        let devices: Vec<Json> = node
            .devices
            .iter()
            .map(|(device_id, d)| {
                json!({
                    "device": device_id,
                    "state": d.state,
                    "since": d.since,
                    "metrics": metrics_json(&d.metrics),
                })
            })
            .collect();
        let node_json = json!({
            "node": id.edge_node_id,
            "state": node.state,
            "since": node.since,
            "bdSeq": node.bd_seq.map(|b| b.value()),
            "metrics": metrics_json(&node.metrics),
            "devices": devices,
        });
        match groups.last_mut() {
            Some((group, nodes)) if *group == id.group_id => nodes.push(node_json),
            _ => groups.push((id.group_id.clone(), vec![node_json])),
        }
    }
    let groups: Vec<Json> = groups
        .into_iter()
        .map(|(group, nodes)| json!({ "group": group, "nodes": nodes }))
        .collect();
    axum::Json(json!({
        "host_id": state.shared.host_id,
        "connected": state.shared.is_connected(),
        "groups": groups,
    }))
}

fn metrics_json(metrics: &Metrics) -> Vec<Json> {
    metrics.list.iter().map(metric_json).collect()
}

fn metric_json(m: &MetricState) -> Json {
    json!({
        "name": m.name,
        "datatype": m.datatype.map(|d| d.to_string()),
        "units": m.units,
        "alias": m.alias,
        "value": m.value.as_ref().map(sample_json),
        "quality": m.quality.0,
        "timestamp": m.ts,
    })
}

type Params = Query<HashMap<String, String>>;

fn param_u64(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, Failure> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                bad(format!(
                    "`{name}` must be milliseconds since the epoch, got {v:?}"
                ))
            })
        })
        .transpose()
}

/// `group/node[/device]:name`, the form history prints metric keys in.
pub fn parse_metric_key(text: &str) -> Result<MetricKey, String> {
    let (ids, name) = text
        .split_once(':')
        .ok_or_else(|| format!("`metric` {text:?} must be group/node[/device]:name"))?;
    if name.is_empty() {
        return Err(format!("`metric` {text:?} has an empty name"));
    }
    let parts: Vec<&str> = ids.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`metric` {text:?} has an empty id"));
    }
    match parts.as_slice() {
        [group, node] => Ok(MetricKey::node(group, node, name)),
        [group, node, device] => Ok(MetricKey::device(group, node, device, name)),
        _ => Err(format!(
            "`metric` {text:?} must be group/node[/device]:name"
        )),
    }
}

async fn history(
    State(state): State<ApiState>,
    Query(params): Params,
) -> Result<axum::Json<Json>, Failure> {
    let metric = params
        .get("metric")
        .ok_or_else(|| bad("`metric` is required (group/node[/device]:name)"))?;
    let key = parse_metric_key(metric).map_err(bad)?;
    let to = param_u64(&params, "to")?.unwrap_or_else(now_ms);
    let from = param_u64(&params, "from")?.unwrap_or(to.saturating_sub(DEFAULT_WINDOW_MS));
    if from >= to {
        return Err(bad(format!("`from` ({from}) must be before `to` ({to})")));
    }
    let points = match params.get("points") {
        None => 500,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=MAX_POINTS).contains(p))
            .ok_or_else(|| bad(format!("`points` must be 1 to {MAX_POINTS}, got {v:?}")))?,
    };
    let store = Arc::clone(&state.shared.store);
    let lookup = key.clone();
    let id = blocking(move || store.resolve_metric(&lookup))
        .await?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("metric {key} is unknown")))?;
    let store = Arc::clone(&state.shared.store);
    let buckets = blocking(move || store.downsample(id, TimeRange::new(from, to), points)).await?;
    let points: Vec<Json> = buckets
        .iter()
        .map(|b| {
            json!({
                "start": b.start,
                "end": b.end,
                "count": b.count,
                "min": b.min,
                "max": b.max,
                "avg": b.avg,
                "last": {
                    "ts": b.last.ts,
                    "value": sample_json(&b.last.value),
                    "quality": b.last.quality.0,
                    "is_historical": b.last.is_historical,
                },
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "metric": key.to_string(),
        "from": from,
        "to": to,
        "points": points,
    })))
}

async fn write(State(state): State<ApiState>, body: Bytes) -> Result<axum::Json<Json>, Failure> {
    let request: WriteRequest =
        serde_json::from_slice(&body).map_err(|e| bad(format!("request body: {e}")))?;
    match command::write(&state.shared, &state.publisher, &request).await {
        Ok(receipt) => Ok(axum::Json(json!({
            "outcome": "sent",
            "message": receipt.topic_type,
            "audit_id": receipt.audit_id,
        }))),
        Err(e) => {
            let status = match e {
                WriteError::BadRequest(_) => StatusCode::BAD_REQUEST,
                WriteError::NotFound(_) => StatusCode::NOT_FOUND,
                WriteError::Conflict(_) => StatusCode::CONFLICT,
                WriteError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(Failure(status, e.to_string()))
        }
    }
}

async fn audit(
    State(state): State<ApiState>,
    Query(params): Params,
) -> Result<axum::Json<Json>, Failure> {
    let to = param_u64(&params, "to")?.unwrap_or(u64::MAX >> 1);
    let from = param_u64(&params, "from")?.unwrap_or(0);
    let limit = match params.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_AUDIT).contains(l))
            .ok_or_else(|| bad(format!("`limit` must be 1 to {MAX_AUDIT}, got {v:?}")))?,
    };
    let metric = params
        .get("metric")
        .map(|m| parse_metric_key(m))
        .transpose()
        .map_err(bad)?;
    let query = AuditQuery {
        range: TimeRange::new(from, to),
        user: params.get("user").cloned(),
        metric,
        limit,
    };
    let store = Arc::clone(&state.shared.store);
    let records = blocking(move || store.audit_query(&query)).await?;
    let entries: Vec<Json> = records
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "ts": r.entry.ts,
                "user": r.entry.user,
                "metric": r.entry.metric.to_string(),
                "value": serde_json::from_str::<Json>(&r.entry.value)
                    .unwrap_or_else(|_| Json::String(r.entry.value.clone())),
                "outcome": r.entry.outcome.as_str(),
                "detail": r.entry.detail,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "entries": entries })))
}

async fn events(
    State(state): State<ApiState>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let receiver = state.shared.subscribe();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        let data = match receiver.recv().await {
            Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
            // A slow listener skipped changes: say so, so the panel reloads the tree.
            Err(RecvError::Lagged(skipped)) => {
                json!({ "type": "lagged", "skipped": skipped }).to_string()
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(Event::default().data(data)), receiver))
    })
    .take_until(state.shutdown.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
