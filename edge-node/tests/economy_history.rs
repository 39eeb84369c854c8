//! The link-economy levers change the bytes, never the history: the reference plant's
//! samples, published by the node's own payload path (catalog, report window, publisher)
//! once with every lever off, once with every lever on (10 s window) and once with one
//! window over the whole run (where DDATA may go out tag by tag), through Mosquitto to the
//! real host-app, leave the same history there: every sample, value and timestamp.
//!
//! Needs the binaries: `cargo build -p host-app --bins` (tests/run.sh builds them).

use std::sync::Arc;
use std::time::Duration;

use edge_node::modbus::{DeviceId, Event, Quality, Report, Sample, Site, TagId, Value};
use edge_node::node::catalog::Catalog;
use edge_node::node::economy::{Levers, MetricTimestamps};
use edge_node::node::publisher::Publisher;
use edge_node::node::window::ReportWindow;
use edge_node::simulator::reference;
use edge_node::store::TagAliases;
use infra::clock::now_ms;
use infra::link::{Endpoint, Link, LinkEvent, LinkOptions};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde_json::Value as Json;
use sparkplug::{Algorithm, BdSeq, DecodeLimits, FieldOrder, MessageType, Payload};
use system_tests::Mosquitto;
use system_tests::mqtt::Recorder;
use system_tests::process::Proc;
use system_tests::stack::{Broker, HostApp};

const GROUP: &str = "e2e";
/// Scans of the run (one a second of plant time).
const SCANS: usize = 40;

fn site() -> Site {
    edge_node_testkit::modbus::site(&reference::edge_modbus_toml("127.0.0.1", 502))
}

fn all_on() -> Levers {
    Levers {
        metric_timestamps: MetricTimestamps::WhenDifferent,
        narrow_types: true,
        report_window: Duration::from_secs(10),
        compression: Some(Algorithm::Deflate),
        compression_min_bytes: 256,
        daily_budget_bytes: None,
    }
}

/// Every lever on with a window of the whole run: tags repeat in a window, so its DDATA
/// may go out tag by tag.
fn all_on_one_window() -> Levers {
    Levers {
        report_window: Duration::from_secs(SCANS as u64),
        ..all_on()
    }
}

/// The plant's first full scan and its next changes by exception, as the poller reports
/// them: analog random walks past their deadband, slow counters, rare bit flips.
fn plant_reports(site: &Site, start_ms: u64) -> (Vec<Report>, Vec<Vec<Report>>) {
    let mut rng = SmallRng::seed_from_u64(15);
    let tags_of = |d: usize| (0..site.tags.len()).filter(move |&i| site.tags[i].device == d);
    let mut now = vec![0f64; site.tags.len()];
    let mut reported = vec![0f64; site.tags.len()];
    let at = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(ms);
    let value = |i: usize, v: f64| match site.tags[i].value_type() {
        edge_node::modbus::DataType::F32 => Value::F32(v as f32),
        edge_node::modbus::DataType::U32 => Value::U32(v as u32),
        _ => Value::Bool(v >= 0.5),
    };
    for (i, v) in now.iter_mut().enumerate() {
        *v = match site.tags[i].value_type() {
            edge_node::modbus::DataType::F32 => 20.0 + (i % 60) as f64,
            edge_node::modbus::DataType::U32 => (i % 7) as f64,
            _ => (i % 2) as f64,
        };
    }
    reported.clone_from(&now);
    let births = (0..reference::DEVICES)
        .map(|d| Report {
            device: DeviceId(d as u32),
            scan_class: None,
            samples: tags_of(d)
                .map(|i| Sample {
                    tag: TagId(i as u32),
                    value: value(i, now[i]),
                    quality: Quality::Good,
                    timestamp: at(start_ms + d as u64),
                })
                .collect(),
        })
        .collect();
    let mut scans = Vec::new();
    for s in 1..=SCANS {
        let mut reports = Vec::new();
        for d in 0..reference::DEVICES {
            let stamp = start_ms + s as u64 * 1000 + d as u64 * 3;
            let mut samples = Vec::new();
            for i in tags_of(d) {
                let changed = match site.tags[i].value_type() {
                    edge_node::modbus::DataType::F32 => {
                        for _ in 0..10 {
                            now[i] += rng.random_range(-reference::STEP..=reference::STEP);
                        }
                        (now[i] as f32 - reported[i] as f32).abs() > reference::DEADBAND as f32
                    }
                    edge_node::modbus::DataType::U32 => {
                        now[i] += 0.1;
                        now[i].floor() != reported[i].floor()
                    }
                    _ => {
                        if rng.random_range(0..400) == 0 {
                            now[i] = 1.0 - now[i];
                        }
                        now[i] != reported[i]
                    }
                };
                if changed {
                    reported[i] = now[i];
                    samples.push(Sample {
                        tag: TagId(i as u32),
                        value: value(i, now[i]),
                        quality: Quality::Good,
                        timestamp: at(stamp),
                    });
                }
            }
            if !samples.is_empty() {
                reports.push(Report {
                    device: DeviceId(d as u32),
                    scan_class: Some(0),
                    samples,
                });
            }
        }
        scans.push(reports);
    }
    (births, scans)
}

