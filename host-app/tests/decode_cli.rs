//! `host-app decode`: one payload in, JSON out; bad input gets one line and exit status 2.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use serde_json::json;
use sparkplug::{Algorithm, DataType, Metric, Payload, PropertySet, Quality, Seq, Value};

fn decode_stdin(bytes: &[u8], args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_host-app"))
        .arg("decode")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start host-app");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write payload");
    child.wait_with_output().expect("host-app decode")
}

fn sample() -> Payload {
    Payload::new(1_700_000_000_000)
        .with_seq(Seq::new(3))
        .with_metric(
            Metric::new("Tank/Level", Value::Float(42.5))
                .with_alias(7)
                .with_timestamp(1_700_000_000_001)
                .with_properties(
                    PropertySet::new()
                        .with("engUnit", "m")
                        .with("Quality", Quality::Good.code()),
                ),
        )
        .with_metric(Metric::null("Pump/Speed", DataType::Double))
        .with_metric(Metric::new("Raw", Value::Bytes(vec![1, 2, 3])))
        .with_metric(Metric::new(
            "Alarm/Bits",
            Value::BooleanArray(vec![true, false, true]),
        ))
}

#[test]
fn prints_every_field_as_json() {
    let mut bytes = Vec::new();
    sample().encode(&mut bytes).expect("encode");
    let out = decode_stdin(&bytes, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["timestamp"], json!(1_700_000_000_000u64));
    assert_eq!(v["seq"], json!(3));
    let level = &v["metrics"][0];
    assert_eq!(level["name"], json!("Tank/Level"));
    assert_eq!(level["alias"], json!(7));
    assert_eq!(level["timestamp"], json!(1_700_000_000_001u64));
    assert_eq!(level["datatype"], json!("Float"));
    assert_eq!(level["value"], json!(42.5));
    assert_eq!(level["is_historical"], json!(false));
    assert_eq!(level["is_transient"], json!(false));
    assert_eq!(level["is_null"], json!(false));
    assert_eq!(
        level["properties"]["engUnit"],
        json!({"type": "String", "value": "m"})
    );
    assert_eq!(
        level["properties"]["Quality"],
        json!({"type": "Int32", "value": 192})
    );
    let speed = &v["metrics"][1];
    assert_eq!(speed["is_null"], json!(true));
    assert_eq!(speed["value"], json!(null));
    assert_eq!(speed["datatype"], json!("Double"));
    assert_eq!(v["metrics"][2]["value"], json!("AQID"));
    assert_eq!(v["metrics"][3]["value"], json!([true, false, true]));
}

#[test]
fn reads_compressed_payloads() {
    for algorithm in [Algorithm::Deflate, Algorithm::Gzip] {
        let envelope = sparkplug::compress(&sample(), algorithm).expect("compress");
        let mut bytes = Vec::new();
        envelope.encode(&mut bytes).expect("encode");
        let out = decode_stdin(&bytes, &["-"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(v["metrics"][0]["value"], json!(42.5), "{algorithm:?}");
    }
}

#[test]
fn bad_payload_is_one_line_and_status_2() {
    // Field 2 (metrics) claims 100 bytes and the input ends after 2.
    let out = decode_stdin(&[0x12, 100, 0x0a, 0x01], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("host-app decode: payload"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_file_is_one_line_and_status_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_host-app"))
        .args(["decode", "/nonexistent/payload.bin"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/payload.bin"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}
