//! One test per Sparkplug payload rule: how each datatype sits on the wire, what
//! the decoder refuses and how it says so, and the limits it enforces. Raw
//! protobuf messages built with the generated `pb` types stand in for other
//! implementations' output.

use prost::Message;
use sparkplug::pb::payload as raw;
use sparkplug::{
    BasicValue, DataSet, DataType, DecodeErrorKind, DecodeLimits, EncodeError, Metric, MetricValue,
    Parameter, PathSegment, Payload, PropertySet, PropertyValue, Template, Value, ValueError,
};

fn encode(p: &Payload) -> Vec<u8> {
    let mut buf = Vec::new();
    p.encode(&mut buf).expect("encodes");
    buf
}

fn one(m: Metric) -> Payload {
    Payload {
        metrics: vec![m],
        ..Payload::default()
    }
}

/// The raw value oneof of the first metric, as prost reads our bytes.
fn wire_value(m: Metric) -> Option<raw::metric::Value> {
    let pb = sparkplug::pb::Payload::decode(&encode(&one(m))[..]).expect("prost decodes");
    pb.metrics[0].value.clone()
}

fn raw_metric(datatype: Option<u32>, value: Option<raw::metric::Value>) -> Vec<u8> {
    let pb = sparkplug::pb::Payload {
        metrics: vec![raw::Metric {
            name: Some("m".into()),
            datatype,
            value,
            ..Default::default()
        }],
        ..Default::default()
    };
    pb.encode_to_vec()
}

fn decode_value(
    datatype: DataType,
    value: raw::metric::Value,
) -> Result<Value, sparkplug::DecodeError> {
    let p = Payload::decode(&raw_metric(Some(datatype.code()), Some(value)))?;
    Ok(p.metrics[0].typed_value().expect("typed").clone())
}

fn kind(bytes: &[u8]) -> DecodeErrorKind {
    Payload::decode(bytes)
        .expect_err("must not decode")
        .kind()
        .clone()
}

#[test]
fn int8_negative_sign_extends() {
    assert_eq!(
        wire_value(Metric::new("m", -1i8)),
        Some(raw::metric::Value::IntValue(0xFFFF_FFFF))
    );
    assert_eq!(
        wire_value(Metric::new("m", i8::MIN)),
        Some(raw::metric::Value::IntValue(0xFFFF_FF80))
    );
    assert_eq!(
        decode_value(DataType::Int8, raw::metric::Value::IntValue(0xFFFF_FFFF)),
        Ok(Value::Int8(-1))
    );
    assert_eq!(
        decode_value(DataType::Int8, raw::metric::Value::IntValue(0xFFFF_FF80)),
        Ok(Value::Int8(i8::MIN))
    );
    assert_eq!(
        decode_value(DataType::Int8, raw::metric::Value::IntValue(0x7F)),
        Ok(Value::Int8(i8::MAX))
    );
}

#[test]
fn int16_extremes_sign_extend() {
    assert_eq!(
        wire_value(Metric::new("m", i16::MIN)),
        Some(raw::metric::Value::IntValue(0xFFFF_8000))
    );
    assert_eq!(
        wire_value(Metric::new("m", i16::MAX)),
        Some(raw::metric::Value::IntValue(0x7FFF))
    );
    assert_eq!(
        wire_value(Metric::new("m", -1i16)),
        Some(raw::metric::Value::IntValue(0xFFFF_FFFF))
    );
    assert_eq!(
        decode_value(DataType::Int16, raw::metric::Value::IntValue(0xFFFF_8000)),
        Ok(Value::Int16(i16::MIN))
    );
    assert_eq!(
        decode_value(DataType::Int16, raw::metric::Value::IntValue(0x7FFF)),
        Ok(Value::Int16(i16::MAX))
    );
}

#[test]
fn int32_extremes_sign_extend() {
    assert_eq!(
        wire_value(Metric::new("m", i32::MIN)),
        Some(raw::metric::Value::IntValue(0x8000_0000))
    );
    assert_eq!(
        wire_value(Metric::new("m", -1i32)),
        Some(raw::metric::Value::IntValue(0xFFFF_FFFF))
    );
    assert_eq!(
        decode_value(DataType::Int32, raw::metric::Value::IntValue(0x8000_0000)),
        Ok(Value::Int32(i32::MIN))
    );
    assert_eq!(
        decode_value(DataType::Int32, raw::metric::Value::IntValue(0x7FFF_FFFF)),
        Ok(Value::Int32(i32::MAX))
    );
}

#[test]
fn signed_decode_truncates_to_width() {
    // A sender that did not sign-extend (0xFF for Int8 -1) and bits above the
    // width are both read by truncation.
    assert_eq!(
        decode_value(DataType::Int8, raw::metric::Value::IntValue(0xFF)),
        Ok(Value::Int8(-1))
    );
    assert_eq!(
        decode_value(DataType::Int16, raw::metric::Value::IntValue(0x1_FFFE)),
        Ok(Value::Int16(-2))
    );
    // A 10-byte varint (an int64-style writer's -1) is truncated to 32 bits first.
    let bytes = [
        0x12, 0x10, // metrics, 16 bytes
        0x20, 0x01, // datatype Int8
        0x50, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0x01, // int_value, 10-byte -1
        0x0A, 0x01, 0x6D, // name "m"
    ];
    let p = Payload::decode(&bytes).unwrap();
    assert_eq!(p.metrics[0].typed_value(), Some(&Value::Int8(-1)));
}

