//! The fleet benchmark (BENCHMARKS.md, "fleet"): the fleet simulator (`system_tests::fleet`,
//! in this process on its own runtime) drives host instances through one Mosquitto (the
//! hosts in external broker mode, as a fleet deployment runs them: several instances need
//! one broker they share, which no instance's embedded broker is), stepping up nodes x
//! tags at 1 Hz. Phase 1: one host owning every group. Phase 2: two hosts, each owning half
//! the groups (`[sparkplug] groups`); target: two carry at least 1.8x one.
//!
//! The question is whether the work scales out over instances, so every host instance gets
//! the same fixed CPU budget in both phases, as if each ran on a machine of its own
//! (`system_tests::cpu_budget`: a cgroup CPU quota, or one pinned CPU when cgroups are not
//! writable); the simulator and the broker run outside it.
//!
//! Ingest lag: for probe metrics of the fleet, the time from a sample's timestamp to its
//! first appearance in the history API of the host owning it, read every 200 ms or so (a
//! probe with no new sample counts as lagging by the time since its last one, less one
//! period). A step is sustained when the lag stays under 2 s: its 95th percentile over the
//! step and its median over the step's last 5 s. Before every step the hosts drain what the
//! previous one left (history writer idle, no sample arriving), so a step starts clean. The
//! node count doubles until a step fails, then bisection steps narrow the limit.
//!
//! `cargo build -p host-app --bins --release && nice cargo bench -p system-tests --bench fleet`
//! (`FLEET_HOST_CPUS`, default 0.25: each host's CPU quota; `FLEET_STEP_S`, default 30:
//! seconds per step; `FLEET_TAGS`, default 100: tags per node; `FLEET_START_NODES`, default
//! 10; `FLEET_MAX_NODES`, default 5000; `FLEET_REFINE`, default 3: bisection steps).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use system_tests::Mosquitto;
use system_tests::config::{self, host};
use system_tests::cpu_budget::{CpuBudget, process_cpu_seconds};
use system_tests::fleet::{self, Counters, FleetOptions};
use system_tests::free_port;
use system_tests::http::Api;
use system_tests::stack::{Broker, HostApp, now_ms};

/// The most ingest lag a sustained step may show (95th percentile, and at its end).
const LAG_LIMIT_MS: u64 = 2_000;
/// The end of a step whose median lag must stay under the limit too.
const END_WINDOW: Duration = Duration::from_secs(5);
/// Groups of the fleet; each host of phase 2 owns half of them.
static GROUPS: [&str; 4] = ["FleetA", "FleetB", "FleetC", "FleetD"];
/// Probe nodes per step (spread over the groups) whose first tag is followed into history.
const PROBES: usize = 8;
/// The longest the hosts get to drain a step's backlog before the next starts.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);
/// A simulator sending less than this share of the offered samples makes a step invalid.
const SIM_SHORTFALL: f64 = 0.95;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A host instance under test: its API and CPU budget, and the groups it owns (empty: all).
struct Instance {
    owned: &'static [&'static str],
    api: Api,
    /// Its Prometheus `/metrics`.
    metrics: Api,
    // The host stops before its budget's group is removed (a group must be empty).
    _host: HostApp,
    budget: CpuBudget,
}

/// A host instance owning `owned` (all when empty) on the broker at `port`, knowing
/// `peers`, history in its own SQLite file in `dir`, under a budget of `cpus` (or pinned
/// to `cpu`).
fn start_host(
    dir: &Path,
    host_id: &str,
    port: u16,
    owned: &'static [&'static str],
    peers: Vec<host::Peer>,
    (cpus, cpu): (f64, usize),
) -> Instance {
    let http = free_port();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut config = host::HostConfig::new(host_id, host::Broker::external(loopback), dir);
    config.api.listen = format!("127.0.0.1:{http}");
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    config.metrics = Some(config::edge::Metrics {
        listen: metrics.to_string(),
    });
    config.history.flush_interval_ms = Some(200);
    config.sparkplug.groups =
        (!owned.is_empty()).then(|| owned.iter().map(|g| g.to_string()).collect());
    config.sparkplug.peers = peers;
    let path = config::write(&config, dir, "host-app.toml");
    let host = HostApp::start_config(path, Broker::External { port }, http);
    let budget = CpuBudget::apply(&format!("fleetbench-{host_id}"), host.pid(), cpus, cpu)
        .expect("a CPU budget for the host");
    system_tests::wait::until("host API", Duration::from_secs(30), || {
        host.api().get("/api/tree").is_ok()
    });
    println!("{host_id}: {}", budget.describe());
    Instance {
        owned,
        api: host.api(),
        metrics: Api::new(metrics),
        _host: host,
        budget,
    }
}

