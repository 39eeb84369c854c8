//! `host-app spy`: subscribe to any broker and print every Sparkplug message as one JSON
//! line (topic parts and the decoded payload; STATE as its JSON; an undecodable payload
//! as a line with the error), bounded by a message count and a duration. A compressed
//! payload (DEFLATE or GZIP) is inflated and its line says `"compression"`. Births seen
//! are remembered, so DATA and CMD metrics sent by alias are printed with their names.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use infra::link::{Credentials, Link, LinkEvent, QoS};
use infra::tls::ClientTls;
use infra::url::MqttUrl;
use serde_json::{Map, Value as Json, json};
use sparkplug::{AnyTopic, DecodeLimits, MessageType, Payload, State, compression};

use crate::broker::{ConfigError, MqttEndpoint, Secret};

#[derive(Debug, thiserror::Error)]
pub enum SpyError {
    #[error("--broker {0}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")]
    Url(#[from] infra::url::UrlError),
    #[error("--broker {0:?}: mqtts needs --ca FILE (the broker's CA certificates, PEM)")]
    NoCa(String),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("--topic {0:?} is not a valid MQTT topic filter")]
    Filter(String),
    #[error("MQTT connection: {0}")]
    Connection(String),
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
}

/// What to watch and for how long.
#[derive(Debug, Clone)]
pub struct SpyOptions {
    pub endpoint: MqttEndpoint,
    pub filter: String,
    /// Stop after this many messages.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// The endpoint for `--broker URL`, with optional login and CA file.
pub fn endpoint(
    url: &str,
    username: Option<String>,
    password: Option<Secret>,
    ca: Option<std::path::PathBuf>,
) -> Result<MqttEndpoint, SpyError> {
    let url = MqttUrl::parse(url)?;
    let tls = match (url.tls, ca) {
        (true, Some(ca_file)) => Some(ClientTls {
            ca_file,
            server_name: None,
            client_auth: None,
        }),
        (true, None) => return Err(SpyError::NoCa(url.to_string())),
        (false, _) => None,
    };
    let credentials = username.map(|username| Credentials { username, password });
    Ok(MqttEndpoint::from_url(&url, tls, credentials))
}

/// Subscribes and writes one JSON line per message to `out` until the count or the
/// duration is reached (or for ever without either). Returns the messages printed.
/// `ready` is told once the subscription is acknowledged.
pub async fn run(
    options: &SpyOptions,
    out: &mut dyn Write,
    ready: &mut dyn FnMut(),
) -> Result<u64, SpyError> {
    if !infra::link::valid_filter(&options.filter) {
        return Err(SpyError::Filter(options.filter.clone()));
    }
    let client_id = format!("spy-{:08x}", rand::random::<u32>());
    let mut link = Link::open(
        crate::mqtt::link_options(&options.endpoint, &client_id)?,
        Default::default(),
    )
    .map_err(|e| SpyError::Connection(e.to_string()))?;
    let limits = DecodeLimits::default();
    let mut births = Births::default();
    let mut printed = 0u64;
    let watch = async {
        if options.count == Some(0) {
            return Ok(());
        }
        loop {
            let event = link.recv().await;
            match event.unwrap_or_else(|| LinkEvent::Lost("connection ended".into())) {
                LinkEvent::Connected => link
                    .subscribe(&options.filter, QoS::AtLeastOnce)
                    .await
                    .map_err(|e| SpyError::Connection(e.to_string()))?,
                LinkEvent::Subscribed { .. } => ready(),
                LinkEvent::Message {
                    topic,
                    payload,
                    retain,
                } => {
                    let line = message_json(&topic, &payload, retain, &limits, &mut births);
                    writeln!(out, "{line}")?;
                    out.flush()?;
                    printed += 1;
                    if options.count.is_some_and(|n| printed >= n) {
                        return Ok::<(), SpyError>(());
                    }
                }
                LinkEvent::Lost(e) => return Err(SpyError::Connection(e)),
                LinkEvent::Acknowledged => {}
            }
        }
    };
    match options.duration {
        Some(d) => {
            if let Ok(result) = tokio::time::timeout(d, watch).await {
                result?;
            }
        }
        None => watch.await?,
    }
    link.close(Duration::from_secs(1)).await;
    Ok(printed)
}

/// The last birth seen of each edge node and device, so that DATA and CMD metrics sent by
/// alias alone are printed with their names and datatypes.
#[derive(Debug, Default)]
pub struct Births {
    by_source: HashMap<String, Payload>,
}

impl Births {
    fn key(group: &str, node: &str, device: Option<&str>) -> String {
        match device {
            Some(d) => format!("{group}/{node}/{d}"),
            None => format!("{group}/{node}"),
        }
    }

