//! The fleet benchmark (BENCHMARKS.md, "fleet"): the fleet simulator (`system_tests::fleet`,
//! in this process on its own runtime) drives host instances through one Mosquitto (the
//! hosts in external broker mode, as a fleet deployment runs them: several instances need
//! one broker they share, which no instance's embedded broker is), stepping up nodes x
//! tags at 1 Hz. At each step the ingest lag is measured: for probe metrics of the fleet,
//! the time from a sample's timestamp to its first appearance in the host's history API.
//! A step is sustained when the worst lag seen over the step stays under 2 s; the node
//! count doubles until a step fails, then two bisection steps narrow the limit.
//! Phase 1: one host owning every group. Phase 2: two hosts, each owning half the groups
//! (`[sparkplug] groups`); target: two carry at least 1.8x one.
//!
//! `cargo build -p host-app --bins --release && nice cargo bench -p system-tests --bench fleet`
//! (`FLEET_STEP_S`, default 30: seconds per step; `FLEET_TAGS`, default 100: tags per node;
//! `FLEET_MAX_NODES`, default 5000).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use system_tests::Mosquitto;
use system_tests::config::{self, host};
use system_tests::fleet::{self, Counters, FleetOptions};
use system_tests::free_port;
use system_tests::http::Api;
use system_tests::stack::{Broker, HostApp, now_ms};

/// The most ingest lag a sustained step may show.
const LAG_LIMIT_MS: u64 = 2_000;
/// Groups of the fleet; each host of phase 2 owns half of them.
const GROUPS: [&str; 4] = ["FleetA", "FleetB", "FleetC", "FleetD"];
/// Bisection steps after the first failed doubling.
const REFINE: usize = 2;
/// Probe nodes per step (spread over the groups) whose first tag is followed into history.
const PROBES: usize = 8;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A host instance owning `groups` (all when `None`) on the broker at `port`, knowing
/// `peers`, history in its own SQLite file in `dir`.
fn start_host(
    dir: &Path,
    host_id: &str,
    port: u16,
    groups: Option<&[&str]>,
    peers: Vec<host::Peer>,
) -> HostApp {
    let http = free_port();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut config = host::HostConfig::new(host_id, host::Broker::external(loopback), dir);
    config.api.listen = format!("127.0.0.1:{http}");
    config.history.flush_interval_ms = Some(200);
    config.sparkplug.groups = groups.map(|g| g.iter().map(|g| g.to_string()).collect());
    config.sparkplug.peers = peers;
    let path = config::write(&config, dir, "host-app.toml");
    let host = HostApp::start_config(path, Broker::External { port }, http);
    system_tests::wait::until("host API", Duration::from_secs(30), || {
        host.api().get("/api/tree").is_ok()
    });
    host
}

