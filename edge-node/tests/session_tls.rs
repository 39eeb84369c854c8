//! The link over mutual TLS (rustls, ring) to Mosquitto, with a throwaway CA, server and
//! client certificates; and a password read from its file; the session resumed after a cut.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_node::config::{BackoffSettings, Secret, TlsSettings};
use edge_node::simulator::PlantServer;
use edge_node::{Config, EdgeNode};
use edge_node_testkit::session::*;
use system_tests::Mosquitto;
use system_tests::linksim::LinkSim;
use system_tests::mqtt::Recorder;
use system_tests::pki::Pki;

/// Mosquitto with a TLS listener on a free port beside its plain one, serving `pki`'s
/// server certificate and, with `require_certificate`, asking clients for theirs;
/// and the TLS port.
fn tls_mosquitto(pki: &Pki, require_certificate: bool) -> (Mosquitto, u16) {
    let tls_port = system_tests::free_port();
    let require = if require_certificate {
        "require_certificate true\n"
    } else {
        ""
    };
    let broker = Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n{require}",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display()
    ));
    (broker, tls_port)
}

/// The boiler node polling `plant` through the TLS listener at `tls_port`, trusting `ca`
/// for the name `localhost`, with `client_auth` (certificate, key) when given.
fn over_tls(
    tls_port: u16,
    plant: &PlantServer,
    ca: &Path,
    client_auth: Option<(PathBuf, PathBuf)>,
) -> Config {
    let mut config = load(&boiler(&[tls_port], plant.local_addr().port()));
    config.mqtt.servers[0].tls = Some(TlsSettings {
        ca_file: ca.to_path_buf(),
        server_name: Some("localhost".into()),
        client_auth,
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_named_server_carries_the_session() {
    let pki = Pki::generate();
    let (broker, tls_port) = tls_mosquitto(&pki, true);
    let plant = start_plant().await;
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let client_auth = (pki.client_cert.clone(), pki.client_key.clone());
    let mut config = over_tls(tls_port, &plant, &pki.ca, Some(client_auth));
    // Mosquitto allows anonymous here; the credentials still go in CONNECT.
    config.mqtt.username = Some("gw1".into());
    config.mqtt.password = Some(Secret::new("not-logged"));
    let node = EdgeNode::start(config).unwrap();
    let nbirth = host.next_kind("NBIRTH").await;
    assert_eq!(nbirth.bd_seq(), 0);
    let server = nbirth
        .sparkplug()
        .metric("Link/Server")
        .and_then(|m| m.typed_value().cloned());
    assert_eq!(
        server,
        Some(sparkplug::Value::String(format!(
            "mqtts://127.0.0.1:{tls_port}"
        )))
    );
    host.next_kind("DBIRTH").await;
    node.shutdown().await.unwrap();
    host.next_kind("NDEATH").await;
    plant.shutdown().await;
}

/// On a link paid by the byte a reconnect resumes the TLS session Mosquitto (OpenSSL)
/// ticketed: the server sends no certificate the second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_after_a_cut_resumes_the_tls_session() {
    let pki = Pki::generate();
    let (broker, tls_port) = tls_mosquitto(&pki, false);
    let link = LinkSim::start(([127, 0, 0, 1], tls_port).into())
        .await
        .unwrap();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let mut config = over_tls(link.addr().port(), &plant, &pki.ca, None);
    // Each ticket is offered once and Mosquitto issues two: at most one attempt may fall
    // into the cut (the first comes at least 500 ms after the loss).
    config.mqtt.backoff = BackoffSettings {
        min: Duration::from_secs(1),
        max: Duration::from_secs(2),
    };
    let node = EdgeNode::start(config).unwrap();
    let nbirth = host.next_kind("NBIRTH").await;
    host.next_kind("DBIRTH").await;
    // Server to node: the full handshake, its session tickets, CONNACK, SUBACKs.
    let first = link.bytes_down();

    link.cut();
    assert_eq!(host.next_kind("NDEATH").await.bd_seq(), nbirth.bd_seq());
    let before = link.bytes_down();
    link.restore();
    assert_eq!(host.next_kind("NBIRTH").await.bd_seq(), nbirth.bd_seq() + 1);
    host.next_kind("DBIRTH").await;
    let again = link.bytes_down() - before;

    let certificate = pki.server_cert_der_len() as u64;
    assert!(
        again + certificate < first,
        "the reconnect took {again} B from the server, the first connection {first} B: \
         a resumed handshake leaves out the {certificate} B certificate"
    );
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused() {
    let pki = Pki::generate();
    let other = Pki::generate();
    let (broker, tls_port) = tls_mosquitto(&pki, false);
    let plant = start_plant().await;
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let config = over_tls(tls_port, &plant, &other.ca, None);
    let node = EdgeNode::start(config).unwrap();
    let seen = host.drain_for(Duration::from_millis(1500)).await;
    assert!(
        seen.is_empty(),
        "no session with an untrusted server: {seen:?}"
    );
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}
