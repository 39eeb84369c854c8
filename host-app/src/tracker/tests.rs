use super::*;
use sparkplug::{Metric, Payload, PropertySet, Quality as SpQuality};

/// Ids in registration order, keys remembered for assertions.
#[derive(Default)]
struct Registry(Vec<(MetricKey, MetricMeta)>);

impl MetricRegistry for Registry {
    fn register(&mut self, key: &MetricKey, meta: &MetricMeta) -> Option<MetricId> {
        if let Some(i) = self.0.iter().position(|(k, _)| k == key) {
            self.0[i].1 = meta.clone();
            return Some(MetricId(i as i64));
        }
        self.0.push((key.clone(), meta.clone()));
        Some(MetricId(self.0.len() as i64 - 1))
    }
}

struct Harness {
    tracker: Tracker,
    registry: Registry,
    samples: Vec<Sample>,
    actions: Vec<Action>,
}

const T0: u64 = 1_700_000_000_000;

impl Harness {
    fn new() -> Self {
        Self {
            tracker: Tracker::new(TrackerConfig {
                reorder_timeout_ms: 1_000,
                rebirth_min_interval_ms: 5_000,
                ..TrackerConfig::default()
            }),
            registry: Registry::default(),
            samples: Vec::new(),
            actions: Vec::new(),
        }
    }

    fn send(&mut self, mt: MessageType, device: Option<&str>, payload: Payload, now: u64) {
        self.samples.clear();
        self.actions.clear();
        self.tracker.handle(
            "G",
            mt,
            "E",
            device,
            payload,
            now,
            &mut self.registry,
            &mut self.samples,
            &mut self.actions,
        );
    }

    fn tick(&mut self, now: u64) {
        self.samples.clear();
        self.actions.clear();
        self.tracker.tick(
            now,
            &mut self.registry,
            &mut self.samples,
            &mut self.actions,
        );
    }

    fn rebirths(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Rebirth { .. }))
            .count()
    }

    fn node(&self) -> &NodeState {
        self.tracker.node(&NodeId::new("G", "E")).unwrap()
    }

    fn birth(&mut self, bd_seq: u8) {
        let p = Payload::new(T0)
            .with_seq(Seq::new(0))
            .with_metric(BdSeq::new(bd_seq).to_metric(T0))
            .with_metric(
                Metric::new("Temp", 20.0f64)
                    .with_alias(1)
                    .with_properties(PropertySet::new().with_eng_unit("degC")),
            );
        self.send(MessageType::NBirth, None, p, T0);
        let d = Payload::new(T0)
            .with_seq(Seq::new(1))
            .with_metric(Metric::new("Level", 5i32).with_alias(2));
        self.send(MessageType::DBirth, Some("D"), d, T0);
    }
}

fn ddata(seq: u8, alias: u64, value: i32, ts: u64) -> Payload {
    Payload::new(ts)
        .with_seq(Seq::new(seq))
        .with_metric(Metric::aliased(alias, value).with_timestamp(ts))
}

fn ndeath(bd_seq: u8) -> Payload {
    Payload::new(T0 + 50).with_metric(BdSeq::new(bd_seq).to_metric(T0 + 50))
}

#[test]
fn births_define_metrics_units_and_register_them() {
    let mut h = Harness::new();
    h.birth(3);
    let node = h.node();
    assert_eq!(node.state, Liveness::Online);
    assert_eq!(node.bd_seq, Some(BdSeq::new(3)));
    let temp = node.metrics.get("Temp").unwrap();
    assert_eq!(temp.datatype, Some(DataType::Double));
    assert_eq!(temp.units.as_deref(), Some("degC"));
    assert_eq!(temp.value, Some(SampleValue::F64(20.0)));
    let level = node.device("D").unwrap().metrics.get("Level").unwrap();
    assert_eq!(level.datatype, Some(DataType::Int32));
    let keys: Vec<String> = h.registry.0.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(keys, ["G/E:bdSeq", "G/E:Temp", "G/E/D:Level"]);
    assert_eq!(h.registry.0[1].1.units.as_deref(), Some("degC"));
}

#[test]
fn ddata_alias_resolves_through_the_node_table_into_samples() {
    let mut h = Harness::new();
    h.birth(0);
    h.send(
        MessageType::DData,
        Some("D"),
        ddata(2, 2, 42, T0 + 10),
        T0 + 10,
    );
    assert_eq!(h.samples.len(), 1);
    assert_eq!(h.samples[0].value, SampleValue::I64(42));
    assert_eq!(h.samples[0].ts, T0 + 10);
    assert_eq!(h.samples[0].quality, Quality::GOOD);
    assert!(h.actions.is_empty());
    let level = h.node().device("D").unwrap().metrics.get("Level").unwrap();
    assert_eq!(level.value, Some(SampleValue::I64(42)));
}

