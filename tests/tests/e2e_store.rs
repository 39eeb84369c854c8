//! Store-and-forward through the whole product, with real processes: `plant-sim` serving
//! counters that change on every scan, the edge node polling them at 1 Hz and reaching
//! the host's embedded broker through a link simulator, the host keeping history. The
//! link is cut for an outage, the edge node is killed (SIGKILL) while it replays and
//! started again on the same store, then the link goes half-open (blackhole) for a few
//! keep-alives, and half-open once more with the edge node killed before it notices.
//! Afterwards the host's history must hold every sample exactly once, in
//! order per tag, with its original timestamp, flagged historical when it was taken
//! while the link was down.
//!
//! Every tag is a counter rising `RATE` per second, so report by exception publishes it
//! every scan: per tag, samples must come one scan apart (a gap is a lost sample) except
//! across the edge node's death, values must rise strictly (a repeat is a duplicate, a
//! drop an out-of-order sample) and each value step must match its time step (a
//! re-stamped sample does not).
//!
//! The short version runs in CI. The long one (1,000 tags, one hour outage) is the same
//! scenario, ignored by default:
//!
//!     cargo build -p edge-node -p host-app --bins
//!     cargo test -p system-tests --test e2e_store -- --ignored --nocapture
//!
//! `E2E_STORE_TAGS` and `E2E_STORE_OUTAGE_S` override its tag count and outage length.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use system_tests::config;
use system_tests::config::edge::{Device, EdgeConfig, ScanClass, Server, Store};
use system_tests::config::sim::{Signal, SimConfig, Sizes, Unit};
use system_tests::free_port;
use system_tests::http::Api;
use system_tests::linksim::LinkSim;
use system_tests::stack::{
    Broker, EdgeNode, GROUP, HOST_ID, HostApp, NODE, Plant, Tree, WAIT, now_ms,
};
use system_tests::wait;

/// Tags per simulated Modbus unit (one edge device each): 100 registers, one read.
const TAGS_PER_DEVICE: usize = 50;
/// The scan period of every tag.
const SCAN_MS: u64 = 1_000;
/// Counts per second each counter rises: ten per scan, one per simulator tick.
const RATE: f64 = 10.0;
const TICK_MS: u64 = 100;
/// MQTT keep-alive of the edge node: small, so a half-open link is noticed fast.
const KEEP_ALIVE_S: u64 = 3;
/// Seconds of live samples the edge node keeps until the broker confirms them: twice
/// the recommended 1.5 keep-alives, and less than the half-open episode, so a half-open
/// link noticed only once it is back loses samples.
const SENT_WINDOW_S: u64 = 3 * KEEP_ALIVE_S;
/// One-way delay of the simulated link (a geostationary hop).
const LINK_LATENCY: Duration = Duration::from_millis(250);
/// Longest step between two samples of a tag: one and a half scans.
const MAX_STEP_MS: u64 = SCAN_MS * 3 / 2;
/// How far a value step may stray from its time step, in seconds of counting: the
/// simulator's tick and the poll's own latency.
const VALUE_SLACK_S: f64 = 0.5;
/// Around each episode, samples may be either live or historical for this long: a scan
/// in flight when the link went, the births' own values when it came back.
const EDGE_MS: u64 = SCAN_MS * 3 / 2;
const GOOD: i64 = 192;
const STALE: i64 = 500;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    tags: usize,
    /// Live before the cut.
    live: Duration,
    /// How long the link is cut.
    outage: Duration,
    /// How long the edge node stays dead after the SIGKILL.
    dead: Duration,
    /// How long the link is half-open.
    blackhole: Duration,
}

impl Scenario {
    fn short() -> Scenario {
        Scenario {
            tags: 200,
            live: Duration::from_secs(10),
            outage: Duration::from_secs(60),
            dead: Duration::from_secs(3),
            blackhole: Duration::from_secs(4 * KEEP_ALIVE_S),
        }
    }

