//! What the embedded broker keeps across a restart (its store in the state directory):
//! retained messages, and the sessions clients ask to keep with the QoS 1 messages
//! queued for them while offline; a clean session keeps nothing, and what is restored is
//! held to the access rules in force after the restart.

use std::path::Path;

use host_app::broker::{EmbeddedBroker, EmbeddedConfig, STORE_FILE, Secret, UserConfig};
use host_app_testkit::broker::*;
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, PublishOptions, QoS};
use system_tests::mqtt::client::*;

async fn start_in(config: &EmbeddedConfig, dir: &Path) -> EmbeddedBroker {
    system_tests::logs::init();
    EmbeddedBroker::start_in(config, Some(dir)).await.unwrap()
}

/// Connects and returns the CONNACK's session present flag.
async fn connect_present(options: MqttOptions) -> (AsyncClient, EventLoop, bool) {
    let (client, mut eventloop) = AsyncClient::builder(options).build();
    let poll = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => return ack.session_present,
                Ok(_) => continue,
                Err(e) => panic!("connect failed: {e:?}"),
            }
        }
    };
    let present = tokio::time::timeout(WAIT, poll)
        .await
        .expect("no CONNACK in time");
    (client, eventloop, present)
}

fn kept(id: &str, addr: std::net::SocketAddr) -> MqttOptions {
    let mut options = options(id, addr);
    options.set_clean_session(false);
    options
}

fn with_credentials(mut options: MqttOptions, user: &str, password: &str) -> MqttOptions {
    options.set_credentials(user.to_owned(), password.to_owned());
    options
}

#[tokio::test]
async fn retained_message_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    publish_once(
        addr,
        "host",
        "spBv1.0/STATE/host-1",
        b"online",
        QoS::AtLeastOnce,
        true,
    )
    .await;
    broker.stop().await;

    let store = dir.path().join(STORE_FILE);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&store).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the store is owner-only");

    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    let (_edge, mut edge_loop) =
        subscriber(addr, "edge", "spBv1.0/STATE/+", QoS::AtLeastOnce).await;
    let p = next_publish(&mut edge_loop).await;
    assert_eq!(&p.topic[..], b"spBv1.0/STATE/host-1");
    assert_eq!(&p.payload[..], b"online");
    assert!(p.retain, "delivered as retained");
    broker.stop().await;

    // Cleared by an empty retained publish, and that too survives a restart.
    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    publish_once(
        addr,
        "host",
        "spBv1.0/STATE/host-1",
        b"",
        QoS::AtLeastOnce,
        true,
    )
    .await;
    broker.stop().await;
    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    let (_edge, mut edge_loop) = subscriber(addr, "edge", "spBv1.0/#", QoS::AtLeastOnce).await;
    publish_once(
        addr,
        "marker",
        "spBv1.0/STATE/marker",
        b"m",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    let p = next_publish(&mut edge_loop).await;
    assert_eq!(&p.topic[..], b"spBv1.0/STATE/marker", "nothing retained");
    broker.stop().await;
}

