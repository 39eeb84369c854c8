//! Typed configuration files for the project's binaries, as tests write them: plain
//! structs mirroring the TOML schemas of `edge-node` ([`edge`]), `host-app` ([`host`]) and
//! `plant-sim` ([`sim`]), with test defaults (loopback, short periods), serialised with
//! `toml`. A key left `None` is left out of the file, so the binary's own default holds.

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
