//! Stored samples keep their metric when the tag list changes while they wait: the node
//! (in process, with a store) polls a simulated plant and publishes to Mosquitto; a
//! recorder plays the Primary Host's STATE and decodes births and aliases. While the
//! host is offline the tag list changes (a tag inserted before the others, one removed)
//! by a live apply through the configurator, or by a restart with the edited file. When
//! the host is back, every replayed sample arrives under the metric that read it, and
//! the removed tag's samples are counted as dropped, never sent under another name.
//!
//! Register `k` of the plant holds `1000 * k + n` while the test counts `n` up, so a
//! value names the register it came from: a sample under the wrong metric is out of that
//! metric's range.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_node::{Config, EdgeNode, NodeHandle};
use edge_node_testkit::session::*;
use sparkplug::{DataType, State, Value};
use system_tests::Mosquitto;
use system_tests::config::edge::{Device, Store, Tag};
use system_tests::mqtt::{Message, Recorder};

const STATE_TOPIC: &str = "spBv1.0/STATE/scada";
/// How long each count stays in the registers (the scan is 100 ms).
const HOLD: Duration = Duration::from_millis(300);

fn state(online: bool, timestamp: u64) -> Vec<u8> {
    State { online, timestamp }.to_json().into_bytes()
}

/// The boiler's tags, each `(name, register)`.
fn config(broker: u16, plant: u16, dir: &Path, tags: &[(&str, u32)]) -> EdgeConfig {
    let mut config = boiler(&[broker], plant).primary_host("scada");
    let mut device = Device::tcp(DEVICE, plant, 1).timing(500, 1, (100, 200));
    for &(name, register) in tags {
        device = device.tag(Tag::new(name, "holding", register, "u16"));
    }
    config.modbus.devices = vec![device];
    config.sparkplug.metrics_period_ms = 200;
    config.store = Some(Store {
        path: dir.join("store.sqlite"),
        batch_size: Some(4),
        replay_bytes_per_s: Some(20_000),
        ..Store::default()
    });
    config
}

const BEFORE: &[(&str, u32)] = &[("t0", 0), ("t1", 1), ("t2", 2)];
/// `fresh` inserted first, `t1` removed.
const AFTER: &[(&str, u32)] = &[("fresh", 3), ("t0", 0), ("t2", 2)];

fn register_of(name: &str) -> u16 {
    match name {
        "t0" => 0,
        "t1" => 1,
        "t2" => 2,
        "fresh" => 3,
        other => panic!("no such tag {other}"),
    }
}

/// Every register `k` to `1000 * k + n`.
fn set_count(plant: &edge_node::simulator::PlantServer, n: u16) {
    let bank = plant.bank(1).unwrap();
    for k in 0..4u16 {
        bank.set_holding_register(k, 1000 * k + n).unwrap();
    }
}

async fn count(plant: &edge_node::simulator::PlantServer, values: std::ops::RangeInclusive<u16>) {
    for n in values {
        set_count(plant, n);
        tokio::time::sleep(HOLD).await;
    }
}

/// The boiler's samples by metric name, decoded through the aliases of the births.
#[derive(Default)]
struct Named {
    /// Alias -> name, from the latest DBIRTH.
    names: HashMap<u64, String>,
    /// Every alias a birth gave each name.
    births: HashMap<String, BTreeSet<u64>>,
    /// (name, value, historical) in arrival order.
    samples: Vec<(String, u16, bool)>,
}

impl Named {
    fn take(&mut self, m: &Message) {
        if m.topic != topic(m.kind(), Some(DEVICE)) {
            return;
        }
        let p = m.sparkplug();
        if m.kind() == "DBIRTH" {
            self.names = p
                .metrics
                .iter()
                .map(|x| (x.alias.unwrap(), x.name.clone().unwrap()))
                .collect();
            for (alias, name) in &self.names {
                self.births.entry(name.clone()).or_default().insert(*alias);
            }
        }
        if !matches!(m.kind(), "DBIRTH" | "DDATA") {
            return;
        }
        for metric in &p.metrics {
            let alias = metric.alias.expect("metrics carry aliases");
            let name = self
                .names
                .get(&alias)
                .unwrap_or_else(|| panic!("alias {alias} is in no birth: {m:?}"))
                .clone();
            let mut typed = metric.clone();
            if typed.resolve(DataType::UInt16).is_err() {
                continue;
            }
            if let Some(&Value::UInt16(v)) = typed.typed_value() {
                self.samples.push((name, v, metric.is_historical));
            }
        }
    }

    /// Counts of `name` seen (its register's offset taken off).
    fn counts(&self, name: &str) -> BTreeSet<u16> {
        let offset = 1000 * register_of(name);
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|&(_, v, _)| v - offset)
            .collect()
    }

    /// Every sample is in the range of the register its metric reads.
    fn assert_named_right(&self, last: u16) {
        for (name, v, historical) in &self.samples {
            let offset = 1000 * register_of(name);
            assert!(
                (offset..=offset + last).contains(v),
                "{name} = {v} (historical: {historical}) came from another register"
            );
        }
    }
}

