//! What edge-node's integration tests share that needs edge-node's own types; everything
//! that does not (brokers, recorders, waits, config builders, processes) is in
//! `system-tests`.
//!
//! - [`session`]: the simulated plant and the node's configuration for session tests;
//! - [`modbus`]: Modbus sites from TOML, bounded event waits, register layouts.

pub mod modbus;
pub mod session;