    /// The soak: 1,000 tags, one hour outage, unless the environment says otherwise.
    fn long() -> Scenario {
        let env = |name: &str, default: u64| -> u64 {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .unwrap_or_else(|e| panic!("{name}={v:?} is not a whole number: {e}")),
                Err(_) => default,
            }
        };
        let tags = env("E2E_STORE_TAGS", 1_000);
        let outage = env("E2E_STORE_OUTAGE_S", 3_600);
        assert!(
            tags >= 1 && outage >= 10,
            "E2E_STORE_TAGS must be at least 1 and E2E_STORE_OUTAGE_S at least 10"
        );
        Scenario {
            tags: usize::try_from(tags).expect("tag count fits usize"),
            outage: Duration::from_secs(outage),
            ..Scenario::short()
        }
    }

    fn devices(&self) -> usize {
        self.tags.div_ceil(TAGS_PER_DEVICE)
    }

    /// Samples the outage leaves in the store.
    fn stored_by_outage(&self) -> u64 {
        self.tags as u64 * self.outage.as_secs()
    }

    /// How long replaying the outage should take: long enough to kill the edge node in
    /// the middle of it, short enough for CI.
    fn replay_time(&self) -> Duration {
        (self.outage / 6).max(Duration::from_secs(20))
    }

    /// The link share that replays the outage in about [`Scenario::replay_time`] while
    /// live data keeps flowing (~20 bytes per sample on the wire).
    fn replay_bytes_per_s(&self) -> u64 {
        let live = self.tags as u64 * 20;
        live + live * self.outage.as_secs() / self.replay_time().as_secs()
    }
}

fn device_name(device: usize) -> String {
    format!("rtu-{device:02}")
}

fn tag_name(tag: usize) -> String {
    format!("T{tag:04}")
}

fn metric_key(tag: usize) -> String {
    format!(
        "{GROUP}/{NODE}/{}:{}",
        device_name(tag / TAGS_PER_DEVICE),
        tag_name(tag)
    )
}

/// Each counter starts apart from the others, so a sample filed under the wrong tag shows.
fn start_value(tag: usize) -> u64 {
    (tag as u64 + 1) * 1_000_000
}

/// One unit per device, a u32 counter per tag at input registers 0, 2, 4...
fn plant_config(scenario: &Scenario) -> SimConfig {
    let units = (0..scenario.devices())
        .map(|device| {
            let tags =
                device * TAGS_PER_DEVICE..((device + 1) * TAGS_PER_DEVICE).min(scenario.tags);
            let signals = tags
                .enumerate()
                .map(|(slot, tag)| Signal {
                    data_type: Some("u32".to_owned()),
                    start: Some(start_value(tag) as f64),
                    rate: Some(RATE),
                    ..Signal::new(
                        &tag_name(tag),
                        "input_registers",
                        2 * slot as u16,
                        "counter",
                    )
                })
                .collect();
            Unit {
                name: Some(device_name(device)),
                sizes: Some(Sizes {
                    coils: 8,
                    discrete_inputs: 8,
                    holding_registers: 8,
                    input_registers: 2 * TAGS_PER_DEVICE as u32,
                }),
                signals,
                ..Unit::new(device as u8 + 1)
            }
        })
        .collect();
    SimConfig {
        tick_ms: Some(TICK_MS),
        units,
    }
}

/// The edge node's tag list: every counter, no deadband, one scan class.
fn tag_csv(scenario: &Scenario) -> String {
    let mut out = String::from("device,name,table,address,type,scan_class\n");
    for tag in 0..scenario.tags {
        let _ = writeln!(
            out,
            "{},{},input,{},u32,scan",
            device_name(tag / TAGS_PER_DEVICE),
            tag_name(tag),
            2 * (tag % TAGS_PER_DEVICE)
        );
    }
    out
}

fn edge_config(dir: &Path, scenario: &Scenario, broker_port: u16, plant_port: u16) -> EdgeConfig {
    let mut config = EdgeConfig::new(GROUP, NODE)
        .primary_host(HOST_ID)
        .state_file(dir.join("edge-node.bdseq"));
    system_tests::stack::edge_login(&mut config, dir);
    config.sparkplug.metrics_period_ms = 1000;
    config.mqtt.keep_alive_s = KEEP_ALIVE_S;
    config.mqtt.backoff_min_ms = 100;
    config.mqtt.backoff_max_ms = 500;
    config.mqtt.servers = vec![Server::loopback(broker_port)];
    config.store = Some(Store {
        path: dir.join("store.sqlite"),
        replay_bytes_per_s: Some(scenario.replay_bytes_per_s()),
        sent_window_samples: Some(scenario.tags * (SENT_WINDOW_S * 1000 / SCAN_MS) as usize),
        ..Store::default()
    });
    config.modbus.tag_files = vec!["tags.csv".into()];
    config.modbus.scan_classes = vec![ScanClass::new("scan", SCAN_MS as f64)];
    config.modbus.devices = (0..scenario.devices())
        .map(|device| Device {
            timeout_ms: Some(1000),
            reconnect_min_ms: Some(100),
            reconnect_max_ms: Some(500),
            ..Device::tcp(&device_name(device), plant_port, device as u8 + 1)
        })
        .collect();
    config
}

