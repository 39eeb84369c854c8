//! Devices, buses, scan classes and the MQTT, Sparkplug and store settings: the lists
//! (from the caller's draft) and the form of each entry. A save writes the entry into the
//! draft with `toml_edit` and checks the draft as `check-config` would; a problem of one
//! of the form's fields is shown next to it and the draft is not changed, other problems
//! of the draft (a new device without tags yet) are listed and do not block the save.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use toml_edit::DocumentMut;
use web::shell::Shell;
use web::{Caller, Role};

use super::UiState;
use super::form::{self, FieldView, Section, Submitted};
use crate::configure::Draft;

/// An entry of a list page: its index and the texts of its keys.
pub struct Entry {
    pub index: usize,
    pub values: HashMap<String, String>,
}

impl Entry {
    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map_or("", String::as_str)
    }
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    shell: Shell,
    admin: bool,
    devices: Vec<Entry>,
    buses: Vec<Entry>,
    scan_classes: Vec<Entry>,
    notice: Option<String>,
    changed: bool,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    shell: Shell,
    admin: bool,
    sparkplug: Vec<FieldView>,
    mqtt: Vec<FieldView>,
    servers: Vec<Entry>,
    store: Option<Vec<FieldView>>,
    economy: Option<Vec<FieldView>>,
    files: Vec<String>,
    notice: Option<String>,
    changed: bool,
}

#[derive(Template)]
#[template(path = "edit.html")]
pub struct EditPage {
    pub shell: Shell,
    pub section: &'static Section,
    pub index: Option<usize>,
    pub fields: Vec<FieldView>,
    /// Problems of the draft not about this form's fields.
    pub problems: Vec<String>,
    /// The outcome of "test connection".
    pub test: Option<Result<String, String>>,
}

impl EditPage {
    fn index_text(&self) -> String {
        self.index.map(|i| i.to_string()).unwrap_or_default()
    }

    fn place(&self) -> String {
        self.section.key_path(self.index)
    }

    fn testable(&self) -> bool {
        matches!(self.section.id, "device" | "server")
    }
}

#[derive(Deserialize)]
pub struct Notice {
    saved: Option<String>,
}

/// The entries of `section` in `draft`.
fn entries(section: &Section, draft: &Draft) -> Vec<Entry> {
    let doc: DocumentMut = draft.main.parse().unwrap_or_default();
    section
        .entries(&doc)
        .into_iter()
        .enumerate()
        .map(|(index, values)| Entry { index, values })
        .collect()
}

pub async fn devices_page(
    State(state): State<UiState>,
    caller: Caller,
    Query(notice): Query<Notice>,
) -> Response {
    let draft = state.draft(&caller);
    let page = DevicesPage {
        shell: state.shell(&caller, "Devices", "/devices"),
        admin: caller.has_role(Role::Admin),
        devices: entries(&form::DEVICE, &draft),
        buses: entries(&form::BUS, &draft),
        scan_classes: entries(&form::SCAN_CLASS, &draft),
        notice: notice.saved,
        changed: state.drafts.has(&caller.user),
    };
    web::shell::html(StatusCode::OK, &page)
}

