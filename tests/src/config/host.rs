//! The host's file: `[broker]`, `[history]`, `[sparkplug]` and `[api]` (plain HTTP on
//! loopback unless a test asks for HTTPS).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct HostConfig {
    pub broker: Broker,
    pub history: History,
    pub sparkplug: Sparkplug,
    pub api: Api,
    pub metrics: Option<super::edge::Metrics>,
}

impl HostConfig {
    /// Host `host_id` on `broker`, history in `dir/history.db`, its API on an OS-picked
    /// loopback port.
    pub fn new(host_id: &str, broker: Broker, dir: &Path) -> HostConfig {
        HostConfig {
            broker,
            history: History::new(dir.join("history.db")),
            sparkplug: Sparkplug {
                host_id: host_id.to_owned(),
                reorder_timeout_ms: None,
                rebirth_min_interval_ms: None,
            },
            api: Api::plain("127.0.0.1:0"),
            metrics: None,
        }
    }

    /// The TOML document.
    pub fn to_toml(&self) -> String {
        super::to_toml(self)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Broker {
    /// `embedded` or `external`.
    pub mode: String,
    pub embedded: Option<Embedded>,
    pub external: Option<External>,
}

impl Broker {
    /// The embedded broker with its plain listener on `listen` (`127.0.0.1:0`: OS-picked).
    pub fn embedded(listen: SocketAddr) -> Broker {
        Broker {
            mode: "embedded".to_owned(),
            embedded: Some(Embedded {
                plain: Some(Plain {
                    enabled: true,
                    listen: listen.to_string(),
                }),
                ..Embedded::default()
            }),
            external: None,
        }
    }

    /// A document holding only this `[broker]` section.
    pub fn to_toml(&self) -> String {
        #[derive(Serialize)]
        struct Document<'a> {
            broker: &'a Broker,
        }
        super::to_toml(&Document { broker: self })
    }

    /// An external broker at `addr`.
    pub fn external(addr: SocketAddr) -> Broker {
        Broker {
            mode: "external".to_owned(),
            embedded: None,
            external: Some(External {
                host: addr.ip().to_string(),
                port: Some(addr.port()),
                ..External::default()
            }),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Embedded {
    pub max_connections: Option<usize>,
    pub connection_timeout_ms: Option<u64>,
    pub max_payload_size: Option<usize>,
    pub host_username: Option<String>,
    pub plain: Option<Plain>,
    pub tls: Option<TlsListener>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plain {
    pub enabled: bool,
    pub listen: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsListener {
    pub listen: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    /// `none`, `optional` or `required`.
    pub client_certificates: Option<String>,
}

impl TlsListener {
    /// On an OS-picked loopback port with this certificate and key.
    pub fn new(cert_file: &Path, key_file: &Path) -> TlsListener {
        TlsListener {
            listen: "127.0.0.1:0".to_owned(),
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            ..TlsListener::default()
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct User {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct External {
    pub host: String,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls: Option<ExternalTls>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExternalTls {
    pub ca_file: PathBuf,
    pub server_name: Option<String>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct History {
    pub path: PathBuf,
    pub batch_size: Option<usize>,
    pub flush_interval_ms: Option<u64>,
    pub channel_capacity: Option<usize>,
    pub retention_days: Option<u32>,
    pub max_size_mb: Option<u64>,
    pub retention_interval_s: Option<u64>,
    pub synchronous: Option<String>,
}

impl History {
    pub fn new(path: PathBuf) -> History {
        History {
            path,
            ..History::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Sparkplug {
    pub host_id: String,
    pub reorder_timeout_ms: Option<u64>,
    pub rebirth_min_interval_ms: Option<u64>,
}

/// `[api]`: tests serve plain HTTP on loopback unless they set `https`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Api {
    pub listen: String,
    pub https: Option<bool>,
    pub state_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    pub idle_timeout_s: Option<u64>,
    pub session_lifetime_s: Option<u64>,
    pub header_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_history_queries: Option<usize>,
    pub tls: Option<ApiTls>,
}

impl Api {
    /// Plain HTTP on `listen` (a loopback address).
    pub fn plain(listen: &str) -> Api {
        Api {
            listen: listen.to_owned(),
            https: Some(false),
            ..Api::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}
