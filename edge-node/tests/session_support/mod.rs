//! Shared parts of the edge-node session tests: an in-process rumqttd, a simulated Modbus
//! plant and a config; the recording subscriber comes from `system_tests::mqtt`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
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

/// rumqttd in a thread of this process on a free loopback port (it runs until the
/// test process exits; rumqttd cannot report the port it bound, so one is chosen first).
pub fn start_rumqttd() -> u16 {
    let port = system_tests::free_port();
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 5_000,
            max_payload_size: 1 << 20,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 1000,
            max_segment_size: 1 << 20,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        ..Default::default()
    };
    std::thread::spawn(move || {
        let mut broker = rumqttd::Broker::new(config);
        let _ = broker.start();
    });
    for _ in 0..200 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return port;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("rumqttd did not listen on {port}");
}

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
