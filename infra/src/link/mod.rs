//! The MQTT link: one MQTT 3.1.1 connection to one server, with its will.
//!
//! A [`Link`] is one CONNECT: it never reconnects by itself, because a Sparkplug client
//! needs a new will on every connect (the edge node's bdSeq, the host's STATE timestamp).
//! The owner opens a new `Link` per attempt, choosing the server and the delay between
//! attempts (see [`Backoff`]).
//!
//! - [`backoff`]: delays between attempts and the start-up delay;
//! - [`counting`]: bytes sent and received, under TLS.
//!
//! A dead path that acknowledges nothing must not hold the owner: the connect is bounded
//! by [`LinkOptions::connect_timeout`], the socket gives up on data unacknowledged for 1.5
//! keep-alives (`TCP_USER_TIMEOUT`), and a request that cannot even be queued for a
//! keep-alive (the client's queue full behind a stuck socket) fails as
//! [`LinkError::Stalled`]. A path that swallows packets without closing is noticed by
//! the MQTT keep-alive (no PINGRESP); paths that acknowledge TCP for a dead peer are the
//! owner's liveness checks to catch.

pub mod backoff;
pub mod counting;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, Event, MqttOptions, Packet, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use backoff::{Backoff, BackoffSettings, startup_delay};
pub use counting::{ByteCounters, CountingStream};
pub use rumqttc::{LastWill, QoS, SubscribeFilter, valid_filter};

use crate::secret::Secret;
use crate::tls::{self, ClientTls};
use crate::url::{MqttUrl, host_port};

/// An MQTT server to connect to as an ordinary client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// TLS when set (`mqtts://`).
    pub tls: Option<ClientTls>,
    pub credentials: Option<Credentials>,
}

/// A login. The password goes into CONNECT only, never into a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Option<Secret>,
}

impl Endpoint {
    /// The endpoint a parsed URL names; `tls` must be given for `mqtts://`/`ssl://` (a CA
    /// file is always required) and is ignored for a plain URL.
    pub fn from_url(
        url: &MqttUrl,
        tls: Option<ClientTls>,
        credentials: Option<Credentials>,
    ) -> Endpoint {
        Endpoint {
            host: url.host.clone(),
            port: url.port(),
            tls: if url.tls { tls } else { None },
            credentials,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}", host_port(&self.host, self.port))
    }
}

/// Everything one connection needs; none of it depends on an application's config types.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub endpoint: Endpoint,
    pub client_id: String,
    /// MQTT keep-alive; also the stall bound and 2/3 of the TCP give-up time.
    pub keep_alive: Duration,
    /// How long TCP connect may take.
    pub connect_timeout: Duration,
    pub will: Option<LastWill>,
    /// Largest packet sent or accepted; rumqttc's default (10 KiB) when `None`.
    pub max_packet_size: Option<usize>,
    pub clean_session: bool,
    /// Requests queued in the client before [`Link::publish`] waits for room.
    pub request_capacity: usize,
}

impl LinkOptions {
    /// Options with the defaults: keep-alive 30 s, connect timeout 10 s, no will, clean
    /// session, 64 queued requests.
    pub fn new(endpoint: Endpoint, client_id: impl Into<String>) -> LinkOptions {
        LinkOptions {
            endpoint,
            client_id: client_id.into(),
            keep_alive: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            will: None,
            max_packet_size: None,
            clean_session: true,
            request_capacity: 64,
        }
    }
}

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
    requests: Requests,
    events: mpsc::Receiver<LinkEvent>,
    task: JoinHandle<()>,
}

/// The sending half of a [`Link`], cheap to clone: for tasks that publish on the owner's
/// connection (commands). It fails as closed once the link is gone.
#[derive(Debug, Clone)]
pub struct Requests {
    server: String,
    /// How long a request may wait for room in the client's queue.
    stall_after: Duration,
    client: AsyncClient,
}

