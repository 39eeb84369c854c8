//! The two Sparkplug counters: the message sequence number `seq` and the
//! birth/death sequence number `bdSeq`. Both run 0..=255 and wrap 255 -> 0.
//!
//! `seq`: NBIRTH carries 0; every later message of the edge node (DBIRTH, NDATA,
//! DDATA, DDEATH) carries the previous value plus one; NDEATH, NCMD and DCMD
//! carry none. `bdSeq`: a metric of NBIRTH and of the NDEATH will registered
//! with the same MQTT session, both with the same value; it advances by one per
//! new MQTT session.

use crate::model::{Metric, MetricValue};
use crate::value::{Value, WireValue};

/// A value out of the 0..=255 range of a Sparkplug counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{counter} {value} is outside 0..=255")]
pub struct CounterOutOfRange {
    /// `"seq"` or `"bdSeq"`.
    pub counter: &'static str,
    /// The value found.
    pub value: u64,
}

macro_rules! counter {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
        pub struct $name(u8);

        impl $name {
            /// Zero.
            pub const ZERO: $name = $name(0);

            /// The counter at `value`.
            pub const fn new(value: u8) -> $name {
                $name(value)
            }

            /// The value.
            pub const fn value(self) -> u8 {
                self.0
            }

            /// The value after this one: plus one, 255 wraps to 0.
            #[must_use]
            pub const fn next(self) -> $name {
                $name(self.0.wrapping_add(1))
            }

            /// This value directly follows `previous` (wrap included).
            pub const fn follows(self, previous: $name) -> bool {
                self.0 == previous.0.wrapping_add(1)
            }
        }

        impl TryFrom<u64> for $name {
            type Error = CounterOutOfRange;
            fn try_from(value: u64) -> Result<$name, CounterOutOfRange> {
                u8::try_from(value).map($name).map_err(|_| CounterOutOfRange { counter: $label, value })
            }
        }

        impl From<$name> for u64 {
            fn from(c: $name) -> u64 {
                u64::from(c.0)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

counter!(
    /// The payload sequence number `seq`.
    Seq,
    "seq"
);
counter!(
    /// The birth/death sequence number `bdSeq`.
    BdSeq,
    "bdSeq"
);

/// A `bdSeq` metric that is missing or unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BdSeqError {
    /// The payload has no `bdSeq` metric.
    #[error("no bdSeq metric")]
    Missing,
    /// The metric is not an integer.
    #[error("bdSeq metric is not an integer")]
    NotAnInteger,
    /// The value is outside 0..=255.
    #[error(transparent)]
    OutOfRange(#[from] CounterOutOfRange),
}

impl BdSeq {
    /// The metric name in NBIRTH and NDEATH.
    pub const METRIC_NAME: &'static str = crate::names::BD_SEQ;

    /// The datatype of the `bdSeq` metric this library writes: Int64, as the spec's
    /// NBIRTH/NDEATH examples and the reference implementation send it.
    pub const DATATYPE: crate::DataType = crate::DataType::Int64;

    /// The `bdSeq` metric of an NBIRTH or NDEATH, of datatype [`BdSeq::DATATYPE`].
    pub fn to_metric(self, timestamp: u64) -> Metric {
        Metric::new(Self::METRIC_NAME, i64::from(self.0)).with_timestamp(timestamp)
    }

    /// Reads the `bdSeq` metric of an NBIRTH or NDEATH. Any integer datatype is
    /// accepted (some implementations send UInt64).
    pub fn from_payload(payload: &crate::Payload) -> Result<BdSeq, BdSeqError> {
        let m = payload
            .metric(Self::METRIC_NAME)
            .ok_or(BdSeqError::Missing)?;
        let v = match &m.value {
            MetricValue::Value(Value::UInt64(v)) => *v,
            MetricValue::Value(Value::Int64(v)) => u64::try_from(*v).unwrap_or(u64::MAX),
            MetricValue::Value(Value::UInt32(v)) => u64::from(*v),
            MetricValue::Value(Value::Int32(v)) => u64::try_from(*v).unwrap_or(u64::MAX),
            MetricValue::Value(Value::UInt8(v)) => u64::from(*v),
            MetricValue::Untyped(WireValue::Long(v)) => *v,
            MetricValue::Untyped(WireValue::Int(v)) => u64::from(*v),
            _ => return Err(BdSeqError::NotAnInteger),
        };
        Ok(BdSeq::try_from(v)?)
    }
}
