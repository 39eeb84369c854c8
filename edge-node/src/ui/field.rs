//! Reads against the field before anything is saved: "test connection" of a device form
//! (connect, read one register) or of an MQTT server form (one CONNECT), the register
//! probe (N registers or bits with every interpretation) and "read now" of one tag. The
//! target is built from the form or the draft through the configuration's own checks.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use toml_edit::DocumentMut;
use web::Caller;
use web::shell::Shell;

use super::UiState;
use super::draft::modbus_of;
use super::edit::{Outcome, render_form, submitted_index};
use super::form::{self, Submitted};
use crate::modbus::config::{DeviceConfig, ScanClassConfig, TagConfig};
use crate::modbus::probe::{self, Interpretation, Read, Target};
use crate::modbus::{ModbusConfig, Table};

/// The probe's scan class name, for the one-device configuration a target is built from.
const PROBE_CLASS: &str = "probe";

/// The target of `device` (its tags replaced by `tag`, or a placeholder), checked with
/// the draft's buses as the configuration would check it.
fn target_of(
    device: &DeviceConfig,
    modbus: &ModbusConfig,
    tag: Option<TagConfig>,
) -> Result<(Target, crate::modbus::Site), infra::ConfigError> {
    let tag = tag.unwrap_or_else(|| TagConfig {
        name: "probe".into(),
        table: Some(Table::HoldingRegister),
        address: crate::modbus::config::AddressField("0".into()),
        ..TagConfig::default()
    });
    let one = ModbusConfig {
        scan_classes: vec![ScanClassConfig {
            name: PROBE_CLASS.into(),
            period_ms: 1000.0,
        }],
        buses: modbus.buses.clone(),
        devices: vec![DeviceConfig {
            tags: vec![TagConfig {
                scan_class: Some(PROBE_CLASS.into()),
                device: None,
                source: None,
                ..tag
            }],
            ..device.clone()
        }],
        tag_files: Vec::new(),
    };
    let site = one.validate()?;
    let target = Target::of_device(&site, 0)
        .ok_or_else(|| infra::ConfigError::new("modbus.devices", "no device"))?;
    Ok((target, site))
}

/// The device a device form describes.
fn device_from_form(submitted: &Submitted) -> Result<DeviceConfig, Vec<(&'static str, String)>> {
    let values = form::DEVICE.parse(submitted)?;
    toml::Value::Table(form::to_table(&values))
        .try_into::<DeviceConfig>()
        .map_err(|e| vec![("name", e.to_string())])
}

pub async fn test_device(
    State(state): State<UiState>,
    caller: Caller,
    Form(submitted): Form<Submitted>,
) -> Response {
    let index = submitted_index(&submitted).unwrap_or(None);
    let render = |status, field_errors, test| {
        let outcome = Outcome {
            status,
            field_errors,
            error: None,
            test,
        };
        render_form(&state, &caller, &form::DEVICE, &submitted, index, outcome)
    };
    let device = match device_from_form(&submitted) {
        Ok(d) => d,
        Err(errors) => return render(StatusCode::UNPROCESSABLE_ENTITY, errors, None),
    };
    let modbus = modbus_of(&state.draft(&caller), &state.base).unwrap_or_default();
    let target = match target_of(&device, &modbus, None) {
        Ok((t, _)) => t,
        Err(e) => {
            // The one-device check names `modbus.devices[0]`: show it at the form's fields.
            let errors = e
                .problems()
                .iter()
                .filter_map(|p| {
                    let key = p
                        .key
                        .trim_start_matches('.')
                        .strip_prefix("modbus.devices[0].")?;
                    let field = form::DEVICE.fields.iter().find(|f| f.key == key)?;
                    Some((field.key, p.message.clone()))
                })
                .collect::<Vec<_>>();
            let text = e.to_string();
            return render(StatusCode::UNPROCESSABLE_ENTITY, errors, Some(Err(text)));
        }
    };
    let address = submitted
        .get("test_address")
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or(0);
    let outcome = probe::test_connection(&target, address)
        .await
        .map_err(|e| format!("{}: {e}", target_text(&target)));
    render(StatusCode::OK, Vec::new(), Some(outcome))
}

