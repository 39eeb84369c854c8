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
    pub log: Option<Log>,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize)]
pub struct Log {
    /// `json`, `journald` or `human`.
    pub format: String,
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
                groups: None,
                peers: Vec::new(),
            },
            api: Api::plain("127.0.0.1:0"),
            metrics: None,
            log: None,
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

/// The host account the test builders give a host: `host`, this password.
pub const HOST_USERNAME: &str = "host";
pub const HOST_PASSWORD: &str = "host-secret";

impl Broker {
    /// The embedded broker with its plain listener on `listen` (`127.0.0.1:0`: OS-picked),
    /// no account and anonymous access off: add accounts with [`Broker::user`] (until then
    /// the host refuses the configuration).
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

    /// [`Broker::embedded`] open to anonymous clients with every right: for tests about
    /// something other than access rules.
    pub fn embedded_open(listen: SocketAddr) -> Broker {
        Broker::embedded(listen).anonymous(Anonymous::everything())
    }

    /// Adds an account.
    pub fn user(mut self, user: User) -> Broker {
        self.embedded_mut().users.push(user);
        self
    }

    /// Adds the host account of `host_id` ([`HOST_USERNAME`], [`HOST_PASSWORD`]) and makes
    /// it the one the host logs in as.
    pub fn host_account(mut self, host_id: &str) -> Broker {
        self.embedded_mut().host_username = Some(HOST_USERNAME.to_owned());
        self.user(User::host(HOST_USERNAME, HOST_PASSWORD, host_id))
    }

    /// Allows anonymous clients, with these rights.
    pub fn anonymous(mut self, anonymous: Anonymous) -> Broker {
        let embedded = self.embedded_mut();
        embedded.allow_anonymous = Some(true);
        embedded.anonymous = Some(anonymous);
        self
    }

    fn embedded_mut(&mut self) -> &mut Embedded {
        self.embedded
            .as_mut()
            .expect("accounts belong to an embedded broker")
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
    pub allow_anonymous: Option<bool>,
    pub acl_file: Option<PathBuf>,
    pub plain: Option<Plain>,
    pub tls: Option<TlsListener>,
    pub anonymous: Option<Anonymous>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
}

/// `[broker.embedded.anonymous]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Anonymous {
    /// `reader` or `custom`.
    pub role: Option<String>,
    pub publish: Option<Vec<String>>,
    pub subscribe: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

impl Anonymous {
    /// Reads `spBv1.0/#` only.
    pub fn reader() -> Anonymous {
        Anonymous {
            role: Some("reader".to_owned()),
            ..Anonymous::default()
        }
    }

    /// Publishes and subscribes to anything.
    pub fn everything() -> Anonymous {
        Anonymous {
            role: Some("custom".to_owned()),
            publish: Some(vec!["#".to_owned()]),
            subscribe: Some(vec!["#".to_owned()]),
            deny: None,
        }
    }
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

/// `[[broker.embedded.users]]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct User {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// `edge`, `host`, `reader` or `custom`.
    pub role: Option<String>,
    pub group_id: Option<String>,
    pub edge_node_ids: Option<Vec<String>>,
    pub host_id: Option<String>,
    pub client_id_prefix: Option<String>,
    pub publish: Option<Vec<String>>,
    pub subscribe: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

impl User {
    fn new(username: &str, password: &str, role: &str) -> User {
        User {
            username: username.to_owned(),
            password: Some(password.to_owned()),
            role: Some(role.to_owned()),
            ..User::default()
        }
    }

    /// A `host` account of `host_id`.
    pub fn host(username: &str, password: &str, host_id: &str) -> User {
        User {
            host_id: Some(host_id.to_owned()),
            ..User::new(username, password, "host")
        }
    }

    /// An `edge` account for `edge_node_ids` of `group_id`.
    pub fn edge(username: &str, password: &str, group_id: &str, edge_node_ids: &[&str]) -> User {
        User {
            group_id: Some(group_id.to_owned()),
            edge_node_ids: Some(edge_node_ids.iter().map(|n| n.to_string()).collect()),
            ..User::new(username, password, "edge")
        }
    }

    /// A `reader` account (subscribes to `spBv1.0/#`).
    pub fn reader(username: &str, password: &str) -> User {
        User::new(username, password, "reader")
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct External {
    pub host: String,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// More servers, `host:port`, tried in order after `host`.
    pub failover: Option<Vec<String>>,
    pub tls: Option<ExternalTls>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExternalTls {
    pub ca_file: PathBuf,
    pub server_name: Option<String>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

/// `[history]`: SQLite ([`History::new`]) or PostgreSQL ([`History::postgres`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct History {
    /// `sqlite` (the default when absent) or `postgres`.
    pub backend: Option<String>,
    /// SQLite only: the database file.
    pub path: Option<PathBuf>,
    /// PostgreSQL only: the server's URL (no password in it).
    pub url: Option<String>,
    /// PostgreSQL only.
    pub password_file: Option<PathBuf>,
    pub batch_size: Option<usize>,
    pub flush_interval_ms: Option<u64>,
    pub channel_capacity: Option<usize>,
    pub retention_days: Option<u32>,
    pub max_size_mb: Option<u64>,
    pub retention_interval_s: Option<u64>,
    pub synchronous: Option<String>,
}

impl History {
    /// SQLite in the file `path`.
    pub fn new(path: PathBuf) -> History {
        History {
            path: Some(path),
            ..History::default()
        }
    }

    /// PostgreSQL at `url` (the host then needs `[api] state_dir`).
    pub fn postgres(url: &str) -> History {
        History {
            backend: Some("postgres".to_owned()),
            url: Some(url.to_owned()),
            ..History::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Sparkplug {
    pub host_id: String,
    pub reorder_timeout_ms: Option<u64>,
    pub rebirth_min_interval_ms: Option<u64>,
    /// The groups this instance owns; `None`: every group.
    pub groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Peer>,
}

/// `[[sparkplug.peers]]`: another host instance and the groups it owns.
#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    pub host_id: String,
    pub groups: Vec<String>,
}

impl Peer {
    pub fn new(host_id: &str, groups: &[&str]) -> Peer {
        Peer {
            host_id: host_id.to_owned(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
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
