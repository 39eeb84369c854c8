//! The rustls client configuration for one server (ring provider only): CA file,
//! optional client certificate and key for mutual TLS.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;

/// A TLS file that cannot be used, and which one.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Builds the client configuration; files are read now so errors show at connect time
/// with the file named.
pub fn client_config(tls: &TlsSettings) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&tls.ca_file)
        .map_err(|e| file_error(&tls.ca_file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(&tls.ca_file, e))?;
    if cas.is_empty() {
        return Err(file_error(&tls.ca_file, "no PEM certificate found"));
    }
    for ca in cas {
        roots.add(ca).map_err(|e| file_error(&tls.ca_file, e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match &tls.client_auth {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let chain = CertificateDer::pem_file_iter(cert_file)
                .map_err(|e| file_error(cert_file, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(cert_file, e))?;
            if chain.is_empty() {
                return Err(file_error(cert_file, "no PEM certificate found"));
            }
            let key =
                PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_error(key_file, e))?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_ca_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsSettings {
            ca_file: dir.path().join("nope.pem"),
            server_name: None,
            client_auth: None,
        };
        let e = client_config(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.pem"), "{e}");
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        let empty = TlsSettings {
            ca_file: dir.path().join("empty.pem"),
            ..missing
        };
        let e = client_config(&empty).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
