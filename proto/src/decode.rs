//! Decoding Sparkplug B payloads from untrusted bytes.
//!
//! The decoder reads the protobuf wire format directly into the typed model: no
//! intermediate prost structs, strings copied once, the metric vector sized
//! before it is filled. Every failure is a [`DecodeError`] that says what is
//! wrong and where (metric index, name or alias, field path). Nothing the input
//! says is trusted for an allocation: counts are checked against [`DecodeLimits`]
//! and against the bytes actually present, and nesting depth is capped, so
//! recursion and memory stay bounded whatever arrives.
//!
//! What is refused, beyond malformed protobuf: unknown datatype codes; datatypes
//! used where the spec does not allow them (PropertySet as a metric, UUID as a
//! property, non-basic DataSet columns and template parameters); a value in a
//! field its datatype does not use; a metric or property that is neither null
//! nor has a value; PropertySet keys/values of different lengths; DataSet
//! columns/types/num_of_columns that disagree and rows of the wrong width;
//! templates without `is_definition`, definitions with a `template_ref` and
//! instances without one; parameters without name or type. What is accepted
//! leniently: signed integers with or without sign extension, UInt32 in
//! `long_value`, values alongside `is_null` (the value is dropped), unknown
//! fields and extensions (skipped), packed DataSet `types`.

use std::fmt;

use crate::DataType;
use crate::compression::{self, CompressionError};
use crate::model::{
    Column, DataSet, MetaData, Metric, MetricValue, Parameter, Payload, Property, PropertySet,
    PropertyValue, Row, Template,
};
use crate::value::{
    BasicValue, Scalar, Value, ValueError, WireValue, basic_from_scalar, bytes_value,
    value_from_scalar,
};
use crate::wire::{FIXED32, FIXED64, LEN, Reader, VARINT, WireError};

/// Caps on what one decode may allocate and how deep it may recurse.
///
/// The defaults bound one decode to roughly 15 MB for metrics plus 16 MB for
/// other entries however the input is crafted, while leaving room for any real
/// birth (100,000 metrics, a 20,000-row dataset of 10 columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Metrics in the payload, counting template members at any depth.
    pub max_metrics: usize,
    /// Other repeated entries, all kinds together: properties, property sets in
    /// lists, dataset columns, rows and cells, template parameters, StringArray
    /// elements.
    pub max_items: usize,
    /// Nesting of templates, datasets and property sets (a metric's own
    /// properties are depth 1).
    pub max_depth: usize,
    /// Bytes a compressed payload may inflate to.
    pub max_decompressed_len: usize,
}

impl Default for DecodeLimits {
    fn default() -> DecodeLimits {
        DecodeLimits {
            max_metrics: 100_000,
            max_items: 250_000,
            max_depth: 16,
            max_decompressed_len: 16 * 1024 * 1024,
        }
    }
}

/// What is wrong with the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ends inside a field.
    #[error("input ends inside a field")]
    Truncated,
    /// A varint longer than 10 bytes or above 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A field key with field number 0 or out of range.
    #[error("invalid field key (field number 0 or above 2^29)")]
    InvalidTag,
    /// A wire type protobuf does not define (6, 7) or a stray end-group.
    #[error("invalid wire type {wire_type}")]
    InvalidWireType {
        /// The wire type found.
        wire_type: u8,
    },
    /// A known field encoded with the wrong wire type.
    #[error("field `{field}` has wire type {found}, expected {expected}")]
    WrongWireType {
        /// The field.
        field: &'static str,
        /// The schema's wire type.
        expected: u8,
        /// The wire type found.
        found: u8,
    },
    /// A string field that is not UTF-8.
    #[error("field `{field}` is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A datatype code that is 0 (`Unknown`) or above 34.
    #[error("unknown datatype code {code}")]
    UnknownDataType {
        /// The code found.
        code: u32,
    },
    /// A field the spec requires is absent.
    #[error("required field `{field}` is missing")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A value that does not fit its datatype.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// A value in an `extension_value` field, which no datatype uses.
    #[error("value in `extension_value`, which Sparkplug datatypes do not use")]
    ExtensionValue,
    /// More metrics than [`DecodeLimits::max_metrics`].
    #[error("more than {limit} metrics")]
    TooManyMetrics {
        /// The limit.
        limit: usize,
    },
    /// More repeated entries than [`DecodeLimits::max_items`].
    #[error("more than {limit} properties, rows, cells or parameters")]
    TooManyItems {
        /// The limit.
        limit: usize,
    },
    /// Nesting deeper than [`DecodeLimits::max_depth`].
    #[error("nested deeper than {limit} templates, datasets or property sets")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A PropertySet whose `keys` and `values` arrays differ in length.
    #[error("property set has {keys} keys but {values} values")]
    KeysValuesMismatch {
        /// Keys present.
        keys: usize,
        /// Values present.
        values: usize,
    },
    /// A DataSet whose `columns` and `types` arrays differ in length.
    #[error("dataset has {columns} columns but {types} types")]
    ColumnsTypesMismatch {
        /// Column names present.
        columns: usize,
        /// Types present.
        types: usize,
    },
    /// A DataSet whose `num_of_columns` disagrees with its columns.
    #[error("dataset num_of_columns is {declared} but it has {columns} columns")]
    NumOfColumnsMismatch {
        /// `num_of_columns` as sent.
        declared: u64,
        /// Column names present.
        columns: usize,
    },
    /// A DataSet row whose width differs from the number of columns.
    #[error("row has {found} cells, the dataset has {expected} columns")]
    RowWidth {
        /// Number of columns.
        expected: usize,
        /// Cells found (counting stops one past the expected width).
        found: usize,
    },
    /// A template with `is_definition` true and a `template_ref`.
    #[error("template definition has a template_ref")]
    DefinitionWithRef,
    /// A template with `is_definition` false and no `template_ref`.
    #[error("template instance has no template_ref")]
    InstanceWithoutRef,
    /// The compressed envelope could not be opened.
    #[error(transparent)]
    Compression(#[from] CompressionError),
}

