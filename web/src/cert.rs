//! A panel's HTTPS certificate: the one its configuration names, or a self-signed one
//! generated at first start and kept in the state directory (key file 0600) so browsers
//! that accepted it once keep accepting it. Its SHA-256 fingerprint goes to the log so
//! a technician can compare it with what the browser shows.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use infra::tls::{ClientCertificates, ServerCert, ServerTls};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};

/// A configured certificate chain and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Where the self-signed certificate and its key live in the state directory.
pub const SELF_SIGNED_CERT: &str = "panel-cert.pem";
pub const SELF_SIGNED_KEY: &str = "panel-key.pem";

/// A loaded certificate: the rustls configuration and what the log says of it.
pub struct PanelCert {
    pub server_config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate (DER), as colon-separated upper-case hex.
    pub fingerprint: String,
    pub cert_file: PathBuf,
    pub self_signed: bool,
    /// The served certificate, re-read on SIGHUP.
    pub cert: Arc<ServerCert>,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The configured files, named by their table's key path (`api.tls`, `ui.tls`).
    #[error("{key}: {source}")]
    Configured {
        key: &'static str,
        source: infra::tls::TlsError,
    },
    #[error("self-signed certificate {}: {message}", path.display())]
    SelfSigned { path: PathBuf, message: String },
}

/// The configured certificate, or the state directory's self-signed one (generated
/// when absent). `listen` and `public_host` name the certificate's subject; `key` is the
/// configured files' table in problems.
pub fn load(
    key: &'static str,
    configured: Option<&CertFiles>,
    state_dir: &Path,
    listen: SocketAddr,
    public_host: Option<&str>,
) -> Result<PanelCert, CertError> {
    match configured {
        Some(tls) => {
            let server = ServerTls {
                cert_file: tls.cert_file.clone(),
                key_file: tls.key_file.clone(),
                client_ca_file: None,
                client_certificates: ClientCertificates::None,
            };
            let (config, cert) = infra::tls::reloadable_server_config(&server)
                .map_err(|source| CertError::Configured { key, source })?;
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(PanelCert {
                server_config: Arc::new(config),
                fingerprint: fingerprint(&cert.leaf()),
                cert_file: tls.cert_file.clone(),
                self_signed: false,
                cert,
            })
        }
        None => self_signed(key, state_dir, listen, public_host),
    }
}

fn self_signed(
    key: &'static str,
    state_dir: &Path,
    listen: SocketAddr,
    public_host: Option<&str>,
) -> Result<PanelCert, CertError> {
    let cert_file = state_dir.join(SELF_SIGNED_CERT);
    let key_file = state_dir.join(SELF_SIGNED_KEY);
    let fail = |path: &Path, message: String| CertError::SelfSigned {
        path: path.to_owned(),
        message,
    };
    if !(cert_file.exists() && key_file.exists()) {
        let mut names = vec!["localhost".to_owned()];
        if !listen.ip().is_unspecified() {
            names.push(listen.ip().to_string());
        }
        if let Some(host) = public_host.filter(|h| !names.iter().any(|n| n == h)) {
            names.push(host.to_owned());
        }
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| fail(&cert_file, e.to_string()))?;
        infra::secret::write_private_file(
            &key_file,
            generated.signing_key.serialize_pem().as_bytes(),
        )
        .map_err(|e| fail(&key_file, e.to_string()))?;
        fs::write(&cert_file, generated.cert.pem()).map_err(|e| fail(&cert_file, e.to_string()))?;
        tracing::info!(cert = %cert_file.display(), "self-signed panel certificate generated");
    }
    let configured = CertFiles {
        cert_file: cert_file.clone(),
        key_file,
    };
    let mut cert = load(key, Some(&configured), state_dir, listen, public_host).map_err(|e| {
        let message = match e {
            CertError::Configured { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        fail(&cert_file, message)
    })?;
    cert.self_signed = true;
    Ok(cert)
}

/// SHA-256 of a DER certificate as `AB:CD:...`, the form browsers show.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
