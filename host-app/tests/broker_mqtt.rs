//! What Sparkplug needs from its MQTT server, checked through the embedded broker with a
//! real client: QoS 0/1, retained STATE, wildcards, clean sessions and the NDEATH will.

use host_app_testkit::broker::*;
use rumqttc::{LastWill, QoS};
use system_tests::mqtt::client::*;

const STATE: &str = "spBv1.0/STATE/host-1";
const NDEATH: &str = "spBv1.0/plant/NDEATH/edge-1";

#[tokio::test]
async fn qos0_publish_reaches_subscriber() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) =
        subscriber(addr, "host", "spBv1.0/plant/NDATA/+", QoS::AtMostOnce).await;

    publish_once(
        addr,
        "edge-1",
        "spBv1.0/plant/NDATA/edge-1",
        b"n0",
        QoS::AtMostOnce,
        false,
    )
    .await;

    let p = next_publish(&mut host_loop).await;
    assert_eq!(&p.topic[..], b"spBv1.0/plant/NDATA/edge-1");
    assert_eq!(&p.payload[..], b"n0");
    assert_eq!(p.qos, QoS::AtMostOnce);
    assert!(!p.retain);
    broker.stop().await;
}

#[tokio::test]
async fn qos0_publish_reaches_a_qos1_subscriber_at_qos0() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) = subscriber(addr, "host", "spBv1.0/#", QoS::AtLeastOnce).await;
    publish_once(
        addr,
        "edge-1",
        "spBv1.0/plant/NDATA/edge-1",
        b"n0",
        QoS::AtMostOnce,
        false,
    )
    .await;
    let p = next_publish(&mut host_loop).await;
    assert_eq!(&p.payload[..], b"n0");
    // MQTT-3.8.4-6: the lower of the publish and the subscription QoS.
    assert_eq!(p.qos, QoS::AtMostOnce);
    broker.stop().await;
}

#[tokio::test]
async fn qos1_publish_reaches_subscriber_at_qos1() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) =
        subscriber(addr, "host", "spBv1.0/plant/NCMD/+", QoS::AtLeastOnce).await;

    publish_once(
        addr,
        "app",
        "spBv1.0/plant/NCMD/edge-1",
        b"rebirth",
        QoS::AtLeastOnce,
        false,
    )
    .await;

    let p = next_publish(&mut host_loop).await;
    assert_eq!(&p.topic[..], b"spBv1.0/plant/NCMD/edge-1");
    assert_eq!(&p.payload[..], b"rebirth");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    broker.stop().await;
}

#[tokio::test]
async fn retained_state_reaches_later_subscriber() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let state = br#"{"online":true,"timestamp":1700000000000}"#;
    publish_once(addr, "host-1", STATE, state, QoS::AtLeastOnce, true).await;

    let (_edge, mut edge_loop) =
        subscriber(addr, "edge-1", "spBv1.0/STATE/+", QoS::AtLeastOnce).await;
    let p = next_publish(&mut edge_loop).await;
    assert_eq!(p.topic, STATE.as_bytes());
    assert_eq!(&p.payload[..], state);
    assert!(
        p.retain,
        "a retained message sent on SUBSCRIBE carries the retain flag"
    );
    assert_eq!(p.qos, QoS::AtLeastOnce);
    broker.stop().await;
}

#[tokio::test]
async fn retained_message_is_replaced_by_a_newer_one() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    publish_once(
        addr,
        "host-1",
        STATE,
        br#"{"online":true,"timestamp":1}"#,
        QoS::AtLeastOnce,
        true,
    )
    .await;
    publish_once(
        addr,
        "host-1",
        STATE,
        br#"{"online":false,"timestamp":2}"#,
        QoS::AtLeastOnce,
        true,
    )
    .await;

    let (_edge, mut edge_loop) = subscriber(addr, "edge-1", STATE, QoS::AtLeastOnce).await;
    let p = next_publish(&mut edge_loop).await;
    assert_eq!(&p.payload[..], br#"{"online":false,"timestamp":2}"#);
    assert!(p.retain);
    broker.stop().await;
}