pub async fn settings_page(
    State(state): State<UiState>,
    caller: Caller,
    Query(notice): Query<Notice>,
) -> Response {
    let draft = state.draft(&caller);
    let doc: DocumentMut = draft.main.parse().unwrap_or_default();
    let table = |s: &Section| s.view(&s.entries(&doc).pop().unwrap_or_default());
    let has_store = doc.get("store").is_some();
    let page = SettingsPage {
        shell: state.shell(&caller, "MQTT & store", "/settings"),
        admin: caller.has_role(Role::Admin),
        sparkplug: table(&form::SPARKPLUG),
        mqtt: table(&form::MQTT),
        servers: entries(&form::SERVER, &draft),
        store: has_store.then(|| table(&form::STORE)),
        economy: doc.get("economy").is_some().then(|| table(&form::ECONOMY)),
        files: draft
            .files
            .keys()
            .map(|p| p.display().to_string())
            .collect(),
        notice: notice.saved,
        changed: state.drafts.has(&caller.user),
    };
    web::shell::html(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct Which {
    index: Option<usize>,
}

pub async fn form_page(
    State(state): State<UiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(which): Query<Which>,
) -> Response {
    let Some(section) = form::section(&id) else {
        return state.message(
            &caller,
            StatusCode::NOT_FOUND,
            "Not found",
            format!("No section {id:?}."),
        );
    };
    let draft = state.draft(&caller);
    let doc: DocumentMut = draft.main.parse().unwrap_or_default();
    let all = section.entries(&doc);
    let values = match (section.place, which.index) {
        (form::Place::Table(_), _) => all.into_iter().next().unwrap_or_default(),
        (form::Place::Array(_), Some(i)) => match all.into_iter().nth(i) {
            Some(v) => v,
            None => {
                let text = format!("There is no entry {i} of {}.", section.key_path(None));
                return state.message(&caller, StatusCode::NOT_FOUND, "Not found", text);
            }
        },
        (form::Place::Array(_), None) => HashMap::new(),
    };
    let index = match section.place {
        form::Place::Table(_) => None,
        form::Place::Array(_) => which.index,
    };
    let page = EditPage {
        shell: state.shell(&caller, section.title, section.back),
        section,
        index,
        fields: section.view(&values),
        problems: Vec::new(),
        test: None,
    };
    web::shell::html(StatusCode::OK, &page)
}

/// The `index` field of a submitted form: empty for a new entry.
pub fn submitted_index(form: &Submitted) -> Result<Option<usize>, String> {
    match form.get("index").map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(i) => i.parse().map(Some).map_err(|_| format!("bad index {i:?}")),
    }
}

/// What the form shows besides the typed values.
pub struct Outcome<'a> {
    pub status: StatusCode,
    /// Problems of the typed text, by field.
    pub field_errors: Vec<(&'static str, String)>,
    /// The draft's problems, and the entry (its index in the draft) they are placed at.
    pub error: Option<(&'a infra::ConfigError, Option<usize>)>,
    pub test: Option<Result<String, String>>,
}

/// The form again with what was typed (entry `index`, `None` for a new one), its
/// problems and a test outcome.
pub fn render_form(
    state: &UiState,
    caller: &Caller,
    section: &'static Section,
    form: &Submitted,
    index: Option<usize>,
    outcome: Outcome<'_>,
) -> Response {
    let Outcome {
        status,
        field_errors,
        error,
        test,
    } = outcome;
    let mut fields = section.view(form);
    for (key, message) in field_errors {
        if let Some(f) = fields.iter_mut().find(|f| f.key == key) {
            f.error = Some(message);
        }
    }
    let problems = error.map_or_else(Vec::new, |(e, at)| {
        section.place_problems(e, at, &mut fields)
    });
    let page = EditPage {
        shell: state.shell(caller, section.title, section.back),
        section,
        index,
        fields,
        problems,
        test,
    };
    web::shell::html(status, &page)
}

pub async fn save(
    State(state): State<UiState>,
    caller: Caller,
    Path(id): Path<String>,
    Form(submitted): Form<Submitted>,
) -> Response {
    let Some(section) = form::section(&id) else {
        return state.message(
            &caller,
            StatusCode::NOT_FOUND,
            "Not found",
            format!("No section {id:?}."),
        );
    };
    let index = match submitted_index(&submitted) {
        Ok(i) => i,
        Err(e) => return state.message(&caller, StatusCode::BAD_REQUEST, "Bad request", e),
    };
    let bad = |field_errors| {
        let outcome = Outcome {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            field_errors,
            error: None,
            test: None,
        };
        render_form(&state, &caller, section, &submitted, index, outcome)
    };
    let values = match section.parse(&submitted) {
        Ok(v) => v,
        Err(errors) => return bad(errors),
    };
    let mut draft = state.draft(&caller);
    let mut doc: DocumentMut = match draft.main.parse() {
        Ok(d) => d,
        Err(e) => {
            return bad(vec![(
                section.fields[0].key,
                format!("the draft is not TOML: {e}"),
            )]);
        }
    };
    let written = match section.write(&mut doc, index, &values) {
        Ok(i) => i,
        Err(e) => return bad(vec![(section.fields[0].key, e)]),
    };
    draft.main = doc.to_string();
    let at = match section.place {
        form::Place::Array(_) => Some(written),
        form::Place::Table(_) => None,
    };
    if let Err(e) = state.configurator.validate(&draft) {
        let mut fields = section.view(&submitted);
        section.place_problems(&e, at, &mut fields);
        if fields.iter().any(|f| f.error.is_some()) {
            let outcome = Outcome {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                field_errors: Vec::new(),
                error: Some((&e, at)),
                test: None,
            };
            return render_form(&state, &caller, section, &submitted, index, outcome);
        }
    }
    state.drafts.put(&caller.user, draft);
    let name = submitted
        .get("name")
        .cloned()
        .unwrap_or_else(|| section.title.to_owned());
    Redirect::to(&format!("{}?saved={}", section.back, encode(&name))).into_response()
}

pub async fn remove(
    State(state): State<UiState>,
    caller: Caller,
    Path(id): Path<String>,
    Form(submitted): Form<Submitted>,
) -> Response {
    let Some(section) = form::section(&id) else {
        return state.message(
            &caller,
            StatusCode::NOT_FOUND,
            "Not found",
            format!("No section {id:?}."),
        );
    };
    let Ok(Some(index)) = submitted_index(&submitted) else {
        return state.message(
            &caller,
            StatusCode::BAD_REQUEST,
            "Bad request",
            "no index".into(),
        );
    };
    let mut draft = state.draft(&caller);
    let mut doc: DocumentMut = draft.main.parse().unwrap_or_default();
    if let Err(e) = section.remove(&mut doc, index) {
        return state.message(&caller, StatusCode::NOT_FOUND, "Not found", e);
    }
    draft.main = doc.to_string();
    state.drafts.put(&caller.user, draft);
    Redirect::to(section.back).into_response()
}

#[derive(Deserialize)]
pub struct Upload {
    path: String,
    content: String,
}

/// A TLS file (PEM text) into the draft, at the path the configuration names.
pub async fn upload(
    State(state): State<UiState>,
    caller: Caller,
    Form(upload): Form<Upload>,
) -> Response {
    let path = upload.path.trim();
    if path.is_empty() || path.split('/').any(|p| p == "..") {
        let text = "Name the file as the configuration does, without `..`.".to_owned();
        return state.message(&caller, StatusCode::BAD_REQUEST, "Bad file name", text);
    }
    if !upload.content.contains("-----BEGIN ") {
        let text = format!("{path}: not PEM text (no -----BEGIN line).");
        return state.message(&caller, StatusCode::BAD_REQUEST, "Not a PEM file", text);
    }
    let mut draft = state.draft(&caller);
    draft
        .files
        .insert(std::path::PathBuf::from(path), upload.content.into_bytes());
    state.drafts.put(&caller.user, draft);
    Redirect::to(&format!("/settings?saved={}", encode(path))).into_response()
}

/// Percent-encodes a query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
