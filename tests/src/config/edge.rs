//! The edge node's file: `[sparkplug]`, `[mqtt]`, `[modbus]` and `[store]`.

use std::path::PathBuf;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct EdgeConfig {
    pub sparkplug: Sparkplug,
    pub mqtt: Mqtt,
    pub modbus: Modbus,
    pub store: Option<Store>,
    pub metrics: Option<Metrics>,
}

/// `[metrics]`: where Prometheus `/metrics` is served.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub listen: String,
}

impl EdgeConfig {
    /// Node `group/node`, no server, no device: the test adds those.
    pub fn new(group: &str, node: &str) -> EdgeConfig {
        EdgeConfig {
            sparkplug: Sparkplug::new(group, node),
            mqtt: Mqtt::default(),
            modbus: Modbus::default(),
            store: None,
            metrics: None,
        }
    }

    /// The session tests' node `group/gw1` on `servers`: device `boiler` at
    /// `127.0.0.1:modbus_port` (unit 1) with `setpoint` (holding 0, u16, rw),
    /// `Process/temperature` (input 0, i16, °C) and `pump` (coil 0, rw), polled every 100 ms.
    pub fn boiler(group: &str, servers: &[u16], modbus_port: u16) -> EdgeConfig {
        let mut config = EdgeConfig::new(group, "gw1");
        config.mqtt.servers = servers
            .iter()
            .map(|port| Server::url(format!("mqtt://127.0.0.1:{port}")))
            .collect();
        config.modbus.scan_classes = vec![ScanClass::new("fast", 100.0)];
        config.modbus.devices = vec![
            Device::tcp("boiler", modbus_port, 1)
                .timing(500, 1, (100, 200))
                .tag(Tag::new("setpoint", "holding", 0, "u16").writable())
                .tag(Tag::new("Process/temperature", "input", 0, "i16").units("°C"))
                .tag(Tag::new("pump", "coil", 0, "bool").writable()),
        ];
        config
    }

    /// Waits for this Primary Host's STATE before its births.
    pub fn primary_host(mut self, host_id: &str) -> Self {
        self.sparkplug.primary_host_id = Some(host_id.to_owned());
        self
    }