impl Link {
    /// Starts connecting; [`LinkEvent::Connected`] or [`LinkEvent::Lost`] tells how it
    /// went. Fails only when the TLS files cannot be used.
    pub fn open(options: LinkOptions, bytes: Arc<ByteCounters>) -> Result<Link, LinkError> {
        let endpoint = &options.endpoint;
        let shown = endpoint.to_string();
        // The broker name is what TLS verifies; the socket goes to `host` regardless.
        let name = endpoint
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .unwrap_or_else(|| endpoint.host.clone());
        let mut mqtt = MqttOptions::new(options.client_id.clone(), (name, endpoint.port));
        mqtt.set_keep_alive(u16::try_from(options.keep_alive.as_secs()).unwrap_or(u16::MAX));
        mqtt.set_clean_session(options.clean_session);
        if let Some(will) = options.will.clone() {
            mqtt.set_last_will(will);
        }
        if let Some(max) = options.max_packet_size {
            mqtt.set_max_packet_size(max, max);
        }
        if let Some(login) = &endpoint.credentials {
            match &login.password {
                Some(p) => mqtt.set_credentials(login.username.clone(), p.expose().to_owned()),
                None => mqtt.set_username(login.username.clone()),
            };
        }
        if let Some(tls) = &endpoint.tls {
            let config = tls::client_config(tls).map_err(|source| LinkError::Tls {
                server: shown.clone(),
                source,
            })?;
            mqtt.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        }
        let address = host_port(&endpoint.host, endpoint.port);
        let timeout = options.connect_timeout;
        let unacknowledged = options.keep_alive * 3 / 2;
        mqtt.set_socket_connector(move |_broker, network| {
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
        let options_capacity = options.request_capacity.max(1);
        let (client, mut eventloop) = AsyncClient::builder(mqtt)
            .capacity(options_capacity)
            .build();
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
            requests: Requests {
                server: shown,
                stall_after: options.keep_alive,
                client,
            },
            events,
            task,
        })
    }

    /// The server as `mqtt://host:port`.
    pub fn server(&self) -> &str {
        &self.requests.server
    }

    /// A sender on this connection for other tasks.
    pub fn requests(&self) -> Requests {
        self.requests.clone()
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
        self.requests.publish(topic, qos, retain, payload).await
    }

    /// Queues a subscription; a [`LinkEvent::Subscribed`] follows.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<(), LinkError> {
        self.requests.subscribe(filter, qos).await
    }

    /// Queues one SUBSCRIBE for several filters; one [`LinkEvent::Subscribed`] follows,
    /// granted only if every filter was.
    pub async fn subscribe_many(
        &self,
        filters: impl IntoIterator<Item = SubscribeFilter>,
    ) -> Result<(), LinkError> {
        self.requests.subscribe_many(filters).await
    }

    /// Sends DISCONNECT after everything queued, then waits (bounded) for the
    /// connection to end. Without DISCONNECT the server would publish the will.
    pub async fn close(mut self, wait: Duration) {
        let _ = self.requests.client.disconnect().await;
        let _ =
            tokio::time::timeout(wait, async { while self.events.recv().await.is_some() {} }).await;
        self.task.abort();
    }

    /// Drops the connection without DISCONNECT (the server then publishes the will).
    pub fn abort(self) {
        self.task.abort();
    }
}

impl Requests {
    /// The server as `mqtt://host:port`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Queues a publish (in order with every other request of the link).
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

    /// Queues a subscription; a [`LinkEvent::Subscribed`] follows on the link.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<(), LinkError> {
        self.bounded(self.client.subscribe(filter, qos)).await
    }

    /// Queues one SUBSCRIBE for several filters.
    pub async fn subscribe_many(
        &self,
        filters: impl IntoIterator<Item = SubscribeFilter>,
    ) -> Result<(), LinkError> {
        self.bounded(self.client.subscribe_many(filters)).await
    }

    /// A request queued within the stall bound.
    async fn bounded<E>(
        &self,
        queued: impl Future<Output = Result<(), E>>,
    ) -> Result<(), LinkError> {
        match tokio::time::timeout(self.stall_after, queued).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(LinkError::Closed {
                server: self.server.clone(),
            }),
            Err(_) => Err(LinkError::Stalled {
                server: self.server.clone(),
                waited: self.stall_after,
            }),
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
