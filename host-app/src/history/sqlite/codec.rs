//! How a [`SampleValue`] sat in the `samples` table of schema version 1: a `kind` tag
//! beside one dynamically typed `value` column. Read only, by `migrate`.

use rusqlite::types::ValueRef;

use crate::history::types::SampleValue;

/// `kind` tags. Stored on disk: never renumber.
const KIND_NULL: i64 = 0;
const KIND_BOOL: i64 = 1;
const KIND_I64: i64 = 2;
/// Stored as the i64 with the same bits, so values above `i64::MAX` round-trip exactly.
const KIND_U64: i64 = 3;
/// SQLite turns a bound NaN into NULL, so a NULL under this tag reads back as NaN.
const KIND_F64: i64 = 4;
const KIND_TEXT: i64 = 5;
const KIND_BYTES: i64 = 6;

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
