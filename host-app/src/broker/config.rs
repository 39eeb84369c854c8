//! The `[broker]` section of the host configuration, validated at load (every problem
//! reported, each named by its key): either an embedded broker with its listeners,
//! accounts and access rules (checked by [`Acl`](super::acl::Acl)), or an external MQTT
//! endpoint.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use infra::Problems;
use serde::Deserialize;

/// The one configuration error of both applications; named here for the broker's users.
pub use infra::ConfigError;

pub use infra::secret::Secret;
pub use infra::tls::ClientCertificates;

/// `[broker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    pub mode: BrokerMode,
    #[serde(default)]
    pub embedded: EmbeddedConfig,
    pub external: Option<ExternalConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerMode {
    /// An MQTT broker inside this process.
    Embedded,
    /// An MQTT 3.1.1/5 broker elsewhere (a cluster at fleet scale).
    External,
}

/// `[broker.embedded]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    pub plain: PlainListenerConfig,
    pub tls: Option<TlsListenerConfig>,
    pub users: Vec<UserConfig>,
    /// The account the host's own session logs in as (a `host` account; required unless
    /// anonymous access is allowed).
    pub host_username: Option<String>,
    /// Clients without a username may connect, with the rights of `anonymous`.
    pub allow_anonymous: bool,
    /// `[broker.embedded.anonymous]`: what anonymous clients may do (default: reader).
    pub anonymous: Option<AnonymousConfig>,
    /// A Mosquitto-style ACL file whose grants are added to `custom` accounts.
    pub acl_file: Option<PathBuf>,
    /// Logged-in client connections at once, over all listeners.
    pub max_connections: usize,
    /// Sockets at once that have not finished CONNECT yet (a pool apart from logged-in
    /// connections); when full, the oldest such socket is closed for a new one.
    pub max_pending_connections: usize,
    /// Sockets at once from one IP address, pending and logged in.
    pub max_connections_per_address: usize,
    /// New sockets accepted per second over all listeners (bursts up to one second's).
    pub connect_rate: u32,
    /// New sockets accepted per second from one IP address (bursts up to one second's).
    pub connect_rate_per_address: u32,
    /// Time a new socket has to finish TLS and send CONNECT before it is dropped.
    pub connection_timeout_ms: u64,
    /// Largest keep-alive granted, in seconds; a CONNECT asking more, or 0, gets this.
    pub max_keepalive_s: u16,
    /// Largest MQTT packet body accepted, in bytes (a CONNECT is further held to 32 KiB).
    pub max_payload_size: usize,
    /// QoS 1/2 messages queued for one subscriber that reads slower than they arrive
    /// (beyond the 100 in flight); past it the oldest are dropped and logged.
    pub max_queued_messages: usize,
    /// Retained messages kept at once; past it a new retained topic is delivered but not
    /// kept (logged).
    pub max_retained_messages: usize,
    /// Bytes of topic and payload of all retained messages kept at once.
    pub max_retained_bytes: usize,
    /// Keep retained messages and the sessions clients ask to keep (with their
    /// subscriptions and queued QoS 1/2 messages) across a restart, in `broker.db` in the
    /// state directory.
    pub persist: bool,
    /// `persist`: kept sessions stored at most; past it a new one is not kept (logged).
    pub max_stored_sessions: usize,
    /// `persist`: messages queued for offline sessions stored at most, over all sessions.
    pub max_stored_messages: usize,
    /// `persist`: changes are written together once per this many milliseconds (fewer
    /// writes on SD cards); a crash loses at most this interval.
    pub store_flush_ms: u64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            plain: PlainListenerConfig::default(),
            tls: None,
            users: Vec::new(),
            host_username: None,
            allow_anonymous: false,
            anonymous: None,
            acl_file: None,
            max_connections: 256,
            max_pending_connections: 256,
            max_connections_per_address: 64,
            connect_rate: 500,
            connect_rate_per_address: 50,
            connection_timeout_ms: 5_000,
            max_keepalive_s: 300,
            max_payload_size: 256 * 1024,
            max_queued_messages: 1_000_000,
            max_retained_messages: 10_000,
            max_retained_bytes: 64 * 1024 * 1024,
            persist: true,
            max_stored_sessions: 1_000,
            max_stored_messages: 100_000,
            store_flush_ms: 1_000,
        }
    }
}