/// One step of the path to where a decode failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// A metric, with its name and alias when the bytes carry them.
    Metric {
        /// Position in its list.
        index: usize,
        /// Its name, if present.
        name: Option<String>,
        /// Its alias, if present.
        alias: Option<u64>,
    },
    /// A protobuf field.
    Field(&'static str),
    /// An element of a repeated field.
    Index(usize),
}

/// A payload that cannot be decoded: what is wrong ([`DecodeError::kind`]) and
/// where ([`DecodeError::path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(Box<ErrorInner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct ErrorInner {
    kind: DecodeErrorKind,
    /// Innermost segment first (pushed while unwinding).
    path: Vec<PathSegment>,
}

impl DecodeError {
    pub(crate) fn new(kind: DecodeErrorKind) -> DecodeError {
        DecodeError(Box::new(ErrorInner {
            kind,
            path: Vec::new(),
        }))
    }

    fn at(mut self, segment: PathSegment) -> DecodeError {
        self.0.path.push(segment);
        self
    }

    fn at_field(self, field: &'static str) -> DecodeError {
        self.at(PathSegment::Field(field))
    }

    /// What is wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.0.kind
    }

    /// Where, outermost first (e.g. metric 3, field `properties`, value 1).
    pub fn path(&self) -> impl Iterator<Item = &PathSegment> {
        self.0.path.iter().rev()
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in self.path() {
            match seg {
                PathSegment::Metric { index, name, alias } => {
                    if !first {
                        f.write_str(".")?;
                    }
                    write!(f, "metrics[{index}]")?;
                    match (name, alias) {
                        (Some(n), Some(a)) => write!(f, " (name {n:?}, alias {a})")?,
                        (Some(n), None) => write!(f, " (name {n:?})")?,
                        (None, Some(a)) => write!(f, " (alias {a})")?,
                        (None, None) => {}
                    }
                }
                PathSegment::Field(name) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                PathSegment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        if !first {
            f.write_str(": ")?;
        }
        write!(f, "{}", self.0.kind)
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0.kind)
    }
}

impl From<ValueError> for DecodeError {
    fn from(e: ValueError) -> DecodeError {
        DecodeError::new(DecodeErrorKind::Value(e))
    }
}

impl From<CompressionError> for DecodeError {
    fn from(e: CompressionError) -> DecodeError {
        DecodeError::new(DecodeErrorKind::Compression(e))
    }
}

impl From<WireError> for DecodeErrorKind {
    fn from(e: WireError) -> DecodeErrorKind {
        match e {
            WireError::Truncated => DecodeErrorKind::Truncated,
            WireError::VarintOverflow => DecodeErrorKind::VarintOverflow,
            WireError::InvalidTag => DecodeErrorKind::InvalidTag,
            WireError::InvalidWireType(wire_type) => DecodeErrorKind::InvalidWireType { wire_type },
        }
    }
}

impl From<WireError> for DecodeError {
    #[cold]
    fn from(e: WireError) -> DecodeError {
        DecodeError::new(e.into())
    }
}

impl From<DecodeErrorKind> for DecodeError {
    fn from(kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(kind)
    }
}

