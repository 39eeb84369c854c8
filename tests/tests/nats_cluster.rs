//! The three-node NATS cluster the fleet tests run on carries Sparkplug across nodes:
//! `spBv1.0/...` topics at QoS 0 and 1, a retained STATE, an NDEATH will, all published on
//! one node and received on another; with one node killed the other two keep delivering,
//! and the killed node serves again once restarted.

use std::net::SocketAddr;

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, LastWill, MqttOptions, PublishOptions, QoS,
};
use system_tests::mqtt::client;
use system_tests::nats::{self, NatsCluster};

/// Upper bound of one wait; never a speed assertion.
const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn login(id: &str, port: u16) -> MqttOptions {
    let mut options = client::options(id, addr(port));
    options.set_credentials(NatsCluster::USERNAME, NatsCluster::PASSWORD);
    options
}

/// Connects, retrying a few times: a login needs the MQTT session stream, whose leader a
/// node lost takes with it until the cluster elects another.
async fn connect(options: MqttOptions) -> (AsyncClient, EventLoop) {
    for _ in 0..10 {
        let (c, mut e) = AsyncClient::builder(options.clone()).build();
        if client::wait_connack(&mut e).await.is_ok() {
            return (c, e);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("no login for {} within 10 attempts", options.client_id());
}

async fn subscriber(id: &str, port: u16, filter: &str) -> (AsyncClient, EventLoop) {
    let (c, mut e) = connect(login(id, port)).await;
    nats::subscribe(&c, &mut e, filter, QoS::AtLeastOnce)
        .await
        .unwrap_or_else(|err| panic!("{id} on port {port}: {err:#}"));
    (c, e)
}

async fn publish(c: &AsyncClient, e: &mut EventLoop, topic: &str, body: &[u8], qos: QoS) {
    c.publish(topic, body.to_vec(), PublishOptions::new(qos))
        .await
        .unwrap();
    match qos {
        QoS::AtMostOnce => client::wait_sent(e).await,
        _ => client::wait_puback(e).await,
    }
}

/// The next PUBLISH on `e` whose topic is `topic`, as (payload, qos, retain).
async fn next_on(e: &mut EventLoop, topic: &str) -> (Vec<u8>, QoS, bool) {
    let wait = async {
        loop {
            match e.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) if p.topic == topic.as_bytes() => {
                    return (p.payload.to_vec(), p.qos, p.retain);
                }
                Ok(_) => {}
                Err(err) => panic!("connection lost waiting for {topic}: {err:?}"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("nothing on {topic} within {WAIT:?}"))
}

/// The retained message on `topic` as a new subscriber on `port` gets it: (payload,
/// retain). A retained message reaches the other nodes asynchronously (each node keeps
/// its own copy, fed from a JetStream stream), so a subscriber that finds none tries again.
async fn retained(id: &str, port: u16, topic: &str) -> (Vec<u8>, bool) {
    for attempt in 0..20 {
        let (c, mut e) = subscriber(&format!("{id}-{attempt}"), port, topic).await;
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            loop {
                match e.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => return Some(p),
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
        })
        .await;
        let _ = c.disconnect().await;
        if let Ok(Some(p)) = got {
            return (p.payload.to_vec(), p.retain);
        }
    }
    panic!("no retained message on {topic} for a subscriber on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparkplug_topics_cross_nodes_and_survive_a_lost_node() {
    let mut cluster = tokio::task::block_in_place(|| NatsCluster::start(3)).expect("cluster");
    let [p0, p1, p2] = [0, 1, 2].map(|i| cluster.mqtt_port(i));

    // Data at QoS 0 and 1 published on node 0 arrives on node 2.
    let (_sub, mut sub) = subscriber("host-sub", p2, "spBv1.0/Plant1/#").await;
    let mut edge_options = login("Plant1:gw1", p0);
    edge_options.set_last_will(LastWill::new(
        "spBv1.0/Plant1/NDEATH/gw1",
        b"death".to_vec(),
        QoS::AtLeastOnce,
        false,
    ));
    let (edge, mut edge_loop) = connect(edge_options).await;
    publish(
        &edge,
        &mut edge_loop,
        "spBv1.0/Plant1/NDATA/gw1",
        b"q0",
        QoS::AtMostOnce,
    )
    .await;
    assert_eq!(
        next_on(&mut sub, "spBv1.0/Plant1/NDATA/gw1").await,
        (b"q0".to_vec(), QoS::AtMostOnce, false)
    );
    publish(
        &edge,
        &mut edge_loop,
        "spBv1.0/Plant1/NDATA/gw1",
        b"q1",
        QoS::AtLeastOnce,
    )
    .await;
    assert_eq!(
        next_on(&mut sub, "spBv1.0/Plant1/NDATA/gw1").await,
        (b"q1".to_vec(), QoS::AtLeastOnce, false)
    );

    // A retained STATE published on node 0 reaches a later subscriber on node 1.
    let state = br#"{"online":true,"timestamp":1}"#;
    let (host, mut host_loop) = connect(login("HostA", p0)).await;
    host.publish(
        "spBv1.0/STATE/HostA",
        state.to_vec(),
        PublishOptions::new(QoS::AtLeastOnce).retain(true),
    )
    .await
    .unwrap();
    client::wait_puback(&mut host_loop).await;
    client::disconnect(host, host_loop).await;
    assert_eq!(
        retained("late-sub", p1, "spBv1.0/STATE/HostA").await,
        (state.to_vec(), true)
    );

    // The edge's connection dropping without DISCONNECT fires its will on node 2.
    drop(edge_loop);
    drop(edge);
    assert_eq!(
        next_on(&mut sub, "spBv1.0/Plant1/NDEATH/gw1").await.0,
        b"death".to_vec()
    );

    // Node 1 lost: node 0 still delivers to node 2, retained STATE included.
    tokio::task::block_in_place(|| {
        cluster.kill(1);
        cluster.wait_for_leaders()
    })
    .expect("the other two nodes elect leaders");
    let (pub0, mut pub0_loop) = connect(login("Plant1:gw2", p0)).await;
    publish(
        &pub0,
        &mut pub0_loop,
        "spBv1.0/Plant1/NDATA/gw2",
        b"after-loss",
        QoS::AtLeastOnce,
    )
    .await;
    assert_eq!(
        next_on(&mut sub, "spBv1.0/Plant1/NDATA/gw2").await.0,
        b"after-loss".to_vec()
    );
    assert_eq!(
        retained("late-sub-2", p2, "spBv1.0/STATE/HostA").await,
        (state.to_vec(), true),
        "the retained STATE survives a lost node"
    );

    // Node 1 back on its ports: it delivers what node 0 publishes again.
    tokio::task::block_in_place(|| cluster.restart(1)).expect("node 1 restarts");
    let (_back, mut back) = subscriber("back-sub", p1, "spBv1.0/Plant1/#").await;
    publish(
        &pub0,
        &mut pub0_loop,
        "spBv1.0/Plant1/NDATA/gw2",
        b"after-restart",
        QoS::AtLeastOnce,
    )
    .await;
    assert_eq!(
        next_on(&mut back, "spBv1.0/Plant1/NDATA/gw2").await.0,
        b"after-restart".to_vec()
    );
}
