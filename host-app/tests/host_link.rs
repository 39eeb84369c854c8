//! The Primary Host session on a half-open path: the session runs through the link
//! simulator to a real broker, the path is blackholed (sockets stay open, nothing passes,
//! no close), and the host must notice the loss within a bound set by its keep-alive, mark
//! itself disconnected, and connect again with a new STATE birth once the path is back.

use std::time::{Duration, Instant};

use host_app_testkit::broker;
use host_app_testkit::host::{WAIT, host_session};
use system_tests::linksim::LinkSim;
use system_tests::mqtt::ScriptedEdge;
use system_tests::wait::until_async;

const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// A lost PINGRESP is noticed at the second keep-alive; the rest is scheduling slack.
const NOTICE_BOUND: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_link_is_noticed_and_the_host_reconnects_when_it_returns() {
    let broker = broker::start(&broker::config()).await;
    let broker_addr = broker.plain_addr().unwrap();
    let link = LinkSim::start(broker_addr).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let host = host_session(dir.path(), link.addr().port());
    let shared = host.shared.clone();
    // Watches STATE straight on the broker, past the simulated link.
    let mut observer = ScriptedEdge::connect(broker_addr, "G", "observer", 0).await;
    let stop = infra::shutdown::Shutdown::new();
    let running = tokio::spawn(host.session.with_keep_alive(KEEP_ALIVE).run(stop.clone()));

    until_async("first connection", WAIT, || shared.is_connected()).await;
    let first = observer.next_matching("STATE/scada").await.state();
    assert!(first.online);
    assert_eq!(link.accepted(), 1);

    link.blackhole();
    let blackholed = Instant::now();
    until_async("the loss noticed", NOTICE_BOUND, || !shared.is_connected()).await;
    let noticed = blackholed.elapsed();
    assert!(
        noticed >= KEEP_ALIVE,
        "lost after {noticed:?}, before a keep-alive could have gone unanswered"
    );

    // Attempts while the path is dark must not count as connected.
    tokio::time::sleep(2 * KEEP_ALIVE).await;
    assert!(!shared.is_connected(), "connected through a blackhole");

    link.restore();
    // A connect attempt stuck in the blackhole times out before the next one goes through.
    until_async("reconnected", Duration::from_secs(20), || {
        shared.is_connected()
    })
    .await;
    assert!(link.accepted() >= 2, "no new connection through the link");
    // The new connection's birth carries a new STATE timestamp.
    let mut seen = Vec::new();
    let reborn = loop {
        assert!(seen.len() < 5, "no new online STATE among {seen:?}");
        let state = observer.next_matching("STATE/scada").await.state();
        if state.online && state.timestamp > first.timestamp {
            break state;
        }
        seen.push(state);
    };
    assert!(reborn.online);

    stop.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("session did not stop")
        .unwrap();
    assert!(!shared.is_connected());
    // The next STATE is the clean offline one of the stop, with the birth's timestamp.
    let offline = observer.next_matching("STATE/scada").await.state();
    assert_eq!(
        (offline.online, offline.timestamp),
        (false, reborn.timestamp)
    );
    link.shutdown().await;
    broker.stop().await;
}
