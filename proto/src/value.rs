//! Typed values and the Sparkplug rules that map them to protobuf fields.
//!
//! The rules the bare schema cannot express live here, once:
//! - Int8/Int16/Int32 are sign-extended into the `uint32` field (Int8 -1 is
//!   0xFFFFFFFF) and truncated back to their width when read;
//! - Int64 travels as two's complement in the `uint64` field;
//! - UInt32 is written to `int_value` and read from `int_value` or `long_value`;
//! - arrays are packed little-endian into `bytes_value` (BooleanArray: a u32 LE
//!   count of booleans then the bits, most significant bit first; StringArray:
//!   each string NUL-terminated; DateTimeArray: u64 LE milliseconds).

use crate::DataType;
use crate::model::{DataSet, Template};

/// The six scalar members every value oneof shares, in schema order (uint32,
/// uint64, float, double, bool, string), generic over how the string is held
/// (borrowed input bytes when decoding, `&str` when encoding).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<S> {
    Int(u32),
    Long(u64),
    Float(f32),
    Double(f64),
    Bool(bool),
    Str(S),
}

impl<S> Scalar<S> {
    /// The metric oneof field name of this member.
    pub(crate) fn field_name(&self) -> &'static str {
        match self {
            Scalar::Int(_) => "int_value",
            Scalar::Long(_) => "long_value",
            Scalar::Float(_) => "float_value",
            Scalar::Double(_) => "double_value",
            Scalar::Bool(_) => "boolean_value",
            Scalar::Str(_) => "string_value",
        }
    }
}

/// The read rules for the basic types, written once and expanded for each
/// target enum (`Value`, `BasicValue`) so no intermediate value is built on the
/// hot path. Extra arms (e.g. UUID for `Value`) come last.
macro_rules! from_scalar {
    ($out:ident, $t:expr, $s:expr, $string:expr, $($extra:tt)*) => {{
        let datatype: DataType = $t;
        match (datatype, $s) {
            // Truncation to the width undoes the sign extension (and accepts
            // senders that did not sign-extend).
            (DataType::Int8, Scalar::Int(v)) => $out::Int8(v as u8 as i8),
            (DataType::Int16, Scalar::Int(v)) => $out::Int16(v as u16 as i16),
            (DataType::Int32, Scalar::Int(v)) => $out::Int32(v as i32),
            (DataType::Int64, Scalar::Long(v)) => $out::Int64(v as i64),
            (DataType::UInt8, Scalar::Int(v)) => $out::UInt8(v as u8),
            (DataType::UInt16, Scalar::Int(v)) => $out::UInt16(v as u16),
            (DataType::UInt32, Scalar::Int(v)) => $out::UInt32(v),
            // UInt32 is also accepted from long_value, if it fits.
            (DataType::UInt32, Scalar::Long(v)) => {
                $out::UInt32(u32::try_from(v).map_err(|_| ValueError::OutOfRange { datatype, value: v })?)
            }
            (DataType::UInt64, Scalar::Long(v)) => $out::UInt64(v),
            (DataType::DateTime, Scalar::Long(v)) => $out::DateTime(v),
            (DataType::Float, Scalar::Float(v)) => $out::Float(v),
            (DataType::Double, Scalar::Double(v)) => $out::Double(v),
            (DataType::Boolean, Scalar::Bool(v)) => $out::Boolean(v),
            (DataType::String, Scalar::Str(s)) => $out::String($string(s)?),
            (DataType::Text, Scalar::Str(s)) => $out::Text($string(s)?),
            $($extra)*
            (datatype, s) => return Err(ValueError::WrongField { datatype, field: s.field_name() }),
        }
    }};
}