async fn connect(node: &str, port: u16) -> Link {
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port,
        tls: None,
        credentials: None,
    };
    let mut link = Link::open(
        LinkOptions::new(endpoint, format!("{GROUP}:{node}")),
        Arc::default(),
    )
    .expect("link");
    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = link.recv().await {
            if event == LinkEvent::Connected {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(connected, Ok(true), "{node} connects to Mosquitto");
    link
}

/// Publishes the run as edge node `node` with `levers`, the way the node does: births,
/// then one DDATA per device per scan, or per device per window.
async fn publish_run(
    node: &str,
    port: u16,
    levers: &Levers,
    births: &[Report],
    scans: &[Vec<Report>],
) -> usize {
    let link = connect(node, port).await;
    let site = Arc::new(site());
    let mut catalog = Catalog::new(Arc::clone(&site), TagAliases::positional(&site));
    if levers.narrow_types {
        catalog = catalog.narrowed();
    }
    let mut publisher = Publisher::new(GROUP, node, Arc::default()).with_levers(levers);
    let mut bytes = 0;
    let now = now_ms();
    let nbirth = Payload::new(now).with_metric(BdSeq::new(0).to_metric(now));
    publisher
        .publish(&link, MessageType::NBirth, None, nbirth)
        .await
        .expect("NBIRTH");
    for report in births {
        catalog.apply(&Event::Online(report.clone()));
        let d = report.device.index();
        let name = catalog.device_name(d).to_owned();
        let dbirth = catalog.dbirth(d, now);
        publisher
            .publish(&link, MessageType::DBirth, Some(&name), dbirth)
            .await
            .expect("DBIRTH");
        bytes += publisher.last_payload_len();
    }
    let mut window =
        (!levers.report_window.is_zero()).then(|| ReportWindow::new(reference::DEVICES));
    // One scan a second of plant time.
    let window_scans = levers.report_window.as_secs().max(1) as usize;
    let mut out: Vec<Report> = Vec::new();
    for (s, reports) in scans.iter().enumerate() {
        for report in reports {
            catalog.apply(&Event::Data(report.clone()));
            match window.as_mut() {
                Some(w) => w.hold(report),
                None => out.push(report.clone()),
            }
        }
        if let Some(w) = window.as_mut()
            && ((s + 1) % window_scans == 0 || s + 1 == scans.len())
        {
            out.extend(w.take_all());
        }
        for report in out.drain(..) {
            let name = catalog.device_name(report.device.index()).to_owned();
            let payload = catalog.ddata_fitted(&report, now_ms());
            publisher
                .publish(&link, MessageType::DData, Some(&name), payload)
                .await
                .expect("DDATA");
            bytes += publisher.last_payload_len();
        }
    }
    // QoS 0 publishes are on their way once the client took them; let them drain.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(link);
    bytes
}

/// Each sample of a history answer (its buckets are narrower than the 1 s between a
/// tag's samples, so each holds one): count, timestamp, value, quality, historical flag.
fn points(history: &Json) -> Vec<(u64, u64, String, String, String)> {
    history["points"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let last = &p["last"];
            (
                p["count"].as_u64().unwrap_or(0),
                last["ts"].as_u64().unwrap_or(0),
                last["value"].to_string(),
                last["quality"].to_string(),
                last["is_historical"].to_string(),
            )
        })
        .collect()
}