impl Payload {
    /// Decodes a payload with the default [`DecodeLimits`]; a compressed envelope
    /// (`uuid` = `SPBV1.0_COMPRESSED`) is inflated and its inner payload returned.
    pub fn decode(bytes: &[u8]) -> Result<Payload, DecodeError> {
        Payload::decode_with(bytes, &DecodeLimits::default())
    }

    /// Decodes a payload within `limits`; a compressed envelope is inflated
    /// (at most `limits.max_decompressed_len` bytes) and its inner payload returned.
    pub fn decode_with(bytes: &[u8], limits: &DecodeLimits) -> Result<Payload, DecodeError> {
        let outer = Payload::decode_envelope(bytes, limits)?;
        if !compression::is_compressed(&outer) {
            return Ok(outer);
        }
        let inner = compression::inflate_body(&outer, limits.max_decompressed_len)?;
        let payload = Payload::decode_envelope(&inner, limits).map_err(|e| e.at_field("body"))?;
        if compression::is_compressed(&payload) {
            return Err(DecodeError::new(CompressionError::Nested.into()).at_field("body"));
        }
        Ok(payload)
    }

    /// Decodes exactly the bytes given: a compressed envelope is returned as is.
    pub fn decode_envelope(bytes: &[u8], limits: &DecodeLimits) -> Result<Payload, DecodeError> {
        let mut ctx = Ctx::new(limits);
        decode_payload(bytes, &mut ctx)
    }
}

/// Budgets shared by everything one decode allocates.
struct Ctx<'l> {
    limits: &'l DecodeLimits,
    metrics_left: usize,
    items_left: usize,
    depth: usize,
}

impl<'l> Ctx<'l> {
    fn new(limits: &'l DecodeLimits) -> Ctx<'l> {
        Ctx {
            limits,
            metrics_left: limits.max_metrics,
            items_left: limits.max_items,
            depth: 0,
        }
    }

    fn take_metrics(&mut self, n: usize) -> Result<(), DecodeError> {
        self.metrics_left =
            self.metrics_left
                .checked_sub(n)
                .ok_or(DecodeErrorKind::TooManyMetrics {
                    limit: self.limits.max_metrics,
                })?;
        Ok(())
    }

    fn take_item(&mut self) -> Result<(), DecodeError> {
        self.take_items(1)
    }

    fn take_items(&mut self, n: usize) -> Result<(), DecodeError> {
        self.items_left = self
            .items_left
            .checked_sub(n)
            .ok_or(DecodeErrorKind::TooManyItems {
                limit: self.limits.max_items,
            })?;
        Ok(())
    }

    fn enter(&mut self) -> Result<(), DecodeError> {
        if self.depth >= self.limits.max_depth {
            return Err(DecodeErrorKind::TooDeep {
                limit: self.limits.max_depth,
            }
            .into());
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Runs `f` one nesting level deeper.
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Ctx<'l>) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        self.enter()?;
        let out = f(self);
        self.leave();
        out
    }
}

#[inline]
fn expect(field: &'static str, expected: u8, found: u8) -> Result<(), DecodeError> {
    if expected == found {
        Ok(())
    } else {
        Err(DecodeError::new(DecodeErrorKind::WrongWireType {
            field,
            expected,
            found,
        }))
    }
}

#[inline]
fn in_field<T>(r: Result<T, WireError>, field: &'static str) -> Result<T, DecodeError> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => Err(DecodeError::from(e).at_field(field)),
    }
}

#[inline]
fn utf8(b: &[u8], field: &'static str) -> Result<String, DecodeError> {
    match std::str::from_utf8(b) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(DecodeError::new(DecodeErrorKind::InvalidUtf8 { field })),
    }
}

#[inline]
fn varint_field(r: &mut Reader<'_>, field: &'static str, wt: u8) -> Result<u64, DecodeError> {
    expect(field, VARINT, wt)?;
    in_field(r.varint(), field)
}

#[inline]
fn bytes_field<'a>(
    r: &mut Reader<'a>,
    field: &'static str,
    wt: u8,
) -> Result<&'a [u8], DecodeError> {
    expect(field, LEN, wt)?;
    in_field(r.bytes(), field)
}

#[inline]
fn string_field(r: &mut Reader<'_>, field: &'static str, wt: u8) -> Result<String, DecodeError> {
    let b = bytes_field(r, field, wt)?;
    utf8(b, field)
}

#[inline]
fn key(r: &mut Reader<'_>) -> Result<(u32, u8), DecodeError> {
    Ok(r.key()?)
}

fn skip(r: &mut Reader<'_>, field: u32, wt: u8) -> Result<(), DecodeError> {
    Ok(r.skip(field, wt)?)
}

