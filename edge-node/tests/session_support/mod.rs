//! Shared parts of the edge-node session tests: an in-process rumqttd, a TCP proxy that
//! can cut connections, a recording subscriber, a simulated Modbus plant and a config.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_node::Config;
use edge_node::simulator::{BankSizes, Plant, PlantServer};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sparkplug::{Payload, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const GROUP: &str = "plant";
pub const NODE: &str = "gw1";
pub const DEVICE: &str = "boiler";
/// Bounds every wait of the tests.
pub const WAIT: Duration = Duration::from_secs(10);

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

/// A TCP proxy in front of a broker: `cut()` drops every connection through it
/// without an MQTT DISCONNECT, as a dead cellular link would.
pub struct Proxy {
    pub port: u16,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let list = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                list.lock().unwrap().push(task);
            }
        });
        Proxy {
            port,
            connections,
            accept,
        }
    }

    /// Drops every live connection (the broker sees the socket close).
    pub fn cut(&self) {
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// One message seen by the recorder.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub qos: QoS,
    pub retain: bool,
    pub bytes: Vec<u8>,
}

impl Seen {
    pub fn payload(&self) -> Payload {
        Payload::decode(&self.bytes).unwrap_or_else(|e| panic!("{}: {e}", self.topic))
    }

    pub fn kind(&self) -> &str {
        self.topic.split('/').nth(2).unwrap_or("")
    }

    pub fn seq(&self) -> Option<u64> {
        self.payload().seq
    }

    pub fn bd_seq(&self) -> u64 {
        match self
            .payload()
            .metric("bdSeq")
            .and_then(|m| m.typed_value().cloned())
        {
            Some(Value::Int64(v)) => v as u64,
            Some(Value::UInt64(v)) => v,
            other => panic!("{}: bdSeq is {other:?}", self.topic),
        }
    }
}

/// A plain MQTT client subscribed to a filter, recording what arrives; it also
/// publishes commands and STATE as a host would.
pub struct Recorder {
    pub client: AsyncClient,
    messages: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

impl Recorder {
    pub async fn start(port: u16, id: &str, filter: &str) -> Recorder {
        let mut options = MqttOptions::new(id, ("127.0.0.1", port));
        options.set_keep_alive(30);
        let (client, mut eventloop) = AsyncClient::builder(options).capacity(100).build();
        let (tx, messages) = mpsc::unbounded_channel();
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Seen {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            qos: p.qos,
                            retain: p.retain,
                            bytes: p.payload.to_vec(),
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, ready)
            .await
            .expect("SUBACK in time")
            .unwrap();
        Recorder {
            client,
            messages,
            task,
        }
    }

    /// The next message, whatever it is.
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.messages.recv())
            .await
            .expect("a message in time")
            .expect("recorder running")
    }

    /// Skips messages until one matches; panics after [`WAIT`].
    pub async fn until(&mut self, what: &str, mut pred: impl FnMut(&Seen) -> bool) -> Seen {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some(m)) if pred(&m) => return m,
                Ok(Some(_)) => {}
                _ => panic!("no {what} within {WAIT:?}"),
            }
        }
    }

    /// The next message of a kind (NBIRTH, DDATA, ...), skipping others.
    pub async fn next_kind(&mut self, kind: &str) -> Seen {
        self.until(kind, |m| m.kind() == kind).await
    }

    /// Everything that arrives within `period`.
    pub async fn drain_for(&mut self, period: Duration) -> Vec<Seen> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + period;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.messages.recv()).await {
            out.push(m);
        }
        out
    }

    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        let options = rumqttc::PublishOptions::new(QoS::AtLeastOnce).retain(retain);
        self.client.publish(topic, payload, options).await.unwrap();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
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
    let mut text = format!(
        r#"
[sparkplug]
group_id = "{GROUP}"
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
