//! The embedded broker's lifecycle: rumqttd on a dedicated thread behind internal
//! loopback listeners, our front listeners bound to the configured addresses, and a stop
//! that closes every front listener and client connection.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::RngCore;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, info, info_span};

use super::BrokerError;
use super::acl::Acl;
use super::admission::Limits;
use super::codec::{self, Connect, LEVEL_5, LEVEL_311};
use super::config::{EmbeddedConfig, Secret};
use super::endpoint::{Credentials, MqttEndpoint};
use super::front::{Front, Upstream};

/// Attempts, and the pause between them, while waiting for rumqttd to accept.
const READY_ATTEMPTS: u32 = 200;
const READY_PAUSE: Duration = Duration::from_millis(25);
/// Extra rumqttd connections beyond the client limit: will relays and readiness probes.
const INTERNAL_CONNECTIONS: usize = 64;

/// How many MQTT clients hold a connection to the embedded broker now.
#[derive(Debug, Clone)]
pub struct ClientGauge {
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl ClientGauge {
    pub fn connected(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }
}

/// A running embedded broker. Dropping it closes its listeners and connections in the
/// background; [`EmbeddedBroker::stop`] also waits for that.
pub struct EmbeddedBroker {
    plain_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    front: Arc<Front>,
}

impl EmbeddedBroker {
    /// Validates `config`, binds the configured listeners, starts rumqttd and returns once
    /// both accept MQTT clients. Must be called within a tokio runtime.
    pub async fn start(config: &EmbeddedConfig) -> Result<EmbeddedBroker, BrokerError> {
        let mut config = config.clone();
        config.validate()?;
        let config = &config;
        let acl = Arc::new(Acl::from_config(config)?);
        let tls = match &config.tls {
            Some(tls) => Some((
                tls.listen,
                TlsAcceptor::from(super::tls::server_config(tls)?),
            )),
            None => None,
        };

        // Front listeners first: a taken port is reported before rumqttd is started.
        let plain = if config.plain.enabled {
            Some(bind(config.plain.listen).await?)
        } else {
            None
        };
        let tls = match tls {
            Some((addr, acceptor)) => Some((bind(addr).await?, acceptor)),
            None => None,
        };

        let upstream = start_rumqttd(config)?;
        wait_until_ready(&upstream).await?;

        let front = Arc::new(Front::new(
            upstream,
            acl,
            Duration::from_millis(config.connection_timeout_ms),
            config.max_payload_size,
            config.max_connections,
            Limits {
                max_pending: config.max_pending_connections,
                max_per_address: config.max_connections_per_address,
                rate: config.connect_rate,
                rate_per_address: config.connect_rate_per_address,
            },
            config.max_keepalive_s,
        ));
        let mut broker = EmbeddedBroker {
            plain_addr: None,
            tls_addr: None,
            front: front.clone(),
        };
        if let Some(listener) = plain {
            let addr = local_addr(&listener)?;
            broker.plain_addr = Some(addr);
            info!(%addr, "MQTT listener (plain) ready");
            front.tasks.spawn(
                front
                    .clone()
                    .accept_loop(listener, None)
                    .instrument(info_span!("mqtt_listener", %addr, tls = false)),
            );
        }
        if let Some((listener, acceptor)) = tls {
            let addr = local_addr(&listener)?;
            broker.tls_addr = Some(addr);
            info!(%addr, "MQTT listener (TLS) ready");
            front.tasks.spawn(
                front
                    .clone()
                    .accept_loop(listener, Some(acceptor))
                    .instrument(info_span!("mqtt_listener", %addr, tls = true)),
            );
        }
        Ok(broker)
    }

    /// Counts the connected MQTT clients, for the System page.
    pub fn client_gauge(&self) -> ClientGauge {
        ClientGauge {
            permits: Arc::clone(&self.front.permits),
            max: self.front.max_connections,
        }
    }

