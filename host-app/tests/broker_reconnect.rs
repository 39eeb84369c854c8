//! Quick reconnects with one client id, through the front: two defects of rmqtt 0.24 on
//! its own (a reconnect refused as "server unavailable"; a session reported present
//! after a clean disconnect) must not reach the clients. Each loop also runs against
//! rmqtt alone, and what it does there is printed for the record. A will is published
//! for a client gone without DISCONNECT, never after one, even when the client's socket
//! is reset before the broker has read it.

use std::net::SocketAddr;
use std::time::Duration;

use host_app_testkit::broker::start;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ROUNDS: usize = 200;
const WAIT: Duration = Duration::from_secs(10);

/// The test broker with its connect rates opened up: these loops reconnect faster than
/// the default rate per address allows, and are about the engine, not the limiter.
fn config() -> host_app::broker::EmbeddedConfig {
    let mut config = host_app_testkit::broker::config();
    config.connect_rate = 100_000;
    config.connect_rate_per_address = 100_000;
    config
}

/// An MQTT 3.1.1 CONNECT, keep alive 30 s, no login.
fn connect_packet(client_id: &str, clean_session: bool) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4];
    body.push(if clean_session { 0x02 } else { 0 });
    body.extend([0, 30]);
    body.extend((client_id.len() as u16).to_be_bytes());
    body.extend(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// Connects and returns the socket with the CONNACK's session present flag and code.
async fn connect(addr: SocketAddr, client_id: &str, clean_session: bool) -> (TcpStream, u8, u8) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&connect_packet(client_id, clean_session))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .expect("a CONNACK");
    assert_eq!(connack[0], 0x20, "CONNACK");
    (stream, connack[2], connack[3])
}

/// Sends DISCONNECT and closes.
async fn disconnect(mut stream: TcpStream) {
    let _ = stream.write_all(&[0xe0, 0]).await;
    let _ = stream.shutdown().await;
}

/// Reconnects `ROUNDS` times with one client id, right after a DISCONNECT; returns the
/// CONNACK codes other than 0.
async fn quick_reconnects(addr: SocketAddr) -> Vec<u8> {
    let mut refused = Vec::new();
    for _ in 0..ROUNDS {
        let (stream, _, code) = connect(addr, "edge-quick", true).await;
        if code != 0 {
            refused.push(code);
        }
        disconnect(stream).await;
    }
    refused
}

/// A clean session ended with DISCONNECT, then a persistent CONNECT with the same id,
/// `ROUNDS` times; returns how often that CONNECT reported a session present, and how
/// many CONNECTs were refused.
async fn stale_sessions(addr: SocketAddr) -> (usize, usize) {
    let (mut stale, mut refused) = (0, 0);
    for _ in 0..ROUNDS {
        for clean_session in [true, false] {
            let (stream, present, code) = connect(addr, "edge-stale", clean_session).await;
            if code != 0 {
                refused += 1;
            } else if !clean_session && present & 1 == 1 {
                stale += 1;
            }
            disconnect(stream).await;
        }
    }
    (stale, refused)
}

#[tokio::test]
async fn quick_reconnects_with_one_client_id_are_all_accepted() {
    let alone = system_tests::rmqtt::start();
    let refused = quick_reconnects(SocketAddr::from(([127, 0, 0, 1], alone))).await;
    eprintln!(
        "rmqtt alone refused {} of {ROUNDS} quick reconnects: {refused:?}",
        refused.len()
    );

    let broker = start(&config()).await;
    let refused = quick_reconnects(broker.plain_addr().unwrap()).await;
    assert!(refused.is_empty(), "refused through the front: {refused:?}");
    broker.stop().await;
}

#[tokio::test]
async fn no_session_is_present_after_a_clean_session_ended() {
    let alone = system_tests::rmqtt::start();
    let (stale, refused) = stale_sessions(SocketAddr::from(([127, 0, 0, 1], alone))).await;
    eprintln!("rmqtt alone reported a stale session {stale} of {ROUNDS} times ({refused} refused)");

    let broker = start(&config()).await;
    let (stale, refused) = stale_sessions(broker.plain_addr().unwrap()).await;
    assert_eq!(
        (stale, refused),
        (0, 0),
        "stale sessions, refusals through the front"
    );
    broker.stop().await;
}

/// An MQTT 3.1.1 CONNECT with a will (QoS 0, not retained), clean session, no login.
fn connect_with_will(client_id: &str, will_topic: &str, will: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02 | 0x04, 0, 30];
    for field in [client_id.as_bytes(), will_topic.as_bytes(), will] {
        body.extend((field.len() as u16).to_be_bytes());
        body.extend(field);
    }
    packet(0x10, &body)
}