/// The write rules for the basic types: Int8/16/32 sign-extended into uint32,
/// Int64 two's complement into uint64. Extra arms for other variants come last.
macro_rules! to_scalar {
    ($enum:ident, $v:expr, $($extra:tt)*) => {
        match $v {
            $enum::Int8(v) => Scalar::Int(i32::from(*v) as u32),
            $enum::Int16(v) => Scalar::Int(i32::from(*v) as u32),
            $enum::Int32(v) => Scalar::Int(*v as u32),
            $enum::Int64(v) => Scalar::Long(*v as u64),
            $enum::UInt8(v) => Scalar::Int(u32::from(*v)),
            $enum::UInt16(v) => Scalar::Int(u32::from(*v)),
            $enum::UInt32(v) => Scalar::Int(*v),
            $enum::UInt64(v) | $enum::DateTime(v) => Scalar::Long(*v),
            $enum::Float(v) => Scalar::Float(*v),
            $enum::Double(v) => Scalar::Double(*v),
            $enum::Boolean(v) => Scalar::Bool(*v),
            $enum::String(s) | $enum::Text(s) => Scalar::Str(s.as_str()),
            $($extra)*
        }
    };
}

/// A metric value of any metric datatype.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[allow(missing_docs)] // Variant names are the spec's datatype names.
pub enum Value {
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    UInt8(u8),
    UInt16(u16),
    UInt32(u32),
    UInt64(u64),
    Float(f32),
    Double(f64),
    Boolean(bool),
    String(String),
    /// Milliseconds since the Unix epoch, UTC.
    DateTime(u64),
    Text(String),
    /// A UUID as its UTF-8 string form.
    Uuid(String),
    DataSet(Box<DataSet>),
    Bytes(Vec<u8>),
    File(Vec<u8>),
    Template(Box<Template>),
    Int8Array(Vec<i8>),
    Int16Array(Vec<i16>),
    Int32Array(Vec<i32>),
    Int64Array(Vec<i64>),
    UInt8Array(Vec<u8>),
    UInt16Array(Vec<u16>),
    UInt32Array(Vec<u32>),
    UInt64Array(Vec<u64>),
    FloatArray(Vec<f32>),
    DoubleArray(Vec<f64>),
    BooleanArray(Vec<bool>),
    /// Strings must not contain NUL (it is the element terminator on the wire).
    StringArray(Vec<String>),
    /// Milliseconds since the Unix epoch, UTC.
    DateTimeArray(Vec<u64>),
}

/// A value of one of the spec's basic types (Int8 ..= Text): what DataSet cells,
/// Template parameters and PropertyValues hold.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[allow(missing_docs)] // Variant names are the spec's datatype names.
pub enum BasicValue {
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    UInt8(u8),
    UInt16(u16),
    UInt32(u32),
    UInt64(u64),
    Float(f32),
    Double(f64),
    Boolean(bool),
    String(String),
    /// Milliseconds since the Unix epoch, UTC.
    DateTime(u64),
    Text(String),
}

/// A value exactly as found in a protobuf `value` oneof, before a datatype gives it
/// meaning. Metrics in NDATA/DDATA may omit `datatype` (it is known from the
/// birth); such values stay in this form until [`WireValue::into_value`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[allow(missing_docs)] // Variants are named after the oneof fields.
pub enum WireValue {
    Int(u32),
    Long(u64),
    Float(f32),
    Double(f64),
    Boolean(bool),
    String(String),
    Bytes(Vec<u8>),
}

