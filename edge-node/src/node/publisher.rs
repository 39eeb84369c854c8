//! The one place every Sparkplug message of the node goes out: it numbers them (seq),
//! lists their live metrics oldest first, encodes them into a reused buffer and hands
//! them to the link.
//!
//! Store-and-forward (`super::forwarder`) keeps DDATA the link cannot take and replays
//! it through here, flagged historical. Births and deaths are not queued: they describe
//! the live session and are rebuilt on each connect.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use infra::link::QoS;
use sparkplug::{BdSeq, FieldOrder, MessageType, Metric, Payload, Seq, Topic};

use infra::link::{Link, LinkError};

use super::economy::{self, Levers, MetricTimestamps};

/// Messages published since start, for the node metrics.
#[derive(Debug, Default)]
pub struct PublishCounters {
    pub messages: AtomicU64,
}

/// Numbers and sends the node's messages.
#[derive(Debug)]
pub struct Publisher {
    group_id: String,
    edge_node_id: String,
    seq: Seq,
    buffer: Vec<u8>,
    /// The other candidate encoding of a compressed payload (see `encode`).
    spare: Vec<u8>,
    topic: String,
    counters: Arc<PublishCounters>,
    levers: Levers,
}

/// A publish that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("{topic}: {source}")]
    Encode {
        topic: String,
        source: sparkplug::EncodeError,
    },
}

impl Publisher {
    pub fn new(group_id: &str, edge_node_id: &str, counters: Arc<PublishCounters>) -> Publisher {
        Publisher {
            group_id: group_id.to_owned(),
            edge_node_id: edge_node_id.to_owned(),
            seq: Seq::ZERO,
            buffer: Vec::with_capacity(1024),
            spare: Vec::new(),
            topic: String::with_capacity(128),
            counters,
            levers: Levers::off(),
        }
    }

    /// Shapes payloads with these link-economy levers (metric timestamps, compression).
    pub fn with_levers(mut self, levers: &Levers) -> Publisher {
        self.set_levers(levers);
        self
    }

    /// New levers for the payloads from now on (seq goes on).
    pub fn set_levers(&mut self, levers: &Levers) {
        self.levers = levers.clone();
    }

    /// The topic string of a message of this node.
    pub fn topic(&self, message_type: MessageType, device: Option<&str>) -> String {
        let mut out = String::new();
        self.write_topic(message_type, device, &mut out);
        out
    }

    fn write_topic(&self, message_type: MessageType, device: Option<&str>, out: &mut String) {
        out.clear();
        // Ids were validated with the configuration.
        if let Ok(t) = Topic::new(
            self.group_id.as_str(),
            message_type,
            self.edge_node_id.as_str(),
            device,
        ) {
            t.write_to(out);
        }
    }

    /// The NDEATH payload: a timestamp and the bdSeq metric, no seq.
    pub fn ndeath_payload(bd_seq: BdSeq, now: u64) -> Vec<u8> {
        let payload = Payload::new(now).with_metric(bd_seq.to_metric(now));
        // A payload of one scalar metric always encodes.
        payload.encode_to_vec().unwrap_or_default()
    }