#[test]
fn quality_property_and_is_historical_reach_the_sample() {
    let mut h = Harness::new();
    h.birth(0);
    let p = Payload::new(T0 + 5).with_seq(Seq::new(2)).with_metric(
        Metric::aliased(2, 7i32)
            .with_timestamp(T0 - 1_000)
            .historical()
            .with_properties(PropertySet::new().with_quality(SpQuality::Bad)),
    );
    h.send(MessageType::DData, Some("D"), p, T0 + 5);
    assert_eq!(h.samples[0].quality, Quality::BAD);
    assert!(h.samples[0].is_historical);
    // A historical sample does not replace the current value.
    let level = h.node().device("D").unwrap().metrics.get("Level").unwrap();
    assert_eq!(level.value, Some(SampleValue::I64(5)));
}

#[test]
fn ndeath_marks_node_and_devices_stale() {
    let mut h = Harness::new();
    h.birth(4);
    h.send(MessageType::NDeath, None, ndeath(4), T0 + 50);
    let node = h.node();
    assert_eq!(node.state, Liveness::Offline);
    assert_eq!(node.device("D").unwrap().state, Liveness::Offline);
    assert_eq!(node.metrics.get("Temp").unwrap().quality, Quality::STALE);
    let level = node.device("D").unwrap().metrics.get("Level").unwrap();
    assert_eq!((level.quality, level.ts), (Quality::STALE, T0 + 50));
    assert!(h.samples.iter().all(|s| s.quality == Quality::STALE));
    assert_eq!(h.samples.len(), 3); // bdSeq, Temp, Level
}

#[test]
fn ndeath_with_an_old_bdseq_is_ignored() {
    let mut h = Harness::new();
    h.birth(5);
    h.send(MessageType::NDeath, None, ndeath(4), T0 + 50);
    assert_eq!(h.node().state, Liveness::Online);
    assert!(h.samples.is_empty() && h.actions.is_empty());
    assert_eq!(h.tracker.stats().stale_deaths_ignored, 1);
}

#[test]
fn ddeath_marks_only_the_device_stale() {
    let mut h = Harness::new();
    h.birth(0);
    let p = Payload::new(T0 + 20).with_seq(Seq::new(2));
    h.send(MessageType::DDeath, Some("D"), p, T0 + 20);
    let node = h.node();
    assert_eq!(node.state, Liveness::Online);
    assert_eq!(node.device("D").unwrap().state, Liveness::Offline);
    assert_eq!(node.metrics.get("Temp").unwrap().quality, Quality::GOOD);
    let level = node.device("D").unwrap().metrics.get("Level").unwrap();
    assert_eq!(level.quality, Quality::STALE);
}

#[test]
fn seq_gap_asks_for_one_rebirth_after_the_reorder_timeout() {
    let mut h = Harness::new();
    h.birth(0);
    h.send(
        MessageType::DData,
        Some("D"),
        ddata(3, 2, 1, T0 + 1),
        T0 + 1,
    ); // 2 missing
    assert_eq!(h.rebirths(), 0);
    assert!(
        h.samples.is_empty(),
        "held until the gap closes or times out"
    );
    assert_eq!(h.tracker.next_deadline(), Some(T0 + 1 + 1_000));
    h.tick(T0 + 500);
    assert_eq!(h.rebirths(), 0);
    h.tick(T0 + 1_001);
    assert_eq!(h.rebirths(), 1);
    assert_eq!(h.samples.len(), 1, "held data is still stored");
    assert_eq!(h.tracker.next_deadline(), None);
    // The sequence continues from the held message.
    h.send(
        MessageType::DData,
        Some("D"),
        ddata(4, 2, 2, T0 + 2),
        T0 + 1_100,
    );
    assert_eq!(h.rebirths(), 0);
    assert_eq!(h.samples.len(), 1);
}