/// `[broker.embedded.plain]`: the unencrypted listener, loopback by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlainListenerConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for PlainListenerConfig {
    fn default() -> Self {
        PlainListenerConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
        }
    }
}

/// `[broker.embedded.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_certificates: ClientCertificates,
    /// Log a client that presents a valid certificate in as the account its certificate
    /// names (`"cn"`: the subject's Common Name; `"san"`: the first DNS, e-mail or URI
    /// Subject Alternative Name), without a password; others log in as usual.
    #[serde(default)]
    pub certificate_username: Option<CertificateName>,
}

/// Which name of a client certificate is its account (`certificate_username`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateName {
    Cn,
    San,
}

/// What an account may do once connected (see [`Acl`](super::acl::Acl) for the rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An edge node (or a gateway of several): its own births, deaths and data, its own
    /// commands and STATE.
    Edge,
    /// A Primary Host: its own STATE, every NCMD/DCMD, subscribes to all of `spBv1.0/#`.
    Host,
    /// Subscribes only, to `subscribe` (default `spBv1.0/#`).
    Reader,
    /// Exactly the `publish` and `subscribe` filters listed (and the ACL file's grants).
    Custom,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Edge => "edge",
            Role::Host => "host",
            Role::Reader => "reader",
            Role::Custom => "custom",
        })
    }
}

/// `[[broker.embedded.users]]`: exactly one of `password` and `password_file`, a `role`
/// and the keys of that role.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
    #[serde(skip)]
    resolved: Option<Secret>,
    /// Required; an `Option` so a missing one is reported by its key.
    pub role: Option<Role>,
    /// `edge`: the Sparkplug group of its edge nodes.
    pub group_id: Option<String>,
    /// `edge`: the edge node ids the account speaks for.
    pub edge_node_ids: Option<Vec<String>>,
    /// `host`: its sparkplug_host_id.
    pub host_id: Option<String>,
    /// Client ids starting with this belong to the account (besides its own default ids).
    pub client_id_prefix: Option<String>,
    /// `custom`: topic filters it may publish to.
    pub publish: Option<Vec<String>>,
    /// `reader` and `custom`: topic filters it may subscribe to.
    pub subscribe: Option<Vec<String>>,
    /// `reader` and `custom`: topic filters refused whatever else grants them.
    pub deny: Option<Vec<String>>,
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl UserConfig {
    /// An account without a role yet: give it one with [`Self::edge`], [`Self::host`],
    /// [`Self::reader`] or [`Self::custom`].
    pub fn new(username: impl Into<String>, password: Secret) -> UserConfig {
        UserConfig {
            username: username.into(),
            password: None,
            password_file: None,
            resolved: Some(password),
            role: None,
            group_id: None,
            edge_node_ids: None,
            host_id: None,
            client_id_prefix: None,
            publish: None,
            subscribe: None,
            deny: None,
        }
    }

    /// The `edge` role for `edge_node_ids` of `group_id`.
    pub fn edge(mut self, group_id: &str, edge_node_ids: &[&str]) -> UserConfig {
        self.role = Some(Role::Edge);
        self.group_id = Some(group_id.to_owned());
        self.edge_node_ids = Some(edge_node_ids.iter().map(|n| n.to_string()).collect());
        self
    }

    /// The `host` role of `host_id`.
    pub fn host(mut self, host_id: &str) -> UserConfig {
        self.role = Some(Role::Host);
        self.host_id = Some(host_id.to_owned());
        self
    }

    /// The `reader` role, subscribing to `spBv1.0/#`.
    pub fn reader(mut self) -> UserConfig {
        self.role = Some(Role::Reader);
        self
    }

    /// The `custom` role with these filters.
    pub fn custom(mut self, publish: &[&str], subscribe: &[&str]) -> UserConfig {
        let owned = |filters: &[&str]| Some(filters.iter().map(|f| f.to_string()).collect());
        self.role = Some(Role::Custom);
        self.publish = owned(publish);
        self.subscribe = owned(subscribe);
        self
    }

    /// Topic filters refused to this account whatever else grants them.
    pub fn deny(mut self, filters: &[&str]) -> UserConfig {
        self.deny = Some(filters.iter().map(|f| f.to_string()).collect());
        self
    }

    /// Client ids starting with `prefix` belong to this account.
    pub fn client_id_prefix(mut self, prefix: &str) -> UserConfig {
        self.client_id_prefix = Some(prefix.to_owned());
        self
    }

    /// The password, once the configuration is validated.
    pub fn password(&self) -> Option<&Secret> {
        self.resolved.as_ref()
    }
}

