//! The embedded broker as a Sparkplug Aware MQTT Server (Sparkplug 3.0, chapter 10): each
//! NBIRTH and DBIRTH, published with retain false, is kept retained under
//! `$sparkplug/certificates/` + its topic, the most recent one only; NDEATH passes as
//! published.

use host_app_testkit::broker::*;
use rumqttc::QoS;
use system_tests::mqtt::client::*;

const NBIRTH: &str = "spBv1.0/plant/NBIRTH/edge-1";
const DBIRTH: &str = "spBv1.0/plant/DBIRTH/edge-1/pump-1";
const NDEATH: &str = "spBv1.0/plant/NDEATH/edge-1";

#[tokio::test]
async fn births_are_kept_retained_under_sparkplug_certificates() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    publish_once(addr, "edge-1", NBIRTH, b"nbirth-1", QoS::AtLeastOnce, false).await;
    publish_once(addr, "edge-1", DBIRTH, b"dbirth-1", QoS::AtLeastOnce, false).await;

    // A host that joins late sees both at once, retained, byte for byte.
    let (_late, mut late_loop) = subscriber(
        addr,
        "late-host",
        "$sparkplug/certificates/#",
        QoS::AtLeastOnce,
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let p = next_publish(&mut late_loop).await;
        assert!(p.retain, "{:?} delivered retained", p.topic);
        seen.push((
            String::from_utf8(p.topic.to_vec()).unwrap(),
            p.payload.to_vec(),
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                format!("$sparkplug/certificates/{DBIRTH}"),
                b"dbirth-1".to_vec()
            ),
            (
                format!("$sparkplug/certificates/{NBIRTH}"),
                b"nbirth-1".to_vec()
            ),
        ]
    );

    // The births themselves stay non-retained.
    let (_other, mut other_loop) =
        subscriber(addr, "other-host", "spBv1.0/plant/#", QoS::AtLeastOnce).await;
    publish_once(
        addr,
        "edge-2",
        "spBv1.0/plant/NDATA/edge-2",
        b"x",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    let p = next_publish(&mut other_loop).await;
    assert_eq!(
        &p.topic[..],
        b"spBv1.0/plant/NDATA/edge-2",
        "no retained birth came first"
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_new_nbirth_replaces_the_stored_one() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    publish_once(addr, "edge-1", NBIRTH, b"nbirth-1", QoS::AtLeastOnce, false).await;
    publish_once(addr, "edge-1", NBIRTH, b"nbirth-2", QoS::AtLeastOnce, false).await;
    let topic = format!("$sparkplug/certificates/{NBIRTH}");
    let (_late, mut late_loop) = subscriber(addr, "late-host", &topic, QoS::AtLeastOnce).await;
    let p = next_publish(&mut late_loop).await;
    assert_eq!(&p.payload[..], b"nbirth-2");
    assert!(p.retain);
    broker.stop().await;
}

#[tokio::test]
async fn ndeath_passes_with_its_own_timestamp() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) =
        subscriber(addr, "host", "spBv1.0/plant/#", QoS::AtLeastOnce).await;
    // The server MAY replace an NDEATH's timestamp; this one does not touch the payload.
    let ndeath = b"\x08\xd2\x09 payload as published";
    publish_once(addr, "edge-1", NDEATH, ndeath, QoS::AtLeastOnce, false).await;
    let p = next_publish(&mut host_loop).await;
    assert_eq!(&p.topic[..], NDEATH.as_bytes());
    assert_eq!(&p.payload[..], ndeath);
    broker.stop().await;
}
