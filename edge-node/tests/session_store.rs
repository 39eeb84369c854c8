//! Store-and-forward in the session: samples the plant produced while the link was down
//! or the primary host offline arrive later as DDATA flagged is_historical, once each,
//! in timestamp order, and the node metrics show the queue.
//!
//! The plant's `setpoint` register is a counter the test increments, each value held
//! for three scans, so "nothing missing" is "every counter value arrived".

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use edge_node::store::StoreConfig;
use edge_node::{Config, EdgeNode};
use edge_node_testkit::session::*;
use sparkplug::{DataType, Payload, State, Value};
use system_tests::Mosquitto;
use system_tests::linksim::LinkSim;
use system_tests::mqtt::{Message, Recorder};
use system_tests::rmqtt;

/// How long each counter value stays in the register (the scan is 100 ms).
const HOLD: Duration = Duration::from_millis(300);

fn with_store(mut config: Config, dir: &Path) -> Config {
    config.store = Some(StoreConfig {
        path: dir.join("store.sqlite"),
        // Small batches, so a replay is several publishes.
        batch_size: 4,
        replay_bytes_per_s: 20_000,
        ..StoreConfig::default()
    });
    config.sparkplug.metrics_period = Duration::from_millis(200);
    config
}

/// A plant, a broker behind a link simulator, a recorder on the broker and a node
/// configuration with a store, not started.
struct Rig {
    link: LinkSim,
    plant: edge_node::simulator::PlantServer,
    rec: Recorder,
    dir: tempfile::TempDir,
    config: Config,
}

impl Rig {
    async fn start() -> Rig {
        let broker = rmqtt::start();
        let link = LinkSim::start(([127, 0, 0, 1], broker).into())
            .await
            .unwrap();
        let plant = start_plant().await;
        let rec = Recorder::start(broker, "host", "spBv1.0/#").await;
        let dir = tempfile::tempdir().unwrap();
        let config = with_store(
            load(&boiler(&[link.addr().port()], plant.local_addr().port())),
            dir.path(),
        );
        Rig {
            link,
            plant,
            rec,
            dir,
            config,
        }
    }
}

/// Every `setpoint` sample seen in DDATA and DBIRTH, by how it came.
#[derive(Default)]
struct Counter {
    alias: u64,
    live: BTreeSet<u16>,
    /// (timestamp, value) of historical samples in arrival order.
    historical: Vec<(u64, u16)>,
    /// The `Store/Depth` alias and its last value in NBIRTH or NDATA.
    depth_alias: u64,
    depth: Option<u64>,
}

impl Counter {
    fn take(&mut self, m: &Message) {
        if matches!(m.kind(), "NBIRTH" | "NDATA")
            && let Some(d) = node_metric(&m.sparkplug(), self.depth_alias)
        {
            self.depth = Some(d);
        }
        let device_topic = topic(m.kind(), Some(DEVICE));
        if m.topic != device_topic {
            return;
        }
        let p = m.sparkplug();
        if m.kind() == "DBIRTH" {
            self.alias = alias_in(&p, "setpoint");
        }
        if !matches!(m.kind(), "DBIRTH" | "DDATA") {
            return;
        }
        for metric in &p.metrics {
            let ours =
                metric.alias == Some(self.alias) || metric.name.as_deref() == Some("setpoint");
            let mut typed = metric.clone();
            if !ours || typed.resolve(DataType::UInt16).is_err() {
                continue;
            }
            let Some(&Value::UInt16(v)) = typed.typed_value() else {
                continue;
            };
            if metric.is_historical {
                self.historical.push((metric.timestamp.unwrap_or(0), v));
            } else {
                self.live.insert(v);
            }
        }
    }

    fn seen(&self) -> BTreeSet<u16> {
        let mut all = self.live.clone();
        all.extend(self.historical.iter().map(|&(_, v)| v));
        all
    }

    fn historical_values(&self) -> BTreeSet<u16> {
        self.historical.iter().map(|&(_, v)| v).collect()
    }

    /// Every value of `stored` arrived historical, once per timestamp and in order.
    fn assert_replayed(&self, stored: std::ops::RangeInclusive<u16>) {
        let want: BTreeSet<u16> = stored.collect();
        assert!(
            want.is_subset(&self.historical_values()),
            "expected historical {want:?}, got {:?}",
            self.historical
        );
        self.assert_historical_once_in_order();
    }

