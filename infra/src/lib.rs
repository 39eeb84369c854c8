//! Service plumbing shared by `edge-node` and `host-app`, written once so both behave
//! the same: how an MQTT server is named, how TLS files and secrets are read, how an MQTT
//! connection guards against half-open links, how the process stops, logs and tells time,
//! how SQLite is made durable and how a configuration problem is reported.
//!
//! It depends on neither application.
//!
//! - [`url`]: the MQTT endpoint URL grammar;
//! - [`tls`]: rustls (ring) client and server configurations from PEM files;
//! - [`secret`]: a value that never prints, and the secret-file reader;
//! - [`link`]: one hardened MQTT connection (half-open detection, stall bound);
//! - [`shutdown`]: the stop signal and the token that carries it;
//! - [`logging`]: the one tracing setup;
//! - [`clock`]: wall-clock milliseconds since the Unix epoch;
//! - [`durability`]: SQLite's `synchronous` setting;
//! - [`config_error`]: configuration problems, each with its key path and place;
//! - [`exit`]: the exit-code policy of every binary;
//! - [`notify`]: readiness and status for systemd (`sd_notify`);
//! - [`metrics`]: Prometheus text exposition and its `/metrics` listener;
//! - [`panic`]: a panic in any thread ends the process;
//! - [`reload`]: what a configuration reload on SIGHUP changed;
//! - [`watchdog`]: systemd watchdog pings while the data path makes progress;
//! - [`allocator`]: the C allocator's settings for small gateways.

pub mod allocator;
pub mod clock;
pub mod config_error;
pub mod durability;
pub mod exit;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod panic;
pub mod reload;
pub mod secret;
pub mod shutdown;
pub mod tls;
pub mod url;
pub mod watchdog;

pub use config_error::{ConfigError, ConfigProblem, Problems};
pub use exit::Exit;