/// A `value` oneof as found, borrowing from the input until its datatype is known.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Scalar(Scalar<&'a [u8]>),
    Bytes(&'a [u8]),
    DataSet(&'a [u8]),
    Template(&'a [u8]),
    PropertySet(&'a [u8]),
    PropertySetList(&'a [u8]),
    Extension,
}

/// UTF-8 check for string members (the path names the field).
#[inline]
fn owned_str(b: &[u8]) -> Result<String, ValueError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| ValueError::InvalidUtf8)
}

impl<'a> Raw<'a> {
    #[inline]
    fn field_name(self) -> &'static str {
        match self {
            Raw::Scalar(s) => s.field_name(),
            Raw::Bytes(_) => "bytes_value",
            Raw::DataSet(_) => "dataset_value",
            Raw::Template(_) => "template_value",
            Raw::PropertySet(_) => "propertyset_value",
            Raw::PropertySetList(_) => "propertysets_value",
            Raw::Extension => "extension_value",
        }
    }

    /// Reads scalar member `slot` (0 uint32, 1 uint64, 2 float, 3 double,
    /// 4 bool, 5 string) of a value oneof.
    #[inline(always)]
    fn scalar(r: &mut Reader<'a>, slot: u32, wt: u8) -> Result<Raw<'a>, DecodeError> {
        Ok(Raw::Scalar(match slot {
            0 => Scalar::Int(varint_field(r, "int_value", wt)? as u32),
            1 => Scalar::Long(varint_field(r, "long_value", wt)?),
            2 => {
                expect("float_value", FIXED32, wt)?;
                Scalar::Float(f32::from_le_bytes(in_field(r.fixed32(), "float_value")?))
            }
            3 => {
                expect("double_value", FIXED64, wt)?;
                Scalar::Double(f64::from_le_bytes(in_field(r.fixed64(), "double_value")?))
            }
            4 => Scalar::Bool(varint_field(r, "boolean_value", wt)? != 0),
            _ => Scalar::Str(bytes_field(r, "string_value", wt)?),
        }))
    }

    /// The value as sent, for a metric without datatype (copying once).
    fn into_wire(self) -> Result<WireValue, DecodeError> {
        Ok(match self {
            Raw::Scalar(Scalar::Int(v)) => WireValue::Int(v),
            Raw::Scalar(Scalar::Long(v)) => WireValue::Long(v),
            Raw::Scalar(Scalar::Float(v)) => WireValue::Float(v),
            Raw::Scalar(Scalar::Double(v)) => WireValue::Double(v),
            Raw::Scalar(Scalar::Bool(v)) => WireValue::Boolean(v),
            Raw::Scalar(Scalar::Str(b)) => WireValue::String(utf8(b, "string_value")?),
            Raw::Bytes(b) => WireValue::Bytes(b.to_vec()),
            Raw::Extension => return Err(DecodeErrorKind::ExtensionValue.into()),
            // Only scalars and bytes reach here; compound values describe themselves.
            Raw::DataSet(_) | Raw::Template(_) | Raw::PropertySet(_) | Raw::PropertySetList(_) => {
                return Err(DecodeErrorKind::MissingField { field: "datatype" }.into());
            }
        })
    }

    /// A DataSet cell, template parameter or property of basic `datatype`.
    #[inline]
    fn into_basic(self, datatype: DataType) -> Result<BasicValue, DecodeError> {
        match self {
            Raw::Scalar(s) => Ok(basic_from_scalar(datatype, s, owned_str)?),
            Raw::Extension => Err(DecodeErrorKind::ExtensionValue.into()),
            other => Err(ValueError::WrongField {
                datatype,
                field: other.field_name(),
            }
            .into()),
        }
    }
}

fn decode_payload(b: &[u8], ctx: &mut Ctx<'_>) -> Result<Payload, DecodeError> {
    // Count the metrics first: the cap is checked before anything is allocated
    // and the vector is allocated once. Malformed bytes stop the count early;
    // the main loop then reports them.
    let mut count = 0usize;
    let mut scan = Reader::new(b);
    while scan.has_more() {
        let Ok((field, wt)) = scan.key() else { break };
        if field == 2 && wt == LEN {
            count += 1;
        }
        if scan.skip(field, wt).is_err() {
            break;
        }
    }
    ctx.take_metrics(count)?;

    let mut p = Payload {
        metrics: Vec::with_capacity(count),
        ..Payload::default()
    };
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        match field {
            1 => p.timestamp = Some(varint_field(&mut r, "timestamp", wt)?),
            2 => {
                let m = bytes_field(&mut r, "metrics", wt)?;
                let index = p.metrics.len();
                if index >= count {
                    // Only reachable if the count scan stopped early on bad bytes.
                    ctx.take_metrics(1)?;
                }
                // Decoded in place: a metric is too big to move through results.
                p.metrics.push(Metric::empty());
                if let Some(slot) = p.metrics.last_mut() {
                    decode_metric(m, ctx, slot).map_err(|e| in_metric(e, index, m))?;
                }
            }
            3 => p.seq = Some(varint_field(&mut r, "seq", wt)?),
            4 => p.uuid = Some(string_field(&mut r, "uuid", wt)?),
            5 => p.body = Some(bytes_field(&mut r, "body", wt)?.to_vec()),
            _ => skip(&mut r, field, wt)?,
        }
    }
    Ok(p)
}

/// Adds the metric's position, name and alias (read again from its bytes,
/// best effort, only on this error path) to an error.
fn in_metric(e: DecodeError, index: usize, b: &[u8]) -> DecodeError {
    let (mut name, mut alias) = (None, None);
    let mut r = Reader::new(b);
    while r.has_more() {
        let Ok((field, wt)) = r.key() else { break };
        match (field, wt) {
            (1, LEN) => match r.bytes() {
                Ok(s) => name = Some(String::from_utf8_lossy(s).into_owned()),
                Err(_) => break,
            },
            (2, VARINT) => match r.varint() {
                Ok(a) => alias = Some(a),
                Err(_) => break,
            },
            _ => {
                if r.skip(field, wt).is_err() {
                    break;
                }
            }
        }
    }
    e.at(PathSegment::Metric { index, name, alias })
}

/// Decodes one metric into `m`, which starts as [`Metric::empty`].
fn decode_metric(b: &[u8], ctx: &mut Ctx<'_>, m: &mut Metric) -> Result<(), DecodeError> {
    let mut code = None;
    let mut is_null = false;
    let mut raw = None;
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        match field {
            1 => m.name = Some(string_field(&mut r, "name", wt)?),
            2 => m.alias = Some(varint_field(&mut r, "alias", wt)?),
            3 => m.timestamp = Some(varint_field(&mut r, "timestamp", wt)?),
            4 => code = Some(varint_field(&mut r, "datatype", wt)? as u32),
            5 => m.is_historical = varint_field(&mut r, "is_historical", wt)? != 0,
            6 => m.is_transient = varint_field(&mut r, "is_transient", wt)? != 0,
            7 => is_null = varint_field(&mut r, "is_null", wt)? != 0,
            8 => {
                let md = bytes_field(&mut r, "metadata", wt)?;
                let into = m.metadata.get_or_insert_with(Box::default);
                decode_metadata(md, into).map_err(|e| e.at_field("metadata"))?;
            }
            9 => {
                let ps = bytes_field(&mut r, "properties", wt)?;
                let set = ctx
                    .nested(|ctx| decode_property_set(ps, ctx))
                    .map_err(|e| e.at_field("properties"))?;
                match &mut m.properties {
                    // A repeated message field merges: the lists concatenate.
                    Some(existing) => existing.properties.extend(set.properties),
                    None => m.properties = Some(set),
                }
            }
            10..=15 => raw = Some(Raw::scalar(&mut r, field - 10, wt)?),
            16 => raw = Some(Raw::Bytes(bytes_field(&mut r, "bytes_value", wt)?)),
            17 => raw = Some(Raw::DataSet(bytes_field(&mut r, "dataset_value", wt)?)),
            18 => raw = Some(Raw::Template(bytes_field(&mut r, "template_value", wt)?)),
            19 => {
                bytes_field(&mut r, "extension_value", wt)?;
                raw = Some(Raw::Extension);
            }
            _ => skip(&mut r, field, wt)?,
        }
    }
    if let Some(code) = code {
        let t = DataType::from_code(code).ok_or_else(|| {
            DecodeError::new(DecodeErrorKind::UnknownDataType { code }).at_field("datatype")
        })?;
        if !t.is_metric_type() {
            let e = ValueError::NotAllowed {
                datatype: t,
                context: "metric",
            };
            return Err(DecodeError::new(e.into()).at_field("datatype"));
        }
        m.datatype = Some(t);
    }
    m.value = match (is_null, m.datatype, raw) {
        (true, _, _) => MetricValue::Null,
        (false, Some(t), Some(raw)) => {
            let field = raw.field_name();
            MetricValue::Value(metric_value(t, raw, ctx).map_err(|e| e.at_field(field))?)
        }
        (false, None, Some(raw)) => match raw {
            Raw::DataSet(_) => MetricValue::Value(
                metric_value(DataType::DataSet, raw, ctx)
                    .map_err(|e| e.at_field("dataset_value"))?,
            ),
            Raw::Template(_) => MetricValue::Value(
                metric_value(DataType::Template, raw, ctx)
                    .map_err(|e| e.at_field("template_value"))?,
            ),
            other => MetricValue::Untyped(other.into_wire()?),
        },
        (false, Some(datatype), None) => return Err(ValueError::Missing { datatype }.into()),
        (false, None, None) => return Err(DecodeErrorKind::MissingField { field: "value" }.into()),
    };
    Ok(())
}