#[test]
fn int64_twos_complement_in_long_value() {
    assert_eq!(
        wire_value(Metric::new("m", i64::MIN)),
        Some(raw::metric::Value::LongValue(1 << 63))
    );
    assert_eq!(
        wire_value(Metric::new("m", -1i64)),
        Some(raw::metric::Value::LongValue(u64::MAX))
    );
    assert_eq!(
        decode_value(DataType::Int64, raw::metric::Value::LongValue(u64::MAX)),
        Ok(Value::Int64(-1))
    );
}

#[test]
fn uint32_max_from_int_value() {
    assert_eq!(
        wire_value(Metric::new("m", u32::MAX)),
        Some(raw::metric::Value::IntValue(u32::MAX))
    );
    assert_eq!(
        decode_value(
            DataType::UInt32,
            raw::metric::Value::IntValue(4_294_967_295)
        ),
        Ok(Value::UInt32(u32::MAX))
    );
}

#[test]
fn uint32_max_from_long_value() {
    assert_eq!(
        decode_value(
            DataType::UInt32,
            raw::metric::Value::LongValue(4_294_967_295)
        ),
        Ok(Value::UInt32(u32::MAX))
    );
    let e = decode_value(DataType::UInt32, raw::metric::Value::LongValue(1 << 32)).unwrap_err();
    assert_eq!(
        e.kind(),
        &DecodeErrorKind::Value(ValueError::OutOfRange {
            datatype: DataType::UInt32,
            value: 1 << 32
        })
    );
}

#[test]
fn unsigned_and_64_bit_types_use_their_fields() {
    assert_eq!(
        wire_value(Metric::new("m", 200u8)),
        Some(raw::metric::Value::IntValue(200))
    );
    assert_eq!(
        wire_value(Metric::new("m", 65535u16)),
        Some(raw::metric::Value::IntValue(65535))
    );
    assert_eq!(
        wire_value(Metric::new("m", u64::MAX)),
        Some(raw::metric::Value::LongValue(u64::MAX))
    );
    assert_eq!(
        wire_value(Metric::new("m", Value::DateTime(1_700_000_000_000))),
        Some(raw::metric::Value::LongValue(1_700_000_000_000))
    );
    assert_eq!(
        wire_value(Metric::new("m", 1.5f32)),
        Some(raw::metric::Value::FloatValue(1.5))
    );
    assert_eq!(
        wire_value(Metric::new("m", 2.5f64)),
        Some(raw::metric::Value::DoubleValue(2.5))
    );
    assert_eq!(
        wire_value(Metric::new("m", true)),
        Some(raw::metric::Value::BooleanValue(true))
    );
    assert_eq!(
        wire_value(Metric::new("m", Value::Text("t".into()))),
        Some(raw::metric::Value::StringValue("t".into()))
    );
    assert_eq!(
        wire_value(Metric::new("m", Value::Uuid("u".into()))),
        Some(raw::metric::Value::StringValue("u".into()))
    );
    assert_eq!(
        wire_value(Metric::new("m", Value::File(vec![9]))),
        Some(raw::metric::Value::BytesValue(vec![9]))
    );
}

#[test]
fn boolean_array_layout() {
    let bits = |v: Vec<bool>| wire_value(Metric::new("m", Value::BooleanArray(v)));
    // The spec's example.
    let spec = vec![
        false, false, true, true, false, true, false, false, true, true, false, true,
    ];
    assert_eq!(
        bits(spec.clone()),
        Some(raw::metric::Value::BytesValue(vec![
            0x0C, 0, 0, 0, 0x34, 0xD0
        ]))
    );
    assert_eq!(
        bits(vec![]),
        Some(raw::metric::Value::BytesValue(vec![0, 0, 0, 0]))
    );
    assert_eq!(
        bits(vec![true; 8]),
        Some(raw::metric::Value::BytesValue(vec![8, 0, 0, 0, 0xFF]))
    );
    assert_eq!(
        bits(vec![true]),
        Some(raw::metric::Value::BytesValue(vec![1, 0, 0, 0, 0x80]))
    );
    assert_eq!(
        decode_value(
            DataType::BooleanArray,
            raw::metric::Value::BytesValue(vec![0x0C, 0, 0, 0, 0x34, 0xD0])
        ),
        Ok(Value::BooleanArray(spec))
    );
    // The count must match the packed bytes; a count larger than the bytes is
    // refused before anything is allocated.
    let short = decode_value(
        DataType::BooleanArray,
        raw::metric::Value::BytesValue(vec![0xFF, 0xFF, 0xFF, 0xFF, 1]),
    );
    assert_eq!(
        short.unwrap_err().kind(),
        &DecodeErrorKind::Value(ValueError::BooleanArrayCount {
            count: u32::MAX,
            bytes: 1
        })
    );
    let no_count = decode_value(
        DataType::BooleanArray,
        raw::metric::Value::BytesValue(vec![1, 0]),
    );
    assert_eq!(
        no_count.unwrap_err().kind(),
        &DecodeErrorKind::Value(ValueError::BooleanArrayNoCount { len: 2 })
    );
}

