//! The MQTT broker seam. By configuration the host either runs an embedded broker
//! (rumqttd) or connects to an external MQTT 3.1.1/5 broker; the rest of the host only
//! sees an [`MqttEndpoint`] to connect to as an ordinary client.
//!
//! # The embedded broker
//!
//! rumqttd 0.20 is built without its TLS feature (it pins rustls-webpki 0.102, which has
//! open advisories, and reads PEM paths only) and listens on internal loopback ports,
//! one for MQTT 3.1.1 and one for MQTT 5, guarded by a random credential only this
//! process knows. Every client meets our own front first ([`front`]): plain and TLS
//! listeners (tokio-rustls, ring provider, optional or required client certificates),
//! the connection limit, the deadline for TLS + CONNECT (so idle sockets cannot exhaust
//! the limit), username/password checks in constant time, and the Last Will. Ports given
//! as 0 are reported by [`EmbeddedBroker::plain_addr`] and [`EmbeddedBroker::tls_addr`].
//!
//! # What rumqttd 0.20 gets wrong, and what the front does about it
//!
//! - **Will on session takeover.** rumqttd keeps wills per client id; when a client
//!   reconnects with the same id while its old connection is still open (a half-open TCP
//!   link after a satellite drop), the old connection's end publishes and removes the
//!   *new* connection's will, so the new session dies later without NDEATH. The front
//!   therefore strips the will from the CONNECT it forwards and publishes it itself,
//!   through a short internal connection, when the client's session ends without
//!   DISCONNECT (socket closed or broken, or rumqttd closing it: keep-alive, protocol
//!   error, takeover). A DISCONNECT discards it; an MQTT 5 DISCONNECT with reason 0x04
//!   publishes it. QoS and retain are kept (QoS 2 wills go out at QoS 1); MQTT 5 will
//!   properties and the will delay are not kept (the will goes out at once). A stop of the
//!   broker publishes no wills.
//! - **Wrong password.** rumqttd closes the socket without a CONNACK. The front checks
//!   logins itself and answers CONNACK 4 "bad username or password" (5 "not authorized"
//!   without credentials; 0x86/0x87 for MQTT 5), then closes.
//! - **Keep alive 0** is refused by rumqttd (no CONNACK); the front forwards 65535 s
//!   instead, so such a client is dropped by rumqttd after ~27 h of silence.
//! - **Connection limit.** rumqttd, when full, leaves the client without a CONNACK. The
//!   front enforces the limit and closes new sockets at once; rumqttd's own limit is set
//!   above ours.
//! - **No shutdown, no port 0.** `Broker::start` blocks forever and cannot report a bound
//!   port. rumqttd runs on its own thread; its internal ports are picked free and probed
//!   with a real CONNECT until it answers. [`EmbeddedBroker::stop`] closes our listeners
//!   and every client connection; rumqttd's threads stay parked until the process exits.
//!
//! Deviations left as they are (documented, tested where they matter):
//!
//! - Messages are delivered at the *subscription's* QoS, not the minimum of publish and
//!   subscription QoS: a QoS 0 publish reaches a QoS 1 subscriber at QoS 1.
//! - Any publish with an empty payload, retained or not, clears the retained message of
//!   its topic (the MQTT specs say only retained ones do). Sparkplug never publishes
//!   empty payloads.
//! - Retained messages are sent on a filter's first SUBSCRIBE in a session only, and at
//!   most as many as the subscriber's free in-flight slots (`max_inflight` for QoS 1).
//! - Data is kept per subscription filter in an in-memory log (8 segments of
//!   max(1 MiB, 2 × `max_payload_size`)); a subscriber that falls further behind than that
//!   skips messages.
//!
//! What Sparkplug needs from a broker and the embedded one provides (see the
//! `broker_*` tests): QoS 0 and QoS 1 publish/subscribe, retained messages (host STATE)
//! delivered to later subscribers and cleared by an empty retained publish, wildcard
//! subscriptions such as `spBv1.0/#`, clean sessions, and the NDEATH will delivered at
//! QoS 1 when the client's connection drops without DISCONNECT.

mod codec;
pub mod config;
mod embedded;
mod endpoint;
mod front;
mod tls;

pub use config::{
    BrokerConfig, BrokerMode, ClientCertificates, ConfigError, EmbeddedConfig, ExternalConfig,
    ExternalTlsConfig, PlainListenerConfig, Secret, TlsListenerConfig, UserConfig,
};
pub use embedded::EmbeddedBroker;
pub use endpoint::{Broker, Credentials, EndpointTls, MqttEndpoint};

use std::net::SocketAddr;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker: {0}")]
    Start(String),
}
