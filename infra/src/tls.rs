//! The one loader of TLS files: rustls configurations (ring provider only) for a client
//! reaching a broker and for a broker's listener, built from PEM files. Every error names
//! the file and which role it plays, so callers can report the configuration key.
//!
//! A listener's certificate is a [`ServerCert`]: rustls asks it at every handshake, so
//! [`ServerCert::reload`] (on SIGHUP) applies new files to new connections, and files
//! that do not load leave the running certificate in place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;

/// TLS to one server: trust anchors, the name to verify, an optional client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates the server's certificate must chain to (required: air-gapped
    /// sites have no system roots worth trusting).
    pub ca_file: PathBuf,
    /// The name the server certificate must carry; defaults to the host connected to.
    pub server_name: Option<String>,
    /// PEM client certificate chain and key, for mutual TLS.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

/// A TLS listener: its certificate and key, and how clients are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    pub client_certificates: ClientCertificates,
}

/// Whether a listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertificates {
    /// Clients are not asked for a certificate.
    #[default]
    None,
    /// A certificate, if presented, must chain to the client CA.
    Optional,
    /// Every client must present a certificate chaining to the client CA.
    Required,
}

/// The role of a file in a TLS setup, to map an error to its configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Ca,
    ClientCert,
    ClientKey,
    Cert,
    Key,
    ClientCa,
}

/// Why a TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file that cannot be read or used, named.
    #[error("{}: {message}", path.display())]
    File {
        file: TlsFile,
        path: PathBuf,
        message: String,
    },
    #[error("{name:?} is not a TLS server name: {message}")]
    ServerName { name: String, message: String },
    /// rustls refused the protocol setup itself (a key that does not match its
    /// certificate is a [`TlsError::File`] naming the key).
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    /// The configuration key this error belongs to, under `section` (`api.tls`).
    pub fn key(&self, section: &str) -> String {
        let key = match self {
            TlsError::File { file, .. } => match file {
                TlsFile::Ca => "ca_file",
                TlsFile::ClientCert => "client_cert_file",
                TlsFile::ClientKey => "client_key_file",
                TlsFile::Cert => "cert_file",
                TlsFile::Key => "key_file",
                TlsFile::ClientCa => "client_ca_file",
            },
            TlsError::ServerName { .. } => "server_name",
            TlsError::Rustls(_) => return section.to_owned(),
        };
        format!("{section}.{key}")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(file: TlsFile, path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        file,
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// The certificates of a PEM file; none is an error.
fn load_certs(file: TlsFile, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(file, path, e))?;
    if certs.is_empty() {
        return Err(file_error(file, path, "no PEM certificate found"));
    }
    Ok(certs)
}

fn load_key(file: TlsFile, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(file, path, e))
}

fn load_roots(file: TlsFile, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(file, path)? {
        roots.add(cert).map_err(|e| file_error(file, path, e))?;
    }
    Ok(roots)
}

/// Checks that `name` can be verified as a TLS server name.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|e| TlsError::ServerName {
        name: name.to_owned(),
        message: e.to_string(),
    })
}

/// The client configuration; files are read now so errors name them.
///
/// A reconnect with the same settings and unchanged files gets the same config back, so
/// its TLS session resumes (rustls resumes only under the config that made the session):
/// a short handshake instead of a full one with certificates, on links paid by the byte.
pub fn client_config(tls: &ClientTls) -> Result<Arc<ClientConfig>, TlsError> {
    let files = client_files(tls);
    let cache = client_configs();
    if let Some(files) = &files
        && let Some(config) = cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(t, f, _)| t == tls && f == files)
            .map(|(_, _, c)| Arc::clone(c))
    {
        return Ok(config);
    }
    let config = build_client_config(tls)?;
    if let Some(files) = files {
        let mut cache = cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CLIENT_CONFIGS_KEPT {
            cache.remove(0);
        }
        cache.push((tls.clone(), files, Arc::clone(&config)));
    }
    Ok(config)
}

