//! The MQTT link on a path that takes nothing: a server that accepts the TCP connection and
//! never reads or answers. Requests pile up in the client's queue; once it is full, a
//! publish must fail as stalled after a keep-alive instead of holding the node forever.

use std::sync::Arc;
use std::time::Duration;

use edge_node_testkit::session::{boiler, load};
use infra::link::{LastWill, Link, LinkError, QoS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_cannot_be_queued_for_a_keep_alive_fails_as_stalled() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accepts and holds every connection, reading nothing.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut config = load(&boiler(&[port], 1));
    config.mqtt.keep_alive = Duration::from_secs(1);
    let will = LastWill::new("spBv1.0/plant/NDEATH/gw1", vec![], QoS::AtLeastOnce, false);
    let link = Link::open(
        config.mqtt.link_options(&config.mqtt.servers[0], will),
        Arc::default(),
    )
    .unwrap();

    // Bounded, so a link that blocks forever fails this test instead of hanging it.
    let attempts = async {
        for n in 0..1_000 {
            if let Err(e) = link
                .publish("spBv1.0/plant/NDATA/gw1", QoS::AtMostOnce, false, b"x")
                .await
            {
                return Some((n, e));
            }
        }
        None
    };
    let (queued, error) = tokio::time::timeout(Duration::from_secs(30), attempts)
        .await
        .expect("a publish blocked for 30 s: no stall bound")
        .expect("1,000 publishes queued on a path that takes nothing");
    assert!(
        matches!(error, LinkError::Stalled { waited, .. } if waited == Duration::from_secs(1)),
        "after {queued} queued: {error}"
    );
    holder.abort();
}
