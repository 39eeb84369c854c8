//! The TLS listener's rustls configuration, loaded by [`infra::tls`] and its errors
//! reported under the `broker.embedded.tls` keys.

use std::sync::Arc;

use infra::tls::{ServerCert, ServerTls, TlsError};
use rustls::ServerConfig;

use super::config::{ConfigError, TlsListenerConfig};

/// The TLS listener's server configuration, with client certificate checking as
/// configured, and its certificate (re-read on SIGHUP).
pub fn server_config(
    tls: &TlsListenerConfig,
) -> Result<(Arc<ServerConfig>, Arc<ServerCert>), ConfigError> {
    infra::tls::reloadable_server_config(&ServerTls {
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        client_ca_file: tls.client_ca_file.clone(),
        client_certificates: tls.client_certificates,
    })
    .map_err(|e| ConfigError::new(tls_key("broker.embedded.tls", &e), e))
}

/// The configuration key a TLS error belongs to, under `section`.
pub(crate) fn tls_key(section: &str, error: &TlsError) -> String {
    error.key(section)
}
