//! A stored sample and its compact encodings.
//!
//! - A value: one tag byte (value kind and quality) then the value's little-endian bytes;
//!   a bool lives in the tag byte alone. The first store layout kept one such blob per row.
//! - A run of samples (one row of the queue or of the write-ahead): per sample the device
//!   (varint, 0 for a node metric, else index + 1), the alias as a zigzag varint delta from
//!   the previous sample's, the timestamp as a zigzag varint delta from the row's base
//!   timestamp, then the value blob (a string's bytes after a varint length). A numeric
//!   sample of a scan costs 8 bytes.

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

/// Bytes a sample counts for beside its value blob, for the byte cap (what a row per
/// sample cost in the first layout; kept so that a configured cap holds as many samples).
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
    #[error("sample run ends inside a sample")]
    Truncated,
    #[error("sample run has a varint longer than 64 bits")]
    Varint,
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

/// Appends the blob of `value` with `quality` to `out` (cleared first): the first layout's
/// value column, written now only by tests.
#[cfg(test)]
pub(crate) fn encode(value: &Value, quality: Quality, out: &mut Vec<u8>) {
    out.clear();
    append_value(value, quality, out);
}

fn append_value(value: &Value, quality: Quality, out: &mut Vec<u8>) {
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
    let quality = quality_of(tag)?;
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

/// Appends `samples` to `out` as a run (see the module docs), timestamps relative to
/// `base_ts`.
pub(crate) fn encode_run<'a>(
    base_ts: u64,
    samples: impl IntoIterator<Item = &'a StoredSample>,
    out: &mut Vec<u8>,
) {
    let mut alias = 0u64;
    for s in samples {
        encode_one(base_ts, &mut alias, s, out);
    }
}

