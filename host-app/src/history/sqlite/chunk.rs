//! The compact encoding of one chunk: the samples of one metric in one time window, in time
//! order, as Gorilla encodes a series but byte-aligned (simpler, and faster to decode):
//!
//! - a header byte per sample; its low bit says a meta byte follows when the value kind,
//!   `is_historical` or the quality differ from the previous sample's (quality then follows
//!   as a zigzag varint), so a steady series pays one byte for all three;
//! - the timestamp as the zigzag varint of its delta-of-delta: a regular series costs one
//!   byte per sample, an irregular one two or three;
//! - a Double as the XOR of its bits with the previous Double's, keeping only the bytes
//!   between the leading and trailing zero bytes (their count and position sit in the
//!   header byte): an unchanged value costs nothing, a slowly moving one two or three bytes;
//! - integers as the zigzag varint of their difference from the previous integer, a Bool
//!   in the header byte, text and bytes as a length and the raw bytes.
//!
//! All arithmetic wraps, so every `i64` timestamp and every value round-trips exactly.
//!
//! A window's samples of one metric may be cut into parts ([`encode_parts`]), each
//! encoded on its own, so every part fits in a b-tree page without an overflow page.

use crate::history::types::{MetricId, Quality, Sample, SampleValue};

/// First byte of every chunk; a future encoding takes another number.
const FORMAT: u8 = 1;

const KIND_NULL: u8 = 0;
const KIND_BOOL: u8 = 1;
const KIND_I64: u8 = 2;
const KIND_U64: u8 = 3;
const KIND_F64: u8 = 4;
const KIND_TEXT: u8 = 5;
const KIND_BYTES: u8 = 6;

/// Header bit: a meta byte follows.
const META: u8 = 0x01;
/// Meta bits: kind in the low three, then `is_historical`, then "quality follows".
const META_HISTORICAL: u8 = 0x08;
const META_QUALITY: u8 = 0x10;

/// Encodes samples of one metric, sorted by `ts` with no two at the same `ts`.
pub(super) fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut encoder = Encoder::new(samples.len());
    for sample in samples {
        encoder.push(sample);
    }
    encoder.out
}

/// Encodes samples as [`encode`] does, cut into parts of at most `max_bytes` each (a
/// single sample larger than that is a part of its own); each part decodes on its own.
/// Returns each part's sample count and bytes.
pub(super) fn encode_parts(samples: &[Sample], max_bytes: usize) -> Vec<(usize, Vec<u8>)> {
    let mut parts = Vec::new();
    let mut encoder = Encoder::new(max_bytes / 2);
    let mut count = 0;
    for sample in samples {
        let len = encoder.out.len();
        encoder.push(sample);
        if encoder.out.len() > max_bytes && count > 0 {
            // The sample starts the next part, encoded against a fresh state.
            encoder.out.truncate(len);
            let full = std::mem::replace(&mut encoder, Encoder::new(max_bytes / 2));
            parts.push((count, full.out));
            encoder.push(sample);
            count = 0;
        }
        count += 1;
    }
    if count > 0 {
        parts.push((count, encoder.out));
    }
    parts
}

/// Appends samples to a chunk's bytes, each encoded against the previous one.
struct Encoder {
    out: Vec<u8>,
    state: State,
}

impl Encoder {
    fn new(samples: usize) -> Self {
        let mut out = Vec::with_capacity(1 + samples * 4);
        out.push(FORMAT);
        Encoder {
            out,
            state: State::default(),
        }
    }

    fn push(&mut self, sample: &Sample) {
        let ts = sample.ts as i64;
        let delta = ts.wrapping_sub(self.state.ts);
        let dod = delta.wrapping_sub(self.state.delta);
        (self.state.ts, self.state.delta) = (ts, delta);

        let kind = kind_of(&sample.value);
        let mut meta = kind;
        if sample.is_historical {
            meta |= META_HISTORICAL;
        }
        let quality_changed = sample.quality.0 != self.state.quality;
        if quality_changed {
            meta |= META_QUALITY;
        }
        let mut header = if meta != self.state.meta { META } else { 0 };
        // The value part of the header, and the bytes that follow the timestamp.
        let mut tail = [0u8; 8];
        let mut tail_len = 0;
        match &sample.value {
            SampleValue::Bool(b) => header |= u8::from(*b) << 1,
            SampleValue::F64(v) => {
                let xor = v.to_bits() ^ self.state.f64_bits;
                self.state.f64_bits = v.to_bits();
                if xor != 0 {
                    let trailing = xor.trailing_zeros() / 8;
                    let len = 8 - xor.leading_zeros() / 8 - trailing;
                    let bytes = (xor >> (trailing * 8)).to_le_bytes();
                    tail[..len as usize].copy_from_slice(&bytes[..len as usize]);
                    tail_len = len as usize;
                    header |= (trailing as u8) << 1 | (len as u8) << 4;
                }
            }
            _ => {}
        }
        self.out.push(header);
        if header & META != 0 {
            self.out
                .push(meta & !META_QUALITY | if quality_changed { META_QUALITY } else { 0 });
            if quality_changed {
                put_varint(&mut self.out, zigzag(i64::from(sample.quality.0)));
            }
            self.state.meta = meta & !META_QUALITY;
            self.state.quality = sample.quality.0;
        }
        put_varint(&mut self.out, zigzag(dod));
        match &sample.value {
            SampleValue::I64(v) => {
                put_varint(&mut self.out, zigzag(v.wrapping_sub(self.state.int)));
                self.state.int = *v;
            }
            SampleValue::U64(v) => {
                let v = *v as i64;
                put_varint(&mut self.out, zigzag(v.wrapping_sub(self.state.int)));
                self.state.int = v;
            }
            SampleValue::Text(s) => put_bytes(&mut self.out, s.as_bytes()),
            SampleValue::Bytes(b) => put_bytes(&mut self.out, b),
            SampleValue::F64(_) => self.out.extend_from_slice(&tail[..tail_len]),
            SampleValue::Null | SampleValue::Bool(_) => {}
        }
        // A meta byte is written only on a change, so "quality changed" must not linger.
        self.state.meta &= !META_QUALITY;
    }
}