/// A value field does not fit the datatype it is declared with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The value sits in a oneof field the datatype does not use.
    #[error("datatype {datatype} cannot be carried in `{field}`")]
    WrongField {
        /// The declared datatype.
        datatype: DataType,
        /// The protobuf field the value was found in.
        field: &'static str,
    },
    /// Not null, yet no value field.
    #[error("datatype {datatype} has no value and is not marked is_null")]
    Missing {
        /// The declared datatype.
        datatype: DataType,
    },
    /// A UInt32 sent in `long_value` that does not fit 32 bits.
    #[error("{value} is out of range for {datatype}")]
    OutOfRange {
        /// The declared datatype.
        datatype: DataType,
        /// The value found.
        value: u64,
    },
    /// A packed array whose byte length is not a multiple of the element width.
    #[error("{datatype} of {len} bytes is not a multiple of {width}-byte elements")]
    ArrayLength {
        /// The array datatype.
        datatype: DataType,
        /// Bytes received.
        len: usize,
        /// Bytes per element.
        width: usize,
    },
    /// A BooleanArray shorter than its 4-byte count.
    #[error("BooleanArray of {len} bytes has no 4-byte count")]
    BooleanArrayNoCount {
        /// Bytes received.
        len: usize,
    },
    /// A BooleanArray whose count does not match the packed bytes that follow.
    #[error("BooleanArray counts {count} booleans but carries {bytes} packed bytes")]
    BooleanArrayCount {
        /// The declared number of booleans.
        count: u32,
        /// Packed bytes after the count.
        bytes: usize,
    },
    /// A StringArray whose last string has no NUL terminator.
    #[error("StringArray element {index} has no NUL terminator")]
    StringArrayUnterminated {
        /// Index of the unterminated element.
        index: usize,
    },
    /// A string that is not UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// The datatype cannot be used here (e.g. PropertySet as a metric datatype).
    #[error("datatype {datatype} is not allowed in a {context}")]
    NotAllowed {
        /// The datatype found.
        datatype: DataType,
        /// Where it was found ("metric", "property value", "dataset column", ...).
        context: &'static str,
    },
}

impl Value {
    /// The datatype this value has.
    pub fn datatype(&self) -> DataType {
        match self {
            Value::Int8(_) => DataType::Int8,
            Value::Int16(_) => DataType::Int16,
            Value::Int32(_) => DataType::Int32,
            Value::Int64(_) => DataType::Int64,
            Value::UInt8(_) => DataType::UInt8,
            Value::UInt16(_) => DataType::UInt16,
            Value::UInt32(_) => DataType::UInt32,
            Value::UInt64(_) => DataType::UInt64,
            Value::Float(_) => DataType::Float,
            Value::Double(_) => DataType::Double,
            Value::Boolean(_) => DataType::Boolean,
            Value::String(_) => DataType::String,
            Value::DateTime(_) => DataType::DateTime,
            Value::Text(_) => DataType::Text,
            Value::Uuid(_) => DataType::Uuid,
            Value::DataSet(_) => DataType::DataSet,
            Value::Bytes(_) => DataType::Bytes,
            Value::File(_) => DataType::File,
            Value::Template(_) => DataType::Template,
            Value::Int8Array(_) => DataType::Int8Array,
            Value::Int16Array(_) => DataType::Int16Array,
            Value::Int32Array(_) => DataType::Int32Array,
            Value::Int64Array(_) => DataType::Int64Array,
            Value::UInt8Array(_) => DataType::UInt8Array,
            Value::UInt16Array(_) => DataType::UInt16Array,
            Value::UInt32Array(_) => DataType::UInt32Array,
            Value::UInt64Array(_) => DataType::UInt64Array,
            Value::FloatArray(_) => DataType::FloatArray,
            Value::DoubleArray(_) => DataType::DoubleArray,
            Value::BooleanArray(_) => DataType::BooleanArray,
            Value::StringArray(_) => DataType::StringArray,
            Value::DateTimeArray(_) => DataType::DateTimeArray,
        }
    }

    /// The value as a [`BasicValue`] if its datatype is a basic one.
    pub fn as_basic(&self) -> Option<BasicValue> {
        Some(match self {
            Value::Int8(v) => BasicValue::Int8(*v),
            Value::Int16(v) => BasicValue::Int16(*v),
            Value::Int32(v) => BasicValue::Int32(*v),
            Value::Int64(v) => BasicValue::Int64(*v),
            Value::UInt8(v) => BasicValue::UInt8(*v),
            Value::UInt16(v) => BasicValue::UInt16(*v),
            Value::UInt32(v) => BasicValue::UInt32(*v),
            Value::UInt64(v) => BasicValue::UInt64(*v),
            Value::Float(v) => BasicValue::Float(*v),
            Value::Double(v) => BasicValue::Double(*v),
            Value::Boolean(v) => BasicValue::Boolean(*v),
            Value::String(v) => BasicValue::String(v.clone()),
            Value::DateTime(v) => BasicValue::DateTime(*v),
            Value::Text(v) => BasicValue::Text(v.clone()),
            _ => return None,
        })
    }

