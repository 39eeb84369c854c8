//! The configuration lifecycle as the web UI uses it: the running files, validation of a
//! draft as `check-config` would, the diff against the running configuration, apply,
//! rollback to the last known good files, and the audit trail of both.
//!
//! This version writes the files (atomically, other files first, the main file last) and
//! keeps the last known good and the audit trail in memory; the running node takes an
//! applied configuration at its next start.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use infra::{ConfigError, Problems};
use serde::Serialize;

use crate::config::Config;
use crate::modbus::config::{DeviceConfig, TagConfig};
use crate::modbus::{ModbusConfig, csv};

/// The configuration as files: the main TOML text plus any other file it names that the
/// draft changes or adds (tag CSV files, uploaded TLS PEM files), keyed by the path as
/// written in the TOML, relative paths relative to the main file's directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    pub main: String,
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

/// One configuration's lifecycle: running, last known good, validate, diff, apply,
/// rollback. Cheap to clone.
#[derive(Clone)]
pub struct Configurator {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_good: Option<Draft>,
    audit: Vec<AuditEntry>,
}

/// What applying a draft would change against the running configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConfigDiff {
    /// Top-level tables (and `modbus.scan_classes`, `modbus.buses`) whose content changed.
    pub tables: Vec<String>,
    pub devices_added: Vec<String>,
    pub devices_changed: Vec<String>,
    pub devices_removed: Vec<String>,
    /// Tag changes of each device that has any.
    pub tags: Vec<TagChanges>,
    /// Other files the draft writes (tag lists, TLS files).
    pub files: Vec<PathBuf>,
}

/// The tags of one device added, changed and removed, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TagChanges {
    pub device: String,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
            && self.devices_added.is_empty()
            && self.devices_changed.is_empty()
            && self.devices_removed.is_empty()
            && self.tags.is_empty()
            && self.files.is_empty()
    }
}

impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no change");
        }
        let mut parts = Vec::new();
        let list = |what: &str, names: &[String]| format!("{what} {}", names.join(", "));
        if !self.tables.is_empty() {
            parts.push(list("changed", &self.tables));
        }
        for (what, names) in [
            ("devices added:", &self.devices_added),
            ("devices changed:", &self.devices_changed),
            ("devices removed:", &self.devices_removed),
        ] {
            if !names.is_empty() {
                parts.push(list(what, names));
            }
        }
        for t in &self.tags {
            parts.push(format!(
                "tags of {}: {} added, {} changed, {} removed",
                t.device,
                t.added.len(),
                t.changed.len(),
                t.removed.len()
            ));
        }
        if !self.files.is_empty() {
            let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
            parts.push(list("files", &files));
        }
        f.write_str(&parts.join("; "))
    }
}

/// What an apply or rollback did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplyReport {
    pub diff: ConfigDiff,
    /// What the node did with it.
    pub actions: Vec<String>,
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.diff, self.actions.join("; "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(ConfigError),
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("there is no last known good configuration to roll back to")]
    NothingToRollBack,
}

impl Serialize for ApplyError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// One apply or rollback.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub at_ms: u64,
    pub who: String,
    /// `apply` or `rollback`.
    pub action: String,
    pub diff: ConfigDiff,
    /// `ok`, or why it failed.
    pub outcome: String,
}

impl fmt::Display for AuditEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} by {}: {} ({})",
            self.at_ms, self.action, self.who, self.diff, self.outcome
        )
    }
}

/// Audit entries kept; older ones are dropped.
const AUDIT_KEPT: usize = 1000;

