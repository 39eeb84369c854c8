//! The SPBV1.0_COMPRESSED envelope, both algorithms, and the inflate cap.

use std::io::Write;

use sparkplug::compression::{ALGORITHM_METRIC, COMPRESSED_UUID};
use sparkplug::{
    Algorithm, CompressionError, DecodeErrorKind, DecodeLimits, Metric, MetricValue, Payload, Seq,
    Value, compress, decompress,
};

fn ddata() -> Payload {
    let mut p = Payload::new(1_700_000_000_000).with_seq(Seq::new(42));
    for i in 0..100u64 {
        p.metrics
            .push(Metric::aliased(i, i as f64 * 0.5).with_timestamp(1_700_000_000_000 + i));
    }
    p
}

#[test]
fn deflate_round_trip() {
    let inner = ddata();
    let envelope = compress(&inner, Algorithm::Deflate).unwrap();
    assert_eq!(envelope.uuid.as_deref(), Some(COMPRESSED_UUID));
    assert_eq!(envelope.seq, Some(42));
    let algo = envelope.metric(ALGORITHM_METRIC).unwrap();
    assert_eq!(algo.typed_value(), Some(&Value::String("DEFLATE".into())));
    // "DEFLATE" is a zlib stream, as java.util.zip.Deflater writes it.
    let body = envelope.body.as_deref().unwrap();
    assert_eq!(body[0] & 0x0F, 8);
    assert_eq!((u16::from(body[0]) << 8 | u16::from(body[1])) % 31, 0);
    let mut bytes = Vec::new();
    inner
        .encode_compressed(Algorithm::Deflate, &mut bytes)
        .unwrap();
    assert!(bytes.len() < inner.encoded_len());
    assert_eq!(Payload::decode(&bytes).unwrap(), inner);
    assert_eq!(
        decompress(&envelope, &DecodeLimits::default()).unwrap(),
        inner
    );
    // decode_envelope leaves it closed.
    let closed = Payload::decode_envelope(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!(closed.uuid.as_deref(), Some(COMPRESSED_UUID));
}

#[test]
fn gzip_round_trip() {
    let inner = ddata();
    let mut bytes = Vec::new();
    inner
        .encode_compressed(Algorithm::Gzip, &mut bytes)
        .unwrap();
    let envelope = Payload::decode_envelope(&bytes, &DecodeLimits::default()).unwrap();
    assert_eq!(envelope.body.as_deref().unwrap()[..2], [0x1F, 0x8B]);
    assert_eq!(
        envelope.metric(ALGORITHM_METRIC).unwrap().typed_value(),
        Some(&Value::String("GZIP".into()))
    );
    assert_eq!(Payload::decode(&bytes).unwrap(), inner);
}

fn envelope_with(body: Vec<u8>, algorithm: Option<&str>) -> Vec<u8> {
    let p = Payload {
        metrics: algorithm
            .map(|a| vec![Metric::new(ALGORITHM_METRIC, a)])
            .unwrap_or_default(),
        uuid: Some(COMPRESSED_UUID.into()),
        body: Some(body),
        ..Payload::default()
    };
    p.encode_to_vec().unwrap()
}

#[test]
fn missing_algorithm_means_deflate_and_raw_deflate_is_read() {
    let inner = ddata().encode_to_vec().unwrap();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&inner).unwrap();
    assert_eq!(
        Payload::decode(&envelope_with(z.finish().unwrap(), None)).unwrap(),
        ddata()
    );
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    raw.write_all(&inner).unwrap();
    assert_eq!(
        Payload::decode(&envelope_with(raw.finish().unwrap(), Some("DEFLATE"))).unwrap(),
        ddata()
    );
}

#[test]
fn decompression_bomb_is_capped() {
    // 8 MiB of zeros compress to a few KiB; the cap stops inflation at 1 MiB
    // (one byte past it), whatever the body claims.
    let zeros = vec![0u8; 8 << 20];
    let limits = DecodeLimits {
        max_decompressed_len: 1 << 20,
        ..DecodeLimits::default()
    };
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&zeros).unwrap();
    let bomb = envelope_with(z.finish().unwrap(), Some("DEFLATE"));
    assert!(bomb.len() < 64 << 10);
    let e = Payload::decode_with(&bomb, &limits).unwrap_err();
    assert_eq!(
        e.kind(),
        &DecodeErrorKind::Compression(CompressionError::TooLarge { limit: 1 << 20 })
    );
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(&zeros).unwrap();
    let bomb = envelope_with(g.finish().unwrap(), Some("GZIP"));
    let e = Payload::decode_with(&bomb, &limits).unwrap_err();
    assert_eq!(
        e.kind(),
        &DecodeErrorKind::Compression(CompressionError::TooLarge { limit: 1 << 20 })
    );
    assert_eq!(DecodeLimits::default().max_decompressed_len, 16 << 20);
}

#[test]
fn broken_envelopes_are_typed_errors() {
    let kind = |b: &[u8]| Payload::decode(b).unwrap_err().kind().clone();
    assert_eq!(
        kind(&envelope_with(vec![1, 2, 3], Some("LZ4"))),
        DecodeErrorKind::Compression(CompressionError::UnknownAlgorithm("LZ4".into()))
    );
    assert!(matches!(
        kind(&envelope_with(
            vec![0x78, 0x9C, 0xFF, 0xFF],
            Some("DEFLATE")
        )),
        DecodeErrorKind::Compression(CompressionError::Corrupt {
            algorithm: "DEFLATE",
            ..
        })
    ));
    assert!(matches!(
        kind(&envelope_with(vec![0x1F, 0x8B, 0], Some("GZIP"))),
        DecodeErrorKind::Compression(CompressionError::Corrupt {
            algorithm: "GZIP",
            ..
        })
    ));
    let no_body = Payload {
        uuid: Some(COMPRESSED_UUID.into()),
        ..Payload::default()
    };
    assert_eq!(
        kind(&no_body.encode_to_vec().unwrap()),
        DecodeErrorKind::Compression(CompressionError::MissingBody)
    );
    let numeric_algo = Payload {
        metrics: vec![Metric::new(ALGORITHM_METRIC, 1i32)],
        uuid: Some(COMPRESSED_UUID.into()),
        body: Some(vec![]),
        ..Payload::default()
    };
    assert_eq!(
        kind(&numeric_algo.encode_to_vec().unwrap()),
        DecodeErrorKind::Compression(CompressionError::AlgorithmNotString)
    );
    // An envelope inside an envelope is refused rather than unwrapped again.
    let inner_envelope = compress(&ddata(), Algorithm::Gzip).unwrap();
    let mut twice = Vec::new();
    inner_envelope
        .encode_compressed(Algorithm::Deflate, &mut twice)
        .unwrap();
    assert_eq!(
        kind(&twice),
        DecodeErrorKind::Compression(CompressionError::Nested)
    );
}

#[test]
fn untyped_algorithm_metric_is_read() {
    let inner = ddata().encode_to_vec().unwrap();
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&inner).unwrap();
    let p = Payload {
        metrics: vec![Metric::new(ALGORITHM_METRIC, "GZIP").without_datatype()],
        uuid: Some(COMPRESSED_UUID.into()),
        body: Some(z.finish().unwrap()),
        ..Payload::default()
    };
    let bytes = p.encode_to_vec().unwrap();
    let envelope = Payload::decode_envelope(&bytes, &DecodeLimits::default()).unwrap();
    assert!(matches!(envelope.metrics[0].value, MetricValue::Untyped(_)));
    assert_eq!(Payload::decode(&bytes).unwrap(), ddata());
}
