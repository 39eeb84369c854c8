//! "Test connection" for one MQTT server of a configuration: connect with the server's
//! own credentials and TLS files, await CONNACK, disconnect. Nothing is published and
//! no will is set, so the node's session on another connection is untouched.

use std::sync::Arc;
use std::time::Duration;

use infra::link::{Link, LinkEvent, LinkOptions};

use crate::config::Config;

/// Why a server could not be reached as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
pub enum ProbeError {
    #[error("the configuration has no server {0}")]
    NoSuchServer(usize),
    #[error("{server}: {reason}")]
    Failed { server: String, reason: String },
    #[error("{server}: no CONNACK within {waited:?}")]
    Timeout { server: String, waited: Duration },
}

/// Connects to `config.mqtt.servers[index]` with its credentials and TLS files, awaits
/// CONNACK (bounded by the connect timeout and keep-alive) and disconnects.
pub async fn test_server(config: &Config, index: usize) -> Result<(), ProbeError> {
    let mqtt = &config.mqtt;
    let server = mqtt
        .servers
        .get(index)
        .ok_or(ProbeError::NoSuchServer(index))?;
    let shown = server.to_string();
    let failed = |reason: String| ProbeError::Failed {
        server: shown.clone(),
        reason,
    };
    // A client id of its own, so the node's own session is not taken over.
    let client_id = format!("{}-test", mqtt.client_id);
    let endpoint = infra::link::Endpoint {
        host: server.host.clone(),
        port: server.port,
        tls: server.tls.clone(),
        credentials: server.credentials.clone(),
    };
    let options = LinkOptions {
        keep_alive: mqtt.keep_alive,
        connect_timeout: mqtt.connect_timeout,
        max_packet_size: Some(mqtt.max_packet_size),
        ..LinkOptions::new(endpoint, client_id)
    };
    let mut link = Link::open(options, Arc::default()).map_err(|e| failed(e.to_string()))?;
    let waited = mqtt.connect_timeout + mqtt.keep_alive;
    let outcome = tokio::time::timeout(waited, async {
        loop {
            match link.recv().await {
                Some(LinkEvent::Connected) => return Ok(()),
                Some(LinkEvent::Lost(reason)) => return Err(reason),
                Some(_) => {}
                None => return Err("connection closed".to_owned()),
            }
        }
    })
    .await;
    match outcome {
        Ok(Ok(())) => {
            link.close(Duration::from_secs(2)).await;
            Ok(())
        }
        Ok(Err(reason)) => {
            link.abort();
            Err(failed(reason))
        }
        Err(_) => {
            link.abort();
            Err(ProbeError::Timeout {
                server: shown,
                waited,
            })
        }
    }
}
