//! Host instances partitioned by Sparkplug group on one real broker: each ingests, checks
//! `seq` and asks Rebirths only for the groups it owns, both list every edge node of the
//! fleet with its owner (the overview too, in Chromium), a command for another instance's
//! node is refused naming the owner; and the host's MQTT client fails over to the next
//! external server.

use std::net::SocketAddr;
use std::time::Duration;

use host_app::broker::EmbeddedBroker;
use host_app::config::HostConfig;
use host_app::history::{MetricKey, TimeRange};
use host_app::host::Host;
use host_app::tracker::{Liveness, NodeId};
use host_app_testkit::host::{WAIT, admin, embedded_broker, host_config, login};
use serde_json::{Value as Json, json};
use sparkplug::Metric;
use system_tests::browser;
use system_tests::config::host::{Broker, Peer};
use system_tests::http::TEST_PASSWORD;
use system_tests::mqtt::ScriptedEdge;
use system_tests::stack::now_ms;
use system_tests::wait;
use tempfile::TempDir;
use web::Role;

/// The fleet: HostA owns Plant1; HostB owns Plant2 and every `Pipe-*` group; nobody
/// owns Plant3.
const NODES: [(&str, &str); 4] = [
    ("Plant1", "E1"),
    ("Plant2", "E2"),
    ("Pipe-North", "E3"),
    ("Plant3", "E4"),
];

/// Host `host_id` on the external broker at `broker`, owning `groups`, knowing `peer`.
async fn start_instance(
    dir: &std::path::Path,
    broker: SocketAddr,
    host_id: &str,
    groups: &[&str],
    peer: Peer,
) -> Host {
    system_tests::logs::init();
    let mut config = host_config(dir, Some(broker));
    config.sparkplug.host_id = host_id.to_owned();
    config.sparkplug.groups = Some(groups.iter().map(|g| g.to_string()).collect());
    config.sparkplug.peers = vec![peer];
    let config = HostConfig::from_toml(&config.to_toml()).unwrap();
    let host = Host::start(&config).await.unwrap();
    let shared = host.shared().clone();
    wait::until_async("host connected", WAIT, || shared.is_connected()).await;
    host
}

fn temp(group: &str, node: &str) -> MetricKey {
    MetricKey::node(group, node, "Temp")
}

/// Samples `host` stored for `key` (none when the metric is not even registered).
async fn stored_count(host: &Host, key: &MetricKey) -> usize {
    host.flush().await.unwrap();
    let store = host.shared().store.clone();
    match store.resolve_metric(key).unwrap() {
        Some(id) => store
            .range(id, TimeRange::new(0, u64::MAX >> 2), 1000)
            .unwrap()
            .len(),
        None => 0,
    }
}

/// `(owned, owner)` of every node in the instance's `/api/tree`, by `group/node`.
async fn tree_owners(host: &Host) -> Vec<(String, bool, Json)> {
    let (status, tree) = admin(host).await.call_async("GET", "/api/tree", None).await;
    assert_eq!(status, 200, "{tree}");
    let mut out = Vec::new();
    for g in tree["groups"].as_array().unwrap() {
        for n in g["nodes"].as_array().unwrap() {
            out.push((
                format!(
                    "{}/{}",
                    g["group"].as_str().unwrap(),
                    n["node"].as_str().unwrap()
                ),
                n["owned"].as_bool().unwrap(),
                n["owner"].clone(),
            ));
        }
    }
    out
}

/// The fleet on one embedded broker: both instances started, every node born with a
/// device, and each instance tracking its own nodes and observing the others.
struct Fleet {
    broker: EmbeddedBroker,
    a: Host,
    b: Host,
    edges: Vec<ScriptedEdge>,
    _dirs: (TempDir, TempDir),
}

