//! The TLS listener (tokio-rustls, ring) with a throwaway PKI, driven by rumqttc over
//! rustls with the ring provider: server authentication and client certificates
//! required or optional; a reconnect resumes its session.

use host_app::broker::{
    CertificateName, ClientCertificates, EmbeddedConfig, Secret, TlsListenerConfig, UserConfig,
};
use host_app_testkit::broker::*;
use infra::tls::ClientTls;
use rumqttc::{AsyncClient, MqttOptions, QoS, TlsConfiguration, Transport};
use system_tests::linksim::LinkSim;
use system_tests::mqtt::client::*;
use system_tests::pki::Pki;

fn tls_config(pki: &Pki, client_certificates: ClientCertificates) -> EmbeddedConfig {
    let mut config = config();
    config.tls = Some(TlsListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        client_ca_file: Some(pki.ca.clone()),
        client_certificates,
        certificate_username: None,
    });
    config.validate().unwrap();
    config
}

/// rumqttc options over TLS, built from the same endpoint description the host uses.
fn tls_options(
    id: &str,
    broker: &host_app::broker::EmbeddedBroker,
    pki: &Pki,
    client_cert: Option<(&std::path::Path, &std::path::Path)>,
) -> MqttOptions {
    tls_options_to(id, broker.tls_addr().unwrap().port(), pki, client_cert)
}

/// [`tls_options`] to `localhost:port` (a relay in front of the broker).
fn tls_options_to(
    id: &str,
    port: u16,
    pki: &Pki,
    client_cert: Option<(&std::path::Path, &std::path::Path)>,
) -> MqttOptions {
    let endpoint = ClientTls {
        ca_file: pki.ca.clone(),
        server_name: Some("localhost".to_owned()),
        client_auth: client_cert.map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
    };
    let tls = infra::tls::client_config(&endpoint).unwrap();
    let mut options = MqttOptions::new(id, ("localhost", port));
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    options
}

async fn refused(options: MqttOptions) -> bool {
    let (_client, mut eventloop) = AsyncClient::builder(options).build();
    wait_connack(&mut eventloop).await.is_err()
}

/// Connects with `options`, which must be accepted, and disconnects.
async fn accepted(options: MqttOptions) {
    let (client, eventloop) = connect(options).await;
    disconnect(client, eventloop).await;
}

#[tokio::test]
async fn tls_listener_carries_mqtt_for_rumqttc_over_rustls_ring() {
    let pki = Pki::generate();
    let broker = start(&tls_config(&pki, ClientCertificates::None)).await;
    assert_ne!(broker.tls_addr().unwrap().port(), 0);

    let (host, mut host_loop) = connect(tls_options("host", &broker, &pki, None)).await;
    subscribe(&host, &mut host_loop, "spBv1.0/#", QoS::AtLeastOnce).await;
    // Published over the plain listener, received over TLS: one broker behind both.
    publish_once(
        broker.plain_addr().unwrap(),
        "edge-1",
        "spBv1.0/plant/NBIRTH/edge-1",
        b"birth",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    let p = next_publish(&mut host_loop).await;
    assert_eq!(&p.payload[..], b"birth");

    // And the other way round.
    let (edge, mut edge_loop) = connect(tls_options("edge-2", &broker, &pki, None)).await;
    edge.publish(
        "spBv1.0/plant/NDATA/edge-2",
        &b"data"[..],
        rumqttc::PublishOptions::at_least_once(),
    )
    .await
    .unwrap();
    wait_puback(&mut edge_loop).await;
    assert_eq!(&next_publish(&mut host_loop).await.payload[..], b"data");
    broker.stop().await;
}

/// An edge node that connects again resumes its TLS session: the listener keeps one
/// server configuration, and so one session cache, for every connection; the second
/// handshake carries no certificate (bytes that a paid link saves on each reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connecting_again_resumes_its_tls_session() {
    let pki = Pki::generate();
    let broker = start(&tls_config(&pki, ClientCertificates::None)).await;
    let link = LinkSim::start(broker.tls_addr().unwrap()).await.unwrap();
    let mut down = Vec::new();
    for _ in 0..2 {
        let before = link.bytes_down();
        accepted(tls_options_to("edge-1", link.addr().port(), &pki, None)).await;
        down.push(link.bytes_down() - before);
    }
    let certificate = pki.server_cert_der_len() as u64;
    assert!(
        down[1] + certificate < down[0],
        "server to client: {} B on the first connection, {} B on the second; a resumed \
         handshake leaves out the {certificate} B certificate",
        down[0],
        down[1]
    );
    broker.stop().await;
}