// Inlined: returning the enums through memory stalls on store forwarding.
#[inline(always)]
fn metric_value(t: DataType, raw: Raw<'_>, ctx: &mut Ctx<'_>) -> Result<Value, DecodeError> {
    let wrong = || {
        DecodeError::new(
            ValueError::WrongField {
                datatype: t,
                field: raw.field_name(),
            }
            .into(),
        )
    };
    Ok(match (t, raw) {
        (DataType::DataSet, Raw::DataSet(b)) => {
            Value::DataSet(Box::new(ctx.nested(|ctx| decode_dataset(b, ctx))?))
        }
        (DataType::Template, Raw::Template(b)) => {
            Value::Template(Box::new(ctx.nested(|ctx| decode_template(b, ctx))?))
        }
        (t, Raw::Bytes(b)) => {
            if t == DataType::StringArray {
                // Each element costs a String however short it is on the wire.
                ctx.take_items(b.iter().filter(|&&c| c == 0).count())?;
            }
            bytes_value(t, b)?
        }
        (t, Raw::Scalar(s)) => value_from_scalar(t, s, owned_str)?,
        _ => return Err(wrong()),
    })
}

fn decode_metadata(b: &[u8], md: &mut MetaData) -> Result<(), DecodeError> {
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        match field {
            1 => md.is_multi_part = Some(varint_field(&mut r, "is_multi_part", wt)? != 0),
            2 => md.content_type = Some(string_field(&mut r, "content_type", wt)?),
            3 => md.size = Some(varint_field(&mut r, "size", wt)?),
            4 => md.seq = Some(varint_field(&mut r, "seq", wt)?),
            5 => md.file_name = Some(string_field(&mut r, "file_name", wt)?),
            6 => md.file_type = Some(string_field(&mut r, "file_type", wt)?),
            7 => md.md5 = Some(string_field(&mut r, "md5", wt)?),
            8 => md.description = Some(string_field(&mut r, "description", wt)?),
            _ => skip(&mut r, field, wt)?,
        }
    }
    Ok(())
}