#[tokio::test]
async fn live_retained_publish_reaches_current_subscriber_without_retain_flag() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_edge, mut edge_loop) = subscriber(addr, "edge-1", STATE, QoS::AtLeastOnce).await;

    publish_once(
        addr,
        "host-1",
        STATE,
        br#"{"online":true,"timestamp":3}"#,
        QoS::AtLeastOnce,
        true,
    )
    .await;
    let p = next_publish(&mut edge_loop).await;
    assert_eq!(&p.payload[..], br#"{"online":true,"timestamp":3}"#);
    assert!(
        !p.retain,
        "MQTT 3.1.1 3.3.1.3: live deliveries carry retain 0"
    );
    broker.stop().await;
}

#[tokio::test]
async fn empty_retained_publish_clears_retained_message() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    publish_once(
        addr,
        "host-1",
        STATE,
        br#"{"online":true,"timestamp":1}"#,
        QoS::AtLeastOnce,
        true,
    )
    .await;
    publish_once(addr, "host-1", STATE, b"", QoS::AtLeastOnce, true).await;

    let (_edge, mut edge_loop) =
        subscriber(addr, "edge-1", "spBv1.0/STATE/+", QoS::AtLeastOnce).await;
    // Anything retained would arrive before this later marker.
    publish_once(
        addr,
        "host-2",
        "spBv1.0/STATE/host-2",
        b"marker",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    let p = next_publish(&mut edge_loop).await;
    assert_eq!(&p.topic[..], b"spBv1.0/STATE/host-2");
    assert_eq!(&p.payload[..], b"marker");
    broker.stop().await;
}

#[tokio::test]
async fn wildcard_subscriptions_match_sparkplug_topics() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) = subscriber(addr, "host", "spBv1.0/#", QoS::AtLeastOnce).await;
    let (_dev, mut dev_loop) =
        subscriber(addr, "viewer", "spBv1.0/+/DDATA/+/+", QoS::AtMostOnce).await;

    let topics = [
        "spBv1.0/plant/NBIRTH/edge-1",
        "spBv1.0/plant/DDATA/edge-1/pump-3",
        "spBv1.0/STATE/host-1",
    ];
    for topic in topics {
        publish_once(
            addr,
            "edge-1",
            topic,
            topic.as_bytes(),
            QoS::AtLeastOnce,
            false,
        )
        .await;
    }
    for topic in topics {
        let p = next_publish(&mut host_loop).await;
        assert_eq!(p.topic, topic.as_bytes());
    }
    let p = next_publish(&mut dev_loop).await;
    assert_eq!(&p.topic[..], b"spBv1.0/plant/DDATA/edge-1/pump-3");
    broker.stop().await;
}

fn edge_with_will(
    id: &str,
    addr: std::net::SocketAddr,
    payload: &[u8],
    retain: bool,
) -> rumqttc::MqttOptions {
    let mut o = options(id, addr);
    o.set_last_will(LastWill::new(
        NDEATH,
        payload.to_vec(),
        QoS::AtLeastOnce,
        retain,
    ));
    o
}

#[tokio::test]
async fn will_is_published_at_qos1_when_connection_drops_without_disconnect() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) = subscriber(addr, "host", "spBv1.0/#", QoS::AtLeastOnce).await;

    let (_edge, edge_loop) = connect(edge_with_will("edge-1", addr, b"bdSeq=7", false)).await;
    // Dropping the event loop closes the socket without DISCONNECT.
    drop(edge_loop);

    let p = next_publish(&mut host_loop).await;
    assert_eq!(p.topic, NDEATH.as_bytes());
    assert_eq!(&p.payload[..], b"bdSeq=7");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    broker.stop().await;
}

#[tokio::test]
async fn retained_will_is_kept_for_later_subscribers() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_edge, edge_loop) = connect(edge_with_will("edge-1", addr, b"gone", true)).await;
    drop(edge_loop);
    // Reconnecting with the same id waits until the old session has ended and its will
    // is published.
    let (edge, edge_loop) = connect(options("edge-1", addr)).await;
    disconnect(edge, edge_loop).await;

    let (_late, mut late_loop) = subscriber(addr, "late", NDEATH, QoS::AtLeastOnce).await;
    let p = next_publish(&mut late_loop).await;
    assert_eq!(&p.topic[..], NDEATH.as_bytes());
    assert_eq!(&p.payload[..], b"gone");
    assert!(p.retain);
    broker.stop().await;
}

