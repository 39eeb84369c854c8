//! The editable parts of the configuration as forms: each [`Section`] lists the keys of
//! one TOML table (or of each entry of an array of tables) with their kind, reads them
//! into [`FieldView`]s and writes a submitted form back into the draft with `toml_edit`,
//! touching only the keys whose value changed (comments and layout elsewhere are kept).
//! Validation problems are placed next to their field by key path.

use std::collections::HashMap;

use infra::ConfigError;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

/// How a key is typed into the form and written into TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A whole number.
    Int,
    /// A number; written as an integer when it is one.
    Number,
    Bool,
    Choice(&'static [&'static str]),
}

/// One key of a section.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub key: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Shown only while the choice field named first has the value named second (the
    /// page's script hides it otherwise; without the script every field shows).
    pub only_when: Option<(&'static str, &'static str)>,
}

const fn f(key: &'static str, kind: Kind, help: &'static str) -> Field {
    Field {
        key,
        kind,
        help,
        only_when: None,
    }
}

impl Field {
    const fn when(self, choice: &'static str, value: &'static str) -> Field {
        Field {
            only_when: Some((choice, value)),
            ..self
        }
    }
}

/// Where a section's keys live in the TOML document.
#[derive(Debug, Clone, Copy)]
pub enum Place {
    /// One table, e.g. `[mqtt]`.
    Table(&'static [&'static str]),
    /// Each entry of an array of tables, e.g. `[[modbus.devices]]`.
    Array(&'static [&'static str]),
}

/// An editable part of the configuration.
#[derive(Debug)]
pub struct Section {
    /// In URLs: `/edit/{id}`.
    pub id: &'static str,
    pub title: &'static str,
    pub place: Place,
    pub fields: &'static [Field],
    /// Where the list of entries is shown (back link).
    pub back: &'static str,
}

use Kind::{Bool, Choice, Int, Number, Text};

pub const DEVICE: Section = Section {
    id: "device",
    title: "Modbus device",
    place: Place::Array(&["modbus", "devices"]),
    back: "/devices",
    fields: &[
        f("name", Text, "the Sparkplug device id"),
        f(
            "host",
            Text,
            "Modbus TCP: host name or IP (leave empty for a bus device)",
        ),
        f("port", Int, "Modbus TCP port (default 502)"),
        f("bus", Text, "RTU or RTU over TCP: the name of a bus below"),
        f("unit_id", Int, "unit (slave) id"),
        f("timeout_ms", Int, "response timeout per request"),
        f("max_registers_per_request", Int, "at most 125"),
        f("max_bits_per_request", Int, "at most 2000"),
        f("max_gap", Int, "largest hole read over to join two tags"),
        f(
            "offline_after_failures",
            Int,
            "consecutive failed scans before offline",
        ),
        f("reconnect_min_ms", Int, "first retry delay when offline"),
        f("reconnect_max_ms", Int, "longest retry delay"),
        f(
            "use_multiple_writes",
            Bool,
            "write with 15/16 instead of 05/06",
        ),
    ],
};

pub const BUS: Section = Section {
    id: "bus",
    title: "RTU bus",
    place: Place::Array(&["modbus", "buses"]),
    back: "/devices",
    fields: &[
        f("name", Text, "devices attach to the bus by this name"),
        f(
            "transport",
            Choice(&["rtu", "rtu_over_tcp"]),
            "serial line or a serial device server",
        ),
        f("path", Text, "serial device, e.g. /dev/ttyUSB0").when("transport", "rtu"),
        f("baud", Int, "").when("transport", "rtu"),
        f("parity", Choice(&["", "none", "even", "odd"]), "").when("transport", "rtu"),
        f("data_bits", Int, "5 to 8").when("transport", "rtu"),
        f("stop_bits", Int, "1 or 2").when("transport", "rtu"),
        f("host", Text, "the device server").when("transport", "rtu_over_tcp"),
        f("port", Int, "the device server's TCP port").when("transport", "rtu_over_tcp"),
        f("inter_frame_delay_us", Int, "silence before each request"),
    ],
};

pub const SCAN_CLASS: Section = Section {
    id: "scan_class",
    title: "Scan class",
    place: Place::Array(&["modbus", "scan_classes"]),
    back: "/devices",
    fields: &[
        f("name", Text, "tags name their scan class"),
        f("period_ms", Number, "0.1 ms to one day"),
    ],
};

