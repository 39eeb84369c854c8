//! The configuration lifecycle against real parts (rmqtt in process, two simulated
//! Modbus plants, a recording host): a draft that fails validation changes nothing; an
//! apply touching one device leaves the other polling; new tags make a Rebirth (no
//! NDEATH) and their values arrive; an MQTT change reconnects; rollback restores the
//! files byte for byte and the node; the audit records each of them; a draft begun before
//! another change is refused.

use std::path::{Path, PathBuf};

use edge_node::configure::{ApplyError, Configurator, Draft};
use edge_node::{Config, EdgeNode, NodeHandle};
use edge_node_testkit::session::*;
use system_tests::config::edge::{Device, Tag};
use system_tests::mqtt::{Message, Recorder};
use system_tests::rmqtt;

/// A comment and layout the technician wrote; kept by every write of ours.
const HEADER: &str = "# Gateway 7, commissioned by the night shift.\n# Do not remove the pump.\n\n";

struct Rig {
    _dir: tempfile::TempDir,
    path: PathBuf,
    node: NodeHandle,
    configurator: Configurator,
    host: Recorder,
    boiler_plant: edge_node::simulator::PlantServer,
    _pump_plant: edge_node::simulator::PlantServer,
    config: EdgeConfig,
}

/// The boiler on one plant, a pump on another (two links), the file on disk with a
/// comment, the node born.
async fn rig() -> Rig {
    rig_on(rmqtt::start()).await
}

/// [`rig`] on the broker at `broker`.
async fn rig_on(broker: u16) -> Rig {
    let boiler_plant = start_plant().await;
    let pump_plant = start_plant().await;
    let mut config = boiler(&[broker], boiler_plant.local_addr().port());
    config.modbus.devices.push(
        Device::tcp("pump", pump_plant.local_addr().port(), 1)
            .timing(500, 1, (100, 200))
            .tag(Tag::new("speed", "holding", 0, "u16")),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge-node.toml");
    std::fs::write(&path, text(&config)).unwrap();
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let node = EdgeNode::start(Config::load(&path).unwrap()).unwrap();
    let configurator = node.configurator(&path, &dir.path().join("state")).unwrap();
    host.next_kind("NBIRTH").await;
    for device in ["boiler", "pump"] {
        host.next_matching("DBIRTH", |m| m.topic == topic("DBIRTH", Some(device)))
            .await;
    }
    Rig {
        _dir: dir,
        path,
        node,
        configurator,
        host,
        boiler_plant,
        _pump_plant: pump_plant,
        config,
    }
}

fn text(config: &EdgeConfig) -> String {
    format!("{HEADER}{}", config.to_toml())
}

fn draft(config: &EdgeConfig) -> Draft {
    Draft {
        main: text(config),
        ..Draft::default()
    }
}

/// `edge_modbus_scans_total` of a device, from the node's metrics.
fn scans(node: &NodeHandle, device: &str) -> u64 {
    let text = node.metrics().render();
    let prefix = format!("edge_modbus_scans_total{{device=\"{device}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no scan counter for {device} in\n{text}")) as u64
}

