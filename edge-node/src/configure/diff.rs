//! What a draft changes against the running configuration: keys of the other tables,
//! devices added, changed and removed, tags added, changed and removed per device, and the
//! named files whose contents differ.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::config::Config;
use crate::modbus::Site;

/// Tags of one device that a draft adds, changes or removes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TagChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl TagChanges {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The changes a draft makes; empty when it changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConfigDiff {
    /// Keys changed outside `[modbus]` (`mqtt.keep_alive_s`, `store`), and `modbus` keys
    /// other than devices and tags (`modbus.scan_classes`).
    pub keys: Vec<String>,
    pub devices_added: Vec<String>,
    /// Devices whose own settings or link changed (their tags are in `tags`).
    pub devices_changed: Vec<String>,
    pub devices_removed: Vec<String>,
    /// Per device name, its tags' changes.
    pub tags: BTreeMap<String, TagChanges>,
    /// Files the configuration names whose contents change (CSV, PEM, password files).
    pub files: Vec<PathBuf>,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }

    /// The diff of two configuration texts, with their checked forms when they are valid
    /// (devices and tags are compared only then).
    pub fn between(
        old_text: &str,
        new_text: &str,
        old: Option<&Config>,
        new: Option<&Config>,
        files: Vec<PathBuf>,
    ) -> ConfigDiff {
        let mut diff = ConfigDiff {
            keys: changed_keys(old_text, new_text),
            files,
            ..ConfigDiff::default()
        };
        if let (Some(old), Some(new)) = (old, new) {
            diff.keys.retain(|k| !k.starts_with("modbus"));
            diff.sites(&old.site, &new.site);
        }
        diff
    }

    fn sites(&mut self, old: &Site, new: &Site) {
        if old.scan_classes != new.scan_classes {
            self.keys.push("modbus.scan_classes".to_owned());
        }
        // A bus without devices yet changes no device, yet it is a change to apply.
        let buses = |site: &Site| -> Vec<_> {
            site.links
                .iter()
                .filter(|l| !matches!(l.transport, crate::modbus::config::Transport::Tcp { .. }))
                .cloned()
                .collect()
        };
        if buses(old) != buses(new) {
            self.keys.push("modbus.buses".to_owned());
        }
        for d in &new.devices {
            if !old.devices.iter().any(|o| o.name == d.name) {
                self.devices_added.push(d.name.clone());
            }
        }
        for (oi, o) in old.devices.iter().enumerate() {
            let Some(ni) = new.devices.iter().position(|d| d.name == o.name) else {
                self.devices_removed.push(o.name.clone());
                continue;
            };
            let n = &new.devices[ni];
            let same = { o.link_free() == n.link_free() } && old.links[o.link] == new.links[n.link];
            if !same {
                self.devices_changed.push(o.name.clone());
            }
            let tags_of = |site: &Site, d: usize| {
                site.tags
                    .iter()
                    .filter(|t| t.device == d)
                    .map(|t| {
                        let mut t = t.clone();
                        t.device = 0;
                        (t.name.clone(), t)
                    })
                    .collect::<BTreeMap<_, _>>()
            };
            let (ot, nt) = (tags_of(old, oi), tags_of(new, ni));
            let mut changes = TagChanges::default();
            for (name, t) in &nt {
                match ot.get(name) {
                    None => changes.added.push(name.clone()),
                    Some(o) if o != t => changes.changed.push(name.clone()),
                    Some(_) => {}
                }
            }
            changes.removed = ot
                .keys()
                .filter(|k| !nt.contains_key(*k))
                .cloned()
                .collect();
            if !changes.is_empty() {
                self.tags.insert(o.name.clone(), changes);
            }
        }
        for (ni, n) in new.devices.iter().enumerate() {
            if self.devices_added.contains(&n.name) {
                let added: Vec<String> = new
                    .tags
                    .iter()
                    .filter(|t| t.device == ni)
                    .map(|t| t.name.clone())
                    .collect();
                if !added.is_empty() {
                    self.tags.insert(
                        n.name.clone(),
                        TagChanges {
                            added,
                            ..TagChanges::default()
                        },
                    );
                }
            }
        }
    }
}

