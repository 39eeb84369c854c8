//! The edge node's one TOML file: `[sparkplug]` (ids, primary host, Rebirth debounce,
//! bdSeq state file), `[mqtt]` with `[[mqtt.servers]]` (tried in order), and `[modbus]`
//! (read by [`crate::modbus::ModbusConfig`]). Everything is checked at load and every
//! problem is reported, named by its key path (`mqtt.servers[1].url`).
//!
//! ```toml
//! [sparkplug]
//! group_id = "plant-1"
//! edge_node_id = "gateway-7"
//! primary_host_id = "scada"      # optional: wait for its STATE before births
//!
//! [mqtt]
//! password_file = "/etc/edge-node/mqtt-password"
//! username = "gateway-7"
//!
//! [[mqtt.servers]]
//! url = "mqtts://broker-a.plant:8883"
//! ca_file = "/etc/edge-node/ca.pem"
//!
//! [[mqtt.servers]]
//! url = "mqtt://broker-b.plant:1883"
//! ```
//!
//! Credentials per server: a server's own `username` and `password_file` come first,
//! then `[mqtt]`'s. A plain-text server gets `[mqtt]`'s password only when no server of
//! the file uses TLS (a password meant for TLS servers is not sent in clear text); it
//! then logs in with the username alone unless its own entry names a `password_file`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infra::link::{Credentials, Endpoint, LastWill, LinkOptions};
use infra::url::{MqttUrl, default_port, host_port};
use serde::Deserialize;
use sparkplug::topic::{IdPart, validate_id};

use infra::{ConfigError, Problems};

use crate::modbus::{ModbusConfig, Site};
use crate::node::economy::{EconomySection, Levers};
use crate::store::StoreConfig;

/// A checked configuration, ready to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub sparkplug: SparkplugSettings,
    pub mqtt: MqttSettings,
    pub modbus: ModbusConfig,
    pub site: Site,
    /// Store-and-forward; `None` loses data the link cannot take (no `[store]` table).
    pub store: Option<StoreConfig>,
    /// Where Prometheus `/metrics` is served (`[metrics] listen`, loopback); `None`: off.
    pub metrics: Option<std::net::SocketAddr>,
    /// `[log]`: the log format.
    pub log: infra::logging::LogConfig,
    /// The link-economy levers (`[economy]`); all off without the table.
    pub economy: Levers,
    /// The technician's web UI (`[ui]`); `None`: off.
    pub ui: Option<crate::ui::UiConfig>,
}

/// The Sparkplug identity and behaviour of the edge node.
#[derive(Debug, Clone, PartialEq)]
pub struct SparkplugSettings {
    pub group_id: String,
    pub edge_node_id: String,
    /// Births wait for this host's STATE `online: true`; its `online: false` moves the
    /// node to the next server.
    pub primary_host_id: Option<String>,
    /// At most one Rebirth per this period; requests inside it are dropped.
    pub rebirth_debounce: Duration,
    /// Where the last bdSeq is kept so a restart continues it; `None` keeps it in memory.
    pub state_file: Option<PathBuf>,
    /// How often node metrics are checked and changed ones sent in NDATA.
    pub metrics_period: Duration,
    /// The `Properties/Hardware` node metric.
    pub hardware: String,
    /// A `Node Control/Scan Rate` command below this (ms) is refused.
    pub scan_rate_min_ms: i64,
    /// A `Node Control/Scan Rate` command above this (ms) is refused.
    pub scan_rate_max_ms: i64,
}

/// How the MQTT link connects.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    /// Defaults to `group_id:edge_node_id`, unique wherever the Edge Node Descriptor is.
    pub client_id: String,
    pub keep_alive: Duration,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A random delay in `0..=startup_delay_max` before the first connect, so a fleet
    /// rebooting after a power cut does not reach the broker all at once.
    pub startup_delay_max: Duration,
    pub backoff: BackoffSettings,
    /// How long a connect may take before the next server is tried.
    pub connect_timeout: Duration,
    /// Largest MQTT packet sent or accepted, in bytes: at least the broker's limit, so
    /// whatever the broker delivers (a large retained STATE or NCMD) cannot break the link.
    pub max_packet_size: usize,
    /// Tried in order; a failure or a `Next Server` command moves to the next one.
    pub servers: Vec<ServerSettings>,
}

pub use infra::link::BackoffSettings;
pub use infra::secret::Secret;
/// TLS to one server: trust anchors, the name to verify (default: the host), an optional
/// client certificate.
pub use infra::tls::ClientTls as TlsSettings;

