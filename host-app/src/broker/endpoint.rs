//! What the rest of the host sees of the broker: an MQTT endpoint to connect to.

use std::path::PathBuf;
use std::sync::Arc;

use super::BrokerError;
use super::config::{BrokerConfig, BrokerMode, ConfigError, Secret};
use super::embedded::EmbeddedBroker;

/// An MQTT broker to connect to as an ordinary client.
#[derive(Debug, Clone)]
pub struct MqttEndpoint {
    pub host: String,
    pub port: u16,
    pub tls: Option<EndpointTls>,
    pub credentials: Option<Credentials>,
}

/// How to reach the endpoint over TLS.
#[derive(Debug, Clone)]
pub struct EndpointTls {
    pub ca_file: PathBuf,
    /// Name checked against the broker's certificate.
    pub server_name: String,
    /// Client certificate chain and key (PEM files), for brokers that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl EndpointTls {
    /// A rustls client configuration (ring provider) for this endpoint.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
        super::tls::server_name(&self.server_name)?;
        super::tls::client_config(self)
    }
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Option<Secret>,
}

/// The broker seam: an embedded broker this process runs, or an external one.
pub struct Broker {
    embedded: Option<EmbeddedBroker>,
    endpoint: MqttEndpoint,
}

impl Broker {
    /// Starts the embedded broker, or only describes the external one, as configured.
    pub async fn start(config: &BrokerConfig) -> Result<Broker, BrokerError> {
        match config.mode {
            BrokerMode::Embedded => {
                let embedded = EmbeddedBroker::start(&config.embedded).await?;
                let endpoint = embedded.host_endpoint(&config.embedded);
                Ok(Broker {
                    embedded: Some(embedded),
                    endpoint,
                })
            }
            BrokerMode::External => {
                let external = config.external.as_ref().ok_or_else(|| {
                    ConfigError::new(
                        "broker.external",
                        "required when broker.mode = \"external\"",
                    )
                })?;
                let tls = external.tls.as_ref().map(|tls| EndpointTls {
                    ca_file: tls.ca_file.clone(),
                    server_name: tls
                        .server_name
                        .clone()
                        .unwrap_or_else(|| external.host.clone()),
                    client_cert: tls
                        .client_cert_file
                        .clone()
                        .zip(tls.client_key_file.clone()),
                });
                if let Some(tls) = &tls {
                    super::tls::server_name(&tls.server_name)?;
                }
                let credentials = match &external.username {
                    Some(username) => Some(Credentials {
                        username: username.clone(),
                        password: external.password()?,
                    }),
                    None => None,
                };
                Ok(Broker {
                    embedded: None,
                    endpoint: MqttEndpoint {
                        host: external.host.clone(),
                        port: external.port(),
                        tls,
                        credentials,
                    },
                })
            }
        }
    }

    /// Where the host's own MQTT session connects.
    pub fn endpoint(&self) -> &MqttEndpoint {
        &self.endpoint
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
