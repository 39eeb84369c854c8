//! Service plumbing shared by `edge-node` and `host-app`, written once so both behave
//! the same: how an MQTT server is named, how TLS files and secrets are read, how an MQTT
//! connection guards against half-open links, how the process stops, logs and tells time,
//! how SQLite is made durable and how a configuration problem is reported.
//!
//! It depends on neither application.

pub mod config_error;
pub mod exit;

pub use config_error::{ConfigError, ConfigProblem, Problems};
pub use exit::Exit;
