//! Encoding the typed model to Sparkplug B protobuf bytes.
//!
//! Writes straight into a caller's `Vec<u8>` (reuse it: no allocation once it has
//! grown), fields in schema order like every protobuf encoder. The Sparkplug
//! rules are checked as it writes; on error the buffer is left as it was.

use crate::model::{
    DataSet, MetaData, Metric, MetricValue, Parameter, Payload, PropertySet, PropertyValue,
    Template,
};
use crate::value::{BasicValue, Scalar, Value, WireValue, pack_array, packed_len};
use crate::wire::{
    FIXED32, FIXED64, LEN, key_len, len_field_len, put_bytes_field, put_key, put_varint,
    put_varint_field, varint_field_len,
};
use crate::{DataSetError, DataType};

/// The typed model holds something Sparkplug cannot put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A metric's `datatype` disagrees with its value.
    #[error("metric declares datatype {declared} but its value is {value}")]
    DataTypeMismatch {
        /// The metric's `datatype`.
        declared: DataType,
        /// The value's datatype.
        value: DataType,
    },
    /// A datatype used where the spec does not allow it.
    #[error("datatype {datatype} is not allowed in a {context}")]
    NotAllowed {
        /// The datatype.
        datatype: DataType,
        /// Where it was used.
        context: &'static str,
    },
    /// A StringArray element containing NUL, the element terminator.
    #[error("StringArray element {index} contains NUL")]
    NulInStringArray {
        /// Element index.
        index: usize,
    },
    /// A BooleanArray longer than its 32-bit count can say.
    #[error("BooleanArray of {len} elements exceeds the 32-bit count")]
    BooleanArrayTooLong {
        /// Elements.
        len: usize,
    },
    /// A DataSet whose shape breaks the spec's rules.
    #[error(transparent)]
    DataSet(#[from] DataSetError),
    /// A template parameter whose value is not of its datatype.
    #[error("template parameter {name:?} declares {declared} but its value is {value}")]
    ParameterType {
        /// Parameter name.
        name: String,
        /// Declared datatype.
        declared: DataType,
        /// The value's datatype.
        value: DataType,
    },
    /// The compressor failed.
    #[error("compression failed: {0}")]
    Compress(String),
    /// An error inside a metric.
    #[error("metric {index} ({}): {source}", name.as_deref().unwrap_or("<aliased>"))]
    InMetric {
        /// Position in its list.
        index: usize,
        /// Its name, if it has one.
        name: Option<String>,
        /// What is wrong.
        source: Box<EncodeError>,
    },
}

/// Where each metric's alias and timestamp are written. Protobuf readers take a message's
/// fields in any order; in a compressed window, putting what varies from metric to metric
/// side by side lets DEFLATE code the rest of each metric as one repeat instead of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldOrder {
    /// Field-number order (alias, timestamp, value), as every protobuf encoder writes.
    #[default]
    Schema,
    /// Alias, value, timestamp: in time order a scan's metrics share their timestamp,
    /// which then repeats together with the next metric's framing.
    TimestampLast,
    /// Timestamp, value, alias: tag by tag the alias repeats together with the next
    /// metric's framing.
    AliasLast,
}

