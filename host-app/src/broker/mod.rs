//! The MQTT broker seam. By configuration the host either runs an embedded broker
//! (rmqtt behind our own front) or connects to an external MQTT 3.1.1/5 broker; the rest
//! of the host only sees an [`MqttEndpoint`] to connect to as an ordinary client.
//!
//! # The embedded broker
//!
//! The engine is rmqtt 0.24 (module `engine`), built without its TLS, WebSocket and
//! QUIC transports (its TLS hard-wires the aws-lc-rs provider), on a tokio runtime of
//! its own: one thread owns the runtime, and [`EmbeddedBroker::stop`] drops it, which
//! ends every engine task and every front listener and connection (they run there too).
//! The engine has no listener of its own: the front hands it each logged-in client's
//! stream (the accepted socket, TLS already terminated) with the client's real address,
//! and rmqtt serves it with its own per-connection handler (made public by a two-line
//! patch, see vendor/README.md), with read and write buffers that start small (512
//! bytes, none) and grow while the client is busy instead of rmqtt-net's fixed 8 KiB
//! each. The username the engine sees carries the account the front authenticated
//! (empty for anonymous). Its publish and subscribe ACL hooks ask
//! the [`policy::TopicPolicy`]: a refused SUBSCRIBE gets the failure code (0x80; MQTT 5:
//! 0x87), a refused PUBLISH is acknowledged as Mosquitto does (MQTT 5: PUBACK 0x87), not
//! delivered, and logged at WARN. Retained messages are kept by module `retained` (rmqtt
//! keeps none without a retainer plugin), bounded by count and bytes. With a state
//! directory and `persist` on, retained messages and the sessions clients ask to keep
//! (their subscriptions and queued QoS 1/2 messages) survive a restart: module `store`
//! writes them to `broker.db` in batches, module `sessions` tells it of each kept
//! session's changes and rebuilds the sessions at start. Shared subscriptions
//! (`$share/{group}/...`) go round robin.
//!
//! Every client meets our own front first (module `front`): plain and TLS listeners
//! (tokio-rustls, ring provider, optional or required client certificates, whose Common
//! Name or first Subject Alternative Name may be the account: `certificate_username`), admission at
//! accept, the deadline for TLS + CONNECT, the login and client id checks of the access
//! rules (module `acl`: accounts with roles, default deny) and the will topic's check.
//! The front keeps two pools: sockets that have not sent CONNECT yet
//! (`max_pending_connections`; when full the oldest is closed, so silent or trickling
//! sockets cannot lock valid users out: SlowITe, CVE-2020-13849) and logged-in connections
//! (`max_connections`; a CONNECT over it gets "server unavailable"). New sockets are also
//! held to `max_connections_per_address` at once and to the connect rates
//! `connect_rate_per_address` and `connect_rate` (closed at once when over). It grants at
//! most `max_keepalive_s` (a CONNECT asking 0 or more gets the maximum, as Mosquitto's
//! `max_keepalive`) by rewriting the CONNECT the engine reads; the engine tells MQTT 5
//! clients through the CONNACK's Server Keep Alive and closes a client silent for 1.5
//! times the keep-alive granted (under 6 s: 3 s more than it). Only a CONNECT of
//! the same account (or anonymous for anonymous) may take a session over. The stream is
//! then handed to the engine (module `handoff`). Ports given as 0 are reported by
//! [`EmbeddedBroker::plain_addr`] and [`EmbeddedBroker::tls_addr`].
//!
//! The embedded broker is a Sparkplug Aware MQTT Server (Sparkplug 3.0, chapter 10):
//! the engine keeps each NBIRTH and DBIRTH a client may publish, retained, under
//! `$sparkplug/certificates/` + its topic (the most recent one of each topic), so a host
//! that joins late sees every node at once; the births themselves are delivered as
//! published (retain false). NDEATH passes unchanged (the server MAY replace its
//! timestamp; this one does not), and the stored NBIRTH stays after it.
//!
//! # What rmqtt 0.24 gets wrong, and what the front does about it
//!
//! Each seen with a real client; `tests/broker_reconnect.rs` runs the reconnect loops
//! against rmqtt alone too and prints what it does there.
//!
//! - **Nothing times out a socket before its first packet, and nothing caps sockets.**
//!   The front does both (the CONNECT deadline, the pending pool, the per-address and
//!   logged-in limits) before a byte reaches the engine.
//! - **A quick reconnect with the same client id is refused** as "server unavailable"
//!   (about 1 in 200 alone): the engine is still taking the previous connection apart.
//!   The front hands over a CONNECT for a client id only once the engine has ended the
//!   previous connection with that id (it ends it itself on takeover), and hands a
//!   CONNECT the engine answers "server unavailable" over again (the answer held back
//!   from the client), up to 40 times 25 ms apart, before passing the refusal on.
//! - **A reconnect right after a clean disconnect reports a stale session present**
//!   (16 in 200 alone). A connection counts as ended for its client id only once the
//!   engine lets go of its stream: after the will and the session's removal for a clean
//!   session, before the offline wait for a kept one (our patch drops the stream there),
//!   so the engine has finished with the session before the client id is used again.
//! - **Wills skip the publish ACL check.** The will topic is fixed at CONNECT, so the
//!   front asks the policy there, as Mosquitto does, and refuses the CONNECT (5 "not
//!   authorized"; MQTT 5: 0x87). Wills themselves stay with the engine (will delay and
//!   properties kept); the front logs each will the engine is about to publish.
//! - **An MQTT 5 DISCONNECT with reason 0x04** ("Disconnect with Will Message") discards
//!   the will. The stream the engine reads ends just before that DISCONNECT, for which
//!   the engine publishes the will.
//! - **Session takeover of a persistent session drops the old will**: the engine
//!   publishes no will for a connection it kicks out. The front does takeover itself (it
//!   closes the old connection, so the engine publishes its will, and then forwards the
//!   new CONNECT), so the old NDEATH arrives before the new NBIRTH.
//! - **A PUBLISH with an invalid Topic Alias** (0, or above the maximum) closed the
//!   connection without the DISCONNECT 0x94 that should come first: fixed in
//!   `vendor/rmqtt` and `vendor/rmqtt-codec` (vendor/README.md), checked by
//!   `tests/broker_paho.rs` (the Paho suites pass every test Mosquitto passes).
//! - **Messages expire after 5 minutes by default**, retained ones included (a host's
//!   STATE would vanish, and a kept session offline for longer would lose its queued
//!   messages). The engine is given no default expiry (zero, which rmqtt's delivery
//!   reads as none), and module `retained` ignores the default rmqtt still hands it
//!   (zero would make it keep no retained message at all): a message expires only by its
//!   own MQTT 5 Message Expiry Interval, as Mosquitto does. A persistent MQTT 3.1.1
//!   session is kept 2 hours after its client leaves (rmqtt's default; MQTT 5 clients
//!   set their own).
//! - **It logs through the `log` crate**: lines show with target `rmqtt::...`; ordinary
//!   kicks are logged at WARN by `rmqtt::shared`.
//!
//! Settings: QoS 1/2 messages in flight to a subscriber are 100, and up to
//! `max_queued_messages` (default 1,000,000) more are queued per subscriber; rmqtt does
//! not hold publishers back, so a subscriber further behind than that loses the oldest
//! QoS 1/2 messages (QoS 0: the newest), each logged at WARN by the engine.
//!
//! What Sparkplug needs from a broker and the embedded one provides (see the
//! `broker_*` tests): QoS 0 and QoS 1 publish/subscribe delivered at the lower of the
//! publish and subscription QoS, retained messages (host STATE) delivered to later
//! subscribers and cleared by an empty retained publish, wildcard subscriptions such as
//! `spBv1.0/#`, clean and persistent sessions, and the NDEATH will delivered at QoS 1
//! when the client's connection drops or falls silent without DISCONNECT.

pub mod acl;
mod acl_file;
mod admission;
mod codec;
pub mod config;
mod embedded;
mod endpoint;
mod engine;
mod front;
mod handoff;
pub mod policy;
mod retained;
mod sessions;
mod store;
mod tls;
mod topic_filter;

pub(crate) use tls::tls_key;

pub use acl::{Acl, AclChanges, Denied, Login};
pub use config::{
    AnonymousConfig, BrokerConfig, BrokerMode, CertificateName, ClientCertificates, ConfigError,
    EmbeddedConfig, ExternalConfig, ExternalTlsConfig, PlainListenerConfig, Role, Secret,
    TlsListenerConfig, UserConfig,
};
pub use embedded::{AccountsReloaded, ClientGauge, EmbeddedBroker};
pub use endpoint::{Broker, Credentials, MqttEndpoint};
pub use engine::MessageCounters;
pub use policy::TopicPolicy;
pub use store::{STORE_FILE, StoreError};

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
    #[error(transparent)]
    Store(#[from] StoreError),
}