#[test]
fn string_array_layout() {
    let packed = |v: Vec<&str>| {
        wire_value(Metric::new(
            "m",
            Value::StringArray(v.into_iter().map(String::from).collect()),
        ))
    };
    assert_eq!(
        packed(vec!["ABC", "hello"]),
        Some(raw::metric::Value::BytesValue(b"ABC\0hello\0".to_vec()))
    );
    assert_eq!(
        packed(vec!["", "x"]),
        Some(raw::metric::Value::BytesValue(b"\0x\0".to_vec()))
    );
    assert_eq!(packed(vec![]), Some(raw::metric::Value::BytesValue(vec![])));
    assert_eq!(
        decode_value(
            DataType::StringArray,
            raw::metric::Value::BytesValue(b"ABC\0hello\0".to_vec())
        ),
        Ok(Value::StringArray(vec!["ABC".into(), "hello".into()]))
    );
    let unterminated = decode_value(
        DataType::StringArray,
        raw::metric::Value::BytesValue(b"ABC\0hel".to_vec()),
    );
    assert_eq!(
        unterminated.unwrap_err().kind(),
        &DecodeErrorKind::Value(ValueError::StringArrayUnterminated { index: 1 })
    );
    // NUL inside an element cannot be represented: the encoder refuses it.
    let p = one(Metric::new("m", Value::StringArray(vec!["a\0b".into()])));
    let mut buf = vec![7];
    let e = p.encode(&mut buf).unwrap_err();
    assert!(
        matches!(e, EncodeError::InMetric { ref source, .. } if **source == EncodeError::NulInStringArray { index: 0 })
    );
    assert_eq!(buf, vec![7], "a failed encode leaves the buffer as it was");
}

