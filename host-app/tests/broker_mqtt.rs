//! What Sparkplug needs from its MQTT server, checked through the embedded broker with a
//! real client: QoS 0/1, retained STATE, wildcards, clean sessions and the NDEATH will.

mod broker_support;

use broker_support::*;
use rumqttc::{LastWill, QoS};

const STATE: &str = "spBv1.0/STATE/host-1";
const NDEATH: &str = "spBv1.0/plant/NDEATH/edge-1";

#[tokio::test]
async fn qos0_publish_reaches_subscriber() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (host, mut host_loop) = connect(options("host", addr)).await;
    subscribe(
        &host,
        &mut host_loop,
        "spBv1.0/plant/NDATA/+",
        QoS::AtMostOnce,
    )
    .await;

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
async fn qos1_publish_reaches_subscriber_at_qos1() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (host, mut host_loop) = connect(options("host", addr)).await;
    subscribe(
        &host,
        &mut host_loop,
        "spBv1.0/plant/NCMD/+",
        QoS::AtLeastOnce,
    )
    .await;

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

    let (edge, mut edge_loop) = connect(options("edge-1", addr)).await;
    subscribe(&edge, &mut edge_loop, "spBv1.0/STATE/+", QoS::AtLeastOnce).await;
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

    let (edge, mut edge_loop) = connect(options("edge-1", addr)).await;
    subscribe(&edge, &mut edge_loop, STATE, QoS::AtLeastOnce).await;
    let p = next_publish(&mut edge_loop).await;
    assert_eq!(&p.payload[..], br#"{"online":false,"timestamp":2}"#);
    assert!(p.retain);
    broker.stop().await;
}

#[tokio::test]
async fn live_retained_publish_reaches_current_subscriber_without_retain_flag() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (edge, mut edge_loop) = connect(options("edge-1", addr)).await;
    subscribe(&edge, &mut edge_loop, STATE, QoS::AtLeastOnce).await;

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

    let (edge, mut edge_loop) = connect(options("edge-1", addr)).await;
    subscribe(&edge, &mut edge_loop, "spBv1.0/STATE/+", QoS::AtLeastOnce).await;
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
    let (host, mut host_loop) = connect(options("host", addr)).await;
    subscribe(&host, &mut host_loop, "spBv1.0/#", QoS::AtLeastOnce).await;
    let (dev, mut dev_loop) = connect(options("viewer", addr)).await;
    subscribe(&dev, &mut dev_loop, "spBv1.0/+/DDATA/+/+", QoS::AtMostOnce).await;

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
    let (host, mut host_loop) = connect(options("host", addr)).await;
    subscribe(&host, &mut host_loop, "spBv1.0/#", QoS::AtLeastOnce).await;

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

    // The will is published asynchronously; poll with a fresh subscriber until it shows.
    let mut found = None;
    for attempt in 0..50 {
        let (c, mut l) = connect(options(&format!("late-{attempt}"), addr)).await;
        subscribe(&c, &mut l, NDEATH, QoS::AtLeastOnce).await;
        publish_once(
            addr,
            "marker",
            NDEATH.replace("NDEATH", "NDATA").as_str(),
            b"m",
            QoS::AtMostOnce,
            false,
        )
        .await;
        c.subscribe(NDEATH.replace("NDEATH", "NDATA"), QoS::AtLeastOnce)
            .await
            .unwrap();
        publish_once(
            addr,
            "marker",
            &NDEATH.replace("NDEATH", "NDATA"),
            b"marker",
            QoS::AtLeastOnce,
            false,
        )
        .await;
        let p = next_publish(&mut l).await;
        disconnect(c, l).await;
        if p.topic == NDEATH.as_bytes() {
            found = Some(p);
            break;
        }
    }
    let p = found.expect("retained will never showed up");
    assert_eq!(&p.payload[..], b"gone");
    assert!(p.retain);
    broker.stop().await;
}

#[tokio::test]
async fn clean_disconnect_discards_the_will() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (host, mut host_loop) = connect(options("host", addr)).await;
    subscribe(&host, &mut host_loop, "spBv1.0/#", QoS::AtLeastOnce).await;

    let (edge, edge_loop) = connect(edge_with_will("edge-1", addr, b"bdSeq=7", false)).await;
    disconnect(edge, edge_loop).await;
    // A will would be published on the close; the marker comes strictly later.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    publish_once(
        addr,
        "edge-2",
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
    let (host, mut host_loop) = connect(options("host", addr)).await;
    subscribe(&host, &mut host_loop, "spBv1.0/#", QoS::AtLeastOnce).await;

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
    let (host, mut host_loop) = connect(options("host", addr)).await;
    subscribe(&host, &mut host_loop, "spBv1.0/plant/#", QoS::AtLeastOnce).await;
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

    let (host, mut host_loop) = connect(options("host", addr)).await;
    subscribe(&host, &mut host_loop, "spBv1.0/STATE/+", QoS::AtLeastOnce).await;
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
