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

/// A raw MQTT 5 client: only what a kept session across a restart needs.
mod mqtt5 {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::WAIT;

    fn packet(header: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![header];
        let mut len = body.len();
        loop {
            let byte = (len % 128) as u8;
            len /= 128;
            out.push(if len > 0 { byte | 0x80 } else { byte });
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(body);
        out
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u16).to_be_bytes());
        out.extend(s.as_bytes());
    }

    /// Connects with Clean Start false and `expiry_s` as Session Expiry Interval;
    /// returns the stream and the CONNACK's session present flag.
    pub async fn connect(addr: SocketAddr, client_id: &str, expiry_s: u32) -> (TcpStream, bool) {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0, 0, 30];
        body.push(5);
        body.push(0x11);
        body.extend(expiry_s.to_be_bytes());
        string(&mut body, client_id);
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&packet(0x10, &body)).await.unwrap();
        let (header, connack) = host_app_testkit::broker::read_packet(&mut stream).await;
        assert_eq!(header, 0x20, "CONNACK");
        assert_eq!(connack[1], 0, "CONNECT accepted");
        (stream, connack[0] & 1 == 1)
    }

    pub async fn subscribe(stream: &mut TcpStream, filter: &str) {
        let mut body = vec![0, 1, 0];
        string(&mut body, filter);
        body.push(1);
        stream.write_all(&packet(0x82, &body)).await.unwrap();
        let (header, suback) = host_app_testkit::broker::read_packet(stream).await;
        assert_eq!(header, 0x90, "SUBACK");
        assert_eq!(suback.last(), Some(&1), "granted QoS 1");
    }

    /// DISCONNECT (normal; the session expiry of the CONNECT stays), then waits until the
    /// broker has closed the connection.
    pub async fn disconnect(mut stream: TcpStream) {
        stream.write_all(&[0xe0, 0]).await.unwrap();
        // Left open: the broker ends the connection at the DISCONNECT.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the broker closes the connection");
    }

    /// The next PUBLISH's topic and payload.
    pub async fn next_publish(stream: &mut TcpStream) -> (String, Vec<u8>) {
        loop {
            let (header, body) = host_app_testkit::broker::read_packet(stream).await;
            if header >> 4 != 3 {
                continue;
            }
            let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let topic = String::from_utf8(body[2..2 + topic_len].to_vec()).unwrap();
            let mut at = 2 + topic_len;
            if (header >> 1) & 3 > 0 {
                at += 2;
            }
            // Properties, then the payload.
            let (mut props, mut shift, mut used) = (0usize, 0, 0);
            loop {
                let byte = body[at + used];
                used += 1;
                props |= usize::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            return (topic, body[at + used + props..].to_vec());
        }
    }
}

#[tokio::test]
async fn mqtt5_session_expiry_is_counted_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    // One session kept an hour, one only a second.
    for (client_id, expiry_s) in [("long", 3600), ("short", 1)] {
        let (mut stream, present) = mqtt5::connect(addr, client_id, expiry_s).await;
        assert!(!present, "{client_id}: a new session");
        mqtt5::subscribe(&mut stream, "plant/data/#").await;
        mqtt5::disconnect(stream).await;
    }
    publish_once(
        addr,
        "edge",
        "plant/data/n",
        b"queued",
        QoS::AtLeastOnce,
        false,
    )
    .await;
    broker.stop().await;
    // Longer than the short session's interval, counted from its client's leaving.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let broker = start_in(&config, dir.path()).await;
    let addr = broker.plain_addr().unwrap();
    let (mut long, present) = mqtt5::connect(addr, "long", 3600).await;
    assert!(
        present,
        "the session kept an hour is found after the restart"
    );
    let (topic, payload) = mqtt5::next_publish(&mut long).await;
    assert_eq!(
        (topic.as_str(), &payload[..]),
        ("plant/data/n", &b"queued"[..])
    );
    let (_short, present) = mqtt5::connect(addr, "short", 1).await;
    assert!(
        !present,
        "the session kept a second expired across the restart"
    );
    broker.stop().await;
}