/// What an episode did to the edge node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Polling before the first births: those samples are stored, then replayed.
    Start,
    /// The link was down (cut, half-open): samples taken then must be historical.
    LinkDown,
    /// The edge node was dead: no samples at all.
    Dead,
}

/// One disturbance, in host milliseconds: it `began`, the test `ended` it (restore,
/// restart) and the host saw the node born again at `resumed`.
#[derive(Debug, Clone, Copy)]
struct Episode {
    what: &'static str,
    kind: Kind,
    began: u64,
    ended: u64,
    resumed: u64,
}

impl Episode {
    /// Samples here may be live or historical.
    fn either(&self, ts: u64) -> bool {
        (self.began.saturating_sub(EDGE_MS)..=self.resumed + EDGE_MS).contains(&ts)
    }

    /// Samples here must be historical: taken while the link was down, before the scan
    /// whose value the births may carry.
    fn must_be_historical(&self, ts: u64) -> bool {
        self.kind == Kind::LinkDown
            && (self.began..self.ended.saturating_sub(EDGE_MS)).contains(&ts)
    }

    /// The edge node's death may leave a gap from `a` to `b`: the last sample of the
    /// killed process, at most a scan before the kill (only the scan being taken may die
    /// with it), and the first of the new process, once it has started and polled.
    fn allows_gap(&self, a: u64, b: u64) -> bool {
        self.kind == Kind::Dead
            && a < self.began
            && b > self.ended
            && self.began - a <= MAX_STEP_MS
            && b - self.ended <= 5_000
    }
}

/// One stored sample as the host's history API returns it.
#[derive(Debug, Clone, Copy)]
struct Stored {
    ts: u64,
    value: u64,
    quality: i64,
    historical: bool,
}

impl std::fmt::Display for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ts {} value {} quality {}{}",
            self.ts,
            self.value,
            self.quality,
            if self.historical {
                " historical"
            } else {
                " live"
            }
        )
    }
}

/// Every sample of `metric` in `from..to`, raw.
fn raw_history(api: &Api, metric: &str, from: u64, to: u64) -> Vec<Stored> {
    api.raw_history(metric, from, to)
        .iter()
        .map(|last| stored(metric, last))
        .collect()
}