/// Reads messages until every count of `want` arrived for each of `names`.
async fn collect_until(
    rec: &mut Recorder,
    named: &mut Named,
    names: &[&str],
    want: &BTreeSet<u16>,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !names.iter().all(|n| want.is_subset(&named.counts(n))) {
        let m = tokio::time::timeout_at(deadline, rec.next())
            .await
            .unwrap_or_else(|_| {
                let missing: Vec<_> = names
                    .iter()
                    .map(|n| {
                        (
                            n,
                            want.difference(&named.counts(n))
                                .copied()
                                .collect::<Vec<_>>(),
                        )
                    })
                    .collect();
                panic!("counts never arrived: {missing:?}")
            });
        named.take(&m);
    }
}

/// `edge_store_dropped_removed_tag_samples_total` once it is at least `at_least`.
async fn dropped_removed(node: &NodeHandle, at_least: u64) -> u64 {
    let name = "edge_store_dropped_removed_tag_samples_total ";
    let mut last = 0;
    for _ in 0..100 {
        let text = node.metrics().render();
        last = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}")) as u64;
        if last >= at_least {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name}stayed at {last}, below {at_least}");
}

/// How the tag list changes while the host is offline.
#[derive(Clone, Copy)]
enum Change {
    LiveApply,
    Restart,
}

async fn stored_samples_keep_their_metric(change: Change) {
    const STORED_BEFORE: u16 = 8;
    const LAST: u16 = 16;
    let broker = Mosquitto::start();
    let plant = start_plant().await;
    set_count(&plant, 0);
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("edge-node.toml");
    let port = plant.local_addr().port();
    let before = config(broker.port(), port, dir.path(), BEFORE);
    let after = config(broker.port(), port, dir.path(), AFTER);
    std::fs::write(&path, before.to_toml()).unwrap();

    host.publish(STATE_TOPIC, state(true, 1_000), true).await;
    let mut node = EdgeNode::start(Config::load(&path).unwrap()).unwrap();
    let configurator = node.configurator(&path, &dir.path().join("state")).unwrap();
    let mut named = Named::default();
    host.next_matching("DBIRTH", |m| {
        named.take(m);
        m.kind() == "DBIRTH"
    })
    .await;
    let first_aliases = named.names.clone();

    // The host goes away: the counts are stored under the first tag list...
    host.publish(STATE_TOPIC, state(false, 2_000), true).await;
    host.next_matching("NDEATH on host offline", |m| {
        named.take(m);
        m.kind() == "NDEATH"
    })
    .await;
    count(&plant, 1..=STORED_BEFORE).await;
    // ...then the list changes, and more are stored under the second.
    match change {
        Change::LiveApply => {
            let draft = edge_node::configure::Draft {
                main: after.to_toml(),
                ..Default::default()
            };
            let report = configurator.apply(draft, "tech").await.unwrap();
            assert_eq!(report.diff.tags[DEVICE].added, ["fresh"], "{report}");
            assert_eq!(report.diff.tags[DEVICE].removed, ["t1"], "{report}");
        }
        Change::Restart => {
            node.shutdown().await.unwrap();
            std::fs::write(&path, after.to_toml()).unwrap();
            node = EdgeNode::start(Config::load(&path).unwrap()).unwrap();
        }
    }
    count(&plant, STORED_BEFORE + 1..=LAST).await;

    let back = named.samples.len();
    host.publish(STATE_TOPIC, state(true, 3_000), true).await;
    let all: BTreeSet<u16> = (1..=LAST).collect();
    collect_until(&mut host, &mut named, &["t0", "t2"], &all).await;
    let later: BTreeSet<u16> = (STORED_BEFORE + 1..=LAST).collect();
    collect_until(&mut host, &mut named, &["fresh"], &later).await;
    // Whatever trails (a batch sent again after a reconnect) goes through the checks too.
    for m in host.drain_for(Duration::from_millis(500)).await {
        named.take(&m);
    }

    named.assert_named_right(LAST);
    // Counts that existed only while the host was offline came historical.
    for name in ["t0", "t2"] {
        let historical: BTreeSet<u16> = named
            .samples
            .iter()
            .filter(|(n, _, h)| n == name && *h)
            .map(|&(_, v, _)| v - 1000 * register_of(name))
            .collect();
        let offline: BTreeSet<u16> = (1..LAST).collect();
        assert!(
            offline.is_subset(&historical),
            "{name}: historical {historical:?}"
        );
    }
    // The kept tags kept their aliases; the new one got an alias no tag had before.
    for name in ["t0", "t2"] {
        assert_eq!(named.births[name].len(), 1, "{name}: {:?}", named.births);
    }
    let fresh = *named.births["fresh"].first().unwrap();
    assert!(
        first_aliases.keys().all(|&a| a < fresh),
        "fresh got {fresh}, the first birth had {first_aliases:?}"
    );
    assert!(
        !named.samples[back..].iter().any(|(n, _, _)| n == "t1"),
        "the removed tag was replayed: {:?}",
        &named.samples[back..]
    );
    // The removed tag's counts 1..STORED_BEFORE were stored, and dropped unsent.
    let dropped = dropped_removed(&node, u64::from(STORED_BEFORE) - 1).await;
    assert!(dropped <= u64::from(STORED_BEFORE) + 2, "dropped {dropped}");
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_apply_keeps_stored_samples_under_their_metric() {
    stored_samples_keep_their_metric(Change::LiveApply).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_an_edited_file_keeps_stored_samples_under_their_metric() {
    stored_samples_keep_their_metric(Change::Restart).await;
}