/// A value as the wire carries it: Python's protobuf widens a Float to the nearest
/// double of its own, so numbers compare as the f32 they were.
fn as_sent(v: &Json) -> String {
    match v {
        Json::Number(n) if n.is_f64() => format!("{:?}", n.as_f64().unwrap_or(f64::NAN) as f32),
        other => other.to_string(),
    }
}

/// pysparkplug read every live sample of the levers-on run: name, timestamp, value.
fn pysparkplug_decodes_every_sample(py: &mut Proc, site: &Site, scans: &[Vec<Report>]) {
    py.wait_exit(Duration::from_secs(70));
    let mut decoded: Vec<(String, String, u64, String)> = Vec::new();
    for line in py.output().iter().filter(|l| l.starts_with('{')) {
        let message: Json = serde_json::from_str(line).expect("a JSON line");
        let device = message["device"].as_str().unwrap_or_default().to_owned();
        for s in message["samples"].as_array().cloned().unwrap_or_default() {
            decoded.push((
                device.clone(),
                s[0].as_str().unwrap_or_default().to_owned(),
                s[1].as_u64().unwrap_or(0),
                as_sent(&s[2]),
            ));
        }
    }
    let mut expected: Vec<(String, String, u64, String)> = scans
        .iter()
        .flatten()
        .flat_map(|r| r.samples.iter())
        .map(|s| {
            let tag = &site.tags[s.tag.index()];
            let value = match &s.value {
                Value::F32(v) => Json::from(f64::from(*v)),
                Value::U32(v) => Json::from(*v),
                Value::Bool(v) => Json::from(*v),
                other => panic!("no such tag in the reference plant: {other:?}"),
            };
            (
                site.devices[tag.device].name.clone(),
                tag.name.clone(),
                infra::clock::millis(s.timestamp),
                as_sent(&value),
            )
        })
        .collect();
    decoded.sort();
    expected.sort();
    assert_eq!(decoded.len(), expected.len(), "samples pysparkplug decoded");
    assert_eq!(decoded, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_the_same_with_every_lever_on_and_off() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let host = HostApp::start(
        dir.path(),
        Broker::External {
            port: broker.port(),
        },
    );
    let api = host.api();
    let start = now_ms() - 120_000;
    let site = site();
    let (births, scans) = plant_reports(&site, start);
    let samples: usize = scans.iter().flatten().map(|r| r.samples.len()).sum();
    assert!(samples > 1_000, "the plant changes: {samples} samples");

    // pysparkplug decodes both lever-on nodes (the one-window node's DDATA may go tag by tag).
    let mut decoders = Vec::new();
    for node in ["on", "whole"] {
        let mut python = system_tests::python_command("economy_decode.py");
        python.args([&broker.port().to_string(), GROUP, node, "60"]);
        let mut pysparkplug = Proc::spawn("economy_decode.py", python);
        pysparkplug.wait_for_line(Duration::from_secs(20), |l| l == "ready");
        decoders.push(pysparkplug);
    }

    let mut whole_ddata = Recorder::start(
        broker.port(),
        "whole-ddata",
        &format!("spBv1.0/{GROUP}/DDATA/whole/#"),
    )
    .await;
    let mut on_ddata = Recorder::start(
        broker.port(),
        "on-ddata",
        &format!("spBv1.0/{GROUP}/DDATA/on/#"),
    )
    .await;
    let off = publish_run("off", broker.port(), &Levers::off(), &births, &scans).await;
    let on = publish_run("on", broker.port(), &all_on(), &births, &scans).await;
    let whole = publish_run(
        "whole",
        broker.port(),
        &all_on_one_window(),
        &births,
        &scans,
    )
    .await;
    for pysparkplug in &mut decoders {
        pysparkplug_decodes_every_sample(pysparkplug, &site, &scans);
    }
    assert!(
        on * 2 < off,
        "the levers save bytes: {on} with, {off} without"
    );
    assert!(whole < on, "a longer window saves more: {whole} vs {on}");
    // The one-window node's DDATA went out tag by tag (smaller there): its metrics are not
    // in time order, and the history below is still the same.
    let whole_ddata = whole_ddata.drain_for(Duration::from_secs(1)).await;
    let tag_by_tag = whole_ddata
        .iter()
        .filter(|m| {
            let stamps: Vec<_> = m.sparkplug().metrics.iter().map(|m| m.timestamp).collect();
            !stamps.is_sorted()
        })
        .count();
    assert!(
        tag_by_tag > 0,
        "some DDATA of the one-window node went tag by tag"
    );
    // Each compressed DDATA is the deflated inner payload in one of the field orders, and
    // not all in schema order: the other orders deflated smaller and the readers above
    // (pysparkplug, the host) took them.
    let on_ddata = on_ddata.drain_for(Duration::from_secs(1)).await;
    let mut reordered = 0;
    for m in on_ddata.iter().chain(&whole_ddata) {
        let body = Payload::decode_envelope(&m.payload, &DecodeLimits::default())
            .expect("envelope")
            .body
            .expect("a compressed DDATA");
        let order = [
            FieldOrder::Schema,
            FieldOrder::TimestampLast,
            FieldOrder::AliasLast,
        ]
        .into_iter()
        .find(|&order| {
            sparkplug::compress_ordered(&m.sparkplug(), Algorithm::Deflate, order)
                .expect("compress")
                .body
                .as_ref()
                == Some(&body)
        })
        .unwrap_or_else(|| panic!("{}: the body is no field order's", m.topic));
        reordered += usize::from(order != FieldOrder::Schema);
    }
    assert!(
        reordered > 0,
        "some of {} DDATA in another field order",
        on_ddata.len() + whole_ddata.len()
    );

    // Every tag's history, the same on both nodes; wait (bounded) until both hold the
    // last scan's samples.
    let last_tag = &scans[SCANS - 1][0].samples[0];
    let name = |node: &str, tag: TagId| {
        let t = &site.tags[tag.index()];
        format!("{GROUP}/{node}/{}:{}", site.devices[t.device].name, t.name)
    };
    for node in ["off", "on", "whole"] {
        let metric = name(node, last_tag.tag);
        system_tests::wait::until(
            &format!("{metric} in history"),
            Duration::from_secs(20),
            || {
                let h = api.history(&metric, start, now_ms() + 1);
                let stamp = infra::clock::millis(last_tag.timestamp);
                points(&h).iter().any(|p| p.1 == stamp).then_some(())
            },
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut compared = 0;
    for i in 0..site.tags.len() {
        let tag = TagId(i as u32);
        let off = points(&api.history(&name("off", tag), start - 1, now_ms() + 1));
        let on = points(&api.history(&name("on", tag), start - 1, now_ms() + 1));
        let whole = points(&api.history(&name("whole", tag), start - 1, now_ms() + 1));
        assert!(!off.is_empty(), "{} has history", name("off", tag));
        assert_eq!(off, on, "history of tag {}", name("", tag));
        assert_eq!(off, whole, "history of tag {} (one window)", name("", tag));
        assert!(
            off.iter().all(|p| p.0 == 1),
            "one sample per point: {off:?}"
        );
        compared += off.len();
    }
    assert!(
        compared > samples,
        "{compared} points compared for {samples} samples"
    );
}