#[tokio::test]
async fn required_client_certificate_from_our_ca_is_accepted() {
    let pki = Pki::generate();
    let broker = start(&tls_config(&pki, ClientCertificates::Required)).await;
    let client_cert = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    accepted(tls_options("edge-1", &broker, &pki, client_cert)).await;
    broker.stop().await;
}

#[tokio::test]
async fn required_client_certificate_missing_is_refused() {
    let pki = Pki::generate();
    let broker = start(&tls_config(&pki, ClientCertificates::Required)).await;
    assert!(refused(tls_options("edge-1", &broker, &pki, None)).await);
    broker.stop().await;
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let pki = Pki::generate();
    for mode in [ClientCertificates::Required, ClientCertificates::Optional] {
        let broker = start(&tls_config(&pki, mode)).await;
        let options = tls_options(
            "edge-1",
            &broker,
            &pki,
            Some((&pki.rogue_client_cert, &pki.rogue_client_key)),
        );
        assert!(refused(options).await, "{mode:?}");
        broker.stop().await;
    }
}

#[tokio::test]
async fn optional_client_certificate_may_be_absent() {
    let pki = Pki::generate();
    let broker = start(&tls_config(&pki, ClientCertificates::Optional)).await;
    accepted(tls_options("edge-1", &broker, &pki, None)).await;
    let client_cert = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    accepted(tls_options("edge-2", &broker, &pki, client_cert)).await;
    broker.stop().await;
}

#[tokio::test]
async fn plain_mqtt_on_the_tls_port_is_dropped() {
    let pki = Pki::generate();
    let broker = start(&tls_config(&pki, ClientCertificates::None)).await;
    let addr = broker.tls_addr().unwrap();
    assert!(refused(options("edge-1", addr)).await);
    broker.stop().await;
}

#[tokio::test]
async fn socket_without_tls_handshake_is_dropped() {
    use tokio::io::AsyncReadExt;
    let pki = Pki::generate();
    let mut config = tls_config(&pki, ClientCertificates::None);
    config.connection_timeout_ms = 200;
    let broker = start(&config).await;
    let mut idle = tokio::net::TcpStream::connect(broker.tls_addr().unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle TLS socket must be dropped");
    broker.stop().await;
}

/// Anonymous off, accounts `host-1` and `edge-1` (a reader), client certificates required;
/// `certificate_username` as given.
fn certificate_login_config(pki: &Pki, which: Option<CertificateName>) -> EmbeddedConfig {
    let mut config = with_accounts(
        config(),
        vec![
            UserConfig::new("host-1", Secret::new("host-pw")).host("host-1"),
            UserConfig::new("edge-1", Secret::new("edge-pw")).reader(),
        ],
    );
    config.tls = tls_config(pki, ClientCertificates::Required).tls;
    if let Some(tls) = config.tls.as_mut() {
        tls.certificate_username = which;
    }
    config.validate().unwrap();
    config
}

#[tokio::test]
async fn certificate_common_name_logs_in_as_its_account() {
    let pki = Pki::generate();
    let client_cert = Some((pki.client_cert.as_path(), pki.client_key.as_path()));

    // Without the option a certificate alone is no login: anonymous access is off.
    let broker = start(&certificate_login_config(&pki, None)).await;
    assert!(refused(tls_options("reader-1", &broker, &pki, client_cert)).await);
    broker.stop().await;

    // With it, the certificate (CN and SAN "edge-1") is the account edge-1, a reader.
    for which in [CertificateName::Cn, CertificateName::San] {
        let broker = start(&certificate_login_config(&pki, Some(which))).await;
        let (client, mut eventloop) =
            connect(tls_options("reader-1", &broker, &pki, client_cert)).await;
        subscribe(&client, &mut eventloop, "spBv1.0/#", QoS::AtLeastOnce).await;
        disconnect(client, eventloop).await;
        broker.stop().await;
    }
}
