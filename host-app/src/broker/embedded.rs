//! The embedded broker's lifecycle: the engine (rmqtt) on a runtime of its own, our front
//! listeners bound to the configured addresses and run on that runtime, and a stop that
//! ends the engine and with it every front listener and connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, info, info_span, warn};

use super::BrokerError;
use super::acl::{Acl, AclChanges, LiveAcl};
use super::admission::Limits;
use super::config::ConfigError;
use super::config::EmbeddedConfig;
use super::endpoint::{Credentials, MqttEndpoint};
use super::engine::{self, Engine, EngineSettings, EngineStore, MessageCounters};
use super::front::Front;
use super::retained::RetainedLimits;
use super::store::{self, StoreLimits};

/// QoS 1/2 messages in flight to one subscriber.
const MAX_INFLIGHT: u16 = 100;

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
    /// The TLS listener's certificate, re-read on SIGHUP.
    tls_cert: Option<Arc<infra::tls::ServerCert>>,
    counters: Arc<MessageCounters>,
    front: Arc<Front>,
    engine: Option<Engine>,
}

/// What [`EmbeddedBroker::reload_accounts`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsReloaded {
    pub changes: AclChanges,
    /// Connections ended because their account was removed or changed.
    pub connections_ended: usize,
    /// Sessions of those accounts cleared (kept ones included).
    pub sessions_cleared: usize,
}

impl std::fmt::Display for AccountsReloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.changes;
        if c.is_empty() {
            return f.write_str("broker accounts unchanged");
        }
        write!(
            f,
            "broker accounts applied: {} added, {} removed or changed{}; {} connection(s) ended, {} session(s) cleared",
            c.added.len(),
            c.ended.len(),
            if c.anonymous {
                ", anonymous access changed"
            } else {
                ""
            },
            self.connections_ended,
            self.sessions_cleared
        )
    }
}

/// How long a reload waits for each connection it ended to close.
const SESSION_END_WAIT: Duration = Duration::from_secs(10);

impl EmbeddedBroker {
    /// Validates `config`, binds the configured listeners, starts the engine and returns
    /// once both accept MQTT clients. The access rules of `config` decide every login and
    /// will at CONNECT (the front) and every PUBLISH and SUBSCRIBE (the engine). Must be
    /// called within a tokio runtime. Keeps nothing across a restart: see
    /// [`EmbeddedBroker::start_in`].
    pub async fn start(config: &EmbeddedConfig) -> Result<EmbeddedBroker, BrokerError> {
        Self::start_in(config, None).await
    }

    /// As [`EmbeddedBroker::start`]; with `state_dir` and `persist` on, retained messages
    /// and kept sessions are restored from, and written to, its [`store::STORE_FILE`].
    pub async fn start_in(
        config: &EmbeddedConfig,
        state_dir: Option<&Path>,
    ) -> Result<EmbeddedBroker, BrokerError> {
        let mut config = config.clone();
        config.validate()?;
        let config = &config;
        let acl = Arc::new(LiveAcl::new(Acl::from_config(config)?));
        let mut tls_cert = None;
        let tls = match &config.tls {
            Some(tls) => {
                let (server, cert) = super::tls::server_config(tls)?;
                tls_cert = Some(cert);
                Some((tls.listen, TlsAcceptor::from(server)))
            }
            None => None,
        };

        // Front listeners first: a taken port is reported before the engine is started.
        let plain = if config.plain.enabled {
            Some(bind(config.plain.listen).await?)
        } else {
            None
        };
        let tls = match tls {
            Some((addr, acceptor)) => Some((bind(addr).await?, acceptor)),
            None => None,
        };
        let plain_addr = plain.as_ref().map(|(_, addr)| *addr);
        let tls_addr = tls.as_ref().map(|((_, addr), _)| *addr);

        let counters = Arc::new(MessageCounters::default());
        let store = match state_dir.filter(|_| config.persist) {
            Some(dir) => {
                let limits = StoreLimits {
                    max_sessions: config.max_stored_sessions,
                    max_messages: config.max_stored_messages,
                    flush: Duration::from_millis(config.store_flush_ms),
                };
                let dir = dir.to_owned();
                let (loaded, writer, thread) =
                    tokio::task::spawn_blocking(move || store::open(&dir, limits))
                        .await
                        .map_err(|e| BrokerError::Start(format!("store: {e}")))??;
                Some(EngineStore {
                    loaded,
                    writer,
                    thread,
                })
            }
            None => None,
        };
        let engine = Engine::start(
            EngineSettings {
                max_packet_size: config.max_payload_size,
                max_connections: config.max_connections,
                max_inflight: MAX_INFLIGHT,
                max_queued: config.max_queued_messages,
                counters: Arc::clone(&counters),
                retained: RetainedLimits {
                    max_messages: config.max_retained_messages,
                    max_bytes: config.max_retained_bytes,
                },
                plain_addr,
                tls_addr,
            },
            acl.clone(),
            store,
        )?;
        info!("MQTT engine ready");

        let front = Arc::new(
            Front::new(
                engine.context().clone(),
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
            )
            .certificate_username(config.tls.as_ref().and_then(|t| t.certificate_username)),
        );
        // The listeners run on the engine's runtime, and so does every connection.
        let runtime = engine.handle().clone();
        if let Some((listener, addr)) = plain {
            info!(%addr, "MQTT listener (plain) ready");
            front.tasks.spawn_on(
                front
                    .clone()
                    .accept_loop(listener, None, engine::PLAIN)
                    .instrument(info_span!("mqtt_listener", %addr, tls = false)),
                &runtime,
            );
        }
        if let Some(((listener, addr), acceptor)) = tls {
            info!(%addr, "MQTT listener (TLS) ready");
            front.tasks.spawn_on(
                front
                    .clone()
                    .accept_loop(listener, Some(acceptor), engine::TLS)
                    .instrument(info_span!("mqtt_listener", %addr, tls = true)),
                &runtime,
            );
        }
        Ok(EmbeddedBroker {
            plain_addr,
            tls_addr,
            tls_cert,
            counters,
            front,
            engine: Some(engine),
        })
    }