    /// The value as an `f64` for numeric and boolean types (the form a historian
    /// or deadband compares); `None` for strings, bytes, arrays and compounds.
    pub fn as_f64(&self) -> Option<f64> {
        Some(match self {
            Value::Int8(v) => f64::from(*v),
            Value::Int16(v) => f64::from(*v),
            Value::Int32(v) => f64::from(*v),
            Value::Int64(v) => *v as f64,
            Value::UInt8(v) => f64::from(*v),
            Value::UInt16(v) => f64::from(*v),
            Value::UInt32(v) => f64::from(*v),
            Value::UInt64(v) => *v as f64,
            Value::Float(v) => f64::from(*v),
            Value::Double(v) => *v,
            Value::Boolean(v) => f64::from(u8::from(*v)),
            Value::DateTime(v) => *v as f64,
            _ => return None,
        })
    }
}

impl BasicValue {
    /// The datatype this value has.
    pub fn datatype(&self) -> DataType {
        match self {
            BasicValue::Int8(_) => DataType::Int8,
            BasicValue::Int16(_) => DataType::Int16,
            BasicValue::Int32(_) => DataType::Int32,
            BasicValue::Int64(_) => DataType::Int64,
            BasicValue::UInt8(_) => DataType::UInt8,
            BasicValue::UInt16(_) => DataType::UInt16,
            BasicValue::UInt32(_) => DataType::UInt32,
            BasicValue::UInt64(_) => DataType::UInt64,
            BasicValue::Float(_) => DataType::Float,
            BasicValue::Double(_) => DataType::Double,
            BasicValue::Boolean(_) => DataType::Boolean,
            BasicValue::String(_) => DataType::String,
            BasicValue::DateTime(_) => DataType::DateTime,
            BasicValue::Text(_) => DataType::Text,
        }
    }

    /// The protobuf oneof form of this value (the rules of the module docs).
    pub fn to_wire(&self) -> WireValue {
        match self.scalar() {
            Scalar::Int(v) => WireValue::Int(v),
            Scalar::Long(v) => WireValue::Long(v),
            Scalar::Float(v) => WireValue::Float(v),
            Scalar::Double(v) => WireValue::Double(v),
            Scalar::Bool(v) => WireValue::Boolean(v),
            Scalar::Str(s) => WireValue::String(s.to_owned()),
        }
    }

    /// The scalar oneof member this value is written as.
    #[inline]
    pub(crate) fn scalar(&self) -> Scalar<&str> {
        to_scalar!(BasicValue, self,)
    }
}

impl From<BasicValue> for Value {
    #[inline]
    fn from(v: BasicValue) -> Value {
        match v {
            BasicValue::Int8(v) => Value::Int8(v),
            BasicValue::Int16(v) => Value::Int16(v),
            BasicValue::Int32(v) => Value::Int32(v),
            BasicValue::Int64(v) => Value::Int64(v),
            BasicValue::UInt8(v) => Value::UInt8(v),
            BasicValue::UInt16(v) => Value::UInt16(v),
            BasicValue::UInt32(v) => Value::UInt32(v),
            BasicValue::UInt64(v) => Value::UInt64(v),
            BasicValue::Float(v) => Value::Float(v),
            BasicValue::Double(v) => Value::Double(v),
            BasicValue::Boolean(v) => Value::Boolean(v),
            BasicValue::String(v) => Value::String(v),
            BasicValue::DateTime(v) => Value::DateTime(v),
            BasicValue::Text(v) => Value::Text(v),
        }
    }
}

