//! The panel's HTTP server: the JSON API (the tree of edge nodes, devices and metrics,
//! history trends, writes and Rebirth requests with their audit log, a server-sent event
//! stream of live changes) and web's auth routes, behind login.
//!
//! - [`config`]: the `[api]` table.
//! - [`types`]: the API's request and response bodies, shared with the pages.
//! - [`access`]: the accounts database, audit routing and first-run setup.
//! - [`postgres_accounts`]: the accounts in a PostgreSQL history's database.
//!
//! The connection loop and the HTTPS certificate are `web`'s ([`web::serve`], [`web::cert`]).
//!
//! Every route but login, setup and static assets needs a session or an API token (401);
//! reads need viewer, writes and Rebirth operator, users and API tokens admin (403).
//! Until the first admin exists only the setup flow is served (503 elsewhere). Errors
//! are `{"error": "..."}` with 400, 401, 403, 404, 409, 500 or 503.

pub mod access;
pub mod config;
pub mod postgres_accounts;
pub mod types;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use infra::clock::now_ms;
use serde_json::{Value as Json, json};
use tokio::sync::Semaphore;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use web::{Auth, Caller, Role};

use crate::command::{self, WriteError};
use crate::history::{
    AuditQuery, AuditRecord, HistoryConfig, MetricId, MetricKey, Sample, TimeRange,
};
use crate::panel::{self, PanelState, SystemInfo};
use crate::session::Publisher;
use crate::shared::{HostShared, sample_json};
use crate::tracker::{MetricState, Metrics, NodeId, NodeState};
use config::ApiConfig;
use types::{
    AuditLog, AuditView, DeviceView, GroupView, MetricView, NodeView, PeerView, RebirthReply,
    RebirthRequest, Tree, Trend, TrendPoint, TrendSample, WriteReply, WriteRequest,
};

/// Most trend points one request may ask for.
const MAX_POINTS: u32 = 10_000;
/// Most audit entries one request returns.
const MAX_AUDIT: u32 = 10_000;
/// Default trend window when `from` is absent.
const DEFAULT_WINDOW_MS: u64 = 3_600_000;

/// The JSON API's routes and the least role each needs, for docs and tests.
pub const API_ROUTES: &[(&str, &str, Role)] = &[
    ("GET", "/api/tree", Role::Viewer),
    ("GET", "/api/history", Role::Viewer),
    ("GET", "/api/audit", Role::Viewer),
    ("GET", "/api/events", Role::Viewer),
    ("POST", "/api/write", Role::Operator),
    ("POST", "/api/rebirth", Role::Operator),
];

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("api.listen {addr} is already in use by another program")]
    AddrInUse { addr: SocketAddr },
    #[error("api.listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("api.state_dir {}: {source}", path.display())]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("accounts database: {0}")]
    Auth(String),
    #[error("{0}")]
    Cert(#[from] web::cert::CertError),
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub shared: Arc<HostShared>,
    pub publisher: Publisher,
    pub shutdown: CancellationToken,
    /// Accounts, sessions and tokens (the pages' users and tokens views).
    pub auth: Auth,
    /// The served certificate's SHA-256 fingerprint, under HTTPS (the System page).
    pub fingerprint: Option<Arc<str>>,
    /// Bounds the history queries running at once.
    history_slots: Arc<Semaphore>,
}