/// Client configs kept for reuse (a node has a handful of servers).
const CLIENT_CONFIGS_KEPT: usize = 16;

type CachedClientConfig = (ClientTls, Vec<Vec<u8>>, Arc<ClientConfig>);

fn client_configs() -> &'static std::sync::Mutex<Vec<CachedClientConfig>> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<Vec<CachedClientConfig>>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The bytes of every file a client config is built from; `None` when one is unreadable
/// (the build then names it).
fn client_files(tls: &ClientTls) -> Option<Vec<Vec<u8>>> {
    let mut paths = vec![&tls.ca_file];
    if let Some((cert, key)) = &tls.client_auth {
        paths.push(cert);
        paths.push(key);
    }
    paths.into_iter().map(|p| std::fs::read(p).ok()).collect()
}

fn build_client_config(tls: &ClientTls) -> Result<Arc<ClientConfig>, TlsError> {
    if let Some(name) = &tls.server_name {
        server_name(name)?;
    }
    let roots = load_roots(TlsFile::Ca, &tls.ca_file)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match &tls.client_auth {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                load_certs(TlsFile::ClientCert, cert)?,
                load_key(TlsFile::ClientKey, key)?,
            )
            .map_err(|e| file_error(TlsFile::ClientKey, key, e))?,
    };
    Ok(Arc::new(config))
}

/// The listener's server configuration, with client certificate checking as configured
/// (no client CA means clients are not asked).
pub fn server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>, TlsError> {
    reloadable_server_config(tls).map(|(config, _)| config)
}