    /// Publishes a birth, data or device death at QoS 0, not retained, with the next
    /// seq; an NBIRTH restarts seq at 0.
    pub async fn publish(
        &mut self,
        link: &Link,
        message_type: MessageType,
        device: Option<&str>,
        mut payload: Payload,
    ) -> Result<(), PublishError> {
        if message_type == MessageType::NBirth {
            self.seq = Seq::ZERO;
        }
        payload.seq = Some(u64::from(self.seq.value()));
        self.seq = self.seq.next();
        order_chronologically(&mut payload.metrics);
        let mut topic = std::mem::take(&mut self.topic);
        self.write_topic(message_type, device, &mut topic);
        let encoded = self.encode(&mut payload);
        let result = match encoded {
            Ok(()) => link
                .publish(&topic, QoS::AtMostOnce, false, &self.buffer)
                .await
                .map_err(PublishError::from),
            Err(source) => Err(PublishError::Encode {
                topic: topic.clone(),
                source,
            }),
        };
        self.topic = topic;
        if result.is_ok() {
            self.counters.messages.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Encodes into the buffer as the levers say: timestamps equal to the payload's left
    /// out, and the compressed envelope from `compression_min_bytes` up, whichever of its
    /// forms deflates smallest: metrics in time order or (when a tag recurs) tag by tag,
    /// each with its fields in schema order, or the timestamp or the alias after the value.
    fn encode(&mut self, payload: &mut Payload) -> Result<(), sparkplug::EncodeError> {
        if self.levers.metric_timestamps == MetricTimestamps::WhenDifferent {
            economy::omit_equal_timestamps(payload);
        }
        self.buffer.clear();
        payload.encode(&mut self.buffer)?;
        if let Some(algorithm) = self.levers.compression
            && self.buffer.len() >= self.levers.compression_min_bytes
        {
            self.buffer.clear();
            let by_tag = economy::tag_ordered(payload);
            let mut other = std::mem::take(&mut self.spare);
            for form in std::iter::once(&*payload).chain(by_tag.as_ref()) {
                for order in [
                    FieldOrder::Schema,
                    FieldOrder::TimestampLast,
                    FieldOrder::AliasLast,
                ] {
                    other.clear();
                    form.encode_compressed_ordered(algorithm, order, &mut other)?;
                    if self.buffer.is_empty() || other.len() < self.buffer.len() {
                        std::mem::swap(&mut self.buffer, &mut other);
                    }
                }
            }
            self.spare = other;
        }
        Ok(())
    }

    /// Encoded bytes of the last [`Publisher::publish`], for link-share accounting.
    pub fn last_payload_len(&self) -> usize {
        self.buffer.len()
    }

    /// Publishes NDEATH at QoS 1 before an intentional disconnect.
    pub async fn publish_ndeath(
        &mut self,
        link: &Link,
        bd_seq: BdSeq,
        now: u64,
    ) -> Result<(), PublishError> {
        let topic = self.topic(MessageType::NDeath, None);
        link.publish(
            &topic,
            QoS::AtLeastOnce,
            false,
            &Self::ndeath_payload(bd_seq, now),
        )
        .await?;
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Lists metrics oldest first when the live (not historical) ones are out of order:
/// Sparkplug wants the values of a birth or data message in chronological order, and a
/// birth holds each tag's last value, read at different times. An ordered list (the
/// usual case) is only checked; the sort is stable, so equal timestamps keep their order.
pub fn order_chronologically(metrics: &mut [Metric]) {
    let live = metrics
        .iter()
        .filter(|m| !m.is_historical)
        .map(|m| m.timestamp);
    if !live.is_sorted() {
        metrics.sort_by_key(|m| m.timestamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(name: &str, timestamp: u64) -> Metric {
        Metric::new(name, 1u16).with_timestamp(timestamp)
    }

    fn names(metrics: &[Metric]) -> Vec<&str> {
        metrics.iter().filter_map(|m| m.name.as_deref()).collect()
    }

    #[test]
    fn live_metrics_go_out_oldest_first_and_ties_keep_their_order() {
        let mut metrics = vec![at("a", 30), at("b", 10), at("c", 20), at("d", 10)];
        order_chronologically(&mut metrics);
        assert_eq!(names(&metrics), ["b", "d", "c", "a"]);
        let timestamps: Vec<_> = metrics.iter().map(|m| m.timestamp).collect();
        assert!(timestamps.is_sorted(), "{timestamps:?}");
    }

    #[test]
    fn ordered_and_historical_only_lists_are_left_as_they_are() {
        let mut ordered = vec![at("a", 10), at("b", 10), at("c", 20)];
        order_chronologically(&mut ordered);
        assert_eq!(names(&ordered), ["a", "b", "c"]);
        // Replayed history has no order rule; the live metric is already in order.
        let mut history = vec![at("old", 50), at("older", 5), at("live", 60)];
        history[0].is_historical = true;
        history[1].is_historical = true;
        order_chronologically(&mut history);
        assert_eq!(names(&history), ["old", "older", "live"]);
    }

    /// A 60-scan window of 80 f32 tags drifting like the reference plant's, each past its
    /// deadband in about one scan of six (at random).
    fn window_payload() -> Payload {
        let mut p = Payload::new(1_780_000_060_000);
        let mut x: u32 = 7;
        let mut values: Vec<f32> = (0..80).map(|t| 20.0 + t as f32 * 0.7).collect();
        for scan in 0..60u64 {
            for (tag, value) in values.iter_mut().enumerate() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if (x >> 16).is_multiple_of(6) {
                    *value += ((x >> 4) % 2_000) as f32 / 1_000.0 - 1.0;
                    p.metrics.push(
                        Metric::aliased(64 + tag as u64, *value)
                            .without_datatype()
                            .with_timestamp(1_780_000_000_000 + scan * 1_003),
                    );
                }
            }
        }
        p
    }

    #[test]
    fn a_compressed_window_goes_out_in_the_smaller_order_with_the_same_samples() {
        let levers = Levers {
            compression: Some(sparkplug::Algorithm::Deflate),
            ..Levers::off()
        };
        let mut publisher = Publisher::new("g", "n", Arc::default()).with_levers(&levers);
        let sent = window_payload();
        let mut payload = sent.clone();
        publisher.encode(&mut payload).unwrap();
        let deflated = |p: &Payload, order| {
            let mut out = Vec::new();
            p.encode_compressed_ordered(sparkplug::Algorithm::Deflate, order, &mut out)
                .unwrap();
            out.len()
        };
        let by_tag = economy::tag_ordered(&sent).unwrap();
        let orders = [
            FieldOrder::Schema,
            FieldOrder::TimestampLast,
            FieldOrder::AliasLast,
        ];
        let sizes: Vec<usize> = [&sent, &by_tag]
            .into_iter()
            .flat_map(|p| orders.map(|order| deflated(p, order)))
            .collect();
        let [time_schema, time_ts_last, _, tag_schema, ..] = sizes[..] else {
            unreachable!("two forms in three orders")
        };
        assert_eq!(publisher.last_payload_len(), *sizes.iter().min().unwrap());
        // Here a tag recurs about ten times: tag by tag is the smaller; in time order a
        // scan's shared timestamp after the value repeats with the next metric's framing.
        assert!(
            tag_schema < time_schema && time_ts_last < time_schema,
            "{sizes:?}"
        );
        let envelope = Payload::decode(&publisher.buffer).unwrap();
        let got = sparkplug::decompress(&envelope, &sparkplug::DecodeLimits::default()).unwrap();
        // Every tag's samples, values and timestamps, in the order they were taken.
        let per_tag = |p: &Payload| {
            let mut tags: std::collections::BTreeMap<u64, Vec<(Option<u64>, Metric)>> =
                Default::default();
            for m in &p.metrics {
                tags.entry(m.alias.unwrap())
                    .or_default()
                    .push((m.timestamp, m.clone()));
            }
            tags
        };
        // As a host reads them: decoded, without datatype.
        let sent = Payload::decode(&sent.encode_to_vec().unwrap()).unwrap();
        assert_eq!(per_tag(&got), per_tag(&sent));
        assert_eq!(got.timestamp, sent.timestamp);
    }

    #[test]
    fn ndeath_carries_only_bdseq_as_int64_and_no_seq() {
        let bytes = Publisher::ndeath_payload(BdSeq::new(9), 1_000);
        let p = Payload::decode(&bytes).unwrap();
        assert_eq!(p.seq, None);
        assert_eq!(p.timestamp, Some(1_000));
        assert_eq!(p.metrics.len(), 1);
        assert_eq!(p.metrics[0].name.as_deref(), Some("bdSeq"));
        assert_eq!(
            p.metrics[0].typed_value(),
            Some(&sparkplug::Value::Int64(9))
        );
        assert_eq!(BdSeq::from_payload(&p).unwrap(), BdSeq::new(9));
    }

    #[test]
    fn topics_follow_the_namespace() {
        let p = Publisher::new("g", "n", Arc::default());
        assert_eq!(p.topic(MessageType::NBirth, None), "spBv1.0/g/NBIRTH/n");
        assert_eq!(
            p.topic(MessageType::DData, Some("pump")),
            "spBv1.0/g/DDATA/n/pump"
        );
    }
}