    /// Keeps its bdSeq in `path` across restarts.
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.sparkplug.state_file = Some(path.into());
        self
    }

    /// The TOML document.
    pub fn to_toml(&self) -> String {
        super::to_toml(self)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Sparkplug {
    pub group_id: String,
    pub edge_node_id: String,
    pub primary_host_id: Option<String>,
    pub rebirth_debounce_ms: u64,
    pub state_file: Option<PathBuf>,
    pub metrics_period_ms: u64,
    pub hardware: Option<String>,
}

impl Sparkplug {
    /// No Rebirth debounce, node metrics once a minute (out of the tests' way).
    pub fn new(group: &str, node: &str) -> Sparkplug {
        Sparkplug {
            group_id: group.to_owned(),
            edge_node_id: node.to_owned(),
            primary_host_id: None,
            rebirth_debounce_ms: 0,
            state_file: None,
            metrics_period_ms: 60_000,
            hardware: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Mqtt {
    pub client_id: Option<String>,
    pub keep_alive_s: u64,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub startup_delay_max_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    pub connect_timeout_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
}

impl Default for Mqtt {
    /// Short keep-alive, no startup delay, fast reconnects.
    fn default() -> Mqtt {
        Mqtt {
            client_id: None,
            keep_alive_s: 5,
            username: None,
            password_file: None,
            startup_delay_max_ms: 0,
            backoff_min_ms: 50,
            backoff_max_ms: 200,
            connect_timeout_ms: 2_000,
            servers: Vec::new(),
        }
    }
}

/// One `[[mqtt.servers]]` entry: a URL, or a host and port.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Server {
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

impl Server {
    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(url: impl Into<String>) -> Server {
        Server {
            url: Some(url.into()),
            ..Server::default()
        }
    }

    /// `host = "127.0.0.1"`, `port = PORT`.
    pub fn loopback(port: u16) -> Server {
        Server {
            host: Some("127.0.0.1".to_owned()),
            port: Some(port),
            ..Server::default()
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Modbus {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tag_files: Vec<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scan_classes: Vec<ScanClass>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buses: Vec<Bus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
}

impl Modbus {
    /// A document holding only this `[modbus]` section (what the Modbus engine reads).
    pub fn to_toml(&self) -> String {
        #[derive(Serialize)]
        struct Document<'a> {
            modbus: &'a Modbus,
        }
        super::to_toml(&Document { modbus: self })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanClass {
    pub name: String,
    pub period_ms: f64,
}

impl ScanClass {
    pub fn new(name: &str, period_ms: f64) -> ScanClass {
        ScanClass {
            name: name.to_owned(),
            period_ms,
        }
    }
}

/// A shared RTU line (`transport` is `rtu` or `rtu_over_tcp`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bus {
    pub name: String,
    pub transport: String,
    pub path: Option<String>,
    pub baud: Option<u32>,
    pub parity: Option<String>,
    pub data_bits: Option<u8>,
    pub stop_bits: Option<u8>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub inter_frame_delay_us: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Device {
    pub name: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub bus: Option<String>,
    pub unit_id: Option<u8>,
    pub timeout_ms: Option<u64>,
    pub max_registers_per_request: Option<u16>,
    pub max_bits_per_request: Option<u16>,
    pub max_gap: Option<u16>,
    pub offline_after_failures: Option<u32>,
    pub reconnect_min_ms: Option<u64>,
    pub reconnect_max_ms: Option<u64>,
    pub use_multiple_writes: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

impl Device {
    /// A Modbus TCP device at `127.0.0.1:port`, unit `unit_id`.
    pub fn tcp(name: &str, port: u16, unit_id: u8) -> Device {
        Device {
            name: name.to_owned(),
            host: Some("127.0.0.1".to_owned()),
            port: Some(port),
            unit_id: Some(unit_id),
            ..Device::default()
        }
    }

    /// Request timeout, failures before offline, and the reconnect backoff bounds.
    pub fn timing(mut self, timeout_ms: u64, offline_after: u32, reconnect_ms: (u64, u64)) -> Self {
        self.timeout_ms = Some(timeout_ms);
        self.offline_after_failures = Some(offline_after);
        self.reconnect_min_ms = Some(reconnect_ms.0);
        self.reconnect_max_ms = Some(reconnect_ms.1);
        self
    }

    pub fn tag(mut self, tag: Tag) -> Self {
        self.tags.push(tag);
        self
    }
}

/// A tag address: the 0-based protocol address (with a table) or 1-based notation.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Address {
    Number(u32),
    Text(String),
}

impl Default for Address {
    fn default() -> Self {
        Address::Number(0)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Tag {
    pub name: String,
    pub table: Option<String>,
    pub address: Address,
    pub bit: Option<u8>,
    #[serde(rename = "type")]
    pub data_type: String,
    pub length: Option<u16>,
    pub order: Option<String>,
    pub scan_class: Option<String>,
    pub access: Option<String>,
    pub units: Option<String>,
    pub gain: Option<f64>,
    pub offset: Option<f64>,
    pub raw_min: Option<f64>,
    pub raw_max: Option<f64>,
    pub eng_min: Option<f64>,
    pub eng_max: Option<f64>,
    pub deadband: Option<f64>,
    pub deadband_percent: Option<f64>,
    pub description: Option<String>,
}

impl Tag {
    /// `name` at `address` of `table` (`holding`, `input`, `coil`, `discrete`), typed
    /// `data_type` (`u16`, `f32`, `bool`...).
    pub fn new(name: &str, table: &str, address: u32, data_type: &str) -> Tag {
        Tag {
            name: name.to_owned(),
            table: Some(table.to_owned()),
            address: Address::Number(address),
            data_type: data_type.to_owned(),
            ..Tag::default()
        }
    }

    /// `name` at a 1-based Modbus address (`"40001"`: holding register 0), no table.
    pub fn numbered(name: &str, address: &str, data_type: &str) -> Tag {
        Tag {
            name: name.to_owned(),
            address: Address::Text(address.to_owned()),
            data_type: data_type.to_owned(),
            ..Tag::default()
        }
    }

    /// `access = "read_write"`.
    pub fn writable(mut self) -> Self {
        self.access = Some("read_write".to_owned());
        self
    }

    pub fn units(mut self, units: &str) -> Self {
        self.units = Some(units.to_owned());
        self
    }

    pub fn scan_class(mut self, scan_class: &str) -> Self {
        self.scan_class = Some(scan_class.to_owned());
        self
    }

    pub fn order(mut self, order: &str) -> Self {
        self.order = Some(order.to_owned());
        self
    }
}

/// `[store]`: every key optional (the node's defaults hold), `path` aside.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Store {
    pub path: PathBuf,
    pub max_bytes: Option<u64>,
    pub max_age_s: Option<u64>,
    pub overflow: Option<String>,
    pub batch_size: Option<usize>,
    pub replay_bytes_per_s: Option<u64>,
    pub synchronous: Option<String>,
    pub sent_window_samples: Option<usize>,
    pub persist_sent_window: Option<bool>,
}
