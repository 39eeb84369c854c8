//! Each user's draft of the configuration, and the tag list as one piece: read from the
//! draft (inline tags and tag files) and written back as one CSV tag file in the draft.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use infra::{ConfigError, Problems};
use toml_edit::DocumentMut;

use crate::configure::{Configurator, Draft};
use crate::modbus::config::TagConfig;
use crate::modbus::{ModbusConfig, csv};

/// The tag file the UI writes when the configuration names none.
pub const DEFAULT_TAG_FILE: &str = "tags.csv";

/// The drafts of the users who changed something and have not applied it yet.
#[derive(Default)]
pub struct Drafts {
    by_user: Mutex<HashMap<String, Draft>>,
}

impl Drafts {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Draft>> {
        self.by_user.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user's draft, or the running configuration when they have none.
    pub fn get(&self, user: &str, configurator: &Configurator) -> Draft {
        self.map()
            .get(user)
            .cloned()
            .unwrap_or_else(|| configurator.running())
    }

    pub fn has(&self, user: &str) -> bool {
        self.map().contains_key(user)
    }

    pub fn put(&self, user: &str, draft: Draft) {
        self.map().insert(user.to_owned(), draft);
    }

    pub fn discard(&self, user: &str) {
        self.map().remove(user);
    }
}

/// A file the draft names: its own copy, else the one on disk (relative to `base`).
pub fn read_named(draft: &Draft, base: &Path, path: &Path) -> std::io::Result<Vec<u8>> {
    match draft.files.get(path) {
        Some(bytes) => Ok(bytes.clone()),
        None => std::fs::read(base.join(path)),
    }
}

/// The draft's `[modbus]` section with the rows of its tag files attached.
pub fn modbus_of(draft: &Draft, base: &Path) -> Result<ModbusConfig, ConfigError> {
    let mut modbus = ModbusConfig::from_toml(&draft.main, "the configuration")?;
    let mut problems = Problems::new();
    for (i, file) in modbus.tag_files.clone().iter().enumerate() {
        let rows = read_named(draft, base, file)
            .map_err(|e| {
                let key = format!("modbus.tag_files[{i}]");
                ConfigError::new(key, format!("cannot read {}: {e}", file.display()))
            })
            .and_then(|bytes| csv::import_tags(bytes.as_slice(), &file.display().to_string()));
        if let Some(rows) = problems.check(rows) {
            problems.check(modbus.attach_rows(rows));
        }
    }
    problems.finish(modbus)
}

/// Every tag of the draft, each naming its device, in device order.
pub fn tag_rows(draft: &Draft, base: &Path) -> Result<Vec<TagConfig>, ConfigError> {
    let modbus = modbus_of(draft, base)?;
    Ok(modbus
        .devices
        .iter()
        .flat_map(|d| {
            d.tags.iter().map(|t| TagConfig {
                device: Some(d.name.clone()),
                source: None,
                ..t.clone()
            })
        })
        .collect())
}

/// The CSV text of `rows`.
pub fn csv_text(rows: &[TagConfig]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    csv::write_rows(rows, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Makes `csv` the draft's whole tag list: inline tags leave the TOML, `modbus.tag_files`
/// names one file (the first it named, or [`DEFAULT_TAG_FILE`]) and the draft holds its text.
pub fn set_tag_file(draft: &mut Draft, csv: Vec<u8>) -> Result<PathBuf, String> {
    let mut doc: DocumentMut = draft.main.parse().map_err(|e| format!("{e}"))?;
    let modbus = doc
        .entry("modbus")
        .or_insert_with(toml_edit::table)
        .as_table_mut()
        .ok_or("`modbus` is not a table")?;
    let file = modbus
        .get("tag_files")
        .and_then(|i| i.as_array())
        .and_then(|a| a.get(0))
        .and_then(|v| v.as_str())
        .unwrap_or(DEFAULT_TAG_FILE)
        .to_owned();
    let current: Vec<String> = modbus
        .get("tag_files")
        .and_then(|i| i.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if current != [file.clone()] {
        let mut list = toml_edit::Array::new();
        list.push(file.as_str());
        modbus.insert("tag_files", toml_edit::value(list));
    }
    if let Some(devices) = modbus
        .get_mut("devices")
        .and_then(|i| i.as_array_of_tables_mut())
    {
        for device in devices.iter_mut() {
            device.remove("tags");
        }
    }
    draft.main = doc.to_string();
    let path = PathBuf::from(file);
    draft.files.insert(path.clone(), csv);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = r#"[modbus]

[[modbus.devices]]
name = "boiler"
host = "127.0.0.1"

[[modbus.devices.tags]]
name = "temp"
address = "40001"
type = "f32"
"#;

    #[test]
    fn the_tag_list_moves_to_one_csv_file_and_reads_back_the_same() {
        let mut draft = Draft {
            main: MAIN.to_owned(),
            ..Draft::default()
        };
        let rows = tag_rows(&draft, Path::new("/nonexistent")).unwrap();
        assert_eq!(rows.len(), 1);
        let text = csv_text(&rows).unwrap();
        let path = set_tag_file(&mut draft, text.clone()).unwrap();
        assert_eq!(path, Path::new(DEFAULT_TAG_FILE));
        assert!(
            !draft.main.contains("[[modbus.devices.tags]]"),
            "{}",
            draft.main
        );
        assert!(
            draft.main.contains("tag_files = [\"tags.csv\"]"),
            "{}",
            draft.main
        );
        let again = tag_rows(&draft, Path::new("/nonexistent")).unwrap();
        assert_eq!(again, rows);
        assert_eq!(
            csv_text(&again).unwrap(),
            text,
            "export imports back identical"
        );
    }
}