impl MqttSettings {
    /// The link options for one connection to `server` with `will`.
    pub fn link_options(&self, server: &ServerSettings, will: LastWill) -> LinkOptions {
        let endpoint = Endpoint {
            host: server.host.clone(),
            port: server.port,
            tls: server.tls.clone(),
            credentials: server.credentials.clone(),
        };
        LinkOptions {
            keep_alive: self.keep_alive,
            connect_timeout: self.connect_timeout,
            will: Some(will),
            max_packet_size: Some(self.max_packet_size),
            ..LinkOptions::new(endpoint, self.client_id.clone())
        }
    }
}

/// One MQTT server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub tls: Option<TlsSettings>,
    /// The login sent to this server: its own, else `[mqtt]`'s (see the module docs).
    pub credentials: Option<Credentials>,
    /// A digest of the TLS files' contents at load: a renewed certificate under the same
    /// name makes the settings differ, so applying them reconnects.
    pub files_digest: u64,
}

impl fmt::Display for ServerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}", host_port(&self.host, self.port))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    sparkplug: SparkplugSection,
    mqtt: MqttSection,
    /// Read by the Modbus engine's own loader.
    #[serde(default)]
    #[allow(dead_code)]
    modbus: Option<toml::Table>,
    store: Option<StoreConfig>,
    metrics: Option<infra::metrics::MetricsConfig>,
    log: Option<infra::logging::LogConfig>,
    economy: Option<EconomySection>,
    ui: Option<crate::ui::UiConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SparkplugSection {
    group_id: String,
    edge_node_id: String,
    primary_host_id: Option<String>,
    #[serde(default = "default_rebirth_debounce_ms")]
    rebirth_debounce_ms: u64,
    state_file: Option<PathBuf>,
    #[serde(default = "default_metrics_period_ms")]
    metrics_period_ms: u64,
    hardware: Option<String>,
    #[serde(default = "default_scan_rate_min_ms")]
    scan_rate_min_ms: i64,
    #[serde(default = "default_scan_rate_max_ms")]
    scan_rate_max_ms: i64,
}

fn default_rebirth_debounce_ms() -> u64 {
    5_000
}
fn default_metrics_period_ms() -> u64 {
    10_000
}
fn default_scan_rate_min_ms() -> i64 {
    100
}
fn default_scan_rate_max_ms() -> i64 {
    3_600_000
}
fn default_max_packet_size() -> usize {
    4 * 1024 * 1024
}

/// The Scan Rate bounds a configuration may set: 1 ms to one day.
const SCAN_RATE_RANGE: std::ops::RangeInclusive<i64> = 1..=86_400_000;
/// MQTT's own packet limit (a 4-byte remaining length) and a floor that fits any STATE.
const MAX_PACKET_RANGE: std::ops::RangeInclusive<usize> = 1024..=268_435_455;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttSection {
    client_id: Option<String>,
    #[serde(default = "default_keep_alive_s")]
    keep_alive_s: u64,
    username: Option<String>,
    password_file: Option<PathBuf>,
    #[serde(default = "default_startup_delay_max_ms")]
    startup_delay_max_ms: u64,
    #[serde(default = "default_backoff_min_ms")]
    backoff_min_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    backoff_max_ms: u64,
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "default_max_packet_size")]
    max_packet_size: usize,
    #[serde(default)]
    servers: Vec<ServerSection>,
}

fn default_keep_alive_s() -> u64 {
    30
}
fn default_startup_delay_max_ms() -> u64 {
    5_000
}
fn default_backoff_min_ms() -> u64 {
    1_000
}
fn default_backoff_max_ms() -> u64 {
    60_000
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    #[serde(default)]
    tls: bool,
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    username: Option<String>,
    password_file: Option<PathBuf>,
}

impl Config {
    /// Reads and checks a whole edge-node file, Modbus tag files included.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
        Config::load_with(path, &text, &|p: &Path| std::fs::read(p))
    }

    /// [`Config::load`] of `text` as the file at `path`, every file it names (tag CSVs,
    /// password and TLS files) read by `read`: a draft's files before the disk's.
    pub fn load_with(path: &Path, text: &str, read: ReadFile<'_>) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let base = path.parent().unwrap_or(Path::new("."));
        Config::check(text, base, read, || {
            ModbusConfig::load_with(path, text, read)
        })
        .map_err(|e| e.in_file(&shown))
    }

    /// Checks a document already in memory (the Modbus part must not name tag files).
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        Config::check(text, base, &|p: &Path| std::fs::read(p), || {
            let modbus = ModbusConfig::parse(text)?;
            let site = modbus.validate()?;
            Ok((modbus, site))
        })
    }

    /// Every section checked, so that all problems are reported at once.
    pub(crate) fn check(
        text: &str,
        base: &Path,
        read: ReadFile<'_>,
        modbus: impl FnOnce() -> Result<(ModbusConfig, Site), ConfigError>,
    ) -> Result<Config, ConfigError> {
        // A syntax error is reported once, not by each section's reader.
        toml::from_str::<toml::Table>(text).map_err(|e| ConfigError::from_toml(&e, text))?;
        let ((sparkplug, mqtt, store, metrics, economy, log, ui), (modbus, site)) =
            match (parse_sections(text, base, read), modbus()) {
                (Ok(sections), Ok(modbus)) => (sections, modbus),
                (Err(e), Err(modbus)) => return Err(e.join(modbus)),
                (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
            };
        let config = Config {
            sparkplug,
            mqtt,
            modbus,
            site,
            store,
            metrics,
            log,
            economy,
            ui,
        };
        config.check_device_ids()?;
        Ok(config)
    }

    /// Modbus device names become Sparkplug device ids.
    fn check_device_ids(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        for (i, d) in self.site.devices.iter().enumerate() {
            if let Err(e) = validate_id(IdPart::DeviceId, &d.name) {
                problems.push(
                    format!("modbus.devices[{i}].name"),
                    format!("{:?} is not a Sparkplug device_id: {e}", d.name),
                );
            }
        }
        problems.finish(())
    }
}

