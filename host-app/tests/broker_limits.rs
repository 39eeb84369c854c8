//! The front's resource limits against the real embedded broker: silent and trickling
//! sockets cannot lock valid users out (SlowITe, CVE-2020-13849), sockets and connect
//! rate per address, the CONNECT deadline that trickled bytes do not extend, the pool of
//! logged-in connections, and the maximum keep-alive (MQTT 5 Server Keep Alive, 3.1.1
//! silence).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use host_app_testkit::broker::*;
use rumqttc::{ConnectReturnCode, ConnectionError, Event, Incoming, PublishOptions, QoS};
use system_tests::mqtt::client::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The bound for a valid client's CONNECT under the SlowITe load.
const CONNECT_UNDER_ATTACK: Duration = Duration::from_secs(2);

/// An MQTT CONNECT (clean session, no will, no login) of protocol `level` (4 or 5).
fn connect_packet(level: u8, client_id: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

/// Reads one packet (remaining length below 128): its header byte and body.
async fn read_small_packet(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let read = async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.unwrap();
        assert!(head[1] < 128, "small packet expected");
        let mut body = vec![0u8; usize::from(head[1])];
        stream.read_exact(&mut body).await.unwrap();
        (head[0], body)
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("no packet in time")
}

/// Reads until the peer closes; true when it did within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(wait, read).await.is_ok()
}

