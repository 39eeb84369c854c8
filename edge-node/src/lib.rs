//! The edge node: Modbus acquisition, the Sparkplug edge session and store-and-forward.
//!
//! - [`config`]: the one TOML file (`[sparkplug]`, `[mqtt]`, `[modbus]`), checked at load;
//! - [`configure`]: the configuration lifecycle (draft, validate, diff, apply live,
//!   rollback, audit), shared by SIGHUP and the web UI;
//! - [`link`]: one MQTT 3.1.1 connection (TLS, credentials, byte counts), backoff;
//! - [`node`]: the Sparkplug B 3.0 edge node ([`EdgeNode::start`] -> [`NodeHandle`]);
//! - [`modbus`]: Modbus acquisition; [`simulator`]: a Modbus plant for tests and demos;
//! - [`store`]: the store-and-forward queue (SQLite), its sent window and replay pacer;
//! - [`configure`]: the configuration lifecycle (draft, validate, diff, apply, rollback);
//! - [`ui`]: the technician's web UI (`[ui]`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = edge_node::Config::load(std::path::Path::new("/etc/edge-node/edge-node.toml"))?;
//! let node = edge_node::EdgeNode::start(config)?;
//! // ... until SIGTERM:
//! node.shutdown().await?; // NDEATH, DISCONNECT, acquisition stopped
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod configure;
pub mod modbus;
pub mod node;
pub mod simulator;
pub mod store;
pub mod ui;

pub use config::Config;
pub use node::{EdgeNode, NodeHandle, ServiceStatus};
