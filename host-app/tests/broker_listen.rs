//! The embedded broker's front: port 0, logins, the connection limit, the CONNECT
//! deadline, MQTT 5 clients, client ids holding a slash, and a clean stop.

use std::time::Duration;

use host_app_testkit::broker::*;
use rumqttc::{ConnectReturnCode, ConnectionError, QoS};
use system_tests::mqtt::client::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes; true when it did within the wait.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(WAIT, read).await.is_ok()
}

#[tokio::test]
async fn port_zero_reports_the_bound_port() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    assert_ne!(addr.port(), 0);
    assert!(addr.ip().is_loopback());
    let (client, eventloop) = connect(options("host", addr)).await;
    disconnect(client, eventloop).await;
    broker.stop().await;
}

#[tokio::test]
async fn login_with_right_password_is_accepted() {
    let config = with_users(config(), &[("host", "s3cret"), ("edge", "other")]);
    let broker = start(&config).await;
    let mut options = options("edge-1", broker.plain_addr().unwrap());
    options.set_credentials("edge", "other");
    let (client, eventloop) = connect(options).await;
    disconnect(client, eventloop).await;
    broker.stop().await;
}

#[tokio::test]
async fn login_with_wrong_password_is_refused_with_connack_4() {
    let config = with_users(config(), &[("host", "s3cret")]);
    let broker = start(&config).await;
    let mut options = options("edge-1", broker.plain_addr().unwrap());
    options.set_credentials("host", "s3cret!");
    let (_client, mut eventloop) = rumqttc::AsyncClient::builder(options).build();
    match wait_connack(&mut eventloop).await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::BadUserNamePassword)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    broker.stop().await;
}

#[tokio::test]
async fn login_without_credentials_is_refused_with_connack_5() {
    let config = with_users(config(), &[("host", "s3cret")]);
    let broker = start(&config).await;
    let options = options("edge-1", broker.plain_addr().unwrap());
    let (_client, mut eventloop) = rumqttc::AsyncClient::builder(options).build();
    match wait_connack(&mut eventloop).await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::NotAuthorized)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    broker.stop().await;
}

#[tokio::test]
async fn host_endpoint_logs_in_as_host_username() {
    let config = with_users(config(), &[("host", "s3cret")]);
    let broker = start(&config).await;
    let endpoint = broker.host_endpoint(&config);
    assert_eq!(endpoint.port, broker.plain_addr().unwrap().port());
    let credentials = endpoint.credentials.expect("host credentials");
    let mut options = rumqttc::MqttOptions::new("host", (endpoint.host.clone(), endpoint.port));
    options.set_credentials(
        credentials.username,
        credentials.password.unwrap().expose().to_owned(),
    );
    let (client, eventloop) = connect(options).await;
    disconnect(client, eventloop).await;
    broker.stop().await;
}

#[tokio::test]
async fn connects_over_the_limit_are_refused() {
    let mut config = config();
    config.max_connections = 2;
    let broker = start(&config).await;
    let addr = broker.plain_addr().unwrap();
    let (a, a_loop) = connect(options("a", addr)).await;
    let (_b, _b_loop) = connect(options("b", addr)).await;

    let (_third, mut third_loop) = rumqttc::AsyncClient::builder(options("c", addr)).build();
    match wait_connack(&mut third_loop).await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::ServiceUnavailable, "third refused")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Once a client leaves, its place is free again.
    disconnect(a, a_loop).await;
    let mut connected = false;
    for _ in 0..100 {
        let (_c, mut c_loop) = rumqttc::AsyncClient::builder(options("c", addr)).build();
        if wait_connack(&mut c_loop).await.is_ok() {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(connected, "a place frees up after a client disconnects");
    broker.stop().await;
}

#[tokio::test]
async fn socket_without_connect_is_dropped_and_frees_its_place() {
    let mut config = config();
    config.max_connections = 1;
    config.connection_timeout_ms = 200;
    let broker = start(&config).await;
    let addr = broker.plain_addr().unwrap();

    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_peer(&mut idle).await,
        "idle socket must be dropped"
    );

    // A slow sender (half a CONNECT) is dropped too.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(&[0x10, 0x20, 0x00]).await.unwrap();
    assert!(
        closed_by_peer(&mut slow).await,
        "slow socket must be dropped"
    );

    let mut connected = false;
    for _ in 0..100 {
        let (_c, mut c_loop) = rumqttc::AsyncClient::builder(options("c", addr)).build();
        if wait_connack(&mut c_loop).await.is_ok() {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(connected, "the only place is free again");
    broker.stop().await;
}

#[tokio::test]
async fn stop_closes_listener_and_connections() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_client, mut eventloop) = connect(options("host", addr)).await;
    broker.stop().await;

    wait_closed(&mut eventloop).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener closed by stop"
    );
}

