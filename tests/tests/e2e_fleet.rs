//! The fleet on a clustered broker, with real processes: a three-node NATS cluster (MQTT
//! with JetStream), two host instances in external broker mode (HostA owns PlantA, HostB
//! PlantB, each names the other as its peer and lists every cluster node as a server),
//! history in one PostgreSQL database both write, and four edge nodes, two per group, each
//! polling its own plant-sim, naming its group's owner as its primary host and listing
//! several cluster nodes as its servers (each starts on a different one). Mid-run one broker
//! node is killed (SIGKILL) and later restarted; the edge nodes on it move to the next
//! server, keeping what they could not send in their store. Afterwards the shared history
//! holds every sample the edge nodes took exactly once (read through one instance, so it
//! holds the other's groups too), and both panels show all four nodes with their owners.
//!
//! Every tag is a counter rising one count per second, scanned five times a second and
//! reported by exception: each value the plant passes through is one sample, so per tag
//! the stored values must run contiguously (a gap is a lost sample, a repeat a duplicate)
//! from the first sample to one at the end of the run.
//!
//!     cargo build -p edge-node -p host-app --bins
//!     cargo test -p system-tests --test e2e_fleet

use std::path::Path;
use std::time::Duration;

use host_app_testkit::postgres::TempPostgres;
use system_tests::config::edge::{Device, EdgeConfig, ScanClass, Server, Store, Tag};
use system_tests::config::host::{Broker as HostBroker, History, HostConfig, Peer};
use system_tests::config::sim::{Signal, SimConfig, Sizes, Unit};
use system_tests::http::Api;
use system_tests::nats::NatsCluster;
use system_tests::stack::{Broker, EdgeNode, HostApp, Plant, Tree, WAIT, now_ms};
use system_tests::{config, free_port, wait};

/// The host instances: (host id, the group it owns, the cluster node it starts on).
const HOSTS: [(&str, &str, usize); 2] = [("HostA", "PlantA", 0), ("HostB", "PlantB", 2)];
/// The edge nodes: (group, node).
const NODES: [(&str, &str); 4] = [
    ("PlantA", "gw-1"),
    ("PlantA", "gw-2"),
    ("PlantB", "gw-3"),
    ("PlantB", "gw-4"),
];
/// Counters per edge node.
const TAGS: usize = 5;
/// The cluster node killed mid-run: edge node 1 starts on it. (The hosts start on the
/// other two.)
const KILLED: usize = 1;
/// Quality GOOD as the API reports it.
const GOOD: i64 = 192;

/// The host id of the instance that owns `group`.
fn owner(group: &str) -> &'static str {
    HOSTS
        .iter()
        .find(|(_, owned, _)| *owned == group)
        .map(|(host_id, _, _)| *host_id)
        .expect("every group has an owner")
}

fn tag_name(tag: usize) -> String {
    format!("T{tag}")
}

/// Each counter starts apart from every other, so a sample filed under the wrong tag or
/// node shows.
fn start_value(node: usize, tag: usize) -> u64 {
    ((node * TAGS + tag) as u64 + 1) * 1_000_000
}

/// One unit of `TAGS` u32 counters rising one count per second.
fn plant_config(node: usize) -> SimConfig {
    let signals = (0..TAGS)
        .map(|tag| Signal {
            data_type: Some("u32".to_owned()),
            start: Some(start_value(node, tag) as f64),
            rate: Some(1.0),
            ..Signal::new(&tag_name(tag), "input_registers", 2 * tag as u16, "counter")
        })
        .collect();
    SimConfig {
        tick_ms: Some(100),
        units: vec![Unit {
            name: Some("rtu".to_owned()),
            sizes: Some(Sizes {
                coils: 8,
                discrete_inputs: 8,
                holding_registers: 8,
                input_registers: 2 * TAGS as u32,
            }),
            signals,
            ..Unit::new(1)
        }],
    }
}

