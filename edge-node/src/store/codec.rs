//! A stored sample and its compact value encoding: one tag byte (value kind and quality)
//! then the value's little-endian bytes; a bool lives in the tag byte alone.

use crate::modbus::value::Value;
use crate::modbus::{DeviceId, Quality};

/// One sample waiting for delivery: whose metric, when, what, how trusted.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    /// The device the metric belongs to; `None` for a node metric.
    pub device: Option<DeviceId>,
    /// The metric's alias, as announced in the birth.
    pub alias: u64,
    /// The original sample time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub value: Value,
    pub quality: Quality,
}

/// Bytes a row costs beside its value blob (keys, header, cell pointer), for the byte cap.
pub(crate) const ROW_OVERHEAD: usize = 16;

impl StoredSample {
    /// The bytes this sample counts for against `max_bytes` and a batch's `max_bytes`.
    pub fn stored_len(&self) -> usize {
        ROW_OVERHEAD + encoded_len(&self.value)
    }
}

/// A value blob that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty value blob")]
    Empty,
    #[error("unknown value kind {0}")]
    UnknownKind(u8),
    #[error("unknown quality {0}")]
    UnknownQuality(u8),
    #[error("value of kind {kind} needs {expected} bytes, has {found}")]
    Length {
        kind: u8,
        expected: usize,
        found: usize,
    },
    #[error("string value is not UTF-8")]
    Utf8,
}

const BOOL_FALSE: u8 = 0;
const BOOL_TRUE: u8 = 1;
const I16: u8 = 2;
const U16: u8 = 3;
const I32: u8 = 4;
const U32: u8 = 5;
const I64: u8 = 6;
const U64: u8 = 7;
const F32: u8 = 8;
const F64: u8 = 9;
const STRING: u8 = 10;

fn quality_bits(q: Quality) -> u8 {
    match q {
        Quality::Good => 0,
        Quality::Bad => 1,
        Quality::Stale => 2,
    }
}

/// The blob length of a value, tag byte included.
pub(crate) fn encoded_len(value: &Value) -> usize {
    1 + match value {
        Value::Bool(_) => 0,
        Value::I16(_) | Value::U16(_) => 2,
        Value::I32(_) | Value::U32(_) | Value::F32(_) => 4,
        Value::I64(_) | Value::U64(_) | Value::F64(_) => 8,
        Value::String(s) => s.len(),
    }
}

/// Appends the blob of `value` with `quality` to `out` (cleared first).
pub(crate) fn encode(value: &Value, quality: Quality, out: &mut Vec<u8>) {
    out.clear();
    let q = quality_bits(quality) << 4;
    match value {
        Value::Bool(b) => out.push(q | if *b { BOOL_TRUE } else { BOOL_FALSE }),
        Value::I16(v) => push(out, q | I16, &v.to_le_bytes()),
        Value::U16(v) => push(out, q | U16, &v.to_le_bytes()),
        Value::I32(v) => push(out, q | I32, &v.to_le_bytes()),
        Value::U32(v) => push(out, q | U32, &v.to_le_bytes()),
        Value::I64(v) => push(out, q | I64, &v.to_le_bytes()),
        Value::U64(v) => push(out, q | U64, &v.to_le_bytes()),
        Value::F32(v) => push(out, q | F32, &v.to_le_bytes()),
        Value::F64(v) => push(out, q | F64, &v.to_le_bytes()),
        Value::String(s) => push(out, q | STRING, s.as_bytes()),
    }
}

fn push(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(bytes);
}

/// Reads a blob written by [`encode`].
pub(crate) fn decode(blob: &[u8]) -> Result<(Value, Quality), CodecError> {
    let (&tag, body) = blob.split_first().ok_or(CodecError::Empty)?;
    let quality = match tag >> 4 {
        0 => Quality::Good,
        1 => Quality::Bad,
        2 => Quality::Stale,
        other => return Err(CodecError::UnknownQuality(other)),
    };
    let kind = tag & 0x0f;
    let value = match kind {
        BOOL_FALSE => Value::Bool(false),
        BOOL_TRUE => Value::Bool(true),
        I16 => Value::I16(i16::from_le_bytes(fixed(kind, body)?)),
        U16 => Value::U16(u16::from_le_bytes(fixed(kind, body)?)),
        I32 => Value::I32(i32::from_le_bytes(fixed(kind, body)?)),
        U32 => Value::U32(u32::from_le_bytes(fixed(kind, body)?)),
        I64 => Value::I64(i64::from_le_bytes(fixed(kind, body)?)),
        U64 => Value::U64(u64::from_le_bytes(fixed(kind, body)?)),
        F32 => Value::F32(f32::from_le_bytes(fixed(kind, body)?)),
        F64 => Value::F64(f64::from_le_bytes(fixed(kind, body)?)),
        STRING => Value::String(
            std::str::from_utf8(body)
                .map_err(|_| CodecError::Utf8)?
                .to_owned(),
        ),
        other => return Err(CodecError::UnknownKind(other)),
    };
    if matches!(kind, BOOL_FALSE | BOOL_TRUE) && !body.is_empty() {
        return Err(CodecError::Length {
            kind,
            expected: 0,
            found: body.len(),
        });
    }
    Ok((value, quality))
}

fn fixed<const N: usize>(kind: u8, body: &[u8]) -> Result<[u8; N], CodecError> {
    body.try_into().map_err(|_| CodecError::Length {
        kind,
        expected: N,
        found: body.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_quality_round_trips_at_its_announced_length() {
        let values = [
            Value::Bool(false),
            Value::Bool(true),
            Value::I16(-2),
            Value::U16(65535),
            Value::I32(-70000),
            Value::U32(4_000_000_000),
            Value::I64(i64::MIN),
            Value::U64(u64::MAX),
            Value::F32(1.5),
            Value::F64(-0.25),
            Value::String("pump 1 ok".into()),
        ];
        let mut buf = Vec::new();
        for value in values {
            for quality in [Quality::Good, Quality::Bad, Quality::Stale] {
                encode(&value, quality, &mut buf);
                assert_eq!(buf.len(), encoded_len(&value));
                assert_eq!(decode(&buf), Ok((value.clone(), quality)));
            }
        }
    }

    #[test]
    fn damaged_blobs_are_refused_by_name() {
        assert_eq!(decode(&[]), Err(CodecError::Empty));
        assert_eq!(decode(&[0x0f]), Err(CodecError::UnknownKind(15)));
        assert_eq!(decode(&[0x30]), Err(CodecError::UnknownQuality(3)));
        assert_eq!(
            decode(&[I32, 1, 2]),
            Err(CodecError::Length {
                kind: I32,
                expected: 4,
                found: 2
            })
        );
        assert_eq!(decode(&[STRING, 0xff]), Err(CodecError::Utf8));
    }
}