/// Waits until the device's scan counter passes `above`, polling the metrics.
async fn scans_pass(node: &NodeHandle, device: &str, above: u64) -> u64 {
    for _ in 0..100 {
        let n = scans(node, device);
        if n > above {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{device}: scans stayed at {above} or below");
}

/// Messages up to (and with) the first that `done` takes; none of them may be an NDEATH.
async fn until_without_ndeath(
    host: &mut Recorder,
    done: impl Fn(&Message) -> bool,
) -> Vec<Message> {
    let mut seen = Vec::new();
    for _ in 0..500 {
        let m = host.next().await;
        assert_ne!(
            m.kind(),
            "NDEATH",
            "an NDEATH during a live apply: {seen:?}"
        );
        let last = done(&m);
        seen.push(m);
        if last {
            return seen;
        }
    }
    panic!("not seen within 500 messages: {seen:?}");
}

fn file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_failing_validation_changes_nothing() {
    let mut rig = rig().await;
    let before = file(&rig.path);
    let pump_scans = scans(&rig.node, "pump");
    let mut bad = rig.config.clone();
    bad.mqtt.keep_alive_s = 0;
    bad.modbus.devices[0] = bad.modbus.devices[0]
        .clone()
        .tag(Tag::new("level", "holding", 5, "f32"));
    let refused = rig
        .configurator
        .apply(draft(&bad), "alice")
        .await
        .expect_err("a bad draft applied");
    let ApplyError::Invalid(e) = &refused else {
        panic!("{refused}");
    };
    assert_eq!(e.keys(), ["mqtt.keep_alive_s"], "{e}");
    assert_eq!(file(&rig.path), before, "the file was touched");
    assert!(!rig.configurator.can_roll_back());
    // The node runs on: no death, no birth, polling goes on.
    let quiet = rig
        .host
        .drain_for(std::time::Duration::from_millis(500))
        .await;
    assert!(
        quiet
            .iter()
            .all(|m| m.kind() == "DDATA" || m.kind() == "NDATA"),
        "{quiet:?}"
    );
    scans_pass(&rig.node, "pump", pump_scans).await;
    let audit = rig.configurator.audit(10);
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].who, "alice");
    assert!(!audit[0].applied);
    assert!(audit[0].outcome.to_string().contains("mqtt.keep_alive_s"));
    rig.node.shutdown().await.unwrap();
}

