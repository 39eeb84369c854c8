//! Modbus configuration: the `[modbus]` section of the edge node's TOML file (scan classes,
//! serial buses, devices, tags) and its validation into a [`Site`], the checked model the
//! engine runs. Every problem is named by its key path (`modbus.devices[3].unit_id`), or
//! for a CSV row by its file, line and column; all of them are reported at once.
//! Device names become Sparkplug device ids and tag names metric names, so two devices,
//! or two tags of one device, may not have names that match once lower-cased.
//!
//! ```toml
//! [[modbus.scan_classes]]
//! name = "fast"
//! period_ms = 100
//!
//! [[modbus.devices]]
//! name = "boiler"
//! host = "10.0.0.7"          # Modbus TCP; or `bus = "rs485-1"` for RTU
//! unit_id = 1
//!
//! [[modbus.devices.tags]]
//! name = "supply_temp"
//! address = "40001"          # 1-based notation; or `table = "holding", address = 0`
//! type = "f32"
//! order = "CDAB"
//! scan_class = "fast"
//! ```

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infra::{ConfigError, ConfigProblem, Problems};
use serde::{Deserialize, Serialize};

use super::tag::{self, Access, Deadband, Scaling, Table, Tag};
use super::value::{ByteOrder, DataType};

/// The `[modbus]` section as written by the integrator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    #[serde(default)]
    pub scan_classes: Vec<ScanClassConfig>,
    /// Shared RTU lines (serial or RTU over TCP) that devices attach to by name.
    #[serde(default)]
    pub buses: Vec<BusConfig>,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// CSV tag lists (see [`super::csv`]), relative to the configuration file.
    #[serde(default)]
    pub tag_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanClassConfig {
    pub name: String,
    /// Scan period in milliseconds; fractions allowed down to 0.1 ms.
    pub period_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusTransport {
    /// RTU framing on a local serial port.
    Rtu,
    /// RTU framing tunnelled through a TCP socket (serial device servers).
    RtuOverTcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    pub name: String,
    pub transport: BusTransport,
    /// Serial device, e.g. `/dev/ttyUSB0` (rtu).
    pub path: Option<String>,
    pub baud: Option<u32>,
    pub parity: Option<Parity>,
    pub data_bits: Option<u8>,
    pub stop_bits: Option<u8>,
    /// Host and port of the serial device server (rtu_over_tcp).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Silence kept before each request; default 3.5 character times (1.75 ms above 19200 baud).
    pub inter_frame_delay_us: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub name: String,
    /// Modbus TCP: host name or IP of the device or gateway.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// RTU: name of a `[[modbus.buses]]` entry.
    pub bus: Option<String>,
    pub unit_id: Option<u8>,
    pub timeout_ms: Option<u64>,
    pub max_registers_per_request: Option<u16>,
    pub max_bits_per_request: Option<u16>,
    /// Largest hole (registers or bits) a request may read over to join two tags.
    pub max_gap: Option<u16>,
    pub offline_after_failures: Option<u32>,
    pub reconnect_min_ms: Option<u64>,
    pub reconnect_max_ms: Option<u64>,
    /// Write one register or coil with 16/15 instead of 06/05, for devices lacking 05/06.
    pub use_multiple_writes: Option<bool>,
    #[serde(default)]
    pub tags: Vec<TagConfig>,
}

/// One tag as written in TOML or in a CSV row (the CSV adds the `device` column).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    pub name: String,
    /// With a table, `address` is the 0-based protocol address; without, 1-based notation.
    pub table: Option<Table>,
    pub address: AddressField,
    pub bit: Option<u8>,
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Registers of a string.
    pub length: Option<u16>,
    pub order: Option<ByteOrder>,
    pub scan_class: Option<String>,
    pub access: Option<Access>,
    pub units: Option<String>,
    pub gain: Option<f64>,
    pub offset: Option<f64>,
    pub raw_min: Option<f64>,
    pub raw_max: Option<f64>,
    pub eng_min: Option<f64>,
    pub eng_max: Option<f64>,
    /// Absolute deadband in engineering units.
    pub deadband: Option<f64>,
    /// Deadband in percent of `eng_max - eng_min`.
    pub deadband_percent: Option<f64>,
    pub description: Option<String>,
    /// Where a CSV row came from, for error messages.
    #[serde(skip)]
    pub source: Option<RowSource>,
}

