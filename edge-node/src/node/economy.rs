//! The link-economy levers of a node (`[economy]`): what each one changes in the bytes the
//! node puts on a link paid by the byte, and the payload shaping they share.
//!
//! - `metric_timestamps = "when_different"`: the payload timestamp is the newest metric's
//!   and metrics with that same timestamp carry none (the spec makes it optional; a host
//!   takes the payload's);
//! - `narrow_types`: scaled tags are born Float (f32) instead of Double;
//! - `report_window_ms`: samples are held per device and go out together (`super::window`);
//! - `compression`, `compression_min_bytes`: payloads from that size up go out as the
//!   Tahu compressed envelope (births too);
//! - `daily_budget_bytes`: historical replay pauses for the rest of the UTC day once the
//!   link carried that much (`super::bill`).

use std::time::Duration;

use serde::Deserialize;
use sparkplug::{Algorithm, Payload};

use infra::Problems;

/// How metric timestamps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricTimestamps {
    /// Every metric carries its own (what Sparkplug examples and Tahu do).
    #[default]
    Always,
    /// Left out where equal to the payload timestamp.
    WhenDifferent,
}

/// A payload compression of the `[economy]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompressionSetting {
    #[default]
    None,
    Deflate,
    Gzip,
}

/// The checked levers; the default is every lever off (the node as it always was).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Levers {
    pub metric_timestamps: MetricTimestamps,
    pub narrow_types: bool,
    /// `Duration::ZERO`: every scan's changes go out at once.
    pub report_window: Duration,
    pub compression: Option<Algorithm>,
    /// Encoded payloads below this size go out uncompressed.
    pub compression_min_bytes: usize,
    pub daily_budget_bytes: Option<u64>,
}

impl Levers {
    /// Every lever off: the node as it was before the levers.
    pub fn off() -> Levers {
        Levers {
            compression_min_bytes: DEFAULT_COMPRESSION_MIN_BYTES,
            ..Levers::default()
        }
    }
}

/// The `[economy]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EconomySection {
    #[serde(default)]
    metric_timestamps: MetricTimestamps,
    #[serde(default)]
    narrow_types: bool,
    #[serde(default)]
    report_window_ms: u64,
    #[serde(default)]
    compression: CompressionSetting,
    #[serde(default = "default_compression_min_bytes")]
    compression_min_bytes: usize,
    daily_budget_bytes: Option<u64>,
}

fn default_compression_min_bytes() -> usize {
    DEFAULT_COMPRESSION_MIN_BYTES
}

/// Below about this size the envelope (uuid, `algorithm` metric, zlib header and
/// checksum: about 50 bytes) costs more than DEFLATE saves.
pub const DEFAULT_COMPRESSION_MIN_BYTES: usize = 256;

/// The longest report window: a held value must not wait longer than a host's patience.
pub const MAX_REPORT_WINDOW_MS: u64 = 3_600_000;

/// A daily budget below this could not carry a day of births and keep-alives.
pub const MIN_DAILY_BUDGET_BYTES: u64 = 65_536;

impl EconomySection {
    /// The levers, with each problem named by its key.
    pub fn check(self, problems: &mut Problems) -> Levers {
        if self.report_window_ms > MAX_REPORT_WINDOW_MS {
            problems.push(
                "economy.report_window_ms",
                format!("must be 0..={MAX_REPORT_WINDOW_MS} ms (0: no window)"),
            );
        }
        if self.compression == CompressionSetting::None
            && self.compression_min_bytes != DEFAULT_COMPRESSION_MIN_BYTES
        {
            problems.push(
                "economy.compression_min_bytes",
                "has no effect without economy.compression",
            );
        }
        if let Some(b) = self.daily_budget_bytes
            && b < MIN_DAILY_BUDGET_BYTES
        {
            problems.push(
                "economy.daily_budget_bytes",
                format!("must be at least {MIN_DAILY_BUDGET_BYTES} bytes"),
            );
        }
        Levers {
            metric_timestamps: self.metric_timestamps,
            narrow_types: self.narrow_types,
            report_window: Duration::from_millis(self.report_window_ms),
            compression: match self.compression {
                CompressionSetting::None => None,
                CompressionSetting::Deflate => Some(Algorithm::Deflate),
                CompressionSetting::Gzip => Some(Algorithm::Gzip),
            },
            compression_min_bytes: self.compression_min_bytes,
            daily_budget_bytes: self.daily_budget_bytes,
        }
    }
}

/// Leaves out metric timestamps equal to the payload's, after making the payload's the
/// newest metric timestamp (never later than the payload's own: a payload is not dated
/// after it was made). Metrics are already in the order they go out.
pub fn omit_equal_timestamps(payload: &mut Payload) {
    let Some(newest) = payload.metrics.iter().filter_map(|m| m.timestamp).max() else {
        return;
    };
    let stamp = match payload.timestamp {
        Some(t) if newest > t => return,
        _ => newest,
    };
    payload.timestamp = Some(stamp);
    for m in &mut payload.metrics {
        if m.timestamp == Some(stamp) {
            m.timestamp = None;
        }
    }
}