impl Configurator {
    /// The lifecycle of the configuration in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Configurator {
        Configurator {
            inner: Arc::new(Inner {
                path: path.into(),
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn base(&self) -> PathBuf {
        match self.inner.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// The running configuration as it is on disk now (main text; other files it names
    /// read on demand).
    pub fn running(&self) -> Draft {
        Draft {
            main: std::fs::read_to_string(&self.inner.path).unwrap_or_default(),
            files: BTreeMap::new(),
        }
    }

    /// Is there a last known good configuration to roll back to?
    pub fn can_roll_back(&self) -> bool {
        self.state().last_good.is_some()
    }

    /// A file the draft names: the draft's own copy, else the one on disk.
    fn read(&self, draft: &Draft, path: &Path) -> std::io::Result<Vec<u8>> {
        match draft.files.get(path) {
            Some(bytes) => Ok(bytes.clone()),
            None => std::fs::read(self.base().join(path)),
        }
    }

    /// The `[modbus]` section with the tag files' rows attached.
    fn modbus(&self, draft: &Draft) -> Result<ModbusConfig, ConfigError> {
        let mut modbus = ModbusConfig::parse(&draft.main)?;
        let mut problems = Problems::new();
        for (i, file) in modbus.tag_files.clone().iter().enumerate() {
            let rows = self
                .read(draft, file)
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

    /// Checks a draft as `check-config` would, reading named files from the draft first
    /// and from disk otherwise.
    pub fn validate(&self, draft: &Draft) -> Result<Config, ConfigError> {
        let shown = self.inner.path.display().to_string();
        Config::check(&draft.main, &self.base(), || {
            let modbus = self.modbus(draft)?;
            let site = modbus.validate()?;
            Ok((modbus, site))
        })
        .map_err(|e| e.in_file(&shown))
    }

    /// What applying `draft` would change against the running configuration.
    pub fn diff(&self, draft: &Draft) -> ConfigDiff {
        let running = self.running();
        let mut diff = ConfigDiff::default();
        let before = toml::from_str::<toml::Table>(&running.main).unwrap_or_default();
        let after = toml::from_str::<toml::Table>(&draft.main).unwrap_or_default();
        let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for key in keys.into_iter().filter(|k| *k != "modbus") {
            if before.get(key) != after.get(key) {
                diff.tables.push(key.clone());
            }
        }
        let section = |t: &toml::Table, k: &str| {
            t.get("modbus")
                .and_then(|m| m.as_table())
                .and_then(|m| m.get(k))
                .cloned()
        };
        for k in ["scan_classes", "buses"] {
            if section(&before, k) != section(&after, k) {
                diff.tables.push(format!("modbus.{k}"));
            }
        }
        let old = self.modbus(&running).unwrap_or_default();
        let new = self.modbus(draft).unwrap_or_default();
        device_changes(&old.devices, &new.devices, &mut diff);
        diff.files = draft.files.keys().cloned().collect();
        diff
    }

    /// Validates, writes (other files first, the main file last, each atomically), keeps
    /// the previous files as last known good and audits. A draft that fails validation
    /// changes nothing.
    pub async fn apply(&self, draft: Draft, who: &str) -> Result<ApplyReport, ApplyError> {
        self.apply_as(draft, who, "apply")
    }

    /// Applies the last known good configuration, audited the same way.
    pub async fn rollback(&self, who: &str) -> Result<ApplyReport, ApplyError> {
        let Some(good) = self.state().last_good.clone() else {
            return Err(ApplyError::NothingToRollBack);
        };
        self.apply_as(good, who, "rollback")
    }

    fn apply_as(&self, draft: Draft, who: &str, action: &str) -> Result<ApplyReport, ApplyError> {
        let diff = self.diff(&draft);
        let result = self.write(&draft);
        let outcome = match &result {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        let mut state = self.state();
        state.audit.push(AuditEntry {
            at_ms: infra::clock::now_ms(),
            who: who.to_owned(),
            action: action.to_owned(),
            diff: diff.clone(),
            outcome,
        });
        if state.audit.len() > AUDIT_KEPT {
            state.audit.remove(0);
        }
        drop(state);
        result.map(|()| ApplyReport {
            diff,
            actions: vec!["files written; the node runs them from its next start".to_owned()],
        })
    }

    fn write(&self, draft: &Draft) -> Result<(), ApplyError> {
        self.validate(draft).map_err(ApplyError::Invalid)?;
        let base = self.base();
        let mut previous = self.running();
        for path in draft.files.keys() {
            if let Ok(bytes) = std::fs::read(base.join(path)) {
                previous.files.insert(path.clone(), bytes);
            }
        }
        for (path, bytes) in &draft.files {
            write_atomically(&base.join(path), bytes)?;
        }
        write_atomically(&self.inner.path, draft.main.as_bytes())?;
        self.state().last_good = Some(previous);
        Ok(())
    }

    /// The audit trail of applies and rollbacks, newest first.
    pub fn audit(&self, limit: usize) -> Vec<AuditEntry> {
        self.state()
            .audit
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Writes a file through a temporary one beside it and a rename, so readers see the old
/// content or the new, never half.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ApplyError> {
    let fail = |source| ApplyError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_os_string());
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(&name);
    tmp_name.push(".new");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Devices and their tags added, changed and removed, by name.
fn device_changes(old: &[DeviceConfig], new: &[DeviceConfig], diff: &mut ConfigDiff) {
    let settings = |d: &DeviceConfig| DeviceConfig {
        tags: Vec::new(),
        ..d.clone()
    };
    for d in new {
        match old.iter().find(|o| o.name == d.name) {
            None => diff.devices_added.push(d.name.clone()),
            Some(o) if settings(o) != settings(d) => diff.devices_changed.push(d.name.clone()),
            Some(_) => {}
        }
        let before = old
            .iter()
            .find(|o| o.name == d.name)
            .map_or(&[][..], |o| &o.tags);
        let changes = tag_changes(&d.name, before, &d.tags);
        if !(changes.added.is_empty() && changes.changed.is_empty() && changes.removed.is_empty()) {
            diff.tags.push(changes);
        }
    }
    for o in old {
        if !new.iter().any(|d| d.name == o.name) {
            diff.devices_removed.push(o.name.clone());
            let changes = tag_changes(&o.name, &o.tags, &[]);
            if !changes.removed.is_empty() {
                diff.tags.push(changes);
            }
        }
    }
}

/// A device's tags added, changed and removed, by name (where a row came from is not a change).
fn tag_changes(device: &str, before: &[TagConfig], after: &[TagConfig]) -> TagChanges {
    let bare = |t: &TagConfig| TagConfig {
        source: None,
        device: None,
        ..t.clone()
    };
    let mut changes = TagChanges {
        device: device.to_owned(),
        ..TagChanges::default()
    };
    for t in after {
        match before.iter().find(|b| b.name == t.name) {
            None => changes.added.push(t.name.clone()),
            Some(b) if bare(b) != bare(t) => changes.changed.push(t.name.clone()),
            Some(_) => {}
        }
    }
    for b in before {
        if !after.iter().any(|t| t.name == b.name) {
            changes.removed.push(b.name.clone());
        }
    }
    changes
}

/// "Test connection" to `config.mqtt.servers[index]`: one MQTT CONNECT with the node's
/// credentials and TLS for that server, under a client id of its own (so the running
/// session is not taken over) and without a will; closed at once.
pub async fn test_server(config: &Config, index: usize) -> Result<String, String> {
    use infra::link::{Link, LinkEvent};
    let server = config
        .mqtt
        .servers
        .get(index)
        .ok_or_else(|| format!("no mqtt.servers[{index}]"))?;
    // The options carry the node's will; the test connection sends none.
    let will =
        infra::link::LastWill::new("", Vec::<u8>::new(), infra::link::QoS::AtMostOnce, false);
    let mut options = config.mqtt.link_options(server, will);
    options.will = None;
    options.client_id = format!("{}-test", config.mqtt.client_id);
    let timeout = options.connect_timeout;
    let mut link = Link::open(options, std::sync::Arc::default()).map_err(|e| e.to_string())?;
    let outcome =
        tokio::time::timeout(timeout + std::time::Duration::from_secs(1), link.recv()).await;
    let result = match outcome {
        Ok(Some(LinkEvent::Connected)) => Ok(format!("{server}: connected (CONNACK accepted)")),
        Ok(Some(LinkEvent::Lost(why))) => Err(format!("{server}: {why}")),
        Ok(Some(other)) => Err(format!("{server}: unexpected {other:?}")),
        Ok(None) => Err(format!("{server}: the connection closed")),
        Err(_) => Err(format!("{server}: no CONNACK within {timeout:?}")),
    };
    link.close(std::time::Duration::from_millis(500)).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = r#"# the site
[sparkplug]
group_id = "g"
edge_node_id = "n"

[mqtt]
[[mqtt.servers]]
host = "127.0.0.1"

[modbus]
tag_files = ["tags.csv"]

[[modbus.scan_classes]]
name = "normal"
period_ms = 1000

[[modbus.devices]]
name = "boiler"
host = "127.0.0.1"
"#;

    const TAGS: &str = "device,name,address,type\nboiler,temp,40001,u16\n";

    fn setup() -> (tempfile::TempDir, Configurator) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("edge-node.toml"), MAIN).unwrap();
        std::fs::write(dir.path().join("tags.csv"), TAGS).unwrap();
        let c = Configurator::new(dir.path().join("edge-node.toml"));
        (dir, c)
    }

    #[tokio::test]
    async fn apply_writes_the_draft_and_rollback_brings_the_last_known_good_back() {
        let (dir, c) = setup();
        assert!(!c.can_roll_back());
        let mut draft = c.running();
        c.validate(&draft).unwrap();
        draft.files.insert(
            "tags.csv".into(),
            b"device,name,address,type\nboiler,temp,40001,u16\nboiler,level,40002,f32\n".to_vec(),
        );
        let diff = c.diff(&draft);
        assert_eq!(diff.tags[0].added, ["level"]);
        assert!(
            diff.tables.is_empty() && diff.devices_changed.is_empty(),
            "{diff}"
        );
        c.apply(draft, "ada").await.unwrap();
        assert!(
            std::fs::read_to_string(dir.path().join("tags.csv"))
                .unwrap()
                .contains("level")
        );
        assert!(c.can_roll_back());
        c.rollback("ada").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tags.csv")).unwrap(),
            TAGS
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("edge-node.toml")).unwrap(),
            MAIN
        );
        let audit: Vec<_> = c.audit(10).into_iter().map(|a| a.action).collect();
        assert_eq!(audit, ["rollback", "apply"], "newest first");
    }

    #[tokio::test]
    async fn a_draft_that_fails_its_checks_changes_nothing() {
        let (dir, c) = setup();
        let mut draft = c.running();
        draft.files.insert(
            "tags.csv".into(),
            b"device,name,address,type\nboiler,temp,40001,float\n".to_vec(),
        );
        let e = c.validate(&draft).unwrap_err();
        assert_eq!(e.problems()[0].file.as_deref(), Some("tags.csv"));
        assert!(matches!(
            c.apply(draft, "ada").await,
            Err(ApplyError::Invalid(_))
        ));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tags.csv")).unwrap(),
            TAGS
        );
        assert!(!c.can_roll_back());
        assert_ne!(c.audit(1)[0].outcome, "ok");
    }
}
