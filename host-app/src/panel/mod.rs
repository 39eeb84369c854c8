//! The operator's panel: server-rendered pages on the panel shell of `web` (layout,
//! login, embedded assets), fed by the tracker and the history store, kept live in the
//! browser by `/api/events`.
//!
//! - [`overview`]: every group, edge node and device with its state and figures.
//! - [`tags`]: one node's or device's live tag table, writes and Rebirth.
//! - [`trends`]: the trend chart page.
//! - [`audit`]: the audit log with filters and CSV export.
//! - [`admin`]: users and API tokens (admin), and the System page.

pub mod admin;
pub mod audit;
pub mod overview;
pub mod tags;
pub mod trends;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use web::shell::{Asset, Assets, MessagePage, SHELL_ASSETS, Shell};
use web::{Auth, Caller, Role};

use sparkplug::DataType;

use crate::broker::ClientGauge;
use crate::shared::HostShared;

/// The product name in every page's title and top bar.
pub const PRODUCT: &str = "Sparkplug host";

/// The host's own scripts, beside the shell's.
pub const HOST_ASSETS: &[Asset] = &[
    Asset {
        name: "host.js",
        bytes: include_bytes!("../../assets/host.js"),
    },
    Asset {
        name: "trends.js",
        bytes: include_bytes!("../../assets/trends.js"),
    },
];

/// The top bar's links and the least role that sees each.
const NAV: &[(&str, &str, Role)] = &[
    ("/", "Overview", Role::Viewer),
    ("/trends", "Trends", Role::Viewer),
    ("/audit", "Audit log", Role::Viewer),
    ("/users", "Users & tokens", Role::Admin),
    ("/system", "System", Role::Viewer),
];

/// What the System page shows that the host knows only at start.
#[derive(Debug, Clone, Default)]
pub struct SystemInfo {
    pub history_path: PathBuf,
    pub retention_days: u32,
    pub max_size_mb: u64,
    /// `embedded` or `external`.
    pub broker_mode: &'static str,
    /// Connected MQTT clients of the embedded broker.
    pub broker_clients: Option<ClientGauge>,
    /// The panel's certificate under HTTPS (its fingerprint is shown as served now).
    pub cert: Option<std::sync::Arc<infra::tls::ServerCert>>,
}

/// What the pages share.
#[derive(Clone)]
pub struct PanelState {
    pub shared: Arc<HostShared>,
    pub auth: Auth,
    pub assets: Arc<Assets>,
    pub system: Arc<SystemInfo>,
}

impl PanelState {
    pub fn new(shared: Arc<HostShared>, auth: Auth, system: SystemInfo) -> PanelState {
        PanelState {
            shared,
            auth,
            assets: Arc::new(Assets::new(&[SHELL_ASSETS, HOST_ASSETS])),
            system: Arc::new(system),
        }
    }

    /// The frame of a page for `caller`, loading the named scripts besides the shell's.
    fn shell(&self, caller: &Caller, title: &str, active: &str, assets: &[&str]) -> Shell {
        Shell::for_caller(PRODUCT, title, caller, NAV, active, &self.assets)
            .with_assets(&self.assets, assets)
    }

    fn message(
        &self,
        caller: &Caller,
        status: StatusCode,
        heading: &str,
        text: String,
    ) -> Response {
        let page = MessagePage {
            shell: self.shell(caller, heading, "", &[]),
            heading: heading.to_owned(),
            text,
        };
        web::shell::html(status, &page)
    }
}

/// Every page, the login and setup pages and the static files. Mount inside the auth
/// layer, with `web::shell::redirect_to_login` outside it; `/login`, `/setup` and
/// `/static/*` must be public paths.
pub fn routes(state: PanelState) -> Router {
    let auth = state.auth.clone();
    let viewer = Router::new()
        .route("/", get(overview::page))
        .route("/node/{group}/{node}", get(tags::node_page))
        .route("/device/{group}/{node}/{device}", get(tags::device_page))
        .route("/trends", get(trends::page))
        .route("/audit", get(audit::page))
        .route("/audit.csv", get(audit::csv))
        .route("/system", get(admin::system_page))
        .route_layer(auth.require(Role::Viewer));
    let admin = Router::new()
        .route("/users", get(admin::users_page))
        .route_layer(auth.require(Role::Admin));
    viewer
        .merge(admin)
        .with_state(state.clone())
        .merge(auth.pages(PRODUCT, Arc::clone(&state.assets)))
        .merge(Arc::clone(&state.assets).routes())
}

/// A metric key as the pages and `/api/history` write it: `group/node[/device]:name`.
pub fn metric_key(group: &str, node: &str, device: Option<&str>, name: &str) -> String {
    match device {
        Some(d) => format!("{group}/{node}/{d}:{name}"),
        None => format!("{group}/{node}:{name}"),
    }
}

/// A value as the pages show it, the way `host.js` writes it (so a server-rendered cell
/// and a live update agree): strings bare, `5.0` as `5`, Float values to 7 significant
/// digits and other numbers to 12, so binary noise (`2.6024999618530273`) is not shown.
pub fn value_text(value: &serde_json::Value, datatype: Option<DataType>) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => {
                let digits = if datatype == Some(DataType::Float) {
                    7
                } else {
                    12
                };
                let rounded: f64 = format!("{:.*e}", digits - 1, f).parse().unwrap_or(f);
                if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
                    format!("{}", rounded as i64)
                } else {
                    format!("{rounded}")
                }
            }
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// How a node or device state reads on the page: what the tracker says while the host
/// is connected, STALE when the host's own session is down (the state may be old).
pub fn shown_state(connected: bool, online: bool) -> &'static str {
    match (connected, online) {
        (false, _) => "STALE",
        (true, true) => "ONLINE",
        (true, false) => "OFFLINE",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn values_read_as_the_browser_writes_them() {
        use sparkplug::DataType::{Double, Float};
        let text = super::value_text;
        assert_eq!(text(&json!(5.0), Some(Double)), "5");
        assert_eq!(text(&json!(-2.5), None), "-2.5");
        assert_eq!(text(&json!(7), None), "7");
        assert_eq!(text(&json!("NaN"), Some(Double)), "NaN");
        assert_eq!(text(&json!(true), None), "true");
        assert_eq!(text(&json!(2.6024999618530273), Some(Float)), "2.6025");
        assert_eq!(text(&json!(2.3000000000000003), Some(Double)), "2.3");
        assert_eq!(
            text(&json!(16.167226791381836), Some(Double)),
            "16.1672267914"
        );
    }
}