pub const SPARKPLUG: Section = Section {
    id: "sparkplug",
    title: "Sparkplug",
    place: Place::Table(&["sparkplug"]),
    back: "/settings",
    fields: &[
        f("group_id", Text, ""),
        f("edge_node_id", Text, ""),
        f("primary_host_id", Text, "births wait for this host's STATE"),
        f("rebirth_debounce_ms", Int, ""),
        f("state_file", Text, "where bdSeq is kept"),
        f("metrics_period_ms", Int, ""),
        f("hardware", Text, ""),
        f("scan_rate_min_ms", Int, ""),
        f("scan_rate_max_ms", Int, ""),
    ],
};

pub const MQTT: Section = Section {
    id: "mqtt",
    title: "MQTT",
    place: Place::Table(&["mqtt"]),
    back: "/settings",
    fields: &[
        f("client_id", Text, "default: group_id:edge_node_id"),
        f("keep_alive_s", Int, ""),
        f("username", Text, "for servers without their own"),
        f("password_file", Text, ""),
        f("startup_delay_max_ms", Int, ""),
        f("backoff_min_ms", Int, ""),
        f("backoff_max_ms", Int, ""),
        f("connect_timeout_ms", Int, ""),
        f("max_packet_size", Int, ""),
    ],
};

pub const SERVER: Section = Section {
    id: "server",
    title: "MQTT server",
    place: Place::Array(&["mqtt", "servers"]),
    back: "/settings",
    fields: &[
        f("url", Text, "mqtt://host:port or mqtts://host:port"),
        f("host", Text, "instead of url"),
        f("port", Int, ""),
        f("tls", Bool, "on with mqtts:// or a ca_file"),
        f(
            "ca_file",
            Text,
            "PEM file; upload it with the link below the form",
        ),
        f("server_name", Text, "name to verify, default the host"),
        f("client_cert_file", Text, "PEM"),
        f("client_key_file", Text, "PEM"),
        f("username", Text, "this server's own"),
        f("password_file", Text, "this server's own"),
    ],
};

pub const STORE: Section = Section {
    id: "store",
    title: "Store and forward",
    place: Place::Table(&["store"]),
    back: "/settings",
    fields: &[
        f("path", Text, "the SQLite file"),
        f("max_bytes", Int, ""),
        f("max_age_s", Int, ""),
        f("overflow", Choice(&["", "drop_oldest", "stop_storing"]), ""),
        f("batch_size", Int, ""),
        f("replay_bytes_per_s", Int, ""),
        f("synchronous", Text, ""),
        f("sent_window_samples", Int, ""),
        f("persist_sent_window", Bool, ""),
    ],
};

pub const ECONOMY: Section = Section {
    id: "economy",
    title: "Link economy",
    place: Place::Table(&["economy"]),
    back: "/settings",
    fields: &[
        f(
            "metric_timestamps",
            Choice(&["", "always", "when_different"]),
            "when_different: metrics dated as their payload carry no timestamp",
        ),
        f(
            "narrow_types",
            Bool,
            "scaled 16-bit registers born Float, not Double",
        ),
        f(
            "report_window_ms",
            Int,
            "changes held per device and sent together; 0: at once",
        ),
        f(
            "compression",
            Choice(&["", "none", "deflate", "gzip"]),
            "Sparkplug payload compression",
        ),
        f(
            "compression_min_bytes",
            Int,
            "smaller payloads go out as they are",
        ),
        f(
            "daily_budget_bytes",
            Int,
            "past it in a UTC day, historical replay waits; live values go on",
        ),
    ],
};

pub const TAG: Section = Section {
    id: "tag",
    title: "Tag",
    place: Place::Array(&[]),
    back: "/tags",
    fields: &[
        f("device", Text, ""),
        f("name", Text, "the Sparkplug metric name"),
        f(
            "table",
            Choice(&[
                "",
                "coil",
                "discrete_input",
                "input_register",
                "holding_register",
            ]),
            "with a table, address is 0-based",
        ),
        f(
            "address",
            Text,
            "0-based, or 1-based notation such as 40001",
        ),
        f("bit", Int, "a bit of a register"),
        f(
            "type",
            Choice(&[
                "bool", "i16", "u16", "i32", "u32", "i64", "u64", "f32", "f64", "string",
            ]),
            "",
        ),
        f("length", Int, "registers of a string"),
        f(
            "order",
            Choice(&["", "ABCD", "BADC", "CDAB", "DCBA"]),
            "byte order",
        ),
        f("scan_class", Text, ""),
        f("access", Choice(&["", "read", "read_write"]), ""),
        f("units", Text, ""),
        f("gain", Number, ""),
        f("offset", Number, ""),
        f("raw_min", Number, ""),
        f("raw_max", Number, ""),
        f("eng_min", Number, ""),
        f("eng_max", Number, ""),
        f("deadband", Number, ""),
        f("deadband_percent", Number, ""),
        f("description", Text, ""),
    ],
};