/// Two people editing at once: a draft begun before another's apply (or a reload of a
/// changed file) is refused, naming that change, which stays; a draft begun after it
/// applies on top of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_begun_before_another_change_is_refused_and_that_change_stays() {
    let rig = rig().await;
    let alice_began = rig.configurator.running();
    let bob_began = rig.configurator.running();
    let with_tag = |config: &EdgeConfig, device: usize, tag: Tag| {
        let mut changed = config.clone();
        changed.modbus.devices[device] = changed.modbus.devices[device].clone().tag(tag);
        changed
    };
    let alice = with_tag(&rig.config, 0, Tag::new("level", "holding", 7, "u16"));
    let bob = with_tag(&rig.config, 1, Tag::new("pressure", "holding", 3, "u16"));
    let alice_draft = Draft {
        main: text(&alice),
        ..alice_began
    };
    let bob_draft = Draft {
        main: text(&bob),
        ..bob_began
    };
    assert!(rig.configurator.is_current(&bob_draft));
    rig.configurator
        .apply(alice_draft, "alice")
        .await
        .expect("the first apply");

    assert!(!rig.configurator.is_current(&bob_draft));
    let refused = rig
        .configurator
        .apply(bob_draft, "bob")
        .await
        .expect_err("a draft that would undo alice's tag applied");
    assert!(matches!(refused, ApplyError::Stale { .. }), "{refused}");
    assert!(refused.to_string().contains("apply by alice"), "{refused}");
    assert_eq!(
        file(&rig.path),
        text(&alice).into_bytes(),
        "alice's change stays"
    );
    let audit = rig.configurator.audit(1);
    assert_eq!((audit[0].who.as_str(), audit[0].applied), ("bob", false));

    // Bob begins again from what runs now: both changes.
    let both = with_tag(&alice, 1, Tag::new("pressure", "holding", 3, "u16"));
    let again = Draft {
        main: text(&both),
        ..rig.configurator.running()
    };
    // A reload of unchanged files changes nothing, so the draft stays current...
    rig.configurator.reload("SIGHUP").await.unwrap();
    assert!(rig.configurator.is_current(&again));
    // ...and one of a file changed by hand does not.
    let mut by_hand = alice.clone();
    by_hand.mqtt.keep_alive_s = 45;
    std::fs::write(&rig.path, text(&by_hand)).unwrap();
    rig.configurator.reload("SIGHUP").await.unwrap();
    let refused = rig
        .configurator
        .apply(again, "bob")
        .await
        .expect_err("a draft from before the reload applied");
    assert!(
        refused.to_string().contains("reload by SIGHUP"),
        "{refused}"
    );
    let both = Draft {
        main: text(&with_tag(
            &by_hand,
            1,
            Tag::new("pressure", "holding", 3, "u16"),
        )),
        ..rig.configurator.running()
    };
    rig.configurator.apply(both.clone(), "bob").await.unwrap();
    assert_eq!(file(&rig.path), both.main.into_bytes());
    rig.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tags_make_a_rebirth_the_other_device_keeps_polling_and_rollback_restores() {
    let mut rig = rig().await;
    let original = file(&rig.path);
    let pump_before = scans(&rig.node, "pump");
    let bd_seq = 0;

    // A tag added to the boiler only.
    let mut more = rig.config.clone();
    more.modbus.devices[0] = more.modbus.devices[0]
        .clone()
        .tag(Tag::new("level", "holding", 7, "u16"));
    let diff = rig.configurator.diff(&draft(&more));
    assert_eq!(diff.tags["boiler"].added, ["level"], "{diff}");
    assert!(
        diff.devices_changed.is_empty() && diff.keys.is_empty(),
        "{diff}"
    );
    let report = rig.configurator.apply(draft(&more), "alice").await.unwrap();
    assert_eq!(report.node.devices_restarted, ["boiler"], "{report}");
    assert!(report.node.rebirth && !report.node.reconnect, "{report}");
    assert_eq!(file(&rig.path), text(&more).into_bytes());

    // NBIRTH with the same bdSeq, then the boiler's DBIRTH with the new tag; no NDEATH.
    let seen = until_without_ndeath(&mut rig.host, |m| {
        m.topic == topic("DBIRTH", Some("boiler")) && m.sparkplug().metric("level").is_some()
    })
    .await;
    let nbirth = seen
        .iter()
        .find(|m| m.kind() == "NBIRTH")
        .expect("a Rebirth NBIRTH");
    assert_eq!(nbirth.bd_seq(), bd_seq);
    let dbirth = seen.last().unwrap().sparkplug();
    let level = alias_in(&dbirth, "level");
    // The new tag's values arrive.
    rig.boiler_plant
        .bank(1)
        .unwrap()
        .set_holding_register(7, 1234)
        .unwrap();
    until_without_ndeath(&mut rig.host, |m| {
        m.topic == topic("DDATA", Some("boiler"))
            && m.sparkplug().metrics.into_iter().any(|mut x| {
                x.alias == Some(level)
                    && x.resolve(sparkplug::DataType::UInt16).is_ok()
                    && x.typed_value() == Some(&sparkplug::Value::UInt16(1234))
            })
    })
    .await;
    // The pump's line was never restarted: its counter went on from where it was.
    let pump_after = scans_pass(&rig.node, "pump", pump_before).await;
    assert!(pump_after > pump_before);

    // Rollback: the file byte for byte (comments included), the boiler without `level`.
    assert!(rig.configurator.can_roll_back());
    let report = rig.configurator.rollback("bob").await.unwrap();
    assert_eq!(
        file(&rig.path),
        original,
        "rollback did not restore the file"
    );
    assert!(report.node.rebirth, "{report}");
    assert_eq!(report.diff.tags["boiler"].removed, ["level"], "{report}");
    until_without_ndeath(&mut rig.host, |m| {
        m.topic == topic("DBIRTH", Some("boiler")) && m.sparkplug().metric("level").is_none()
    })
    .await;
    assert!(scans(&rig.node, "pump") >= pump_after, "the pump restarted");

    let audit = rig.configurator.audit(10);
    let actions: Vec<(&str, &str, bool)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.who.as_str(), a.applied))
        .collect();
    assert_eq!(
        actions,
        [("rollback", "bob", true), ("apply", "alice", true)]
    );
    rig.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_change_reconnects_and_a_node_metric_change_only_rebirths() {
    let mut rig = rig().await;
    let mut changed = rig.config.clone();
    changed.mqtt.keep_alive_s = 7;
    let report = rig
        .configurator
        .apply(draft(&changed), "alice")
        .await
        .unwrap();
    assert!(report.node.reconnect, "{report}");
    assert!(report.node.devices_restarted.is_empty(), "{report}");
    assert_eq!(report.diff.keys, ["mqtt.keep_alive_s"], "{report}");
    let ndeath = rig.host.next_kind("NDEATH").await;
    assert_eq!(ndeath.bd_seq(), 0);
    let nbirth = rig.host.next_kind("NBIRTH").await;
    assert_eq!(nbirth.bd_seq(), 1);
    rig.host
        .next_matching("DBIRTH of the pump", |m| {
            m.topic == topic("DBIRTH", Some("pump"))
        })
        .await;

    // A draft equal to the running configuration does nothing.
    let report = rig
        .configurator
        .apply(draft(&changed), "alice")
        .await
        .unwrap();
    assert!(report.diff.is_empty(), "{report}");
    assert_eq!(report.node, edge_node::node::Applied::default(), "{report}");
    rig.node.shutdown().await.unwrap();
}