#[tokio::test]
async fn clean_disconnect_discards_the_will() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) = subscriber(addr, "host", "spBv1.0/#", QoS::AtLeastOnce).await;

    let (edge, edge_loop) = connect(edge_with_will("edge-1", addr, b"bdSeq=7", false)).await;
    disconnect(edge, edge_loop).await;
    // Reconnecting with the same id waits until the old session has fully ended (its
    // will, had it one, published), so the marker comes strictly after any will.
    publish_once(
        addr,
        "edge-1",
        "spBv1.0/plant/NDATA/edge-2",
        b"marker",
        QoS::AtLeastOnce,
        false,
    )
    .await;

    let p = next_publish(&mut host_loop).await;
    assert_eq!(
        &p.topic[..],
        b"spBv1.0/plant/NDATA/edge-2",
        "no will after a clean DISCONNECT"
    );
    broker.stop().await;
}

#[tokio::test]
async fn reconnected_session_keeps_its_own_will_after_takeover() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) = subscriber(addr, "host", "spBv1.0/#", QoS::AtLeastOnce).await;

    // The old connection stays open (as a half-open link would) while the node reconnects.
    let (_old, _old_loop) = connect(edge_with_will("edge-1", addr, b"bdSeq=1", false)).await;
    let (_new, new_loop) = connect(edge_with_will("edge-1", addr, b"bdSeq=2", false)).await;

    // The broker closes the old connection: its will goes out.
    let p = next_publish(&mut host_loop).await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (NDEATH.as_bytes(), &b"bdSeq=1"[..])
    );

    // The new session's will is still armed and goes out when it drops.
    drop(new_loop);
    let p = next_publish(&mut host_loop).await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (NDEATH.as_bytes(), &b"bdSeq=2"[..])
    );
    broker.stop().await;
}

#[tokio::test]
async fn clean_session_does_not_keep_subscriptions() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (host, host_loop) = subscriber(addr, "host", "spBv1.0/plant/#", QoS::AtLeastOnce).await;
    disconnect(host, host_loop).await;

    publish_once(
        addr,
        "edge-1",
        "spBv1.0/plant/NDATA/edge-1",
        b"while away",
        QoS::AtLeastOnce,
        false,
    )
    .await;

    let (_host, mut host_loop) =
        subscriber(addr, "host", "spBv1.0/STATE/+", QoS::AtLeastOnce).await;
    publish_once(
        addr,
        "edge-1",
        "spBv1.0/plant/NDATA/edge-1",
        b"after",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    publish_once(
        addr,
        "host-2",
        "spBv1.0/STATE/host-2",
        b"marker",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    let p = next_publish(&mut host_loop).await;
    assert_eq!(
        &p.topic[..],
        b"spBv1.0/STATE/host-2",
        "old subscription and queued message are gone"
    );
    broker.stop().await;
}

/// A CONNECT (MQTT 3.1.1) with a QoS 1 will, written by hand so the client can then fall
/// silent while its socket stays open, as over a half-open satellite link.
fn connect_with_will(client_id: &str, keep_alive: u16, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02 | 0x04 | 0x08];
    body.extend(keep_alive.to_be_bytes());
    for field in [client_id.as_bytes(), topic.as_bytes(), payload] {
        body.extend((field.len() as u16).to_be_bytes());
        body.extend(field);
    }
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

#[tokio::test]
async fn will_is_published_when_a_silent_client_outlives_its_keep_alive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) = subscriber(addr, "host", "spBv1.0/#", QoS::AtLeastOnce).await;

    let mut edge = tokio::net::TcpStream::connect(addr).await.unwrap();
    edge.write_all(&connect_with_will("edge-1", 1, NDEATH, b"bdSeq=3"))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    edge.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);

    // No PINGREQ: the broker gives up after 1.5 keep-alive periods.
    let p = next_publish(&mut host_loop).await;
    assert_eq!(&p.topic[..], NDEATH.as_bytes());
    assert_eq!(&p.payload[..], b"bdSeq=3");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    drop(edge);
    broker.stop().await;
}

