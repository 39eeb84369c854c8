//! Tags: the table of the draft's tags with a form per tag, "read now", CSV export, and
//! CSV import with a dry run: every bad line with its line and column, or the tags the
//! import adds, changes and removes, before anything goes into the draft. An import (or
//! a tag edit) makes the CSV the draft's whole tag list, in one tag file.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use web::shell::Shell;
use web::{Caller, Role};

use super::UiState;
use super::draft::{csv_text, set_tag_file, tag_rows};
use super::edit::encode;
use super::form::{self, FieldView, Submitted};
use crate::configure::Draft;
use crate::modbus::config::TagConfig;
use crate::modbus::csv;

/// The name problems of an imported sheet are reported under.
const IMPORT_NAME: &str = "import.csv";

/// One bad line of an imported sheet.
pub struct BadLine {
    pub line: u64,
    pub column: u64,
    pub key: String,
    pub message: String,
}

/// What an import would do to one device's tags.
#[derive(Default)]
pub struct DeviceChanges {
    pub device: String,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// A dry run's outcome.
pub struct DryRun {
    pub csv: String,
    pub bad: Vec<BadLine>,
    /// Problems of the draft with the sheet in it that are not on a line of the sheet.
    pub other: Vec<String>,
    pub changes: Vec<DeviceChanges>,
}

impl DryRun {
    fn clean(&self) -> bool {
        self.bad.is_empty() && self.other.is_empty()
    }

    fn unchanged(&self) -> bool {
        self.changes.is_empty()
    }
}

#[derive(Template)]
#[template(path = "tags.html")]
struct TagsPage {
    shell: Shell,
    admin: bool,
    device: Option<String>,
    devices: Vec<String>,
    rows: Vec<TagConfig>,
    error: Option<String>,
    dry_run: Option<DryRun>,
    read: Option<(String, Result<String, String>)>,
    notice: Option<String>,
    /// The user's draft differs from the running configuration.
    changed: bool,
}

impl TagsPage {
    fn text(&self, v: &Option<String>) -> String {
        v.clone().unwrap_or_default()
    }

    fn table(&self, t: &TagConfig) -> String {
        t.table.map(|t| t.name().to_owned()).unwrap_or_default()
    }

    fn order(&self, t: &TagConfig) -> String {
        t.order.map(|o| o.to_string()).unwrap_or_default()
    }

