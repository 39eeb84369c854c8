//! The host's MQTT client settings, for the Primary Host session and `host-app spy`: both
//! connect through [`infra::link`].

use infra::link::LinkOptions;

use crate::broker::{ConfigError, MqttEndpoint};

/// Largest MQTT packet the host accepts or sends; Sparkplug births of large edge nodes
/// run to a few hundred KiB.
pub const MAX_PACKET_SIZE: usize = 4 * 1024 * 1024;

/// Link options for a clean-session client `client_id` at `endpoint`. The TLS files are
/// loaded now, so a bad one is reported under its key before anything connects.
pub fn link_options(endpoint: &MqttEndpoint, client_id: &str) -> Result<LinkOptions, ConfigError> {
    if let Some(tls) = &endpoint.tls {
        infra::tls::client_config(tls)
            .map_err(|e| ConfigError::new(crate::broker::tls_key("broker.external.tls", &e), e))?;
    }
    Ok(LinkOptions {
        max_packet_size: Some(MAX_PACKET_SIZE),
        ..LinkOptions::new(endpoint.clone(), client_id)
    })
}
