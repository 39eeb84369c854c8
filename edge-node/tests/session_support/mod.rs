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

/// Extra `[sparkplug]` keys and the MQTT server ports for [`node_config`].
pub struct Setup<'a> {
    pub servers: &'a [u16],
    pub modbus_port: u16,
    pub sparkplug_extra: &'a str,
}

/// The edge node's config: device `boiler` with `setpoint` (holding 0, u16, rw),
/// `temperature` (input 0, i16, ro, °C), `pump` (coil 0, rw) polled every 100 ms.
pub fn node_config(setup: &Setup<'_>) -> Config {
    node_config_in(GROUP, setup)
}

/// [`node_config`] straight to `broker`, polling `plant`.
pub fn direct_config(broker: u16, plant: &PlantServer) -> Config {
    node_config(&Setup {
        servers: &[broker],
        modbus_port: plant.local_addr().port(),
        sparkplug_extra: "",
    })
}

/// [`node_config`] with the node in `group` (the client id left to its default).
pub fn node_config_in(group: &str, setup: &Setup<'_>) -> Config {
    let mut text = format!(
        r#"
[sparkplug]
group_id = "{group}"
edge_node_id = "{NODE}"
rebirth_debounce_ms = 0
metrics_period_ms = 60000
{extra}

[mqtt]
keep_alive_s = 5
startup_delay_max_ms = 0
backoff_min_ms = 50
backoff_max_ms = 200
connect_timeout_ms = 2000
"#,
        extra = setup.sparkplug_extra
    );
    for port in setup.servers {
        text.push_str(&format!(
            "\n[[mqtt.servers]]\nurl = \"mqtt://127.0.0.1:{port}\"\n"
        ));
    }
    text.push_str(&format!(
        r#"
[[modbus.scan_classes]]
name = "fast"
period_ms = 100

[[modbus.devices]]
name = "{DEVICE}"
host = "127.0.0.1"
port = {port}
unit_id = 1
timeout_ms = 500
offline_after_failures = 1
reconnect_min_ms = 100
reconnect_max_ms = 200

[[modbus.devices.tags]]
name = "setpoint"
table = "holding"
address = 0
type = "u16"
access = "read_write"

[[modbus.devices.tags]]
name = "Process/temperature"
table = "input"
address = 0
type = "i16"
units = "°C"

[[modbus.devices.tags]]
name = "pump"
table = "coil"
address = 0
type = "bool"
access = "read_write"
"#,
        port = setup.modbus_port
    ));
    Config::from_toml(&text, std::path::Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
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