/// `[broker.embedded.anonymous]`: the rights of clients that log in without a username
/// when `allow_anonymous = true`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousConfig {
    /// `reader` (default) or `custom`.
    pub role: Option<Role>,
    /// `custom`: topic filters anonymous clients may publish to.
    pub publish: Option<Vec<String>>,
    /// Topic filters anonymous clients may subscribe to (reader default: `spBv1.0/#`).
    pub subscribe: Option<Vec<String>>,
    /// Topic filters refused to anonymous clients whatever else grants them.
    pub deny: Option<Vec<String>>,
}

/// `[broker.external]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    pub tls: Option<ExternalTlsConfig>,
    /// Host name or address of the broker.
    pub host: String,
    /// 1883, or 8883 with TLS, when absent.
    pub port: Option<u16>,
    /// The host's login at the broker; none for an anonymous connection.
    pub username: Option<String>,
    /// File holding the password (one trailing line break ignored).
    pub password_file: Option<PathBuf>,
    /// More servers of the same broker (cluster nodes), `host:port` (port: `port`'s when
    /// absent), tried in order after `host` when a connection is refused or lost.
    #[serde(default)]
    pub failover: Vec<String>,
}

/// `[broker.external.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalTlsConfig {
    /// Name checked against the broker's certificate (default: `host`).
    pub server_name: Option<String>,
    /// PEM CA certificates the broker's certificate must chain to.
    pub ca_file: PathBuf,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

/// Reads a secret file (see [`infra::secret::read_secret_file`] for the rules).
fn read_secret(key: &str, path: &Path) -> Result<Secret, ConfigError> {
    infra::secret::read_secret_file(path).map_err(|e| ConfigError::new(key, e))
}

fn require_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("{} is not a readable file", path.display()),
        ))
    }
}

impl BrokerConfig {
    /// Parses the `[broker]` table out of a whole TOML document and validates it.
    pub fn from_toml(document: &str) -> Result<BrokerConfig, ConfigError> {
        #[derive(Deserialize)]
        struct Document {
            broker: Option<BrokerConfig>,
        }
        let doc: Document =
            toml::from_str(document).map_err(|e| ConfigError::from_toml(&e, document))?;
        let mut config = doc
            .broker
            .ok_or_else(|| ConfigError::new("broker", "missing section"))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every key and reads password files; the broker starts only from a
    /// validated configuration.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        match self.mode {
            BrokerMode::Embedded => self.embedded.validate(),
            BrokerMode::External => match &self.external {
                Some(external) => external.validate(),
                None => Err(ConfigError::new(
                    "broker.external",
                    "required when broker.mode = \"external\"",
                )),
            },
        }
    }
}