fn stored(metric: &str, last: &Json) -> Stored {
    let get = |name: &str| {
        last[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{metric}: sample without a whole `{name}`: {last}"))
    };
    Stored {
        ts: get("ts"),
        value: get("value"),
        quality: last["quality"]
            .as_i64()
            .unwrap_or_else(|| panic!("{metric}: sample without quality: {last}")),
        historical: last["is_historical"]
            .as_bool()
            .unwrap_or_else(|| panic!("{metric}: sample without is_historical: {last}")),
    }
}

/// Checks one tag's history over `from..to` against the episodes; one line per fault.
fn check_tag(
    tag: usize,
    samples: &[Stored],
    first_online: u64,
    to: u64,
    episodes: &[Episode],
) -> Vec<String> {
    let name = metric_key(tag);
    let mut faults = Vec::new();
    let mut good: Vec<&Stored> = Vec::with_capacity(samples.len());
    for s in samples {
        match s.quality {
            GOOD => good.push(s),
            // The host marks a dead node's metrics STALE at the death it saw.
            STALE if episodes.iter().any(|e| e.either(s.ts)) => {}
            _ => faults.push(format!(
                "{name}: unexpected quality outside every episode: {s}"
            )),
        }
    }
    let (Some(first), Some(last)) = (good.first(), good.last()) else {
        faults.push(format!("{name}: no GOOD sample at all"));
        return faults;
    };
    if first.ts > first_online {
        faults.push(format!(
            "{name}: first sample ({first}) after the node was seen online at {first_online}"
        ));
    }
    if last.ts + MAX_STEP_MS < to {
        faults.push(format!(
            "{name}: last sample ({last}) more than {MAX_STEP_MS} ms before the end {to}"
        ));
    }
    if first.value < start_value(tag) || first.value >= start_value(tag + 1) {
        faults.push(format!(
            "{name}: value of another tag (starts at {}): {first}",
            start_value(tag)
        ));
    }
    for pair in good.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.ts <= a.ts || b.value <= a.value {
            faults.push(format!(
                "{name}: not rising (duplicate or out of order): {a} then {b}"
            ));
            continue;
        }
        let step = b.ts - a.ts;
        if step > MAX_STEP_MS && !episodes.iter().any(|e| e.allows_gap(a.ts, b.ts)) {
            // A host marker (STALE) in the gap may hold the lost sample's key.
            let between: Vec<String> = samples
                .iter()
                .filter(|s| s.quality != GOOD && (a.ts..b.ts).contains(&s.ts))
                .map(ToString::to_string)
                .collect();
            faults.push(format!(
                "{name}: {step} ms without a sample (lost samples): {a} then {b}; not GOOD in between: {between:?}"
            ));
        }
        let counted_s = (b.value - a.value) as f64 / RATE;
        let elapsed_s = step as f64 / 1000.0;
        if (counted_s - elapsed_s).abs() > VALUE_SLACK_S {
            faults.push(format!(
                "{name}: the value rose {counted_s:.1} s worth in {elapsed_s:.3} s (a timestamp is not the original): {a} then {b}"
            ));
        }
    }
    for s in &good {
        let historical_required = episodes.iter().any(|e| e.must_be_historical(s.ts));
        let either = episodes.iter().any(|e| e.either(s.ts));
        if historical_required && !s.historical {
            faults.push(format!(
                "{name}: taken while the link was down but not flagged historical: {s}"
            ));
        } else if !either && s.historical {
            faults.push(format!(
                "{name}: flagged historical outside every episode: {s}"
            ));
        }
    }
    faults
}

/// A node metric of the test node, as a whole number.
fn node_metric(tree: &Tree, name: &str) -> Option<u64> {
    tree.metric(GROUP, NODE, None, name)?["value"].as_u64()
}