#[tokio::test]
async fn kept_session_gets_messages_queued_while_offline_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    let (client, mut eventloop, _) = connect_present(kept("history", addr)).await;
    subscribe(&client, &mut eventloop, "plant/data/#", QoS::AtLeastOnce).await;
    disconnect(client, eventloop).await;
    for i in 0..3 {
        publish_once(
            addr,
            "edge",
            "plant/data/n",
            format!("m{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
        )
        .await;
    }
    broker.stop().await;

    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    let (_client, mut eventloop, present) = connect_present(kept("history", addr)).await;
    assert!(present, "the kept session is found after the restart");
    for i in 0..3 {
        let p = next_publish(&mut eventloop).await;
        assert_eq!(&p.payload[..], format!("m{i}").as_bytes(), "in order");
        assert_eq!(p.qos, QoS::AtLeastOnce);
    }
    // Its subscription was restored too: a new message reaches it without subscribing.
    publish_once(
        addr,
        "edge",
        "plant/data/n",
        b"after",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    let p = next_publish(&mut eventloop).await;
    assert_eq!(&p.payload[..], b"after");
    broker.stop().await;
}

#[tokio::test]
async fn clean_session_keeps_nothing_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    let (client, eventloop) = subscriber(addr, "panel", "plant/#", QoS::AtLeastOnce).await;
    disconnect(client, eventloop).await;
    publish_once(
        addr,
        "edge",
        "plant/data/n",
        b"missed",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    broker.stop().await;

    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    let (client, mut eventloop, present) = connect_present(kept("panel", addr)).await;
    assert!(!present, "a clean session leaves no session behind");
    subscribe(&client, &mut eventloop, "plant/#", QoS::AtLeastOnce).await;
    publish_once(addr, "edge", "plant/marker", b"m", QoS::AtLeastOnce, false).await;
    let p = next_publish(&mut eventloop).await;
    assert_eq!(&p.topic[..], b"plant/marker", "no message was kept for it");
    broker.stop().await;
}

/// A writer and a reader whose grants are `reader_subscribe`.
fn accounts(reader_subscribe: &[&str]) -> EmbeddedConfig {
    with_accounts(
        config(),
        vec![
            UserConfig::new("host-1", Secret::new("host-pw")).host("host-1"),
            UserConfig::new("writer", Secret::new("writer-pw")).custom(&["plant/#"], &[]),
            UserConfig::new("reader", Secret::new("reader-pw")).custom(&[], reader_subscribe),
        ],
    )
}

#[tokio::test]
async fn restored_state_is_held_to_the_access_rules_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let before = accounts(&["plant/#"]);
    let broker = start_in(&before, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    let writer = |id: &str| with_credentials(options(id, addr), "writer", "writer-pw");
    let (client, mut eventloop, _) = connect_present(with_credentials(
        kept("reader-1", addr),
        "reader",
        "reader-pw",
    ))
    .await;
    subscribe(&client, &mut eventloop, "plant/secret/#", QoS::AtLeastOnce).await;
    disconnect(client, eventloop).await;
    let (w, mut w_loop) = connect(writer("writer-1")).await;
    w.publish(
        "plant/secret/r",
        b"retained".to_vec(),
        PublishOptions::new(QoS::AtLeastOnce).retain(true),
    )
    .await
    .unwrap();
    wait_puback(&mut w_loop).await;
    w.publish(
        "plant/secret/q",
        b"queued".to_vec(),
        PublishOptions::new(QoS::AtLeastOnce).retain(false),
    )
    .await
    .unwrap();
    wait_puback(&mut w_loop).await;
    disconnect(w, w_loop).await;
    broker.stop().await;

    // The reader may now read plant/open/# only.
    let after = accounts(&["plant/open/#"]);
    let broker = start_in(&after, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    let writer = |id: &str| with_credentials(options(id, addr), "writer", "writer-pw");
    let (client, mut eventloop, present) = connect_present(with_credentials(
        kept("reader-1", addr),
        "reader",
        "reader-pw",
    ))
    .await;
    assert!(present, "the session itself is kept");
    client
        .subscribe("plant/secret/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    subscribe(&client, &mut eventloop, "plant/open/#", QoS::AtLeastOnce).await;
    let (w, mut w_loop) = connect(writer("writer-1")).await;
    w.publish(
        "plant/open/m",
        b"marker".to_vec(),
        PublishOptions::new(QoS::AtLeastOnce).retain(false),
    )
    .await
    .unwrap();
    wait_puback(&mut w_loop).await;
    let p = next_publish(&mut eventloop).await;
    assert_eq!(
        &p.topic[..],
        b"plant/open/m",
        "neither the queued message nor the retained one of a topic it may no longer \
         read reached it"
    );
    disconnect(w, w_loop).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_corrupt_store_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join(STORE_FILE);
    std::fs::write(&store, vec![0x5a; 8192]).unwrap();
    system_tests::logs::init();
    let error = match EmbeddedBroker::start_in(&config(), Some(dir.path())).await {
        Ok(_) => panic!("a corrupt store was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains(&store.display().to_string()),
        "names the file: {error}"
    );
}

#[tokio::test]
async fn retained_messages_past_the_limit_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.max_retained_messages = 1;
    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    for topic in ["plant/a", "plant/b"] {
        publish_once(addr, "w", topic, b"r", QoS::AtLeastOnce, true).await;
    }
    broker.stop().await;
    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    let (_s, mut s_loop) = subscriber(addr, "s", "plant/#", QoS::AtLeastOnce).await;
    let p = next_publish(&mut s_loop).await;
    assert_eq!(&p.topic[..], b"plant/a", "the first one is kept");
    publish_once(addr, "w", "plant/marker", b"m", QoS::AtLeastOnce, false).await;
    let p = next_publish(&mut s_loop).await;
    assert_eq!(&p.topic[..], b"plant/marker", "the second one was not");
    broker.stop().await;
}

#[tokio::test]
async fn sparkplug_aware_births_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let nbirth = "spBv1.0/plant/NBIRTH/edge-1";
    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    publish_once(addr, "edge-1", nbirth, b"nbirth-1", QoS::AtLeastOnce, false).await;
    broker.stop().await;

    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    let (_late, mut late_loop) = subscriber(
        addr,
        "late-host",
        "$sparkplug/certificates/#",
        QoS::AtLeastOnce,
    )
    .await;
    let p = next_publish(&mut late_loop).await;
    assert_eq!(
        p.topic.to_vec(),
        format!("$sparkplug/certificates/{nbirth}").into_bytes()
    );
    assert_eq!(&p.payload[..], b"nbirth-1");
    assert!(p.retain);
    broker.stop().await;
}
