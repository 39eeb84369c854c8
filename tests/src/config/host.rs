//! The host's file: `[broker]`, `[history]`, `[sparkplug]` and `[api]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct HostConfig {
    pub broker: Broker,
    pub history: History,
    pub sparkplug: Sparkplug,
    pub api: Api,
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
            api: Api {
                listen: "127.0.0.1:0".to_owned(),
            },
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded: Option<Embedded>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_payload_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plain: Option<Plain>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// `none`, `optional` or `required`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct User {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct External {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ExternalTls>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExternalTls {
    pub ca_file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct History {
    pub path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_capacity: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_interval_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reorder_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebirth_min_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Api {
    pub listen: String,
}
