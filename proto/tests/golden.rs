//! Golden bytes worked out by hand from the protobuf wire format and the field
//! table of the Sparkplug 3.0 specification (chapter 6), not from our schema:
//! key = field_number << 3 | wire_type (0 varint, 1 fixed64, 2 length-delimited,
//! 5 fixed32); varints little-endian base 128; fields in field-number order.
//! Each test checks that the typed model encodes to exactly these bytes and that
//! the bytes decode back to the model, so a wrong field number in the schema or
//! the codec fails here. Together they use every field of the schema except the
//! `extension_value` placeholders, which no Sparkplug datatype uses.

use prost::Message;
use sparkplug::{
    BasicValue, DataSet, DataType, MetaData, Metric, MetricValue, Parameter, Payload, PropertySet,
    PropertyValue, Quality, Template, Value,
};

fn hex(s: &str) -> Vec<u8> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex literal");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn check(model: &Payload, expected: &[u8]) {
    let mut buf = Vec::new();
    model.encode(&mut buf).expect("encodes");
    assert_eq!(hex_of(&buf), hex_of(expected), "encoded bytes differ");
    assert_eq!(model.encoded_len(), expected.len());
    let decoded = Payload::decode(expected).expect("decodes");
    assert_eq!(&decoded, model, "decoded model differs");
    // The schema compiled from sparkplug_b.proto reads and rewrites the same
    // bytes: its field numbers and types are the spec's.
    let raw = sparkplug::pb::Payload::decode(expected).expect("prost decodes");
    assert_eq!(
        hex_of(&raw.encode_to_vec()),
        hex_of(expected),
        "prost re-encoding differs"
    );
}