/// File and line of a tag imported from CSV, and the file's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSource {
    pub file: String,
    pub line: u64,
    /// The header row: a key's column is its place in it.
    pub columns: std::sync::Arc<[String]>,
}

impl RowSource {
    /// A problem with the row's `key` column, placed at its file, line and column (the
    /// row's first column when the file has no such column).
    pub fn problem(&self, key: &str, message: impl fmt::Display) -> ConfigProblem {
        let column = self
            .columns
            .iter()
            .position(|c| c == key)
            .map_or(1, |i| i + 1);
        ConfigProblem::new(key, message)
            .in_file(&self.file)
            .at(self.line, column as u64)
    }
}

/// A tag address as written: an integer or a string (`"40001"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressField(pub String);

impl Serialize for AddressField {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AddressField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = AddressField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address: 0-based integer or notation such as \"40001\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<AddressField, E> {
                Ok(AddressField(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<AddressField, E> {
                Ok(AddressField(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AddressField, E> {
                Ok(AddressField(v.trim().to_owned()))
            }
        }
        // `string`, not `any`: CSV would otherwise read `00001` as the number 1.
        d.deserialize_string(V)
    }
}

/// A checked configuration, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub scan_classes: Vec<ScanClass>,
    pub links: Vec<Link>,
    pub devices: Vec<Device>,
    /// Grouped by device, in device order (as [`ModbusConfig::validate`] builds them): the
    /// engine addresses a device's tags as one contiguous range.
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScanClass {
    pub name: String,
    pub period: Duration,
}

/// One connection the engine owns: a TCP device's socket, or a shared RTU line.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub name: String,
    pub transport: Transport,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Tcp {
        host: String,
        port: u16,
    },
    RtuOverTcp {
        host: String,
        port: u16,
        inter_frame: Duration,
    },
    Rtu(SerialSettings),
}

impl Transport {
    /// Several slaves share the line and their requests are serialised.
    pub fn is_shared_line(&self) -> bool {
        !matches!(self, Transport::Tcp { .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SerialSettings {
    pub path: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
    pub inter_frame: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub name: String,
    /// Index of the link in the site.
    pub link: usize,
    pub unit_id: u8,
    /// Per-request response timeout.
    pub timeout: Duration,
    pub limits: RequestLimits,
    pub health: HealthPolicy,
    /// Single registers and coils are written with 16/15 instead of 06/05.
    pub use_multiple_writes: bool,
}

/// How large one request may be (protocol maxima: 125 registers, 2000 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_registers: u16,
    pub max_bits: u16,
    pub max_gap: u16,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_registers: 125,
            max_bits: 2000,
            max_gap: 10,
        }
    }
}

/// When a device counts as offline and how fast it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    pub offline_after_failures: u32,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            offline_after_failures: 3,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
        }
    }
}

/// A problem at `key` of the entity whose key path is `place`, e.g. `modbus.devices[3]`.
fn invalid(place: impl fmt::Display, key: &str, message: impl fmt::Display) -> ConfigError {
    ConfigError::new(format!("{place}.{key}"), message)
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    modbus: ModbusConfig,
}

impl ModbusConfig {
    /// Parses the `[modbus]` section of a whole edge-node TOML document; other sections
    /// belong to other parts of the edge node and are ignored here.
    /// `file` names the document in problems.
    pub fn from_toml(text: &str, file: &str) -> Result<ModbusConfig, ConfigError> {
        ModbusConfig::parse(text).map_err(|e| e.in_file(file))
    }