impl EmbeddedConfig {
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        if !self.plain.enabled && self.tls.is_none() {
            problems.push(
                "broker.embedded",
                "no listener: enable broker.embedded.plain or add broker.embedded.tls",
            );
        }
        if self.max_connections == 0 {
            problems.push("broker.embedded.max_connections", "must be at least 1");
        }
        for (key, value) in [
            (
                "max_pending_connections",
                self.max_pending_connections as u64,
            ),
            (
                "max_connections_per_address",
                self.max_connections_per_address as u64,
            ),
            ("connect_rate", u64::from(self.connect_rate)),
            (
                "connect_rate_per_address",
                u64::from(self.connect_rate_per_address),
            ),
            ("connection_timeout_ms", self.connection_timeout_ms),
        ] {
            if value == 0 {
                problems.push(format!("broker.embedded.{key}"), "must be at least 1");
            }
        }
        if self.max_keepalive_s == 0 {
            problems.push(
                "broker.embedded.max_keepalive_s",
                "must be between 1 and 65535 seconds",
            );
        }
        // An MQTT remaining length is at most 268435455 bytes.
        if self.max_payload_size < 128 || self.max_payload_size > 268_435_455 {
            problems.push(
                "broker.embedded.max_payload_size",
                "must be between 128 and 268435455 bytes",
            );
        }
        for (key, value) in [
            ("max_queued_messages", self.max_queued_messages),
            ("max_retained_messages", self.max_retained_messages),
            ("max_retained_bytes", self.max_retained_bytes),
            ("max_stored_sessions", self.max_stored_sessions),
            ("max_stored_messages", self.max_stored_messages),
        ] {
            if value == 0 {
                problems.push(format!("broker.embedded.{key}"), "must be at least 1");
            }
        }
        if !(10..=60_000).contains(&self.store_flush_ms) {
            problems.push(
                "broker.embedded.store_flush_ms",
                "must be between 10 and 60000 milliseconds",
            );
        }
        if let Some(tls) = &self.tls {
            problems.check(tls.validate());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, user) in self.users.iter_mut().enumerate() {
            let key = format!("broker.embedded.users[{i}]");
            if user.username.is_empty() {
                problems.push(format!("{key}.username"), "must not be empty");
            } else if !seen.insert(user.username.clone()) {
                problems.push(
                    format!("{key}.username"),
                    format!("{:?} is listed twice", user.username),
                );
            }
            user.resolved = match (&user.password, &user.password_file, &user.resolved) {
                (Some(p), None, _) if !p.is_empty() => Some(Secret::new(p.clone())),
                (None, Some(path), _) => {
                    problems.check(read_secret(&format!("{key}.password_file"), path))
                }
                (None, None, Some(resolved)) => Some(resolved.clone()),
                (Some(_), Some(_), _) => {
                    problems.push(key, "give either password or password_file, not both");
                    None
                }
                _ => {
                    problems.push(
                        format!("{key}.password"),
                        "missing or empty (or give password_file)",
                    );
                    None
                }
            };
        }
        match &self.host_username {
            Some(name) => match self.users.iter().find(|u| &u.username == name) {
                None => problems.push(
                    "broker.embedded.host_username",
                    format!("{name:?} is not in broker.embedded.users"),
                ),
                Some(user) if user.role.is_some_and(|r| r != Role::Host) => problems.push(
                    "broker.embedded.host_username",
                    format!(
                        "{name:?} has role {}; the host's own session needs a host account",
                        user.role.map(|r| r.to_string()).unwrap_or_default()
                    ),
                ),
                Some(_) => {}
            },
            None if !self.allow_anonymous => problems.push(
                "broker.embedded.host_username",
                "required unless allow_anonymous = true: the host's own session logs in \
                 as this host account",
            ),
            None => {}
        }
        if self.users.is_empty() && !self.allow_anonymous {
            problems.push(
                "broker.embedded.users",
                "no accounts and allow_anonymous is false: nobody could connect; add \
                 [[broker.embedded.users]] (and host_username) or set allow_anonymous = true",
            );
        }
        if self.anonymous.is_some() && !self.allow_anonymous {
            problems.push(
                "broker.embedded.anonymous",
                "does nothing unless allow_anonymous = true",
            );
        }
        // The access rules: roles, topic filters, client id bindings, the ACL file.
        problems.check(super::acl::Acl::from_config(self).map(drop));
        if !self.plain.enabled {
            problems.push(
                "broker.embedded.plain.enabled",
                "the host's own session connects over the plain listener; keep it enabled \
                 (bind it to 127.0.0.1 to keep it local)",
            );
        }
        problems.finish(())
    }
}

