//! The technician's web UI, on its own port (`[ui]`): the node's status, the devices,
//! buses and tags, MQTT, Sparkplug and store settings, commissioning reads against the
//! field, and the configuration lifecycle (draft, validate, diff, apply, rollback, audit).
//! Accounts, sessions, CSRF, setup, the page frame and the connection loop are `web`'s,
//! shared with the host's panel; the configuration goes through [`crate::configure`].
//!
//! - [`config`]: the `[ui]` table.
//! - [`form`]: the editable sections as forms, written back with `toml_edit`.
//! - [`draft`]: each user's draft and the tag list as one CSV file.
//! - [`status`]: the status page. [`edit`]: devices, buses, settings and their forms.
//! - [`field`]: test connection, the register probe, read now.
//! - [`tags`]: the tag table, CSV import (dry run) and export.
//! - [`lifecycle`]: the configuration page: validate, diff, apply, rollback, audit.
//!
//! Every page needs a session (viewer); everything that changes a draft, applies it or
//! talks to the field needs admin (403 otherwise).

pub mod config;
pub mod draft;
pub mod edit;
pub mod field;
pub mod form;
pub mod lifecycle;
pub mod status;
pub mod tags;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use web::shell::{Asset, Assets, MessagePage, SHELL_ASSETS, Shell};
use web::{Auth, AuthConfig, Caller, Role, SessionConfig};

pub use config::UiConfig;

use crate::configure::Configurator;
use crate::node::exposition::MetricsSource;

/// The product name in every page's title and top bar.
pub const PRODUCT: &str = "Sparkplug edge node";

/// The UI's own script beside the shell's.
pub const EDGE_ASSETS: &[Asset] = &[Asset {
    name: "edge.js",
    bytes: include_bytes!("../../assets/edge.js"),
}];

/// Paths open without login besides web's login and setup routes.
const PUBLIC_PATHS: &[&str] = &["/static/*", "/login", "/setup"];

/// The top bar's links and the least role that sees each.
const NAV: &[(&str, &str, Role)] = &[
    ("/", "Status", Role::Viewer),
    ("/devices", "Devices", Role::Viewer),
    ("/tags", "Tags", Role::Viewer),
    ("/settings", "MQTT & store", Role::Viewer),
    ("/probe", "Probe", Role::Admin),
    ("/config", "Configuration", Role::Viewer),
];

