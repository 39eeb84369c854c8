//! Shared parts of the edge-node session tests: a simulated Modbus plant and the node's
//! config; the broker (`system_tests::rmqtt`) and the recording subscriber
//! (`system_tests::mqtt`) come from system-tests.

use std::sync::Arc;
use std::time::Duration;

use edge_node::Config;
use edge_node::simulator::{BankSizes, Plant, PlantServer};
use sparkplug::Payload;
pub use system_tests::config::edge::EdgeConfig;

pub const GROUP: &str = "plant";
pub const NODE: &str = "gw1";
pub const DEVICE: &str = "boiler";
/// Bounds every wait of the tests (the recorder's too).
pub const WAIT: Duration = system_tests::mqtt::Recorder::WAIT;

/// A simulated Modbus TCP device (unit 1) with holding, input and coil tables.
pub async fn start_plant() -> PlantServer {
    let mut plant = Plant::new();
    plant.add_unit(1, BankSizes::uniform(100)).unwrap();
    PlantServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(plant))
        .await
        .unwrap()
}

/// The boiler node of [`EdgeConfig::boiler`] in [`GROUP`] on `servers`, polling port
/// `modbus_port`, for the test to adjust before [`load`].
pub fn boiler(servers: &[u16], modbus_port: u16) -> EdgeConfig {
    EdgeConfig::boiler(GROUP, servers, modbus_port)
}

/// The node's config as the node reads it.
pub fn load(config: &EdgeConfig) -> Config {
    Config::from_toml(&config.to_toml(), std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`boiler`] straight to `broker`, polling `plant`.
pub fn direct_config(broker: u16, plant: &PlantServer) -> Config {
    load(&boiler(&[broker], plant.local_addr().port()))
}

/// The alias of a metric in a birth.
pub fn alias_in(birth: &Payload, name: &str) -> u64 {
    birth
        .metric(name)
        .and_then(|m| m.alias)
        .unwrap_or_else(|| panic!("no alias for {name}"))
}

pub fn topic(kind: &str, device: Option<&str>) -> String {
    match device {
        Some(d) => format!("spBv1.0/{GROUP}/{kind}/{NODE}/{d}"),
        None => format!("spBv1.0/{GROUP}/{kind}/{NODE}"),
    }
}