/// A packet with its fixed header (bodies here stay below 128 bytes).
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    let mut packet = vec![first, body.len() as u8];
    packet.extend(body);
    packet
}

fn subscribe_packet(filter: &str) -> Vec<u8> {
    let mut body = vec![0, 1];
    body.extend((filter.len() as u16).to_be_bytes());
    body.extend(filter.as_bytes());
    body.push(0);
    packet(0x82, &body)
}

/// A QoS 0 PUBLISH.
fn publish_packet(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend(topic.as_bytes());
    body.extend(payload);
    packet(0x30, &body)
}

/// Connects a client with a will, subscribed to `topic`.
async fn will_client(
    addr: SocketAddr,
    client_id: &str,
    will_topic: &str,
    topic: &str,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&connect_with_will(client_id, will_topic, b"gone"))
        .await
        .unwrap();
    let (first, connack) = host_app_testkit::broker::read_packet(&mut stream).await;
    assert_eq!((first, connack), (0x20, vec![0, 0]), "CONNACK accepted");
    stream.write_all(&subscribe_packet(topic)).await.unwrap();
    let (first, _) = host_app_testkit::broker::read_packet(&mut stream).await;
    assert_eq!(first, 0x90, "SUBACK");
    stream
}

/// A subscriber to `filter`.
async fn observer(addr: SocketAddr, filter: &str) -> TcpStream {
    let (mut stream, _, code) = connect(addr, "will-observer", true).await;
    assert_eq!(code, 0);
    stream.write_all(&subscribe_packet(filter)).await.unwrap();
    let (first, _) = host_app_testkit::broker::read_packet(&mut stream).await;
    assert_eq!(first, 0x90, "SUBACK");
    stream
}

/// The payload of the next PUBLISH on `stream`.
async fn next_payload(stream: &mut TcpStream) -> Vec<u8> {
    let (first, body) = host_app_testkit::broker::read_packet(stream).await;
    assert_eq!(first >> 4, 3, "a PUBLISH");
    let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    body[2 + topic_len..].to_vec()
}

/// Sends one more message to itself and DISCONNECT, then closes while a message the
/// broker sent is still unread, so the socket is reset: the broker's next write to it
/// fails while the DISCONNECT waits to be read.
async fn disconnect_and_reset(mut stream: TcpStream, topic: &str) {
    stream
        .write_all(&publish_packet(topic, b"first"))
        .await
        .unwrap();
    // The first one has arrived and stays unread.
    let mut peek = [0u8; 1];
    tokio::time::timeout(WAIT, stream.peek(&mut peek))
        .await
        .expect("the message back in time")
        .unwrap();
    let mut last = publish_packet(topic, b"second");
    last.extend([0xe0, 0]);
    stream.write_all(&last).await.unwrap();
}

#[tokio::test]
async fn a_will_is_never_published_after_a_disconnect_however_the_socket_ends() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let mut wills = observer(addr, "will/#").await;
    for _ in 0..ROUNDS / 4 {
        let client = will_client(addr, "will-quick", "will/quick", "echo/quick").await;
        disconnect_and_reset(client, "echo/quick").await;
    }
    // The next connection with the client id waits for the last one's end (its will,
    // had there been one, is out by then); its message is the first the observer sees.
    let mut client = will_client(addr, "will-quick", "will/quick", "echo/quick").await;
    client
        .write_all(&publish_packet("will/quick", b"marker"))
        .await
        .unwrap();
    assert_eq!(
        next_payload(&mut wills).await,
        b"marker",
        "no will came first"
    );
    disconnect(client).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_client_gone_without_disconnect_leaves_its_will() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let mut wills = observer(addr, "will/#").await;

    // Closed without DISCONNECT.
    let client = will_client(addr, "will-closed", "will/closed", "echo/closed").await;
    drop(client);
    assert_eq!(next_payload(&mut wills).await, b"gone");

    // Reset with a message unread, without DISCONNECT.
    let mut client = will_client(addr, "will-reset", "will/reset", "echo/reset").await;
    client
        .write_all(&publish_packet("echo/reset", b"unread"))
        .await
        .unwrap();
    let mut peek = [0u8; 1];
    tokio::time::timeout(WAIT, client.peek(&mut peek))
        .await
        .expect("the message back in time")
        .unwrap();
    drop(client);
    assert_eq!(next_payload(&mut wills).await, b"gone");
    broker.stop().await;
}