trait LinkFree {
    fn link_free(&self) -> Self;
}

impl LinkFree for crate::modbus::config::Device {
    /// The device's settings without its link index (links are compared by content).
    fn link_free(&self) -> Self {
        let mut d = self.clone();
        d.link = 0;
        d
    }
}

/// `table.key` for every key of the top-level tables that differs (a whole table when it
/// is added or removed; array tables by index, `mqtt.servers[1]`).
fn changed_keys(old: &str, new: &str) -> Vec<String> {
    let parse = |text: &str| text.parse::<toml::Table>().unwrap_or_default();
    let (old, new) = (parse(old), parse(new));
    let mut keys = Vec::new();
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for table in names {
        match (old.get(table), new.get(table)) {
            (Some(toml::Value::Table(o)), Some(toml::Value::Table(n))) => {
                let inner: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
                for key in inner {
                    let (a, b) = (o.get(key), n.get(key));
                    if a == b {
                        continue;
                    }
                    match (a, b) {
                        (Some(toml::Value::Array(a)), Some(toml::Value::Array(b))) => {
                            for i in 0..a.len().max(b.len()) {
                                if a.get(i) != b.get(i) {
                                    keys.push(format!("{table}.{key}[{i}]"));
                                }
                            }
                        }
                        _ => keys.push(format!("{table}.{key}")),
                    }
                }
            }
            (a, b) if a != b => keys.push(table.clone()),
            _ => {}
        }
    }
    keys
}

impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no change");
        }
        let mut parts = Vec::new();
        if !self.keys.is_empty() {
            parts.push(format!("changed {}", self.keys.join(", ")));
        }
        let list = |label: &str, v: &[String]| {
            (!v.is_empty()).then(|| format!("{label} {}", v.join(", ")))
        };
        parts.extend(list("devices added:", &self.devices_added));
        parts.extend(list("devices changed:", &self.devices_changed));
        parts.extend(list("devices removed:", &self.devices_removed));
        for (device, t) in &self.tags {
            let mut s = format!("{device}:");
            for (label, v) in [("+", &t.added), ("~", &t.changed), ("-", &t.removed)] {
                if !v.is_empty() {
                    s.push_str(&format!(" {label}{}", v.join(&format!(" {label}"))));
                }
            }
            parts.push(s);
        }
        if !self.files.is_empty() {
            let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
            parts.push(format!("files {}", files.join(", ")));
        }
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "[sparkplug]\ngroup_id = \"plant\"\nedge_node_id = \"gw1\"\n\n[[mqtt.servers]]\nurl = \"mqtt://127.0.0.1:1883\"\n\n[[modbus.scan_classes]]\nname = \"normal\"\nperiod_ms = 250\n\n[[modbus.devices]]\nname = \"boiler\"\nhost = \"127.0.0.1\"\n\n[[modbus.devices.tags]]\nname = \"t\"\naddress = \"40001\"\ntype = \"u16\"\n";

    fn load(text: &str) -> Config {
        Config::from_toml(text, Path::new(".")).expect("valid test configuration")
    }

    #[test]
    fn a_bus_without_devices_is_a_change() {
        let bus = format!(
            "{BASE}\n[[modbus.buses]]\nname = \"line\"\ntransport = \"rtu\"\npath = \"/dev/ttyUSB-not-here\"\n"
        );
        let (old, new) = (load(BASE), load(&bus));
        let diff = ConfigDiff::between(BASE, &bus, Some(&old), Some(&new), Vec::new());
        assert_eq!(diff.keys, ["modbus.buses"]);
        assert!(diff.devices_changed.is_empty());
        let same = ConfigDiff::between(BASE, BASE, Some(&old), Some(&old), Vec::new());
        assert!(same.is_empty());
    }
}