/// The payload with its metrics grouped tag by tag (by alias, each tag's samples in the
/// order they were taken), when some tag occurs more than once and every metric is live
/// and aliased; `None` otherwise. A report window's DDATA holds a tag's samples scans
/// apart: grouped, DEFLATE finds their alias and framing repeated next to each other.
/// The host's history is the same either way (every sample keeps its own timestamp, and
/// a tag's newest value is still its last).
pub fn tag_ordered(payload: &Payload) -> Option<Payload> {
    let metrics = &payload.metrics;
    if metrics.len() < 2 || metrics.iter().any(|m| m.is_historical || m.alias.is_none()) {
        return None;
    }
    let mut aliases: Vec<u64> = metrics.iter().filter_map(|m| m.alias).collect();
    aliases.sort_unstable();
    if !aliases.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let mut by_tag = payload.clone();
    // Stable: each tag's samples keep their order.
    by_tag.metrics.sort_by_key(|m| m.alias);
    Some(by_tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparkplug::Metric;

    fn section(text: &str) -> (Levers, String) {
        let s: EconomySection = toml::from_str(text).unwrap();
        let mut problems = Problems::new();
        let levers = s.check(&mut problems);
        let said = problems
            .finish(())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        (levers, said)
    }

    #[test]
    fn every_lever_is_off_by_default_and_read_when_given() {
        let (off, said) = section("");
        assert_eq!(off, Levers::off());
        assert!(said.is_empty());
        let (on, said) = section(
            "metric_timestamps = \"when_different\"\nnarrow_types = true\n\
             report_window_ms = 10000\ncompression = \"deflate\"\n\
             compression_min_bytes = 128\ndaily_budget_bytes = 100000000",
        );
        assert!(said.is_empty(), "{said}");
        assert_eq!(on.metric_timestamps, MetricTimestamps::WhenDifferent);
        assert!(on.narrow_types);
        assert_eq!(on.report_window, Duration::from_secs(10));
        assert_eq!(on.compression, Some(Algorithm::Deflate));
        assert_eq!(on.compression_min_bytes, 128);
        assert_eq!(on.daily_budget_bytes, Some(100_000_000));
    }

    #[test]
    fn bad_values_are_named_by_key() {
        let (_, said) = section(
            "report_window_ms = 3600001\ncompression_min_bytes = 10\ndaily_budget_bytes = 5",
        );
        for key in [
            "economy.report_window_ms",
            "economy.compression_min_bytes",
            "economy.daily_budget_bytes",
        ] {
            assert!(said.contains(key), "{key} in {said}");
        }
        assert!(toml::from_str::<EconomySection>("compression = \"zstd\"").is_err());
        assert!(toml::from_str::<EconomySection>("timestamps = \"never\"").is_err());
    }

    #[test]
    fn a_window_is_grouped_tag_by_tag_with_each_tags_samples_in_order() {
        let window = Payload::new(3_000)
            .with_metric(Metric::aliased(65, 1u16).with_timestamp(1_000))
            .with_metric(Metric::aliased(64, 2u16).with_timestamp(1_000))
            .with_metric(Metric::aliased(65, 3u16).with_timestamp(2_000))
            .with_metric(Metric::aliased(64, 4u16).with_timestamp(3_000));
        let by_tag = tag_ordered(&window).unwrap();
        let order: Vec<_> = by_tag
            .metrics
            .iter()
            .map(|m| (m.alias, m.timestamp))
            .collect();
        assert_eq!(
            order,
            [
                (Some(64), Some(1_000)),
                (Some(64), Some(3_000)),
                (Some(65), Some(1_000)),
                (Some(65), Some(2_000))
            ]
        );
        assert_eq!(by_tag.timestamp, window.timestamp);
        // One scan (no tag twice), or replayed history: left as it is.
        let scan = Payload::new(1)
            .with_metric(Metric::aliased(65, 1u16))
            .with_metric(Metric::aliased(64, 2u16));
        assert!(tag_ordered(&scan).is_none());
        let mut replay = window.clone();
        replay.metrics[0].is_historical = true;
        assert!(tag_ordered(&replay).is_none());
    }

    #[test]
    fn timestamps_equal_to_the_newest_are_left_out() {
        let mut p = Payload::new(1_000)
            .with_metric(Metric::aliased(64, 1u16).with_timestamp(900))
            .with_metric(Metric::aliased(65, 2u16).with_timestamp(950))
            .with_metric(Metric::aliased(66, 3u16).with_timestamp(950));
        omit_equal_timestamps(&mut p);
        assert_eq!(p.timestamp, Some(950));
        let stamps: Vec<_> = p.metrics.iter().map(|m| m.timestamp).collect();
        assert_eq!(stamps, [Some(900), None, None]);
        // A metric dated after the payload keeps its own; so does the payload.
        let mut later = Payload::new(10).with_metric(Metric::aliased(64, 1u16).with_timestamp(20));
        omit_equal_timestamps(&mut later);
        assert_eq!(later.timestamp, Some(10));
        assert_eq!(later.metrics[0].timestamp, Some(20));
    }
}