    /// The plain listener's bound address (the real port when configured with port 0).
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// The TLS listener's bound address.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The endpoint the host's own session uses: the plain listener, over loopback when it
    /// listens on every address, logged in as `host_username`.
    pub fn host_endpoint(&self, config: &EmbeddedConfig) -> MqttEndpoint {
        let addr = self
            .plain_addr
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 1883)));
        let ip = if addr.ip().is_unspecified() {
            match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            }
        } else {
            addr.ip()
        };
        let credentials = config.host_username.as_ref().map(|name| Credentials {
            username: name.clone(),
            password: config
                .users
                .iter()
                .find(|u| &u.username == name)
                .and_then(|u| u.password().cloned()),
        });
        MqttEndpoint {
            host: ip.to_string(),
            port: addr.port(),
            tls: None,
            credentials,
        }
    }

    /// Closes the listeners and every client connection, and waits for that to finish.
    /// No wills are published for connections closed by the stop. rumqttd's own threads
    /// stay parked on their internal loopback ports until the process exits: rumqttd 0.20
    /// has no shutdown.
    pub async fn stop(self) {
        self.front.shutdown.cancel();
        self.front.tasks.close();
        self.front.tasks.wait().await;
        info!("MQTT broker stopped");
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.front.shutdown.cancel();
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BrokerError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, BrokerError> {
    listener.local_addr().map_err(|source| BrokerError::Bind {
        addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        source,
    })
}

/// Two distinct loopback ports free right now. rumqttd cannot report the port it bound,
/// so ports are chosen here and released for rumqttd to bind; the readiness probe then
/// proves that it is rumqttd (with our internal credential) that answers on them.
fn free_loopback_ports() -> Result<(SocketAddr, SocketAddr), BrokerError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let bind = || StdTcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source });
    // Both held at once, so they differ.
    let (one, two) = (bind()?, bind()?);
    let local = |l: &StdTcpListener| {
        l.local_addr()
            .map_err(|source| BrokerError::Bind { addr, source })
    };
    Ok((local(&one)?, local(&two)?))
}

fn random_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn start_rumqttd(config: &EmbeddedConfig) -> Result<Upstream, BrokerError> {
    let (v4, v5) = free_loopback_ports()?;
    let upstream = Upstream {
        v4,
        v5,
        username: format!("host-broker-{}", random_secret()),
        password: Secret::new(random_secret()),
    };
    let connections = rumqttd::ConnectionSettings {
        // The front already waited for CONNECT; it forwards it at once.
        connection_timeout_ms: 10_000,
        max_payload_size: config.max_payload_size,
        // Only the batch of incoming packets read at once: rumqttd fixes the QoS 1/2
        // messages in flight to a subscriber at 100 (iobufs.rs MAX_INFLIGHT).
        max_inflight_count: 100,
        auth: Some(HashMap::from([(
            upstream.username.clone(),
            upstream.password.expose().to_owned(),
        )])),
        external_auth: None,
        dynamic_filters: false,
    };
    let server = |name: &str, listen| rumqttd::ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: connections.clone(),
    };
    let segment_size = (config.max_payload_size * 2).max(1024 * 1024);
    let rumqttd_config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: config.max_connections + INTERNAL_CONNECTIONS,
            max_outgoing_packet_count: 200,
            max_segment_size: segment_size,
            max_segment_count: 8,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([(
            "internal-v4".to_owned(),
            server("internal-v4", upstream.v4),
        )])),
        v5: Some(HashMap::from([(
            "internal-v5".to_owned(),
            server("internal-v5", upstream.v5),
        )])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".to_owned())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(rumqttd_config);
            // Blocks for the life of the process unless every listener fails.
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "rumqttd stopped");
            }
        })
        .map_err(|e| BrokerError::Start(format!("cannot spawn the broker thread: {e}")))?;
    Ok(upstream)
}

/// Waits until rumqttd answers an MQTT CONNECT with our credential on both listeners.
async fn wait_until_ready(upstream: &Upstream) -> Result<(), BrokerError> {
    for (addr, level) in [(upstream.v4, LEVEL_311), (upstream.v5, LEVEL_5)] {
        let mut ready = false;
        for attempt in 0..READY_ATTEMPTS {
            if probe(upstream, addr, level, attempt).await {
                ready = true;
                break;
            }
            tokio::time::sleep(READY_PAUSE).await;
        }
        if !ready {
            return Err(BrokerError::Start(format!(
                "rumqttd did not accept MQTT on {addr} in time"
            )));
        }
    }
    Ok(())
}

async fn probe(upstream: &Upstream, addr: SocketAddr, level: u8, attempt: u32) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let connect = Connect {
            level,
            clean_start: true,
            keep_alive: 10,
            properties: Bytes::new(),
            // A fresh id per attempt: rumqttd panics on an id whose CONNECT failed before.
            client_id: Bytes::from(format!("host-broker-probe-{level}-{attempt}")),
            will: None,
            will_properties: Bytes::new(),
            username: Some(Bytes::from(upstream.username.clone())),
            password: Some(Bytes::from(upstream.password.expose().to_owned())),
        };
        let mut out = BytesMut::new();
        connect.encode(&mut out);
        stream.write_all(&out).await.ok()?;
        let connack = codec::read_packet(&mut stream, 1024).await.ok()?;
        let accepted = codec::connack_code(&connack).ok()? == 0;
        // Closed without DISCONNECT: rumqttd must not see a DISCONNECT and a close race.
        drop(stream);
        Some(accepted)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}