#[test]
fn reordered_but_complete_sequence_asks_for_nothing() {
    let mut h = Harness::new();
    h.birth(0);
    h.send(
        MessageType::DData,
        Some("D"),
        ddata(3, 2, 3, T0 + 3),
        T0 + 3,
    );
    h.send(
        MessageType::DData,
        Some("D"),
        ddata(4, 2, 4, T0 + 4),
        T0 + 4,
    );
    h.send(
        MessageType::DData,
        Some("D"),
        ddata(2, 2, 2, T0 + 2),
        T0 + 5,
    );
    let values: Vec<_> = h.samples.iter().map(|s| s.value.clone()).collect();
    assert_eq!(
        values,
        [2, 3, 4].map(SampleValue::I64),
        "applied in seq order"
    );
    assert_eq!(h.tracker.next_deadline(), None);
    h.tick(T0 + 10_000);
    assert_eq!(h.rebirths(), 0);
    assert_eq!(h.tracker.stats().rebirths_requested, 0);
}

#[test]
fn seq_wraps_from_255_to_0() {
    let mut h = Harness::new();
    let p = Payload::new(T0)
        .with_seq(Seq::new(255))
        .with_metric(BdSeq::new(0).to_metric(T0))
        .with_metric(Metric::new("Temp", 1.0f64).with_alias(1));
    h.send(MessageType::NBirth, None, p, T0);
    let d = Payload::new(T0 + 1)
        .with_seq(Seq::new(0))
        .with_metric(Metric::aliased(1, 2.0f64));
    h.send(MessageType::NData, None, d, T0 + 1);
    assert_eq!(h.samples.len(), 1);
    assert_eq!(h.tracker.next_deadline(), None);
}

#[test]
fn unknown_alias_asks_for_a_rebirth_rate_limited() {
    let mut h = Harness::new();
    h.birth(0);
    h.send(MessageType::DData, Some("D"), ddata(2, 99, 1, T0), T0 + 100);
    assert_eq!(h.rebirths(), 1);
    h.send(MessageType::DData, Some("D"), ddata(3, 99, 1, T0), T0 + 200);
    assert_eq!(h.rebirths(), 0, "within the minimum interval");
    h.send(
        MessageType::DData,
        Some("D"),
        ddata(4, 99, 1, T0),
        T0 + 5_100,
    );
    assert_eq!(h.rebirths(), 1);
    let stats = h.tracker.stats();
    assert_eq!(
        (stats.rebirths_requested, stats.rebirths_suppressed),
        (2, 1)
    );
}

#[test]
fn node_alias_is_not_a_device_alias() {
    let mut h = Harness::new();
    h.birth(0);
    // Alias 1 is the node's Temp, not a metric of device D.
    h.send(MessageType::DData, Some("D"), ddata(2, 1, 1, T0), T0 + 1);
    assert_eq!(h.rebirths(), 1);
    assert!(h.samples.is_empty());
}

#[test]
fn data_from_unknown_node_or_device_asks_for_a_rebirth() {
    let mut h = Harness::new();
    h.send(MessageType::NData, None, ddata(0, 1, 1, T0), T0);
    assert_eq!(h.rebirths(), 1);
    assert!(matches!(
        h.actions[0],
        Action::Rebirth {
            reason: RebirthReason::UnknownNode,
            ..
        }
    ));
    let mut h = Harness::new();
    h.birth(0);
    h.send(MessageType::DData, Some("X"), ddata(2, 2, 1, T0), T0);
    assert!(matches!(
        h.actions[0],
        Action::Rebirth {
            reason: RebirthReason::UnknownDevice,
            ..
        }
    ));
}

#[test]
fn data_after_death_asks_for_a_rebirth() {
    let mut h = Harness::new();
    h.birth(1);
    h.send(MessageType::NDeath, None, ndeath(1), T0 + 50);
    h.send(MessageType::DData, Some("D"), ddata(2, 2, 1, T0), T0 + 60);
    assert_eq!(h.rebirths(), 1);
    assert!(h.samples.is_empty());
}

#[test]
fn losing_the_broker_marks_everything_stale() {
    let mut h = Harness::new();
    h.birth(0);
    h.samples.clear();
    h.actions.clear();
    h.tracker
        .all_offline(T0 + 99, &mut h.samples, &mut h.actions);
    assert_eq!(h.node().state, Liveness::Offline);
    assert_eq!(h.samples.len(), 3);
    assert!(
        h.samples
            .iter()
            .all(|s| s.quality == Quality::STALE && s.ts == T0 + 99)
    );
}

