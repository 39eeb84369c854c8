//! The MQTT broker seam. By configuration the host either runs an embedded broker
//! (rumqttd) or connects to an external MQTT 3.1.1/5 broker; the rest of the host only
//! sees an [`MqttEndpoint`] to connect to as an ordinary client.
//!
//! # The embedded broker
//!
//! rumqttd 0.20 is built without its TLS feature (it pins rustls-webpki 0.102, which has
//! open advisories, and reads PEM paths only) and listens on internal loopback ports,
//! one for MQTT 3.1.1 and one for MQTT 5, guarded by a random credential only this
//! process knows. Every client meets our own front first (module `front`): plain and TLS
//! listeners (tokio-rustls, ring provider, optional or required client certificates),
//! the connection limit, the deadline for TLS + CONNECT (so idle or slow sockets cannot
//! exhaust the limit), the login and client id checks of the access rules (module `acl`:
//! accounts with roles, default deny), session takeover and the Last Will. The decrypted stream is then proxied to rumqttd. Ports given as 0 are
//! reported by [`EmbeddedBroker::plain_addr`] and [`EmbeddedBroker::tls_addr`].
//!
//! # What rumqttd 0.20 gets wrong, and what the front does about it
//!
//! Seen with a real client (the poisoned listener, takeover, wrong password, keep alive 0,
//! the double disconnect) or read in rumqttd's source (`server/broker.rs`,
//! `router/routing.rs`, `router/iobufs.rs`).
//!
//! - **A failed CONNECT poisons the listener.** When a CONNECT passes rumqttd's login but
//!   then fails (for instance a client id holding one of `+$#/`, which rumqttd refuses
//!   without CONNACK), rumqttd leaves a stale will entry behind; the next CONNECT with
//!   that client id panics while holding a lock, and from then on every new connection
//!   on that listener panics too. The front gives each clean-session connection an
//!   upstream client id of its own (the client's id with `+$#/` replaced, plus a serial
//!   number) and refuses persistent sessions whose id rumqttd cannot hold (CONNACK 2).
//! - **Session takeover loses the will.** When a client reconnects with the same id while
//!   its old connection is still open (a half-open link after a satellite drop), rumqttd
//!   publishes the *new* connection's will at once and nothing when the new connection
//!   later dies: the host would see a wrong NDEATH, then none. The front does takeover
//!   itself: it closes the old connection, publishes the old will and only then forwards
//!   the new CONNECT, so the old NDEATH arrives before the new NBIRTH. Only a CONNECT of
//!   the same account (or anonymous for anonymous) may take a session over.
//! - **Wills** are therefore kept by the front: it strips the will from the CONNECT it
//!   forwards and publishes it itself, through a short internal connection, when the
//!   session ends without DISCONNECT (socket closed or broken, keep-alive expired and
//!   rumqttd closing the connection, protocol error, takeover). A DISCONNECT discards it;
//!   an MQTT 5 DISCONNECT with reason 0x04 publishes it. QoS and retain are kept (QoS 2
//!   wills go out at QoS 1); MQTT 5 will properties and the will delay are not kept (the
//!   will goes out at once). A stop of the broker publishes no wills.
//! - **A DISCONNECT can drop another client.** When the socket closes while rumqttd is
//!   still handling the DISCONNECT, it disconnects the connection id twice; ids are
//!   reused, so the second disconnect can drop a client that just connected (which would
//!   then lose its session and have its will published). The front leaves the upstream
//!   socket open after a DISCONNECT until rumqttd closes it (at most 5 s), and its own
//!   probes and will relays close without DISCONNECT.
//! - **MQTT 5 DISCONNECT with a reason code only** (remaining length 1, which MQTT 5
//!   allows) is never acted on: rumqttd waits for a properties length that does not come.
//!   The front closes such a connection itself (and publishes the will for reason 0x04).
//! - **Wrong password.** rumqttd closes the socket without a CONNACK. The front checks
//!   logins itself and answers CONNACK 4 "bad username or password" (5 "not authorized"
//!   without credentials; 0x86/0x87 for MQTT 5), then closes.
//! - **Keep alive 0** is refused by rumqttd without CONNACK. The front grants at most
//!   `max_keepalive_s` (a CONNECT asking 0 or more gets the maximum, as Mosquitto's
//!   `max_keepalive`), tells MQTT 5 clients through the CONNACK's Server Keep Alive, and
//!   itself closes a client silent for 1.5 times the keep-alive granted.
//! - **Connection limit.** rumqttd, when full, leaves the client without a CONNACK. The
//!   front keeps two pools: sockets that have not sent CONNECT yet
//!   (`max_pending_connections`; when full the oldest is closed, so silent or trickling
//!   sockets cannot lock valid users out: SlowITe, CVE-2020-13849) and logged-in
//!   connections (`max_connections`; a CONNECT over it gets "server unavailable"). New
//!   sockets are also held to `max_connections_per_address` at once and to the connect
//!   rates `connect_rate_per_address` and `connect_rate` (closed at once when over).
//!   rumqttd's own limit is set above ours.
//! - **No shutdown, no port 0.** `Broker::start` blocks forever and cannot report a bound
//!   port. rumqttd runs on its own thread; its internal ports are picked free (bound and
//!   released, a short race with other processes) and probed with a real CONNECT until it
//!   answers. [`EmbeddedBroker::stop`] closes our listeners and every client connection;
//!   rumqttd's threads stay parked on their loopback ports until the process exits.
//!
//! Deviations left as they are:
//!
//! - Messages are delivered at the *subscription's* QoS, not the minimum of publish and
//!   subscription QoS: a QoS 0 publish reaches a QoS 1 subscriber at QoS 1.
//! - Any publish with an empty payload, retained or not, clears the retained message of
//!   its topic (MQTT says only retained ones do). Sparkplug never publishes empty payloads.
//! - Retained messages are sent on a filter's first SUBSCRIBE in a session only, and at
//!   most as many as the subscriber's free in-flight slots (100 for QoS 1).
//! - QoS 1/2 messages in flight to a subscriber are fixed at 100 per connection; there is
//!   no setting for it (rumqttd's `max_inflight_count` only sizes read batches).
//! - Data is kept per subscription filter in an in-memory log (8 segments of
//!   max(1 MiB, 2 × `max_payload_size`)); a subscriber further behind than that skips
//!   messages.
//! - A clean-session CONNECT does not discard an earlier persistent session of the same
//!   client id inside rumqttd (clean sessions run under upstream ids of their own); that
//!   session stays parked until a persistent CONNECT with the id resumes it.
//! - rumqttd logs ordinary disconnections at ERROR level; filter target `rumqttd` in the
//!   host's log configuration.
//!
//! What Sparkplug needs from a broker and the embedded one provides (see the
//! `broker_*` tests): QoS 0 and QoS 1 publish/subscribe, retained messages (host STATE)
//! delivered to later subscribers and cleared by an empty retained publish, wildcard
//! subscriptions such as `spBv1.0/#`, clean sessions, and the NDEATH will delivered at
//! QoS 1 when the client's connection drops or falls silent without DISCONNECT.

pub mod acl;
mod acl_file;
mod admission;
mod codec;
pub mod config;
mod embedded;
mod endpoint;
mod front;
pub mod policy;
mod read_buffer;
mod tls;
mod topic_filter;

pub(crate) use tls::tls_key;

pub use acl::{Acl, Denied, Login};
pub use config::{
    AnonymousConfig, BrokerConfig, BrokerMode, ClientCertificates, ConfigError, EmbeddedConfig,
    ExternalConfig, ExternalTlsConfig, PlainListenerConfig, Role, Secret, TlsListenerConfig,
    UserConfig,
};
pub use embedded::{ClientGauge, EmbeddedBroker};
pub use endpoint::{Broker, Credentials, MqttEndpoint};
pub use policy::TopicPolicy;

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