/// The resident set of this process (the node runs in it), in KiB.
fn rss_kib() -> u64 {
    rss_kib_of(std::process::id())
}

/// The resident set of process `pid`, in KiB.
fn rss_kib_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Most the node's process may grow between the 20th apply and the last: what a leak of
/// a few KiB per apply would pass, allocator noise would not.
const RSS_GROWTH_KIB: u64 = 8 * 1024;

/// 200 applies in a row (each a Rebirth: a tag inserted before the boiler's others, or
/// removed again, so every later tag moves) while the pump's register counts up, with a
/// real host-app process recording history. Afterwards the host's history of the pump
/// holds every count exactly once, in timestamp order; no message was lost or repeated
/// (seq runs on by one from each NBIRTH); the node's RSS stays flat. `SOAK_APPLIES`
/// changes the count. Documented in README ("Soaks").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with --ignored (README, Soaks); needs cargo build -p host-app --bins"]
async fn soak_200_applies_lose_and_repeat_no_sample() {
    use system_tests::stack::{Broker, HostApp};
    let applies: usize = std::env::var("SOAK_APPLIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let broker = rmqtt::start();
    let host_dir = tempfile::tempdir().unwrap();
    let history_from = infra::clock::now_ms();
    let host = HostApp::start(host_dir.path(), Broker::External { port: broker });
    let api = host.api();
    let mut rig = rig_on(broker).await;
    let pump = rig._pump_plant.bank(1).unwrap().clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let counting = {
        let stop = stop.clone();
        // One count per 250 ms: the 100 ms scans see each value at least once.
        tokio::spawn(async move {
            let mut n: u16 = 0;
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
            while !stop.is_cancelled() {
                tick.tick().await;
                n += 1;
                pump.set_holding_register(0, n).unwrap();
            }
            n
        })
    };
    let mut more = rig.config.clone();
    more.modbus.devices[0]
        .tags
        .insert(0, Tag::new("level", "holding", 7, "u16"));
    let mut rss = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..applies {
        let target = if i % 2 == 0 { &more } else { &rig.config };
        let report = rig.configurator.apply(draft(target), "soak").await.unwrap();
        assert!(report.node.rebirth, "apply {i}: {report}");
        assert_eq!(report.node.devices_restarted, ["boiler"], "apply {i}");
        // Sampled after the 20th apply (or the last of fewer) and after the last.
        if i == applies.min(20) - 1 {
            rss.push((rss_kib(), rss_kib_of(host.pid())));
        }
        if i == applies - 1 {
            rss.push((rss_kib(), rss_kib_of(host.pid())));
        }
        // Data flows between applies, as it would between a technician's clicks.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.cancel();
    let last = counting.await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let messages = rig.host.drain_for(std::time::Duration::from_secs(2)).await;

    // What the node sent of the pump's count: every sample (ts -> value) of its births
    // and DDATA, and the DDATA counts in order.
    let mut seq: Option<u64> = None;
    let mut sent = std::collections::BTreeMap::new();
    let mut counts = Vec::new();
    let mut speed_alias = None;
    for m in &messages {
        assert_ne!(m.kind(), "NDEATH", "an NDEATH during the soak");
        let p = m.sparkplug();
        let s = p.seq.expect("seq");
        if m.topic == topic("DBIRTH", Some("pump")) {
            speed_alias = Some(alias_in(&p, "speed"));
        }
        if m.topic == topic("DBIRTH", Some("pump")) || m.topic == topic("DDATA", Some("pump")) {
            for mut x in p.metrics {
                if x.alias == speed_alias
                    && x.resolve(sparkplug::DataType::UInt16).is_ok()
                    && let Some(&sparkplug::Value::UInt16(v)) = x.typed_value()
                {
                    let ts = x.timestamp.expect("metrics carry their timestamp");
                    let before = sent.insert(ts, u64::from(v));
                    assert!(
                        before.is_none_or(|b| b == u64::from(v)),
                        "two values at {ts}"
                    );
                    if m.kind() == "DDATA" {
                        counts.push(v);
                    }
                }
            }
        }
        if m.kind() == "NBIRTH" {
            assert_eq!(s, 0);
        } else if let Some(prev) = seq {
            assert_eq!(
                s,
                (prev + 1) % 256,
                "a message lost or repeated before {m:?}"
            );
        }
        seq = Some(s);
    }

    // The counts went out in DDATA once each, in order (the first ones may predate the
    // first message drained).
    let first = counts[0];
    let expected: Vec<u16> = (first..=last).collect();
    assert_eq!(counts, expected, "pump counts lost or repeated in DDATA");

    // The host's history of the pump holds exactly what the node sent, each sample once,
    // in timestamp order (a Rebirth's DBIRTH restates the last sample sent, at its time).
    // Each bucket of the answers spans less than a millisecond: a bucket of two would be
    // a sample stored twice.
    const STALE: u64 = 500;
    let metric = format!("{GROUP}/{NODE}/pump:speed");
    // Windows of 2 s at 10,000 points: buckets of 0.2 ms, under the 1 ms of a timestamp.
    const WINDOW_MS: u64 = 2_000;
    let points = || {
        let to = infra::clock::now_ms() + 1;
        let mut out = Vec::new();
        for from in (history_from..to).step_by(WINDOW_MS as usize) {
            let end = (from + WINDOW_MS).min(to);
            let history = api.history(&metric, from, end);
            out.extend(
                history["points"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        (
                            p["count"].as_u64().unwrap_or(0),
                            p["last"]["ts"].as_u64().unwrap_or(0),
                            p["last"]["value"].as_u64().unwrap_or(u64::MAX),
                            p["last"]["quality"].as_u64().unwrap_or(0),
                        )
                    })
                    .filter(|&(_, ts, _, _)| (from..end).contains(&ts)),
            );
        }
        out
    };
    let history = system_tests::wait::until(
        &format!("count {last} in the host's history of {metric}"),
        std::time::Duration::from_secs(20),
        || {
            let p = points();
            p.iter()
                .any(|&(_, _, v, _)| v == u64::from(last))
                .then_some(p)
        },
    );
    assert!(
        history.iter().all(|&(count, _, _, _)| count == 1),
        "a sample stored twice: {history:?}"
    );
    assert!(
        history.windows(2).all(|w| w[0].1 < w[1].1),
        "history out of order"
    );
    // Before the first message drained: the rig's first births. Not sent by the node:
    // the STALE marks the host writes itself when a new NBIRTH makes devices offline.
    let since = *sent.keys().next().expect("samples sent");
    let recorded: Vec<(u64, u64)> = history
        .iter()
        .filter(|&&(_, ts, _, quality)| ts >= since && quality != STALE)
        .map(|&(_, ts, v, _)| (ts, v))
        .collect();
    let sent: Vec<(u64, u64)> = sent.into_iter().collect();
    assert_eq!(
        recorded, sent,
        "the host's history is not what the node sent"
    );

    let ((node_early, host_early), (node_late, host_late)) = (rss[0], rss[1]);
    println!(
        "soak: {applies} applies in {took:?}; {} messages; pump counts {first}..={last} sent once each; the host's history holds all {} samples sent, each once; \
         RSS of the node's process {node_early} KiB after {} applies, {node_late} KiB after {applies}; host-app {host_early} KiB, {host_late} KiB",
        messages.len(),
        recorded.len(),
        applies.min(20),
    );
    assert!(
        node_late <= node_early + RSS_GROWTH_KIB,
        "the node's memory grew from {node_early} KiB to {node_late} KiB"
    );
    rig.node.shutdown().await.unwrap();
}

/// SIGHUP to the binary with Mosquitto: a tag file with a bad row is refused (the log
/// names file, line and column; no death, no birth), a good one adding a tag is applied
/// as a Rebirth with the same bdSeq and no NDEATH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_a_bad_tag_file_and_applies_a_good_one_as_a_rebirth() {
    use std::process::Command;
    use system_tests::process::Proc;
    let broker = system_tests::Mosquitto::start();
    let plant = start_plant().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = boiler(&[broker.port()], plant.local_addr().port());
    config.modbus.tag_files = vec!["tags.csv".into()];
    let path = dir.path().join("edge-node.toml");
    std::fs::write(&path, text(&config)).unwrap();
    let csv = dir.path().join("tags.csv");
    std::fs::write(&csv, "device,name,address,type\nboiler,flow,40003,u16\n").unwrap();
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_edge-node"));
    command
        .arg("--config")
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("NO_COLOR", "1");
    let mut edge = Proc::spawn("edge-node", command);
    let nbirth = host.next_kind("NBIRTH").await;
    host.next_matching("DBIRTH with flow", |m| {
        m.kind() == "DBIRTH" && m.sparkplug().metric("flow").is_some()
    })
    .await;

    // A bad row: refused, placed at its line and column; the node runs on untouched.
    let bad = "device,name,address,type\nboiler,flow,40003,u16\nboiler,level,40004,float\n";
    std::fs::write(&csv, bad).unwrap();
    edge.signal("HUP");
    let line = tokio::task::block_in_place(|| {
        edge.wait_for_line(WAIT, |l| {
            l.contains("reload refused") && l.contains("tags.csv:3:4")
        })
    });
    assert!(line.contains("unknown variant `float`"), "{line}");
    let quiet = host.drain_for(std::time::Duration::from_millis(500)).await;
    assert!(
        quiet
            .iter()
            .all(|m| !m.kind().ends_with("DEATH") && !m.kind().ends_with("BIRTH")),
        "{quiet:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        bad,
        "the file was touched"
    );

    // A good row added: Rebirth on the same connection.
    std::fs::write(
        &csv,
        "device,name,address,type\nboiler,flow,40003,u16\nboiler,level,40004,u16\n",
    )
    .unwrap();
    edge.signal("HUP");
    let seen = until_without_ndeath(&mut host, |m| {
        m.kind() == "DBIRTH" && m.sparkplug().metric("level").is_some()
    })
    .await;
    let rebirth = seen.iter().find(|m| m.kind() == "NBIRTH").expect("NBIRTH");
    assert_eq!(rebirth.bd_seq(), nbirth.bd_seq());
    tokio::task::block_in_place(|| {
        edge.wait_for_line(WAIT, |l| {
            l.contains("configuration applied") && l.contains("Rebirth")
        })
    });
    edge.signal("TERM");
    assert!(edge.wait_exit(WAIT).expect("exits").success());
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_server_connects_as_configured_and_names_a_server_it_cannot_reach() {
    use edge_node::configure::{ProbeError, test_server};
    let broker = rmqtt::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = load(&boiler(&[broker, closed], 502));
    test_server(&config, 0)
        .await
        .expect("the live broker answers");
    let e = test_server(&config, 1)
        .await
        .expect_err("a closed port answered");
    let ProbeError::Failed { server, reason } = &e else {
        panic!("{e}");
    };
    assert_eq!(server, &format!("mqtt://127.0.0.1:{closed}"));
    assert!(!reason.is_empty(), "{e}");
    assert_eq!(
        test_server(&config, 2).await,
        Err(ProbeError::NoSuchServer(2))
    );
}