#[test]
fn rebirth_keeps_metric_ids_and_replaces_aliases() {
    let mut h = Harness::new();
    h.birth(0);
    let id = h.node().metrics.get("Temp").unwrap().id;
    let p = Payload::new(T0 + 100)
        .with_seq(Seq::new(0))
        .with_metric(BdSeq::new(1).to_metric(T0 + 100))
        .with_metric(
            Metric::new("Temp", 21.0f64)
                .with_alias(7)
                .with_properties(PropertySet::new().with_eng_unit("degC")),
        );
    h.send(MessageType::NBirth, None, p, T0 + 100);
    assert_eq!(h.node().metrics.get("Temp").unwrap().id, id);
    assert_eq!(h.node().device("D").unwrap().state, Liveness::Offline);
    let d = Payload::new(T0 + 101)
        .with_seq(Seq::new(1))
        .with_metric(Metric::aliased(7, 22.0f64));
    h.send(MessageType::NData, None, d, T0 + 101);
    assert_eq!(h.samples.len(), 1);
    assert_eq!(h.samples[0].metric, id.unwrap());
    h.send(MessageType::NData, None, ddata(2, 1, 1, T0), T0 + 102);
    assert_eq!(h.rebirths(), 1, "the old alias is gone");
}

#[test]
fn birth_value_is_current_even_when_older_than_the_payload() {
    let mut h = Harness::new();
    let p = Payload::new(T0)
        .with_seq(Seq::new(0))
        .with_metric(BdSeq::new(0).to_metric(T0))
        .with_metric(Metric::new("Count", 7u32).with_timestamp(T0 - 5));
    h.send(MessageType::NBirth, None, p, T0);
    let count = h.node().metrics.get("Count").unwrap();
    assert_eq!(count.value, Some(SampleValue::I64(7)));
    assert_eq!(count.ts, T0 - 5);
}

#[test]
fn ndeath_after_a_birth_without_bdseq_is_taken() {
    let mut h = Harness::new();
    let p = Payload::new(T0)
        .with_seq(Seq::new(0))
        .with_metric(Metric::new("Temp", 1.0f64));
    h.send(MessageType::NBirth, None, p, T0);
    h.send(MessageType::NDeath, None, ndeath(9), T0 + 50);
    assert_eq!(h.node().state, Liveness::Offline);
}

fn with_config(config: TrackerConfig) -> Harness {
    Harness {
        tracker: Tracker::new(config),
        ..Harness::new()
    }
}

fn over_limits(h: &Harness) -> Vec<Limit> {
    h.actions
        .iter()
        .filter_map(|a| match a {
            Action::OverLimit { limit, .. } => Some(*limit),
            _ => None,
        })
        .collect()
}

/// An NDATA of `metrics` unknown metrics, each a few bytes on the wire.
fn bulky_ndata(seq: u8, metrics: u64) -> Payload {
    let mut p = Payload::new(T0).with_seq(Seq::new(seq));
    p.metrics = (0..metrics)
        .map(|i| Metric::aliased(1_000 + i, 1i32))
        .collect();
    p
}

#[test]
fn held_messages_are_bounded_by_bytes_and_the_gap_given_up() {
    let mut h = with_config(TrackerConfig {
        reorder_buffer_bytes: 1024 * 1024,
        ..TrackerConfig::default()
    });
    h.birth(0);
    // seq 3 onwards with 2 missing: each held message is ~ 5,000 metrics.
    let mut gave_up = 0;
    for seq in 3..60u8 {
        h.send(MessageType::NData, None, bulky_ndata(seq, 5_000), T0 + 1);
        let node = h.node();
        assert!(
            node.held_bytes <= 1024 * 1024 + Held::cost(&bulky_ndata(seq, 5_000)),
            "{} bytes held",
            node.held_bytes
        );
        if over_limits(&h).contains(&Limit::ReorderBuffer) {
            gave_up += 1;
            assert!(h.node().held.is_empty(), "the gap was given up");
        }
    }
    assert!(gave_up > 0, "the byte bound was reached");
    assert_eq!(h.tracker.stats().over_limit, gave_up);
}

#[test]
fn nodes_beyond_the_bound_evict_the_longest_offline_or_are_refused() {
    let mut h = with_config(TrackerConfig {
        max_nodes: 2,
        ..TrackerConfig::default()
    });
    let birth = || {
        Payload::new(T0)
            .with_seq(Seq::new(0))
            .with_metric(Metric::new("M", 1i32))
    };
    let nbirth = |h: &mut Harness, node: &str, now: u64| {
        h.samples.clear();
        h.actions.clear();
        h.tracker.handle(
            "G",
            MessageType::NBirth,
            node,
            None,
            birth(),
            now,
            &mut h.registry,
            &mut h.samples,
            &mut h.actions,
        );
    };
    nbirth(&mut h, "A", T0);
    nbirth(&mut h, "B", T0);
    nbirth(&mut h, "C", T0);
    assert_eq!(over_limits(&h), [Limit::Nodes]);
    assert!(h.tracker.node(&NodeId::new("G", "C")).is_none());
    // A goes offline: C takes its place.
    h.tracker.handle(
        "G",
        MessageType::NDeath,
        "A",
        None,
        Payload::new(T0),
        T0 + 1,
        &mut h.registry,
        &mut h.samples,
        &mut h.actions,
    );
    nbirth(&mut h, "C", T0 + 2);
    assert!(over_limits(&h).is_empty());
    assert!(h.tracker.node(&NodeId::new("G", "A")).is_none());
    assert_eq!(h.tracker.nodes().len(), 2);
}