/// The worst lag seen over `window` for the probe metrics, each asked of the host owning
/// its group; `None` when a probe never reached history.
fn worst_lag(probes: &[(String, Api)], window: Duration) -> Option<u64> {
    let mut last_seen = vec![0u64; probes.len()];
    let mut worst = 0u64;
    let end = Instant::now() + window;
    while Instant::now() < end {
        for (i, (metric, api)) in probes.iter().enumerate() {
            let now = now_ms();
            let Ok(answer) = api.get(&format!(
                "/api/history?metric={}&from={}&to={}&points=1",
                system_tests::http::percent_encode(metric),
                now.saturating_sub(30_000),
                now + 1
            )) else {
                continue;
            };
            let Some(ts) = answer["points"]
                .as_array()
                .and_then(|p| p.last())
                .and_then(|p| p["last"]["ts"].as_u64())
            else {
                continue;
            };
            if ts > last_seen[i] {
                worst = worst.max(now.saturating_sub(ts));
                last_seen[i] = ts;
            }
        }
        // With no new sample a probe's lag keeps growing.
        let now = now_ms();
        for &seen in &last_seen {
            if seen > 0 {
                worst = worst.max(now.saturating_sub(seen).saturating_sub(1_000));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last_seen.iter().all(|&s| s > 0).then_some(worst)
}

/// One step: `nodes` x `tags` at 1 Hz for `step`; the worst lag and the samples sent.
fn run_step(
    runtime: &tokio::runtime::Runtime,
    broker: u16,
    hosts: &[(&[&str], Api)],
    (nodes, tags): (usize, usize),
    step: Duration,
    round: usize,
) -> (Option<u64>, f64) {
    let options = FleetOptions {
        servers: vec![std::net::SocketAddr::from(([127, 0, 0, 1], broker))],
        groups: GROUPS.iter().map(|g| g.to_string()).collect(),
        nodes,
        tags,
        rate_hz: 1.0,
        node_prefix: format!("r{round}n"),
        login: None,
    };
    let probes: Vec<(String, Api)> = (0..PROBES.min(nodes))
        .map(|p| {
            let k = p * nodes / PROBES.min(nodes);
            let (group, node) = options.node(k);
            let api = hosts
                .iter()
                .find(|(owned, _)| owned.is_empty() || owned.contains(&group.as_str()))
                .map(|(_, api)| api.clone())
                .expect("a host owns every group");
            (format!("{group}/{node}:Tag/0000"), api)
        })
        .collect();
    let counters = Arc::new(Counters::default());
    let began = Instant::now();
    let tasks = {
        let _guard = runtime.enter();
        fleet::spawn(options, counters.clone())
    };
    // Births and the first seconds settle before the lag counts.
    std::thread::sleep(Duration::from_secs(5).min(step / 3));
    let lag = worst_lag(&probes, step);
    for task in tasks {
        task.abort();
    }
    let rate = counters.report().samples as f64 / began.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    (lag, rate)
}

/// Doubles the node count until the lag passes the limit, then halves the gap between the
/// last sustained and the first failed count `REFINE` times; the largest sustained
/// nodes x tags.
fn largest_sustained(
    label: &str,
    runtime: &tokio::runtime::Runtime,
    broker: u16,
    hosts: &[(&[&str], Api)],
    round: &mut usize,
) -> usize {
    let tags = env_u64("FLEET_TAGS", 100) as usize;
    let step = Duration::from_secs(env_u64("FLEET_STEP_S", 30));
    let max_nodes = env_u64("FLEET_MAX_NODES", 5000) as usize;
    let mut sustains = |nodes: usize| {
        *round += 1;
        let (lag, rate) = run_step(runtime, broker, hosts, (nodes, tags), step, *round);
        match lag {
            Some(lag) => println!(
                "{label}: {nodes} nodes x {tags} tags = {} samples/s offered, {rate:.0} sent/s, worst lag {lag} ms",
                nodes * tags
            ),
            None => println!("{label}: {nodes} nodes x {tags} tags: a probe never reached history"),
        }
        lag.is_some_and(|lag| lag <= LAG_LIMIT_MS)
    };
    let (mut best, mut failed) = (0, None);
    let mut nodes = 10;
    while nodes <= max_nodes {
        if !sustains(nodes) {
            failed = Some(nodes);
            break;
        }
        best = nodes;
        nodes *= 2;
    }
    // Doubling alone would make every ratio a power of two.
    for _ in 0..REFINE {
        let Some(high) = failed else { break };
        let mid = (best + high) / 2;
        if mid <= best {
            break;
        }
        if sustains(mid) {
            best = mid;
        } else {
            failed = Some(mid);
        }
    }
    best * tags
}

fn main() {
    system_tests::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let broker = Mosquitto::start_with("max_queued_messages 100000\n");
    let mut round = 0;

    let one = {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = start_host(dir.path(), "FleetHost1", broker.port(), None, Vec::new());
        let hosts: Vec<(&[&str], Api)> = vec![(&[], host.api())];
        largest_sustained("one host", &runtime, broker.port(), &hosts, &mut round)
    };

    let two = {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (half_a, half_b) = GROUPS.split_at(GROUPS.len() / 2);
        let a = start_host(
            dir_a.path(),
            "FleetHostA",
            broker.port(),
            Some(half_a),
            vec![host::Peer::new("FleetHostB", half_b)],
        );
        let b = start_host(
            dir_b.path(),
            "FleetHostB",
            broker.port(),
            Some(half_b),
            vec![host::Peer::new("FleetHostA", half_a)],
        );
        let hosts: Vec<(&[&str], Api)> = vec![(half_a, a.api()), (half_b, b.api())];
        largest_sustained("two hosts", &runtime, broker.port(), &hosts, &mut round)
    };

    println!();
    println!("| hosts | largest nodes x tags at 1 Hz with lag <= 2 s |");
    println!("|---|---|");
    println!("| 1 | {one} |");
    println!("| 2 | {two} |");
    let ratio = if one > 0 {
        two as f64 / one as f64
    } else {
        0.0
    };
    println!(
        "two / one: {ratio:.2}x (target >= 1.8x): {}",
        if ratio >= 1.8 { "met" } else { "NOT met" }
    );
}
