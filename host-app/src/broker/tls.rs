//! rustls configurations (ring provider only) for the TLS listener and for reaching an
//! external broker.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::config::{ClientCertificates, ConfigError, TlsListenerConfig};
use super::endpoint::EndpointTls;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ConfigError::new(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{}: no certificate found", path.display()),
        ));
    }
    Ok(certs)
}

fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| ConfigError::new(key, format!("{}: {e}", path.display())))
}

fn load_roots(key: &str, path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(key, path)? {
        roots
            .add(cert)
            .map_err(|e| ConfigError::new(key, format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The TLS listener's server configuration, with client certificate checking as configured.
pub fn server_config(tls: &TlsListenerConfig) -> Result<Arc<ServerConfig>, ConfigError> {
    let certs = load_certs("broker.embedded.tls.cert_file", &tls.cert_file)?;
    let key = load_key("broker.embedded.tls.key_file", &tls.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("broker.embedded.tls", e))?;
    let ca_key = "broker.embedded.tls.client_ca_file";
    let builder = match (&tls.client_ca_file, tls.client_certificates) {
        (_, ClientCertificates::None) | (None, _) => builder.with_no_client_auth(),
        (Some(ca), mode) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(load_roots(ca_key, ca)?),
                provider(),
            );
            let verifier = if mode == ClientCertificates::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| ConfigError::new(ca_key, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| ConfigError::new("broker.embedded.tls.key_file", e))?;
    Ok(Arc::new(config))
}

/// A client configuration for reaching a broker over TLS, as the endpoint describes.
pub fn client_config(tls: &EndpointTls) -> Result<Arc<ClientConfig>, ConfigError> {
    let roots = load_roots("broker.external.tls.ca_file", &tls.ca_file)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("broker.external.tls", e))?
        .with_root_certificates(roots);
    let config = match &tls.client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                load_certs("broker.external.tls.client_cert_file", cert)?,
                load_key("broker.external.tls.client_key_file", key)?,
            )
            .map_err(|e| ConfigError::new("broker.external.tls.client_key_file", e))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Checks that `name` can be used as a TLS server name.
pub fn server_name(name: &str) -> Result<ServerName<'static>, ConfigError> {
    ServerName::try_from(name.to_owned())
        .map_err(|e| ConfigError::new("broker.external.tls.server_name", e))
}