/// One value of the host's `/metrics`.
fn metric(host: &Instance, name: &str) -> Option<u64> {
    let (_, body) = host.metrics.request("GET", "/metrics", "").ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Waits until every host's history writer is idle and no sample arrived for a second
/// (what the broker still queued for it has been taken in); how long that took, or `None`
/// past [`DRAIN_LIMIT`].
fn drain(hosts: &[Instance]) -> Option<Duration> {
    let began = Instant::now();
    let received = |i: &Instance| metric(i, "host_sparkplug_samples_received_total");
    let mut last: Vec<Option<u64>> = hosts.iter().map(received).collect();
    while began.elapsed() < DRAIN_LIMIT {
        std::thread::sleep(Duration::from_secs(1));
        let now: Vec<Option<u64>> = hosts.iter().map(received).collect();
        let idle = hosts
            .iter()
            .all(|i| metric(i, "host_history_pending_samples") == Some(0));
        if idle && now == last && now.iter().all(Option::is_some) {
            return Some(began.elapsed());
        }
        last = now;
    }
    None
}

/// The lag readings of one step, in ms, with the time each was taken.
struct Lag {
    readings: Vec<(Instant, u64)>,
    /// Every probe reached history at least once.
    complete: bool,
}

impl Lag {
    fn worst(&self) -> u64 {
        self.readings.iter().map(|r| r.1).max().unwrap_or(0)
    }

    fn percentile(values: &mut [u64], p: f64) -> u64 {
        if values.is_empty() {
            return u64::MAX;
        }
        values.sort_unstable();
        values[((values.len() - 1) as f64 * p).round() as usize]
    }

    fn p95(&self) -> u64 {
        let mut all: Vec<u64> = self.readings.iter().map(|r| r.1).collect();
        Self::percentile(&mut all, 0.95)
    }

    /// The median over the last [`END_WINDOW`] of the step.
    fn at_end(&self) -> u64 {
        let Some(&(last, _)) = self.readings.last() else {
            return u64::MAX;
        };
        let mut end: Vec<u64> = self
            .readings
            .iter()
            .filter(|r| last.duration_since(r.0) <= END_WINDOW)
            .map(|r| r.1)
            .collect();
        Self::percentile(&mut end, 0.5)
    }

    fn sustained(&self) -> bool {
        self.complete && self.p95() <= LAG_LIMIT_MS && self.at_end() <= LAG_LIMIT_MS
    }
}

/// Reads the probes' lag over `window`: each reading is the worst over the probes, each
/// asked of the host owning its group.
fn read_lag(probes: &[(String, Api)], window: Duration) -> Lag {
    let mut last_seen = vec![0u64; probes.len()];
    let mut readings = Vec::new();
    let end = Instant::now() + window;
    while Instant::now() < end {
        let mut worst = 0u64;
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
        if last_seen.iter().any(|&s| s > 0) {
            readings.push((Instant::now(), worst));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Lag {
        complete: last_seen.iter().all(|&s| s > 0),
        readings,
    }
}

/// What one step measured.
struct Step {
    lag: Lag,
    /// Samples per second the simulator wrote.
    sent: f64,
    /// Each host's CPU use over the step, in CPUs.
    host_cpus: Vec<f64>,
    /// CFS periods each host ran out of quota in.
    throttled: Vec<Option<u64>>,
    /// The broker's CPU use over the step, in CPUs.
    broker_cpus: f64,
}

/// One step: `nodes` x `tags` at 1 Hz for `step` (after a settling period).
fn run_step(
    runtime: &tokio::runtime::Runtime,
    broker: &Mosquitto,
    hosts: &[Instance],
    (nodes, tags): (usize, usize),
    step: Duration,
    round: usize,
) -> Step {
    let options = FleetOptions {
        servers: vec![std::net::SocketAddr::from(([127, 0, 0, 1], broker.port()))],
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
                .find(|h| h.owned.is_empty() || h.owned.contains(&group.as_str()))
                .map(|h| h.api.clone())
                .expect("a host owns every group");
            (format!("{group}/{node}:Tag/0000"), api)
        })
        .collect();
    let counters = Arc::new(Counters::default());
    let tasks = {
        let _guard = runtime.enter();
        fleet::spawn(options, counters.clone())
    };
    // Births and the first seconds settle before anything counts.
    std::thread::sleep(Duration::from_secs(5).min(step / 3));
    let cpu_before: Vec<f64> = hosts
        .iter()
        .map(|h| h.budget.cpu_seconds().unwrap_or(0.0))
        .collect();
    let throttled_before: Vec<Option<u64>> =
        hosts.iter().map(|h| h.budget.throttled_periods()).collect();
    let broker_before = process_cpu_seconds(broker.pid()).unwrap_or(0.0);
    let samples_before = counters.report().samples;
    let began = Instant::now();
    let lag = read_lag(&probes, step);
    let elapsed = began.elapsed().as_secs_f64();
    let sent = (counters.report().samples - samples_before) as f64 / elapsed;
    let host_cpus = hosts
        .iter()
        .zip(&cpu_before)
        .map(|(h, before)| (h.budget.cpu_seconds().unwrap_or(0.0) - before) / elapsed)
        .collect();
    let throttled = hosts
        .iter()
        .zip(&throttled_before)
        .map(|(h, before)| Some(h.budget.throttled_periods()? - (*before)?))
        .collect();
    let broker_cpus = (process_cpu_seconds(broker.pid()).unwrap_or(0.0) - broker_before) / elapsed;
    for task in tasks {
        task.abort();
    }
    Step {
        lag,
        sent,
        host_cpus,
        throttled,
        broker_cpus,
    }
}

/// Doubles the node count until a step is not sustained, then halves the gap between the
/// last sustained and the first failed count `FLEET_REFINE` times; the largest sustained
/// nodes x tags.
fn largest_sustained(
    label: &str,
    runtime: &tokio::runtime::Runtime,
    broker: &Mosquitto,
    hosts: &[Instance],
    round: &mut usize,
) -> usize {
    let tags = env_u64("FLEET_TAGS", 100) as usize;
    let step = Duration::from_secs(env_u64("FLEET_STEP_S", 30));
    let max_nodes = env_u64("FLEET_MAX_NODES", 5000) as usize;
    let refine = env_u64("FLEET_REFINE", 3);
    let mut sustains = |nodes: usize| {
        *round += 1;
        let drained = drain(hosts);
        let s = run_step(runtime, broker, hosts, (nodes, tags), step, *round);
        let offered = (nodes * tags) as f64;
        let cpus: Vec<String> = s
            .host_cpus
            .iter()
            .zip(&s.throttled)
            .map(|(c, t)| match t {
                Some(t) => format!("{c:.2} ({t} throttled)"),
                None => format!("{c:.2}"),
            })
            .collect();
        println!(
            "{label}: {nodes} nodes x {tags} tags = {offered:.0} samples/s offered, {:.0} sent/s; \
             lag p95 {} ms, end {} ms, worst {} ms{}; host CPU {}; broker CPU {:.2}; drained in {}; load {}",
            s.sent,
            s.lag.p95(),
            s.lag.at_end(),
            s.lag.worst(),
            if s.lag.complete {
                ""
            } else {
                " (a probe never reached history)"
            },
            cpus.join(" + "),
            s.broker_cpus,
            drained.map_or("NOT drained".to_owned(), |d| format!(
                "{:.0} s",
                d.as_secs_f64()
            )),
            load_average(),
        );
        if s.sent < offered * SIM_SHORTFALL {
            println!(
                "{label}: the simulator sent {:.0}% of the offered load: the step measures the simulator",
                100.0 * s.sent / offered
            );
            return false;
        }
        s.lag.sustained()
    };
    let (mut best, mut failed) = (0, None);
    let mut nodes = env_u64("FLEET_START_NODES", 10) as usize;
    while nodes <= max_nodes {
        if !sustains(nodes) {
            failed = Some(nodes);
            break;
        }
        best = nodes;
        nodes *= 2;
    }
    // Doubling alone would make every ratio a power of two.
    for _ in 0..refine {
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

/// The 1-minute load average.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn main() {
    system_tests::raise_open_files_limit();
    let host_cpus = env_f64("FLEET_HOST_CPUS", 0.25);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let broker = Mosquitto::start_with("max_queued_messages 100000\n");
    let mut round = 0;
    println!(
        "each host instance: {host_cpus} CPU; {} CPUs on the machine; load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    let one = {
        let dir = tempfile::tempdir().expect("temp dir");
        let hosts = [start_host(
            dir.path(),
            "FleetHost1",
            broker.port(),
            &[],
            Vec::new(),
            (host_cpus, 0),
        )];
        largest_sustained("one host", &runtime, &broker, &hosts, &mut round)
    };

    let two = {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (half_a, half_b) = GROUPS.split_at(GROUPS.len() / 2);
        let hosts = [
            start_host(
                dir_a.path(),
                "FleetHostA",
                broker.port(),
                half_a,
                vec![host::Peer::new("FleetHostB", half_b)],
                (host_cpus, 0),
            ),
            start_host(
                dir_b.path(),
                "FleetHostB",
                broker.port(),
                half_b,
                vec![host::Peer::new("FleetHostA", half_a)],
                (host_cpus, 1),
            ),
        ];
        largest_sustained("two hosts", &runtime, &broker, &hosts, &mut round)
    };

    println!();
    println!("| hosts | largest nodes x tags at 1 Hz with lag < 2 s (p95 and at the end) |");
    println!("|---|---|");
    println!("| 1 | {one} |");
    println!("| 2 | {two} |");
    let ratio = if one > 0 {
        two as f64 / one as f64
    } else {
        0.0
    };
    println!(
        "two / one: {ratio:.2}x (target >= 1.8x): {}; load average {}",
        if ratio >= 1.8 { "met" } else { "NOT met" },
        load_average()
    );
}
