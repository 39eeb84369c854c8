//! The store's own data types: metric keys, samples and their values, query results,
//! retention policy and audit records. Independent of any backend and of the wire format.

use std::fmt;
use std::time::Duration;

/// Milliseconds since the Unix epoch (UTC), as Sparkplug B carries timestamps.
pub type TimestampMs = u64;

/// Identifies a metric the way Sparkplug topics and payloads do: group, edge node,
/// optional device, metric name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricKey {
    pub group_id: String,
    pub edge_node_id: String,
    /// `None` for a metric of the edge node itself (NBIRTH/NDATA).
    pub device_id: Option<String>,
    pub name: String,
}

impl MetricKey {
    /// A metric of the edge node itself.
    pub fn node(group_id: &str, edge_node_id: &str, name: &str) -> Self {
        Self {
            group_id: group_id.to_owned(),
            edge_node_id: edge_node_id.to_owned(),
            device_id: None,
            name: name.to_owned(),
        }
    }

    /// A metric of a device behind the edge node.
    pub fn device(group_id: &str, edge_node_id: &str, device_id: &str, name: &str) -> Self {
        Self {
            device_id: Some(device_id.to_owned()),
            ..Self::node(group_id, edge_node_id, name)
        }
    }
}

impl fmt::Display for MetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group_id, self.edge_node_id)?;
        if let Some(device_id) = &self.device_id {
            write!(f, "/{device_id}")?;
        }
        write!(f, ":{}", self.name)
    }
}

/// Compact id of a registered metric; samples refer to metrics by this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId(pub i64);

impl fmt::Display for MetricId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the birth certificate says about a metric; updated on every registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricMeta {
    /// The Sparkplug datatype name as announced in the birth (e.g. `Double`, `UInt64`).
    pub datatype: String,
    /// Engineering units, when the birth carries them.
    pub units: Option<String>,
}

/// A registered metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricInfo {
    pub id: MetricId,
    pub key: MetricKey,
    pub meta: MetricMeta,
}

/// Sparkplug `quality` property (an Int32): 0 BAD, 192 GOOD, 500 STALE; other values pass
/// through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quality(pub i32);

impl Quality {
    pub const BAD: Quality = Quality(0);
    pub const GOOD: Quality = Quality(192);
    pub const STALE: Quality = Quality(500);
}

impl Default for Quality {
    fn default() -> Self {
        Quality::GOOD
    }
}

/// A metric value as history keeps it. Sparkplug's integer types widen to `I64`/`U64`,
/// Float/Double to `F64`, String/Text/UUID to `Text`, Bytes/File to `Bytes`; `Null` is a
/// metric sent with `is_null`.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    /// NaN round-trips as a NaN (its payload bits are not kept); ±inf and -0.0 exactly.
    F64(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl SampleValue {
    /// The value as a number for trend aggregates; `None` for NaN and non-numeric values.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            SampleValue::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            SampleValue::I64(v) => Some(v as f64),
            SampleValue::U64(v) => Some(v as f64),
            SampleValue::F64(v) if !v.is_nan() => Some(v),
            _ => None,
        }
    }

    /// Equality that treats two NaNs as the same stored value.
    pub fn same_as(&self, other: &SampleValue) -> bool {
        match (self, other) {
            (SampleValue::F64(a), SampleValue::F64(b)) => {
                (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
            }
            _ => self == other,
        }
    }
}

/// One timestamped value of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: MetricId,
    pub ts: TimestampMs,
    pub value: SampleValue,
    pub quality: Quality,
    /// Sent late from the edge node's store-and-forward buffer (Sparkplug `is_historical`).
    pub is_historical: bool,
}

/// What one batch append did. Duplicates are samples whose (metric, ts) was already stored:
/// the first stored copy is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub inserted: u64,
    pub duplicates: u64,
    /// Samples refused before storage (timestamp beyond the store's range).
    pub rejected: u64,
}

impl AppendOutcome {
    pub fn add(&mut self, other: AppendOutcome) {
        self.inserted += other.inserted;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
    }
}

/// Half-open time range `[from, to)` in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: TimestampMs,
    pub to: TimestampMs,
}

impl TimeRange {
    pub fn new(from: TimestampMs, to: TimestampMs) -> Self {
        Self { from, to }
    }

    pub fn is_empty(&self) -> bool {
        self.to <= self.from
    }

    /// Width of each of `buckets` equal buckets covering the range (the last may be short).
    pub fn bucket_width(&self, buckets: u32) -> u64 {
        let span = self.to.saturating_sub(self.from);
        span.div_ceil(u64::from(buckets.max(1))).max(1)
    }
}

/// One bucket of a downsampled trend. `min`/`max`/`avg` cover numeric samples (Bool as 0/1,
/// NaN left out) and are `None` when the bucket has none; `last` is the latest sample of any
/// type. Empty buckets are not returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, inclusive.
    pub start: TimestampMs,
    /// Smallest numeric value: a spike stays visible however wide the bucket.
    pub min: Option<f64>,
    /// Largest numeric value.
    pub max: Option<f64>,
    /// Mean of the numeric values.
    pub avg: Option<f64>,
    /// End of the bucket, exclusive.
    pub end: TimestampMs,
    /// All samples in the bucket, numeric or not.
    pub count: u64,
    /// The latest sample, of any type.
    pub last: Sample,
}

/// How long and how much history to keep. `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Delete samples older than this.
    pub max_age: Option<Duration>,
    /// Keep the database file under this many bytes by deleting the oldest samples.
    pub max_bytes: Option<u64>,
}

/// What one bounded retention step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionStep {
    pub deleted: u64,
    /// Database size after the step (bytes in use by the store).
    pub bytes_in_use: u64,
    /// More work remains: call again (after letting ingest run).
    pub more: bool,
}

/// Result of a command (a write to a metric) as recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandOutcome {
    /// Refused by the host before anything was published (permission, validation).
    Rejected,
    /// Published as an NCMD/DCMD.
    Sent,
    /// The edge node reported the new value back.
    Confirmed,
    /// Publishing failed or the edge node did not confirm in time.
    Failed,
    /// An account event (a login, a user created) that took effect: nothing to confirm.
    Done,
}

impl CommandOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandOutcome::Rejected => "rejected",
            CommandOutcome::Sent => "sent",
            CommandOutcome::Confirmed => "confirmed",
            CommandOutcome::Failed => "failed",
            CommandOutcome::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "rejected" => CommandOutcome::Rejected,
            "sent" => CommandOutcome::Sent,
            "confirmed" => CommandOutcome::Confirmed,
            "failed" => CommandOutcome::Failed,
            "done" => CommandOutcome::Done,
            _ => return None,
        })
    }
}

impl fmt::Display for CommandOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One command written by an operator, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub ts: TimestampMs,
    pub user: String,
    pub metric: MetricKey,
    /// The value written, as JSON text.
    pub value: String,
    pub outcome: CommandOutcome,
    /// Why it was rejected or failed, or other context.
    pub detail: Option<String>,
}

/// An audit entry with its sequence number in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
}

/// Which audit entries to return, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub range: TimeRange,
    pub user: Option<String>,
    pub metric: Option<MetricKey>,
    pub limit: u32,
}