#[tokio::test]
async fn two_brokers_run_side_by_side() {
    let one = start(&config()).await;
    let two = start(&config()).await;
    assert_ne!(one.plain_addr(), two.plain_addr());
    let (host, mut host_loop) = connect(options("host", two.plain_addr().unwrap())).await;
    subscribe(&host, &mut host_loop, "spBv1.0/#", QoS::AtLeastOnce).await;
    publish_once(
        two.plain_addr().unwrap(),
        "edge",
        "spBv1.0/g/NDATA/e",
        b"x",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    assert_eq!(&next_publish(&mut host_loop).await.payload[..], b"x");
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn client_id_with_slash_works_in_a_clean_session() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    for _ in 0..2 {
        let (host, mut host_loop) =
            subscriber(addr, "plant/host-1", "spBv1.0/#", QoS::AtLeastOnce).await;
        publish_once(
            addr,
            "plant/edge-1",
            "spBv1.0/g/NDATA/e",
            b"x",
            QoS::AtLeastOnce,
            false,
        )
        .await;
        assert_eq!(&next_publish(&mut host_loop).await.payload[..], b"x");
        disconnect(host, host_loop).await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn persistent_session_with_slash_in_client_id_keeps_its_messages() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let mut persistent = options("plant/edge-1", addr);
    persistent.set_clean_session(false);
    let (client, mut eventloop) = connect(persistent.clone()).await;
    subscribe(&client, &mut eventloop, "plant/cmd", QoS::AtLeastOnce).await;
    disconnect(client, eventloop).await;

    publish_once(
        addr,
        "host",
        "plant/cmd",
        b"queued",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    let (_client, mut eventloop) = connect(persistent).await;
    assert_eq!(&next_publish(&mut eventloop).await.payload[..], b"queued");
    broker.stop().await;
}

#[tokio::test]
async fn keep_alive_zero_is_accepted() {
    let broker = start(&config()).await;
    let mut options = options("edge-1", broker.plain_addr().unwrap());
    options.set_keep_alive(0);
    let (client, eventloop) = connect(options).await;
    disconnect(client, eventloop).await;
    broker.stop().await;
}

/// An MQTT 5 client, spoken by hand: CONNECT, SUBSCRIBE, PUBLISH to itself.
#[tokio::test]
async fn mqtt5_client_connects_subscribes_and_receives() {
    let broker = start(&config()).await;
    let mut s = TcpStream::connect(broker.plain_addr().unwrap())
        .await
        .unwrap();
    // CONNECT: "MQTT", level 5, clean start, keep alive 30, no properties, id "v5".
    s.write_all(&[
        0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30, 0, 0, 2, b'v', b'5',
    ])
    .await
    .unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0x20, "CONNACK");
    let mut body = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(body[1], 0, "reason code success");

    // SUBSCRIBE id 1, no properties, "t/#" QoS 0.
    s.write_all(&[0x82, 9, 0, 1, 0, 0, 3, b't', b'/', b'#', 0])
        .await
        .unwrap();
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0x90, "SUBACK");
    let mut body = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut body).await.unwrap();

    // PUBLISH QoS 0 "t/a", no properties, payload "hi".
    s.write_all(&[0x30, 8, 0, 3, b't', b'/', b'a', 0, b'h', b'i'])
        .await
        .unwrap();
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0] >> 4, 3, "PUBLISH");
    let mut body = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut body).await.unwrap();
    assert!(body.ends_with(b"hi"));
    broker.stop().await;
}

#[tokio::test]
async fn packet_over_max_payload_size_closes_the_connection() {
    let mut config = config();
    config.max_payload_size = 1024;
    let broker = start(&config).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) = subscriber(addr, "host", "spBv1.0/#", QoS::AtLeastOnce).await;

    let (edge, mut edge_loop) = connect(options("edge-1", addr)).await;
    edge.publish(
        "spBv1.0/g/NDATA/e",
        vec![0u8; 2000],
        rumqttc::PublishOptions::at_least_once(),
    )
    .await
    .unwrap();
    let poll = async {
        loop {
            match edge_loop.poll().await {
                Err(_) => return,
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_))) => {
                    panic!("oversized PUBLISH acknowledged")
                }
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .expect("connection closed after an oversized packet");

    // A packet within the limit still goes through for others.
    publish_once(
        addr,
        "edge-2",
        "spBv1.0/g/NDATA/f",
        &[1u8; 900],
        QoS::AtLeastOnce,
        false,
    )
    .await;
    assert_eq!(next_publish(&mut host_loop).await.payload.len(), 900);
    broker.stop().await;
}

#[tokio::test]
async fn start_reports_an_address_in_use() {
    let one = start(&config()).await;
    let mut config = config();
    config.plain.listen = one.plain_addr().unwrap();
    match host_app::broker::EmbeddedBroker::start(&config).await {
        Err(host_app::broker::BrokerError::Bind { addr, .. }) => {
            assert_eq!(addr, one.plain_addr().unwrap())
        }
        Err(other) => panic!("expected a bind error, got {other}"),
        Ok(_) => panic!("expected a bind error"),
    }
    one.stop().await;
}

#[tokio::test]
async fn start_validates_its_configuration() {
    let mut config = config();
    config.max_connections = 0;
    match host_app::broker::EmbeddedBroker::start(&config).await {
        Err(host_app::broker::BrokerError::Config(e)) => {
            assert_eq!(e.keys(), ["broker.embedded.max_connections"])
        }
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(_) => panic!("expected a configuration error"),
    }
}