    /// Per timestamp one value, first arrivals in timestamp order. A replayed batch whose
    /// link died before a probe confirmed it comes again after the reconnect (the host
    /// de-duplicates by metric and timestamp); nothing else may repeat.
    fn assert_historical_once_in_order(&self) {
        let mut first: HashMap<u64, u16> = HashMap::new();
        let mut order = Vec::new();
        for &(ts, v) in &self.historical {
            match first.get(&ts) {
                Some(&seen) => assert_eq!(seen, v, "timestamp {ts} came with two values"),
                None => {
                    first.insert(ts, v);
                    order.push(ts);
                }
            }
        }
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "historical out of order: {:?}",
            self.historical
        );
    }
}

fn node_metric(p: &Payload, alias: u64) -> Option<u64> {
    // NDATA carries no datatype: type it as the NBIRTH did.
    let mut m = p.metrics.iter().find(|m| m.alias == Some(alias))?.clone();
    m.resolve(DataType::UInt64).ok()?;
    match m.typed_value() {
        Some(Value::UInt64(v)) => Some(*v),
        _ => None,
    }
}

/// A counter fed from the start of the recording up to the first DBIRTH.
async fn counter_from_dbirth(rec: &mut Recorder) -> Counter {
    let mut counter = Counter::default();
    rec.next_matching("DBIRTH", |m| {
        counter.take(m);
        m.kind() == "DBIRTH"
    })
    .await;
    counter
}

/// The device behind `plant` dies while the link is cut (one failed poll marks it
/// offline); then the link comes back and the node is born again without it.
async fn kill_device_then_reconnect(
    plant: &edge_node::simulator::PlantServer,
    link: &LinkSim,
    rec: &mut Recorder,
    counter: &mut Counter,
) {
    plant.stop_listening().await;
    plant.drop_connections();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    link.restore();
    rec.next_matching("NBIRTH after the outage", |m| {
        counter.take(m);
        m.kind() == "NBIRTH"
    })
    .await;
}

/// Reads messages into `counter` until it has seen every value of `want`; panics after
/// [`WAIT`] naming what is missing.
async fn collect_until(rec: &mut Recorder, counter: &mut Counter, want: &BTreeSet<u16>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !want.is_subset(&counter.seen()) {
        let m = tokio::time::timeout_at(deadline, rec.next())
            .await
            .unwrap_or_else(|_| {
                let seen = counter.seen();
                let missing: Vec<_> = want.difference(&seen).collect();
                panic!("counter values never arrived: {missing:?}")
            });
        counter.take(&m);
    }
}