fn decode_property_set(b: &[u8], ctx: &mut Ctx<'_>) -> Result<PropertySet, DecodeError> {
    let mut keys = Vec::new();
    let mut values = Vec::new();
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        match field {
            1 => {
                ctx.take_item()?;
                keys.push(
                    string_field(&mut r, "keys", wt)
                        .map_err(|e| e.at(PathSegment::Index(keys.len())))?,
                );
            }
            2 => {
                ctx.take_item()?;
                let v = bytes_field(&mut r, "values", wt)?;
                let index = values.len();
                values.push(
                    decode_property_value(v, ctx)
                        .map_err(|e| e.at(PathSegment::Index(index)).at_field("values"))?,
                );
            }
            _ => skip(&mut r, field, wt)?,
        }
    }
    if keys.len() != values.len() {
        return Err(DecodeErrorKind::KeysValuesMismatch {
            keys: keys.len(),
            values: values.len(),
        }
        .into());
    }
    let properties = keys
        .into_iter()
        .zip(values)
        .map(|(key, value)| Property { key, value })
        .collect();
    Ok(PropertySet { properties })
}

fn decode_property_value(b: &[u8], ctx: &mut Ctx<'_>) -> Result<PropertyValue, DecodeError> {
    let mut code = None;
    let mut is_null = false;
    let mut raw = None;
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        match field {
            1 => code = Some(varint_field(&mut r, "type", wt)? as u32),
            2 => is_null = varint_field(&mut r, "is_null", wt)? != 0,
            3..=8 => raw = Some(Raw::scalar(&mut r, field - 3, wt)?),
            9 => {
                raw = Some(Raw::PropertySet(bytes_field(
                    &mut r,
                    "propertyset_value",
                    wt,
                )?))
            }
            10 => {
                raw = Some(Raw::PropertySetList(bytes_field(
                    &mut r,
                    "propertysets_value",
                    wt,
                )?))
            }
            11 => {
                bytes_field(&mut r, "extension_value", wt)?;
                raw = Some(Raw::Extension);
            }
            _ => skip(&mut r, field, wt)?,
        }
    }
    let code = code.ok_or(DecodeErrorKind::MissingField { field: "type" })?;
    let t = DataType::from_code(code).ok_or_else(|| {
        DecodeError::new(DecodeErrorKind::UnknownDataType { code }).at_field("type")
    })?;
    if !t.is_property_type() {
        let e = ValueError::NotAllowed {
            datatype: t,
            context: "property value",
        };
        return Err(DecodeError::new(e.into()).at_field("type"));
    }
    if is_null {
        return Ok(PropertyValue::Null(t));
    }
    let Some(raw) = raw else {
        return Err(ValueError::Missing { datatype: t }.into());
    };
    let field = raw.field_name();
    let value = match (t, raw) {
        (DataType::PropertySet, Raw::PropertySet(b)) => {
            PropertyValue::PropertySet(ctx.nested(|ctx| decode_property_set(b, ctx))?)
        }
        (DataType::PropertySetList, Raw::PropertySetList(b)) => {
            PropertyValue::PropertySetList(ctx.nested(|ctx| decode_property_set_list(b, ctx))?)
        }
        (t, raw) if t.is_basic() => PropertyValue::Value(raw.into_basic(t)?),
        (t, _) => return Err(ValueError::WrongField { datatype: t, field }.into()),
    };
    Ok(value)
}