#[test]
fn numeric_arrays_pack_little_endian() {
    let bytes = |v: Value| match wire_value(Metric::new("m", v)) {
        Some(raw::metric::Value::BytesValue(b)) => b,
        other => panic!("not bytes: {other:?}"),
    };
    assert_eq!(bytes(Value::Int8Array(vec![-23, 123])), vec![0xE9, 0x7B]);
    assert_eq!(bytes(Value::UInt8Array(vec![23, 250])), vec![23, 250]);
    assert_eq!(
        bytes(Value::Int16Array(vec![-30000, 30000])),
        [(-30000i16).to_le_bytes(), 30000i16.to_le_bytes()].concat()
    );
    assert_eq!(bytes(Value::UInt16Array(vec![0x1234])), vec![0x34, 0x12]);
    assert_eq!(bytes(Value::Int32Array(vec![-1])), vec![0xFF; 4]);
    assert_eq!(
        bytes(Value::UInt32Array(vec![0x0102_0304])),
        vec![4, 3, 2, 1]
    );
    assert_eq!(
        bytes(Value::Int64Array(vec![-2])),
        [0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
    );
    assert_eq!(bytes(Value::UInt64Array(vec![1])), [1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        bytes(Value::FloatArray(vec![1.0])),
        [0x00, 0x00, 0x80, 0x3F]
    );
    assert_eq!(
        bytes(Value::DoubleArray(vec![1.0])),
        [0, 0, 0, 0, 0, 0, 0xF0, 0x3F]
    );
    assert_eq!(
        bytes(Value::DateTimeArray(vec![0x0102])),
        [2, 1, 0, 0, 0, 0, 0, 0]
    );
    let e = decode_value(
        DataType::Int32Array,
        raw::metric::Value::BytesValue(vec![1, 2, 3]),
    )
    .unwrap_err();
    assert_eq!(
        e.kind(),
        &DecodeErrorKind::Value(ValueError::ArrayLength {
            datatype: DataType::Int32Array,
            len: 3,
            width: 4
        })
    );
}

#[test]
fn null_metric_carries_no_value() {
    let pb = sparkplug::pb::Payload::decode(&encode(&one(Metric::null("m", DataType::Double)))[..])
        .unwrap();
    assert_eq!(pb.metrics[0].is_null, Some(true));
    assert_eq!(pb.metrics[0].value, None);
    assert_eq!(pb.metrics[0].datatype, Some(10));
    // is_null wins over a stray value from a sloppy sender.
    let sloppy = sparkplug::pb::Payload {
        metrics: vec![raw::Metric {
            name: Some("m".into()),
            datatype: Some(10),
            is_null: Some(true),
            value: Some(raw::metric::Value::DoubleValue(0.0)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let p = Payload::decode(&sloppy.encode_to_vec()).unwrap();
    assert_eq!(p.metrics[0].value, MetricValue::Null);
    // Not null and no value is an error naming the datatype.
    let e = Payload::decode(&raw_metric(Some(10), None)).unwrap_err();
    assert_eq!(
        e.kind(),
        &DecodeErrorKind::Value(ValueError::Missing {
            datatype: DataType::Double
        })
    );
}

#[test]
fn metric_datatype_is_a_known_metric_code() {
    assert_eq!(
        kind(&raw_metric(Some(0), Some(raw::metric::Value::IntValue(1)))),
        DecodeErrorKind::UnknownDataType { code: 0 }
    );
    assert_eq!(
        kind(&raw_metric(Some(35), Some(raw::metric::Value::IntValue(1)))),
        DecodeErrorKind::UnknownDataType { code: 35 }
    );
    assert_eq!(
        kind(&raw_metric(Some(20), Some(raw::metric::Value::IntValue(1)))),
        DecodeErrorKind::Value(ValueError::NotAllowed {
            datatype: DataType::PropertySet,
            context: "metric"
        })
    );
}

#[test]
fn wrong_value_field_error_names_metric_and_field() {
    let pb = sparkplug::pb::Payload {
        metrics: vec![
            raw::Metric {
                alias: Some(1),
                datatype: Some(10),
                value: Some(raw::metric::Value::DoubleValue(1.0)),
                ..Default::default()
            },
            raw::Metric {
                name: Some("Inputs/A".into()),
                alias: Some(2),
                datatype: Some(1),
                value: Some(raw::metric::Value::DoubleValue(1.0)),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let e = Payload::decode(&pb.encode_to_vec()).unwrap_err();
    assert_eq!(
        e.kind(),
        &DecodeErrorKind::Value(ValueError::WrongField {
            datatype: DataType::Int8,
            field: "double_value"
        })
    );
    let path: Vec<_> = e.path().cloned().collect();
    assert_eq!(
        path,
        vec![
            PathSegment::Metric {
                index: 1,
                name: Some("Inputs/A".into()),
                alias: Some(2)
            },
            PathSegment::Field("double_value")
        ]
    );
    assert_eq!(
        e.to_string(),
        "metrics[1] (name \"Inputs/A\", alias 2).double_value: datatype Int8 cannot be carried in `double_value`"
    );
}

#[test]
fn truncated_and_malformed_bytes_are_typed_errors() {
    let good = encode(&one(Metric::new("Inputs/A", 1.5f64).with_timestamp(5)));
    for cut in 1..good.len() {
        assert!(
            Payload::decode(&good[..cut]).is_err(),
            "prefix of {cut} bytes decoded"
        );
    }
    assert_eq!(kind(&[0x12, 0x05, 0x0A]), DecodeErrorKind::Truncated);
    assert_eq!(kind(&[0x00]), DecodeErrorKind::InvalidTag);
    assert_eq!(
        kind(&[0x37]),
        DecodeErrorKind::InvalidWireType { wire_type: 7 }
    );
    assert_eq!(
        kind(&[0x0F]),
        DecodeErrorKind::WrongWireType {
            field: "timestamp",
            expected: 0,
            found: 7
        }
    );
    assert_eq!(
        kind(&[0x0A, 0x00]),
        DecodeErrorKind::WrongWireType {
            field: "timestamp",
            expected: 0,
            found: 2
        }
    );
    assert_eq!(
        kind(&[0x12, 0x03, 0x0A, 0x01, 0xFF]),
        DecodeErrorKind::InvalidUtf8 { field: "name" }
    );
    // Unknown fields (extensions) are skipped.
    let mut with_ext = good.clone();
    with_ext.extend_from_slice(&[0x30, 0x01, 0x3A, 0x01, 0x00]);
    assert_eq!(
        Payload::decode(&with_ext).unwrap(),
        Payload::decode(&good).unwrap()
    );
}

#[test]
fn property_set_keys_and_values_same_length() {
    let pb = sparkplug::pb::Payload {
        metrics: vec![raw::Metric {
            name: Some("m".into()),
            datatype: Some(11),
            properties: Some(raw::PropertySet {
                keys: vec!["a".into(), "b".into()],
                values: vec![raw::PropertyValue {
                    r#type: Some(11),
                    value: Some(raw::property_value::Value::BooleanValue(true)),
                    ..Default::default()
                }],
            }),
            value: Some(raw::metric::Value::BooleanValue(true)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let e = Payload::decode(&pb.encode_to_vec()).unwrap_err();
    assert_eq!(
        e.kind(),
        &DecodeErrorKind::KeysValuesMismatch { keys: 2, values: 1 }
    );
    assert!(
        e.to_string()
            .starts_with("metrics[0] (name \"m\").properties: "),
        "{e}"
    );
}

#[test]
fn property_value_types_and_quality() {
    let pv = |t: u32, v: raw::property_value::Value| {
        let pb = sparkplug::pb::Payload {
            metrics: vec![raw::Metric {
                name: Some("m".into()),
                datatype: Some(11),
                properties: Some(raw::PropertySet {
                    keys: vec!["Quality".into()],
                    values: vec![raw::PropertyValue {
                        r#type: Some(t),
                        value: Some(v),
                        ..Default::default()
                    }],
                }),
                value: Some(raw::metric::Value::BooleanValue(true)),
                ..Default::default()
            }],
            ..Default::default()
        };
        Payload::decode(&pb.encode_to_vec())
    };
    let good = pv(3, raw::property_value::Value::IntValue(192)).unwrap();
    let props = good.metrics[0].properties.as_ref().unwrap();
    assert_eq!(props.quality(), Ok(Some(sparkplug::Quality::Good)));
    let stale = pv(3, raw::property_value::Value::IntValue(500)).unwrap();
    assert_eq!(
        stale.metrics[0].properties.as_ref().unwrap().quality(),
        Ok(Some(sparkplug::Quality::Stale))
    );
    let odd = pv(3, raw::property_value::Value::IntValue(7)).unwrap();
    assert_eq!(
        odd.metrics[0].properties.as_ref().unwrap().quality(),
        Err(sparkplug::QualityError::UnknownCode(7))
    );
    let wrong_type = pv(7, raw::property_value::Value::IntValue(192)).unwrap();
    assert_eq!(
        wrong_type.metrics[0].properties.as_ref().unwrap().quality(),
        Err(sparkplug::QualityError::WrongType(DataType::UInt32))
    );
    // UUID is not a property type; a Boolean in int_value is the wrong field.
    assert_eq!(
        pv(15, raw::property_value::Value::StringValue("u".into()))
            .unwrap_err()
            .kind(),
        &DecodeErrorKind::Value(ValueError::NotAllowed {
            datatype: DataType::Uuid,
            context: "property value"
        })
    );
    assert_eq!(
        pv(11, raw::property_value::Value::IntValue(1))
            .unwrap_err()
            .kind(),
        &DecodeErrorKind::Value(ValueError::WrongField {
            datatype: DataType::Boolean,
            field: "int_value"
        })
    );
}

#[test]
fn property_value_type_is_required() {
    let pb = sparkplug::pb::Payload {
        metrics: vec![raw::Metric {
            name: Some("m".into()),
            datatype: Some(11),
            properties: Some(raw::PropertySet {
                keys: vec!["engUnit".into()],
                values: vec![raw::PropertyValue {
                    r#type: None,
                    value: Some(raw::property_value::Value::StringValue("degC".into())),
                    ..Default::default()
                }],
            }),
            value: Some(raw::metric::Value::BooleanValue(true)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let e = Payload::decode(&pb.encode_to_vec()).unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::MissingField { field: "type" });
    assert!(
        e.to_string()
            .starts_with("metrics[0] (name \"m\").properties.values[0]: "),
        "{e}"
    );
}

#[test]
fn eng_unit_properties_round_trip() {
    let props = PropertySet::new()
        .with_eng_unit("degC")
        .with_eng_range(-40.0, 125.0);
    let p = one(Metric::new("T", 21.5f64).with_properties(props));
    let back = Payload::decode(&encode(&p)).unwrap();
    let props = back.metrics[0].properties.as_ref().unwrap();
    assert_eq!(props.eng_unit(), Some("degC"));
    assert_eq!(props.eng_range(), Some((-40.0, 125.0)));
}

fn raw_dataset(ds: raw::DataSet) -> Vec<u8> {
    raw_metric(Some(16), Some(raw::metric::Value::DatasetValue(ds)))
}

fn cell(v: raw::data_set::data_set_value::Value) -> raw::data_set::DataSetValue {
    raw::data_set::DataSetValue { value: Some(v) }
}

#[test]
fn dataset_shape_is_validated() {
    use raw::data_set::data_set_value::Value as C;
    let base = raw::DataSet {
        num_of_columns: Some(2),
        columns: vec!["a".into(), "b".into()],
        types: vec![3, 12],
        rows: vec![raw::data_set::Row {
            elements: vec![
                cell(C::IntValue(0xFFFF_FFFF)),
                cell(C::StringValue("x".into())),
            ],
        }],
    };
    let p = Payload::decode(&raw_dataset(base.clone())).unwrap();
    let Some(Value::DataSet(ds)) = p.metrics[0].typed_value() else {
        panic!("not a dataset")
    };
    assert_eq!(
        ds.rows[0],
        vec![
            Some(BasicValue::Int32(-1)),
            Some(BasicValue::String("x".into()))
        ]
    );

    let mut narrow = base.clone();
    narrow.rows[0].elements.pop();
    let e = Payload::decode(&raw_dataset(narrow)).unwrap_err();
    assert_eq!(
        e.kind(),
        &DecodeErrorKind::RowWidth {
            expected: 2,
            found: 1
        }
    );
    assert!(e.to_string().contains("dataset_value.rows[0]"), "{e}");

    let mut wide = base.clone();
    wide.rows[0].elements.push(cell(C::IntValue(1)));
    assert_eq!(
        kind(&raw_dataset(wide)),
        DecodeErrorKind::RowWidth {
            expected: 2,
            found: 3
        }
    );

    let mut mistyped = base.clone();
    mistyped.rows[0].elements[1] = cell(C::DoubleValue(1.0));
    assert_eq!(
        kind(&raw_dataset(mistyped)),
        DecodeErrorKind::Value(ValueError::WrongField {
            datatype: DataType::String,
            field: "double_value"
        })
    );

    let mut types_short = base.clone();
    types_short.types.pop();
    assert_eq!(
        kind(&raw_dataset(types_short)),
        DecodeErrorKind::ColumnsTypesMismatch {
            columns: 2,
            types: 1
        }
    );

    let mut count_wrong = base.clone();
    count_wrong.num_of_columns = Some(3);
    assert_eq!(
        kind(&raw_dataset(count_wrong)),
        DecodeErrorKind::NumOfColumnsMismatch {
            declared: 3,
            columns: 2
        }
    );

    let mut not_basic = base.clone();
    not_basic.types[1] = 17;
    assert_eq!(
        kind(&raw_dataset(not_basic)),
        DecodeErrorKind::Value(ValueError::NotAllowed {
            datatype: DataType::Bytes,
            context: "dataset column"
        })
    );

    // Empty cells are nulls.
    let mut empty_cell = base;
    empty_cell.rows[0].elements[0] = raw::data_set::DataSetValue { value: None };
    let p = Payload::decode(&raw_dataset(empty_cell)).unwrap();
    let Some(Value::DataSet(ds)) = p.metrics[0].typed_value() else {
        panic!("not a dataset")
    };
    assert_eq!(ds.rows[0][0], None);
}

#[test]
fn dataset_packed_types_accepted() {
    // DataSet { num_of_columns: 1, columns: ["a"], types: packed [9] } with no rows.
    let ds = [0x08, 0x01, 0x12, 0x01, b'a', 0x1A, 0x01, 0x09];
    let mut metric = vec![0x0A, 0x01, b'd', 0x20, 0x10, 0x8A, 0x01, ds.len() as u8];
    metric.extend_from_slice(&ds);
    let mut payload = vec![0x12, metric.len() as u8];
    payload.extend_from_slice(&metric);
    let p = Payload::decode(&payload).unwrap();
    let Some(Value::DataSet(ds)) = p.metrics[0].typed_value() else {
        panic!("not a dataset")
    };
    assert_eq!(ds.columns[0].datatype, DataType::Float);
}

#[test]
fn dataset_builder_validates_rows() {
    let mut ds = DataSet::new([("a".to_owned(), DataType::Int8)]).unwrap();
    assert!(ds.push_row(vec![Some(BasicValue::Int8(1))]).is_ok());
    assert_eq!(
        ds.push_row(vec![Some(BasicValue::Int16(1))]),
        Err(sparkplug::DataSetError::CellType {
            row: 1,
            column: 0,
            expected: DataType::Int8,
            found: DataType::Int16
        })
    );
    assert_eq!(
        ds.push_row(vec![]),
        Err(sparkplug::DataSetError::RowWidth {
            row: 1,
            expected: 1,
            found: 0
        })
    );
    assert!(DataSet::new([("b".to_owned(), DataType::Template)]).is_err());
    // The encoder refuses a dataset made invalid by hand.
    ds.rows.push(vec![]);
    assert!(matches!(
        one(Metric::new("d", ds)).encode(&mut Vec::new()),
        Err(EncodeError::InMetric { .. })
    ));
}

fn raw_template(t: raw::Template) -> Vec<u8> {
    raw_metric(Some(19), Some(raw::metric::Value::TemplateValue(t)))
}

#[test]
fn template_definition_and_instance_rules() {
    let member = raw::Metric {
        name: Some("x".into()),
        datatype: Some(3),
        value: Some(raw::metric::Value::IntValue(1)),
        ..Default::default()
    };
    let def = raw::Template {
        metrics: vec![member.clone()],
        is_definition: Some(true),
        ..Default::default()
    };
    let p = Payload::decode(&raw_template(def.clone())).unwrap();
    let Some(Value::Template(t)) = p.metrics[0].typed_value() else {
        panic!("not a template")
    };
    assert!(t.is_definition());

    let mut def_with_ref = def.clone();
    def_with_ref.template_ref = Some("T".into());
    assert_eq!(
        kind(&raw_template(def_with_ref)),
        DecodeErrorKind::DefinitionWithRef
    );

    let mut instance_without_ref = def.clone();
    instance_without_ref.is_definition = Some(false);
    assert_eq!(
        kind(&raw_template(instance_without_ref)),
        DecodeErrorKind::InstanceWithoutRef
    );

    let mut no_flag = def;
    no_flag.is_definition = None;
    assert_eq!(
        kind(&raw_template(no_flag)),
        DecodeErrorKind::MissingField {
            field: "is_definition"
        }
    );

    let instance = raw::Template {
        metrics: vec![member],
        template_ref: Some("Motor".into()),
        is_definition: Some(false),
        parameters: vec![raw::template::Parameter {
            name: Some("p".into()),
            r#type: Some(2),
            value: Some(raw::template::parameter::Value::IntValue(0xFFFF_FFFF)),
        }],
        ..Default::default()
    };
    let p = Payload::decode(&raw_template(instance)).unwrap();
    let Some(Value::Template(t)) = p.metrics[0].typed_value() else {
        panic!("not a template")
    };
    assert_eq!(t.template_ref.as_deref(), Some("Motor"));
    assert_eq!(
        t.parameters[0],
        Parameter {
            name: "p".into(),
            datatype: DataType::Int16,
            value: Some(BasicValue::Int16(-1))
        }
    );
}

#[test]
fn template_parameter_rules() {
    let with_param = |p: raw::template::Parameter| {
        raw_template(raw::Template {
            parameters: vec![p],
            is_definition: Some(true),
            ..Default::default()
        })
    };
    assert_eq!(
        kind(&with_param(raw::template::Parameter {
            r#type: Some(3),
            ..Default::default()
        })),
        DecodeErrorKind::MissingField { field: "name" }
    );
    assert_eq!(
        kind(&with_param(raw::template::Parameter {
            name: Some("p".into()),
            ..Default::default()
        })),
        DecodeErrorKind::MissingField { field: "type" }
    );
    assert_eq!(
        kind(&with_param(raw::template::Parameter {
            name: Some("p".into()),
            r#type: Some(16),
            ..Default::default()
        })),
        DecodeErrorKind::Value(ValueError::NotAllowed {
            datatype: DataType::DataSet,
            context: "template parameter"
        })
    );
    // A definition parameter without a value (no default) is fine.
    let p = Payload::decode(&with_param(raw::template::Parameter {
        name: Some("p".into()),
        r#type: Some(12),
        ..Default::default()
    }))
    .unwrap();
    let Some(Value::Template(t)) = p.metrics[0].typed_value() else {
        panic!("not a template")
    };
    assert_eq!(t.parameters[0].value, None);
    // The encoder refuses a parameter whose value is not its datatype.
    let bad = Template::definition().with_parameter(Parameter {
        name: "p".into(),
        datatype: DataType::Int8,
        value: Some(BasicValue::Boolean(true)),
    });
    assert!(one(Metric::new("t", bad)).encode(&mut Vec::new()).is_err());
}

#[test]
fn encoder_refuses_datatype_value_mismatch() {
    let mut m = Metric::new("m", 1.0f64);
    m.datatype = Some(DataType::Float);
    let e = one(m).encode(&mut Vec::new()).unwrap_err();
    assert_eq!(
        e,
        EncodeError::InMetric {
            index: 0,
            name: Some("m".into()),
            source: Box::new(EncodeError::DataTypeMismatch {
                declared: DataType::Float,
                value: DataType::Double
            })
        }
    );
    let bad_prop = PropertySet::new().with("x", PropertyValue::Null(DataType::Bytes));
    assert!(
        one(Metric::new("m", 1.0f64).with_properties(bad_prop))
            .encode(&mut Vec::new())
            .is_err()
    );
}

#[test]
fn limit_max_metrics() {
    let p = Payload {
        metrics: (0..11).map(|i| Metric::aliased(i, 1.0f64)).collect(),
        ..Payload::default()
    };
    let bytes = encode(&p);
    let limits = DecodeLimits {
        max_metrics: 10,
        ..DecodeLimits::default()
    };
    assert_eq!(
        Payload::decode_with(&bytes, &limits).unwrap_err().kind(),
        &DecodeErrorKind::TooManyMetrics { limit: 10 }
    );
    assert!(
        Payload::decode_with(
            &bytes,
            &DecodeLimits {
                max_metrics: 11,
                ..limits
            }
        )
        .is_ok()
    );
    // Template members count too.
    let t = Template::definition()
        .with_metric(Metric::new("a", 1i32))
        .with_metric(Metric::new("b", 2i32));
    let bytes = encode(&one(Metric::new("t", t)));
    let limits = DecodeLimits {
        max_metrics: 2,
        ..DecodeLimits::default()
    };
    assert_eq!(
        Payload::decode_with(&bytes, &limits).unwrap_err().kind(),
        &DecodeErrorKind::TooManyMetrics { limit: 2 }
    );
}

#[test]
fn limit_max_depth() {
    // Property sets nested 20 deep, built as raw bytes inside-out.
    let mut set = raw::PropertySet::default();
    for _ in 0..20 {
        set = raw::PropertySet {
            keys: vec!["k".into()],
            values: vec![raw::PropertyValue {
                r#type: Some(20),
                value: Some(raw::property_value::Value::PropertysetValue(set)),
                ..Default::default()
            }],
        };
    }
    let pb = sparkplug::pb::Payload {
        metrics: vec![raw::Metric {
            name: Some("m".into()),
            datatype: Some(11),
            properties: Some(set),
            value: Some(raw::metric::Value::BooleanValue(true)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let bytes = pb.encode_to_vec();
    let e = Payload::decode_with(
        &bytes,
        &DecodeLimits {
            max_depth: 16,
            ..DecodeLimits::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), &DecodeErrorKind::TooDeep { limit: 16 });
    assert!(
        Payload::decode_with(
            &bytes,
            &DecodeLimits {
                max_depth: 21,
                ..DecodeLimits::default()
            }
        )
        .is_ok()
    );
    // Templates nest too.
    let mut t = Template::definition();
    for _ in 0..5 {
        t = Template::definition().with_metric(Metric::new("inner", t));
    }
    let bytes = encode(&one(Metric::new("t", t)));
    assert_eq!(
        Payload::decode_with(
            &bytes,
            &DecodeLimits {
                max_depth: 4,
                ..DecodeLimits::default()
            }
        )
        .unwrap_err()
        .kind(),
        &DecodeErrorKind::TooDeep { limit: 4 }
    );
    assert!(
        Payload::decode_with(
            &bytes,
            &DecodeLimits {
                max_depth: 6,
                ..DecodeLimits::default()
            }
        )
        .is_ok()
    );
}

#[test]
fn limit_max_items() {
    let mut props = PropertySet::new();
    for i in 0..50 {
        props.set(format!("k{i}"), i);
    }
    let bytes = encode(&one(Metric::new("m", 1i32).with_properties(props)));
    assert_eq!(
        Payload::decode_with(
            &bytes,
            &DecodeLimits {
                max_items: 60,
                ..DecodeLimits::default()
            }
        )
        .unwrap_err()
        .kind(),
        &DecodeErrorKind::TooManyItems { limit: 60 }
    );
    assert!(
        Payload::decode_with(
            &bytes,
            &DecodeLimits {
                max_items: 100,
                ..DecodeLimits::default()
            }
        )
        .is_ok()
    );
}

#[test]
fn limit_counts_string_array_elements() {
    let p = one(Metric::new(
        "s",
        Value::StringArray(vec![String::new(); 40]),
    ));
    let bytes = encode(&p);
    assert_eq!(
        Payload::decode_with(
            &bytes,
            &DecodeLimits {
                max_items: 39,
                ..DecodeLimits::default()
            }
        )
        .unwrap_err()
        .kind(),
        &DecodeErrorKind::TooManyItems { limit: 39 }
    );
    assert_eq!(
        Payload::decode_with(
            &bytes,
            &DecodeLimits {
                max_items: 40,
                ..DecodeLimits::default()
            }
        )
        .unwrap(),
        p
    );
}

#[test]
fn datatype_names_and_codes_both_ways() {
    let expected = [
        (1, "Int8"),
        (2, "Int16"),
        (3, "Int32"),
        (4, "Int64"),
        (5, "UInt8"),
        (6, "UInt16"),
        (7, "UInt32"),
        (8, "UInt64"),
        (9, "Float"),
        (10, "Double"),
        (11, "Boolean"),
        (12, "String"),
        (13, "DateTime"),
        (14, "Text"),
        (15, "UUID"),
        (16, "DataSet"),
        (17, "Bytes"),
        (18, "File"),
        (19, "Template"),
        (20, "PropertySet"),
        (21, "PropertySetList"),
        (22, "Int8Array"),
        (23, "Int16Array"),
        (24, "Int32Array"),
        (25, "Int64Array"),
        (26, "UInt8Array"),
        (27, "UInt16Array"),
        (28, "UInt32Array"),
        (29, "UInt64Array"),
        (30, "FloatArray"),
        (31, "DoubleArray"),
        (32, "BooleanArray"),
        (33, "StringArray"),
        (34, "DateTimeArray"),
    ];
    for (code, name) in expected {
        let t = DataType::from_code(code).unwrap();
        assert_eq!(t.name(), name);
        assert_eq!(DataType::from_name(name), Some(t));
        assert_eq!(t.to_string(), name);
        // The generated enum agrees with the spec table too.
        assert_eq!(
            sparkplug::pb::DataType::try_from(code as i32)
                .unwrap()
                .as_str_name(),
            name
        );
    }
}

#[test]
fn untyped_metric_resolved_through_alias_table() {
    let birth = Payload::new(1)
        .with_metric(Metric::new("Temp", -5i16).with_alias(7))
        .with_metric(Metric::new("Run", true).with_alias(8));
    let table = sparkplug::AliasTable::from_birth(&birth).unwrap();
    let data = Payload::new(2).with_metric(Metric::aliased(7, -3i16).without_datatype());
    let mut decoded = Payload::decode(&encode(&data)).unwrap();
    assert!(matches!(decoded.metrics[0].value, MetricValue::Untyped(_)));
    table.resolve(&mut decoded.metrics[0]).unwrap();
    assert_eq!(decoded.metrics[0].name.as_deref(), Some("Temp"));
    assert_eq!(decoded.metrics[0].typed_value(), Some(&Value::Int16(-3)));
}

#[test]
fn model_serializes_to_json_with_spec_names() {
    let p = one(Metric::aliased(3, -1i8).with_timestamp(7));
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["metrics"][0]["datatype"], "Int8");
    assert_eq!(
        json["metrics"][0]["value"],
        serde_json::json!({ "Value": { "Int8": -1 } })
    );
    assert_eq!(json["metrics"][0]["alias"], 3);
    assert_eq!(serde_json::to_value(DataType::Uuid).unwrap(), "UUID");
}

#[test]
fn encode_appends_to_a_reused_buffer() {
    let p = one(Metric::aliased(1, 2.5f64).with_timestamp(9));
    let alone = p.encode_to_vec().unwrap();
    let mut buf = b"head".to_vec();
    p.encode(&mut buf).unwrap();
    assert_eq!(&buf[..4], b"head");
    assert_eq!(&buf[4..], &alone[..]);
    // Cleared and reused: same bytes, no growth past the first encode.
    let capacity = buf.capacity();
    for _ in 0..3 {
        buf.clear();
        p.encode(&mut buf).unwrap();
        assert_eq!(buf, alone);
    }
    assert_eq!(buf.capacity(), capacity);
}