fn target_text(target: &Target) -> String {
    use crate::modbus::config::Transport;
    match &target.transport {
        Transport::Tcp { host, port } => format!("{host}:{port} unit {}", target.unit_id),
        Transport::RtuOverTcp { host, port, .. } => {
            format!("RTU over {host}:{port} unit {}", target.unit_id)
        }
        Transport::Rtu(s) => format!("{} unit {}", s.path, target.unit_id),
    }
}

pub async fn test_server(
    State(state): State<UiState>,
    caller: Caller,
    Form(submitted): Form<Submitted>,
) -> Response {
    let index = submitted_index(&submitted).unwrap_or(None);
    let render =
        |status, field_errors, error: Option<(&infra::ConfigError, Option<usize>)>, test| {
            let outcome = Outcome {
                status,
                field_errors,
                error,
                test,
            };
            render_form(&state, &caller, &form::SERVER, &submitted, index, outcome)
        };
    let values = match form::SERVER.parse(&submitted) {
        Ok(v) => v,
        Err(errors) => return render(StatusCode::UNPROCESSABLE_ENTITY, errors, None, None),
    };
    let mut draft = state.draft(&caller);
    let mut doc: DocumentMut = draft.main.parse().unwrap_or_default();
    let at = match form::SERVER.write(&mut doc, index, &values) {
        Ok(i) => i,
        Err(e) => {
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                vec![("url", e)],
                None,
                None,
            );
        }
    };
    draft.main = doc.to_string();
    let config = match state.configurator.validate(&draft) {
        Ok(c) => c,
        Err(e) => {
            let text = "the draft must pass its checks before a test".to_owned();
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                Vec::new(),
                Some((&e, Some(at))),
                Some(Err(text)),
            );
        }
    };
    let outcome = crate::configure::test_server(&config, at)
        .await
        .map(|()| "connected, logged in and disconnected".to_owned())
        .map_err(|e| e.to_string());
    render(StatusCode::OK, Vec::new(), None, Some(outcome))
}

#[derive(Template)]
#[template(path = "probe.html")]
struct ProbePage {
    shell: Shell,
    devices: Vec<String>,
    query: ProbeQuery,
    error: Option<String>,
    words: Vec<u16>,
    bits: Vec<bool>,
    readings: Vec<Interpretation>,
    text: Vec<(&'static str, String)>,
}

impl ProbePage {
    fn address_of(&self, offset: &usize) -> u32 {
        u32::from(self.query.address.unwrap_or(0)) + *offset as u32
    }

    fn start_address(&self) -> u16 {
        self.query.address.unwrap_or(0)
    }

    fn table_is(&self, t: &str) -> bool {
        self.query.table == t
    }