/// The whole product on loopback, the edge node behind the link simulator.
struct Rig {
    scenario: Scenario,
    link: LinkSim,
    _runtime: tokio::runtime::Runtime,
    _plant: Plant,
    host: HostApp,
    edge: EdgeNode,
    api: Api,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start(scenario: Scenario) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime for the link simulator");
        let plant_file = config::write(&plant_config(&scenario), dir.path(), "plant-sim.toml");
        let plant = Plant::start_config(&plant_file);
        let broker = Broker::Embedded { port: free_port() };
        let host = HostApp::start(dir.path(), broker);
        let target = std::net::SocketAddr::from(([127, 0, 0, 1], broker.port()));
        let link = runtime
            .block_on(LinkSim::start(target))
            .expect("link simulator listens");
        link.set_latency(LINK_LATENCY);
        // Room for live and replay at the pacer's share, twice over.
        link.set_bandwidth(Some(scenario.replay_bytes_per_s() * 8 * 2));
        std::fs::write(dir.path().join("tags.csv"), tag_csv(&scenario)).expect("write tags.csv");
        let edge_file = config::write(
            &edge_config(dir.path(), &scenario, link.addr().port(), plant.port()),
            dir.path(),
            "edge-node.toml",
        );
        let edge = EdgeNode::start_config(edge_file);
        let api = host.api();
        Rig {
            scenario,
            link,
            _runtime: runtime,
            _plant: plant,
            host,
            edge,
            api,
            _dir: dir,
        }
    }

    /// Every process's output so far, for a failure message.
    fn dump(&mut self) -> String {
        let tail = |lines: Vec<String>| {
            let skip = lines.len().saturating_sub(200);
            lines[skip..].join("\n")
        };
        format!(
            "--- host-app (last 200 lines) ---\n{}\n--- edge-node (last 200 lines) ---\n{}",
            tail(self.host.output()),
            tail(self.edge.output())
        )
    }

    /// Polls the tree until `ready` accepts it, at most `timeout`; the tree, or the last
    /// one seen as the error.
    fn try_wait_tree(
        &mut self,
        timeout: Duration,
        ready: impl Fn(&Tree) -> bool,
    ) -> Result<Tree, String> {
        let api = self.api.clone();
        let mut last = None;
        // Drain the children's output as we go, so their pipes never fill.
        let found = wait::poll(timeout, || {
            self.host.output();
            self.edge.output();
            let tree = api.get("/api/tree").ok().map(Tree);
            let hit = tree.as_ref().is_some_and(&ready);
            last = tree;
            if hit { last.clone() } else { None }
        });
        found.ok_or_else(|| {
            format!(
                "not within {timeout:?}; last tree node: {}",
                last.and_then(|t| t.node(GROUP, NODE).cloned())
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            )
        })
    }

    fn wait_tree(&mut self, what: &str, timeout: Duration, ready: impl Fn(&Tree) -> bool) -> Tree {
        match self.try_wait_tree(timeout, ready) {
            Ok(tree) => tree,
            Err(e) => panic!("{what}: {e}\n{}", self.dump()),
        }
    }

    /// Waits for a session other than the one with `old_bd_seq`: node born, every device
    /// online. Returns its bdSeq and when the host was seen to have it.
    fn try_wait_new_session(
        &mut self,
        old_bd_seq: Option<u64>,
        timeout: Duration,
    ) -> Result<(u64, u64), String> {
        let devices: Vec<String> = (0..self.scenario.devices()).map(device_name).collect();
        let tree = self.try_wait_tree(timeout, |tree| {
            tree.node_state() == Some("online")
                && tree.bd_seq().is_some()
                && tree.bd_seq() != old_bd_seq
                && devices
                    .iter()
                    .all(|d| tree.device_state(d) == Some("online"))
        })?;
        Ok((tree.bd_seq().unwrap_or_default(), now_ms()))
    }

    fn wait_new_session(
        &mut self,
        what: &str,
        old_bd_seq: Option<u64>,
        timeout: Duration,
    ) -> (u64, u64) {
        match self.try_wait_new_session(old_bd_seq, timeout) {
            Ok(seen) => seen,
            Err(e) => panic!("{what}: {e}\n{}", self.dump()),
        }
    }

    /// After the edge node was killed at `kill_at`: dead for the scenario's time, then
    /// started on the same store; its new session's bdSeq and the death as an episode.
    fn restart_after_kill(
        &mut self,
        what: &'static str,
        kill_at: u64,
        old_bd_seq: u64,
    ) -> (u64, Episode) {
        std::thread::sleep(self.scenario.dead);
        let restarted_at = now_ms();
        self.edge.restart();
        let (bd_seq, resumed) = self.wait_new_session(
            &format!("births after {what}"),
            Some(old_bd_seq),
            Duration::from_secs(30),
        );
        let episode = Episode {
            what,
            kind: Kind::Dead,
            began: kill_at,
            ended: restarted_at,
            resumed,
        };
        (bd_seq, episode)
    }

    /// Waits until the session `bd_seq` reports an empty store.
    fn wait_store_empty(&mut self, what: &str, bd_seq: u64, timeout: Duration) {
        self.wait_tree(what, timeout, |tree| {
            tree.bd_seq() == Some(bd_seq)
                && tree.node_state() == Some("online")
                && node_metric(tree, "Store/Depth") == Some(0)
        });
    }
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn run(scenario: Scenario) {
    let started = now_ms();
    let clock = Instant::now();
    println!(
        "store-and-forward e2e: {} tags on {} devices, outage {:?}, replay {} B/s",
        scenario.tags,
        scenario.devices(),
        scenario.outage,
        scenario.replay_bytes_per_s()
    );
    let mut rig = Rig::start(scenario);
    // Faults found on the way that still leave the history worth checking.
    let mut faults: Vec<String> = Vec::new();

    let (bd_seq, first_online) =
        rig.wait_new_session("first births", None, Duration::from_secs(30));
    let mut episodes = vec![Episode {
        what: "start",
        kind: Kind::Start,
        began: started,
        ended: first_online,
        resumed: first_online,
    }];
    std::thread::sleep(scenario.live);

    // 1. The link is cut for the outage: samples go to the store.
    let cut_at = now_ms();
    rig.link.cut();
    println!("{:?}: link cut", clock.elapsed());
    let mut waited = Duration::ZERO;
    while waited < scenario.outage {
        let step = (scenario.outage - waited).min(Duration::from_secs(5));
        std::thread::sleep(step);
        waited += step;
        rig.host.output();
        rig.edge.output();
    }
    let restored_at = now_ms();
    rig.link.restore();
    println!("{:?}: link restored", clock.elapsed());
    let (bd_seq_2, resumed) = rig.wait_new_session(
        "births after the outage",
        Some(bd_seq),
        Duration::from_secs(30),
    );
    episodes.push(Episode {
        what: "cut",
        kind: Kind::LinkDown,
        began: cut_at,
        ended: restored_at,
        resumed,
    });

    // 2. SIGKILL in the middle of the replay, then the same store again.
    let quarter = scenario.stored_by_outage() / 4;
    let replay_timeout = scenario.replay_time() * 3 + Duration::from_secs(30);
    let tree = rig.wait_tree(
        "a quarter of the outage replayed, a quarter still stored",
        replay_timeout,
        |tree| {
            tree.bd_seq() == Some(bd_seq_2)
                && node_metric(tree, "Store/Replayed").is_some_and(|n| n >= quarter)
                && node_metric(tree, "Store/Depth").is_some_and(|n| n >= quarter)
        },
    );
    let kill_at = now_ms();
    rig.edge.kill();
    println!(
        "{:?}: edge node killed mid-replay (replayed {:?}, depth {:?})",
        clock.elapsed(),
        node_metric(&tree, "Store/Replayed"),
        node_metric(&tree, "Store/Depth")
    );
    let (bd_seq_3, dead) = rig.restart_after_kill("kill -9", kill_at, bd_seq_2);
    episodes.push(dead);
    rig.wait_store_empty("the rest of the outage replayed", bd_seq_3, replay_timeout);
    println!("{:?}: replay finished after the restart", clock.elapsed());

    // 3. Half-open: the sockets stay up, nothing gets through, for a few keep-alives.
    sleep_ms(5_000);
    // Lines so far are read: a link loss logged from here on is the half-open one's.
    rig.edge.output();
    let blackhole_at = now_ms();
    rig.link.blackhole();
    println!("{:?}: link half-open", clock.elapsed());
    // The edge node must notice by itself, while the link is still half-open.
    let noticed = rig
        .edge
        .wait_for_log_within(scenario.blackhole, &["MQTT link lost"]);
    let noticed_at = noticed.as_ref().map(|_| now_ms());
    std::thread::sleep(
        scenario
            .blackhole
            .saturating_sub(Duration::from_millis(now_ms() - blackhole_at)),
    );
    let unblocked_at = now_ms();
    rig.link.restore();
    println!(
        "{:?}: link restored; the edge node noticed the half-open link {}",
        clock.elapsed(),
        match noticed_at {
            Some(at) => format!("after {} ms", at - blackhole_at),
            None => "not at all".to_owned(),
        }
    );
    if noticed.is_none() {
        faults.push(format!(
            "the edge node did not notice the half-open link within {:?} ({} keep-alives of {KEEP_ALIVE_S} s)",
            scenario.blackhole,
            scenario.blackhole.as_secs() / KEEP_ALIVE_S
        ));
    }
    let after_half_open = match rig.try_wait_new_session(Some(bd_seq_3), Duration::from_secs(30)) {
        Ok((bd_seq_4, resumed)) => {
            episodes.push(Episode {
                what: "half-open",
                kind: Kind::LinkDown,
                began: blackhole_at,
                ended: unblocked_at,
                resumed,
            });
            rig.wait_store_empty(
                "the half-open episode replayed",
                bd_seq_4,
                Duration::from_secs(60),
            );
            Some(bd_seq_4)
        }
        Err(e) => {
            faults.push(format!(
                "the edge node never started a new session after the half-open link ({e}): it did not notice the link was dead"
            ));
            // Still judged as an episode: what it published into the void is looked for.
            episodes.push(Episode {
                what: "half-open",
                kind: Kind::LinkDown,
                began: blackhole_at,
                ended: unblocked_at,
                resumed: now_ms(),
            });
            None
        }
    };

    // 4. Half-open again, and the edge node killed before it could notice: what it
    //    published into the dead link since the last answered probe survives only in
    //    the store's written-ahead copies.
    if let Some(bd_seq_4) = after_half_open {
        sleep_ms(5_000);
        let blackhole_at = now_ms();
        rig.link.blackhole();
        // Well inside the 1.5 keep-alives the node needs to notice.
        sleep_ms(KEEP_ALIVE_S * 1_000 * 2 / 3);
        let kill_at = now_ms();
        rig.edge.kill();
        rig.link.restore();
        println!(
            "{:?}: edge node killed on a half-open link; link restored",
            clock.elapsed()
        );
        let (bd_seq_5, dead) =
            rig.restart_after_kill("kill -9 on a half-open link", kill_at, bd_seq_4);
        episodes.push(Episode {
            what: "half-open until the kill",
            kind: Kind::LinkDown,
            began: blackhole_at,
            ended: kill_at,
            resumed: dead.resumed,
        });
        episodes.push(dead);
        rig.wait_store_empty(
            "the samples sent into the half-open link replayed",
            bd_seq_5,
            Duration::from_secs(60),
        );
    }

    // 5. A little live data, then the host must have caught up with all of it.
    sleep_ms(3_000);
    let end = now_ms();
    let api = rig.api.clone();
    let last_tags: Vec<usize> = (0..scenario.devices())
        .map(|d| ((d + 1) * TAGS_PER_DEVICE).min(scenario.tags) - 1)
        .collect();
    let caught_up = wait::poll(WAIT, || {
        last_tags
            .iter()
            .all(|&tag| {
                let answer = api.history(&metric_key(tag), end - 2 * SCAN_MS, end + 60_000);
                answer["points"].as_array().is_some_and(|p| {
                    p.iter().any(|b| {
                        b["last"]["ts"]
                            .as_u64()
                            .is_some_and(|ts| ts >= end - SCAN_MS)
                    })
                })
            })
            .then_some(())
    });
    if caught_up.is_none() {
        faults.push(format!(
            "the host's history did not reach {end} within {WAIT:?}"
        ));
    }
    println!("{:?}: checking the history", clock.elapsed());

    let mut historical = 0usize;
    let mut total = 0usize;
    for tag in 0..scenario.tags {
        let samples = raw_history(&api, &metric_key(tag), started, end);
        total += samples.len();
        historical += samples.iter().filter(|s| s.historical).count();
        faults.extend(check_tag(tag, &samples, first_online, end, &episodes));
    }
    let mut timeline = format!("run from {started} to {end}; first online {first_online}\n");
    for e in &episodes {
        let _ = writeln!(
            timeline,
            "{}: began {}, ended {}, node born again {}",
            e.what, e.began, e.ended, e.resumed
        );
    }
    println!(
        "{:?}: {total} samples in history, {historical} historical\n{timeline}",
        clock.elapsed()
    );
    // How the edge node saw each episode.
    for line in rig.edge.output() {
        if line.contains("link lost") || line.contains("ERROR") {
            println!("edge-node: {line}");
        }
    }
    if !faults.is_empty() {
        let shown = faults.len().min(60);
        panic!(
            "{} faults in the host's history (first {shown}):\n{}\n{timeline}\n{}",
            faults.len(),
            faults[..shown].join("\n"),
            rig.dump()
        );
    }
    assert!(
        historical as u64 >= scenario.stored_by_outage() * 9 / 10,
        "only {historical} historical samples; the outage alone stored ~{}",
        scenario.stored_by_outage()
    );
}

#[test]
fn outage_kill_and_half_open_link_leave_every_sample_once_in_order_and_flagged() {
    run(Scenario::short());
}

/// The long version: 1,000 tags, an hour's outage (see the module docs for the command).
#[test]
#[ignore = "soak: about 1 h 20 min; run with --ignored"]
fn soak_long_outage_many_tags() {
    run(Scenario::long());
}
