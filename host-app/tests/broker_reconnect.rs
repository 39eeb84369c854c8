//! Quick reconnects with one client id, through the front: two defects of rmqtt 0.24 on
//! its own (a reconnect refused as "server unavailable"; a session reported present
//! after a clean disconnect) must not reach the clients. Each loop also runs against
//! rmqtt alone, and what it does there is printed for the record.

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