macro_rules! from_prim {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Value { fn from(x: $t) -> Value { Value::$v(x) } }
        impl From<$t> for BasicValue { fn from(x: $t) -> BasicValue { BasicValue::$v(x) } }
    )*};
}
from_prim!(i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64, u8 => UInt8, u16 => UInt16,
    u32 => UInt32, u64 => UInt64, f32 => Float, f64 => Double, bool => Boolean, String => String);

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}
impl From<&str> for BasicValue {
    fn from(s: &str) -> BasicValue {
        BasicValue::String(s.to_owned())
    }
}
impl From<DataSet> for Value {
    fn from(d: DataSet) -> Value {
        Value::DataSet(Box::new(d))
    }
}
impl From<Template> for Value {
    fn from(t: Template) -> Value {
        Value::Template(Box::new(t))
    }
}

impl WireValue {
    /// The protobuf oneof field name this value travels in.
    pub fn field_name(&self) -> &'static str {
        match self {
            WireValue::Int(_) => "int_value",
            WireValue::Long(_) => "long_value",
            WireValue::Float(_) => "float_value",
            WireValue::Double(_) => "double_value",
            WireValue::Boolean(_) => "boolean_value",
            WireValue::String(_) => "string_value",
            WireValue::Bytes(_) => "bytes_value",
        }
    }

    /// Gives the wire value the meaning of `datatype` (e.g. the datatype recorded
    /// from the birth for this alias). DataSet and Template are never in this form:
    /// their fields describe themselves.
    pub fn into_value(self, datatype: DataType) -> Result<Value, ValueError> {
        match self.into_scalar() {
            Ok(s) => value_from_scalar(datatype, s, Ok),
            Err(b) => bytes_value(datatype, b),
        }
    }

    /// Like [`WireValue::into_value`], leaving `self` as it is (strings and
    /// bytes are copied once).
    pub fn to_value(&self, datatype: DataType) -> Result<Value, ValueError> {
        match (self, self.scalar()) {
            (_, Some(s)) => value_from_scalar(datatype, s, |s: &str| Ok(s.to_owned())),
            (WireValue::Bytes(b), None) => bytes_value(datatype, b.as_slice()),
            (_, None) => Err(ValueError::WrongField {
                datatype,
                field: self.field_name(),
            }),
        }
    }

    /// The scalar members; `Err` with the bytes of `bytes_value`.
    fn into_scalar(self) -> Result<Scalar<String>, Vec<u8>> {
        Ok(match self {
            WireValue::Int(v) => Scalar::Int(v),
            WireValue::Long(v) => Scalar::Long(v),
            WireValue::Float(v) => Scalar::Float(v),
            WireValue::Double(v) => Scalar::Double(v),
            WireValue::Boolean(v) => Scalar::Bool(v),
            WireValue::String(s) => Scalar::Str(s),
            WireValue::Bytes(b) => return Err(b),
        })
    }

    /// The scalar member this value is written as; `None` for `bytes_value`.
    pub(crate) fn scalar(&self) -> Option<Scalar<&str>> {
        Some(match self {
            WireValue::Int(v) => Scalar::Int(*v),
            WireValue::Long(v) => Scalar::Long(*v),
            WireValue::Float(v) => Scalar::Float(*v),
            WireValue::Double(v) => Scalar::Double(*v),
            WireValue::Boolean(v) => Scalar::Bool(*v),
            WireValue::String(s) => Scalar::Str(s),
            WireValue::Bytes(_) => return None,
        })
    }
}

/// A metric value of a basic type or UUID from its scalar member.
#[inline(always)]
pub(crate) fn value_from_scalar<S>(
    datatype: DataType,
    s: Scalar<S>,
    string: impl FnOnce(S) -> Result<String, ValueError>,
) -> Result<Value, ValueError> {
    Ok(from_scalar!(Value, datatype, s, string,
        (DataType::Uuid, Scalar::Str(s)) => Value::Uuid(string(s)?),
        (DataType::PropertySet | DataType::PropertySetList, _) => {
            return Err(ValueError::NotAllowed { datatype, context: "metric" })
        }
    ))
}

/// A basic value from its scalar member.
#[inline(always)]
pub(crate) fn basic_from_scalar<S>(
    datatype: DataType,
    s: Scalar<S>,
    string: impl FnOnce(S) -> Result<String, ValueError>,
) -> Result<BasicValue, ValueError> {
    Ok(from_scalar!(BasicValue, datatype, s, string,))
}