/// Reads a file a configuration names: the disk's, or a draft's before the disk's.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

fn parse_sections(text: &str, base: &Path, read: ReadFile<'_>) -> Result<Sections, ConfigError> {
    let doc: Document = toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text))?;
    let mut problems = Problems::new();
    let sparkplug = check_sparkplug(doc.sparkplug, base, &mut problems);
    let mqtt = check_mqtt(doc.mqtt, &sparkplug, base, read, &mut problems);
    let store = doc.store.map(|s| check_store(s, base, &mut problems));
    let metrics = doc.metrics.and_then(|m| problems.check(m.addr()));
    let economy = doc
        .economy
        .map(|e| e.check(&mut problems))
        .unwrap_or_else(Levers::off);
    let log = doc.log.unwrap_or_default();
    let ui = doc.ui.and_then(|u| problems.check(u.validate(base)));
    problems.finish((sparkplug, mqtt, store, metrics, economy, log, ui))
}

type Sections = (
    SparkplugSettings,
    MqttSettings,
    Option<StoreConfig>,
    Option<std::net::SocketAddr>,
    Levers,
    infra::logging::LogConfig,
    Option<crate::ui::UiConfig>,
);

/// The store's own checks, its path taken relative to the config file.
fn check_store(mut s: StoreConfig, base: &Path, problems: &mut Problems) -> StoreConfig {
    s.path = relative(base, s.path);
    problems.check(s.validate());
    s
}

fn relative(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

fn check_sparkplug(s: SparkplugSection, base: &Path, problems: &mut Problems) -> SparkplugSettings {
    let ids = [
        ("sparkplug.group_id", IdPart::GroupId, Some(&s.group_id)),
        (
            "sparkplug.edge_node_id",
            IdPart::EdgeNodeId,
            Some(&s.edge_node_id),
        ),
        (
            "sparkplug.primary_host_id",
            IdPart::HostId,
            s.primary_host_id.as_ref(),
        ),
    ];
    for (key, part, id) in ids {
        if let Some(id) = id
            && let Err(e) = validate_id(part, id)
        {
            problems.push(key, e.to_string());
        }
    }
    if s.metrics_period_ms < 100 {
        problems.push("sparkplug.metrics_period_ms", "must be at least 100");
    }
    if !SCAN_RATE_RANGE.contains(&s.scan_rate_min_ms) {
        problems.push("sparkplug.scan_rate_min_ms", "must be 1..=86400000 ms");
    }
    if !SCAN_RATE_RANGE.contains(&s.scan_rate_max_ms) {
        problems.push("sparkplug.scan_rate_max_ms", "must be 1..=86400000 ms");
    } else if s.scan_rate_max_ms < s.scan_rate_min_ms {
        problems.push(
            "sparkplug.scan_rate_max_ms",
            "must not be below sparkplug.scan_rate_min_ms",
        );
    }
    SparkplugSettings {
        group_id: s.group_id,
        edge_node_id: s.edge_node_id,
        primary_host_id: s.primary_host_id,
        rebirth_debounce: Duration::from_millis(s.rebirth_debounce_ms),
        state_file: s.state_file.map(|p| relative(base, p)),
        metrics_period: Duration::from_millis(s.metrics_period_ms),
        hardware: s
            .hardware
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned()),
        scan_rate_min_ms: s.scan_rate_min_ms,
        scan_rate_max_ms: s.scan_rate_max_ms,
    }
}