/// One attacking socket, reopened (after a pause) whenever the broker closes it, until
/// `stop`: silent, or trickling one byte of a never-ending CONNECT every 200 ms.
async fn attacker(addr: SocketAddr, trickle: bool, stop: CancellationToken) {
    for _ in 0..1_000 {
        if stop.is_cancelled() {
            return;
        }
        if let Ok(mut stream) = TcpStream::connect(addr).await {
            let held = async {
                if trickle {
                    // CONNECT claiming 16,000 bytes, then one byte at a time.
                    if stream.write_all(&[0x10, 0x80, 0x7d]).await.is_err() {
                        return;
                    }
                    for _ in 0..16_000 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if stream.write_all(&[0]).await.is_err() {
                            return;
                        }
                    }
                } else {
                    let _ = closed_within(&mut stream, Duration::from_secs(60)).await;
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = held => {}
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Publishes `count` QoS 1 messages at 100 per second on `topic` and returns once they
/// are acknowledged (or the bound passes).
async fn publish_steadily(client: &rumqttc::AsyncClient, topic: &str, count: usize) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for i in 0..count {
        tick.tick().await;
        client
            .publish(
                topic,
                i.to_be_bytes().to_vec(),
                PublishOptions::new(QoS::AtLeastOnce),
            )
            .await
            .unwrap();
    }
}

/// Waits until `counter` reaches `target` or `WAIT` passes; returns its value.
async fn settle(counter: &AtomicUsize, target: usize) -> usize {
    for _ in 0..100 {
        if counter.load(Ordering::Relaxed) >= target {
            break;
        }
        tokio::time::sleep(WAIT / 100).await;
    }
    counter.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_clients_connect_and_data_flows_under_1000_silent_and_200_trickling_sockets() {
    system_tests::raise_open_files_limit();
    // The default pools (256 pending) must hold on their own: the rates and the limit
    // per address, which would refuse most of this load from one address, are opened up.
    let mut config = config();
    config.max_connections_per_address = 100_000;
    config.connect_rate = 100_000;
    config.connect_rate_per_address = 100_000;
    config.validate().unwrap();
    let broker = start(&config).await;
    let addr = broker.plain_addr().unwrap();

    // A host and an edge node connected before the attack.
    let (_host, mut host_loop) = subscriber(addr, "host", "spBv1.0/#", QoS::AtLeastOnce).await;
    let received = Arc::new(AtomicUsize::new(0));
    let counting = received.clone();
    let host_task = tokio::spawn(async move {
        for _ in 0..100_000 {
            match host_loop.poll().await {
                Ok(Event::Incoming(Incoming::Publish(_))) => {
                    counting.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let (edge, mut edge_loop) = connect(options("edge", addr)).await;
    let edge_task = tokio::spawn(async move {
        for _ in 0..100_000 {
            if edge_loop.poll().await.is_err() {
                return;
            }
        }
    });

    // Without the attack: 200 messages over 2 s.
    publish_steadily(&edge, "spBv1.0/g/NDATA/e", 200).await;
    let unattacked = settle(&received, 200).await;
    assert!(
        unattacked > 0,
        "nothing reached the host without the attack"
    );

    let stop = CancellationToken::new();
    let attackers: Vec<_> = (0..1_200)
        .map(|i| tokio::spawn(attacker(addr, i >= 1_000, stop.clone())))
        .collect();
    // Let the attack build up: every attacking socket opened at least once.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A new client connects within the bound (retrying as a real client would).
    let started = Instant::now();
    let mut connected = None;
    for attempt in 0..100 {
        let Some(left) = CONNECT_UNDER_ATTACK.checked_sub(started.elapsed()) else {
            break;
        };
        let (client, mut eventloop) =
            rumqttc::AsyncClient::builder(options(&format!("valid-{attempt}"), addr)).build();
        if let Ok(Ok(())) = tokio::time::timeout(left, wait_connack(&mut eventloop)).await {
            connected = Some((client, eventloop));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    assert!(
        connected.is_some(),
        "no valid client connected within {CONNECT_UNDER_ATTACK:?} under attack"
    );
    println!("valid client connected under attack in {took:?}");

    // The edge node's data under attack: the same 200 messages over 2 s.
    publish_steadily(&edge, "spBv1.0/g/NDATA/e", 200).await;
    let attacked = settle(&received, unattacked + 200).await - unattacked;
    println!("delivered without attack {unattacked}, under attack {attacked}");
    assert!(
        attacked * 10 >= unattacked * 9,
        "under attack {attacked} of {unattacked} delivered"
    );

    stop.cancel();
    for attacker in attackers {
        let _ = tokio::time::timeout(WAIT, attacker).await;
    }
    broker.stop().await;
    let _ = tokio::time::timeout(WAIT, host_task).await;
    let _ = tokio::time::timeout(WAIT, edge_task).await;
}

#[tokio::test]
async fn a_full_pending_pool_closes_its_oldest_socket_for_a_new_one() {
    let mut config = config();
    config.max_pending_connections = 2;
    config.connection_timeout_ms = 60_000;
    config.validate().unwrap();
    let broker = start(&config).await;
    let addr = broker.plain_addr().unwrap();
    let mut oldest = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    // Each accepted before the next is opened, so "oldest" is well defined.
    assert!(!closed_within(&mut second, Duration::from_millis(200)).await);
    let _third = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut oldest, WAIT).await,
        "oldest socket closed"
    );
    // And a client still logs in (evicting the second).
    let (client, eventloop) = connect(options("valid", addr)).await;
    disconnect(client, eventloop).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_connect_over_the_logged_in_limit_is_refused_as_server_unavailable() {
    let mut config = config();
    config.max_connections = 1;
    config.validate().unwrap();
    let broker = start(&config).await;
    let addr = broker.plain_addr().unwrap();
    let (first, first_loop) = connect(options("first", addr)).await;
    let (_client, mut eventloop) = rumqttc::AsyncClient::builder(options("second", addr)).build();
    match wait_connack(&mut eventloop).await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::ServiceUnavailable)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    disconnect(first, first_loop).await;
    broker.stop().await;
}

#[tokio::test]
async fn sockets_over_the_limit_per_address_are_closed_at_once() {
    let mut config = config();
    config.max_connections_per_address = 3;
    config.connection_timeout_ms = 60_000;
    config.validate().unwrap();
    let broker = start(&config).await;
    let addr = broker.plain_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut fourth, WAIT).await,
        "fourth socket closed"
    );
    for stream in &mut held {
        assert!(!closed_within(stream, Duration::from_millis(100)).await);
    }
    // Another address is not held to this one's count.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = other.connect(addr).await.unwrap();
    other
        .write_all(&connect_packet(4, "other", 30))
        .await
        .unwrap();
    let (header, body) = read_small_packet(&mut other).await;
    assert_eq!((header, body[1]), (0x20, 0), "CONNACK accepted");
    // A place freed is given back.
    drop(held.pop());
    let mut accepted = false;
    for _ in 0..50 {
        let mut again = TcpStream::connect(addr).await.unwrap();
        if !closed_within(&mut again, Duration::from_millis(100)).await {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "a socket is accepted once one of the three left");
    broker.stop().await;
}

#[tokio::test]
async fn a_burst_over_the_connect_rate_per_address_is_closed_at_once() {
    let mut config = config();
    config.connect_rate_per_address = 5;
    config.connection_timeout_ms = 60_000;
    config.validate().unwrap();
    let broker = start(&config).await;
    let addr = broker.plain_addr().unwrap();
    let mut sockets = Vec::new();
    for _ in 0..20 {
        sockets.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut closed = 0;
    for stream in &mut sockets {
        if closed_within(stream, Duration::from_millis(100)).await {
            closed += 1;
        }
    }
    // Five from the full bucket, and perhaps a few refilled while the burst ran.
    assert!(closed >= 10, "only {closed} of 20 closed");
    broker.stop().await;
}

#[tokio::test]
async fn bytes_trickling_in_do_not_extend_the_connect_deadline() {
    let mut config = config();
    config.connection_timeout_ms = 500;
    config.validate().unwrap();
    let broker = start(&config).await;
    let mut stream = TcpStream::connect(broker.plain_addr().unwrap())
        .await
        .unwrap();
    // A CONNECT claiming 1,000 bytes, then a byte every 50 ms (50 s if never stopped).
    stream.write_all(&[0x10, 0xe8, 0x07]).await.unwrap();
    let mut sent = 0;
    for _ in 0..1_000 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if stream.write_all(&[0]).await.is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent < 1_000, "the trickling socket was never closed");
    assert!(closed_within(&mut stream, WAIT).await);
    broker.stop().await;
}

/// The Server Keep Alive property of an MQTT 5 CONNACK body, if any (this broker sends
/// only fixed-size properties before it in these tests).
fn server_keep_alive(connack: &[u8]) -> Option<u16> {
    let props = &connack[3..];
    let mut i = 0;
    while i < props.len() {
        let id = props[i];
        let len = match id {
            0x13 => return Some(u16::from_be_bytes([props[i + 1], props[i + 2]])),
            0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x21 | 0x22 => 2,
            0x11 | 0x27 => 4,
            0x12 | 0x1F => 2 + usize::from(u16::from_be_bytes([props[i + 1], props[i + 2]])),
            other => panic!("unexpected CONNACK property {other:#x}"),
        };
        i += 1 + len;
    }
    None
}

#[tokio::test]
async fn mqtt5_clients_asking_0_or_more_are_told_the_maximum_keep_alive() {
    let mut config = config();
    config.max_keepalive_s = 60;
    config.validate().unwrap();
    let broker = start(&config).await;
    let addr = broker.plain_addr().unwrap();
    // The keep-alive in force: the Server Keep Alive when the CONNACK has one (the engine
    // also sends it unchanged), else what the client asked.
    for (asked, granted) in [(0, 60), (1_000, 60), (60, 60), (30, 30)] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&connect_packet(5, &format!("v5-{asked}"), asked))
            .await
            .unwrap();
        let (header, body) = read_small_packet(&mut s).await;
        assert_eq!(header, 0x20, "CONNACK");
        assert_eq!(body[1], 0, "accepted");
        assert_eq!(
            server_keep_alive(&body).unwrap_or(asked),
            granted,
            "asked {asked}"
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_silent_mqtt311_client_is_closed_after_one_and_a_half_maximum_keep_alive() {
    let mut config = config();
    config.max_keepalive_s = 1;
    config.validate().unwrap();
    let broker = start(&config).await;
    let addr = broker.plain_addr().unwrap();

    // Asks for 10 minutes and stays silent.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    silent
        .write_all(&connect_packet(4, "silent", 600))
        .await
        .unwrap();
    let (header, body) = read_small_packet(&mut silent).await;
    assert_eq!((header, body[1]), (0x20, 0));

    // Asks the same but sends PINGREQ every 400 ms: it stays.
    let mut pinging = TcpStream::connect(addr).await.unwrap();
    pinging
        .write_all(&connect_packet(4, "pinging", 600))
        .await
        .unwrap();
    let (header, _) = read_small_packet(&mut pinging).await;
    assert_eq!(header, 0x20);

    let pings = async {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            pinging.write_all(&[0xc0, 0]).await.unwrap();
            let (header, _) = read_small_packet(&mut pinging).await;
            assert_eq!(header, 0xd0, "PINGRESP");
        }
    };
    let (closed, ()) = tokio::join!(closed_within(&mut silent, WAIT), pings);
    assert!(closed, "the silent client is closed");
    broker.stop().await;
}