fn decode_property_set_list(b: &[u8], ctx: &mut Ctx<'_>) -> Result<Vec<PropertySet>, DecodeError> {
    let mut sets = Vec::new();
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        match field {
            1 => {
                ctx.take_item()?;
                let s = bytes_field(&mut r, "propertyset", wt)?;
                let index = sets.len();
                sets.push(
                    ctx.nested(|ctx| decode_property_set(s, ctx))
                        .map_err(|e| e.at(PathSegment::Index(index)).at_field("propertyset"))?,
                );
            }
            _ => skip(&mut r, field, wt)?,
        }
    }
    Ok(sets)
}

fn decode_dataset(b: &[u8], ctx: &mut Ctx<'_>) -> Result<DataSet, DecodeError> {
    // Pass 1: the header (rows may come before types on the wire).
    let mut num_of_columns = None;
    let mut names = Vec::new();
    let mut types = Vec::new();
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        match field {
            1 => num_of_columns = Some(varint_field(&mut r, "num_of_columns", wt)?),
            2 => {
                ctx.take_item()?;
                names.push(string_field(&mut r, "columns", wt)?);
            }
            3 if wt == LEN => {
                // Packed form: accepted as protobuf requires, though proto2 senders
                // write one key per type.
                let mut packed = Reader::new(bytes_field(&mut r, "types", wt)?);
                while packed.has_more() {
                    ctx.take_item()?;
                    types.push(in_field(packed.varint(), "types")? as u32);
                }
            }
            3 => {
                ctx.take_item()?;
                types.push(varint_field(&mut r, "types", wt)? as u32);
            }
            4 => {
                bytes_field(&mut r, "rows", wt)?;
            }
            _ => skip(&mut r, field, wt)?,
        }
    }
    if names.len() != types.len() {
        return Err(DecodeErrorKind::ColumnsTypesMismatch {
            columns: names.len(),
            types: types.len(),
        }
        .into());
    }
    if let Some(declared) = num_of_columns
        && declared != names.len() as u64
    {
        return Err(DecodeErrorKind::NumOfColumnsMismatch {
            declared,
            columns: names.len(),
        }
        .into());
    }
    let mut columns = Vec::with_capacity(names.len());
    for (i, (name, code)) in names.into_iter().zip(types).enumerate() {
        let at = |e: DecodeError| e.at(PathSegment::Index(i)).at_field("types");
        let datatype = DataType::from_code(code)
            .ok_or_else(|| at(DecodeErrorKind::UnknownDataType { code }.into()))?;
        if !datatype.is_basic() {
            return Err(at(ValueError::NotAllowed {
                datatype,
                context: "dataset column",
            }
            .into()));
        }
        columns.push(Column { name, datatype });
    }

    // Pass 2: the rows, typed by their columns.
    let mut rows = Vec::new();
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        if field != 4 {
            skip(&mut r, field, wt)?;
            continue;
        }
        ctx.take_item()?;
        let row = bytes_field(&mut r, "rows", wt)?;
        let index = rows.len();
        rows.push(
            decode_row(row, &columns, ctx)
                .map_err(|e| e.at(PathSegment::Index(index)).at_field("rows"))?,
        );
    }
    Ok(DataSet { columns, rows })
}

