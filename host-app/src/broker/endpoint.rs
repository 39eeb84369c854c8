//! What the rest of the host sees of the broker: an MQTT endpoint to connect to.

use std::path::Path;

use infra::tls::ClientTls;

use super::BrokerError;
use super::config::{BrokerConfig, BrokerMode, ConfigError};
use super::embedded::EmbeddedBroker;

/// An MQTT broker to connect to as an ordinary client: host, port, TLS and login.
pub use infra::link::{Credentials, Endpoint as MqttEndpoint};

/// The broker seam: an embedded broker this process runs, or an external one.
pub struct Broker {
    embedded: Option<EmbeddedBroker>,
    endpoint: MqttEndpoint,
    /// An external broker's other servers, tried in order after `endpoint`.
    failover: Vec<MqttEndpoint>,
}

impl Broker {
    /// Starts the embedded broker (its store in `state_dir`), or only describes the
    /// external one, as configured.
    pub async fn start(config: &BrokerConfig, state_dir: &Path) -> Result<Broker, BrokerError> {
        match config.mode {
            BrokerMode::Embedded => {
                let embedded = EmbeddedBroker::start_in(&config.embedded, Some(state_dir)).await?;
                let endpoint = embedded.host_endpoint(&config.embedded);
                Ok(Broker {
                    embedded: Some(embedded),
                    endpoint,
                    failover: Vec::new(),
                })
            }
            BrokerMode::External => {
                let external = config.external.as_ref().ok_or_else(|| {
                    ConfigError::new(
                        "broker.external",
                        "required when broker.mode = \"external\"",
                    )
                })?;
                let credentials = match &external.username {
                    Some(username) => Some(Credentials {
                        username: username.clone(),
                        password: external.password()?,
                    }),
                    None => None,
                };
                let mut servers = Vec::new();
                for (i, server) in external.servers().enumerate() {
                    let key = match i {
                        0 => "broker.external.host".to_owned(),
                        _ => format!("broker.external.failover[{}]", i - 1),
                    };
                    let (host, port) = server.map_err(|e| ConfigError::new(key, e))?;
                    let tls = external.tls.as_ref().map(|tls| ClientTls {
                        ca_file: tls.ca_file.clone(),
                        // Checked against the certificate; defaults to the server's host.
                        server_name: Some(tls.server_name.clone().unwrap_or_else(|| host.clone())),
                        client_auth: tls
                            .client_cert_file
                            .clone()
                            .zip(tls.client_key_file.clone()),
                    });
                    if let Some(name) = tls.as_ref().and_then(|t| t.server_name.as_deref()) {
                        infra::tls::server_name(name)
                            .map_err(|e| ConfigError::new("broker.external.tls.server_name", e))?;
                    }
                    servers.push(MqttEndpoint {
                        host,
                        port,
                        tls,
                        credentials: credentials.clone(),
                    });
                }
                let endpoint = servers.remove(0); // `host` is always the first
                Ok(Broker {
                    embedded: None,
                    endpoint,
                    failover: servers,
                })
            }
        }
    }

    /// Where the host's own MQTT session connects.
    pub fn endpoint(&self) -> &MqttEndpoint {
        &self.endpoint
    }

    /// The servers to fail over to, in order, after [`Broker::endpoint`] (none for the
    /// embedded broker).
    pub fn failover(&self) -> &[MqttEndpoint] {
        &self.failover
    }

    /// The embedded broker, when this process runs one.
    pub fn embedded(&self) -> Option<&EmbeddedBroker> {
        self.embedded.as_ref()
    }

    /// Stops the embedded broker (nothing to do for an external one).
    pub async fn stop(self) {
        if let Some(embedded) = self.embedded {
            embedded.stop().await;
        }
    }
}