/// Edge node `k`: the cluster's nodes as its servers, starting from node `k mod 3`; a
/// store, so what it could not send while moving is replayed.
fn edge_config(dir: &Path, k: usize, cluster: &NatsCluster, plant_port: u16) -> EdgeConfig {
    let (group, node) = NODES[k];
    let mut config = EdgeConfig::new(group, node)
        .primary_host(owner(group))
        .state_file(dir.join("edge-node.bdseq"));
    config.mqtt.username = Some(NatsCluster::USERNAME.to_owned());
    config.mqtt.password_file = Some(cluster.password_file().to_owned());
    config.mqtt.keep_alive_s = 3;
    config.mqtt.backoff_min_ms = 100;
    config.mqtt.backoff_max_ms = 500;
    let ports = cluster.mqtt_ports();
    config.mqtt.servers = (0..ports.len())
        .map(|i| Server::loopback(ports[(k + i) % ports.len()]))
        .collect();
    config.store = Some(Store {
        path: dir.join("store.sqlite"),
        ..Store::default()
    });
    config.modbus.scan_classes = vec![ScanClass::new("scan", 200.0)];
    let mut device = Device::tcp("rtu", plant_port, 1).timing(500, 2, (100, 500));
    for tag in 0..TAGS {
        device =
            device.tag(Tag::new(&tag_name(tag), "input", 2 * tag as u32, "u32").scan_class("scan"));
    }
    config.modbus.devices = vec![device];
    config
}