/// A metric value carried in `bytes_value`: Bytes, File or a packed array
/// (borrowed input is copied only for Bytes and File).
pub(crate) fn bytes_value<B>(datatype: DataType, b: B) -> Result<Value, ValueError>
where
    B: AsRef<[u8]> + Into<Vec<u8>>,
{
    match datatype {
        DataType::Bytes => Ok(Value::Bytes(b.into())),
        DataType::File => Ok(Value::File(b.into())),
        t if t.is_array() => unpack_array(t, b.as_ref()),
        DataType::PropertySet | DataType::PropertySetList => Err(ValueError::NotAllowed {
            datatype,
            context: "metric",
        }),
        _ => Err(ValueError::WrongField {
            datatype,
            field: "bytes_value",
        }),
    }
}

impl Value {
    /// The scalar member this value is written as; `None` for bytes, arrays,
    /// DataSet and Template.
    #[inline]
    pub(crate) fn scalar(&self) -> Option<Scalar<&str>> {
        Some(to_scalar!(Value, self,
            Value::Uuid(s) => Scalar::Str(s.as_str()),
            _ => return None,
        ))
    }
}

fn chunks<const N: usize>(
    t: DataType,
    b: &[u8],
) -> Result<impl Iterator<Item = [u8; N]> + '_, ValueError> {
    if !b.len().is_multiple_of(N) {
        return Err(ValueError::ArrayLength {
            datatype: t,
            len: b.len(),
            width: N,
        });
    }
    Ok(b.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    }))
}

/// Unpacks the `bytes_value` of an array datatype.
pub(crate) fn unpack_array(t: DataType, b: &[u8]) -> Result<Value, ValueError> {
    Ok(match t {
        DataType::Int8Array => Value::Int8Array(b.iter().map(|&x| x as i8).collect()),
        DataType::UInt8Array => Value::UInt8Array(b.to_vec()),
        DataType::Int16Array => {
            Value::Int16Array(chunks::<2>(t, b)?.map(i16::from_le_bytes).collect())
        }
        DataType::UInt16Array => {
            Value::UInt16Array(chunks::<2>(t, b)?.map(u16::from_le_bytes).collect())
        }
        DataType::Int32Array => {
            Value::Int32Array(chunks::<4>(t, b)?.map(i32::from_le_bytes).collect())
        }
        DataType::UInt32Array => {
            Value::UInt32Array(chunks::<4>(t, b)?.map(u32::from_le_bytes).collect())
        }
        DataType::FloatArray => {
            Value::FloatArray(chunks::<4>(t, b)?.map(f32::from_le_bytes).collect())
        }
        DataType::Int64Array => {
            Value::Int64Array(chunks::<8>(t, b)?.map(i64::from_le_bytes).collect())
        }
        DataType::UInt64Array => {
            Value::UInt64Array(chunks::<8>(t, b)?.map(u64::from_le_bytes).collect())
        }
        DataType::DoubleArray => {
            Value::DoubleArray(chunks::<8>(t, b)?.map(f64::from_le_bytes).collect())
        }
        DataType::DateTimeArray => {
            Value::DateTimeArray(chunks::<8>(t, b)?.map(u64::from_le_bytes).collect())
        }
        DataType::BooleanArray => Value::BooleanArray(unpack_booleans(b)?),
        DataType::StringArray => Value::StringArray(unpack_strings(b)?),
        _ => {
            return Err(ValueError::WrongField {
                datatype: t,
                field: "bytes_value",
            });
        }
    })
}

