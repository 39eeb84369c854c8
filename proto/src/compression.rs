//! Payload compression as the Eclipse Tahu reference implementations do it.
//!
//! The envelope is an ordinary payload whose `uuid` is `SPBV1.0_COMPRESSED`,
//! whose `body` holds the compressed bytes of the encoded inner payload, and
//! which carries one String metric named `algorithm`: `"DEFLATE"` or `"GZIP"`.
//! Tahu compresses with `java.util.zip.Deflater` (and the JavaScript clients with
//! `pako.deflate`), whose "DEFLATE" output is a zlib stream (RFC 1950); that is
//! what is written here. Reading accepts a zlib stream or bare RFC 1951 data, and
//! an envelope without the `algorithm` metric means DEFLATE, as in Tahu. The
//! envelope keeps the inner payload's `seq` (and timestamp) so sequence checks
//! work without inflating.

use std::io::{Read, Write};

use flate2::Compression;

use crate::model::{Metric, MetricValue, Payload};
use crate::value::{Value, WireValue};
use crate::{DecodeError, DecodeErrorKind, DecodeLimits, EncodeError, FieldOrder};

/// The `uuid` that marks a compressed envelope.
pub const COMPRESSED_UUID: &str = "SPBV1.0_COMPRESSED";

/// The name of the envelope metric naming the algorithm.
pub const ALGORITHM_METRIC: &str = "algorithm";

/// A compression algorithm of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// A zlib-wrapped DEFLATE stream (`"DEFLATE"`).
    Deflate,
    /// A gzip member (`"GZIP"`).
    Gzip,
}

impl Algorithm {
    /// The value of the `algorithm` metric.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Deflate => "DEFLATE",
            Algorithm::Gzip => "GZIP",
        }
    }

    /// The algorithm for an `algorithm` metric value.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "DEFLATE" => Some(Algorithm::Deflate),
            "GZIP" => Some(Algorithm::Gzip),
            _ => None,
        }
    }
}

/// A compressed envelope that cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    /// The `algorithm` metric names something else.
    #[error("unknown compression algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// The `algorithm` metric is not a string.
    #[error("the `algorithm` metric is not a String")]
    AlgorithmNotString,
    /// The envelope has no `body`.
    #[error("compressed payload has no body")]
    MissingBody,
    /// The body is not valid compressed data.
    #[error("{algorithm} body is corrupt: {reason}")]
    Corrupt {
        /// The algorithm used.
        algorithm: &'static str,
        /// What the inflater reported.
        reason: String,
    },
    /// The body inflates past [`DecodeLimits::max_decompressed_len`].
    #[error("body inflates past {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The inner payload is itself a compressed envelope.
    #[error("compressed payload inside a compressed payload")]
    Nested,
}

/// A compressed envelope around `payload`.
pub fn compress(payload: &Payload, algorithm: Algorithm) -> Result<Payload, EncodeError> {
    compress_ordered(payload, algorithm, FieldOrder::Schema)
}

/// [`compress`] with the inner payload's metric fields in `order`.
pub fn compress_ordered(
    payload: &Payload,
    algorithm: Algorithm,
    order: FieldOrder,
) -> Result<Payload, EncodeError> {
    let mut inner = Vec::with_capacity(payload.encoded_len());
    payload.encode_ordered(order, &mut inner)?;
    let body = deflate(&inner, algorithm).map_err(|e| EncodeError::Compress(e.to_string()))?;
    Ok(Payload {
        timestamp: payload.timestamp,
        metrics: vec![Metric::new(ALGORITHM_METRIC, algorithm.name())],
        seq: payload.seq,
        uuid: Some(COMPRESSED_UUID.to_owned()),
        body: Some(body),
    })
}