#[test]
fn devices_and_metrics_beyond_their_bounds_are_refused() {
    let mut h = with_config(TrackerConfig {
        max_devices_per_node: 1,
        max_metrics: 4,
        ..TrackerConfig::default()
    });
    h.birth(0); // bdSeq, Temp, and device D with Level: 3 metrics
    let dbirth = |seq: u8, n: usize| {
        let mut p = Payload::new(T0).with_seq(Seq::new(seq));
        p.metrics = (0..n).map(|i| Metric::new(format!("M{i}"), 1i32)).collect();
        p
    };
    h.send(MessageType::DBirth, Some("D2"), dbirth(2, 1), T0);
    assert_eq!(over_limits(&h), [Limit::Devices]);
    assert!(h.node().device("D2").is_none());
    // D born again with 2 metrics: 4 in all, allowed; with 3: refused.
    h.send(MessageType::DBirth, Some("D"), dbirth(3, 2), T0);
    assert!(over_limits(&h).is_empty());
    h.send(MessageType::DBirth, Some("D"), dbirth(4, 3), T0);
    assert_eq!(over_limits(&h), [Limit::Metrics]);
    assert_eq!(h.node().device("D").unwrap().metrics.list.len(), 2);
}

#[test]
fn rebirth_requests_for_unknown_nodes_do_not_grow_without_end() {
    let mut h = with_config(TrackerConfig {
        max_nodes: 10,
        ..TrackerConfig::default()
    });
    for i in 0..1_000 {
        h.tracker.handle(
            "G",
            MessageType::NData,
            &format!("forged-{i}"),
            None,
            Payload::new(T0).with_seq(Seq::new(0)),
            T0,
            &mut h.registry,
            &mut h.samples,
            &mut h.actions,
        );
    }
    assert!(h.tracker.last_rebirth.len() <= 20);
    assert_eq!(h.tracker.stats().rebirths_requested, 20);
    // Past the interval, old entries make room again.
    h.actions.clear();
    h.tracker.handle(
        "G",
        MessageType::NData,
        "late",
        None,
        Payload::new(T0).with_seq(Seq::new(0)),
        T0 + 60_000,
        &mut h.registry,
        &mut h.samples,
        &mut h.actions,
    );
    assert_eq!(h.rebirths(), 1);
}

#[test]
fn an_observer_takes_births_and_deaths_without_seq_checks_or_rebirths() {
    let mut h = Harness::new();
    h.tracker = Tracker::observer(h.tracker.config());
    h.birth(4);
    // The owner's data moved seq on; the observer saw none of it.
    let d = Payload::new(T0 + 10)
        .with_seq(Seq::new(40))
        .with_metric(Metric::new("Flow", 1.5f64).with_alias(3));
    h.send(MessageType::DBirth, Some("D2"), d, T0 + 10);
    assert_eq!(h.rebirths(), 0);
    assert_eq!(h.node().device("D2").unwrap().state, Liveness::Online);
    assert_eq!(h.tracker.stats().seq_gaps, 0);
    h.send(
        MessageType::DDeath,
        Some("D"),
        Payload::new(T0 + 20).with_seq(Seq::new(90)),
        T0 + 20,
    );
    assert_eq!(h.node().device("D").unwrap().state, Liveness::Offline);
    h.send(MessageType::NDeath, None, ndeath(4), T0 + 30);
    assert_eq!(h.node().state, Liveness::Offline);
    // A device birth of a node it has no birth of asks for nothing either.
    h.tracker.handle(
        "G",
        MessageType::DBirth,
        "Other",
        Some("D"),
        Payload::new(T0).with_seq(Seq::new(7)),
        T0 + 40,
        &mut h.registry,
        &mut h.samples,
        &mut h.actions,
    );
    assert_eq!(h.rebirths(), 0);
    assert_eq!(h.tracker.stats().rebirths_requested, 0);
}
