//! The daily byte budget (`economy.daily_budget_bytes`): once the link carried the budget
//! in a UTC day, samples stored during an outage wait (live values keep flowing, and the
//! node metric `Store/Replay Paused` says so); on the next UTC day they are replayed. The
//! node's bill follows a test clock, moved to the next day by hand.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edge_node::EdgeNode;
use edge_node::node::bill::Clock;
use edge_node::store::StoreConfig;
use edge_node_testkit::session::*;
use sparkplug::{DataType, Payload, Value};
use system_tests::linksim::LinkSim;
use system_tests::mqtt::{Message, Recorder};
use system_tests::rmqtt;

const DAY_MS: u64 = 86_400_000;
/// Each counter value stays in the register for three scans.
const HOLD: Duration = Duration::from_millis(300);

fn metric_of(p: &Payload, alias: u64) -> Option<&sparkplug::Metric> {
    p.metrics.iter().find(|m| m.alias == Some(alias))
}

fn paused_in(p: &Payload, alias: u64) -> Option<bool> {
    let mut m = metric_of(p, alias)?.clone();
    m.resolve(DataType::Boolean).ok()?;
    match m.typed_value() {
        Some(Value::Boolean(b)) => Some(*b),
        _ => None,
    }
}

/// The `setpoint` values of a DDATA or DBIRTH: (value, is_historical).
fn setpoints(m: &Message, alias: u64) -> Vec<(u16, bool)> {
    if m.topic != topic(m.kind(), Some(DEVICE)) || !matches!(m.kind(), "DDATA" | "DBIRTH") {
        return Vec::new();
    }
    m.sparkplug()
        .metrics
        .iter()
        .filter(|x| x.alias == Some(alias))
        .filter_map(|x| {
            let mut typed = x.clone();
            typed.resolve(DataType::UInt16).ok()?;
            match typed.typed_value() {
                Some(Value::UInt16(v)) => Some((*v, x.is_historical)),
                _ => None,
            }
        })
        .collect()
}

async fn count(plant: &edge_node::simulator::PlantServer, values: std::ops::RangeInclusive<u16>) {
    for v in values {
        plant.bank(1).unwrap().set_holding_register(0, v).unwrap();
        tokio::time::sleep(HOLD).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_daily_budget_replay_waits_for_the_next_day_while_live_values_flow() {
    let broker = rmqtt::start();
    let link = LinkSim::start(([127, 0, 0, 1], broker).into())
        .await
        .unwrap();
    let plant = start_plant().await;
    let mut rec = Recorder::start(broker, "host", "spBv1.0/#").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = load(&boiler(&[link.addr().port()], plant.local_addr().port()));
    config.store = Some(StoreConfig {
        path: dir.path().join("store.sqlite"),
        batch_size: 4,
        replay_bytes_per_s: 20_000,
        ..StoreConfig::default()
    });
    config.sparkplug.metrics_period = Duration::from_millis(200);
    // Births alone go past it: the budget is spent within the first session.
    config.economy.daily_budget_bytes = Some(2_000);
    let noon = 20_000 * DAY_MS + DAY_MS / 2;
    let time = Arc::new(AtomicU64::new(noon));
    let clock: Clock = {
        let time = Arc::clone(&time);
        Arc::new(move || time.load(Ordering::Relaxed))
    };
    let node = EdgeNode::start_with_clock(config, clock).unwrap();

    let nbirth = rec.next_kind("NBIRTH").await.sparkplug();
    let paused_alias = alias_in(&nbirth, "Store/Replay Paused");
    alias_in(&nbirth, "Link/Bytes Sent Today");
    let dbirth = rec.next_kind("DBIRTH").await.sparkplug();
    let setpoint = alias_in(&dbirth, "setpoint");
    count(&plant, 1..=2).await;
    // The node says the budget is spent.
    rec.next_matching("Store/Replay Paused true in NDATA", |m| {
        m.kind() == "NDATA" && paused_in(&m.sparkplug(), paused_alias) == Some(true)
    })
    .await;

    // An outage: 3..=10 are stored.
    link.cut();
    count(&plant, 3..=10).await;
    link.restore();
    let again = rec.next_kind("NBIRTH").await.sparkplug();
    assert_eq!(
        paused_in(&again, paused_alias),
        Some(true),
        "still today: paused"
    );

    // Live values flow; nothing historical comes while the budget is spent.
    let mut live = BTreeSet::new();
    let mut historical = BTreeSet::new();
    let counting = count(&plant, 11..=16);
    let watching = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(m) = tokio::time::timeout_at(deadline, rec.next()).await {
            for (v, h) in setpoints(&m, setpoint) {
                if h {
                    historical.insert(v);
                } else {
                    live.insert(v);
                }
            }
        }
    };
    tokio::join!(counting, watching);
    assert!(
        (12..=15).all(|v| live.contains(&v)),
        "live values while paused: {live:?}"
    );
    assert!(
        historical.is_empty(),
        "no replay while paused: {historical:?}"
    );

    // The next UTC day: replay resumes and the stored outage values arrive historical.
    time.store(noon + DAY_MS, Ordering::Relaxed);
    let want: BTreeSet<u16> = (4..=9).collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !want.is_subset(&historical) {
        let m = tokio::time::timeout_at(deadline, rec.next())
            .await
            .unwrap_or_else(|_| panic!("replay after midnight: got {historical:?}"));
        for (v, h) in setpoints(&m, setpoint) {
            if h {
                historical.insert(v);
            }
        }
    }
    node.shutdown().await.unwrap();
    link.shutdown().await;
    plant.shutdown().await;
}