/// The payload inside a compressed envelope; a payload that is not an envelope
/// is returned unchanged.
pub fn decompress(envelope: &Payload, limits: &DecodeLimits) -> Result<Payload, DecodeError> {
    if !is_compressed(envelope) {
        return Ok(envelope.clone());
    }
    let inner = inflate_body(envelope, limits.max_decompressed_len)?;
    let payload = Payload::decode_envelope(&inner, limits)?;
    if is_compressed(&payload) {
        return Err(DecodeError::new(CompressionError::Nested.into()));
    }
    Ok(payload)
}

impl Payload {
    /// Appends the compressed envelope of this payload to `out`.
    pub fn encode_compressed(
        &self,
        algorithm: Algorithm,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        compress(self, algorithm)?.encode(out)
    }

    /// [`Payload::encode_compressed`] with the inner payload's metric fields in `order`.
    pub fn encode_compressed_ordered(
        &self,
        algorithm: Algorithm,
        order: FieldOrder,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        compress_ordered(self, algorithm, order)?.encode(out)
    }
}

/// Whether a payload (as decoded by [`Payload::decode_envelope`]) is a compressed envelope.
pub fn is_compressed(p: &Payload) -> bool {
    p.uuid.as_deref() == Some(COMPRESSED_UUID)
}

/// The algorithm a compressed envelope names (DEFLATE when it names none, as in Tahu).
pub fn algorithm_of(p: &Payload) -> Result<Algorithm, CompressionError> {
    let Some(m) = p.metric(ALGORITHM_METRIC) else {
        return Ok(Algorithm::Deflate);
    };
    let name = match &m.value {
        MetricValue::Value(Value::String(s) | Value::Text(s)) => s,
        MetricValue::Untyped(WireValue::String(s)) => s,
        _ => return Err(CompressionError::AlgorithmNotString),
    };
    Algorithm::from_name(name).ok_or_else(|| CompressionError::UnknownAlgorithm(name.clone()))
}

fn deflate(bytes: &[u8], algorithm: Algorithm) -> std::io::Result<Vec<u8>> {
    match algorithm {
        Algorithm::Deflate => {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
            z.write_all(bytes)?;
            z.finish()
        }
        Algorithm::Gzip => {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
            z.write_all(bytes)?;
            z.finish()
        }
    }
}

/// A zlib stream starts with a 2-byte header whose CM is 8 and which is a
/// multiple of 31; bare DEFLATE data does not in general.
fn has_zlib_header(b: &[u8]) -> bool {
    matches!(b, [cmf, flg, ..] if cmf & 0x0F == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0)
}

pub(crate) fn inflate_body(p: &Payload, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let algorithm = algorithm_of(p).map_err(|e| DecodeError::new(e.into()))?;
    let body = p
        .body
        .as_deref()
        .ok_or_else(|| DecodeError::new(CompressionError::MissingBody.into()))?;
    let raw = || read_capped(flate2::read::DeflateDecoder::new(body), limit);
    let result = match algorithm {
        // Bare DEFLATE data can look like a zlib header by chance: fall back.
        Algorithm::Deflate if has_zlib_header(body) => {
            match read_capped(flate2::read::ZlibDecoder::new(body), limit) {
                Err(CapError::Io(e)) => raw().map_err(|_| CapError::Io(e)),
                other => other,
            }
        }
        Algorithm::Deflate => raw(),
        Algorithm::Gzip => read_capped(flate2::read::GzDecoder::new(body), limit),
    };
    result.map_err(|e| {
        let e = match e {
            CapError::TooLarge => CompressionError::TooLarge { limit },
            CapError::Io(reason) => CompressionError::Corrupt {
                algorithm: algorithm.name(),
                reason,
            },
        };
        DecodeError::new(DecodeErrorKind::Compression(e))
    })
}

enum CapError {
    TooLarge,
    Io(String),
}

/// Reads at most `limit` bytes; one byte more means the body is too large.
fn read_capped(r: impl Read, limit: usize) -> Result<Vec<u8>, CapError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CapError::Io(e.to_string()))?;
    if out.len() > limit {
        return Err(CapError::TooLarge);
    }
    Ok(out)
}