impl Payload {
    /// Appends the encoded payload to `out`; on error `out` is unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.encode_ordered(FieldOrder::Schema, out)
    }

    /// [`Payload::encode`] with the metrics' fields in `order` (same bytes, placed
    /// differently: the same length and the same decoded payload).
    pub fn encode_ordered(&self, order: FieldOrder, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.write(order, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// The encoded payload in a new vector.
    pub fn encode_to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Bytes [`Payload::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let mut n = 0;
        if let Some(t) = self.timestamp {
            n += varint_field_len(1, t);
        }
        for m in &self.metrics {
            n += len_field_len(2, metric_len(m));
        }
        if let Some(s) = self.seq {
            n += varint_field_len(3, s);
        }
        if let Some(u) = &self.uuid {
            n += len_field_len(4, u.len());
        }
        if let Some(b) = &self.body {
            n += len_field_len(5, b.len());
        }
        n
    }

    fn write(&self, order: FieldOrder, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if let Some(t) = self.timestamp {
            put_varint_field(out, 1, t);
        }
        write_metrics(2, &self.metrics, order, out)?;
        if let Some(s) = self.seq {
            put_varint_field(out, 3, s);
        }
        if let Some(u) = &self.uuid {
            put_bytes_field(out, 4, u.as_bytes());
        }
        if let Some(b) = &self.body {
            put_bytes_field(out, 5, b);
        }
        Ok(())
    }
}

fn write_metrics(
    field: u32,
    metrics: &[Metric],
    order: FieldOrder,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    for (index, m) in metrics.iter().enumerate() {
        put_key(out, field, LEN);
        put_varint(out, metric_len(m) as u64);
        write_metric(m, order, out).map_err(|e| EncodeError::InMetric {
            index,
            name: m.name.clone(),
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// Scalar members go at consecutive field numbers from a per-message base.
impl Scalar<&str> {
    #[inline]
    fn len(self, base: u32) -> usize {
        match self {
            Scalar::Int(v) => varint_field_len(base, u64::from(v)),
            Scalar::Long(v) => varint_field_len(base + 1, v),
            Scalar::Float(_) => key_len(base + 2) + 4,
            Scalar::Double(_) => key_len(base + 3) + 8,
            Scalar::Bool(_) => key_len(base + 4) + 1,
            Scalar::Str(s) => len_field_len(base + 5, s.len()),
        }
    }

    #[inline]
    fn put(self, base: u32, out: &mut Vec<u8>) {
        match self {
            Scalar::Int(v) => put_varint_field(out, base, u64::from(v)),
            Scalar::Long(v) => put_varint_field(out, base + 1, v),
            Scalar::Float(v) => {
                put_key(out, base + 2, FIXED32);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Scalar::Double(v) => {
                put_key(out, base + 3, FIXED64);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Scalar::Bool(v) => put_varint_field(out, base + 4, u64::from(v)),
            Scalar::Str(s) => put_bytes_field(out, base + 5, s.as_bytes()),
        }
    }
}

/// How a metric value goes on the wire.
enum Repr<'a> {
    Scalar(Scalar<&'a str>),
    Bytes(&'a [u8]),
    Array(&'a Value, usize),
    DataSet(&'a DataSet),
    Template(&'a Template),
}

const METRIC_VALUE_BASE: u32 = 10;

#[inline]
fn value_repr(v: &Value) -> Repr<'_> {
    if let Some(s) = v.scalar() {
        return Repr::Scalar(s);
    }
    match v {
        Value::Bytes(b) | Value::File(b) => Repr::Bytes(b),
        Value::DataSet(d) => Repr::DataSet(d),
        Value::Template(t) => Repr::Template(t),
        array => Repr::Array(array, packed_len(array).unwrap_or(0)),
    }
}

fn metric_value_len(value: &MetricValue) -> usize {
    match value {
        MetricValue::Null => key_len(7) + 1,
        MetricValue::Value(v) => match value_repr(v) {
            Repr::Scalar(s) => s.len(METRIC_VALUE_BASE),
            Repr::Bytes(b) => len_field_len(16, b.len()),
            Repr::Array(_, n) => len_field_len(16, n),
            Repr::DataSet(d) => len_field_len(17, dataset_len(d)),
            Repr::Template(t) => len_field_len(18, template_len(t)),
        },
        MetricValue::Untyped(w) => match w.scalar() {
            Some(s) => s.len(METRIC_VALUE_BASE),
            None => match w {
                WireValue::Bytes(b) => len_field_len(16, b.len()),
                _ => 0,
            },
        },
    }
}

fn metric_len(m: &Metric) -> usize {
    let mut n = 0;
    if let Some(name) = &m.name {
        n += len_field_len(1, name.len());
    }
    if let Some(a) = m.alias {
        n += varint_field_len(2, a);
    }
    if let Some(t) = m.timestamp {
        n += varint_field_len(3, t);
    }
    if let Some(t) = m.datatype {
        n += varint_field_len(4, u64::from(t.code()));
    }
    if m.is_historical {
        n += 2;
    }
    if m.is_transient {
        n += 2;
    }
    if let Some(md) = &m.metadata {
        n += len_field_len(8, metadata_len(md));
    }
    if let Some(ps) = &m.properties {
        n += len_field_len(9, property_set_len(ps));
    }
    n + metric_value_len(&m.value)
}

fn write_metric(m: &Metric, order: FieldOrder, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if let Some(t) = m.datatype {
        if !t.is_metric_type() {
            return Err(EncodeError::NotAllowed {
                datatype: t,
                context: "metric",
            });
        }
        if let MetricValue::Value(v) = &m.value
            && v.datatype() != t
        {
            return Err(EncodeError::DataTypeMismatch {
                declared: t,
                value: v.datatype(),
            });
        }
    }
    if let Some(name) = &m.name {
        put_bytes_field(out, 1, name.as_bytes());
    }
    if let Some(a) = m.alias
        && order != FieldOrder::AliasLast
    {
        put_varint_field(out, 2, a);
    }
    if let Some(t) = m.timestamp
        && order != FieldOrder::TimestampLast
    {
        put_varint_field(out, 3, t);
    }
    if let Some(t) = m.datatype {
        put_varint_field(out, 4, u64::from(t.code()));
    }
    if m.is_historical {
        put_varint_field(out, 5, 1);
    }
    if m.is_transient {
        put_varint_field(out, 6, 1);
    }
    if matches!(m.value, MetricValue::Null) {
        put_varint_field(out, 7, 1);
    }
    if let Some(md) = &m.metadata {
        put_key(out, 8, LEN);
        put_varint(out, metadata_len(md) as u64);
        write_metadata(md, out);
    }
    if let Some(ps) = &m.properties {
        put_key(out, 9, LEN);
        put_varint(out, property_set_len(ps) as u64);
        write_property_set(ps, out)?;
    }
    match &m.value {
        MetricValue::Null => {}
        MetricValue::Value(v) => match value_repr(v) {
            Repr::Scalar(s) => s.put(METRIC_VALUE_BASE, out),
            Repr::Bytes(b) => put_bytes_field(out, 16, b),
            Repr::Array(v, n) => {
                check_array(v)?;
                put_key(out, 16, LEN);
                put_varint(out, n as u64);
                pack_array(v, out);
            }
            Repr::DataSet(d) => {
                d.validate()?;
                put_key(out, 17, LEN);
                put_varint(out, dataset_len(d) as u64);
                write_dataset(d, out);
            }
            Repr::Template(t) => {
                put_key(out, 18, LEN);
                put_varint(out, template_len(t) as u64);
                write_template(t, out)?;
            }
        },
        MetricValue::Untyped(w) => match (w.scalar(), w) {
            (Some(s), _) => s.put(METRIC_VALUE_BASE, out),
            (None, WireValue::Bytes(b)) => put_bytes_field(out, 16, b),
            (None, _) => {}
        },
    }
    match (order, m.alias, m.timestamp) {
        (FieldOrder::TimestampLast, _, Some(t)) => put_varint_field(out, 3, t),
        (FieldOrder::AliasLast, Some(a), _) => put_varint_field(out, 2, a),
        _ => {}
    }
    Ok(())
}

fn check_array(v: &Value) -> Result<(), EncodeError> {
    match v {
        Value::StringArray(a) => match a.iter().position(|s| s.as_bytes().contains(&0)) {
            Some(index) => Err(EncodeError::NulInStringArray { index }),
            None => Ok(()),
        },
        Value::BooleanArray(a) if u32::try_from(a.len()).is_err() => {
            Err(EncodeError::BooleanArrayTooLong { len: a.len() })
        }
        _ => Ok(()),
    }
}

fn opt_str_len(field: u32, s: &Option<String>) -> usize {
    s.as_ref().map_or(0, |s| len_field_len(field, s.len()))
}

fn put_opt_str(out: &mut Vec<u8>, field: u32, s: &Option<String>) {
    if let Some(s) = s {
        put_bytes_field(out, field, s.as_bytes());
    }
}

fn metadata_len(md: &MetaData) -> usize {
    md.is_multi_part.map_or(0, |_| 2)
        + opt_str_len(2, &md.content_type)
        + md.size.map_or(0, |v| varint_field_len(3, v))
        + md.seq.map_or(0, |v| varint_field_len(4, v))
        + opt_str_len(5, &md.file_name)
        + opt_str_len(6, &md.file_type)
        + opt_str_len(7, &md.md5)
        + opt_str_len(8, &md.description)
}

fn write_metadata(md: &MetaData, out: &mut Vec<u8>) {
    if let Some(v) = md.is_multi_part {
        put_varint_field(out, 1, u64::from(v));
    }
    put_opt_str(out, 2, &md.content_type);
    if let Some(v) = md.size {
        put_varint_field(out, 3, v);
    }
    if let Some(v) = md.seq {
        put_varint_field(out, 4, v);
    }
    put_opt_str(out, 5, &md.file_name);
    put_opt_str(out, 6, &md.file_type);
    put_opt_str(out, 7, &md.md5);
    put_opt_str(out, 8, &md.description);
}

const PROPERTY_VALUE_BASE: u32 = 3;

fn property_set_len(ps: &PropertySet) -> usize {
    ps.properties
        .iter()
        .map(|p| len_field_len(1, p.key.len()) + len_field_len(2, property_value_len(&p.value)))
        .sum()
}

fn write_property_set(ps: &PropertySet, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    for p in &ps.properties {
        put_bytes_field(out, 1, p.key.as_bytes());
    }
    for p in &ps.properties {
        put_key(out, 2, LEN);
        put_varint(out, property_value_len(&p.value) as u64);
        write_property_value(&p.value, out)?;
    }
    Ok(())
}

fn property_set_list_len(sets: &[PropertySet]) -> usize {
    sets.iter()
        .map(|s| len_field_len(1, property_set_len(s)))
        .sum()
}

fn property_value_len(v: &PropertyValue) -> usize {
    varint_field_len(1, u64::from(v.datatype().code()))
        + match v {
            PropertyValue::Value(b) => b.scalar().len(PROPERTY_VALUE_BASE),
            PropertyValue::PropertySet(s) => len_field_len(9, property_set_len(s)),
            PropertyValue::PropertySetList(l) => len_field_len(10, property_set_list_len(l)),
            PropertyValue::Null(_) => 2,
        }
}

fn write_property_value(v: &PropertyValue, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let t = v.datatype();
    if !t.is_property_type() {
        return Err(EncodeError::NotAllowed {
            datatype: t,
            context: "property value",
        });
    }
    put_varint_field(out, 1, u64::from(t.code()));
    match v {
        PropertyValue::Value(b) => b.scalar().put(PROPERTY_VALUE_BASE, out),
        PropertyValue::PropertySet(s) => {
            put_key(out, 9, LEN);
            put_varint(out, property_set_len(s) as u64);
            write_property_set(s, out)?;
        }
        PropertyValue::PropertySetList(l) => {
            put_key(out, 10, LEN);
            put_varint(out, property_set_list_len(l) as u64);
            for s in l {
                put_key(out, 1, LEN);
                put_varint(out, property_set_len(s) as u64);
                write_property_set(s, out)?;
            }
        }
        PropertyValue::Null(_) => put_varint_field(out, 2, 1),
    }
    Ok(())
}

const DATASET_VALUE_BASE: u32 = 1;

fn cell_len(c: &Option<BasicValue>) -> usize {
    c.as_ref().map_or(0, |v| v.scalar().len(DATASET_VALUE_BASE))
}

fn row_len(row: &[Option<BasicValue>]) -> usize {
    row.iter().map(|c| len_field_len(1, cell_len(c))).sum()
}

fn dataset_len(d: &DataSet) -> usize {
    varint_field_len(1, d.columns.len() as u64)
        + d.columns
            .iter()
            .map(|c| len_field_len(2, c.name.len()))
            .sum::<usize>()
        + d.columns
            .iter()
            .map(|c| varint_field_len(3, u64::from(c.datatype.code())))
            .sum::<usize>()
        + d.rows
            .iter()
            .map(|r| len_field_len(4, row_len(r)))
            .sum::<usize>()
}

/// Writes a dataset that [`DataSet::validate`] accepted.
fn write_dataset(d: &DataSet, out: &mut Vec<u8>) {
    put_varint_field(out, 1, d.columns.len() as u64);
    for c in &d.columns {
        put_bytes_field(out, 2, c.name.as_bytes());
    }
    // One key per type, as proto2 writers do (decoders accept packed too).
    for c in &d.columns {
        put_varint_field(out, 3, u64::from(c.datatype.code()));
    }
    for row in &d.rows {
        put_key(out, 4, LEN);
        put_varint(out, row_len(row) as u64);
        for cell in row {
            put_key(out, 1, LEN);
            put_varint(out, cell_len(cell) as u64);
            if let Some(v) = cell {
                v.scalar().put(DATASET_VALUE_BASE, out);
            }
        }
    }
}

const PARAMETER_VALUE_BASE: u32 = 3;

fn parameter_len(p: &Parameter) -> usize {
    len_field_len(1, p.name.len())
        + varint_field_len(2, u64::from(p.datatype.code()))
        + p.value
            .as_ref()
            .map_or(0, |v| v.scalar().len(PARAMETER_VALUE_BASE))
}

fn template_len(t: &Template) -> usize {
    opt_str_len(1, &t.version)
        + t.metrics
            .iter()
            .map(|m| len_field_len(2, metric_len(m)))
            .sum::<usize>()
        + t.parameters
            .iter()
            .map(|p| len_field_len(3, parameter_len(p)))
            .sum::<usize>()
        + opt_str_len(4, &t.template_ref)
        + 2
}

fn write_template(t: &Template, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    put_opt_str(out, 1, &t.version);
    write_metrics(2, &t.metrics, FieldOrder::Schema, out)?;
    for p in &t.parameters {
        if !p.datatype.is_basic() {
            return Err(EncodeError::NotAllowed {
                datatype: p.datatype,
                context: "template parameter",
            });
        }
        if let Some(v) = &p.value
            && v.datatype() != p.datatype
        {
            return Err(EncodeError::ParameterType {
                name: p.name.clone(),
                declared: p.datatype,
                value: v.datatype(),
            });
        }
        put_key(out, 3, LEN);
        put_varint(out, parameter_len(p) as u64);
        put_bytes_field(out, 1, p.name.as_bytes());
        put_varint_field(out, 2, u64::from(p.datatype.code()));
        if let Some(v) = &p.value {
            v.scalar().put(PARAMETER_VALUE_BASE, out);
        }
    }
    put_opt_str(out, 4, &t.template_ref);
    put_varint_field(out, 5, u64::from(t.is_definition()));
    Ok(())
}
