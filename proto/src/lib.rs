//! Eclipse Sparkplug B 3.0, as a pure library: no sockets, no files, no clocks
//! (callers pass timestamps, milliseconds since the Unix epoch, UTC).
//!
//! - [`Payload`], [`Metric`], [`Value`] and friends: the typed payload model, with
//!   [`Payload::decode`] (bounded by [`DecodeLimits`], typed [`DecodeError`]s that
//!   say where) and [`Payload::encode`] (into a reused `Vec<u8>`).
//! - [`DataType`]: the spec's datatype codes and names.
//! - [`Topic`], [`StateTopic`], [`MessageType`]: the topic namespace.
//! - [`filter`]: the MQTT topic filters subscribers use (namespace, group, commands, STATE).
//! - [`State`]: the 3.0 host STATE payload.
//! - [`Seq`], [`BdSeq`]: the two 0..=255 wrapping counters.
//! - [`AliasTable`]: name <-> alias from a birth.
//! - [`Quality`] and [`properties::keys`]: well-known properties; [`names`]:
//!   well-known metric names (`bdSeq`, `Node Control/Rebirth`, ...).
//! - [`compress`]/[`decompress`]: the `SPBV1.0_COMPRESSED` envelope.
//! - [`pb`]: the raw protobuf types generated from `sparkplug_b.proto`.
//!
//! The model types implement `serde::Serialize` (datatypes as the spec's names)
//! for JSON views of decoded payloads.
//!
//! ```
//! use sparkplug::{Metric, Payload, Seq, Value};
//!
//! let ddata = Payload::new(1_700_000_000_000)
//!     .with_seq(Seq::new(7))
//!     .with_metric(Metric::aliased(3, 21.5f64).with_timestamp(1_700_000_000_000));
//! let mut buf = Vec::new();
//! ddata.encode(&mut buf).unwrap();
//! let back = Payload::decode(&buf).unwrap();
//! assert_eq!(back.metrics[0].typed_value(), Some(&Value::Double(21.5)));
//! ```

#![warn(missing_docs)]

pub mod alias;
pub mod compression;
mod datatype;
mod decode;
mod encode;
pub mod filter;
mod model;
pub mod names;
pub mod pb;
pub mod properties;
pub mod seq;
pub mod state;
pub mod topic;
mod value;
mod wire;

pub use alias::{AliasError, AliasTable};
pub use compression::{Algorithm, CompressionError, compress, compress_ordered, decompress};
pub use datatype::{DataType, UnknownDataTypeCode, UnknownDataTypeName};
pub use decode::{DecodeError, DecodeErrorKind, DecodeLimits, PathSegment};
pub use encode::{EncodeError, FieldOrder};
pub use model::{
    Column, DataSet, DataSetError, MetaData, Metric, MetricValue, Parameter, Payload, Property,
    PropertySet, PropertyValue, Row, Template,
};
pub use properties::{Quality, QualityError};
pub use seq::{BdSeq, BdSeqError, CounterOutOfRange, Seq};
pub use state::{State, StateError};
pub use topic::{AnyTopic, IdPart, MessageType, StateTopic, Topic, TopicError};
pub use value::{BasicValue, Value, ValueError, WireValue};
