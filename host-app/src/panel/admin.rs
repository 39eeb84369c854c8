//! The admin's Users and API tokens page, and the System page (version, broker clients,
//! history database size and retention, certificate fingerprint).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use web::shell::Shell;
use web::{ApiTokenInfo, Caller, UserInfo};

use super::PanelState;

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    shell: Shell,
    me: String,
    users: Vec<UserInfo>,
    tokens: Vec<ApiTokenInfo>,
}

pub async fn users_page(State(state): State<PanelState>, caller: Caller) -> Response {
    let who = caller.clone();
    let listed = state
        .auth
        .blocking(move |a| Ok((a.list_users(Some(&who))?, a.list_api_tokens(&who)?)))
        .await;
    let (users, tokens) = match listed {
        Ok(lists) => lists,
        Err(e) => {
            return state.message(
                &caller,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Accounts unavailable",
                e.to_string(),
            );
        }
    };
    let page = UsersPage {
        shell: state.shell(&caller, "Users & tokens", "/users", &["host.js"]),
        me: caller.user.clone(),
        users,
        tokens,
    };
    web::shell::html(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "system.html")]
struct SystemPage {
    shell: Shell,
    version: &'static str,
    host_id: String,
    connected: bool,
    broker_mode: &'static str,
    broker_clients: String,
    history_path: String,
    history_size: String,
    retention: String,
    fingerprint: String,
    nodes: usize,
    metrics: usize,
}

/// The database file with its side files (WAL, shared memory, recent logs), in bytes.
fn database_size(path: &std::path::Path) -> Option<u64> {
    let main = std::fs::metadata(path).ok()?.len();
    let name = format!("{}-", path.file_name()?.to_string_lossy());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let side = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&name))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .sum::<u64>();
    Some(main + side)
}

fn bytes_text(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n as f64 >= MIB {
        format!("{:.1} MiB", n as f64 / MIB)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

pub async fn system_page(State(state): State<PanelState>, caller: Caller) -> Response {
    let sys = &state.system;
    let path = sys.history_path.clone();
    let size = tokio::task::spawn_blocking(move || database_size(&path))
        .await
        .ok()
        .flatten();
    let (nodes, metrics) = {
        let tracker = state.shared.tracker();
        let nodes = tracker.nodes();
        let metrics = nodes
            .iter()
            .map(|(_, n)| {
                n.metrics.list.len()
                    + n.devices
                        .iter()
                        .map(|(_, d)| d.metrics.list.len())
                        .sum::<usize>()
            })
            .sum();
        (nodes.len(), metrics)
    };
    let retention = match (sys.retention_days, sys.max_size_mb) {
        (0, 0) => "kept forever".to_owned(),
        (d, 0) => format!("{d} days"),
        (0, mb) => format!("up to {mb} MB"),
        (d, mb) => format!("{d} days, up to {mb} MB"),
    };
    let page = SystemPage {
        shell: state.shell(&caller, "System", "/system", &[]),
        version: env!("CARGO_PKG_VERSION"),
        host_id: state.shared.host_id.clone(),
        connected: state.shared.is_connected(),
        broker_mode: sys.broker_mode,
        broker_clients: sys
            .broker_clients
            .as_ref()
            .map_or_else(|| "–".into(), |g| g.connected().to_string()),
        history_path: sys.history_path.display().to_string(),
        history_size: size.map_or_else(|| "–".into(), bytes_text),
        retention,
        fingerprint: sys
            .cert
            .as_ref()
            .map(|c| web::cert::fingerprint(&c.leaf()))
            .unwrap_or_else(|| "– (plain HTTP)".into()),
        nodes,
        metrics,
    };
    web::shell::html(StatusCode::OK, &page)
}