/// The running API server.
pub struct ApiServer {
    addr: SocketAddr,
    auth: Auth,
    base_url: String,
    fingerprint: Option<String>,
    /// The HTTPS certificate, re-read on SIGHUP.
    cert: Option<Arc<infra::tls::ServerCert>>,
    requests: Arc<ApiRequests>,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Opens the accounts database (in `state_dir`, or in `history`'s PostgreSQL), loads
    /// or makes the certificate, binds `config.listen` (refusing clearly when the port is
    /// taken) and serves until `shutdown` is cancelled. Before the first admin exists,
    /// writes the setup token.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        config: &ApiConfig,
        state_dir: &Path,
        history: &HistoryConfig,
        shared: Arc<HostShared>,
        publisher: Publisher,
        shutdown: CancellationToken,
        mut system: SystemInfo,
    ) -> Result<ApiServer, ApiError> {
        access::ensure_state_dir(state_dir).map_err(|source| ApiError::StateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let cert = if config.https {
            let public_host = config
                .public_origin()
                .and_then(|o| o.split_once("://").map(|(_, a)| host_of(a).to_owned()));
            let dir = state_dir.to_owned();
            let (tls, listen) = (config.tls.clone(), config.listen);
            let cert = tokio::task::spawn_blocking(move || {
                let files = tls.map(|t| web::cert::CertFiles {
                    cert_file: t.cert_file,
                    key_file: t.key_file,
                });
                web::cert::load(
                    "api.tls",
                    files.as_ref(),
                    &dir,
                    listen,
                    public_host.as_deref(),
                )
            })
            .await
            .map_err(|e| ApiError::Auth(e.to_string()))??;
            Some(cert)
        } else {
            None
        };
        let audit = Arc::clone(&shared.store);
        let (cfg, dir, history) = (config.clone(), state_dir.to_owned(), history.clone());
        let auth =
            tokio::task::spawn_blocking(move || access::build(&cfg, &dir, &history, Some(audit)))
                .await
                .map_err(|e| ApiError::Auth(e.to_string()))?
                .map_err(ApiError::Auth)?;
        let listen = config.listen;
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
        let scheme = if config.https { "https" } else { "http" };
        let base_url = config
            .public_origin()
            .unwrap_or_else(|| format!("{scheme}://{}", web::state::shown_addr(addr)));
        let fingerprint = cert.as_ref().map(|c| c.fingerprint.clone());
        system.cert = cert.as_ref().map(|c| Arc::clone(&c.cert));
        let pages = PanelState::new(Arc::clone(&shared), auth.clone(), system);
        let state = ApiState {
            shared,
            publisher,
            shutdown: shutdown.clone(),
            auth: auth.clone(),
            fingerprint: cert.as_ref().map(|c| Arc::from(c.fingerprint.as_str())),
            history_slots: Arc::new(Semaphore::new(config.max_history_queries)),
        };
        let requests = Arc::new(ApiRequests::default());
        let app = app(state, &auth, config.request_timeout(), pages).layer(
            middleware::from_fn_with_state(Arc::clone(&requests), count_request),
        );
        let limits = web::serve::Limits {
            max_connections: config.max_connections,
            header_timeout: config.header_timeout(),
        };
        if let Some(cert) = &cert {
            tracing::info!(
                fingerprint = %cert.fingerprint,
                cert = %cert.cert_file.display(),
                self_signed = cert.self_signed,
                "panel certificate SHA-256 fingerprint"
            );
        }
        let served = cert.as_ref().map(|c| Arc::clone(&c.cert));
        let acceptor = cert.map(|c| tokio_rustls::TlsAcceptor::from(c.server_config));
        tokio::spawn(web::state::purge_expired(
            auth.clone(),
            config.account_audit(),
            shutdown.clone(),
        ));
        let task = tokio::spawn(web::serve::serve(listener, app, acceptor, limits, shutdown));
        tracing::info!(%addr, url = %base_url, "panel listening");
        let server = ApiServer {
            addr,
            auth,
            base_url,
            fingerprint,
            cert: served,
            requests,
            task,
        };
        server.announce_setup(state_dir).await?;
        Ok(server)
    }

    /// Before the first admin exists: a fresh setup token, in its file and in the log
    /// as the link that opens setup.
    async fn announce_setup(&self, state_dir: &Path) -> Result<(), ApiError> {
        let dir = state_dir.to_owned();
        let pending = self
            .auth
            .blocking(move |a| Ok(access::begin_setup(a, &dir)))
            .await
            .map_err(|e| ApiError::Auth(e.to_string()))?
            .map_err(ApiError::Auth)?;
        if let Some((token, path)) = pending {
            // The one-time token is the installer's way in: it is meant for this log.
            tracing::warn!(
                link = %format!("{}{}?token={}", self.base_url, access::SETUP_PAGE, token.expose()),
                token_file = %path.display(),
                "no admin account yet: open the setup link to create one (or run `host-app user add`)"
            );
        }
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The auth service (accounts, sessions, tokens) the server uses.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// `http(s)://host:port` browsers reach the panel at.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The requests answered so far, by status class.
    pub fn requests(&self) -> Arc<ApiRequests> {
        Arc::clone(&self.requests)
    }

    /// The HTTPS certificate, which a reload replaces for new connections.
    pub fn cert(&self) -> Option<&Arc<infra::tls::ServerCert>> {
        self.cert.as_ref()
    }

    /// The served certificate's SHA-256 fingerprint under HTTPS (as started).
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// Waits for the server to finish after its shutdown token was cancelled.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// The host part of `host[:port]` or `[v6]:port`.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// The whole application: the API routes, the panel's pages and web's auth routes, each
/// with its role, inside the auth layer; outside it, pages without a session are sent to
/// login; the setup gate outside that (anyone is told setup is due, browsers are sent to
/// the setup page); the request timeout outermost.
pub fn app(state: ApiState, auth: &Auth, request_timeout: Duration, pages: PanelState) -> Router {
    api_routes(state, auth)
        .merge(panel::routes(pages))
        .merge(auth.routes())
        .layer(middleware::from_fn(tokens_need_admin))
        .layer(auth.layer())
        .layer(middleware::from_fn(web::shell::redirect_to_login))
        .layer(middleware::from_fn_with_state(
            SetupGate::new(auth.clone()),
            setup_gate,
        ))
        .layer(middleware::from_fn_with_state(request_timeout, timeout))
}

/// The JSON API's routes with the role each needs.
pub fn api_routes(state: ApiState, auth: &Auth) -> Router {
    Router::new()
        .route("/api/tree", get(tree))
        .route("/api/history", get(history))
        .route("/api/audit", get(audit))
        .route("/api/events", get(events))
        .route_layer(auth.require(Role::Viewer))
        .merge(
            Router::new()
                .route("/api/write", post(write))
                .route("/api/rebirth", post(rebirth))
                .route_layer(auth.require(Role::Operator)),
        )
        .with_state(state)
}

/// Requests the API and the panel answered, by status class (1xx to 5xx), for `/metrics`.
#[derive(Debug, Default)]
pub struct ApiRequests {
    by_class: [std::sync::atomic::AtomicU64; 5],
}

impl ApiRequests {
    /// (`"2xx"`, count) for each class.
    pub fn by_class(&self) -> [(&'static str, u64); 5] {
        let names = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        std::array::from_fn(|i| {
            (
                names[i],
                self.by_class[i].load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }
}

/// Counts every answer, whoever gave it (the handlers, the auth layer, the timeout).
async fn count_request(
    State(requests): State<Arc<ApiRequests>>,
    req: Request,
    next: Next,
) -> Response {
    let response = next.run(req).await;
    let class = usize::from(response.status().as_u16() / 100).clamp(1, 5) - 1;
    requests.by_class[class].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    response
}

/// A request whose answer has not started within the timeout gets 503. The event
/// stream's answer starts at once, so it may run on.
async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => Failure(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no answer within {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// API tokens are admin business: web lets any caller manage their own.
async fn tokens_need_admin(req: Request, next: Next) -> Response {
    let is_tokens = req.uri().path() == web::http::TOKENS_PATH
        || req
            .uri()
            .path()
            .starts_with(&format!("{}/", web::http::TOKENS_PATH));
    if is_tokens
        && !req
            .extensions()
            .get::<Caller>()
            .is_some_and(|c| c.has_role(Role::Admin))
    {
        return Failure(
            StatusCode::FORBIDDEN,
            "forbidden: admin role required".into(),
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether the first admin exists; checked in the accounts database until it does.
#[derive(Clone)]
struct SetupGate {
    auth: Auth,
    done: Arc<AtomicBool>,
}

impl SetupGate {
    fn new(auth: Auth) -> SetupGate {
        SetupGate {
            auth,
            done: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Until the first admin exists only setup (and static assets) is served.
async fn setup_gate(State(gate): State<SetupGate>, req: Request, next: Next) -> Response {
    if !gate.done.load(Ordering::Acquire) {
        let path = req.uri().path();
        let open = path == web::http::SETUP_PATH
            || path == access::SETUP_PAGE
            || access::PUBLIC_PATHS.iter().any(|p| {
                p.strip_suffix('*').is_some_and(|pre| path.starts_with(pre)) || p == &path
            });
        if !open {
            match gate.auth.blocking(|a| a.setup_required()).await {
                Ok(false) => gate.done.store(true, Ordering::Release),
                Ok(true) if web::shell::wants_page(&req) => {
                    return axum::response::Redirect::to(access::SETUP_PAGE).into_response();
                }
                Ok(true) => {
                    return Failure(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "first-run setup required: open {} with the setup token from the log or the state directory",
                            access::SETUP_PAGE
                        ),
                    )
                    .into_response();
                }
                Err(e) => return e.into_response(),
            }
        }
    }
    next.run(req).await
}

/// An error answer: status and a message naming what is wrong.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, axum::Json(types::ErrorReply { error: self.1 })).into_response()
    }
}

fn bad(message: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message.into())
}

fn internal(message: impl std::fmt::Display) -> Failure {
    Failure(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
}

fn write_failure(e: WriteError) -> Failure {
    let status = match e {
        WriteError::BadRequest(_) => StatusCode::BAD_REQUEST,
        WriteError::NotFound(_) => StatusCode::NOT_FOUND,
        WriteError::Conflict(_) => StatusCode::CONFLICT,
        WriteError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Failure(status, e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::history::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal)?
        .map_err(internal)
}

/// Most metrics of observed nodes whose latest value one tree request looks up in
/// history; beyond, they show their birth values.
const MAX_OBSERVED_LOOKUP: usize = 100_000;

async fn tree(State(state): State<ApiState>) -> axum::Json<Tree> {
    let shared = &state.shared;
    let latest = observed_latest(shared).await;
    let mut nodes: Vec<(NodeId, NodeView)> = Vec::new();
    for (id, node) in shared.tracker().nodes() {
        let owner = Some(shared.host_id.clone());
        nodes.push((
            id.clone(),
            node_view(id, node, true, owner, &HashMap::new()),
        ));
    }
    for (id, node) in shared.observed().nodes() {
        let owner = shared.ownership.owner(&id.group_id).map(str::to_owned);
        nodes.push((id.clone(), node_view(id, node, false, owner, &latest)));
    }
    nodes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut groups: Vec<GroupView> = Vec::new();
    for (id, view) in nodes {
        match groups.last_mut() {
            Some(g) if g.group == id.group_id => g.nodes.push(view),
            _ => groups.push(GroupView {
                group: id.group_id,
                nodes: vec![view],
            }),
        }
    }
    let peers = shared
        .peer_states()
        .into_iter()
        .map(|(host_id, online)| PeerView { host_id, online })
        .collect();
    axum::Json(Tree {
        host_id: shared.host_id.clone(),
        connected: shared.is_connected(),
        peers,
        groups,
    })
}

/// The newest stored sample of each metric of the nodes other instances own: with a
/// history database shared by the fleet, their values; none when it cannot be read.
async fn observed_latest(shared: &Arc<HostShared>) -> HashMap<MetricId, Sample> {
    let ids: Vec<MetricId> = {
        let observed = shared.observed();
        observed
            .nodes()
            .into_iter()
            .flat_map(|(_, n)| {
                let devices = n.devices.iter().flat_map(|(_, d)| d.metrics.list.iter());
                n.metrics.list.iter().chain(devices)
            })
            .filter_map(|m| m.id)
            .take(MAX_OBSERVED_LOOKUP)
            .collect()
    };
    if ids.is_empty() {
        return HashMap::new();
    }
    let store = Arc::clone(&shared.store);
    match blocking(move || store.latest(&ids)).await {
        Ok(samples) => samples.into_iter().map(|s| (s.metric, s)).collect(),
        Err(Failure(_, e)) => {
            tracing::warn!(error = %e, "latest values of observed nodes not read; birth values shown");
            HashMap::new()
        }
    }
}

fn node_view(
    id: &NodeId,
    node: &NodeState,
    owned: bool,
    owner: Option<String>,
    latest: &HashMap<MetricId, Sample>,
) -> NodeView {
    let devices = node
        .devices
        .iter()
        .map(|(device_id, d)| DeviceView {
            device: device_id.clone(),
            state: d.state,
            since: d.since,
            metrics: metrics_view(&d.metrics, latest),
        })
        .collect();
    NodeView {
        node: id.edge_node_id.clone(),
        state: node.state,
        since: node.since,
        bd_seq: node.bd_seq.map(|b| b.value()),
        owned,
        owner,
        metrics: metrics_view(&node.metrics, latest),
        devices,
    }
}

fn metrics_view(metrics: &Metrics, latest: &HashMap<MetricId, Sample>) -> Vec<MetricView> {
    metrics
        .list
        .iter()
        .map(|m| metric_view(m, latest))
        .collect()
}

/// A metric as the tracker has it, or as history has it when history is newer.
fn metric_view(m: &MetricState, latest: &HashMap<MetricId, Sample>) -> MetricView {
    let (value, quality, timestamp) = match m.id.and_then(|id| latest.get(&id)) {
        Some(s) if s.ts >= m.ts => (Some(sample_json(&s.value)), s.quality.0, s.ts),
        _ => (m.value.as_ref().map(sample_json), m.quality.0, m.ts),
    };
    MetricView {
        name: m.name.clone(),
        datatype: m.datatype.map(|d| d.to_string()),
        units: m.units.clone(),
        alias: m.alias,
        value,
        quality,
        timestamp,
    }
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
) -> Result<axum::Json<Trend>, Failure> {
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
    // Waits for a slot; the request timeout bounds the wait.
    let _slot = Arc::clone(&state.history_slots)
        .acquire_owned()
        .await
        .map_err(internal)?;
    let store = Arc::clone(&state.shared.store);
    let lookup = key.clone();
    let id = blocking(move || store.resolve_metric(&lookup))
        .await?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("metric {key} is unknown")))?;
    let store = Arc::clone(&state.shared.store);
    let buckets = blocking(move || store.downsample(id, TimeRange::new(from, to), points)).await?;
    let points = buckets
        .iter()
        .map(|b| TrendPoint {
            start: b.start,
            end: b.end,
            count: b.count,
            min: b.min,
            max: b.max,
            avg: b.avg,
            last: TrendSample {
                ts: b.last.ts,
                value: sample_json(&b.last.value),
                quality: b.last.quality.0,
                is_historical: b.last.is_historical,
            },
        })
        .collect();
    Ok(axum::Json(Trend {
        metric: key.to_string(),
        from,
        to,
        points,
    }))
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| bad(format!("request body: {e}")))
}

async fn write(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> Result<axum::Json<WriteReply>, Failure> {
    let request: WriteRequest = parse_body(&body)?;
    let receipt = command::write(&state.shared, &state.publisher, &request, &caller.user)
        .await
        .map_err(write_failure)?;
    Ok(axum::Json(WriteReply {
        outcome: "sent".into(),
        message: receipt.topic_type.into(),
        audit_id: receipt.audit_id,
    }))
}

async fn rebirth(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> Result<axum::Json<RebirthReply>, Failure> {
    let request: RebirthRequest = parse_body(&body)?;
    let audit_id = command::rebirth(
        &state.shared,
        &state.publisher,
        &request.group,
        &request.node,
        &caller.user,
    )
    .await
    .map_err(write_failure)?;
    Ok(axum::Json(RebirthReply {
        outcome: "sent".into(),
        audit_id,
    }))
}

async fn audit(
    State(state): State<ApiState>,
    Query(params): Params,
) -> Result<axum::Json<AuditLog>, Failure> {
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
    Ok(axum::Json(AuditLog {
        entries: records.iter().map(audit_view).collect(),
    }))
}

/// A row of the audit log as the API shows it: account events have no node.
pub fn audit_view(r: &AuditRecord) -> AuditView {
    let key = &r.entry.metric;
    let account_event = key.group_id.is_empty() && key.edge_node_id.is_empty();
    let (action, node, metric) = if account_event {
        (key.name.clone(), None, None)
    } else {
        let mut node = format!("{}/{}", key.group_id, key.edge_node_id);
        if let Some(d) = &key.device_id {
            node.push('/');
            node.push_str(d);
        }
        let action =
            if key.device_id.is_none() && key.name == sparkplug::names::NODE_CONTROL_REBIRTH {
                "rebirth"
            } else {
                "write"
            };
        (action.to_owned(), Some(node), Some(key.to_string()))
    };
    AuditView {
        id: r.id,
        ts: r.entry.ts,
        user: r.entry.user.clone(),
        action,
        node,
        metric,
        value: serde_json::from_str::<Json>(&r.entry.value)
            .unwrap_or_else(|_| Json::String(r.entry.value.clone())),
        outcome: r.entry.outcome.as_str().to_owned(),
        detail: r.entry.detail.clone(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Quality, SampleValue};

    fn birth_metric(id: i64, value: f64, ts: u64) -> MetricState {
        MetricState {
            name: "Temp".into(),
            datatype: Some(sparkplug::DataType::Double),
            units: None,
            alias: Some(1),
            eng_range: None,
            writable: false,
            quality: Quality::GOOD,
            id: Some(MetricId(id)),
            value: Some(SampleValue::F64(value)),
            ts,
        }
    }

    #[test]
    fn an_observed_metric_shows_history_when_history_is_newer() {
        let m = birth_metric(7, 20.0, 1_000);
        let newer = Sample {
            metric: MetricId(7),
            ts: 2_000,
            value: SampleValue::F64(23.5),
            quality: Quality::STALE,
            is_historical: false,
        };
        let latest = HashMap::from([(MetricId(7), newer.clone())]);
        let view = metric_view(&m, &latest);
        assert_eq!(
            (view.value, view.quality, view.timestamp),
            (Some(json!(23.5)), 500, 2_000)
        );
        let older = Sample { ts: 500, ..newer };
        let view = metric_view(&m, &HashMap::from([(MetricId(7), older)]));
        assert_eq!((view.value, view.timestamp), (Some(json!(20.0)), 1_000));
        let view = metric_view(&m, &HashMap::new());
        assert_eq!(view.value, Some(json!(20.0)));
    }
}