    /// [`Self::from_toml`] for a document that is in no file.
    pub(crate) fn parse(text: &str) -> Result<ModbusConfig, ConfigError> {
        let doc: Document = toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text))?;
        Ok(doc.modbus)
    }

    /// Reads a TOML file and the CSV tag files it names (relative to the file), then
    /// validates everything into a [`Site`].
    pub fn load(path: &Path) -> Result<(ModbusConfig, Site), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
        ModbusConfig::load_with(path, &text, &|p: &Path| std::fs::read(p))
    }

    /// [`ModbusConfig::load`] of `text` as the file at `path`, its tag files read by `read`
    /// (a draft's files before the disk's).
    pub fn load_with(
        path: &Path,
        text: &str,
        read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
    ) -> Result<(ModbusConfig, Site), ConfigError> {
        let shown = path.display().to_string();
        let text = text.to_owned();
        let mut config = ModbusConfig::from_toml(&text, &shown)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut problems = Problems::new();
        for (i, file) in config.tag_files.clone().iter().enumerate() {
            let full = base.join(file);
            let rows = read(&full)
                .map_err(|e| {
                    let key = format!("modbus.tag_files[{i}]");
                    ConfigError::new(key, format!("cannot read {}: {e}", full.display()))
                })
                .and_then(|bytes| {
                    super::csv::import_tags(bytes.as_slice(), &full.display().to_string())
                });
            if let Some(rows) = problems.check(rows) {
                problems.check(config.attach_rows(rows));
            }
        }
        // Tags of an unreadable file would only add "no tags" problems.
        let problems = problems.finish(()).map_err(|e| e.in_file(&shown));
        let site = problems.and_then(|()| config.validate().map_err(|e| e.in_file(&shown)))?;
        Ok((config, site))
    }

    /// Adds CSV rows to the devices their `device` column names.
    pub fn attach_rows(&mut self, rows: Vec<TagConfig>) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        for row in rows {
            let message = match row.device.as_deref() {
                None => "every CSV row names its device".to_owned(),
                Some(name) => match self.devices.iter_mut().find(|d| d.name == name) {
                    Some(device) => {
                        device.tags.push(row);
                        continue;
                    }
                    None => format!("no device `{name}` in [[modbus.devices]]"),
                },
            };
            problems.add(tag_problem(&row, "", "device", message));
        }
        problems.finish(())
    }

    /// Checks the whole configuration and builds the model the engine runs.
    pub fn validate(&self) -> Result<Site, ConfigError> {
        let mut site = Site {
            scan_classes: Vec::new(),
            links: Vec::new(),
            devices: Vec::new(),
            tags: Vec::new(),
        };
        // Each scan class, bus, device and tag reports its first problem; all are checked.
        let mut problems = Problems::new();
        for (i, sc) in self.scan_classes.iter().enumerate() {
            let place = format!("modbus.scan_classes[{i}]");
            if sc.name.is_empty() {
                problems.extend(invalid(place, "name", "must not be empty"));
                continue;
            }
            if site.scan_classes.iter().any(|s| s.name == sc.name) {
                let message = format!("scan class `{}` is defined twice", sc.name);
                problems.extend(invalid(place, "name", message));
                continue;
            }
            let period = if sc.period_ms.is_finite() && (0.1..=86_400_000.0).contains(&sc.period_ms)
            {
                Duration::from_secs_f64(sc.period_ms / 1000.0)
            } else {
                problems.extend(invalid(place, "period_ms", "must be 0.1 ms ..= 1 day"));
                // Kept, so that its tags are not also refused for naming it.
                Duration::ZERO
            };
            site.scan_classes.push(ScanClass {
                name: sc.name.clone(),
                period,
            });
        }
        for (i, bus) in self.buses.iter().enumerate() {
            let Some(link) = problems.check(validate_bus(i, bus)) else {
                continue;
            };
            if site.links.iter().any(|l| l.name == bus.name) {
                let message = format!("bus `{}` is defined twice", bus.name);
                problems.extend(invalid(format!("modbus.buses[{i}]"), "name", message));
            }
            site.links.push(link);
        }
        let mut unit_ids_on_bus: HashSet<(usize, u8)> = HashSet::new();
        let mut device_names = SparkplugNames::default();
        for (i, dev) in self.devices.iter().enumerate() {
            let place = format!("modbus.devices[{i}]");
            let checked = (|| -> Result<(), ConfigError> {
                if dev.name.is_empty() {
                    return Err(invalid(place, "name", "must not be empty"));
                }
                if let Some(clash) = device_names.clash(&dev.name) {
                    let message = format!("device `{}` {}", dev.name, clash.describe("device", ""));
                    return Err(invalid(place, "name", message));
                }
                let unit_id = dev.unit_id.unwrap_or(1);
                let link = match (&dev.host, &dev.bus) {
                    (Some(host), None) => {
                        if host.is_empty() {
                            return Err(invalid(place, "host", "must not be empty"));
                        }
                        site.links.push(Link {
                            name: dev.name.clone(),
                            transport: Transport::Tcp {
                                host: host.clone(),
                                port: dev.port.unwrap_or(502),
                            },
                        });
                        site.links.len() - 1
                    }
                    (None, Some(bus)) => {
                        if dev.port.is_some() {
                            return Err(invalid(
                                place,
                                "port",
                                "belongs to the bus, not the device",
                            ));
                        }
                        let Some(i) = self.buses.iter().position(|b| &b.name == bus) else {
                            return Err(invalid(
                                place,
                                "bus",
                                format!("no bus `{bus}` in [[modbus.buses]]"),
                            ));
                        };
                        if !(1..=247).contains(&unit_id) {
                            return Err(invalid(place, "unit_id", "an RTU slave is 1..=247"));
                        }
                        if !unit_ids_on_bus.insert((i, unit_id)) {
                            return Err(invalid(
                                place,
                                "unit_id",
                                format!("unit {unit_id} is already used on bus `{bus}`"),
                            ));
                        }
                        i
                    }
                    _ => {
                        return Err(invalid(
                            place,
                            "host",
                            "give exactly one of `host` (Modbus TCP) or `bus` (RTU)",
                        ));
                    }
                };
                let defaults = RequestLimits::default();
                let limits = RequestLimits {
                    max_registers: dev
                        .max_registers_per_request
                        .unwrap_or(defaults.max_registers),
                    max_bits: dev.max_bits_per_request.unwrap_or(defaults.max_bits),
                    max_gap: dev.max_gap.unwrap_or(defaults.max_gap),
                };
                if !(1..=125).contains(&limits.max_registers) {
                    return Err(invalid(
                        place,
                        "max_registers_per_request",
                        "must be 1..=125",
                    ));
                }
                if !(1..=2000).contains(&limits.max_bits) {
                    return Err(invalid(place, "max_bits_per_request", "must be 1..=2000"));
                }
                let hd = HealthPolicy::default();
                let health = HealthPolicy {
                    offline_after_failures: dev
                        .offline_after_failures
                        .unwrap_or(hd.offline_after_failures),
                    reconnect_min: dev
                        .reconnect_min_ms
                        .map_or(hd.reconnect_min, Duration::from_millis),
                    reconnect_max: dev
                        .reconnect_max_ms
                        .map_or(hd.reconnect_max, Duration::from_millis),
                };
                if health.offline_after_failures == 0 {
                    return Err(invalid(
                        place,
                        "offline_after_failures",
                        "must be at least 1",
                    ));
                }
                if health.reconnect_min.is_zero() || health.reconnect_max < health.reconnect_min {
                    return Err(invalid(
                        place,
                        "reconnect_max_ms",
                        "need 0 < reconnect_min_ms <= reconnect_max_ms",
                    ));
                }
                let timeout = Duration::from_millis(dev.timeout_ms.unwrap_or(1000));
                if timeout.is_zero() {
                    return Err(invalid(place, "timeout_ms", "must be at least 1"));
                }
                let device_index = site.devices.len();
                site.devices.push(Device {
                    name: dev.name.clone(),
                    link,
                    unit_id,
                    timeout,
                    limits,
                    health,
                    use_multiple_writes: dev.use_multiple_writes.unwrap_or(false),
                });
                if dev.tags.is_empty() {
                    return Err(invalid(
                        place,
                        "tags",
                        "a device needs at least one tag (in TOML or a tag file)",
                    ));
                }
                let mut tag_names = SparkplugNames::default();
                for (j, t) in dev.tags.iter().enumerate() {
                    let tag_place = format!("{place}.tags[{j}]");
                    if let Some(d) = &t.device
                        && d != &dev.name
                    {
                        let message = format!("tag listed under device `{}`", dev.name);
                        problems.add(tag_problem(t, &tag_place, "device", message));
                        continue;
                    }
                    if let Some(clash) = tag_names.clash(&t.name) {
                        let message = format!(
                            "tag `{}` {}",
                            t.name,
                            clash.describe("tag", " in this device")
                        );
                        problems.add(tag_problem(t, &tag_place, "name", message));
                        continue;
                    }
                    match resolve_tag(t, device_index, &site.scan_classes) {
                        Ok(tag) => site.tags.push(tag),
                        Err((key, message)) => {
                            problems.add(tag_problem(t, &tag_place, key, message))
                        }
                    }
                }
                Ok(())
            })();
            problems.check(checked);
        }
        if u32::try_from(site.tags.len()).is_err() {
            problems.push("modbus", "too many tags");
        }
        problems.finish(site)
    }
}

