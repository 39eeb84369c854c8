//! A host on its embedded broker and a real SQLite file, fed by a scripted edge node:
//! births tracked, data stored, deaths marking STALE, seq gaps and unknown aliases
//! answered by (rate-limited) Rebirth requests, replays stored once.

use std::time::Duration;

use host_app::history::{MetricKey, Quality, Sample, SampleValue};
use host_app::host::Host;
use host_app::tracker::{Liveness, NodeId};
use host_app_testkit::host::*;
use sparkplug::{Algorithm, BdSeq, DataType, Metric, MetricValue, Seq, Value};
use system_tests::mqtt::{Received, ScriptedEdge};
use system_tests::stack::now_ms;
use system_tests::wait;

fn node_id() -> NodeId {
    NodeId::new("Plant", "Edge1")
}

/// Waits until the Pump's Speed shows `value`.
async fn wait_speed(host: &Host, value: i64) {
    let shared = host.shared().clone();
    wait::until_async(&format!("Speed = {value}"), WAIT, || {
        shared
            .tracker()
            .node(&node_id())
            .and_then(|n| n.device("Pump"))
            .and_then(|d| d.metrics.get("Speed"))
            .is_some_and(|m| m.value == Some(SampleValue::I64(value)))
    })
    .await;
}

/// A Speed sample whose timestamp is fixed by its value, past the birth: samples sent in
/// any order within one millisecond stay distinct (history keeps one per metric and
/// timestamp).
fn speed(value: i32) -> Metric {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| now_ms() + 600_000); // after any birth of this run
    let mut m = Metric::aliased(2, value).with_timestamp(base + value as u64);
    m.datatype = None; // DATA usually leaves the datatype to the birth
    m
}

/// Every stored sample of the Pump's Speed, oldest first, after a flush.
async fn stored_speeds(host: &Host) -> Vec<Sample> {
    let key = MetricKey::device("Plant", "Edge1", "Pump", "Speed");
    stored(host, &key, 10_000).await
}

/// The values of [`stored_speeds`].
async fn stored_speed_values(host: &Host) -> Vec<SampleValue> {
    stored_speeds(host)
        .await
        .into_iter()
        .map(|s| s.value)
        .collect()
}

/// [`born`] with `Pump` holding Speed (Int32, alias 2) and Running (Boolean, alias 3).
async fn born_with_speed(dir: &std::path::Path) -> (Host, ScriptedEdge) {
    let pump = vec![
        Metric::new("Speed", 1200i32).with_alias(2),
        Metric::new("Running", true).with_alias(3),
    ];
    born(dir, 7, pump).await
}

/// Sends, for each `n` of `seqs` in that order, a Pump DDATA with seq `n` and Speed = `n`.
async fn send_speeds(edge: &mut ScriptedEdge, seqs: &[u8]) {
    for &n in seqs {
        edge.ddata_with_seq("Pump", Seq::new(n), vec![speed(n.into())])
            .await;
    }
}

/// Every NCMD the edge node receives within `timeouts` reorder timeouts.
async fn commands_within(edge: &mut ScriptedEdge, timeouts: u64) -> Vec<Received> {
    edge.collect_for("/NCMD/", Duration::from_millis(REORDER_MS * timeouts))
        .await
}

fn is_rebirth(r: &Received) -> bool {
    let p = r.sparkplug();
    p.metrics.iter().any(|m| {
        m.name.as_deref() == Some("Node Control/Rebirth")
            && m.value == MetricValue::Value(Value::Boolean(true))
    })
}

#[tokio::test]
async fn births_are_tracked_and_data_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_speed(dir.path()).await;
    {
        let tracker = host.shared().tracker();
        let node = tracker.node(&node_id()).unwrap();
        assert_eq!(node.bd_seq, Some(BdSeq::new(7)));
        let temp = node.metrics.get("Temp").unwrap();
        assert_eq!(temp.datatype, Some(DataType::Double));
        assert_eq!(temp.units.as_deref(), Some("degC"));
        let running = node.device("Pump").unwrap().metrics.get("Running").unwrap();
        assert_eq!(running.value, Some(SampleValue::Bool(true)));
    }
    edge.ddata("Pump", vec![speed(1500)]).await;
    edge.ddata("Pump", vec![speed(1510)]).await;
    wait_speed(&host, 1510).await;

    let values = stored_speed_values(&host).await;
    assert_eq!(values, [1200, 1500, 1510].map(SampleValue::I64));
    let metrics = host.shared().store.metrics().unwrap();
    let temp = metrics.iter().find(|m| m.key.name == "Temp").unwrap();
    assert_eq!(temp.meta.datatype, "Double");
    assert_eq!(temp.meta.units.as_deref(), Some("degC"));
    host.stop().await.unwrap();
}

#[tokio::test]
async fn ndeath_marks_node_and_devices_stale() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_speed(dir.path()).await;
    edge.ndeath(edge.bd_seq).await;
    let shared = host.shared().clone();
    wait::until_async("node offline", WAIT, || {
        shared.tracker().node(&node_id()).unwrap().state == Liveness::Offline
    })
    .await;
    {
        let tracker = shared.tracker();
        let node = tracker.node(&node_id()).unwrap();
        let pump = node.device("Pump").unwrap();
        assert_eq!(pump.state, Liveness::Offline);
        for m in node.metrics.list.iter().chain(&pump.metrics.list) {
            assert_eq!(m.quality, Quality::STALE, "{}", m.name);
        }
    }
    let last = stored_speeds(&host).await.pop().unwrap();
    assert_eq!(last.quality, Quality::STALE);
    assert_eq!(last.value, SampleValue::I64(1200));
    host.stop().await.unwrap();
}