impl TlsListenerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        problems.check(require_file(
            "broker.embedded.tls.cert_file",
            &self.cert_file,
        ));
        problems.check(require_file("broker.embedded.tls.key_file", &self.key_file));
        match (&self.client_ca_file, self.client_certificates) {
            (Some(path), _) => {
                problems.check(require_file("broker.embedded.tls.client_ca_file", path));
            }
            (None, ClientCertificates::None) => {}
            (None, _) => problems.push(
                "broker.embedded.tls.client_ca_file",
                "required when client_certificates is \"optional\" or \"required\"",
            ),
        }
        if self.certificate_username.is_some()
            && self.client_certificates == ClientCertificates::None
        {
            problems.push(
                "broker.embedded.tls.certificate_username",
                "does nothing unless client_certificates is \"optional\" or \"required\"",
            );
        }
        problems.finish(())?;
        // Parse the files now so a bad PEM is reported at load, not at start.
        super::tls::server_config(self).map(|_| ())
    }
}

impl ExternalConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        if self.host.is_empty() {
            problems.push("broker.external.host", "must not be empty");
        }
        if self.port == Some(0) {
            problems.push("broker.external.port", "must not be 0");
        }
        let servers = self.servers().collect::<Vec<_>>();
        for (i, server) in servers.iter().enumerate().skip(1) {
            let key = format!("broker.external.failover[{}]", i - 1);
            match server {
                Err(e) => problems.push(key, e),
                Ok(s) if servers[..i].iter().any(|o| o.as_ref().ok() == Some(s)) => {
                    problems.push(key, "names a server already listed");
                }
                Ok(_) => {}
            }
        }
        if let Some(path) = &self.password_file {
            if self.username.is_none() {
                problems.push("broker.external.username", "required with password_file");
            }
            problems.check(read_secret("broker.external.password_file", path));
        }
        if let Some(tls) = &self.tls {
            problems.check(require_file("broker.external.tls.ca_file", &tls.ca_file));
            match (&tls.client_cert_file, &tls.client_key_file) {
                (Some(cert), Some(key)) => {
                    problems.check(require_file("broker.external.tls.client_cert_file", cert));
                    problems.check(require_file("broker.external.tls.client_key_file", key));
                }
                (None, None) => {}
                (Some(_), None) => problems.push(
                    "broker.external.tls.client_key_file",
                    "required with client_cert_file",
                ),
                (None, Some(_)) => problems.push(
                    "broker.external.tls.client_cert_file",
                    "required with client_key_file",
                ),
            }
        }
        problems.finish(())
    }

    /// Every server as (host, port): `host` first, then each failover entry in order, or
    /// what is wrong with an entry.
    pub fn servers(&self) -> impl Iterator<Item = Result<(String, u16), String>> + '_ {
        let first = std::iter::once(Ok((self.host.clone(), self.port())));
        first.chain(self.failover.iter().map(|entry| {
            // `host:port` is the authority of an MQTT URL: one grammar for both.
            let url = infra::url::MqttUrl::parse(&format!("mqtt://{entry}"))
                .map_err(|e| format!("{entry:?} is not host:port: {}", e.problem))?;
            Ok((url.host, url.explicit_port.unwrap_or(self.port())))
        }))
    }

    /// The broker's port: as configured, else 8883 with TLS and 1883 without.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls.is_some() { 8883 } else { 1883 })
    }

    /// The password read from `password_file`.
    pub fn password(&self) -> Result<Option<Secret>, ConfigError> {
        self.password_file
            .as_deref()
            .map(|p| read_secret("broker.external.password_file", p))
            .transpose()
    }
}
