//! The MQTT link: one MQTT 3.1.1 connection to one server, with its will.
//!
//! A [`Link`] is one CONNECT: it never reconnects by itself, because a Sparkplug edge
//! node needs a new will (a new bdSeq) on every connect. The node opens a new `Link`
//! per attempt, choosing the server and waiting the [`Backoff`] delay between them.
//!
//! - [`backoff`]: delays between attempts and the start-up delay;
//! - [`tls`]: the rustls (ring) client configuration;
//! - [`counting`]: bytes sent and received, under TLS.
//!
//! A dead path that acknowledges nothing must not hold the node: the socket gives up on
//! data unacknowledged for 1.5 keep-alives (`TCP_USER_TIMEOUT`), and a publish that cannot
//! even be queued for a keep-alive (the client's queue full behind a stuck socket) fails
//! as [`LinkError::Stalled`]. Paths that acknowledge TCP for a dead peer are the session's
//! liveness probe's to catch.

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
    #[error("the connection to {server} took nothing for {waited:?}: stalled")]
    Stalled { server: String, waited: Duration },
}

/// One MQTT connection: publish and subscribe through it, read its [`LinkEvent`]s.
#[derive(Debug)]
pub struct Link {
    server: String,
    /// How long a request may wait for room in the client's queue.
    stall_after: Duration,
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
        let unacknowledged = mqtt.keep_alive * 3 / 2;
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
                give_up_unacknowledged_after(&tcp, unacknowledged)?;
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
            stall_after: mqtt.keep_alive,
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
        let queued = self
            .client
            .publish(topic, Bytes::copy_from_slice(payload), options);
        self.bounded(queued).await
    }

    /// Queues a subscription; a [`LinkEvent::Subscribed`] follows.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<(), LinkError> {
        self.bounded(self.client.subscribe(filter, qos)).await
    }

    /// A request queued within the stall bound.
    async fn bounded<E>(
        &self,
        queued: impl Future<Output = Result<(), E>>,
    ) -> Result<(), LinkError> {
        match tokio::time::timeout(self.stall_after, queued).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.closed()),
            Err(_) => Err(LinkError::Stalled {
                server: self.server.clone(),
                waited: self.stall_after,
            }),
        }
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

/// Makes the kernel fail the connection when sent data stays unacknowledged for `after`
/// (RFC 5482); without it a dead path is retried for a quarter of an hour.
fn give_up_unacknowledged_after(
    tcp: &tokio::net::TcpStream,
    after: Duration,
) -> std::io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(after))?;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
    let _ = (tcp, after);
    Ok(())
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    #[tokio::test]
    async fn unacknowledged_data_times_the_socket_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        give_up_unacknowledged_after(&tcp, Duration::from_millis(4_500)).unwrap();
        assert_eq!(
            socket2::SockRef::from(&tcp).tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(4_500))
        );
    }
}