#[tokio::test]
async fn ndeath_with_an_old_bdseq_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_speed(dir.path()).await;
    edge.ndeath(BdSeq::new(6)).await; // the previous session's will
    edge.ddata("Pump", vec![speed(1300)]).await;
    wait_speed(&host, 1300).await;
    {
        let tracker = host.shared().tracker();
        let node = tracker.node(&node_id()).unwrap();
        assert_eq!(node.state, Liveness::Online);
        assert_eq!(node.metrics.get("Temp").unwrap().quality, Quality::GOOD);
        assert_eq!(tracker.stats().stale_deaths_ignored, 1);
    }
    host.stop().await.unwrap();
}

#[tokio::test]
async fn ddeath_marks_the_device_stale() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_speed(dir.path()).await;
    edge.ddeath("Pump").await;
    let shared = host.shared().clone();
    wait::until_async("device offline", WAIT, || {
        shared
            .tracker()
            .node(&node_id())
            .unwrap()
            .device("Pump")
            .unwrap()
            .state
            == Liveness::Offline
    })
    .await;
    {
        let tracker = shared.tracker();
        let node = tracker.node(&node_id()).unwrap();
        assert_eq!(node.state, Liveness::Online);
        let speed = node.device("Pump").unwrap().metrics.get("Speed").unwrap();
        assert_eq!(speed.quality, Quality::STALE);
        assert_eq!(node.metrics.get("Temp").unwrap().quality, Quality::GOOD);
    }
    host.stop().await.unwrap();
}

#[tokio::test]
async fn a_seq_gap_leads_to_exactly_one_rebirth_after_the_reorder_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_speed(dir.path()).await;
    // seq 2 is lost; 3 and 4 arrive.
    send_speeds(&mut edge, &[3, 4]).await;
    let first = edge.next_matching("/NCMD/").await;
    assert!(is_rebirth(&first));
    assert_eq!(first.topic, "spBv1.0/Plant/NCMD/Edge1");
    first.assert_command_form();
    wait_speed(&host, 4).await; // the held data was still applied
    let more = commands_within(&mut edge, 4).await;
    assert!(more.is_empty(), "one Rebirth only, got {}", more.len());
    assert_eq!(host.shared().tracker().stats().seq_gaps, 1);
    host.stop().await.unwrap();
}

#[tokio::test]
async fn a_reordered_but_complete_sequence_leads_to_no_rebirth() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_speed(dir.path()).await;
    send_speeds(&mut edge, &[3, 4, 2]).await;
    wait_speed(&host, 4).await;
    let commands = commands_within(&mut edge, 4).await;
    assert!(commands.is_empty(), "no Rebirth expected");
    assert_eq!(stored_speeds(&host).await.len(), 4); // birth + three
    assert_eq!(host.shared().tracker().stats().rebirths_requested, 0);
    host.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_alias_leads_to_a_rate_limited_rebirth() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_speed(dir.path()).await;
    for value in 0..3 {
        edge.ddata("Pump", vec![Metric::aliased(99, value)]).await;
    }
    edge.ddata("Pump", vec![speed(77)]).await;
    wait_speed(&host, 77).await;
    let first = edge.next_matching("/NCMD/").await;
    assert!(is_rebirth(&first));
    let more = commands_within(&mut edge, 2).await;
    assert!(
        more.is_empty(),
        "rate-limited to one, got {}",
        1 + more.len()
    );
    let stats = host.shared().tracker().stats();
    assert_eq!(
        (stats.rebirths_requested, stats.rebirths_suppressed),
        (1, 2)
    );
    host.stop().await.unwrap();
}

#[tokio::test]
async fn replayed_historical_samples_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_speed(dir.path()).await;
    let t = now_ms() - 60_000;
    let window: Vec<Metric> = (0..5)
        .map(|i| {
            let mut m = Metric::aliased(2, 100 + i).with_timestamp(t + i as u64 * 1_000);
            m.is_historical = true;
            m
        })
        .collect();
    edge.ddata("Pump", window.clone()).await;
    edge.ddata("Pump", window).await; // the edge re-sends the window after a reconnect
    edge.ddata("Pump", vec![speed(5)]).await;
    wait_speed(&host, 5).await;
    let samples = stored_speeds(&host).await;
    let historical: Vec<_> = samples.iter().filter(|s| s.is_historical).collect();
    assert_eq!(historical.len(), 5);
    assert_eq!(historical[0].value, SampleValue::I64(100));
    assert_eq!(samples.len(), 7); // birth + 5 historical + 1 live
    host.stop().await.unwrap();
}

/// Sparkplug payload compression: DDATA compressed with GZIP and with DEFLATE is inflated,
/// tracked and stored like any other, and asks for no Rebirth.
#[tokio::test]
async fn compressed_data_is_inflated_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_speed(dir.path()).await;
    edge.compression = Some(Algorithm::Gzip);
    edge.ddata("Pump", vec![speed(1500)]).await;
    edge.compression = Some(Algorithm::Deflate);
    edge.ddata("Pump", vec![speed(1510)]).await;
    wait_speed(&host, 1510).await;

    let values = stored_speed_values(&host).await;
    assert_eq!(values, [1200, 1500, 1510].map(SampleValue::I64));
    let commands = edge.collect_for("/NCMD/", Duration::from_secs(1)).await;
    assert!(
        !commands.iter().any(is_rebirth),
        "compressed DATA led to a Rebirth request"
    );
    host.stop().await.unwrap();
}