/// Decodes a chunk of `metric` written by [`encode`], or says where it is damaged.
#[cfg(test)]
pub(super) fn decode(metric: MetricId, data: &[u8]) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    decode_into(metric, data, &mut out)?;
    Ok(out)
}

/// As [`decode`], appending to `out`.
pub(super) fn decode_into(
    metric: MetricId,
    data: &[u8],
    out: &mut Vec<Sample>,
) -> Result<(), String> {
    let mut r = Reader { data, at: 0 };
    match r.byte()? {
        FORMAT => {}
        other => return Err(format!("chunk format {other} is not one this build reads")),
    }
    let mut state = State::default();
    while r.at < data.len() {
        let header = r.byte()?;
        if header & META != 0 {
            let meta = r.byte()?;
            if meta & META_QUALITY != 0 {
                let q = unzigzag(r.varint()?);
                state.quality =
                    i32::try_from(q).map_err(|_| format!("quality {q} out of range"))?;
            }
            state.meta = meta & !META_QUALITY;
        }
        let dod = unzigzag(r.varint()?);
        state.delta = state.delta.wrapping_add(dod);
        state.ts = state.ts.wrapping_add(state.delta);
        let value = match state.meta & 0x07 {
            KIND_NULL => SampleValue::Null,
            KIND_BOOL => SampleValue::Bool(header & 0x02 != 0),
            KIND_I64 => {
                state.int = state.int.wrapping_add(unzigzag(r.varint()?));
                SampleValue::I64(state.int)
            }
            KIND_U64 => {
                state.int = state.int.wrapping_add(unzigzag(r.varint()?));
                SampleValue::U64(state.int as u64)
            }
            KIND_F64 => {
                let len = usize::from(header >> 4);
                let trailing = u32::from(header >> 1 & 0x07);
                if len > 8 || len + trailing as usize > 8 {
                    return Err(format!("Double of {len} bytes at offset {}", r.at));
                }
                let mut bytes = [0u8; 8];
                bytes[..len].copy_from_slice(r.take(len)?);
                let xor = u64::from_le_bytes(bytes)
                    .checked_shl(trailing * 8)
                    .unwrap_or(0);
                state.f64_bits ^= xor;
                SampleValue::F64(f64::from_bits(state.f64_bits))
            }
            KIND_TEXT => {
                let len = r.len()?;
                let text = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| "text value is not UTF-8".to_owned())?;
                SampleValue::Text(text.to_owned())
            }
            KIND_BYTES => {
                let len = r.len()?;
                SampleValue::Bytes(r.take(len)?.to_vec())
            }
            other => return Err(format!("unknown value kind {other}")),
        };
        if state.ts < 0 {
            return Err(format!("negative timestamp {}", state.ts));
        }
        out.push(Sample {
            metric,
            ts: state.ts as u64,
            value,
            quality: Quality(state.quality),
            is_historical: state.meta & META_HISTORICAL != 0,
        });
    }
    Ok(())
}

/// What each sample is encoded against: the previous sample's.
#[derive(Debug, Clone, Copy)]
struct State {
    ts: i64,
    delta: i64,
    meta: u8,
    quality: i32,
    f64_bits: u64,
    int: i64,
}

impl Default for State {
    fn default() -> Self {
        // No kind has these bits, so the first sample always writes its meta byte.
        State {
            ts: 0,
            delta: 0,
            meta: 0xff,
            quality: Quality::GOOD.0,
            f64_bits: 0,
            int: 0,
        }
    }
}