    fn device_is(&self, d: &str) -> bool {
        self.query.device == d
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProbeQuery {
    #[serde(default)]
    device: String,
    #[serde(default)]
    table: String,
    address: Option<u16>,
    count: Option<u16>,
}

fn parse_table(text: &str) -> Option<Table> {
    toml::Value::String(text.to_owned()).try_into().ok()
}

pub async fn probe_page(State(state): State<UiState>, caller: Caller) -> Response {
    let devices = device_names(&state, &caller);
    let page = ProbePage {
        shell: state.shell(&caller, "Probe", "/probe"),
        devices,
        query: ProbeQuery {
            table: "holding_register".into(),
            address: Some(0),
            count: Some(4),
            ..ProbeQuery::default()
        },
        error: None,
        words: Vec::new(),
        bits: Vec::new(),
        readings: Vec::new(),
        text: Vec::new(),
    };
    web::shell::html(StatusCode::OK, &page)
}

fn device_names(state: &UiState, caller: &Caller) -> Vec<String> {
    let draft = state.draft(caller);
    ModbusConfig::from_toml(&draft.main, "the draft")
        .map(|m| m.devices.into_iter().map(|d| d.name).collect())
        .unwrap_or_default()
}

pub async fn probe(
    State(state): State<UiState>,
    caller: Caller,
    Form(query): Form<ProbeQuery>,
) -> Response {
    let mut page = ProbePage {
        shell: state.shell(&caller, "Probe", "/probe"),
        devices: device_names(&state, &caller),
        query: query.clone(),
        error: None,
        words: Vec::new(),
        bits: Vec::new(),
        readings: Vec::new(),
        text: Vec::new(),
    };
    let result = run_probe(&state, &caller, &query).await;
    let status = match result {
        Ok(Read::Words(words)) => {
            page.readings = probe::interpretations(&words);
            page.text = probe::as_text(&words).to_vec();
            page.words = words;
            StatusCode::OK
        }
        Ok(Read::Bits(bits)) => {
            page.bits = bits;
            StatusCode::OK
        }
        Err(e) => {
            page.error = Some(e);
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    web::shell::html(status, &page)
}

async fn run_probe(state: &UiState, caller: &Caller, query: &ProbeQuery) -> Result<Read, String> {
    let table =
        parse_table(&query.table).ok_or_else(|| format!("unknown table {:?}", query.table))?;
    let address = query.address.ok_or("give the 0-based address")?;
    let count = query.count.ok_or("give how many to read")?;
    let modbus = modbus_of(&state.draft(caller), &state.base)
        .or_else(|_| ModbusConfig::from_toml(&state.draft(caller).main, "the draft"))
        .map_err(|e| e.to_string())?;
    let device = modbus
        .devices
        .iter()
        .find(|d| d.name == query.device)
        .ok_or_else(|| format!("no device {:?} in the draft", query.device))?;
    let (target, _) = target_of(device, &modbus, None).map_err(|e| e.to_string())?;
    probe::read(&target, table, address, count)
        .await
        .map_err(|e| format!("{}: {e}", target_text(&target)))
}

#[derive(Deserialize)]
pub struct ReadNow {
    device: String,
    tag: String,
}

/// "Read now": one tag read and decoded as its configuration says, shown on the tags page.
pub async fn read_now(
    State(state): State<UiState>,
    caller: Caller,
    Form(which): Form<ReadNow>,
) -> Response {
    let outcome = read_tag(&state, &caller, &which).await;
    super::tags::render(
        &state,
        &caller,
        Some(which.device.clone()),
        None,
        Some((which.tag, outcome)),
        None,
    )
}

async fn read_tag(state: &UiState, caller: &Caller, which: &ReadNow) -> Result<String, String> {
    let modbus = modbus_of(&state.draft(caller), &state.base).map_err(|e| e.to_string())?;
    let device = modbus
        .devices
        .iter()
        .find(|d| d.name == which.device)
        .ok_or_else(|| format!("no device {:?}", which.device))?;
    let tag = device
        .tags
        .iter()
        .find(|t| t.name == which.tag)
        .ok_or_else(|| format!("no tag {:?} on {}", which.tag, which.device))?;
    let (target, site) =
        target_of(device, &modbus, Some(tag.clone())).map_err(|e| e.to_string())?;
    let tag = &site.tags[0];
    let count = if tag.table.is_bits() {
        1
    } else {
        u16::try_from(tag.end() + 1 - u32::from(tag.address)).unwrap_or(1)
    };
    let read = probe::read(&target, tag.table, tag.address, count)
        .await
        .map_err(|e| format!("{}: {e}", target_text(&target)))?;
    let value = match read {
        Read::Bits(bits) => crate::modbus::Value::Bool(bits.first().copied().unwrap_or(false)),
        Read::Words(words) => tag.decode_registers(&words).map_err(|e| e.to_string())?,
    };
    Ok(value.to_string())
}