/// Host instance `h` on its cluster node, the others as failover, history in the
/// PostgreSQL database at `history`, its own state in `dir`.
fn start_host(h: usize, dir: &Path, cluster: &NatsCluster, history: &str) -> HostApp {
    let (host_id, group, first) = HOSTS[h];
    let ports = cluster.mqtt_ports();
    let port = ports[first];
    let http = free_port();
    let mut config = HostConfig::new(
        host_id,
        HostBroker::external(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        dir,
    );
    if let Some(external) = config.broker.external.as_mut() {
        external.username = Some(NatsCluster::USERNAME.to_owned());
        external.password_file = Some(cluster.password_file().to_owned());
        external.failover = Some(
            (1..ports.len())
                .map(|i| format!("127.0.0.1:{}", ports[(first + i) % ports.len()]))
                .collect(),
        );
    }
    config.history = History::postgres(history);
    config.history.flush_interval_ms = Some(100);
    config.sparkplug.reorder_timeout_ms = Some(500);
    config.sparkplug.groups = Some(vec![group.to_owned()]);
    config.sparkplug.peers = HOSTS
        .iter()
        .filter(|(other, _, _)| *other != host_id)
        .map(|(other, group, _)| Peer::new(other, &[group]))
        .collect();
    config.api.listen = format!("127.0.0.1:{http}");
    config.api.state_dir = Some(dir.to_owned());
    let path = config::write(&config, dir, "host-app.toml");
    HostApp::start_config(path, Broker::External { port }, http)
}

/// Every edge node online, in the tree of the instance that owns its group.
fn all_online(apis: &[Api]) -> bool {
    let trees: Vec<Tree> = apis.iter().map(Api::tree).collect();
    NODES.iter().all(|(group, node)| {
        let h = HOSTS.iter().position(|(_, g, _)| g == group).unwrap_or(0);
        trees[h]
            .node(group, node)
            .is_some_and(|n| n["state"] == "online")
    })
}

/// What is wrong in instance `h`'s tree: a node missing, or its `owned`/`owner` wrong.
fn fleet_view_faults(h: usize, tree: &Tree) -> Vec<String> {
    let me = HOSTS[h].0;
    let mut faults = Vec::new();
    for (group, node) in NODES {
        let Some(n) = tree.node(group, node) else {
            faults.push(format!("{me}: {group}/{node} missing"));
            continue;
        };
        let owner = owner(group);
        if n["owned"] != (owner == me) || n["owner"] != owner {
            faults.push(format!(
                "{me}: {group}/{node} owned {} owner {}, expected owner {owner}",
                n["owned"], n["owner"]
            ));
        }
    }
    faults
}

/// One tag's faults: not GOOD, not contiguous, not reaching `end`.
fn check_tag(
    metric: &str,
    node: usize,
    tag: usize,
    samples: &[serde_json::Value],
    end: u64,
) -> Vec<String> {
    let mut faults = Vec::new();
    let good: Vec<(u64, u64)> = samples
        .iter()
        .filter(|s| s["quality"].as_i64() == Some(GOOD))
        .filter_map(|s| Some((s["ts"].as_u64()?, s["value"].as_u64()?)))
        .collect();
    let (Some(first), Some(last)) = (good.first(), good.last()) else {
        return vec![format!("{metric}: no GOOD sample")];
    };
    if !(start_value(node, tag)..start_value(node, tag) + 1_000_000).contains(&first.1) {
        faults.push(format!("{metric}: value of another tag: {first:?}"));
    }
    if last.0 + 3_000 < end {
        faults.push(format!(
            "{metric}: last sample {last:?} long before the end {end}"
        ));
    }
    for pair in good.windows(2) {
        let ((ta, a), (tb, b)) = (pair[0], pair[1]);
        if b != a + 1 || tb <= ta {
            faults.push(format!(
                "{metric}: {a} at {ta} then {b} at {tb} ({})",
                if b <= a {
                    "duplicate or out of order"
                } else {
                    "lost samples"
                }
            ));
        }
    }
    faults
}

#[test]
fn a_fleet_on_a_broker_cluster_keeps_every_sample_once_through_a_lost_node() {
    let mut cluster = NatsCluster::start(3).expect("three-node NATS cluster");
    let dir = tempfile::tempdir().expect("temp dir");
    let started = now_ms();
    let history = TempPostgres::shared()
        .and_then(|pg| pg.fresh_database())
        .expect("a PostgreSQL database for the shared history");
    // Both hosts first: an observing instance learns nodes only from their births.
    let hosts: Vec<HostApp> = (0..HOSTS.len())
        .map(|h| {
            let host_dir = dir.path().join(HOSTS[h].0);
            std::fs::create_dir_all(&host_dir).unwrap();
            start_host(h, &host_dir, &cluster, &history)
        })
        .collect();
    let apis: Vec<Api> = hosts.iter().map(HostApp::api).collect();

    let mut plants = Vec::new();
    let mut edges = Vec::new();
    for k in 0..NODES.len() {
        let edge_dir = dir.path().join(format!("edge-{k}"));
        std::fs::create_dir_all(&edge_dir).unwrap();
        let plant = Plant::start_config(&config::write(&plant_config(k), &edge_dir, "plant.toml"));
        let edge = config::write(
            &edge_config(&edge_dir, k, &cluster, plant.port()),
            &edge_dir,
            "edge-node.toml",
        );
        edges.push(EdgeNode::start_config(edge));
        plants.push(plant);
    }

    wait::until(
        "all four edge nodes online at their owners",
        4 * WAIT,
        || all_online(&apis),
    );
    std::thread::sleep(Duration::from_secs(8));

    // One broker node lost, then back on the same ports and store. The edge node that
    // started on it is born again (a new bdSeq) through another node.
    let (moved_group, moved_node) = NODES[KILLED];
    let bd_seq = |tree: &Tree| {
        tree.node(moved_group, moved_node)
            .and_then(|n| n["bdSeq"].as_u64())
    };
    let moved_owner = &apis[HOSTS
        .iter()
        .position(|(_, g, _)| *g == moved_group)
        .unwrap()];
    let before = bd_seq(&moved_owner.tree()).expect("bdSeq of the node on the killed broker");
    cluster.kill(KILLED);
    wait::until(
        "the node on the killed broker born again through another",
        4 * WAIT,
        || bd_seq(&moved_owner.tree()).is_some_and(|b| b != before) && all_online(&apis),
    );
    std::thread::sleep(Duration::from_secs(5));
    cluster.restart(KILLED).expect("the killed node restarts");
    wait::until("all four edge nodes online again", 4 * WAIT, || {
        all_online(&apis)
    });
    std::thread::sleep(Duration::from_secs(8));
    let end = now_ms();
    // History has caught up with `end` once every tag holds a sample taken after it (each
    // counter changes every second); a tag that never gets there is named by the check.
    let metrics: Vec<String> = NODES
        .iter()
        .flat_map(|(group, node)| {
            (0..TAGS).map(move |tag| format!("{group}/{node}/rtu:{}", tag_name(tag)))
        })
        .collect();
    wait::poll(WAIT, || {
        metrics.iter().all(|metric| {
            apis[0].history(metric, end, now_ms() + 1)["points"]
                .as_array()
                .is_some_and(|points| !points.is_empty())
        })
    });

    // Both panels show the whole fleet, each node with its owner.
    let view: Vec<String> = (0..HOSTS.len())
        .flat_map(|h| fleet_view_faults(h, &apis[h].tree()))
        .collect();
    assert!(view.is_empty(), "fleet view: {}", view.join("\n"));
    let mut faults = Vec::new();
    for (i, metric) in metrics.iter().enumerate() {
        let samples = apis[0].raw_history(metric, started, end);
        faults.extend(check_tag(metric, i / TAGS, i % TAGS, &samples, end));
    }
    assert!(
        faults.is_empty(),
        "{} faults in history:\n{}",
        faults.len(),
        faults.join("\n")
    );
}