/// Device names (Sparkplug device ids) of the node, or tag names (metric names) of one
/// device, seen so far. Two may not be equal, nor equal once lower-cased: Sparkplug asks
/// that ids and metric names stay distinct for hosts and historians that ignore case.
#[derive(Default)]
struct SparkplugNames<'a> {
    lowered: HashMap<String, &'a str>,
}

/// How a name collides with one seen before.
enum Clash<'a> {
    Same,
    /// Differs only by letter case from this earlier name.
    Case(&'a str),
}

impl<'a> SparkplugNames<'a> {
    /// Records `name`; `Some` when it collides with an earlier one.
    fn clash(&mut self, name: &'a str) -> Option<Clash<'a>> {
        match self.lowered.entry(name.to_lowercase()) {
            Entry::Vacant(slot) => {
                slot.insert(name);
                None
            }
            Entry::Occupied(earlier) if *earlier.get() == name => Some(Clash::Same),
            Entry::Occupied(earlier) => Some(Clash::Case(earlier.get())),
        }
    }
}

impl Clash<'_> {
    /// `what` is the kind of name (device, tag), `scope` where it must be distinct.
    fn describe(&self, what: &str, scope: &str) -> String {
        match self {
            Clash::Same => format!("defined twice{scope}"),
            Clash::Case(earlier) => format!(
                "differs only by case from {what} `{earlier}`{scope}; Sparkplug names must stay distinct once lower-cased"
            ),
        }
    }
}

