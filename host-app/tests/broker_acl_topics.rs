//! The access rules on PUBLISH and SUBSCRIBE, end to end against the embedded broker: an
//! edge account's publishes on another node's topics, on STATE and on commands are not
//! delivered; a reader's publishes are not delivered; subscribing to another node's
//! commands is refused in the SUBACK.
//!
//! The engine asks the access rules ([`TopicPolicy`](host_app::broker::TopicPolicy)) on
//! every PUBLISH and SUBSCRIBE through rmqtt's ACL hooks.

use std::net::SocketAddr;

use host_app::broker::{EmbeddedBroker, EmbeddedConfig, Secret, UserConfig};
use host_app_testkit::broker::{WAIT, config, start, with_accounts};
use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, PublishOptions, QoS, SubscribeReasonCode,
};
use system_tests::mqtt::client::{connect, next_publish, options, subscribe, wait_sent};

fn account(name: &str) -> UserConfig {
    UserConfig::new(name, Secret::new(format!("{name}-pw")))
}

/// Host `scada`, edge nodes `Plant1/Line1` and `Plant1/Line2` with an account each, a
/// reader; anonymous access off.
fn plant() -> EmbeddedConfig {
    with_accounts(
        config(),
        vec![
            account("scada").host("scada"),
            account("line1").edge("Plant1", &["Line1"]),
            account("line2").edge("Plant1", &["Line2"]),
            account("dash").reader(),
        ],
    )
}

fn login(client_id: &str, addr: SocketAddr, user: &str) -> MqttOptions {
    let mut options = options(client_id, addr);
    options.set_credentials(user, format!("{user}-pw"));
    options
}

/// Connects as `user`/`client_id`, publishes once at QoS 0 and drops the connection
/// (an engine may close a connection that published where it must not).
async fn publish_once(addr: SocketAddr, client_id: &str, user: &str, topic: &str, retain: bool) {
    let (client, mut eventloop) = connect(login(client_id, addr, user)).await;
    client
        .publish(
            topic,
            b"forged".to_vec(),
            PublishOptions::new(QoS::AtMostOnce).retain(retain),
        )
        .await
        .unwrap();
    wait_sent(&mut eventloop).await;
    drop((client, eventloop));
}

/// The SUBACK return code of one SUBSCRIBE to `filter`.
async fn suback(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    filter: &str,
) -> SubscribeReasonCode {
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let poll = async {
        loop {
            if let Event::Incoming(Incoming::SubAck(ack)) = eventloop.poll().await.unwrap() {
                return ack.return_codes[0];
            }
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .expect("SUBACK in time")
}

/// The host, subscribed to the whole namespace.
async fn host_watching(addr: SocketAddr) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = connect(login("host-scada", addr, "scada")).await;
    subscribe(&client, &mut eventloop, "spBv1.0/#", QoS::AtLeastOnce).await;
    (client, eventloop)
}

#[tokio::test]
async fn an_edge_account_publishing_another_nodes_topics_state_or_commands_is_not_delivered() {
    let broker: EmbeddedBroker = start(&plant()).await;
    let addr = broker.plain_addr().unwrap();
    let (_host, mut host_loop) = host_watching(addr).await;
    for (topic, retain) in [
        ("spBv1.0/Plant1/NDATA/Line2", false),
        ("spBv1.0/Plant1/NBIRTH/Line2", false),
        ("spBv1.0/Plant1/DDATA/Line2/Pump", false),
        ("spBv1.0/STATE/scada", true),
        ("spBv1.0/Plant1/NCMD/Line2", false),
        ("spBv1.0/Plant1/DCMD/Line2/Pump", false),
        ("spBv1.0/Plant1/NCMD/Line1", false),
    ] {
        publish_once(addr, "Plant1:Line1", "line1", topic, retain).await;
    }
    // Its own data goes through, and is the first thing the host sees.
    publish_once(
        addr,
        "Plant1:Line1",
        "line1",
        "spBv1.0/Plant1/NDATA/Line1",
        false,
    )
    .await;
    let first = next_publish(&mut host_loop).await;
    assert_eq!(first.topic, "spBv1.0/Plant1/NDATA/Line1", "{first:?}");
    broker.stop().await;
}

#[tokio::test]
async fn a_readers_publish_is_not_delivered() {
    let broker = start(&plant()).await;
    let addr = broker.plain_addr().unwrap();
    let (edge, mut edge_loop) = connect(login("Plant1:Line1", addr, "line1")).await;
    subscribe(
        &edge,
        &mut edge_loop,
        "spBv1.0/Plant1/NCMD/Line1",
        QoS::AtLeastOnce,
    )
    .await;
    publish_once(addr, "dash-1", "dash", "spBv1.0/Plant1/NCMD/Line1", false).await;
    // The host's command is the first the edge node receives.
    let (host, mut host_loop) = connect(login("host-scada", addr, "scada")).await;
    host.publish(
        "spBv1.0/Plant1/NCMD/Line1",
        b"from the host".to_vec(),
        PublishOptions::new(QoS::AtMostOnce),
    )
    .await
    .unwrap();
    wait_sent(&mut host_loop).await;
    let first = next_publish(&mut edge_loop).await;
    assert_eq!(&first.payload[..], b"from the host");
    broker.stop().await;
}

#[tokio::test]
async fn subscribing_to_another_nodes_commands_is_refused_in_the_suback() {
    let broker = start(&plant()).await;
    let addr = broker.plain_addr().unwrap();
    let (client, mut eventloop) = connect(login("Plant1:Line1", addr, "line1")).await;
    for filter in [
        "spBv1.0/Plant1/NCMD/Line2",
        "spBv1.0/Plant1/DCMD/Line2/+",
        "spBv1.0/Plant1/NCMD/+",
        "spBv1.0/#",
    ] {
        assert_eq!(
            suback(&client, &mut eventloop, filter).await,
            SubscribeReasonCode::Failure,
            "{filter}"
        );
    }
    for filter in [
        "spBv1.0/Plant1/NCMD/Line1",
        "spBv1.0/Plant1/DCMD/Line1/+",
        "spBv1.0/STATE/scada",
    ] {
        assert!(
            matches!(
                suback(&client, &mut eventloop, filter).await,
                SubscribeReasonCode::Success(_)
            ),
            "{filter}"
        );
    }
    broker.stop().await;
}