fn hex_of(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The spec's NDATA example: one Float metric "Supply Voltage" = 12.3.
#[test]
fn spec_ndata_float_metric() {
    let bytes = hex(concat!(
        "08 EA F2 F5 A8 A0 2B", // Payload.timestamp (1, varint) = 1486144502122
        "12 1E",                // Payload.metrics (2, len) 30 bytes:
        "0A 0E 53 75 70 70 6C 79 20 56 6F 6C 74 61 67 65", //   Metric.name (1, len) "Supply Voltage"
        "18 EA F2 F5 A8 A0 2B",                            //   Metric.timestamp (3, varint)
        "20 09",          //   Metric.datatype (4, varint) = 9 Float
        "65 CD CC 44 41", //   Metric.float_value (12, fixed32) = 12.3f32 LE
        "18 02",          // Payload.seq (3, varint) = 2
    ));
    let model = Payload {
        timestamp: Some(1_486_144_502_122),
        metrics: vec![Metric::new("Supply Voltage", 12.3f32).with_timestamp(1_486_144_502_122)],
        seq: Some(2),
        uuid: None,
        body: None,
    };
    check(&model, &bytes);
}

/// Int8 -1 is sign-extended into the uint32 int_value: 0xFFFFFFFF.
#[test]
fn int8_minus_one_aliased() {
    let bytes = hex(concat!(
        "12 0A",             // Payload.metrics (2, len) 10 bytes:
        "10 05",             //   Metric.alias (2, varint) = 5
        "20 01",             //   Metric.datatype (4, varint) = 1 Int8
        "50 FF FF FF FF 0F", //   Metric.int_value (10, varint) = 0xFFFFFFFF
        "18 00",             // Payload.seq (3, varint) = 0
    ));
    let model = Payload {
        metrics: vec![Metric::aliased(5, -1i8)],
        seq: Some(0),
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// Int64 -2 is two's complement in the uint64 long_value (a 10-byte varint).
#[test]
fn int64_minus_two() {
    let bytes = hex(concat!(
        "12 10",                            // Payload.metrics (2, len) 16 bytes:
        "0A 01 61",                         //   Metric.name (1, len) "a"
        "20 04",                            //   Metric.datatype (4, varint) = 4 Int64
        "58 FE FF FF FF FF FF FF FF FF 01", //   Metric.long_value (11, varint) = 2^64 - 2
    ));
    let model = Payload {
        metrics: vec![Metric::new("a", -2i64)],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// UInt32 max travels in int_value.
#[test]
fn uint32_max_in_int_value() {
    let bytes = hex(concat!(
        "12 0B",             // Payload.metrics (2, len) 11 bytes:
        "0A 01 75",          //   Metric.name (1, len) "u"
        "20 07",             //   Metric.datatype (4, varint) = 7 UInt32
        "50 FF FF FF FF 0F", //   Metric.int_value (10, varint) = 4294967295
    ));
    let model = Payload {
        metrics: vec![Metric::new("u", u32::MAX)],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// A null metric carries is_null and no value field.
#[test]
fn null_metric_has_no_value_field() {
    let bytes = hex(concat!(
        "12 07",    // Payload.metrics (2, len) 7 bytes:
        "0A 01 6E", //   Metric.name (1, len) "n"
        "20 0C",    //   Metric.datatype (4, varint) = 12 String
        "38 01",    //   Metric.is_null (7, varint) = true
    ));
    let model = Payload {
        metrics: vec![Metric::null("n", DataType::String)],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// A Double with a per-metric timestamp and a Quality property (Int32 500 STALE).
#[test]
fn double_with_quality_property() {
    let bytes = hex(concat!(
        "12 22",                      // Payload.metrics (2, len) 34 bytes:
        "10 01",                      //   Metric.alias (2, varint) = 1
        "18 E8 07",                   //   Metric.timestamp (3, varint) = 1000
        "20 0A",                      //   Metric.datatype (4, varint) = 10 Double
        "4A 10",                      //   Metric.properties (9, len) 16 bytes:
        "0A 07 51 75 61 6C 69 74 79", //     PropertySet.keys (1, len) "Quality"
        "12 05",                      //     PropertySet.values (2, len) 5 bytes:
        "08 03",                      //       PropertyValue.type (1, varint) = 3 Int32
        "18 F4 03",                   //       PropertyValue.int_value (3, varint) = 500
        "69 00 00 00 00 00 00 F8 3F", //   Metric.double_value (13, fixed64) = 1.5 LE
    ));
    let model = Payload {
        metrics: vec![
            Metric::aliased(1, 1.5f64)
                .with_timestamp(1000)
                .with_properties(PropertySet::new().with_quality(Quality::Stale)),
        ],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// A PropertySetList property (type 21, propertysets_value field 10).
#[test]
fn property_set_list_property() {
    let bytes = hex(concat!(
        "12 20",             // Payload.metrics (2, len) 32 bytes:
        "0A 01 70",          //   Metric.name (1, len) "p"
        "20 0B",             //   Metric.datatype (4, varint) = 11 Boolean
        "4A 17",             //   Metric.properties (9, len) 23 bytes:
        "0A 04 6C 69 73 74", //     PropertySet.keys (1, len) "list"
        "12 0F",             //     PropertySet.values (2, len) 15 bytes:
        "08 15",             //       PropertyValue.type (1, varint) = 21 PropertySetList
        "52 0B",             //       PropertyValue.propertysets_value (10, len) 11 bytes:
        "0A 09",             //         PropertySetList.propertyset (1, len) 9 bytes:
        "0A 01 6B",          //           PropertySet.keys (1, len) "k"
        "12 04",             //           PropertySet.values (2, len) 4 bytes:
        "08 0B",             //             PropertyValue.type (1, varint) = 11 Boolean
        "38 01",             //             PropertyValue.boolean_value (7, varint) = true
        "70 00",             //   Metric.boolean_value (14, varint) = false
    ));
    let inner = PropertySet::new().with("k", true);
    let model = Payload {
        metrics: vec![Metric::new("p", false).with_properties(
            PropertySet::new().with("list", PropertyValue::PropertySetList(vec![inner])),
        )],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// The spec's BooleanArray example: 12 booleans -> count 0x0000000C LE, then the
/// bits most significant first: 0x34 0xD0.
#[test]
fn boolean_array_spec_example() {
    let bytes = hex(concat!(
        "12 0E",       // Payload.metrics (2, len) 14 bytes:
        "0A 01 62",    //   Metric.name (1, len) "b"
        "20 20",       //   Metric.datatype (4, varint) = 32 BooleanArray
        "82 01 06",    //   Metric.bytes_value (16, len: key 130 = 82 01) 6 bytes:
        "0C 00 00 00", //     count 12, u32 LE
        "34 D0",       //     0011 0100, 1101 (0000 padding)
    ));
    let bools = [
        false, false, true, true, false, true, false, false, true, true, false, true,
    ];
    let model = Payload {
        metrics: vec![Metric::new("b", Value::BooleanArray(bools.to_vec()))],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// The spec's StringArray example: ["ABC", "hello"], each NUL-terminated.
#[test]
fn string_array_spec_example() {
    let bytes = hex(concat!(
        "12 12",             // Payload.metrics (2, len) 18 bytes:
        "0A 01 73",          //   Metric.name (1, len) "s"
        "20 21",             //   Metric.datatype (4, varint) = 33 StringArray
        "82 01 0A",          //   Metric.bytes_value (16, len) 10 bytes:
        "41 42 43 00",       //     "ABC\0"
        "68 65 6C 6C 6F 00", //     "hello\0"
    ));
    let model = Payload {
        metrics: vec![Metric::new(
            "s",
            Value::StringArray(vec!["ABC".into(), "hello".into()]),
        )],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// Int16Array [-2, 256] and DateTimeArray [1]: little-endian packing.
#[test]
fn numeric_arrays_little_endian() {
    let bytes = hex(concat!(
        "12 0C",                            // Payload.metrics (2, len) 12 bytes:
        "0A 01 69",                         //   Metric.name (1, len) "i"
        "20 17",                            //   Metric.datatype (4, varint) = 23 Int16Array
        "82 01 04 FE FF 00 01", //   Metric.bytes_value (16, len) -2 = FE FF, 256 = 00 01
        "12 10",                // Payload.metrics (2, len) 16 bytes:
        "0A 01 74",             //   Metric.name (1, len) "t"
        "20 22",                //   Metric.datatype (4, varint) = 34 DateTimeArray
        "82 01 08 01 00 00 00 00 00 00 00", // Metric.bytes_value (16, len) 1 as u64 LE
    ));
    let model = Payload {
        metrics: vec![
            Metric::new("i", Value::Int16Array(vec![-2, 256])),
            Metric::new("t", Value::DateTimeArray(vec![1])),
        ],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// A DataSet: num_of_columns, columns, types (one key each), a row of an Int32
/// -1 (sign-extended) and a String.
#[test]
fn dataset_value() {
    let bytes = hex(concat!(
        "12 23",             // Payload.metrics (2, len) 35 bytes:
        "0A 01 64",          //   Metric.name (1, len) "d"
        "20 10",             //   Metric.datatype (4, varint) = 16 DataSet
        "8A 01 1B",          //   Metric.dataset_value (17, len: key 138 = 8A 01) 27 bytes:
        "08 02",             //     DataSet.num_of_columns (1, varint) = 2
        "12 01 61",          //     DataSet.columns (2, len) "a"
        "12 01 62",          //     DataSet.columns (2, len) "b"
        "18 03",             //     DataSet.types (3, varint) = 3 Int32
        "18 0C",             //     DataSet.types (3, varint) = 12 String
        "22 0D",             //     DataSet.rows (4, len) 13 bytes:
        "0A 06",             //       Row.elements (1, len) 6 bytes:
        "08 FF FF FF FF 0F", //         DataSetValue.int_value (1, varint) = 0xFFFFFFFF
        "0A 03",             //       Row.elements (1, len) 3 bytes:
        "32 01 78",          //         DataSetValue.string_value (6, len) "x"
    ));
    let mut ds = DataSet::new([
        ("a".to_owned(), DataType::Int32),
        ("b".to_owned(), DataType::String),
    ])
    .unwrap();
    ds.push_row(vec![
        Some(BasicValue::Int32(-1)),
        Some(BasicValue::String("x".into())),
    ])
    .unwrap();
    let model = Payload {
        metrics: vec![Metric::new("d", ds)],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// A Template instance with one member metric and one UInt16 parameter.
#[test]
fn template_instance() {
    let bytes = hex(concat!(
        "12 1F",    // Payload.metrics (2, len) 31 bytes:
        "0A 01 74", //   Metric.name (1, len) "t"
        "20 13",    //   Metric.datatype (4, varint) = 19 Template
        "92 01 17", //   Metric.template_value (18, len: key 146 = 92 01) 23 bytes:
        "12 07",    //     Template.metrics (2, len) 7 bytes:
        "0A 01 6D", //       Metric.name (1, len) "m"
        "20 0B",    //       Metric.datatype (4, varint) = 11 Boolean
        "70 01",    //       Metric.boolean_value (14, varint) = true
        "1A 07",    //     Template.parameters (3, len) 7 bytes:
        "0A 01 70", //       Parameter.name (1, len) "p"
        "10 06",    //       Parameter.type (2, varint) = 6 UInt16
        "18 07",    //       Parameter.int_value (3, varint) = 7
        "22 01 54", //     Template.template_ref (4, len) "T"
        "28 00",    //     Template.is_definition (5, varint) = false
    ));
    let t = Template::instance("T")
        .with_metric(Metric::new("m", true))
        .with_parameter(Parameter::new("p", 7u16));
    let model = Payload {
        metrics: vec![Metric::new("t", t)],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// Bytes with metadata and the is_historical / is_transient flags; payload uuid
/// and body.
#[test]
fn bytes_with_metadata_flags_uuid_body() {
    let bytes = hex(concat!(
        "12 1F",                               // Payload.metrics (2, len) 31 bytes:
        "0A 01 66",                            //   Metric.name (1, len) "f"
        "20 11",                               //   Metric.datatype (4, varint) = 17 Bytes
        "28 01",                               //   Metric.is_historical (5, varint) = true
        "30 01",                               //   Metric.is_transient (6, varint) = true
        "42 0E",                               //   Metric.metadata (8, len) 14 bytes:
        "12 0A 74 65 78 74 2F 70 6C 61 69 6E", //     MetaData.content_type (2, len) "text/plain"
        "18 03",                               //     MetaData.size (3, varint) = 3
        "82 01 03 61 62 63",                   //   Metric.bytes_value (16, len) "abc"
        "22 01 75",                            // Payload.uuid (4, len) "u"
        "2A 02 01 02",                         // Payload.body (5, len) 01 02
    ));
    let mut m = Metric::new("f", Value::Bytes(b"abc".to_vec()))
        .historical()
        .transient();
    m.metadata = Some(Box::new(MetaData {
        content_type: Some("text/plain".into()),
        size: Some(3),
        ..MetaData::default()
    }));
    let model = Payload {
        metrics: vec![m],
        uuid: Some("u".into()),
        body: Some(vec![1, 2]),
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// A DATA metric without datatype decodes to the wire value and is typed later
/// with the datatype from the birth.
#[test]
fn untyped_metric_resolves_with_birth_datatype() {
    let bytes = hex(concat!(
        "12 08",             // Payload.metrics (2, len) 8 bytes:
        "10 02",             //   Metric.alias (2, varint) = 2
        "50 FE FF FF FF 0F", //   Metric.int_value (10, varint) = 0xFFFFFFFE
    ));
    let p = Payload::decode(&bytes).unwrap();
    let mut m = p.metrics[0].clone();
    assert_eq!(
        m.value,
        MetricValue::Untyped(sparkplug::WireValue::Int(0xFFFF_FFFE))
    );
    m.resolve(DataType::Int16).unwrap();
    assert_eq!(m.typed_value(), Some(&Value::Int16(-2)));
    // And it encodes back to the same bytes when left untyped.
    assert_eq!(p.encode_to_vec().unwrap(), bytes);
    let raw = sparkplug::pb::Payload::decode(&bytes[..]).unwrap();
    let value = raw.metrics[0].value.clone();
    assert_eq!(
        value,
        Some(sparkplug::pb::payload::metric::Value::IntValue(0xFFFF_FFFE))
    );
}

/// A String metric in string_value (field 15).
#[test]
fn string_metric() {
    let bytes = hex(concat!(
        "12 09",       // Payload.metrics (2, len) 9 bytes:
        "0A 01 73",    //   Metric.name (1, len) "s"
        "20 0C",       //   Metric.datatype (4, varint) = 12 String
        "7A 02 68 69", // Metric.string_value (15, len: key 122 = 7A) "hi"
    ));
    let model = Payload {
        metrics: vec![Metric::new("s", "hi")],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// Every MetaData field on a File metric.
#[test]
fn file_with_all_metadata_fields() {
    let bytes = hex(concat!(
        "12 21",                // Payload.metrics (2, len) 33 bytes:
        "0A 01 66",             //   Metric.name (1, len) "f"
        "20 12",                //   Metric.datatype (4, varint) = 18 File
        "42 16",                //   Metric.metadata (8, len) 22 bytes:
        "08 01",                //     MetaData.is_multi_part (1, varint) = true
        "20 02",                //     MetaData.seq (4, varint) = 2
        "2A 05 61 2E 74 78 74", //     MetaData.file_name (5, len) "a.txt"
        "32 03 74 78 74",       //     MetaData.file_type (6, len) "txt"
        "3A 01 78",             //     MetaData.md5 (7, len) "x"
        "42 01 64",             //     MetaData.description (8, len) "d"
        "82 01 01 01",          //   Metric.bytes_value (16, len) 01
    ));
    let mut m = Metric::new("f", Value::File(vec![1]));
    m.metadata = Some(Box::new(MetaData {
        is_multi_part: Some(true),
        seq: Some(2),
        file_name: Some("a.txt".into()),
        file_type: Some("txt".into()),
        md5: Some("x".into()),
        description: Some("d".into()),
        ..MetaData::default()
    }));
    check(
        &Payload {
            metrics: vec![m],
            ..Payload::default()
        },
        &bytes,
    );
}

/// PropertyValue fields: long (4), float (5), double (6), string (8), is_null (2)
/// and a nested PropertySet (9). Keys all come first, then the values.
#[test]
fn property_value_fields() {
    let bytes = hex(concat!(
        "12 5D",                            // Payload.metrics (2, len) 93 bytes:
        "0A 01 70",                         //   Metric.name (1, len) "p"
        "20 0B",                            //   Metric.datatype (4, varint) = 11 Boolean
        "4A 54",                            //   Metric.properties (9, len) 84 bytes:
        "0A 01 6C",                         //     PropertySet.keys (1, len) "l"
        "0A 01 66",                         //     PropertySet.keys (1, len) "f"
        "0A 01 64",                         //     PropertySet.keys (1, len) "d"
        "0A 01 73",                         //     PropertySet.keys (1, len) "s"
        "0A 01 6E",                         //     PropertySet.keys (1, len) "n"
        "0A 02 70 73",                      //     PropertySet.keys (1, len) "ps"
        "12 0D",                            //     PropertySet.values (2, len) 13 bytes:
        "08 04",                            //       PropertyValue.type (1) = 4 Int64
        "20 FF FF FF FF FF FF FF FF FF 01", //       PropertyValue.long_value (4, varint) = -1
        "12 07",                            //     PropertySet.values (2, len) 7 bytes:
        "08 09",                            //       PropertyValue.type (1) = 9 Float
        "2D 00 00 80 3F",                   //       PropertyValue.float_value (5, fixed32) = 1.0
        "12 0B",                            //     PropertySet.values (2, len) 11 bytes:
        "08 0A",                            //       PropertyValue.type (1) = 10 Double
        "31 00 00 00 00 00 00 F0 3F",       //       PropertyValue.double_value (6, fixed64) = 1.0
        "12 05",                            //     PropertySet.values (2, len) 5 bytes:
        "08 0C",                            //       PropertyValue.type (1) = 12 String
        "42 01 76",                         //       PropertyValue.string_value (8, len) "v"
        "12 04",                            //     PropertySet.values (2, len) 4 bytes:
        "08 03",                            //       PropertyValue.type (1) = 3 Int32
        "10 01",                            //       PropertyValue.is_null (2, varint) = true
        "12 0D",                            //     PropertySet.values (2, len) 13 bytes:
        "08 14",                            //       PropertyValue.type (1) = 20 PropertySet
        "4A 09",    //       PropertyValue.propertyset_value (9, len) 9 bytes:
        "0A 01 6B", //         PropertySet.keys (1, len) "k"
        "12 04",    //         PropertySet.values (2, len) 4 bytes:
        "08 05",    //           PropertyValue.type (1) = 5 UInt8
        "18 07",    //           PropertyValue.int_value (3, varint) = 7
        "70 01",    //   Metric.boolean_value (14, varint) = true
    ));
    let props = PropertySet::new()
        .with("l", -1i64)
        .with("f", 1.0f32)
        .with("d", 1.0f64)
        .with("s", "v")
        .with("n", PropertyValue::Null(DataType::Int32))
        .with(
            "ps",
            PropertyValue::PropertySet(PropertySet::new().with("k", 7u8)),
        );
    let model = Payload {
        metrics: vec![Metric::new("p", true).with_properties(props)],
        ..Payload::default()
    };
    check(&model, &bytes);
}

/// DataSetValue fields: long (2), float (3), double (4), bool (5) and an empty
/// (null) cell.
#[test]
fn dataset_value_fields() {
    let bytes = hex(concat!(
        "12 4A",                                        // Payload.metrics (2, len) 74 bytes:
        "0A 01 64",                                     //   Metric.name (1, len) "d"
        "20 10",    //   Metric.datatype (4, varint) = 16 DataSet
        "8A 01 42", //   Metric.dataset_value (17, len) 66 bytes:
        "08 05",    //     DataSet.num_of_columns (1) = 5
        "12 01 61 12 01 62 12 01 63 12 01 64 12 01 65", // DataSet.columns (2) "a".."e"
        "18 04 18 09 18 0A 18 0B 18 0D", //     DataSet.types (3) Int64 Float Double Boolean DateTime
        "22 25",                         //     DataSet.rows (4, len) 37 bytes:
        "0A 0B",                         //       Row.elements (1, len) 11 bytes:
        "10 FF FF FF FF FF FF FF FF FF 01", //         DataSetValue.long_value (2, varint) = -1
        "0A 05",                         //       Row.elements (1, len) 5 bytes:
        "1D 00 00 80 3F",                //         DataSetValue.float_value (3, fixed32) = 1.0
        "0A 09",                         //       Row.elements (1, len) 9 bytes:
        "21 00 00 00 00 00 00 F0 3F",    //         DataSetValue.double_value (4, fixed64) = 1.0
        "0A 02",                         //       Row.elements (1, len) 2 bytes:
        "28 01",                         //         DataSetValue.boolean_value (5, varint) = true
        "0A 00",                         //       Row.elements (1, len) 0 bytes: null cell
    ));
    let mut ds = DataSet::new([
        ("a".to_owned(), DataType::Int64),
        ("b".to_owned(), DataType::Float),
        ("c".to_owned(), DataType::Double),
        ("d".to_owned(), DataType::Boolean),
        ("e".to_owned(), DataType::DateTime),
    ])
    .unwrap();
    ds.push_row(vec![
        Some(BasicValue::Int64(-1)),
        Some(BasicValue::Float(1.0)),
        Some(BasicValue::Double(1.0)),
        Some(BasicValue::Boolean(true)),
        None,
    ])
    .unwrap();
    check(
        &Payload {
            metrics: vec![Metric::new("d", ds)],
            ..Payload::default()
        },
        &bytes,
    );
}

/// A Template definition: version (1), parameters with long (4), float (5),
/// double (6), bool (7) and string (8) values, is_definition true, no ref.
#[test]
fn template_definition_with_version_and_parameters() {
    let bytes = hex(concat!(
        "12 47",                      // Payload.metrics (2, len) 71 bytes:
        "0A 01 54",                   //   Metric.name (1, len) "T"
        "20 13",                      //   Metric.datatype (4, varint) = 19 Template
        "92 01 3F",                   //   Metric.template_value (18, len) 63 bytes:
        "0A 03 31 2E 30",             //     Template.version (1, len) "1.0"
        "1A 07 0A 01 61 10 04",       //     Template.parameters (3): name "a", type 4 Int64,
        "20 05",                      //       Parameter.long_value (4, varint) = 5
        "1A 0A 0A 01 62 10 09",       //     Template.parameters (3): name "b", type 9 Float,
        "2D 00 00 80 3F",             //       Parameter.float_value (5, fixed32) = 1.0
        "1A 0E 0A 01 63 10 0A",       //     Template.parameters (3): name "c", type 10 Double,
        "31 00 00 00 00 00 00 F0 3F", //       Parameter.double_value (6, fixed64) = 1.0
        "1A 07 0A 01 64 10 0B",       //     Template.parameters (3): name "d", type 11 Boolean,
        "38 01",                      //       Parameter.boolean_value (7, varint) = true
        "1A 08 0A 01 65 10 0C",       //     Template.parameters (3): name "e", type 12 String,
        "42 01 76",                   //       Parameter.string_value (8, len) "v"
        "28 01",                      //     Template.is_definition (5, varint) = true
    ));
    let mut t = Template::definition()
        .with_parameter(Parameter::new("a", 5i64))
        .with_parameter(Parameter::new("b", 1.0f32))
        .with_parameter(Parameter::new("c", 1.0f64))
        .with_parameter(Parameter::new("d", true))
        .with_parameter(Parameter::new("e", "v"));
    t.version = Some("1.0".into());
    check(
        &Payload {
            metrics: vec![Metric::new("T", t)],
            ..Payload::default()
        },
        &bytes,
    );
}
