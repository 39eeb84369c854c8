//! Births of new metrics while a history commit is stalled: registration answers at once,
//! so ingest and `/api/tree` keep going while the commit waits, and afterwards every
//! sample is stored once, in order.
//!
//! The stall: another connection holds SQLite's write lock, so the host's next commit
//! waits in SQLite's busy handler (up to the store's 5 s busy timeout) holding the store's
//! writer. Registration that needed the writer would wait for that commit to give up; the
//! writer's stats tell whether it had to.

use std::time::Duration;

use host_app::history::{MetricKey, SampleValue, TimeRange};
use host_app::shared::HostShared;
use host_app::tracker::{Liveness, NodeId};
use host_app_testkit::host::*;
use sparkplug::Metric;
use system_tests::mqtt::ScriptedEdge;
use system_tests::stack::now_ms;
use system_tests::wait;

/// New metrics in the NBIRTH that arrives during the stall.
const NEW_METRICS: usize = 500;
/// NDATA messages from the already-born node during the stall.
const DATA_ROUNDS: u64 = 50;

fn temp_of(shared: &HostShared) -> Option<SampleValue> {
    shared
        .tracker()
        .node(&NodeId::new("Plant", "A"))?
        .metrics
        .get("Temp")?
        .value
        .clone()
}

/// Polls `check` on a blocking thread, failing after [`WAIT`]: were registration to wait
/// for the stalled commit under the tracker lock, a check would block, not just fail.
async fn within(what: &'static str, check: impl Fn() -> bool + Send + 'static) {
    let polled = tokio::task::spawn_blocking(move || wait::until(what, WAIT, check));
    match tokio::time::timeout(WAIT + Duration::from_secs(1), polled).await {
        Ok(done) => done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
        Err(_) => panic!("timed out waiting for: {what} (a check blocked)"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_of_new_metrics_do_not_wait_for_a_stalled_commit() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), None).await;
    let addr = broker_addr(&host);
    let shared = host.shared().clone();
    let mut a = ScriptedEdge::connect(addr, "Plant", "A", 0).await;
    a.nbirth(vec![Metric::new("Temp", 0.0f64).with_alias(1)])
        .await;
    wait::until_async("A born", WAIT, || temp_of(&shared).is_some()).await;
    host.flush().await.unwrap();

    let blocker = rusqlite::Connection::open(dir.path().join("history.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // After the birth's timestamp, so each value becomes the one the tree serves.
    let t0 = now_ms() + 1_000;
    a.ndata(vec![Metric::aliased(1, 1.0f64).with_timestamp(t0)])
        .await;
    let tracked = shared.clone();
    within("first NDATA tracked", move || {
        temp_of(&tracked) == Some(SampleValue::F64(1.0))
    })
    .await;
    // Lets the writer's 20 ms flush start the commit that now waits for the lock.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut b = ScriptedEdge::connect(addr, "Plant", "B", 0).await;
    b.nbirth(
        (0..NEW_METRICS)
            .map(|i| Metric::new(format!("M{i}"), i as f64).with_alias(i as u64 + 1))
            .collect(),
    )
    .await;
    for i in 1..=DATA_ROUNDS {
        a.ndata(vec![
            Metric::aliased(1, (i + 1) as f64).with_timestamp(t0 + i),
        ])
        .await;
    }
    let last = SampleValue::F64((DATA_ROUNDS + 1) as f64);
    let tracked = shared.clone();
    within("B born and A's data tracked during the stall", move || {
        let b_born = tracked
            .tracker()
            .node(&NodeId::new("Plant", "B"))
            .is_some_and(|n| {
                n.state == Liveness::Online && n.metrics.list.len() == NEW_METRICS + 2
            });
        b_born && temp_of(&tracked).as_ref() == Some(&last)
    })
    .await;
    let (status, tree) = admin(&host)
        .await
        .call_async("GET", "/api/tree", None)
        .await;
    assert_eq!(status, 200);
    let nodes = tree["groups"][0]["nodes"].as_array().unwrap();
    let node = |id: &str| nodes.iter().find(|n| n["node"] == id).unwrap();
    assert_eq!(
        node("B")["metrics"].as_array().unwrap().len(),
        NEW_METRICS + 2
    );
    let temp = node("A")["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Temp")
        .unwrap()
        .clone();
    assert_eq!(temp["value"], (DATA_ROUNDS + 1) as f64);

    // The commit that waited goes through now, with the metrics registered meanwhile.
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    host.flush().await.unwrap();
    let store = shared.store.clone();
    for i in [0, NEW_METRICS / 2, NEW_METRICS - 1] {
        let key = MetricKey::node("Plant", "B", &format!("M{i}"));
        let id = store.resolve_metric(&key).unwrap().expect("registered");
        let samples = store
            .range(id, TimeRange::new(0, now_ms() + 60_000), 10)
            .unwrap();
        assert_eq!(samples.len(), 1, "M{i}: its birth value, once");
        assert_eq!(samples[0].value, SampleValue::F64(i as f64));
    }
    let temp_id = store
        .resolve_metric(&MetricKey::node("Plant", "A", "Temp"))
        .unwrap()
        .unwrap();
    let trend = store
        .range(temp_id, TimeRange::new(t0, t0 + DATA_ROUNDS + 1), 1_000)
        .unwrap();
    let values: Vec<SampleValue> = trend.into_iter().map(|s| s.value).collect();
    let expected: Vec<SampleValue> = (1..=DATA_ROUNDS + 1)
        .map(|v| SampleValue::F64(v as f64))
        .collect();
    assert_eq!(values, expected, "A's samples, each once, in order");

    let stats = host.stop().await.unwrap();
    assert_eq!(
        stats.failed_commits, 0,
        "births and data were tracked before the stalled commit gave up"
    );
    assert_eq!(stats.lost, 0);
}
