//! A throwaway PKI for TLS tests: a CA, a server certificate for `localhost`/127.0.0.1, a
//! client certificate, and a client certificate from another ("rogue") CA, as PEM files.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Throwaway PKI written as PEM files: a CA, a server certificate for 127.0.0.1 and
/// localhost, a client certificate from the same CA, and one from an unrelated CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_client_cert: PathBuf,
    pub rogue_client_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Bytes of the server certificate in DER: what a full TLS handshake carries of it and
    /// a resumed one does not.
    pub fn server_cert_der_len(&self) -> usize {
        let pem = std::fs::read_to_string(&self.server_cert).expect("server certificate");
        let base64: usize = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(|l| l.trim().trim_end_matches('=').len())
            .sum();
        base64 * 3 / 4
    }

    pub fn generate() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        // Readable by others: a broker started as root (Mosquitto) drops to its own user.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod temp dir");
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write PEM");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .expect("chmod PEM");
            path
        };
        let ca_issuer = ca("test CA");
        let (server_cert, server_key) = leaf(
            &ca_issuer,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            leaf(&ca_issuer, &["edge-1"], ExtendedKeyUsagePurpose::ClientAuth);
        let rogue = ca("rogue CA");
        let (rogue_cert, rogue_key) =
            leaf(&rogue, &["edge-1"], ExtendedKeyUsagePurpose::ClientAuth);
        Pki {
            ca: write("ca.pem", &ca_issuer.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            rogue_client_cert: write("rogue.pem", &rogue_cert),
            rogue_client_key: write("rogue.key", &rogue_key),
            dir,
        }
    }
}