async fn fleet() -> Fleet {
    let broker = embedded_broker().await;
    let addr = broker.plain_addr().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_instance(
        dir_a.path(),
        addr,
        "HostA",
        &["Plant1"],
        Peer::new("HostB", &["Plant2", "Pipe-*"]),
    )
    .await;
    let b = start_instance(
        dir_b.path(),
        addr,
        "HostB",
        &["Plant2", "Pipe-*"],
        Peer::new("HostA", &["Plant1"]),
    )
    .await;

    let mut edges = Vec::new();
    for (i, (group, node)) in NODES.iter().enumerate() {
        let mut edge = ScriptedEdge::connect(addr, group, node, i as u8).await;
        edge.nbirth(vec![Metric::new("Temp", 20.0f64).with_alias(1)])
            .await;
        edge.dbirth("Pump", vec![Metric::new("Speed", 1u32).with_alias(2)])
            .await;
        edges.push(edge);
    }
    // Every node is known to both instances: tracked by its owner, observed by the other.
    for (host, own) in [(&a, &["Plant1"][..]), (&b, &["Plant2", "Pipe-North"][..])] {
        let shared = host.shared().clone();
        wait::until_async("every node and device born", WAIT, || {
            NODES.iter().all(|(g, n)| {
                let id = NodeId::new(g, n);
                let tracker = if own.contains(g) {
                    shared.tracker()
                } else {
                    shared.observed()
                };
                tracker
                    .node(&id)
                    .and_then(|n| n.device("Pump"))
                    .is_some_and(|d| d.state == Liveness::Online)
            })
        })
        .await;
        assert_eq!(shared.tracker().nodes().len(), own.len());
        assert_eq!(shared.observed().nodes().len(), NODES.len() - own.len());
    }
    Fleet {
        broker,
        a,
        b,
        edges,
        _dirs: (dir_a, dir_b),
    }
}