fn check_mqtt(
    m: MqttSection,
    sparkplug: &SparkplugSettings,
    base: &Path,
    read: ReadFile<'_>,
    problems: &mut Problems,
) -> MqttSettings {
    if m.keep_alive_s == 0 || m.keep_alive_s > u64::from(u16::MAX) {
        problems.push("mqtt.keep_alive_s", "must be 1..=65535 seconds");
    }
    if m.backoff_min_ms == 0 {
        problems.push("mqtt.backoff_min_ms", "must be above 0");
    }
    if m.backoff_max_ms < m.backoff_min_ms {
        problems.push(
            "mqtt.backoff_max_ms",
            "must not be below mqtt.backoff_min_ms",
        );
    }
    if m.connect_timeout_ms == 0 {
        problems.push("mqtt.connect_timeout_ms", "must be above 0");
    }
    if !MAX_PACKET_RANGE.contains(&m.max_packet_size) {
        problems.push(
            "mqtt.max_packet_size",
            "must be 1024..=268435455 bytes (MQTT's own limit)",
        );
    }
    let client_id = m.client_id.unwrap_or_else(|| default_client_id(sparkplug));
    if client_id.is_empty() || client_id.len() > 65_535 {
        problems.push("mqtt.client_id", "must be 1..=65535 bytes");
    }
    let password = m
        .password_file
        .and_then(|p| read_password(&relative(base, p), read, "mqtt.password_file", problems));
    if password.is_some() && m.username.is_none() {
        problems.push(
            "mqtt.username",
            "is required when mqtt.password_file is set",
        );
    }
    if m.servers.is_empty() {
        problems.push("mqtt.servers", "at least one server is required");
    }
    let checked: Vec<(ServerSettings, Own)> = m
        .servers
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| check_server(i, s, base, read, problems).map(|c| (i, c)))
        .map(|(i, (server, own))| (server, Own { index: i, ..own }))
        .collect();
    let all_plain = checked.iter().all(|(s, _)| s.tls.is_none());
    let servers = checked
        .into_iter()
        .map(|(mut server, own)| {
            // A password given for TLS servers is not sent in clear text (module docs).
            let shared = if server.tls.is_some() || all_plain {
                password.clone()
            } else {
                None
            };
            let username = own.username.or_else(|| m.username.clone());
            let password = own.password.or(shared);
            if own.has_password_file && username.is_none() {
                problems.push(
                    format!("mqtt.servers[{}].username", own.index),
                    "is required when this server's password_file is set (here or in [mqtt])",
                );
            }
            server.credentials = username.map(|username| Credentials { username, password });
            server
        })
        .collect();
    MqttSettings {
        client_id,
        keep_alive: Duration::from_secs(m.keep_alive_s),
        username: m.username,
        password,
        startup_delay_max: Duration::from_millis(m.startup_delay_max_ms),
        backoff: BackoffSettings {
            min: Duration::from_millis(m.backoff_min_ms),
            max: Duration::from_millis(m.backoff_max_ms),
        },
        connect_timeout: Duration::from_millis(m.connect_timeout_ms),
        max_packet_size: m.max_packet_size,
        servers,
    }
}

/// `group_id:edge_node_id`: unique wherever the Edge Node Descriptor is (unless the ids
/// themselves hold `:`), so nodes sharing an edge_node_id in different groups do not take
/// over each other's MQTT session. Not `/`: brokers such as rumqttd refuse it in client ids.
fn default_client_id(sparkplug: &SparkplugSettings) -> String {
    format!("{}:{}", sparkplug.group_id, sparkplug.edge_node_id)
}

/// A server entry's own login, before `[mqtt]`'s fills in.
#[derive(Default)]
struct Own {
    index: usize,
    username: Option<String>,
    password: Option<Secret>,
    has_password_file: bool,
}

/// A password file's secret (the draft's or the disk's), or a problem at `key`.
fn read_password(
    path: &Path,
    read: ReadFile<'_>,
    key: &str,
    problems: &mut Problems,
) -> Option<Secret> {
    let checked = read(path)
        .map_err(|source| infra::secret::SecretError::Read {
            path: path.to_owned(),
            source,
        })
        .and_then(|bytes| infra::secret::secret_from_text(path, &String::from_utf8_lossy(&bytes)));
    checked.map_err(|e| problems.push(key, e.to_string())).ok()
}