fn unpack_booleans(b: &[u8]) -> Result<Vec<bool>, ValueError> {
    let Some((count, bits)) = b.split_first_chunk::<4>() else {
        return Err(ValueError::BooleanArrayNoCount { len: b.len() });
    };
    let count = u32::from_le_bytes(*count);
    // The count is checked against the bytes present before anything is allocated.
    if (count as usize).div_ceil(8) != bits.len() {
        return Err(ValueError::BooleanArrayCount {
            count,
            bytes: bits.len(),
        });
    }
    Ok((0..count as usize)
        .map(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
        .collect())
}

fn unpack_strings(b: &[u8]) -> Result<Vec<String>, ValueError> {
    let mut out = Vec::new();
    let mut rest = b;
    while !rest.is_empty() {
        let Some(end) = rest.iter().position(|&c| c == 0) else {
            return Err(ValueError::StringArrayUnterminated { index: out.len() });
        };
        let s = std::str::from_utf8(&rest[..end]).map_err(|_| ValueError::InvalidUtf8)?;
        out.push(s.to_owned());
        rest = &rest[end + 1..];
    }
    Ok(out)
}

/// Bytes the packed form of an array value takes; `None` if not an array.
pub(crate) fn packed_len(v: &Value) -> Option<usize> {
    Some(match v {
        Value::Int8Array(a) => a.len(),
        Value::UInt8Array(a) => a.len(),
        Value::Int16Array(a) => a.len() * 2,
        Value::UInt16Array(a) => a.len() * 2,
        Value::Int32Array(a) => a.len() * 4,
        Value::UInt32Array(a) => a.len() * 4,
        Value::FloatArray(a) => a.len() * 4,
        Value::Int64Array(a) => a.len() * 8,
        Value::UInt64Array(a) => a.len() * 8,
        Value::DoubleArray(a) => a.len() * 8,
        Value::DateTimeArray(a) => a.len() * 8,
        Value::BooleanArray(a) => 4 + a.len().div_ceil(8),
        Value::StringArray(a) => a.iter().map(|s| s.len() + 1).sum(),
        _ => return None,
    })
}

/// Appends the packed form of an array value; does nothing for other values.
/// Callers check StringArray elements for NUL and BooleanArray length first.
pub(crate) fn pack_array(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int8Array(a) => out.extend(a.iter().map(|&x| x as u8)),
        Value::UInt8Array(a) => out.extend_from_slice(a),
        Value::Int16Array(a) => a
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Value::UInt16Array(a) => a
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Value::Int32Array(a) => a
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Value::UInt32Array(a) => a
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Value::FloatArray(a) => a
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Value::Int64Array(a) => a
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Value::UInt64Array(a) => a
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Value::DoubleArray(a) => a
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Value::DateTimeArray(a) => a
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Value::BooleanArray(a) => {
            out.extend_from_slice(&(a.len() as u32).to_le_bytes());
            for chunk in a.chunks(8) {
                let byte =
                    chunk.iter().enumerate().fold(
                        0u8,
                        |acc, (i, &bit)| if bit { acc | (0x80 >> i) } else { acc },
                    );
                out.push(byte);
            }
        }
        Value::StringArray(a) => {
            for s in a {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_ints_sign_extend_and_truncate() {
        assert_eq!(BasicValue::Int8(-1).to_wire(), WireValue::Int(0xFFFF_FFFF));
        assert_eq!(
            BasicValue::Int16(i16::MIN).to_wire(),
            WireValue::Int(0xFFFF_8000)
        );
        assert_eq!(
            WireValue::Int(0xFFFF_FFFF).into_value(DataType::Int8),
            Ok(Value::Int8(-1))
        );
        // A sender that did not sign-extend still reads back right.
        assert_eq!(
            WireValue::Int(0xFF).into_value(DataType::Int8),
            Ok(Value::Int8(-1))
        );
    }

    #[test]
    fn uint32_from_long_value_range_checked() {
        assert_eq!(
            WireValue::Long(u64::from(u32::MAX)).into_value(DataType::UInt32),
            Ok(Value::UInt32(u32::MAX))
        );
        assert!(matches!(
            WireValue::Long(1 << 32).into_value(DataType::UInt32),
            Err(ValueError::OutOfRange { .. })
        ));
    }

    #[test]
    fn wrong_field_is_named() {
        let e = WireValue::Double(1.0)
            .into_value(DataType::Int8)
            .unwrap_err();
        assert_eq!(
            e,
            ValueError::WrongField {
                datatype: DataType::Int8,
                field: "double_value"
            }
        );
    }
}