fn kind_of(value: &SampleValue) -> u8 {
    match value {
        SampleValue::Null => KIND_NULL,
        SampleValue::Bool(_) => KIND_BOOL,
        SampleValue::I64(_) => KIND_I64,
        SampleValue::U64(_) => KIND_U64,
        SampleValue::F64(_) => KIND_F64,
        SampleValue::Text(_) => KIND_TEXT,
        SampleValue::Bytes(_) => KIND_BYTES,
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A cursor over encoded bytes that reports truncation instead of panicking.
pub(super) struct Reader<'a> {
    pub(super) data: &'a [u8],
    pub(super) at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| format!("truncated at offset {}", self.at))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    pub(super) fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint too long at offset {}", self.at))
    }

    fn len(&mut self) -> Result<usize, String> {
        let len = self.varint()?;
        usize::try_from(len).map_err(|_| format!("length {len} out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = SampleValue> {
        prop_oneof![
            Just(SampleValue::Null),
            any::<bool>().prop_map(SampleValue::Bool),
            any::<i64>().prop_map(SampleValue::I64),
            any::<u64>().prop_map(SampleValue::U64),
            any::<f64>().prop_map(SampleValue::F64),
            (-1000i32..1000).prop_map(|v| SampleValue::F64(f64::from(v) * 0.25)),
            ".{0,12}".prop_map(SampleValue::Text),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(SampleValue::Bytes),
        ]
    }

    fn series() -> impl Strategy<Value = Vec<Sample>> {
        proptest::collection::vec(
            (
                0u64..=i64::MAX as u64,
                value(),
                prop_oneof![Just(192), Just(0), Just(500), any::<i32>()],
                any::<bool>(),
            ),
            0..64,
        )
        .prop_map(|rows| {
            let mut samples: Vec<Sample> = rows
                .into_iter()
                .map(|(ts, value, quality, is_historical)| Sample {
                    metric: MetricId(7),
                    ts,
                    value,
                    quality: Quality(quality),
                    is_historical,
                })
                .collect();
            samples.sort_by_key(|s| s.ts);
            samples.dedup_by_key(|s| s.ts);
            samples
        })
    }

    fn same(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.ts == y.ts
                    && x.quality == y.quality
                    && x.is_historical == y.is_historical
                    && match (&x.value, &y.value) {
                        (SampleValue::F64(p), SampleValue::F64(q)) => p.to_bits() == q.to_bits(),
                        (p, q) => p == q,
                    }
            })
    }

    proptest! {
        #[test]
        fn every_series_round_trips_bit_for_bit(samples in series()) {
            let decoded = decode(MetricId(7), &encode(&samples)).unwrap();
            prop_assert!(same(&samples, &decoded), "{samples:?} != {decoded:?}");
        }

        #[test]
        fn damaged_chunks_are_refused_or_decoded_without_panic(
            samples in series(),
            cut in any::<proptest::sample::Index>(),
            flip in any::<u8>(),
        ) {
            let mut bytes = encode(&samples);
            let at = cut.index(bytes.len());
            bytes[at] ^= flip;
            let _ = decode(MetricId(7), &bytes);
            let _ = decode(MetricId(7), &bytes[..at]);
        }

        /// Regular 1 Hz Doubles moving in small steps take a few bytes each.
        #[test]
        fn a_regular_slowly_moving_series_is_compact(start in -1.0e6f64..1.0e6, n in 100u64..600) {
            let samples: Vec<Sample> = (0..n)
                .map(|i| Sample {
                    metric: MetricId(1),
                    ts: 1_700_000_000_000 + i * 1_000,
                    value: SampleValue::F64((start * 4.0).round() / 4.0 + i as f64 * 0.25),
                    quality: Quality::GOOD,
                    is_historical: false,
                })
                .collect();
            let bytes = encode(&samples).len() as f64 / n as f64;
            prop_assert!(bytes <= 6.0, "{bytes} bytes per sample");
        }
    }

    proptest! {
        /// Parts stay within their size (unless one sample alone is larger), keep every
        /// sample in order, and each decodes on its own.
        #[test]
        fn parts_hold_every_sample_within_their_size(samples in series(), max in 1usize..200) {
            let parts = encode_parts(&samples, max);
            let mut decoded = Vec::new();
            for (count, bytes) in &parts {
                let part = decode(MetricId(7), bytes).unwrap();
                prop_assert_eq!(part.len(), *count);
                prop_assert!(bytes.len() <= max || *count == 1, "{} bytes", bytes.len());
                decoded.extend(part);
            }
            prop_assert!(same(&samples, &decoded));
        }
    }

    #[test]
    fn special_doubles_keep_their_bits() {
        let values = [
            f64::NAN,
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
        ];
        let samples: Vec<Sample> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample {
                metric: MetricId(1),
                ts: i as u64,
                value: SampleValue::F64(v),
                quality: Quality::GOOD,
                is_historical: false,
            })
            .collect();
        assert!(same(
            &samples,
            &decode(MetricId(1), &encode(&samples)).unwrap()
        ));
    }
}
