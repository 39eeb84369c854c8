//! The edge node: Modbus acquisition, the Sparkplug edge session and store-and-forward.

pub mod config;
pub mod link;
pub mod modbus;
pub mod node;
pub mod simulator;

pub use config::Config;
pub use node::{EdgeNode, NodeHandle};
