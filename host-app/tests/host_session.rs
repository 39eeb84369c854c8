//! The Primary Host session on a real broker: STATE will and birth (retained, same
//! timestamp), re-asserting online, a clean stop and a restart as an edge node sees them.

use host_app::history::{HistoryStore, SqliteOptions, SqliteStore};
use host_app_testkit::host::*;
use rumqttc::{PublishOptions, QoS};
use sparkplug::{Metric, State};
use system_tests::mqtt::ScriptedEdge;
use system_tests::wait;

/// A client that publishes one message and disconnects.
async fn publish(addr: std::net::SocketAddr, topic: &str, payload: Vec<u8>, retain: bool) {
    let options = rumqttc::MqttOptions::new("tester", (addr.ip().to_string(), addr.port()));
    let (client, mut eventloop) = rumqttc::AsyncClient::builder(options).build();
    client
        .publish(
            topic,
            payload,
            PublishOptions::new(QoS::AtLeastOnce).retain(retain),
        )
        .await
        .unwrap();
    let acked = async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_)) =
                eventloop.poll().await.unwrap()
            {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, acked).await.unwrap();
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(WAIT, eventloop.poll()).await;
}

#[tokio::test]
async fn state_will_and_birth_are_retained_with_the_same_timestamp() {
    let broker = embedded_broker().await;
    let addr = broker.plain_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = host_session(dir.path(), addr.port());
    let mut observer = ScriptedEdge::connect(addr, "G", "observer", 0).await;
    let running = tokio::spawn(host.session.run(tokio_util::sync::CancellationToken::new()));

    let birth = observer.next_matching("STATE/scada").await;
    let birth_state = birth.state();
    assert!(birth_state.online);

    // The connection drops without DISCONNECT: the broker publishes the will.
    running.abort();
    let will = observer.next_matching("STATE/scada").await;
    assert_eq!(will.state(), State::offline(birth_state.timestamp));

    // Both were retained: a newcomer sees the will as the topic's retained message.
    let mut newcomer = ScriptedEdge::connect(addr, "G", "newcomer", 0).await;
    let retained = newcomer.next_matching("STATE/scada").await;
    assert!(retained.retain);
    assert_eq!(retained.state(), State::offline(birth_state.timestamp));
    broker.stop().await;
}

#[tokio::test]
async fn own_state_offline_is_answered_with_online() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), None).await;
    let addr = broker_addr(&host);
    let mut edge = ScriptedEdge::connect(addr, "G", "E", 0).await;
    let online = edge.next_matching("STATE/scada").await.state();
    assert!(online.online);

    // A forged STATE offline with a later timestamp, retained.
    let forged = online.timestamp + 60_000;
    let lie = State::offline(forged).to_json().into_bytes();
    publish(addr, "spBv1.0/STATE/scada", lie, true).await;
    let seen = edge.next_matching("STATE/scada").await.state();
    assert_eq!(seen, State::offline(forged));
    // Answered at once with a timestamp above the forged one.
    let again = edge.next_matching("STATE/scada").await.state();
    assert!(again.online);
    assert!(again.timestamp > forged, "{again:?} after {forged}");

    // The retained message is the host's newest STATE online.
    let mut newcomer = ScriptedEdge::connect(addr, "G", "E2", 0).await;
    let retained = newcomer.next_matching("STATE/scada").await;
    assert!(retained.retain);
    assert_eq!(retained.state(), again);

    // Garbage on the topic is answered too, and the host's will now carries its newest
    // timestamp: the re-assert reconnected with a new will.
    publish(addr, "spBv1.0/STATE/scada", b"not json".to_vec(), true).await;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let message = edge.next_matching("STATE/scada").await;
        let state = State::parse(&message.payload).ok();
        seen.push(state);
        if state.is_some_and(|s| s.online && s.timestamp > again.timestamp) {
            break;
        }
    }
    // The garbage and the answer (the new connection's birth, same timestamp as `again`,
    // may come in between).
    assert!(seen.contains(&None), "the garbage was seen: {seen:?}");
    let third = seen
        .last()
        .copied()
        .flatten()
        .expect("an answer to the garbage");
    assert!(
        third.online && third.timestamp > again.timestamp,
        "{seen:?}"
    );
    host.stop().await.unwrap();
}