/// A problem with a tag's `key`: at its CSV row and column, or at `place.key` in TOML.
fn tag_problem(
    tag: &TagConfig,
    place: &str,
    key: &str,
    message: impl fmt::Display,
) -> ConfigProblem {
    match &tag.source {
        Some(row) => row.problem(key, message),
        None => ConfigProblem::new(format!("{place}.{key}"), message),
    }
}

fn validate_bus(index: usize, bus: &BusConfig) -> Result<Link, ConfigError> {
    let place = format!("modbus.buses[{index}]");
    if bus.name.is_empty() {
        return Err(invalid(place, "name", "must not be empty"));
    }
    let baud = bus.baud.unwrap_or(19200);
    if baud == 0 {
        return Err(invalid(place, "baud", "must be positive"));
    }
    let parity = bus.parity.unwrap_or_default();
    let data_bits = bus.data_bits.unwrap_or(8);
    let stop_bits = bus.stop_bits.unwrap_or(1);
    if !(5..=8).contains(&data_bits) {
        return Err(invalid(place, "data_bits", "must be 5..=8"));
    }
    if !(1..=2).contains(&stop_bits) {
        return Err(invalid(place, "stop_bits", "must be 1 or 2"));
    }
    let inter_frame = bus.inter_frame_delay_us.map_or_else(
        || {
            // 3.5 characters of 1 start + data + parity + stop bits; fixed 1750 us above 19200 baud.
            if baud > 19200 {
                Duration::from_micros(1750)
            } else {
                let bits = 1
                    + u64::from(data_bits)
                    + u64::from(parity != Parity::None)
                    + u64::from(stop_bits);
                Duration::from_micros(bits * 3_500_000 / u64::from(baud))
            }
        },
        Duration::from_micros,
    );
    let transport = match bus.transport {
        BusTransport::Rtu => {
            let Some(path) = bus.path.clone().filter(|p| !p.is_empty()) else {
                return Err(invalid(
                    place,
                    "path",
                    "an rtu bus needs its serial device path",
                ));
            };
            if bus.host.is_some() {
                return Err(invalid(
                    place,
                    "host",
                    "an rtu bus is a serial port; use rtu_over_tcp",
                ));
            }
            Transport::Rtu(SerialSettings {
                path,
                baud,
                parity,
                data_bits,
                stop_bits,
                inter_frame,
            })
        }
        BusTransport::RtuOverTcp => {
            let Some(host) = bus.host.clone().filter(|h| !h.is_empty()) else {
                return Err(invalid(
                    place,
                    "host",
                    "rtu_over_tcp needs the device server's host",
                ));
            };
            if bus.path.is_some() {
                return Err(invalid(place, "path", "rtu_over_tcp has no serial path"));
            }
            let Some(port) = bus.port else {
                return Err(invalid(
                    place,
                    "port",
                    "rtu_over_tcp needs the device server's port",
                ));
            };
            Transport::RtuOverTcp {
                host,
                port,
                inter_frame,
            }
        }
    };
    Ok(Link {
        name: bus.name.clone(),
        transport,
    })
}