/// Connections served at once, and how long a connection may take to send its headers.
const MAX_CONNECTIONS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The UI's routes and the least role each needs, for docs and tests.
pub const ROUTES: &[(&str, &str, Role)] = &[
    ("GET", "/", Role::Viewer),
    ("GET", "/devices", Role::Viewer),
    ("GET", "/settings", Role::Viewer),
    ("GET", "/tags", Role::Viewer),
    ("GET", "/tags.csv", Role::Viewer),
    ("GET", "/config", Role::Viewer),
    ("GET", "/edit/{section}", Role::Admin),
    ("POST", "/edit/{section}", Role::Admin),
    ("POST", "/edit/{section}/remove", Role::Admin),
    ("POST", "/edit/device/test", Role::Admin),
    ("POST", "/edit/server/test", Role::Admin),
    ("POST", "/files", Role::Admin),
    ("GET", "/probe", Role::Admin),
    ("POST", "/probe", Role::Admin),
    ("GET", "/tags/edit", Role::Admin),
    ("POST", "/tags/edit", Role::Admin),
    ("POST", "/tags/remove", Role::Admin),
    ("POST", "/tags/import", Role::Admin),
    ("POST", "/tags/read", Role::Admin),
    ("POST", "/config/apply", Role::Admin),
    ("POST", "/config/rollback", Role::Admin),
    ("POST", "/config/discard", Role::Admin),
];

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("ui.listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("ui.state_dir {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("accounts database: {0}")]
    Auth(String),
    #[error("{0}")]
    Cert(#[from] web::cert::CertError),
}

/// What the pages share.
#[derive(Clone)]
pub struct UiState {
    pub auth: Auth,
    pub assets: Arc<Assets>,
    pub configurator: Configurator,
    pub drafts: Arc<draft::Drafts>,
    pub outcomes: Arc<lifecycle::Outcomes>,
    /// The directory of the configuration file: relative paths in it start here.
    pub base: PathBuf,
    pub node: MetricsSource,
}

impl UiState {
    /// The frame of a page for `caller`.
    fn shell(&self, caller: &Caller, title: &str, active: &str) -> Shell {
        Shell::for_caller(PRODUCT, title, caller, NAV, active, &self.assets)
            .with_assets(&self.assets, &["edge.js"])
    }

    fn message(
        &self,
        caller: &Caller,
        status: StatusCode,
        heading: &str,
        text: String,
    ) -> Response {
        let page = MessagePage {
            shell: self.shell(caller, heading, ""),
            heading: heading.to_owned(),
            text,
        };
        web::shell::html(status, &page)
    }

    /// The caller's draft (or the running configuration).
    fn draft(&self, caller: &Caller) -> crate::configure::Draft {
        self.drafts.get(&caller.user, &self.configurator)
    }
}

/// The accounts database and the auth service of the UI.
pub fn open_auth(config: &UiConfig) -> Result<Auth, String> {
    web::state::ensure_state_dir(&config.state_dir)
        .map_err(|e| format!("ui.state_dir {}: {e}", config.state_dir.display()))?;
    let store = web::state::open_store(&config.state_dir.join(web::state::AUTH_DB))?;
    let auth_config = AuthConfig {
        session: SessionConfig {
            idle_timeout: config.idle_timeout(),
            absolute_lifetime: config.session_lifetime(),
            https: config.https,
        },
        allowed_origins: config.public_origin().into_iter().collect(),
        public_paths: PUBLIC_PATHS.iter().map(|p| (*p).to_owned()).collect(),
        ..AuthConfig::default()
    };
    Auth::builder(Arc::new(store))
        .config(auth_config)
        .build()
        .map_err(|e| e.to_string())
}

/// The running UI server.
pub struct UiServer {
    addr: SocketAddr,
    base_url: String,
    task: JoinHandle<()>,
}

impl UiServer {
    /// Opens the accounts database, loads or makes the certificate, binds `[ui] listen`
    /// and serves until `shutdown`. Before the first admin exists, writes the setup token
    /// (mode 0600) into the state directory and logs the setup link.
    pub async fn start(
        config: &UiConfig,
        configurator: Configurator,
        config_path: &std::path::Path,
        node: MetricsSource,
        shutdown: CancellationToken,
    ) -> Result<UiServer, UiError> {
        web::state::ensure_state_dir(&config.state_dir).map_err(|source| UiError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let cert = if config.https {
            let (dir, listen) = (config.state_dir.clone(), config.listen);
            let files = config.tls.as_ref().map(|t| web::cert::CertFiles {
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
            });
            let host = config.public_origin().and_then(|o| {
                o.split_once("://")
                    .map(|(_, a)| a.split(':').next().unwrap_or(a).to_owned())
            });
            let cert = tokio::task::spawn_blocking(move || {
                web::cert::load("ui.tls", files.as_ref(), &dir, listen, host.as_deref())
            })
            .await
            .map_err(|e| UiError::Auth(e.to_string()))??;
            Some(cert)
        } else {
            None
        };
        let cfg = config.clone();
        let auth = tokio::task::spawn_blocking(move || open_auth(&cfg))
            .await
            .map_err(|e| UiError::Auth(e.to_string()))?
            .map_err(UiError::Auth)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| UiError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| UiError::Bind {
            addr: config.listen,
            source,
        })?;
        let scheme = if config.https { "https" } else { "http" };
        let base_url = config
            .public_origin()
            .unwrap_or_else(|| format!("{scheme}://{}", web::state::shown_addr(addr)));
        let base = match config_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let state = UiState {
            auth: auth.clone(),
            assets: Arc::new(Assets::new(&[SHELL_ASSETS, EDGE_ASSETS])),
            configurator,
            drafts: Arc::default(),
            outcomes: Arc::default(),
            base,
            node,
        };
        if let Some(cert) = &cert {
            tracing::info!(
                fingerprint = %cert.fingerprint,
                cert = %cert.cert_file.display(),
                self_signed = cert.self_signed,
                "UI certificate SHA-256 fingerprint"
            );
        }
        let acceptor = cert.map(|c| tokio_rustls::TlsAcceptor::from(c.server_config));
        let limits = web::serve::Limits {
            max_connections: MAX_CONNECTIONS,
            header_timeout: HEADER_TIMEOUT,
        };
        tokio::spawn(web::state::purge_expired(
            auth.clone(),
            config.account_audit(),
            shutdown.clone(),
        ));
        let task = tokio::spawn(web::serve::serve(
            listener,
            app(state),
            acceptor,
            limits,
            shutdown,
        ));
        tracing::info!(%addr, url = %base_url, "UI listening");
        let dir = config.state_dir.clone();
        let pending = auth
            .blocking(move |a| Ok(web::state::begin_setup(a, &dir)))
            .await
            .map_err(|e| UiError::Auth(e.to_string()))?
            .map_err(UiError::Auth)?;
        if let Some((token, path)) = pending {
            // The one-time token is the installer's way in: it is meant for this log.
            tracing::warn!(
                link = %format!("{base_url}{}?token={}", web::shell::pages::SETUP_PAGE, token.expose()),
                token_file = %path.display(),
                "no UI admin account yet: open the setup link to create one (or run `edge-node user add`)"
            );
        }
        Ok(UiServer {
            addr,
            base_url,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http(s)://host:port` browsers reach the UI at.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Waits for the server to finish after its shutdown token was cancelled.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Every page with its role inside the auth layer; pages without a session go to login.
pub fn app(state: UiState) -> Router {
    let auth = state.auth.clone();
    let viewer = Router::new()
        .route("/", get(status::page))
        .route("/devices", get(edit::devices_page))
        .route("/settings", get(edit::settings_page))
        .route("/tags", get(tags::page))
        .route("/tags.csv", get(tags::export))
        .route("/config", get(lifecycle::page))
        .route_layer(auth.require(Role::Viewer));
    let admin = Router::new()
        .route("/edit/{section}", get(edit::form_page).post(edit::save))
        .route("/edit/{section}/remove", post(edit::remove))
        .route("/edit/device/test", post(field::test_device))
        .route("/edit/server/test", post(field::test_server))
        .route("/files", post(edit::upload))
        .route("/probe", get(field::probe_page).post(field::probe))
        .route("/tags/edit", get(tags::form_page).post(tags::save))
        .route("/tags/remove", post(tags::remove))
        .route("/tags/import", post(tags::import))
        .route("/tags/read", post(field::read_now))
        .route("/config/apply", post(lifecycle::apply))
        .route("/config/rollback", post(lifecycle::rollback))
        .route("/config/discard", post(lifecycle::discard))
        .route_layer(auth.require(Role::Admin));
    viewer
        .merge(admin)
        .with_state(state.clone())
        .merge(auth.pages(PRODUCT, Arc::clone(&state.assets)))
        .merge(Arc::clone(&state.assets).routes())
        .merge(auth.routes())
        .layer(auth.layer())
        .layer(middleware::from_fn(web::shell::redirect_to_login))
}