#[tokio::test]
async fn mqtt5_disconnect_with_will_reason_publishes_the_will() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) = subscriber(addr, "host", "spBv1.0/#", QoS::AtLeastOnce).await;

    // MQTT 5 CONNECT: clean start, QoS 1 will, keep alive 30, no properties.
    let mut body = vec![
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        5,
        0x02 | 0x04 | 0x08,
        0,
        30,
        0,
    ];
    body.extend([0, 6]);
    body.extend(b"edge-5");
    body.push(0); // will properties
    for field in [NDEATH.as_bytes(), b"bdSeq=5"] {
        body.extend((field.len() as u16).to_be_bytes());
        body.extend(field);
    }
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    let mut edge = tokio::net::TcpStream::connect(addr).await.unwrap();
    edge.write_all(&packet).await.unwrap();
    let mut head = [0u8; 2];
    edge.read_exact(&mut head).await.unwrap();
    let mut connack = vec![0u8; usize::from(head[1])];
    edge.read_exact(&mut connack).await.unwrap();
    assert_eq!((head[0], connack[1]), (0x20, 0), "CONNACK success");

    // DISCONNECT with reason 0x04 "Disconnect with Will Message".
    edge.write_all(&[0xe0, 1, 0x04]).await.unwrap();
    let p = next_publish(&mut host_loop).await;
    assert_eq!(&p.topic[..], NDEATH.as_bytes());
    assert_eq!(&p.payload[..], b"bdSeq=5");
    broker.stop().await;
}

#[tokio::test]
async fn persistent_session_keeps_subscription_and_queued_qos1_message() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let mut persistent = options("historian", addr);
    persistent.set_clean_session(false);
    let (client, mut eventloop) = connect(persistent.clone()).await;
    subscribe(&client, &mut eventloop, "spBv1.0/plant/#", QoS::AtLeastOnce).await;
    disconnect(client, eventloop).await;

    publish_once(
        addr,
        "edge-1",
        "spBv1.0/plant/NDATA/edge-1",
        b"queued",
        QoS::AtLeastOnce,
        false,
    )
    .await;

    let (_client, mut eventloop) = connect(persistent).await;
    let p = next_publish(&mut eventloop).await;
    assert_eq!(&p.payload[..], b"queued");
    broker.stop().await;
}

#[tokio::test]
async fn short_sessions_coming_and_going_do_not_disturb_long_lived_ones() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) = subscriber(addr, "host", "spBv1.0/#", QoS::AtLeastOnce).await;
    // A long-lived edge node with an NDEATH will that must not go out.
    let (_edge, mut edge_loop) = connect(edge_with_will("edge-1", addr, b"bdSeq=1", false)).await;
    let edge_alive = tokio::spawn(async move {
        // Keeps the edge's session serviced (PINGREQ) until the test ends.
        while edge_loop.poll().await.is_ok() {}
    });

    // Many short sessions end (and the engine frees their state) while these stay.
    const SHORT_SESSIONS: usize = 40;
    for i in 0..SHORT_SESSIONS {
        let topic = format!("spBv1.0/plant/NDATA/short-{i}");
        publish_once(
            addr,
            &format!("short-{i}"),
            &topic,
            b"x",
            QoS::AtLeastOnce,
            false,
        )
        .await;
    }
    publish_once(
        addr,
        "last",
        "spBv1.0/plant/NDATA/last",
        b"marker",
        QoS::AtLeastOnce,
        false,
    )
    .await;

    let mut seen = 0;
    loop {
        let p = next_publish(&mut host_loop).await;
        assert_ne!(
            &p.topic[..],
            NDEATH.as_bytes(),
            "the live edge's will went out"
        );
        if &p.payload[..] == b"marker" {
            break;
        }
        seen += 1;
    }
    assert_eq!(seen, SHORT_SESSIONS);
    assert!(
        !edge_alive.is_finished(),
        "the long-lived edge was disconnected"
    );
    edge_alive.abort();
    broker.stop().await;
}