fn check_server(
    i: usize,
    s: ServerSection,
    base: &Path,
    read: ReadFile<'_>,
    problems: &mut Problems,
) -> Option<(ServerSettings, Own)> {
    let key = |k: &str| format!("mqtt.servers[{i}].{k}");
    let (host, port, tls) = match (&s.url, &s.host) {
        (Some(url), None) => match MqttUrl::parse(url) {
            Ok(url) => (url.host, s.port.or(url.explicit_port), url.tls || s.tls),
            Err(e) => {
                problems.push(key("url"), e.to_string());
                return None;
            }
        },
        (None, Some(host)) => (host.clone(), s.port, s.tls),
        (Some(_), Some(_)) => {
            problems.push(key("host"), "give either `url` or `host`, not both");
            return None;
        }
        (None, None) => {
            problems.push(key("url"), "a server needs `url` or `host`");
            return None;
        }
    };
    if host.is_empty() {
        problems.push(key("host"), "is empty");
        return None;
    }
    let tls = tls || s.ca_file.is_some();
    let port = port.unwrap_or(default_port(tls));
    if port == 0 {
        problems.push(key("port"), "must not be 0");
    }
    let client_auth = match (s.client_cert_file, s.client_key_file) {
        (Some(c), Some(k)) => Some((relative(base, c), relative(base, k))),
        (None, None) => None,
        (Some(_), None) => {
            problems.push(key("client_key_file"), "is required with client_cert_file");
            None
        }
        (None, Some(_)) => {
            problems.push(key("client_cert_file"), "is required with client_key_file");
            None
        }
    };
    let files = [
        ("ca_file", s.ca_file.as_ref()),
        ("client_cert_file", client_auth.as_ref().map(|(c, _)| c)),
        ("client_key_file", client_auth.as_ref().map(|(_, k)| k)),
    ];
    let mut digest = std::hash::DefaultHasher::new();
    for (name, file) in files {
        if let Some(file) = file {
            let file = relative(base, file.clone());
            match read(&file) {
                Ok(bytes) => std::hash::Hash::hash(&bytes, &mut digest),
                Err(e) => problems.push(key(name), format!("{}: {e}", file.display())),
            }
        }
    }
    let own = Own {
        index: i,
        has_password_file: s.password_file.is_some(),
        password: s
            .password_file
            .and_then(|p| read_password(&relative(base, p), read, &key("password_file"), problems)),
        username: s.username,
    };
    let tls = if tls {
        match s.ca_file {
            Some(ca) => Some(TlsSettings {
                ca_file: relative(base, ca),
                server_name: s.server_name,
                client_auth,
            }),
            None => {
                problems.push(key("ca_file"), "is required for TLS");
                None
            }
        }
    } else {
        if client_auth.is_some() || s.server_name.is_some() {
            problems.push(
                key("tls"),
                "client certificates and server_name need TLS (mqtts:// or tls = true)",
            );
        }
        None
    };
    let server = ServerSettings {
        host,
        port,
        tls,
        credentials: None,
        files_digest: std::hash::Hasher::finish(&digest),
    };
    Some((server, own))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[sparkplug]
group_id = "plant"
edge_node_id = "gw1"
primary_host_id = "scada"

[mqtt]
startup_delay_max_ms = 0

[[mqtt.servers]]
url = "mqtt://127.0.0.1:1883"

[[mqtt.servers]]
host = "backup"
port = 1884
"#;

    #[test]
    fn good_file_loads_with_defaults() {
        let c = Config::from_toml(GOOD, Path::new(".")).unwrap();
        assert_eq!(c.sparkplug.group_id, "plant");
        assert_eq!(c.sparkplug.primary_host_id.as_deref(), Some("scada"));
        assert_eq!(c.sparkplug.rebirth_debounce, Duration::from_secs(5));
        assert_eq!(c.mqtt.client_id, "plant:gw1");
        assert_eq!(c.mqtt.servers.len(), 2);
        assert_eq!(c.mqtt.servers[0].port, 1883);
        assert_eq!(c.mqtt.servers[1].host, "backup");
        assert_eq!(c.mqtt.servers[1].port, 1884);
        assert_eq!(c.mqtt.startup_delay_max, Duration::ZERO);
        assert_eq!(c.mqtt.max_packet_size, 4 * 1024 * 1024);
        assert_eq!(c.sparkplug.scan_rate_min_ms, 100);
        assert_eq!(c.sparkplug.scan_rate_max_ms, 3_600_000);
    }

    #[test]
    fn the_log_table_names_the_format() {
        let c = Config::from_toml(
            &format!("{GOOD}\n[log]\nformat = \"json\"\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.log.format, Some(infra::logging::Format::Json));
        assert_eq!(
            Config::from_toml(GOOD, Path::new(".")).unwrap().log.format,
            None
        );
        let e = Config::from_toml(
            &format!("{GOOD}\n[log]\nformat = \"xml\"\n"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.keys().contains(&"log.format"), "{e}");
    }

    #[test]
    fn scan_rate_bounds_and_packet_size_are_checked() {
        let with = |sparkplug: &str, mqtt: &str| {
            GOOD.replace(
                "primary_host_id = \"scada\"\n",
                &format!("primary_host_id = \"scada\"\n{sparkplug}"),
            )
            .replace(
                "startup_delay_max_ms = 0\n",
                &format!("startup_delay_max_ms = 0\n{mqtt}"),
            )
        };
        let e = Config::from_toml(
            &with(
                "scan_rate_min_ms = 0\nscan_rate_max_ms = 90000000\n",
                "max_packet_size = 10\n",
            ),
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(
            e.keys(),
            [
                "sparkplug.scan_rate_min_ms",
                "sparkplug.scan_rate_max_ms",
                "mqtt.max_packet_size"
            ]
        );
        let e = Config::from_toml(
            &with("scan_rate_min_ms = 500\nscan_rate_max_ms = 400\n", ""),
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(e.keys(), ["sparkplug.scan_rate_max_ms"]);
        let c = Config::from_toml(
            &with("scan_rate_min_ms = 10\n", "max_packet_size = 262144\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.sparkplug.scan_rate_min_ms, 10);
        assert_eq!(c.mqtt.max_packet_size, 262_144);
        let server = &c.mqtt.servers[0];
        let will = LastWill::new("t", Vec::new(), infra::link::QoS::AtLeastOnce, false);
        assert_eq!(
            c.mqtt.link_options(server, will).max_packet_size,
            Some(262_144)
        );
    }

    #[test]
    fn economy_levers_are_off_without_the_table_and_checked_with_it() {
        let off = Config::from_toml(GOOD, Path::new(".")).unwrap();
        assert_eq!(off.economy, Levers::off());
        let on = format!(
            "{GOOD}\n[economy]\nmetric_timestamps = \"when_different\"\nreport_window_ms = 10000\ncompression = \"gzip\"\n"
        );
        let c = Config::from_toml(&on, Path::new(".")).unwrap();
        assert_eq!(c.economy.report_window, Duration::from_secs(10));
        assert_eq!(c.economy.compression, Some(sparkplug::Algorithm::Gzip));
        let bad = format!("{GOOD}\n[economy]\nreport_window_ms = 99999999\n");
        let e = Config::from_toml(&bad, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("economy.report_window_ms"), "{e}");
        let unknown = format!("{GOOD}\n[economy]\nwindow = 5\n");
        assert!(Config::from_toml(&unknown, Path::new(".")).is_err());
    }

    #[test]
    fn every_problem_names_its_key() {
        let text = r#"
[sparkplug]
group_id = "pl/ant"
edge_node_id = "gw+1"

[mqtt]
keep_alive_s = 0
backoff_min_ms = 5000
backoff_max_ms = 10

[[mqtt.servers]]
url = "http://x"

[[mqtt.servers]]
url = "mqtts://secure:8883"
"#;
        let e = Config::from_toml(text, Path::new(".")).unwrap_err();
        assert_eq!(
            e.keys(),
            [
                "sparkplug.group_id",
                "sparkplug.edge_node_id",
                "mqtt.keep_alive_s",
                "mqtt.backoff_max_ms",
                "mqtt.servers[0].url",
                "mqtt.servers[1].ca_file",
            ]
        );
    }

    #[test]
    fn problems_of_every_section_are_reported_together() {
        let text = format!(
            "{}\n[store]\nbatch_size = 0\nmax_bytes = 1\n\n[[modbus.scan_classes]]\nname = \"fast\"\nperiod_ms = 0\n\n[[modbus.devices]]\nname = \"a\"\nhost = \"127.0.0.1\"\ntimeout_ms = 0\n\n[[modbus.devices.tags]]\nname = \"t\"\naddress = \"40001\"\ntype = \"u16\"\n\n[[modbus.devices]]\nname = \"b\"\nbus = \"none\"\n\n[[modbus.devices.tags]]\nname = \"t\"\naddress = \"30001\"\ntype = \"u16\"\naccess = \"read_write\"\n",
            GOOD.replace("edge_node_id = \"gw1\"", "edge_node_id = \"gw+1\"")
        );
        let e = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert_eq!(
            e.keys(),
            [
                "sparkplug.edge_node_id",
                "store.max_bytes",
                "store.batch_size",
                "modbus.scan_classes[0].period_ms",
                "modbus.devices[0].timeout_ms",
                "modbus.devices[1].bus",
            ],
            "{e}"
        );
        assert_eq!(e.to_string().lines().count(), 6, "{e}");
    }

    #[test]
    fn a_loaded_file_names_itself_and_its_csv_rows_by_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{}\n[modbus]\ntag_files = [\"tags.csv\"]\n\n[[modbus.scan_classes]]\nname = \"fast\"\nperiod_ms = 100\n\n[[modbus.devices]]\nname = \"boiler\"\nhost = \"127.0.0.1\"\n",
            GOOD.replace("[mqtt]\n", "[mqtt]\nkeep_alive_s = 0\n")
        );
        let file = dir.path().join("edge.toml");
        std::fs::write(&file, text).unwrap();
        std::fs::write(
            dir.path().join("tags.csv"),
            "device,name,address,type,access\nboiler,a,40001,u16,\nboiler,b,30001,u16,read_write\n",
        )
        .unwrap();
        let e = Config::load(&file).unwrap_err().to_string();
        let shown = file.display();
        let csv = dir.path().join("tags.csv");
        assert_eq!(
            e,
            format!(
                "{shown}: mqtt.keep_alive_s: must be 1..=65535 seconds\n{}:3:5: access: a input_register cannot be written",
                csv.display()
            )
        );
    }

    #[test]
    fn a_toml_error_is_placed_at_its_line_and_column() {
        let text = GOOD.replace("port = 1884", "port = \"x\"");
        let e = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert_eq!(e.keys(), ["mqtt.servers[1].port"], "{e}");
        assert!(
            e.to_string()
                .starts_with("15:8: mqtt.servers[1].port: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn password_is_read_from_its_file_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let text = GOOD.replace(
            "[mqtt]\n",
            "[mqtt]\nusername = \"gw1\"\npassword_file = \"pw\"\n",
        );
        let c = Config::from_toml(&text, dir.path()).unwrap();
        assert_eq!(c.mqtt.password.as_ref().unwrap().expose(), "s3cret");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn password_files_and_urls_follow_the_shared_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "\n").unwrap();
        let text = GOOD
            .replace(
                "[mqtt]\n",
                "[mqtt]\nusername = \"gw1\"\npassword_file = \"pw\"\n",
            )
            .replace("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:0");
        let e = Config::from_toml(&text, dir.path())
            .expect_err("an empty password file and port 0 accepted");
        let found: Vec<(&str, bool)> = e
            .problems()
            .iter()
            .map(|p| {
                (
                    p.key.as_str(),
                    p.message.contains("empty") || p.message.contains("port 0"),
                )
            })
            .collect();
        assert_eq!(
            found,
            [("mqtt.password_file", true), ("mqtt.servers[0].url", true)]
        );
        let c = Config::from_toml(
            &GOOD.replace("mqtt://127.0.0.1:1883", "ssl://[::1]"),
            dir.path(),
        );
        let e = c.expect_err("TLS without a CA file accepted");
        assert_eq!(e.keys()[0], "mqtt.servers[0].ca_file");
    }

    #[test]
    fn a_password_for_tls_servers_is_not_sent_to_a_plain_text_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "shared\n").unwrap();
        std::fs::write(dir.path().join("pw-b"), "own\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "-").unwrap();
        let shared = "[mqtt]\nusername = \"gw1\"\npassword_file = \"pw\"\n";
        let login = |c: &Config, i: usize| {
            let l = c.mqtt.servers[i].credentials.clone().unwrap();
            (l.username, l.password.map(|p| p.expose().to_owned()))
        };
        // Every server plain-text: the shared login goes to each.
        let c = Config::from_toml(&GOOD.replace("[mqtt]\n", shared), dir.path()).unwrap();
        assert_eq!(login(&c, 1), ("gw1".into(), Some("shared".into())));
        // One TLS server: the plain-text one gets the username only...
        let mixed = GOOD.replace("[mqtt]\n", shared).replace(
            "mqtt://127.0.0.1:1883\"",
            "mqtts://127.0.0.1\"\nca_file = \"ca.pem\"",
        );
        let c = Config::from_toml(&mixed, dir.path()).unwrap();
        assert_eq!(login(&c, 0), ("gw1".into(), Some("shared".into())));
        assert_eq!(login(&c, 1), ("gw1".into(), None));
        // ...unless its own entry names a password (and may name its own username).
        let own = mixed.replace(
            "port = 1884\n",
            "port = 1884\nusername = \"b\"\npassword_file = \"pw-b\"\n",
        );
        let c = Config::from_toml(&own, dir.path()).unwrap();
        assert_eq!(login(&c, 1), ("b".into(), Some("own".into())));
        // A server's password without any username is refused by its key.
        let e = Config::from_toml(
            &GOOD.replace("port = 1884\n", "port = 1884\npassword_file = \"pw-b\"\n"),
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(e.keys(), ["mqtt.servers[1].username"], "{e}");
    }

    #[test]
    fn a_renewed_tls_file_under_the_same_name_changes_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let text = GOOD.replace(
            "mqtt://127.0.0.1:1883\"",
            "mqtts://127.0.0.1\"\nca_file = \"ca.pem\"",
        );
        std::fs::write(dir.path().join("ca.pem"), "old certificate").unwrap();
        let a = Config::from_toml(&text, dir.path()).unwrap();
        let same = Config::from_toml(&text, dir.path()).unwrap();
        assert_eq!(a.mqtt, same.mqtt);
        std::fs::write(dir.path().join("ca.pem"), "renewed certificate").unwrap();
        let b = Config::from_toml(&text, dir.path()).unwrap();
        assert_ne!(a.mqtt, b.mqtt, "a renewed PEM file must reconnect");
    }

    #[test]
    fn device_names_must_be_sparkplug_ids() {
        let text = format!(
            "{GOOD}\n[[modbus.scan_classes]]\nname = \"fast\"\nperiod_ms = 100\n\n[[modbus.devices]]\nname = \"a/b\"\nhost = \"127.0.0.1\"\n\n[[modbus.devices.tags]]\nname = \"t\"\naddress = \"40001\"\ntype = \"u16\"\n"
        );
        let e = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert_eq!(e.keys(), ["modbus.devices[0].name"], "{e}");
    }

    /// GOOD with a scan class and one Modbus TCP device per entry, one u16 tag per name.
    fn with_devices(devices: &[(&str, &[&str])]) -> String {
        let mut text =
            format!("{GOOD}\n[[modbus.scan_classes]]\nname = \"fast\"\nperiod_ms = 100\n");
        for (device, tags) in devices {
            text.push_str(&format!(
                "\n[[modbus.devices]]\nname = {device:?}\nhost = \"127.0.0.1\"\n"
            ));
            for (i, tag) in tags.iter().enumerate() {
                text.push_str(&format!(
                    "\n[[modbus.devices.tags]]\nname = {tag:?}\naddress = \"{}\"\ntype = \"u16\"\n",
                    40001 + i
                ));
            }
        }
        text
    }

    fn refusal(text: &str) -> String {
        match Config::from_toml(text, Path::new(".")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn device_ids_are_unique_within_the_node() {
        let e = refusal(&with_devices(&[("boiler", &["t"]), ("boiler", &["t"])]));
        assert_eq!(e, "modbus.devices[1].name: device `boiler` defined twice");
        // The node's device ids are exactly its device names, each once.
        let c = Config::from_toml(
            &with_devices(&[("boiler", &["t"]), ("pump-1", &["t"])]),
            Path::new("."),
        )
        .unwrap();
        let ids: Vec<&str> = c.site.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(ids, ["boiler", "pump-1"]);
    }

    #[test]
    fn device_ids_and_tag_names_differing_only_by_case_are_refused() {
        let e = refusal(&with_devices(&[("boiler", &["t"]), ("Boiler", &["t"])]));
        assert!(
            e.starts_with(
                "modbus.devices[1].name: device `Boiler` differs only by case from device `boiler`"
            ),
            "{e}"
        );
        // Non-ASCII letters are compared lower-cased too.
        let e = refusal(&with_devices(&[("Ölpumpe", &["t"]), ("ölpumpe", &["t"])]));
        assert!(
            e.starts_with("modbus.devices[1].name: device `ölpumpe` differs only by case"),
            "{e}"
        );
        let e = refusal(&with_devices(&[("boiler", &["Flow", "temp", "FLOW"])]));
        assert!(
            e.starts_with(
                "modbus.devices[0].tags[2].name: tag `FLOW` differs only by case from tag `Flow` in this device"
            ),
            "{e}"
        );
        // Each device's metrics are born in its own DBIRTH: names may repeat across devices.
        Config::from_toml(
            &with_devices(&[("boiler", &["Flow"]), ("pump", &["flow"])]),
            Path::new("."),
        )
        .unwrap();
    }

    #[test]
    fn the_default_client_id_is_the_edge_node_descriptor() {
        let a = Config::from_toml(GOOD, Path::new(".")).unwrap();
        let b = Config::from_toml(
            &GOOD.replace("group_id = \"plant\"", "group_id = \"plant-b\""),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(a.sparkplug.edge_node_id, b.sparkplug.edge_node_id);
        assert_eq!(a.mqtt.client_id, "plant:gw1");
        assert_eq!(b.mqtt.client_id, "plant-b:gw1");
        let explicit = Config::from_toml(
            &GOOD.replace("[mqtt]\n", "[mqtt]\nclient_id = \"gw1\"\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(explicit.mqtt.client_id, "gw1");
    }

    #[test]
    fn store_table_is_optional_and_checked_by_key() {
        let c = Config::from_toml(GOOD, Path::new(".")).unwrap();
        assert_eq!(c.store, None);
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{GOOD}\n[store]\npath = \"q.sqlite\"\nbatch_size = 50\n");
        let c = Config::from_toml(&text, dir.path()).unwrap();
        let store = c.store.unwrap();
        assert_eq!(store.path, dir.path().join("q.sqlite"));
        assert_eq!(store.batch_size, 50);
        let text = format!("{GOOD}\n[store]\nbatch_size = 0\n");
        let e = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert_eq!(e.keys(), ["store.batch_size"], "{e}");
        let text = format!("{GOOD}\n[store]\nbatch_sise = 5\n");
        let e = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert_eq!(e.keys(), ["store.batch_sise"], "{e}");
        assert!(e.to_string().contains("unknown field `batch_sise`"), "{e}");
    }
}