#[tokio::test]
async fn two_instances_share_the_fleet_by_group() {
    let Fleet {
        broker,
        a,
        b,
        mut edges,
        _dirs,
    } = fleet().await;

    // Data, in order, from every node: each instance stores only its own groups'.
    let (a_shared, b_shared) = (a.shared().clone(), b.shared().clone());
    let t0 = now_ms() - 10_000; // one timestamp per value: history keeps (metric, ts) once
    for edge in &mut edges {
        for v in 1..=3u32 {
            let value = Metric::aliased(1, 20.0 + f64::from(v)).with_timestamp(t0 + u64::from(v));
            edge.ndata(vec![value]).await;
        }
    }
    // NBIRTH, DBIRTH and three NDATA per owned node.
    wait::until_async("HostA took Plant1's data", WAIT, || {
        a_shared.tracker().stats().messages >= 5
    })
    .await;
    wait::until_async("HostB took its groups' data", WAIT, || {
        b_shared.tracker().stats().messages >= 10
    })
    .await;
    // Birth + 3 values each, on the owner only.
    assert_eq!(stored_count(&a, &temp("Plant1", "E1")).await, 4);
    assert_eq!(stored_count(&b, &temp("Plant2", "E2")).await, 4);
    assert_eq!(stored_count(&b, &temp("Pipe-North", "E3")).await, 4);
    for key in [
        temp("Plant2", "E2"),
        temp("Pipe-North", "E3"),
        temp("Plant3", "E4"),
    ] {
        assert_eq!(stored_count(&a, &key).await, 0, "HostA stored {key}");
    }
    for key in [temp("Plant1", "E1"), temp("Plant3", "E4")] {
        assert_eq!(stored_count(&b, &key).await, 0, "HostB stored {key}");
    }

    // A seq gap on Plant1 (whose data HostB's pattern subscription also receives) and
    // one on Pipe-North: each owner asks its node for a Rebirth, nobody asks Plant3's.
    for i in [0, 2, 3] {
        edges[i].next_seq(); // never sent
        edges[i].ndata(vec![Metric::aliased(1, 99.0)]).await;
    }
    for i in [0, 2] {
        let ncmd = edges[i].next_matching("/NCMD/").await;
        let payload = ncmd.sparkplug();
        assert_eq!(
            payload.metrics[0].name.as_deref(),
            Some("Node Control/Rebirth")
        );
    }
    assert_eq!(a_shared.tracker().stats().rebirths_requested, 1);
    assert_eq!(b_shared.tracker().stats().rebirths_requested, 1);
    assert_eq!(a_shared.tracker().stats().seq_gaps, 1);
    assert_eq!(b_shared.tracker().stats().seq_gaps, 1);
    for shared in [&a_shared, &b_shared] {
        let observed = shared.observed().stats();
        assert_eq!((observed.seq_gaps, observed.rebirths_requested), (0, 0));
    }
    assert!(
        edges[3]
            .collect_for("/NCMD/", Duration::from_millis(500))
            .await
            .is_empty(),
        "a node of a group nobody owns is asked nothing"
    );

    // Both panels list the whole fleet with its owners.
    let expected = |me: &str| -> Vec<(String, bool, Json)> {
        let owners = [
            ("Pipe-North/E3", "HostB"),
            ("Plant1/E1", "HostA"),
            ("Plant2/E2", "HostB"),
        ];
        let mut rows: Vec<(String, bool, Json)> = owners
            .iter()
            .map(|(n, o)| (n.to_string(), *o == me, json!(o)))
            .collect();
        rows.push(("Plant3/E4".into(), false, Json::Null));
        rows
    };
    assert_eq!(tree_owners(&a).await, expected("HostA"));
    let (_, tree) = admin(&a).await.call_async("GET", "/api/tree", None).await;
    assert_eq!(tree["peers"], json!([{"host_id": "HostB", "online": true}]));
    assert_eq!(tree_owners(&b).await, expected("HostB"));
    // Values: an owned node's latest, an observed one's from history, which here (one
    // SQLite file per instance) holds none of it: the birth's value stays.
    let (_, tree) = admin(&a).await.call_async("GET", "/api/tree", None).await;
    let temp_of = |group: usize| {
        tree["groups"][group]["nodes"][0]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "Temp")
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(tree["groups"][1]["group"], "Plant1");
    assert_eq!(temp_of(1), json!(99.0), "owned: the latest NDATA");
    assert_eq!(tree["groups"][2]["group"], "Plant2");
    assert_eq!(temp_of(2), json!(20.0), "observed: the NBIRTH's");

    // Commands for another instance's node are refused, naming the owner.
    let api = admin(&a).await;
    let write = json!({"group": "Plant2", "node": "E2", "metric": "Temp", "value": 1.0});
    let (status, body) = api
        .call_async("POST", "/api/write", Some(&write.to_string()))
        .await;
    assert_eq!(status, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("\"HostB\""), "{error}");
    let rebirth = json!({"group": "Plant3", "node": "E4"});
    let (status, body) = api
        .call_async("POST", "/api/rebirth", Some(&rebirth.to_string()))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not owned"),
        "{body}"
    );
    // Its own node takes them.
    let own = json!({"group": "Plant1", "node": "E1"});
    let (status, body) = api
        .call_async("POST", "/api/rebirth", Some(&own.to_string()))
        .await;
    assert_eq!(status, 200, "{body}");
    let ncmd = edges[0].next_matching("/NCMD/").await.sparkplug();
    assert_eq!(
        ncmd.metrics[0].name.as_deref(),
        Some("Node Control/Rebirth")
    );

    // A death of another instance's node reaches the observer.
    edges[1].ndeath(sparkplug::BdSeq::new(1)).await;
    wait::until_async("HostA saw Plant2/E2 die", WAIT, || {
        a_shared
            .observed()
            .node(&NodeId::new("Plant2", "E2"))
            .is_some_and(|n| n.state == Liveness::Offline)
    })
    .await;

    // A peer's STATE offline reaches the others.
    b.stop().await.unwrap();
    wait::until_async("HostA saw HostB's STATE offline", WAIT, || {
        a_shared.peer_states() == [("HostB".to_owned(), Some(false))]
    })
    .await;
    a.stop().await.unwrap();
    broker.stop().await;
}

/// A loopback port nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Host `scada` on external servers `first`, then `failover`.
async fn start_with_failover(
    dir: &std::path::Path,
    first: SocketAddr,
    failover: SocketAddr,
) -> Host {
    system_tests::logs::init();
    let mut config = host_config(dir, Some(first));
    let Broker { external, .. } = &mut config.broker;
    external.as_mut().unwrap().failover = Some(vec![failover.to_string()]);
    let config = HostConfig::from_toml(&config.to_toml()).unwrap();
    let host = Host::start(&config).await.unwrap();
    let shared = host.shared().clone();
    wait::until_async("host connected", WAIT, || shared.is_connected()).await;
    host
}