/// Appends one sample of a run; `alias` is the previous sample's (0 before the first).
pub(crate) fn encode_one(base_ts: u64, alias: &mut u64, s: &StoredSample, out: &mut Vec<u8>) {
    put_varint(out, s.device.map_or(0, |d| u64::from(d.0) + 1));
    put_varint(out, zigzag(s.alias.wrapping_sub(*alias) as i64));
    put_varint(out, zigzag(s.timestamp_ms.wrapping_sub(base_ts) as i64));
    *alias = s.alias;
    match &s.value {
        Value::String(text) => {
            out.push(quality_bits(s.quality) << 4 | STRING);
            put_varint(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
        other => append_value(other, s.quality, out),
    }
}

/// The encoded length of one sample in a run (as [`encode_one`] writes it).
pub(crate) fn run_len(base_ts: u64, alias: u64, s: &StoredSample) -> usize {
    let device = varint_len(s.device.map_or(0, |d| u64::from(d.0) + 1));
    let alias = varint_len(zigzag(s.alias.wrapping_sub(alias) as i64));
    let ts = varint_len(zigzag(s.timestamp_ms.wrapping_sub(base_ts) as i64));
    let value = match &s.value {
        Value::String(text) => 1 + varint_len(text.len() as u64) + text.len(),
        other => encoded_len(other),
    };
    device + alias + ts + value
}

/// Reads a run written by [`encode_run`] with the same `base_ts`.
pub(crate) fn decode_run(base_ts: u64, mut blob: &[u8]) -> Result<Vec<StoredSample>, CodecError> {
    let mut out = Vec::new();
    let mut alias = 0u64;
    while !blob.is_empty() {
        let device = get_varint(&mut blob)?;
        alias = alias.wrapping_add(unzigzag(get_varint(&mut blob)?) as u64);
        let timestamp_ms = base_ts.wrapping_add(unzigzag(get_varint(&mut blob)?) as u64);
        let (&tag, rest) = blob.split_first().ok_or(CodecError::Truncated)?;
        let body_len = match tag & 0x0f {
            BOOL_FALSE | BOOL_TRUE => 0,
            I16 | U16 => 2,
            I32 | U32 | F32 => 4,
            I64 | U64 | F64 => 8,
            STRING => {
                blob = rest;
                let n = get_varint(&mut blob)?;
                let n = usize::try_from(n).map_err(|_| CodecError::Truncated)?;
                if blob.len() < n {
                    return Err(CodecError::Truncated);
                }
                let (text, rest) = blob.split_at(n);
                blob = rest;
                let text = std::str::from_utf8(text).map_err(|_| CodecError::Utf8)?;
                out.push(StoredSample {
                    device: device_of(device)?,
                    alias,
                    timestamp_ms,
                    value: Value::String(text.to_owned()),
                    quality: quality_of(tag)?,
                });
                continue;
            }
            other => return Err(CodecError::UnknownKind(other)),
        };
        let end = 1 + body_len;
        if blob.len() < end {
            return Err(CodecError::Truncated);
        }
        let (value, quality) = decode(&blob[..end])?;
        blob = &blob[end..];
        out.push(StoredSample {
            device: device_of(device)?,
            alias,
            timestamp_ms,
            value,
            quality,
        });
    }
    Ok(out)
}

fn quality_of(tag: u8) -> Result<Quality, CodecError> {
    match tag >> 4 {
        0 => Ok(Quality::Good),
        1 => Ok(Quality::Bad),
        2 => Ok(Quality::Stale),
        other => Err(CodecError::UnknownQuality(other)),
    }
}

fn device_of(code: u64) -> Result<Option<DeviceId>, CodecError> {
    match code {
        0 => Ok(None),
        n => u32::try_from(n - 1)
            .map(|d| Some(DeviceId(d)))
            .map_err(|_| CodecError::Varint),
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(blob: &mut &[u8]) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = blob.split_first().ok_or(CodecError::Truncated)?;
        *blob = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CodecError::Varint)
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
    fn a_run_of_every_kind_round_trips_at_its_announced_length() {
        let base = 1_764_000_000_000;
        let values = [
            Value::Bool(true),
            Value::I16(-2),
            Value::U32(4_000_000_000),
            Value::I64(i64::MIN),
            Value::U64(u64::MAX),
            Value::F32(1.5),
            Value::F64(-0.25),
            Value::String("pump 1 ok".into()),
            Value::String(String::new()),
        ];
        let samples: Vec<StoredSample> = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| StoredSample {
                device: (i % 3 != 0).then_some(DeviceId(i as u32 * 1_000)),
                alias: [5, 3, u64::MAX, 0, 900, 901, 1 << 40, 7, 7][i],
                timestamp_ms: [
                    base,
                    base - 5_000,
                    base + 1,
                    u64::MAX,
                    0,
                    base,
                    base,
                    base,
                    base,
                ][i],
                value,
                quality: [Quality::Good, Quality::Bad, Quality::Stale][i % 3],
            })
            .collect();
        let mut out = Vec::new();
        encode_run(base, &samples, &mut out);
        let mut alias = 0;
        let expected: usize = samples
            .iter()
            .map(|s| {
                let n = run_len(base, alias, s);
                alias = s.alias;
                n
            })
            .sum();
        assert_eq!(out.len(), expected);
        assert_eq!(decode_run(base, &out), Ok(samples.clone()));
        // A scan's numeric sample: device, alias step, same timestamp, F32.
        let numeric = StoredSample {
            device: Some(DeviceId(2)),
            ..samples[5].clone()
        };
        let scan = [
            numeric.clone(),
            StoredSample {
                alias: 902,
                ..numeric
            },
        ];
        out.clear();
        encode_run(base, &scan, &mut out);
        assert_eq!(out.len() - run_len(base, 0, &scan[0]), 8);
        // Cut anywhere inside, it is refused, never misread.
        out.clear();
        encode_run(base, &samples, &mut out);
        for cut in 1..out.len() {
            if let Ok(got) = decode_run(base, &out[..cut]) {
                assert!(
                    got.len() < samples.len() && samples.starts_with(&got),
                    "cut {cut}"
                );
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