/// As [`server_config`], with the certificate the configuration serves, which
/// [`ServerCert::reload`] replaces for the handshakes that follow.
pub fn reloadable_server_config(
    tls: &ServerTls,
) -> Result<(Arc<ServerConfig>, Arc<ServerCert>), TlsError> {
    let cert = Arc::new(ServerCert::load(&tls.cert_file, &tls.key_file)?);
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match (&tls.client_ca_file, tls.client_certificates) {
        (_, ClientCertificates::None) | (None, _) => builder.with_no_client_auth(),
        (Some(ca), mode) => {
            let roots = load_roots(TlsFile::ClientCa, ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = match mode {
                ClientCertificates::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| file_error(TlsFile::ClientCa, ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
    Ok((Arc::new(config), cert))
}

/// A listener's certificate chain and key, read from their PEM files and replaceable
/// while the listener runs (connections already made keep what they negotiated).
#[derive(Debug)]
pub struct ServerCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    /// Reads and checks both files: a chain, a key rustls can use, and the two matching.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<ServerCert, TlsError> {
        Ok(ServerCert {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new(Arc::new(certified_key(cert_file, key_file)?)),
        })
    }

    /// Reads the files again and serves them from the next handshake on. On an error the
    /// running certificate stays. Returns whether the certificate changed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let next = certified_key(&self.cert_file, &self.key_file)?;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let changed = current.cert != next.cert;
        *current = Arc::new(next);
        Ok(changed)
    }

    /// The leaf certificate served now (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.served().cert[0].clone()
    }

    /// The certificate file this reads.
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    fn served(&self) -> Arc<CertifiedKey> {
        // A panic while holding the lock cannot leave a half-written Arc behind.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.served())
    }
}

fn certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let certs = load_certs(TlsFile::Cert, cert_file)?;
    let key = load_key(TlsFile::Key, key_file)?;
    CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| file_error(TlsFile::Key, key_file, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k, ca) = (dir.join("c.pem"), dir.join("k.pem"), dir.join("ca.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, ca)
    }

    #[test]
    fn missing_and_empty_files_are_named_with_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ClientTls {
            ca_file: dir.path().join("nope.pem"),
            server_name: None,
            client_auth: None,
        };
        let e = client_config(&missing).unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::File {
                    file: TlsFile::Ca,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("nope.pem"), "{e}");
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        let empty = ClientTls {
            ca_file: dir.path().join("empty.pem"),
            ..missing
        };
        let e = client_config(&empty).unwrap_err().to_string();
        assert!(e.contains("empty.pem: no PEM certificate found"), "{e}");
    }

    #[test]
    fn client_and_server_configs_load_from_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = pki(dir.path());
        client_config(&ClientTls {
            ca_file: ca.clone(),
            server_name: Some("localhost".into()),
            client_auth: Some((cert.clone(), key.clone())),
        })
        .unwrap();
        let server = ServerTls {
            cert_file: cert,
            key_file: key.clone(),
            client_ca_file: Some(ca),
            client_certificates: ClientCertificates::Required,
        };
        server_config(&server).unwrap();
        let e = server_config(&ServerTls {
            key_file: dir.path().join("k2.pem"),
            ..server
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::File {
                    file: TlsFile::Key,
                    ..
                }
            ),
            "{e}"
        );
    }

    /// A whole handshake in memory; the bytes the client sent and received.
    fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> (usize, bool) {
        let name = server_name("localhost").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::clone(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::clone(server)).unwrap();
        let mut bytes = 0;
        for _ in 0..20 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            bytes += buf.len();
            let mut slice = &buf[..];
            while !slice.is_empty() {
                s.read_tls(&mut slice).unwrap();
            }
            s.process_new_packets().unwrap();
            let mut back = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut back).unwrap();
            }
            bytes += back.len();
            let mut slice = &back[..];
            while !slice.is_empty() {
                c.read_tls(&mut slice).unwrap();
            }
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
                break;
            }
        }
        assert!(!c.is_handshaking(), "handshake finished");
        let resumed = c.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        (bytes, resumed)
    }

    #[test]
    fn a_reconnect_resumes_the_session_with_a_config_built_again() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = pki(dir.path());
        let tls = ClientTls {
            ca_file: ca,
            server_name: Some("localhost".into()),
            client_auth: None,
        };
        let server = server_config(&ServerTls {
            cert_file: cert,
            key_file: key,
            client_ca_file: None,
            client_certificates: ClientCertificates::None,
        })
        .unwrap();
        let (full, resumed) = handshake(&client_config(&tls).unwrap(), &server);
        assert!(!resumed, "the first connect is a full handshake");
        // Each connect asks for its client config again, as `link` does.
        let (again, resumed) = handshake(&client_config(&tls).unwrap(), &server);
        assert!(resumed, "the reconnect resumes");
        // New files at the same paths make a new config: a rotated CA is read.
        let before = client_config(&tls).unwrap();
        pki(dir.path());
        assert!(!Arc::ptr_eq(&before, &client_config(&tls).unwrap()));
        assert!(
            again < full,
            "resumption costs {again} bytes, a full handshake {full}"
        );
    }

    #[test]
    fn a_reloaded_certificate_replaces_the_served_one_and_a_bad_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = pki(dir.path());
        let served = ServerCert::load(&cert, &key).unwrap();
        let first = served.leaf();
        assert!(!served.reload().unwrap(), "same files, same certificate");
        let other = tempfile::tempdir().unwrap();
        let (cert2, key2, _) = pki(other.path());
        // A key that does not match its certificate is refused, naming the key file.
        std::fs::copy(&cert2, &cert).unwrap();
        let e = served.reload().unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::File {
                    file: TlsFile::Key,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(served.leaf(), first, "the running certificate stays");
        std::fs::copy(&key2, &key).unwrap();
        assert!(served.reload().unwrap());
        assert_ne!(served.leaf(), first);
        std::fs::write(&cert, "garbage").unwrap();
        assert!(served.reload().is_err());
        assert_ne!(served.leaf(), first);
    }

    #[test]
    fn a_bad_server_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, ca) = pki(dir.path());
        let e = client_config(&ClientTls {
            ca_file: ca,
            server_name: Some("not a name!".into()),
            client_auth: None,
        })
        .unwrap_err();
        assert!(matches!(e, TlsError::ServerName { .. }), "{e}");
    }
}
