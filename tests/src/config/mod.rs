//! Typed configuration files for the project's binaries, as tests write them: plain
//! structs mirroring the TOML schemas of `edge-node` ([`edge`]), `host-app` ([`host`]) and
//! `plant-sim` ([`sim`]), with test defaults (loopback, short periods), serialised with
//! `toml`. A key left `None` is left out of the file (`toml` skips it), so the binary's
//! own default holds.

pub mod edge;
pub mod host;
pub mod sim;

use std::path::{Path, PathBuf};

use serde::Serialize;

/// The TOML document of a config.
pub fn to_toml(config: &impl Serialize) -> String {
    toml::to_string(config).unwrap_or_else(|e| panic!("config serialises to TOML: {e}"))
}

/// Writes the config to `dir/name` and returns the path.
pub fn write(config: &impl Serialize, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, to_toml(config))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

#[cfg(test)]
mod tests {
    use super::edge::{Device, EdgeConfig, Tag};

    #[test]
    fn a_key_left_none_is_left_out() {
        let mut config = EdgeConfig::new("g", "n");
        config.modbus.devices =
            vec![Device::tcp("d", 502, 1).tag(Tag::new("t", "holding", 0, "u16"))];
        let text = config.to_toml();
        assert!(!text.contains("primary_host_id"), "{text}");
        assert!(!text.contains("\ntimeout_ms"), "{text}");
        assert!(text.contains("[[modbus.devices.tags]]"), "{text}");
        assert!(text.contains("type = \"u16\""), "{text}");
    }
}
