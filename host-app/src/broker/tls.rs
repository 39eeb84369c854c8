//! The TLS listener's rustls configuration, loaded by [`infra::tls`] and its errors
//! reported under the `broker.embedded.tls` keys.

use std::sync::Arc;

use infra::tls::{ServerCert, ServerTls, TlsError};
use rustls::ServerConfig;

use super::config::{CertificateName, ConfigError, TlsListenerConfig};

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

/// The account name a verified client certificate carries, as `which` says.
pub fn certificate_name(der: &[u8], which: CertificateName) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    match which {
        CertificateName::Cn => cert
            .subject()
            .iter_common_name()
            .next()?
            .as_str()
            .ok()
            .map(str::to_owned),
        CertificateName::San => cert
            .subject_alternative_name()
            .ok()??
            .value
            .general_names
            .iter()
            .find_map(|name| match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some((*s).to_owned())
                }
                _ => None,
            }),
    }
}

/// The configuration key a TLS error belongs to, under `section`.
pub(crate) fn tls_key(section: &str, error: &TlsError) -> String {
    error.key(section)
}