/// Every section edited through `/edit/{id}` (tags have their own page).
pub const SECTIONS: &[&Section] = &[
    &DEVICE,
    &BUS,
    &SCAN_CLASS,
    &SPARKPLUG,
    &MQTT,
    &SERVER,
    &STORE,
    &ECONOMY,
];

pub fn section(id: &str) -> Option<&'static Section> {
    SECTIONS.iter().copied().find(|s| s.id == id)
}

/// One field as the form shows it.
#[derive(Debug, Clone)]
pub struct FieldView {
    pub key: &'static str,
    pub help: &'static str,
    /// `text`, `number`, `checkbox` or `select`.
    pub input: &'static str,
    pub value: String,
    pub choices: &'static [&'static str],
    pub error: Option<String>,
    /// [`Field::only_when`]: the choice field and its value, empty when always shown.
    pub when_key: &'static str,
    pub when_value: &'static str,
}

impl FieldView {
    pub fn checked(&self) -> bool {
        self.value == "true"
    }

    /// The select's current choice is `choice`.
    pub fn is(&self, choice: &str) -> bool {
        self.value == choice
    }
}

/// The form's values as submitted (a checkbox absent means false).
pub type Submitted = HashMap<String, String>;

/// A form's typed values, by key (`None`: the field was empty).
pub type Values = Vec<(&'static str, Option<toml::Value>)>;

/// Problems of the typed text, by key.
pub type FieldErrors = Vec<(&'static str, String)>;

impl Section {
    /// The key path of entry `index` (`modbus.devices[2]`), or of the table.
    pub fn key_path(&self, index: Option<usize>) -> String {
        match (self.place, index) {
            (Place::Table(path), _) => path.join("."),
            (Place::Array(path), Some(i)) => format!("{}[{i}]", path.join(".")),
            (Place::Array(path), None) => path.join("."),
        }
    }

    /// The fields filled from `values` (key to text).
    pub fn view(&self, values: &HashMap<String, String>) -> Vec<FieldView> {
        self.fields
            .iter()
            .map(|field| FieldView {
                key: field.key,
                help: field.help,
                input: match field.kind {
                    Text => "text",
                    Int | Number => "number",
                    Bool => "checkbox",
                    Choice(_) => "select",
                },
                value: values.get(field.key).cloned().unwrap_or_default(),
                choices: match field.kind {
                    Choice(c) => c,
                    _ => &[],
                },
                error: None,
                when_key: field.only_when.map_or("", |(key, _)| key),
                when_value: field.only_when.map_or("", |(_, value)| value),
            })
            .collect()
    }

    /// The submitted values of this section's keys, typed: `None` for an empty field,
    /// an error naming the field for text that is not of the key's kind.
    pub fn parse(&self, form: &Submitted) -> Result<Values, FieldErrors> {
        let mut values = Vec::new();
        let mut errors = Vec::new();
        for field in self.fields {
            let text = form.get(field.key).map(|s| s.trim()).unwrap_or("");
            let value = match field.kind {
                Bool => Ok((text == "true" || text == "on").then_some(toml::Value::Boolean(true))),
                _ if text.is_empty() => Ok(None),
                Text | Choice(_) => Ok(Some(toml::Value::String(text.to_owned()))),
                Int => text
                    .parse::<i64>()
                    .map(|i| Some(toml::Value::Integer(i)))
                    .map_err(|_| "must be a whole number".to_owned()),
                Number => match text.parse::<i64>() {
                    Ok(i) => Ok(Some(toml::Value::Integer(i))),
                    Err(_) => text
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .map(|v| Some(toml::Value::Float(v)))
                        .ok_or_else(|| "must be a number".to_owned()),
                },
            };
            match value {
                Ok(v) => values.push((field.key, v)),
                Err(e) => errors.push((field.key, e)),
            }
        }
        if errors.is_empty() {
            Ok(values)
        } else {
            Err(errors)
        }
    }

    /// The entries of this section in `doc` (one for a table, possibly absent), each as
    /// key to text.
    pub fn entries(&self, doc: &DocumentMut) -> Vec<HashMap<String, String>> {
        match self.place {
            Place::Table(path) => match lookup(doc.as_table(), path).and_then(Item::as_table) {
                Some(t) => vec![texts(t)],
                None => vec![HashMap::new()],
            },
            Place::Array(path) => lookup(doc.as_table(), path)
                .and_then(Item::as_array_of_tables)
                .map(|a| a.iter().map(texts).collect())
                .unwrap_or_default(),
        }
    }

    /// Writes `values` into entry `index` (a new entry when `None`) of `doc`; a key is
    /// rewritten only when its value changed, and removed when empty.
    pub fn write(
        &self,
        doc: &mut DocumentMut,
        index: Option<usize>,
        values: &[(&'static str, Option<toml::Value>)],
    ) -> Result<usize, String> {
        let (table, index) = match self.place {
            Place::Table(path) => (table_at(doc.as_table_mut(), path)?, 0),
            Place::Array(path) => {
                let (parent, last) = split(path)?;
                let parent = table_at(doc.as_table_mut(), parent)?;
                let array = parent
                    .entry(last)
                    .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
                    .as_array_of_tables_mut()
                    .ok_or_else(|| format!("{} is not an array of tables", path.join(".")))?;
                let index = match index {
                    Some(i) if i < array.len() => i,
                    Some(i) => return Err(format!("no entry {i} in {}", path.join("."))),
                    None => {
                        array.push(Table::new());
                        array.len() - 1
                    }
                };
                let table = array
                    .get_mut(index)
                    .ok_or_else(|| format!("no entry {index}"))?;
                (table, index)
            }
        };
        for (key, value) in values {
            let current = table.get(key).and_then(Item::as_value).map(value_text);
            match value {
                None => {
                    table.remove(key);
                }
                Some(v) if current.as_deref() != Some(toml_text(v).as_str()) => {
                    table.insert(key, Item::Value(edit_value(v)));
                }
                Some(_) => {}
            }
        }
        Ok(index)
    }

    /// Removes entry `index` of an array section.
    pub fn remove(&self, doc: &mut DocumentMut, index: usize) -> Result<(), String> {
        let Place::Array(path) = self.place else {
            return Err(format!("[{}] cannot be removed here", self.key_path(None)));
        };
        let array = lookup_mut(doc.as_table_mut(), path)
            .and_then(Item::as_array_of_tables_mut)
            .filter(|a| index < a.len())
            .ok_or_else(|| format!("no entry {index} in {}", path.join(".")))?;
        array.remove(index);
        Ok(())
    }

    /// The problems of entry `index` by field, and the others (for the page's top).
    pub fn place_problems(
        &self,
        error: &ConfigError,
        index: Option<usize>,
        fields: &mut [FieldView],
    ) -> Vec<String> {
        let prefix = format!("{}.", self.key_path(index));
        let mut other = Vec::new();
        for problem in error.problems() {
            let field = problem
                .key
                .strip_prefix(&prefix)
                .and_then(|k| fields.iter_mut().find(|f| f.key == k));
            match field {
                Some(field) => {
                    let line = problem.message.clone();
                    field.error = Some(match field.error.take() {
                        Some(e) => format!("{e}; {line}"),
                        None => line,
                    });
                }
                None => other.push(problem.to_string()),
            }
        }
        other
    }
}

fn split(path: &'static [&'static str]) -> Result<(&'static [&'static str], &'static str), String> {
    match path.split_last() {
        Some((last, parent)) => Ok((parent, last)),
        None => Err("empty path".to_owned()),
    }
}

fn lookup<'a>(table: &'a Table, path: &[&str]) -> Option<&'a Item> {
    let (first, rest) = path.split_first()?;
    let item = table.get(first)?;
    if rest.is_empty() {
        return Some(item);
    }
    lookup(item.as_table()?, rest)
}