/// Validates one tag; the error is the offending key and what is wrong with it.
fn resolve_tag(
    t: &TagConfig,
    device: usize,
    scan_classes: &[ScanClass],
) -> Result<Tag, (&'static str, String)> {
    if t.name.is_empty() {
        return Err(("name", "must not be empty".into()));
    }
    let (table, address) = match t.table {
        Some(table) => {
            let a: u16 = t.address.0.parse().map_err(|_| {
                (
                    "address",
                    format!(
                        "`{}`: with `table` the address is the 0-based protocol address 0..=65535",
                        t.address.0
                    ),
                )
            })?;
            (table, a)
        }
        None => tag::parse_notation(&t.address.0).map_err(|m| ("address", m))?,
    };
    let ty = t.data_type;
    if table.is_bits() {
        if ty != DataType::Bool {
            return Err((
                "type",
                format!("a {table} holds one bit: type must be bool"),
            ));
        }
        if t.bit.is_some() {
            return Err((
                "bit",
                format!("only for a bool in a register, not a {table}"),
            ));
        }
    } else if ty == DataType::Bool && t.bit.is_none() {
        return Err(("bit", "a bool in a register needs `bit` (0..=15)".into()));
    }
    if let Some(bit) = t.bit {
        if ty != DataType::Bool {
            return Err(("bit", "only a bool tag reads one bit".into()));
        }
        if bit > 15 {
            return Err(("bit", format!("{bit} is not 0..=15")));
        }
    }
    let span = match (ty.registers(), t.length) {
        (_, Some(0)) => return Err(("length", "must be at least 1".into())),
        (None, Some(n)) if n <= 125 => n,
        (None, Some(_)) => return Err(("length", "a string is at most 125 registers".into())),
        (None, None) => return Err(("length", "a string needs its length in registers".into())),
        (Some(_), Some(_)) => return Err(("length", "only strings have a length".into())),
        (Some(n), None) => n,
    };
    if u32::from(address) + u32::from(span) > 65536 {
        return Err(("address", "the tag runs past address 65535".into()));
    }
    if t.order.is_some() && (ty == DataType::Bool) {
        return Err(("order", "a bool has no byte order".into()));
    }
    let access = t.access.unwrap_or_default();
    if access == Access::ReadWrite && !table.is_writable() {
        return Err(("access", format!("a {table} cannot be written")));
    }
    let scan_class = match &t.scan_class {
        Some(name) => scan_classes
            .iter()
            .position(|s| &s.name == name)
            .ok_or_else(|| ("scan_class", format!("no scan class `{name}`")))?,
        None if !scan_classes.is_empty() => 0,
        None => {
            return Err((
                "scan_class",
                "no scan class given and none defined in [[modbus.scan_classes]]".into(),
            ));
        }
    };
    let numeric = !matches!(ty, DataType::Bool | DataType::String);
    let gain_offset = t.gain.is_some() || t.offset.is_some();
    let raw_range = match (t.raw_min, t.raw_max) {
        (Some(a), Some(b)) => Some((a, b)),
        (None, None) => None,
        _ => return Err(("raw_max", "give both raw_min and raw_max".into())),
    };
    let eng_range = match (t.eng_min, t.eng_max) {
        (Some(a), Some(b)) if a < b => Some((a, b)),
        (Some(_), Some(_)) => return Err(("eng_max", "must be greater than eng_min".into())),
        (None, None) => None,
        _ => return Err(("eng_max", "give both eng_min and eng_max".into())),
    };
    let scaling = match (gain_offset, raw_range, eng_range) {
        (true, Some(_), _) => {
            return Err((
                "gain",
                "give gain/offset or raw_min/raw_max, not both".into(),
            ));
        }
        (true, None, _) => {
            let s = Scaling {
                gain: t.gain.unwrap_or(1.0),
                offset: t.offset.unwrap_or(0.0),
            };
            if s.gain == 0.0 || !s.gain.is_finite() || !s.offset.is_finite() {
                return Err(("gain", "must be finite and non-zero".into()));
            }
            Some(s)
        }
        (false, Some(raw), Some(eng)) => {
            if raw.0 == raw.1 || !raw.0.is_finite() || !raw.1.is_finite() {
                return Err(("raw_max", "must differ from raw_min".into()));
            }
            Some(Scaling::from_ranges(raw, eng))
        }
        (false, Some(_), None) => {
            return Err((
                "eng_min",
                "raw_min/raw_max scale onto eng_min/eng_max".into(),
            ));
        }
        (false, None, _) => None,
    };
    if !numeric && (scaling.is_some() || eng_range.is_some()) {
        return Err(("gain", format!("a {ty} tag cannot be scaled")));
    }
    let deadband = match (t.deadband, t.deadband_percent) {
        (Some(_), Some(_)) => {
            return Err((
                "deadband",
                "give deadband or deadband_percent, not both".into(),
            ));
        }
        (Some(d), None) if d >= 0.0 && d.is_finite() => Deadband::Absolute(d),
        (None, Some(p)) if (0.0..=100.0).contains(&p) => {
            if eng_range.is_none() {
                return Err((
                    "deadband_percent",
                    "is a percent of eng_max - eng_min: give both".into(),
                ));
            }
            Deadband::Percent(p)
        }
        (Some(_), None) => return Err(("deadband", "must be >= 0".into())),
        (None, Some(_)) => return Err(("deadband_percent", "must be 0..=100".into())),
        (None, None) => Deadband::None,
    };
    if deadband != Deadband::None && !numeric {
        return Err(("deadband", format!("a {ty} tag has no deadband")));
    }
    Ok(Tag {
        name: t.name.clone(),
        device,
        scan_class,
        table,
        address,
        bit: t.bit,
        data_type: ty,
        span,
        order: t.order.unwrap_or_default(),
        scaling,
        eng_range,
        units: t.units.clone().filter(|u| !u.is_empty()),
        deadband,
        access,
        description: t.description.clone().filter(|d| !d.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Site, ConfigError> {
        ModbusConfig::from_toml(text, "test.toml")?.validate()
    }

    const BASE: &str = r#"
        [[modbus.scan_classes]]
        name = "fast"
        period_ms = 100
        [[modbus.devices]]
        name = "boiler"
        host = "127.0.0.1"
    "#;

    fn with_tag(tag: &str) -> String {
        format!("{BASE}\n[[modbus.devices.tags]]\n{tag}")
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn notation_and_table_forms_agree() {
        let a = parse(&with_tag(
            "name = \"t\"\naddress = \"40010\"\ntype = \"u16\"",
        ))
        .unwrap();
        let b = parse(&with_tag(
            "name = \"t\"\ntable = \"holding\"\naddress = 9\ntype = \"u16\"",
        ))
        .unwrap();
        assert_eq!(a.tags, b.tags);
        assert_eq!(a.tags[0].address, 9);
        assert_eq!(a.tags[0].table, Table::HoldingRegister);
    }

    #[test]
    fn errors_name_device_tag_and_key() {
        let e = err(&with_tag(
            "name = \"t\"\naddress = \"30001\"\ntype = \"u16\"\naccess = \"read_write\"",
        ));
        assert!(e.starts_with("modbus.devices[0].tags[0].access: "), "{e}");
        let e = err(&with_tag(
            "name = \"t\"\naddress = \"40001\"\ntype = \"string\"",
        ));
        assert!(e.starts_with("modbus.devices[0].tags[0].length: "), "{e}");
        let e = err(&with_tag(
            "name = \"t\"\naddress = \"40001\"\ntype = \"f32\"\nscan_class = \"slow\"",
        ));
        assert!(
            e.starts_with("modbus.devices[0].tags[0].scan_class: ") && e.contains("slow"),
            "{e}"
        );
        let e = err(&with_tag(
            "name = \"t\"\naddress = \"40001\"\ntype = \"bool\"",
        ));
        assert!(e.starts_with("modbus.devices[0].tags[0].bit: "), "{e}");
        let e = err(&with_tag(
            "name = \"t\"\naddress = \"40001\"\ntype = \"u16\"\ndeadband_percent = 5.0",
        ));
        assert!(
            e.starts_with("modbus.devices[0].tags[0].deadband_percent: "),
            "{e}"
        );
        let e = err(&with_tag(
            "name = \"t\"\naddress = \"40001\"\ntype = \"u16\"\ncolour = 1",
        ));
        assert!(
            e.starts_with(
                "test.toml:13:1: modbus.devices[0].tags[0].colour: unknown field `colour`"
            ),
            "{e}"
        );
    }

    #[test]
    fn devices_need_exactly_one_transport() {
        let e = err("[[modbus.devices]]\nname = \"x\"\n");
        assert!(e.starts_with("modbus.devices[0].host: "), "{e}");
        let e = err("[[modbus.devices]]\nname = \"x\"\nbus = \"nope\"\n");
        assert!(
            e.starts_with("modbus.devices[0].bus: ") && e.contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn bus_defaults_and_inter_frame_time() {
        let site = parse(
            r#"
            [[modbus.buses]]
            name = "line1"
            transport = "rtu"
            path = "/dev/ttyUSB0"
            baud = 9600
            parity = "even"
            [[modbus.devices]]
            name = "meter"
            bus = "line1"
            unit_id = 7
            [[modbus.devices.tags]]
            name = "t"
            address = "30001"
            type = "u16"
            scan_class = "x"
            [[modbus.scan_classes]]
            name = "x"
            period_ms = 1000
            "#,
        )
        .unwrap();
        let Transport::Rtu(s) = &site.links[0].transport else {
            panic!("not rtu")
        };
        // 11 bits per character at 9600 baud: 3.5 characters = 4010 us.
        assert_eq!(s.inter_frame, Duration::from_micros(4010));
        assert_eq!(site.devices[0].unit_id, 7);
        let e = err(r#"
            [[modbus.buses]]
            name = "line1"
            transport = "rtu"
            path = "/dev/ttyUSB0"
            [[modbus.scan_classes]]
            name = "x"
            period_ms = 1000
            [[modbus.devices]]
            name = "a"
            bus = "line1"
            unit_id = 7
            [[modbus.devices.tags]]
            name = "t"
            address = "30001"
            type = "u16"
            [[modbus.devices]]
            name = "b"
            bus = "line1"
            unit_id = 7
            "#);
        assert!(
            e.starts_with("modbus.devices[1].unit_id: unit 7 is already used"),
            "{e}"
        );
    }

    #[test]
    fn csv_tag_names_differing_only_by_case_are_refused_by_file_and_line() {
        let mut config = ModbusConfig::from_toml(
            &with_tag("name = \"Level\"\naddress = \"40001\"\ntype = \"u16\""),
            "test.toml",
        )
        .unwrap();
        let row = TagConfig {
            device: Some("boiler".into()),
            name: "level".into(),
            address: AddressField("40002".into()),
            data_type: DataType::U16,
            source: Some(RowSource {
                file: "tags.csv".into(),
                line: 3,
                columns: ["device", "name", "address", "type"]
                    .map(String::from)
                    .into(),
            }),
            ..TagConfig::default()
        };
        config.attach_rows(vec![row]).unwrap();
        let e = config.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("tags.csv:3:2: name: tag `level` differs only by case from tag `Level`"),
            "{e}"
        );
    }

    #[test]
    fn every_device_and_tag_is_checked() {
        let e = parse(
            r#"
            [[modbus.scan_classes]]
            name = "fast"
            period_ms = 100
            [[modbus.scan_classes]]
            name = "fast"
            period_ms = 100
            [[modbus.buses]]
            name = "line1"
            transport = "rtu"
            [[modbus.devices]]
            name = "a"
            host = "127.0.0.1"
            [[modbus.devices.tags]]
            name = "ok"
            address = "40001"
            type = "u16"
            [[modbus.devices.tags]]
            name = "w"
            address = "30001"
            type = "u16"
            access = "read_write"
            [[modbus.devices.tags]]
            name = "s"
            address = "40002"
            type = "string"
            [[modbus.devices]]
            name = "b"
            host = "127.0.0.1"
            unit_id = 3
            max_registers_per_request = 500
            "#,
        )
        .unwrap_err();
        assert_eq!(
            e.keys(),
            [
                "modbus.scan_classes[1].name",
                "modbus.buses[0].path",
                "modbus.devices[0].tags[1].access",
                "modbus.devices[0].tags[2].length",
                "modbus.devices[1].max_registers_per_request",
            ],
            "{e}"
        );
    }

    #[test]
    fn other_sections_are_ignored() {
        let text = format!(
            "[mqtt]\nhost = \"x\"\n{}",
            with_tag("name = \"t\"\naddress = 1\ntable = \"coil\"\ntype = \"bool\"")
        );
        assert_eq!(parse(&text).unwrap().devices.len(), 1);
    }
}