    /// Remembers a birth, or completes a DATA/CMD payload from the one remembered.
    fn observe(
        &mut self,
        group: &str,
        node: &str,
        device: Option<&str>,
        mt: MessageType,
        p: &mut Payload,
    ) -> Result<(), String> {
        let key = Self::key(group, node, device);
        match mt {
            MessageType::NBirth => {
                // A new node session: its devices are born again after it.
                let prefix = format!("{key}/");
                self.by_source.retain(|k, _| !k.starts_with(&prefix));
                self.by_source.insert(key, p.clone());
            }
            MessageType::DBirth => {
                self.by_source.insert(key, p.clone());
            }
            MessageType::NData | MessageType::DData | MessageType::NCmd | MessageType::DCmd => {
                if let Some(birth) = self.by_source.get(&key) {
                    crate::inspect::resolve(p, birth).map_err(|e| e.to_string())?;
                }
            }
            MessageType::NDeath | MessageType::DDeath => {}
        }
        Ok(())
    }
}

/// One message as the spy prints it; births are remembered in `births` to name the
/// metrics of later DATA and CMD messages.
pub fn message_json(
    topic: &str,
    payload: &[u8],
    retain: bool,
    limits: &DecodeLimits,
    births: &mut Births,
) -> Json {
    let mut line = Map::new();
    line.insert("topic".into(), json!(topic));
    if retain {
        line.insert("retain".into(), json!(true));
    }
    match AnyTopic::parse(topic) {
        Ok(AnyTopic::Edge(t)) => {
            line.insert("group".into(), json!(t.group_id()));
            line.insert("type".into(), json!(t.message_type().to_string()));
            line.insert("node".into(), json!(t.edge_node_id()));
            if let Some(device) = t.device_id() {
                line.insert("device".into(), json!(device));
            }
            match decode_noting_compression(payload, limits, &mut line) {
                Ok(mut p) => {
                    let resolved = births.observe(
                        t.group_id(),
                        t.edge_node_id(),
                        t.device_id(),
                        t.message_type(),
                        &mut p,
                    );
                    if let Err(e) = resolved {
                        line.insert("resolve_error".into(), json!(e));
                    }
                    line.insert("payload".into(), crate::json::payload(&p));
                }
                Err(e) => {
                    line.insert("error".into(), json!(e));
                    line.insert("bytes".into(), json!(payload.len()));
                }
            }
        }
        Ok(AnyTopic::State(t)) => {
            line.insert("type".into(), json!("STATE"));
            line.insert("host_id".into(), json!(t.host_id()));
            match State::parse(payload) {
                Ok(s) => {
                    line.insert(
                        "state".into(),
                        json!({ "online": s.online, "timestamp": s.timestamp }),
                    );
                }
                Err(e) => {
                    line.insert("error".into(), json!(e.to_string()));
                }
            }
        }
        Err(e) => {
            line.insert("error".into(), json!(format!("not a Sparkplug topic: {e}")));
            line.insert("bytes".into(), json!(payload.len()));
        }
    }
    Json::Object(line)
}

/// Decodes a payload, inflating a compressed envelope; says in `line` that the payload
/// came compressed and with which algorithm (`"compression": "GZIP"`).
fn decode_noting_compression(
    bytes: &[u8],
    limits: &DecodeLimits,
    line: &mut Map<String, Json>,
) -> Result<Payload, String> {
    let outer = Payload::decode_envelope(bytes, limits).map_err(|e| e.to_string())?;
    if !compression::is_compressed(&outer) {
        return Ok(outer);
    }
    let algorithm = compression::algorithm_of(&outer).map_err(|e| e.to_string())?;
    line.insert("compression".into(), json!(algorithm.name()));
    compression::decompress(&outer, limits).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let e = endpoint("mqtt://10.0.0.5", None, None, None).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("10.0.0.5", 1883));
        let e = endpoint("mqtt://localhost:1884", Some("u".into()), None, None).unwrap();
        assert_eq!(e.port, 1884);
        assert_eq!(e.credentials.unwrap().username, "u");
        let e = endpoint("mqtts://broker.site", None, None, Some("/ca.pem".into())).unwrap();
        assert_eq!(e.port, 8883);
        assert_eq!(e.host, "broker.site");
        assert!(e.tls.is_some());
        assert!(matches!(
            endpoint("mqtts://b", None, None, None),
            Err(SpyError::NoCa(_))
        ));
        assert!(matches!(
            endpoint("http://b", None, None, None),
            Err(SpyError::Url(_))
        ));
        assert!(matches!(
            endpoint("mqtt://b:0", None, None, None),
            Err(SpyError::Url(_))
        ));
        let e = endpoint("mqtt://[::1]:1883", None, None, None).unwrap();
        assert_eq!(e.host, "::1");
        let e = endpoint("ssl://b", None, None, Some("/ca.pem".into())).unwrap();
        assert_eq!(e.port, 8883);
    }

    #[test]
    fn lines_for_each_kind_of_message() {
        let limits = DecodeLimits::default();
        let mut births = Births::default();
        let mut bytes = Vec::new();
        Payload::new(5)
            .with_metric(sparkplug::Metric::new("a", 1i32))
            .encode(&mut bytes)
            .unwrap();
        let line = message_json("spBv1.0/G/DDATA/E/D", &bytes, false, &limits, &mut births);
        assert_eq!(line["type"], "DDATA");
        assert_eq!(line["device"], "D");
        assert_eq!(line["payload"]["metrics"][0]["name"], "a");
        let line = message_json(
            "spBv1.0/G/NDATA/E",
            &[0xff, 0xff],
            false,
            &limits,
            &mut births,
        );
        assert!(line["error"].is_string());
        let state = State::online(9).to_json();
        let line = message_json(
            "spBv1.0/STATE/h",
            state.as_bytes(),
            true,
            &limits,
            &mut births,
        );
        assert_eq!(line["state"]["online"], true);
        assert_eq!(line["retain"], true);
        let line = message_json("other/topic", b"x", false, &limits, &mut births);
        assert!(line["error"].as_str().unwrap().contains("not a Sparkplug"));
    }

    #[test]
    fn data_by_alias_is_named_through_the_birth() {
        let limits = DecodeLimits::default();
        let mut births = Births::default();
        let mut birth = Vec::new();
        Payload::new(1)
            .with_metric(sparkplug::Metric::new("Speed", 5i32).with_alias(4))
            .encode(&mut birth)
            .unwrap();
        message_json("spBv1.0/G/DBIRTH/E/D", &birth, false, &limits, &mut births);
        let mut data = Vec::new();
        let mut m = sparkplug::Metric::aliased(4, 9i32);
        m.datatype = None;
        Payload::new(2).with_metric(m).encode(&mut data).unwrap();
        let line = message_json("spBv1.0/G/DDATA/E/D", &data, false, &limits, &mut births);
        assert_eq!(line["payload"]["metrics"][0]["name"], "Speed");
        assert_eq!(line["payload"]["metrics"][0]["datatype"], "Int32");
        assert_eq!(line["payload"]["metrics"][0]["value"], 9);
    }

    #[test]
    fn compressed_payloads_are_inflated_and_noted() {
        let limits = DecodeLimits::default();
        let mut births = Births::default();
        let inner = Payload::new(3).with_metric(sparkplug::Metric::new("Level", 2.5f64));
        let mut bytes = Vec::new();
        inner
            .encode_compressed(sparkplug::Algorithm::Deflate, &mut bytes)
            .unwrap();
        let line = message_json("spBv1.0/G/NDATA/E", &bytes, false, &limits, &mut births);
        assert_eq!(line["compression"], "DEFLATE");
        assert_eq!(line["payload"]["metrics"][0]["name"], "Level");
        assert_eq!(line["payload"]["metrics"][0]["value"], 2.5);

        let mut corrupt = sparkplug::compress(&inner, sparkplug::Algorithm::Gzip).unwrap();
        corrupt.body = Some(vec![1, 2, 3]);
        let line = message_json(
            "spBv1.0/G/NDATA/E",
            &corrupt.encode_to_vec().unwrap(),
            false,
            &limits,
            &mut births,
        );
        assert_eq!(line["compression"], "GZIP");
        assert!(line["error"].as_str().unwrap().contains("GZIP"), "{line}");

        let plain = inner.encode_to_vec().unwrap();
        let line = message_json("spBv1.0/G/NDATA/E", &plain, false, &limits, &mut births);
        assert!(line.get("compression").is_none());
    }
}