#[tokio::test]
async fn host_restart_is_seen_as_state_offline_then_online() {
    let broker = embedded_broker().await;
    let addr = broker.plain_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut edge = ScriptedEdge::connect(addr, "G", "E", 1).await;

    let host = start_host(dir.path(), Some(addr)).await;
    let first = edge.next_matching("STATE/scada").await.state();
    assert!(first.online);
    edge.nbirth(vec![Metric::new("Temp", 20.5f64).with_alias(1)])
        .await;
    let shared = host.shared().clone();
    wait::until_async("NBIRTH tracked", WAIT, || {
        shared
            .tracker()
            .node(&host_app::tracker::NodeId::new("G", "E"))
            .is_some()
    })
    .await;

    let stats = host.stop().await.unwrap();
    assert!(stats.stored.inserted >= 2, "birth values flushed at stop");
    let offline = edge.next_matching("STATE/scada").await;
    assert_eq!(offline.state(), State::offline(first.timestamp));

    let host = start_host(dir.path(), Some(addr)).await;
    let second = edge.next_matching("STATE/scada").await.state();
    assert!(second.online);
    assert!(second.timestamp >= first.timestamp);
    host.stop().await.unwrap();

    // History survived the restart: the birth value is in the file.
    let store =
        SqliteStore::open(dir.path().join("history.db"), &SqliteOptions::default()).unwrap();
    let id = store
        .resolve_metric(&host_app::history::MetricKey::node("G", "E", "Temp"))
        .unwrap()
        .unwrap();
    let latest = store.latest(&[id]).unwrap();
    assert_eq!(latest.len(), 1);
    broker.stop().await;
}

#[tokio::test]
async fn a_flood_of_forged_states_is_answered_at_most_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), None).await;
    let addr = broker_addr(&host);
    let mut edge = ScriptedEdge::connect(addr, "G", "E", 0).await;
    let online = edge.next_matching("STATE/scada").await.state();

    // Ten forged STATEs offline in a burst, as a second host with this id might send.
    let start = std::time::Instant::now();
    let mut forged = 0;
    for i in 1..=10 {
        forged = online.timestamp + i * 1_000;
        let lie = State::offline(forged).to_json().into_bytes();
        publish(addr, "spBv1.0/STATE/scada", lie, true).await;
    }
    let seen = edge
        .collect_for("STATE/scada", std::time::Duration::from_millis(2_500))
        .await;
    let elapsed = start.elapsed();
    // Each answer's timestamp shows twice (the re-assert and the new connection's birth).
    let mut answers: Vec<u64> = seen
        .iter()
        .filter_map(|m| State::parse(&m.payload).ok())
        .filter(|s| s.online)
        .map(|s| s.timestamp)
        .collect();
    answers.dedup();
    // At most one per interval (1 s by default) however long the burst took.
    let allowed = elapsed.as_secs() + 1;
    assert!(
        (answers.len() as u64) <= allowed,
        "{} answers in {elapsed:?}: {answers:?}",
        answers.len()
    );
    assert!(
        answers.last().is_some_and(|&ts| ts > forged),
        "the last answer outbids the whole burst: {answers:?} after {forged}"
    );
    host.stop().await.unwrap();
}

#[tokio::test]
async fn a_payload_over_max_payload_bytes_is_dropped_undecoded() {
    let broker = embedded_broker().await;
    let addr = broker.plain_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = host_session(dir.path(), addr.port());
    let session = host.session.with_config(host_app::session::SessionConfig {
        max_payload_bytes: 2_048,
        ..Default::default()
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(session.run(stop.clone()));
    let mut edge = ScriptedEdge::connect(addr, "G", "E", 0).await;
    edge.next_matching("STATE/scada").await;
    edge.nbirth(vec![Metric::new("Note", "first").with_alias(1)])
        .await;
    edge.ndata(vec![Metric::aliased(1, "x".repeat(4_000))])
        .await;
    edge.ndata(vec![Metric::aliased(1, "small")]).await;

    let shared = host.shared.clone();
    let node = host_app::tracker::NodeId::new("G", "E");
    wait::until_async("the small NDATA applied", WAIT, || {
        shared
            .tracker()
            .node(&node)
            .and_then(|n| n.metrics.get("Note").and_then(|m| m.value.clone()))
            == Some(host_app::history::SampleValue::Text("small".into()))
    })
    .await;
    // The large one (seq 1) never reached the tracker: the small one (seq 2) came after a
    // gap, waited for it and was applied when the gap was given up.
    assert_eq!(shared.tracker().stats().seq_gaps, 1);
    stop.cancel();
    running.await.unwrap();
    broker.stop().await;
}
