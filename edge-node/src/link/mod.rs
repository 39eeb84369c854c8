//! The MQTT link: one MQTT 3.1.1 connection to one server, with its will.
//!
//! A [`Link`] is one CONNECT: it never reconnects by itself, because a Sparkplug edge
//! node needs a new will (a new bdSeq) on every connect. The node opens a new `Link`
//! per attempt, choosing the server and waiting the [`Backoff`] delay between them.
//!
//! - [`backoff`]: delays between attempts and the start-up delay;
//! - [`tls`]: the rustls (ring) client configuration;
//! - [`counting`]: bytes sent and received, under TLS.

pub mod backoff;
pub mod counting;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, SubscribeReasonCode, TlsConfiguration,
    Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use backoff::{Backoff, startup_delay};
pub use counting::{ByteCounters, CountingStream};

use crate::config::{MqttSettings, ServerSettings};

/// What the connection reports to its owner, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// CONNACK accepted: the will is registered.
    Connected,
    /// A SUBACK; `granted` is false when the server refused a filter.
    Subscribed { granted: bool },
    /// A QoS 1 publish of ours was acknowledged.
    Acknowledged,
    /// A message for one of our subscriptions.
    Message {
        topic: String,
        payload: Bytes,
        retain: bool,
    },
    /// The connection ended (refused, broken or closed); the link is finished.
    Lost(String),
}

/// Why a link could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{server}: {source}")]
    Tls {
        server: String,
        source: tls::TlsError,
    },
    #[error("the connection to {server} is closed")]
    Closed { server: String },
}

/// One MQTT connection: publish and subscribe through it, read its [`LinkEvent`]s.
#[derive(Debug)]
pub struct Link {
    server: String,
    client: AsyncClient,
    events: mpsc::Receiver<LinkEvent>,
    task: JoinHandle<()>,
}

impl Link {
    /// Starts connecting to `server` with `will`; [`LinkEvent::Connected`] or
    /// [`LinkEvent::Lost`] tells how it went.
    pub fn open(
        server: &ServerSettings,
        mqtt: &MqttSettings,
        will: LastWill,
        bytes: Arc<ByteCounters>,
    ) -> Result<Link, LinkError> {
        let shown = server.to_string();
        // The broker name is what TLS verifies; the socket goes to `host` regardless.
        let name = server
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .unwrap_or_else(|| server.host.clone());
        let mut options = MqttOptions::new(mqtt.client_id.clone(), (name, server.port));
        options.set_keep_alive(u16::try_from(mqtt.keep_alive.as_secs()).unwrap_or(u16::MAX));
        options.set_clean_session(true);
        options.set_last_will(will);
        if let Some(user) = &mqtt.username {
            match &mqtt.password {
                Some(p) => options.set_credentials(user.clone(), p.expose().to_owned()),
                None => options.set_username(user.clone()),
            };
        }
        if let Some(tls) = &server.tls {
            let config = tls::client_config(tls).map_err(|source| LinkError::Tls {
                server: shown.clone(),
                source,
            })?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        }
        let address = match server.host.contains(':') {
            true => format!("[{}]:{}", server.host, server.port),
            false => format!("{}:{}", server.host, server.port),
        };
        let timeout = mqtt.connect_timeout;
        options.set_socket_connector(move |_broker, network| {
            let address = address.clone();
            let bytes = Arc::clone(&bytes);
            async move {
                let tcp = tokio::time::timeout(
                    timeout,
                    rumqttc::default_socket_connect(address, network),
                )
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                Ok(CountingStream::new(tcp, bytes))
            }
        });
        let (client, mut eventloop) = AsyncClient::builder(options).capacity(64).build();
        let (tx, events) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => LinkEvent::Connected,
                    Ok(Event::Incoming(Packet::SubAck(ack))) => LinkEvent::Subscribed {
                        granted: ack
                            .return_codes
                            .iter()
                            .all(|c| !matches!(c, SubscribeReasonCode::Failure)),
                    },
                    Ok(Event::Incoming(Packet::PubAck(_))) => LinkEvent::Acknowledged,
                    Ok(Event::Incoming(Packet::Publish(p))) => LinkEvent::Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload,
                        retain: p.retain,
                    },
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(LinkEvent::Lost(e.to_string())).await;
                        return;
                    }
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        });
        Ok(Link {
            server: shown,
            client,
            events,
            task,
        })
    }

    /// The server as `mqtt://host:port`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The next event; [`LinkEvent::Lost`] is the last one, then `None`.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        self.events.recv().await
    }

    /// Queues a publish (in order with every other request of this link).
    pub async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: &[u8],
    ) -> Result<(), LinkError> {
        let options = rumqttc::PublishOptions::new(qos).retain(retain);
        self.client
            .publish(topic, Bytes::copy_from_slice(payload), options)
            .await
            .map_err(|_| self.closed())
    }

    /// Queues a subscription; a [`LinkEvent::Subscribed`] follows.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<(), LinkError> {
        self.client
            .subscribe(filter, qos)
            .await
            .map_err(|_| self.closed())
    }

    /// Sends DISCONNECT after everything queued, then waits (bounded) for the
    /// connection to end. Without DISCONNECT the server would publish the will.
    pub async fn close(mut self, wait: Duration) {
        let _ = self.client.disconnect().await;
        let _ =
            tokio::time::timeout(wait, async { while self.events.recv().await.is_some() {} }).await;
        self.task.abort();
    }

    /// Drops the connection without DISCONNECT (the server then publishes the will).
    pub fn abort(self) {
        self.task.abort();
    }

    fn closed(&self) -> LinkError {
        LinkError::Closed {
            server: self.server.clone(),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}
