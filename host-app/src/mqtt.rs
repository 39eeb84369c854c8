//! MQTT client options for an [`MqttEndpoint`]: address, TLS (rustls, ring provider) and
//! credentials. Used by the host session and by `host-app spy`.

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use crate::broker::{ConfigError, MqttEndpoint};

/// Largest MQTT packet the host accepts or sends; Sparkplug births of large edge nodes
/// run to a few hundred KiB.
pub const MAX_PACKET_SIZE: usize = 4 * 1024 * 1024;

/// Options for a clean-session client `client_id` at `endpoint`. The password is handed
/// to the client only, never logged.
pub fn options(endpoint: &MqttEndpoint, client_id: &str) -> Result<MqttOptions, ConfigError> {
    let mut options = MqttOptions::new(client_id, (endpoint.host.clone(), endpoint.port));
    options.set_keep_alive(30);
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE);
    if let Some(tls) = &endpoint.tls {
        let config = tls.client_config()?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    }
    if let Some(credentials) = &endpoint.credentials {
        let password = credentials
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        options.set_credentials(credentials.username.clone(), password);
    }
    Ok(options)
}

/// Milliseconds since the Unix epoch, the clock every Sparkplug timestamp uses.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