/// Sets the counter to each value in turn, holding it for a few scans.
async fn count(plant: &edge_node::simulator::PlantServer, values: std::ops::RangeInclusive<u16>) {
    for v in values {
        plant.bank(1).unwrap().set_holding_register(0, v).unwrap();
        tokio::time::sleep(HOLD).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_of_a_link_outage_arrive_historical_once_in_order_and_depth_shows_the_queue() {
    let Rig {
        link,
        plant,
        mut rec,
        dir: _dir,
        config,
    } = Rig::start().await;
    let node = EdgeNode::start(config).unwrap();
    let nbirth = rec.next_kind("NBIRTH").await.sparkplug();
    let depth_alias = alias_in(&nbirth, "Store/Depth");
    let mut counter = Counter {
        depth_alias,
        ..Counter::default()
    };
    counter.take(&rec.next_kind("DBIRTH").await);

    count(&plant, 1..=4).await;
    link.cut();
    count(&plant, 5..=20).await;
    link.restore();

    // The NBIRTH after the outage shows the stored samples, before replay empties it.
    let again = rec
        .next_matching("NBIRTH after the outage", |m| {
            counter.take(m);
            m.kind() == "NBIRTH"
        })
        .await;
    let depth = node_metric(&again.sparkplug(), depth_alias).unwrap();
    assert!(depth >= 16, "Store/Depth {depth} after 16 stored scans");
    count(&plant, 21..=24).await;

    let want: BTreeSet<u16> = (1..=24).collect();
    collect_until(&mut rec, &mut counter, &want).await;
    let outage: BTreeSet<u16> = (5..=20).collect();
    // Value 20 may still be the register's value at the reconnect, so the births
    // carry it live; every other outage value can only come from the store.
    let from_store: BTreeSet<u16> = (5..=19).collect();
    assert!(
        from_store.is_subset(&counter.historical_values()),
        "outage values {outage:?}, historical {:?}",
        counter.historical
    );
    counter.assert_historical_once_in_order();

    // Replay done: Store/Depth goes back to 0 in NDATA.
    if counter.depth != Some(0) {
        rec.next_matching("Store/Depth 0 in NDATA", |m| {
            counter.take(m);
            counter.depth == Some(0)
        })
        .await;
    }
    node.shutdown().await.unwrap();
    link.shutdown().await;
    plant.shutdown().await;
}

const STATE_TOPIC: &str = "spBv1.0/STATE/scada";

fn state(online: bool, timestamp: u64) -> Vec<u8> {
    State { online, timestamp }.to_json().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_while_the_primary_host_is_offline_are_replayed_historical() {
    let broker = Mosquitto::start();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let dir = tempfile::tempdir().unwrap();
    let config = with_store(
        load(&boiler(&[broker.port()], plant.local_addr().port()).primary_host("scada")),
        dir.path(),
    );
    host.publish(STATE_TOPIC, state(true, 1_000), true).await;
    let node = EdgeNode::start(config).unwrap();
    host.next_kind("NBIRTH").await;
    let mut counter = Counter::default();
    counter.take(&host.next_kind("DBIRTH").await);
    count(&plant, 1..=3).await;

    host.publish(STATE_TOPIC, state(false, 2_000), true).await;
    host.next_matching("NDEATH on host offline", |m| {
        counter.take(m);
        m.kind() == "NDEATH"
    })
    .await;
    count(&plant, 4..=12).await;
    host.publish(STATE_TOPIC, state(true, 3_000), true).await;
    host.next_matching("NBIRTH on host online", |m| {
        counter.take(m);
        m.kind() == "NBIRTH"
    })
    .await;
    count(&plant, 13..=15).await;

    let want: BTreeSet<u16> = (1..=15).collect();
    collect_until(&mut host, &mut counter, &want).await;
    // 12 may be live in the DBIRTH; 4..=11 existed only while the host was offline.
    let offline: BTreeSet<u16> = (4..=11).collect();
    assert!(
        offline.is_subset(&counter.historical_values()),
        "historical {:?}",
        counter.historical
    );
    counter.assert_historical_once_in_order();
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_replay_sends_everything_stored_after_restart() {
    let Rig {
        link,
        plant,
        mut rec,
        dir: _dir,
        mut config,
    } = Rig::start().await;
    // A slow replay (a few small batches a second), so the kill lands in the middle.
    if let Some(store) = config.store.as_mut() {
        store.replay_bytes_per_s = 300;
    }
    // The first node runs on its own runtime: shutting that down drops the node where it
    // stands, with no NDEATH, no store close and no ack of the batch in flight.
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let first = {
        let _inside = doomed.enter();
        EdgeNode::start(config.clone()).unwrap()
    };
    let mut counter = counter_from_dbirth(&mut rec).await;
    count(&plant, 1..=2).await;
    link.cut();
    count(&plant, 3..=16).await;
    link.restore();
    rec.next_matching("the first historical sample", |m| {
        counter.take(m);
        !counter.historical.is_empty()
    })
    .await;
    doomed.shutdown_background();
    drop(first);
    let before = counter.historical_values();
    let outage: BTreeSet<u16> = (3..=15).collect();
    assert!(
        !outage.is_subset(&before),
        "replay finished before the kill; the test proves nothing: {before:?}"
    );

    let second = EdgeNode::start(config).unwrap();
    count(&plant, 17..=18).await;
    let want: BTreeSet<u16> = (1..=18).collect();
    collect_until(&mut rec, &mut counter, &want).await;
    // Everything stored arrived historical, before or after the kill (the batch in
    // flight may have come twice).
    assert!(
        outage.is_subset(&counter.historical_values()),
        "historical {:?}",
        counter.historical
    );
    second.shutdown().await.unwrap();
    link.shutdown().await;
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_of_a_device_offline_at_reconnect_wait_for_its_dbirth() {
    let Rig {
        link,
        plant,
        mut rec,
        dir: _dir,
        config,
    } = Rig::start().await;
    let node = EdgeNode::start(config).unwrap();
    let mut counter = counter_from_dbirth(&mut rec).await;
    link.cut();
    count(&plant, 1..=6).await;
    kill_device_then_reconnect(&plant, &link, &mut rec, &mut counter).await;
    // No DBIRTH for the dead device, so none of its history either.
    for m in rec.drain_for(Duration::from_secs(1)).await {
        counter.take(&m);
        assert_ne!(m.kind(), "DBIRTH", "the device is offline");
        assert_ne!(m.kind(), "DDATA", "DDATA for a device without a birth");
    }
    // (The register's starting 0, read before the first births, may have been replayed.)
    assert!(
        counter.historical_values().iter().all(|&v| v == 0),
        "{:?}",
        counter.historical
    );

    plant.start_listening().await.unwrap();
    let want: BTreeSet<u16> = (1..=6).collect();
    collect_until(&mut rec, &mut counter, &want).await;
    // 6 may come live in the DBIRTH; the rest only from the store.
    counter.assert_replayed(1..=5);
    node.shutdown().await.unwrap();
    link.shutdown().await;
    plant.shutdown().await;
}

/// A half-open link: the proxy keeps both sockets open and passes nothing, not even a
/// close, while the node keeps publishing (so the MQTT client never pings). The node's
/// liveness probe goes unanswered, it declares the link lost and connects again; what
/// it published into the void arrives later, historical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_link_is_noticed_by_the_probe_and_nothing_sent_into_it_is_lost() {
    let Rig {
        link,
        plant,
        mut rec,
        dir: _dir,
        config,
    } = Rig::start().await;
    let keep_alive = config.mqtt.keep_alive;
    let node = EdgeNode::start(config).unwrap();
    let mut counter = counter_from_dbirth(&mut rec).await;
    count(&plant, 1..=4).await;

    link.blackhole();
    let connects = link.accepted();
    // Count on until the node connects again (bounded: three keep-alives of values).
    let most = 4 + u16::try_from(3 * keep_alive.as_millis() / HOLD.as_millis()).unwrap();
    let mut last = 4;
    while link.accepted() == connects && last < most {
        last += 1;
        count(&plant, last..=last).await;
    }
    assert!(
        link.accepted() > connects,
        "the node never noticed the half-open link ({last} values counted into it)"
    );
    count(&plant, last + 1..=last + 2).await;
    link.restore();

    let want: BTreeSet<u16> = (1..=last + 2).collect();
    collect_until(&mut rec, &mut counter, &want).await;
    // Everything published into the blackhole came again from the store (the last two
    // values may come live, in the births after the reconnect).
    counter.assert_replayed(5..=last);
    node.shutdown().await.unwrap();
    link.shutdown().await;
    plant.shutdown().await;
}

/// Two devices on two plants; `tank` dies during an outage and stays dead. Replay
/// passes over its samples, so `boiler`'s history arrives while `tank` is down; `tank`'s
/// own comes after its DBIRTH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_device_holds_up_nobody_elses_replay() {
    let Rig {
        link,
        plant,
        mut rec,
        dir: _dir,
        mut config,
    } = Rig::start().await;
    let tank_plant = start_plant().await;
    let site = &mut config.site;
    let mut tank_link = site.links[0].clone();
    tank_link.name = "tank-link".into();
    tank_link.transport = edge_node::modbus::config::Transport::Tcp {
        host: "127.0.0.1".into(),
        port: tank_plant.local_addr().port(),
    };
    site.links.push(tank_link);
    let mut tank = site.devices[0].clone();
    tank.name = "tank".into();
    tank.link = 1;
    site.devices.push(tank);
    let boiler_tags: Vec<_> = site
        .tags
        .iter()
        .filter(|t| t.device == 0)
        .cloned()
        .collect();
    site.tags.extend(boiler_tags.into_iter().map(|mut t| {
        t.device = 1;
        t
    }));
    let node = EdgeNode::start(config).unwrap();
    let tank_topic = topic("DDATA", Some("tank"));
    let mut counter = Counter::default();
    let mut tank_births = 0;
    rec.next_matching("both DBIRTHs", |m| {
        counter.take(m);
        tank_births += usize::from(m.topic == topic("DBIRTH", Some("tank")));
        tank_births == 1 && counter.alias != 0
    })
    .await;

    link.cut();
    for v in 1..=6u16 {
        tank_plant
            .bank(1)
            .unwrap()
            .set_holding_register(0, 100 + v)
            .unwrap();
        count(&plant, v..=v).await;
    }
    kill_device_then_reconnect(&tank_plant, &link, &mut rec, &mut counter).await;

    // boiler's outage values arrive historical while tank stays dead.
    let want: BTreeSet<u16> = (1..=6).collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !want.is_subset(&counter.seen()) {
        let m = tokio::time::timeout_at(deadline, rec.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "boiler history stuck behind dead tank: {:?}",
                    counter.historical
                )
            });
        assert_ne!(m.topic, tank_topic, "DDATA for the dead tank");
        assert_ne!(m.topic, topic("DBIRTH", Some("tank")), "tank is dead");
        counter.take(&m);
    }
    counter.assert_replayed(1..=5);

    // tank back: its held samples follow its DBIRTH, historical.
    tank_plant.start_listening().await.unwrap();
    let mut tank_historical = BTreeSet::new();
    rec.next_matching("tank's stored samples", |m| {
        if m.topic == tank_topic {
            for metric in &m.sparkplug().metrics {
                let mut typed = metric.clone();
                if metric.is_historical
                    && typed.resolve(DataType::UInt16).is_ok()
                    && let Some(&Value::UInt16(v)) = typed.typed_value()
                {
                    tank_historical.insert(v);
                }
            }
        }
        (101..=105).all(|v| tank_historical.contains(&v))
    })
    .await;
    node.shutdown().await.unwrap();
    link.shutdown().await;
    plant.shutdown().await;
    tank_plant.shutdown().await;
}