    /// Applies the accounts and access rules of `config` (users, anonymous access, the
    /// ACL file read again) while the broker runs, as a reload does: logins and every
    /// PUBLISH and SUBSCRIBE check from now on follow them; connections of accounts
    /// removed or changed (password, role, rights, client ids) are ended, their wills
    /// published, and their kept sessions cleared (subscriptions and queued messages
    /// made under the old rules), so nobody keeps what they no longer have; the others go
    /// on untouched.
    /// A configuration with a problem, or one that changes the host's own account (its
    /// session holds the old login: a restart applies that), changes nothing.
    pub async fn reload_accounts(
        &self,
        config: &EmbeddedConfig,
    ) -> Result<AccountsReloaded, BrokerError> {
        let mut config = config.clone();
        config.validate()?;
        let acl = Acl::from_config(&config)?;
        // The host's own session logs in with what it read at start.
        if let Some(host) = &config.host_username
            && acl
                .changes_since(&self.front.acl.current())
                .ended
                .contains(host)
        {
            return Err(BrokerError::Config(ConfigError::new(
                "broker.embedded.users",
                format!("the host's own account {host:?} changed; restart to apply the accounts"),
            )));
        }
        let (changes, ended) = self.front.reload_acl(acl);
        let connections_ended = ended.len();
        // Wills first (the engine ends each connection as a lost one), then the sessions.
        for done in ended {
            if tokio::time::timeout(SESSION_END_WAIT, done.cancelled())
                .await
                .is_err()
            {
                warn!("a connection ended by the reload did not close in time");
            }
        }
        let sessions_cleared = self.clear_sessions(&changes).await;
        Ok(AccountsReloaded {
            changes,
            connections_ended,
            sessions_cleared,
        })
    }

    /// Ends and forgets every session (kept offline, or connected again meanwhile) of
    /// the accounts `changes` ends: a kept session would bring back subscriptions, and
    /// messages queued under them, that the new rules may not grant.
    async fn clear_sessions(&self, changes: &AclChanges) -> usize {
        let shared = self.front.engine.extends.shared().await;
        let ids: Vec<_> = shared
            .iter()
            .filter_map(|entry| entry.session())
            .filter(|s| changes.ends(s.id.username.as_deref()))
            .map(|s| s.id.clone())
            .collect();
        let mut cleared = 0;
        for id in ids {
            match shared.entry(id).kick(true, true, true).await {
                Ok(_) => cleared += 1,
                Err(e) => warn!(error = %e, "a session of a changed account not cleared"),
            }
        }
        cleared
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

    /// The messages the engine took in and delivered.
    pub fn message_counters(&self) -> Arc<MessageCounters> {
        Arc::clone(&self.counters)
    }

    /// The TLS listener's certificate, which a reload replaces for new connections.
    pub fn tls_cert(&self) -> Option<&Arc<infra::tls::ServerCert>> {
        self.tls_cert.as_ref()
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

    /// Ends the engine (its port closes), then closes the listeners and every client
    /// connection, and waits for all of that. The engine goes first, so the connections
    /// the stop closes publish no wills.
    pub async fn stop(mut self) {
        if let Some(engine) = self.engine.take() {
            engine.stop().await;
        }
        self.front.shutdown.cancel();
        self.front.tasks.close();
        self.front.tasks.wait().await;
        info!("MQTT broker stopped");
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        // Dropping the engine stops it; the front's tasks follow the cancellation.
        drop(self.engine.take());
        self.front.shutdown.cancel();
    }
}

/// Binds `addr` (tokio's socket options: address reuse) and returns the listener, taken
/// off this runtime to be run on the engine's, with its bound address.
async fn bind(addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr), BrokerError> {
    let error = |source| BrokerError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener.into_std().map_err(error)?, bound))
}