    fn read_of(&self, t: &TagConfig) -> Option<&Result<String, String>> {
        match &self.read {
            Some((name, outcome)) if *name == t.name => Some(outcome),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
pub struct Filter {
    device: Option<String>,
    imported: Option<String>,
}

pub async fn page(
    State(state): State<UiState>,
    caller: Caller,
    Query(filter): Query<Filter>,
) -> Response {
    let notice = filter
        .imported
        .map(|n| format!("Imported {n} tags into your draft."));
    render(&state, &caller, filter.device, None, None, notice)
}

/// The tags page of `device` (all when `None`), with a dry run or a read outcome.
pub fn render(
    state: &UiState,
    caller: &Caller,
    device: Option<String>,
    dry_run: Option<DryRun>,
    read: Option<(String, Result<String, String>)>,
    notice: Option<String>,
) -> Response {
    let draft = state.draft(caller);
    let (rows, error) = match tag_rows(&draft, &state.base) {
        Ok(rows) => (rows, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let mut devices: Vec<String> = crate::modbus::ModbusConfig::from_toml(&draft.main, "draft")
        .map(|m| m.devices.into_iter().map(|d| d.name).collect())
        .unwrap_or_default();
    devices.dedup();
    let device = device.filter(|d| !d.is_empty());
    let rows = rows
        .into_iter()
        .filter(|r| device.is_none() || r.device == device)
        .collect();
    let status = match &dry_run {
        Some(d) if !d.clean() => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    let page = TagsPage {
        shell: state.shell(caller, "Tags", "/tags"),
        admin: caller.has_role(Role::Admin),
        device,
        devices,
        rows,
        error,
        dry_run,
        read,
        notice,
        changed: state.drafts.has(&caller.user),
    };
    web::shell::html(status, &page)
}

/// The draft's tags as CSV, every device's, in the form import reads back.
pub async fn export(State(state): State<UiState>, caller: Caller) -> Response {
    let draft = state.draft(&caller);
    let text = tag_rows(&draft, &state.base)
        .map_err(|e| e.to_string())
        .and_then(|rows| csv_text(&rows));
    match text {
        Ok(bytes) => {
            let mut r = bytes.into_response();
            let h = r.headers_mut();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            h.insert(
                CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"tags.csv\""),
            );
            r
        }
        Err(e) => state.message(&caller, StatusCode::UNPROCESSABLE_ENTITY, "No export", e),
    }
}

#[derive(Deserialize)]
pub struct Import {
    csv: String,
    /// `dry_run` (the default) or `apply`.
    #[serde(default)]
    mode: String,
}

/// What importing `sheet` does to `draft`: the draft it makes, or the dry run that
/// stops it.
fn dry_run(state: &UiState, draft: &Draft, sheet: &str) -> (DryRun, Option<Draft>) {
    let mut run = DryRun {
        csv: sheet.to_owned(),
        bad: Vec::new(),
        other: Vec::new(),
        changes: Vec::new(),
    };
    let bad_line = |p: &infra::ConfigProblem| BadLine {
        line: p.position.map_or(0, |p| p.line),
        column: p.position.map_or(0, |p| p.column),
        key: p.key.clone(),
        message: p.message.clone(),
    };
    if let Err(e) = csv::import_tags(sheet.as_bytes(), IMPORT_NAME) {
        run.bad = e.problems().iter().map(bad_line).collect();
        return (run, None);
    }
    let mut candidate = draft.clone();
    let file = match set_tag_file(&mut candidate, sheet.as_bytes().to_vec()) {
        Ok(f) => f,
        Err(e) => {
            run.other.push(e);
            return (run, None);
        }
    };
    if let Err(e) = state.configurator.validate(&candidate) {
        for p in e.problems() {
            if names_file(p, &file) && p.position.is_some() {
                run.bad.push(bad_line(p));
            } else if p.key.starts_with("modbus.devices") && p.key.ends_with(".tags") {
                // A device left without tags: the sheet's doing.
                run.other.push(p.to_string());
            }
        }
    }
    let before = tag_rows(draft, &state.base).unwrap_or_default();
    let after = tag_rows(&candidate, &state.base).unwrap_or_default();
    run.changes = changes(&before, &after);
    (run, Some(candidate))
}

/// Tags added, changed and removed per device, by name.
fn changes(before: &[TagConfig], after: &[TagConfig]) -> Vec<DeviceChanges> {
    let mut devices: Vec<&str> = Vec::new();
    for t in before.iter().chain(after) {
        let d = t.device.as_deref().unwrap_or("");
        if !devices.contains(&d) {
            devices.push(d);
        }
    }
    let find = |rows: &'_ [TagConfig], d: &str, n: &str| -> Option<TagConfig> {
        rows.iter()
            .find(|t| t.device.as_deref().unwrap_or("") == d && t.name == n)
            .cloned()
    };
    devices
        .into_iter()
        .filter_map(|d| {
            let mut c = DeviceChanges {
                device: d.to_owned(),
                ..DeviceChanges::default()
            };
            for t in after
                .iter()
                .filter(|t| t.device.as_deref().unwrap_or("") == d)
            {
                match find(before, d, &t.name) {
                    None => c.added.push(t.name.clone()),
                    Some(b) if b != *t => c.changed.push(t.name.clone()),
                    Some(_) => {}
                }
            }
            for b in before
                .iter()
                .filter(|t| t.device.as_deref().unwrap_or("") == d)
            {
                if find(after, d, &b.name).is_none() {
                    c.removed.push(b.name.clone());
                }
            }
            (!(c.added.is_empty() && c.changed.is_empty() && c.removed.is_empty())).then_some(c)
        })
        .collect()
}

pub async fn import(
    State(state): State<UiState>,
    caller: Caller,
    Form(import): Form<Import>,
) -> Response {
    let draft = state.draft(&caller);
    let (run, candidate) = dry_run(&state, &draft, &import.csv);
    match candidate {
        Some(candidate) if import.mode == "apply" && run.clean() => {
            let count = tag_rows(&candidate, &state.base).map_or(0, |r| r.len());
            state.drafts.put(&caller.user, candidate);
            Redirect::to(&format!("/tags?imported={count}")).into_response()
        }
        _ => render(&state, &caller, None, Some(run), None, None),
    }
}

#[derive(Template)]
#[template(path = "tag.html")]
struct TagForm {
    shell: Shell,
    device: String,
    original: String,
    fields: Vec<FieldView>,
    problems: Vec<String>,
}

#[derive(Deserialize)]
pub struct WhichTag {
    device: Option<String>,
    name: Option<String>,
}

pub async fn form_page(
    State(state): State<UiState>,
    caller: Caller,
    Query(which): Query<WhichTag>,
) -> Response {
    let rows = tag_rows(&state.draft(&caller), &state.base).unwrap_or_default();
    let device = which.device.unwrap_or_default();
    let original = which.name.unwrap_or_default();
    let mut values = rows
        .iter()
        .find(|t| t.device.as_deref() == Some(device.as_str()) && t.name == original)
        .map(form::texts_of)
        .unwrap_or_default();
    values
        .entry("device".into())
        .or_insert_with(|| device.clone());
    values.entry("type".into()).or_insert_with(|| "u16".into());
    let page = TagForm {
        shell: state.shell(&caller, "Tag", "/tags"),
        device,
        original,
        fields: form::TAG.view(&values),
        problems: Vec::new(),
    };
    web::shell::html(StatusCode::OK, &page)
}

/// Whether `problem` is in the tag file `file` (relative to the configuration; problems
/// name it as resolved against the configuration's directory).
fn names_file(problem: &infra::ConfigProblem, file: &std::path::Path) -> bool {
    problem
        .file
        .as_deref()
        .is_some_and(|f| std::path::Path::new(f).ends_with(file))
}

pub async fn save(
    State(state): State<UiState>,
    caller: Caller,
    Form(submitted): Form<Submitted>,
) -> Response {
    let device = submitted
        .get("original_device")
        .cloned()
        .unwrap_or_default();
    let original = submitted.get("original").cloned().unwrap_or_default();
    let render = |fields: Vec<FieldView>, problems: Vec<String>| {
        let page = TagForm {
            shell: state.shell(&caller, "Tag", "/tags"),
            device: device.clone(),
            original: original.clone(),
            fields,
            problems,
        };
        web::shell::html(StatusCode::UNPROCESSABLE_ENTITY, &page)
    };
    let mut fields = form::TAG.view(&submitted);
    let values = match form::TAG.parse(&submitted) {
        Ok(v) => v,
        Err(errors) => {
            for (key, e) in errors {
                if let Some(f) = fields.iter_mut().find(|f| f.key == key) {
                    f.error = Some(e);
                }
            }
            return render(fields, Vec::new());
        }
    };
    let tag: TagConfig = match toml::Value::Table(form::to_table(&values)).try_into() {
        Ok(t) => t,
        Err(e) => return render(fields, vec![e.to_string()]),
    };
    let mut draft = state.draft(&caller);
    let mut rows = match tag_rows(&draft, &state.base) {
        Ok(r) => r,
        Err(e) => return render(fields, vec![e.to_string()]),
    };
    let at = rows.iter().position(|t| {
        t.device.as_deref() == Some(device.as_str()) && t.name == original && !original.is_empty()
    });
    let line = match at {
        Some(i) => {
            rows[i] = tag;
            i
        }
        None => {
            rows.push(tag);
            rows.len() - 1
        }
    };
    let sheet = match csv_text(&rows) {
        Ok(s) => s,
        Err(e) => return render(fields, vec![e]),
    };
    let file = match set_tag_file(&mut draft, sheet) {
        Ok(f) => f,
        Err(e) => return render(fields, vec![e]),
    };
    if let Err(e) = state.configurator.validate(&draft) {
        // The row is line `line + 2` of the tag file (after the header).
        let here = line as u64 + 2;
        let mut placed = false;
        for p in e.problems() {
            let on_row = names_file(p, &file) && p.position.is_some_and(|pos| pos.line == here);
            if let Some(f) = fields.iter_mut().find(|f| on_row && f.key == p.key) {
                f.error = Some(p.message.clone());
                placed = true;
            }
        }
        if placed {
            return render(fields, Vec::new());
        }
    }
    state.drafts.put(&caller.user, draft);
    let device = submitted.get("device").cloned().unwrap_or_default();
    Redirect::to(&format!("/tags?device={}", encode(&device))).into_response()
}

pub async fn remove(
    State(state): State<UiState>,
    caller: Caller,
    Form(which): Form<HashMap<String, String>>,
) -> Response {
    let device = which.get("device").cloned().unwrap_or_default();
    let name = which.get("name").cloned().unwrap_or_default();
    let mut draft = state.draft(&caller);
    let result = tag_rows(&draft, &state.base)
        .map_err(|e| e.to_string())
        .and_then(|mut rows| {
            let before = rows.len();
            rows.retain(|t| !(t.device.as_deref() == Some(device.as_str()) && t.name == name));
            if rows.len() == before {
                return Err(format!("no tag {name:?} on {device:?}"));
            }
            csv_text(&rows)
        })
        .and_then(|sheet| set_tag_file(&mut draft, sheet));
    match result {
        Ok(_) => {
            state.drafts.put(&caller.user, draft);
            Redirect::to(&format!("/tags?device={}", encode(&device))).into_response()
        }
        Err(e) => state.message(&caller, StatusCode::NOT_FOUND, "Not found", e),
    }
}