fn decode_row(b: &[u8], columns: &[Column], ctx: &mut Ctx<'_>) -> Result<Row, DecodeError> {
    let mut cells = Vec::with_capacity(columns.len());
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        if field != 1 {
            skip(&mut r, field, wt)?;
            continue;
        }
        let index = cells.len();
        let Some(column) = columns.get(index) else {
            return Err(DecodeErrorKind::RowWidth {
                expected: columns.len(),
                found: index + 1,
            }
            .into());
        };
        ctx.take_item()?;
        let cell = bytes_field(&mut r, "elements", wt)?;
        cells.push(
            decode_cell(cell, column.datatype)
                .map_err(|e| e.at(PathSegment::Index(index)).at_field("elements"))?,
        );
    }
    if cells.len() != columns.len() {
        return Err(DecodeErrorKind::RowWidth {
            expected: columns.len(),
            found: cells.len(),
        }
        .into());
    }
    Ok(cells)
}

fn decode_cell(b: &[u8], datatype: DataType) -> Result<Option<BasicValue>, DecodeError> {
    let mut raw = None;
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        match field {
            1..=6 => raw = Some(Raw::scalar(&mut r, field - 1, wt)?),
            7 => {
                bytes_field(&mut r, "extension_value", wt)?;
                raw = Some(Raw::Extension);
            }
            _ => skip(&mut r, field, wt)?,
        }
    }
    // An element with no value is an empty (null) cell.
    raw.map(|raw| raw.into_basic(datatype)).transpose()
}

fn decode_template(b: &[u8], ctx: &mut Ctx<'_>) -> Result<Template, DecodeError> {
    let mut t = Template::default();
    let mut is_definition = None;
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        match field {
            1 => t.version = Some(string_field(&mut r, "version", wt)?),
            2 => {
                let m = bytes_field(&mut r, "metrics", wt)?;
                ctx.take_metrics(1)?;
                let index = t.metrics.len();
                t.metrics.push(Metric::empty());
                if let Some(slot) = t.metrics.last_mut() {
                    decode_metric(m, ctx, slot).map_err(|e| in_metric(e, index, m))?;
                }
            }
            3 => {
                ctx.take_item()?;
                let p = bytes_field(&mut r, "parameters", wt)?;
                let index = t.parameters.len();
                t.parameters.push(
                    decode_parameter(p)
                        .map_err(|e| e.at(PathSegment::Index(index)).at_field("parameters"))?,
                );
            }
            4 => t.template_ref = Some(string_field(&mut r, "template_ref", wt)?),
            5 => is_definition = Some(varint_field(&mut r, "is_definition", wt)? != 0),
            _ => skip(&mut r, field, wt)?,
        }
    }
    match (is_definition, &t.template_ref) {
        (None, _) => Err(DecodeErrorKind::MissingField {
            field: "is_definition",
        }
        .into()),
        (Some(true), Some(_)) => Err(DecodeErrorKind::DefinitionWithRef.into()),
        (Some(false), None) => Err(DecodeErrorKind::InstanceWithoutRef.into()),
        _ => Ok(t),
    }
}

fn decode_parameter(b: &[u8]) -> Result<Parameter, DecodeError> {
    let mut name = None;
    let mut code = None;
    let mut raw = None;
    let mut r = Reader::new(b);
    while r.has_more() {
        let (field, wt) = key(&mut r)?;
        match field {
            1 => name = Some(string_field(&mut r, "name", wt)?),
            2 => code = Some(varint_field(&mut r, "type", wt)? as u32),
            3..=8 => raw = Some(Raw::scalar(&mut r, field - 3, wt)?),
            9 => {
                bytes_field(&mut r, "extension_value", wt)?;
                raw = Some(Raw::Extension);
            }
            _ => skip(&mut r, field, wt)?,
        }
    }
    let name = name.ok_or(DecodeErrorKind::MissingField { field: "name" })?;
    let code = code.ok_or(DecodeErrorKind::MissingField { field: "type" })?;
    let datatype = DataType::from_code(code).ok_or_else(|| {
        DecodeError::new(DecodeErrorKind::UnknownDataType { code }).at_field("type")
    })?;
    if !datatype.is_basic() {
        let e = ValueError::NotAllowed {
            datatype,
            context: "template parameter",
        };
        return Err(DecodeError::new(e.into()).at_field("type"));
    }
    let value = match raw {
        Some(raw) => {
            let field = raw.field_name();
            Some(raw.into_basic(datatype).map_err(|e| e.at_field(field))?)
        }
        None => None,
    };
    Ok(Parameter {
        name,
        datatype,
        value,
    })
}