fn lookup_mut<'a>(table: &'a mut Table, path: &[&str]) -> Option<&'a mut Item> {
    let (first, rest) = path.split_first()?;
    let item = table.get_mut(first)?;
    if rest.is_empty() {
        return Some(item);
    }
    lookup_mut(item.as_table_mut()?, rest)
}

/// The table at `path`, created (as a `[header]` table) where absent.
fn table_at<'a>(table: &'a mut Table, path: &[&str]) -> Result<&'a mut Table, String> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(table);
    };
    let item = table.entry(first).or_insert_with(toml_edit::table);
    let inner = item
        .as_table_mut()
        .ok_or_else(|| format!("`{first}` is not a table"))?;
    table_at(inner, rest)
}

/// Each plain value of a table as text.
fn texts(table: &Table) -> HashMap<String, String> {
    table
        .iter()
        .filter_map(|(k, item)| Some((k.to_owned(), value_text(item.as_value()?))))
        .collect()
}

/// A TOML value as the form shows it.
fn value_text(v: &toml_edit::Value) -> String {
    match v {
        toml_edit::Value::String(s) => s.value().clone(),
        toml_edit::Value::Integer(i) => i.value().to_string(),
        toml_edit::Value::Float(f) => f.value().to_string(),
        toml_edit::Value::Boolean(b) => b.value().to_string(),
        other => other.to_string().trim().to_owned(),
    }
}

fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn edit_value(v: &toml::Value) -> toml_edit::Value {
    match v {
        toml::Value::String(s) => s.as_str().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        other => other.to_string().as_str().into(),
    }
}

/// A form's values as a TOML table (for tags, which live in CSV files).
pub fn to_table(values: &[(&'static str, Option<toml::Value>)]) -> toml::Table {
    values
        .iter()
        .filter_map(|(k, v)| Some(((*k).to_owned(), v.clone()?)))
        .collect()
}

/// A serializable value (a tag) as key to text, for its form.
pub fn texts_of<T: serde::Serialize>(value: &T) -> HashMap<String, String> {
    match toml::Value::try_from(value) {
        Ok(toml::Value::Table(t)) => t.iter().map(|(k, v)| (k.clone(), toml_text(v))).collect(),
        _ => HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# site notes
[sparkplug]
group_id = "g" # the plant
edge_node_id = "n"

[[modbus.devices]]
name = "a"   # first
host = "10.0.0.1"
unit_id = 1
"#;

    fn form(pairs: &[(&str, &str)]) -> Submitted {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_edit_keeps_comments_and_untouched_keys() {
        let mut doc: DocumentMut = TEXT.parse().unwrap();
        let entries = DEVICE.entries(&doc);
        assert_eq!(entries[0]["host"], "10.0.0.1");
        let values = DEVICE
            .parse(&form(&[
                ("name", "a"),
                ("host", "10.0.0.1"),
                ("unit_id", "7"),
            ]))
            .unwrap();
        DEVICE.write(&mut doc, Some(0), &values).unwrap();
        let text = doc.to_string();
        assert!(text.contains("# site notes"), "{text}");
        assert!(text.contains("name = \"a\"   # first"), "{text}");
        assert!(text.contains("unit_id = 7"), "{text}");
        let added = DEVICE
            .parse(&form(&[("name", "b"), ("bus", "rs485")]))
            .unwrap();
        assert_eq!(DEVICE.write(&mut doc, None, &added).unwrap(), 1);
        DEVICE.remove(&mut doc, 0).unwrap();
        let again: DocumentMut = doc.to_string().parse().unwrap();
        let entries = DEVICE.entries(&again);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["bus"], "rs485");
        assert!(doc.to_string().contains("group_id = \"g\" # the plant"));
    }

    #[test]
    fn bad_numbers_are_named_by_field() {
        let e = DEVICE
            .parse(&form(&[("name", "a"), ("port", "five")]))
            .unwrap_err();
        assert_eq!(e, [("port", "must be a whole number".to_owned())]);
    }

    #[test]
    fn problems_go_next_to_their_field() {
        let error = ConfigError::new("modbus.devices[1].unit_id", "must be 1..=247").join(
            ConfigError::new("mqtt.servers", "at least one server is required"),
        );
        let mut fields = DEVICE.view(&HashMap::new());
        let other = DEVICE.place_problems(&error, Some(1), &mut fields);
        let unit = fields.iter().find(|f| f.key == "unit_id").unwrap();
        assert_eq!(unit.error.as_deref(), Some("must be 1..=247"));
        assert_eq!(other, ["mqtt.servers: at least one server is required"]);
    }
}
