//! The edge node: Modbus acquisition, the Sparkplug edge session and store-and-forward.

pub mod modbus;
pub mod simulator;
pub mod store;