/// Waits until `host` tracks an edge node that was born on `broker`.
async fn tracks_edge_on(host: &Host, broker: SocketAddr, node: &str) -> ScriptedEdge {
    let mut edge = ScriptedEdge::connect(broker, "Plant", node, 0).await;
    edge.nbirth(vec![Metric::new("Temp", 1.0f64)]).await;
    let shared = host.shared().clone();
    wait::until_async("edge node tracked", WAIT, || {
        shared.tracker().node(&NodeId::new("Plant", node)).is_some()
    })
    .await;
    edge
}

#[tokio::test]
async fn the_host_fails_over_to_the_next_external_server() {
    // The first server is down from the start: the second is used.
    let second = embedded_broker().await;
    let dir = tempfile::tempdir().unwrap();
    let host = start_with_failover(dir.path(), closed_port(), second.plain_addr().unwrap()).await;
    let _edge = tracks_edge_on(&host, second.plain_addr().unwrap(), "E1").await;
    host.stop().await.unwrap();
    second.stop().await;

    // The first server goes down while the host is on it: the host moves to the second.
    let first = embedded_broker().await;
    let second = embedded_broker().await;
    let dir = tempfile::tempdir().unwrap();
    let host = start_with_failover(
        dir.path(),
        first.plain_addr().unwrap(),
        second.plain_addr().unwrap(),
    )
    .await;
    let _edge = tracks_edge_on(&host, first.plain_addr().unwrap(), "E1").await;
    let connects = host.shared().connects();
    first.stop().await;
    let shared = host.shared().clone();
    wait::until_async("host connected again", WAIT, || {
        shared.is_connected() && shared.connects() > connects
    })
    .await;
    let _edge = tracks_edge_on(&host, second.plain_addr().unwrap(), "E2").await;
    host.stop().await.unwrap();
    second.stop().await;
}

/// HostA's overview in Chromium (tests/browser/fleet.mjs): its own node, HostB's nodes
/// observed with their owner, a node nobody owns, and an observed death shown live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_owned_and_observed_nodes_in_a_browser() {
    let Fleet {
        broker,
        a,
        b,
        mut edges,
        _dirs,
    } = fleet().await;
    login(&a, "olivia", Role::Operator).await;
    let env = [
        ("PANEL_URL", format!("http://{}", a.api_addr())),
        ("PANEL_USER", "olivia".to_owned()),
        ("PANEL_PASSWORD", TEST_PASSWORD.to_owned()),
        ("HOST_ID", "HostA".to_owned()),
    ];
    let mut plant2 = Some(edges.remove(1));
    let outcome = tokio::task::spawn_blocking(move || {
        browser::run("fleet", &env, Duration::from_secs(120), |command| {
            match (command, plant2.take()) {
                ("kill Plant2/E2", Some(edge)) => {
                    edge.kill();
                    Ok(String::new())
                }
                _ => Err(format!("unknown command {command:?}")),
            }
        })
    })
    .await
    .unwrap();
    assert_eq!(
        outcome.passed,
        ["01-owned-and-observed", "02-observed-death"]
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    broker.stop().await;
}

#[test]
fn group_ownership_problems_are_named_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = host_config(dir.path(), Some(closed_port()));
    config.sparkplug.groups = Some(vec!["Plant1".into(), "Plant/2".into(), "#".into()]);
    config.sparkplug.peers = vec![Peer::new("scada", &["Plant2"]), Peer::new("B", &[])];
    let e = HostConfig::from_toml(&config.to_toml()).unwrap_err();
    assert_eq!(
        e.keys(),
        [
            "sparkplug.groups[1]",
            "sparkplug.groups[2]",
            "sparkplug.peers[0].host_id",
            "sparkplug.peers[1].groups",
        ],
        "{e}"
    );
    config.sparkplug.groups = Some(Vec::new());
    config.sparkplug.peers.clear();
    let e = HostConfig::from_toml(&config.to_toml()).unwrap_err();
    assert_eq!(e.keys(), ["sparkplug.groups"], "{e}");
    assert!(e.to_string().contains("at least one group"), "{e}");
}
