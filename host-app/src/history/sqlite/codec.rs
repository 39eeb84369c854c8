//! How a [`SampleValue`] sits in the `samples` table: a `kind` tag beside one dynamically
//! typed `value` column, so each type keeps its natural, compact SQLite encoding.

use rusqlite::types::{ToSqlOutput, Value, ValueRef};

use crate::history::types::SampleValue;

/// `kind` tags. Stored on disk: never renumber.
pub(super) const KIND_NULL: i64 = 0;
pub(super) const KIND_BOOL: i64 = 1;
pub(super) const KIND_I64: i64 = 2;
/// Stored as the i64 with the same bits, so values above `i64::MAX` round-trip exactly.
pub(super) const KIND_U64: i64 = 3;
/// SQLite turns a bound NaN into NULL, so a NULL under this tag reads back as NaN.
pub(super) const KIND_F64: i64 = 4;
pub(super) const KIND_TEXT: i64 = 5;
pub(super) const KIND_BYTES: i64 = 6;

/// The tag and the borrowed column value for one sample value (no allocation).
pub(super) fn encode(value: &SampleValue) -> (i64, ToSqlOutput<'_>) {
    match value {
        SampleValue::Null => (KIND_NULL, ToSqlOutput::Owned(Value::Null)),
        SampleValue::Bool(b) => (KIND_BOOL, ToSqlOutput::Owned(Value::Integer(i64::from(*b)))),
        SampleValue::I64(v) => (KIND_I64, ToSqlOutput::Owned(Value::Integer(*v))),
        SampleValue::U64(v) => (
            KIND_U64,
            ToSqlOutput::Owned(Value::Integer(i64::from_ne_bytes(v.to_ne_bytes()))),
        ),
        SampleValue::F64(v) if v.is_nan() => (KIND_F64, ToSqlOutput::Owned(Value::Null)),
        SampleValue::F64(v) => (KIND_F64, ToSqlOutput::Owned(Value::Real(*v))),
        SampleValue::Text(s) => (
            KIND_TEXT,
            ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        ),
        SampleValue::Bytes(b) => (KIND_BYTES, ToSqlOutput::Borrowed(ValueRef::Blob(b))),
    }
}

/// The value for a stored tag and column, or why they do not fit together.
pub(super) fn decode(kind: i64, value: ValueRef<'_>) -> Result<SampleValue, String> {
    Ok(match (kind, value) {
        (KIND_NULL, ValueRef::Null) => SampleValue::Null,
        (KIND_BOOL, ValueRef::Integer(v)) => SampleValue::Bool(v != 0),
        (KIND_I64, ValueRef::Integer(v)) => SampleValue::I64(v),
        (KIND_U64, ValueRef::Integer(v)) => SampleValue::U64(u64::from_ne_bytes(v.to_ne_bytes())),
        (KIND_F64, ValueRef::Null) => SampleValue::F64(f64::NAN),
        (KIND_F64, ValueRef::Real(v)) => SampleValue::F64(v),
        (KIND_TEXT, ValueRef::Text(t)) => SampleValue::Text(
            String::from_utf8(t.to_vec()).map_err(|_| "text value is not UTF-8".to_owned())?,
        ),
        (KIND_BYTES, ValueRef::Blob(b)) => SampleValue::Bytes(b.to_vec()),
        (kind, value) => {
            return Err(format!(
                "kind {kind} with a stored {:?} value",
                value.data_type()
            ));
        }
    })
}

/// The value as a number for trend aggregates, read straight from the row: Bool as 0/1,
/// `None` for NaN (stored NULL) and non-numeric kinds. Same rules as `SampleValue::as_f64`.
pub(super) fn numeric(kind: i64, value: ValueRef<'_>) -> Option<f64> {
    match (kind, value) {
        (KIND_F64, ValueRef::Real(v)) => Some(v),
        (KIND_I64 | KIND_BOOL, ValueRef::Integer(v)) => Some(v as f64),
        (KIND_U64, ValueRef::Integer(v)) => Some(u64::from_ne_bytes(v.to_ne_bytes()) as f64),
        _ => None,
    }
}

/// A column value copied out of a row into storage that is reused row after row, so a scan
/// can hold on to the latest row of a bucket without allocating per row.
#[derive(Debug, Default)]
pub(super) struct HeldValue {
    held: Held,
    bytes: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy)]
enum Held {
    #[default]
    Null,
    Integer(i64),
    Real(f64),
    Text,
    Blob,
}

impl HeldValue {
    pub(super) fn set(&mut self, value: ValueRef<'_>) {
        self.held = match value {
            ValueRef::Null => Held::Null,
            ValueRef::Integer(v) => Held::Integer(v),
            ValueRef::Real(v) => Held::Real(v),
            ValueRef::Text(t) => {
                self.bytes.clear();
                self.bytes.extend_from_slice(t);
                Held::Text
            }
            ValueRef::Blob(b) => {
                self.bytes.clear();
                self.bytes.extend_from_slice(b);
                Held::Blob
            }
        };
    }

    pub(super) fn as_ref(&self) -> ValueRef<'_> {
        match self.held {
            Held::Null => ValueRef::Null,
            Held::Integer(v) => ValueRef::Integer(v),
            Held::Real(v) => ValueRef::Real(v),
            Held::Text => ValueRef::Text(&self.bytes),
            Held::Blob => ValueRef::Blob(&self.bytes),
        }
    }
}
