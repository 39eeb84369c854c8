//! proptest strategies for the Sparkplug model (the `sparkplug` crate): every datatype, and whole payloads
//! with properties, datasets, templates and nested property set lists, kept
//! within the default decode limits.

use proptest::collection::vec;
use proptest::prelude::*;
use sparkplug::{
    BasicValue, Column, DataSet, DataType, MetaData, Metric, MetricValue, Parameter, Payload,
    Property, PropertySet, PropertyValue, Template, Value, WireValue,
};

fn f32_any() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("NaN is not equal to itself", |f| !f.is_nan())
}

fn f64_any() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN is not equal to itself", |f| !f.is_nan())
}

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-zA-Z0-9 /_.-]{0,12}", 1 => ".{0,6}"]
}

/// Strings without NUL (the StringArray terminator).
fn text_no_nul() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,8}"
}

pub fn basic_types() -> Vec<DataType> {
    DataType::ALL
        .iter()
        .copied()
        .filter(|t| t.is_basic())
        .collect()
}

pub fn basic_of(t: DataType) -> BoxedStrategy<BasicValue> {
    match t {
        DataType::Int8 => any::<i8>().prop_map(BasicValue::Int8).boxed(),
        DataType::Int16 => any::<i16>().prop_map(BasicValue::Int16).boxed(),
        DataType::Int32 => any::<i32>().prop_map(BasicValue::Int32).boxed(),
        DataType::Int64 => any::<i64>().prop_map(BasicValue::Int64).boxed(),
        DataType::UInt8 => any::<u8>().prop_map(BasicValue::UInt8).boxed(),
        DataType::UInt16 => any::<u16>().prop_map(BasicValue::UInt16).boxed(),
        DataType::UInt32 => any::<u32>().prop_map(BasicValue::UInt32).boxed(),
        DataType::UInt64 => any::<u64>().prop_map(BasicValue::UInt64).boxed(),
        DataType::Float => f32_any().prop_map(BasicValue::Float).boxed(),
        DataType::Double => f64_any().prop_map(BasicValue::Double).boxed(),
        DataType::Boolean => any::<bool>().prop_map(BasicValue::Boolean).boxed(),
        DataType::String => text().prop_map(BasicValue::String).boxed(),
        DataType::DateTime => any::<u64>().prop_map(BasicValue::DateTime).boxed(),
        DataType::Text => text().prop_map(BasicValue::Text).boxed(),
        other => panic!("{other} is not basic"),
    }
}

pub fn basic_any() -> BoxedStrategy<BasicValue> {
    prop::sample::select(basic_types())
        .prop_flat_map(basic_of)
        .boxed()
}

pub fn metric_types() -> Vec<DataType> {
    DataType::ALL
        .iter()
        .copied()
        .filter(|t| t.is_metric_type())
        .collect()
}

/// A value of metric datatype `t`; `depth` bounds nested templates and datasets.
pub fn value_of(t: DataType, depth: u32) -> BoxedStrategy<Value> {
    let n = 0..6usize;
    match t {
        t if t.is_basic() => basic_of(t).prop_map(Value::from).boxed(),
        DataType::Uuid => "[0-9a-f-]{36}".prop_map(Value::Uuid).boxed(),
        DataType::Bytes => vec(any::<u8>(), n).prop_map(Value::Bytes).boxed(),
        DataType::File => vec(any::<u8>(), n).prop_map(Value::File).boxed(),
        DataType::DataSet => dataset().prop_map(Value::from).boxed(),
        DataType::Template => template(depth.saturating_sub(1))
            .prop_map(Value::from)
            .boxed(),
        DataType::Int8Array => vec(any::<i8>(), n).prop_map(Value::Int8Array).boxed(),
        DataType::Int16Array => vec(any::<i16>(), n).prop_map(Value::Int16Array).boxed(),
        DataType::Int32Array => vec(any::<i32>(), n).prop_map(Value::Int32Array).boxed(),
        DataType::Int64Array => vec(any::<i64>(), n).prop_map(Value::Int64Array).boxed(),
        DataType::UInt8Array => vec(any::<u8>(), n).prop_map(Value::UInt8Array).boxed(),
        DataType::UInt16Array => vec(any::<u16>(), n).prop_map(Value::UInt16Array).boxed(),
        DataType::UInt32Array => vec(any::<u32>(), n).prop_map(Value::UInt32Array).boxed(),
        DataType::UInt64Array => vec(any::<u64>(), n).prop_map(Value::UInt64Array).boxed(),
        DataType::FloatArray => vec(f32_any(), n).prop_map(Value::FloatArray).boxed(),
        DataType::DoubleArray => vec(f64_any(), n).prop_map(Value::DoubleArray).boxed(),
        DataType::BooleanArray => vec(any::<bool>(), 0..20)
            .prop_map(Value::BooleanArray)
            .boxed(),
        DataType::StringArray => vec(text_no_nul(), n).prop_map(Value::StringArray).boxed(),
        DataType::DateTimeArray => vec(any::<u64>(), n).prop_map(Value::DateTimeArray).boxed(),
        other => panic!("{other} is not a metric datatype"),
    }
}

pub fn dataset() -> impl Strategy<Value = DataSet> {
    vec((text(), prop::sample::select(basic_types())), 0..4).prop_flat_map(|cols| {
        let row = cols
            .iter()
            .map(|(_, t)| proptest::option::of(basic_of(*t)))
            .collect::<Vec<_>>();
        let columns: Vec<Column> = cols
            .into_iter()
            .map(|(name, datatype)| Column { name, datatype })
            .collect();
        vec(row, 0..4).prop_map(move |rows| DataSet {
            columns: columns.clone(),
            rows,
        })
    })
}

fn parameter() -> impl Strategy<Value = Parameter> {
    (text(), prop::sample::select(basic_types())).prop_flat_map(|(name, datatype)| {
        proptest::option::of(basic_of(datatype)).prop_map(move |value| Parameter {
            name: name.clone(),
            datatype,
            value,
        })
    })
}

pub fn template(depth: u32) -> BoxedStrategy<Template> {
    let metrics = if depth == 0 {
        Just(Vec::new()).boxed()
    } else {
        vec(metric(depth), 0..3).boxed()
    };
    (
        proptest::option::of(text()),
        proptest::option::of(text()),
        metrics,
        vec(parameter(), 0..3),
    )
        .prop_map(|(version, template_ref, metrics, parameters)| Template {
            version,
            template_ref,
            metrics,
            parameters,
        })
        .boxed()
}

pub fn property_set(depth: u32) -> BoxedStrategy<PropertySet> {
    vec((text(), property_value(depth)), 0..4)
        .prop_map(|kv| PropertySet {
            properties: kv
                .into_iter()
                .map(|(key, value)| Property { key, value })
                .collect(),
        })
        .boxed()
}

fn property_types() -> Vec<DataType> {
    DataType::ALL
        .iter()
        .copied()
        .filter(|t| t.is_property_type())
        .collect()
}

pub fn property_value(depth: u32) -> BoxedStrategy<PropertyValue> {
    let leaf = prop_oneof![
        4 => basic_any().prop_map(PropertyValue::Value),
        1 => prop::sample::select(property_types()).prop_map(PropertyValue::Null),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        4 => leaf,
        1 => property_set(depth - 1).prop_map(PropertyValue::PropertySet),
        1 => vec(property_set(depth - 1), 0..3).prop_map(PropertyValue::PropertySetList),
    ]
    .boxed()
}

fn metadata() -> impl Strategy<Value = MetaData> {
    (
        proptest::option::of(any::<bool>()),
        proptest::option::of(text()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(
            |(is_multi_part, content_type, size, seq, file_name, file_type, md5, description)| {
                MetaData {
                    is_multi_part,
                    content_type,
                    size,
                    seq,
                    file_name,
                    file_type,
                    md5,
                    description,
                }
            },
        )
}

fn wire_value() -> impl Strategy<Value = WireValue> {
    prop_oneof![
        any::<u32>().prop_map(WireValue::Int),
        any::<u64>().prop_map(WireValue::Long),
        f32_any().prop_map(WireValue::Float),
        f64_any().prop_map(WireValue::Double),
        any::<bool>().prop_map(WireValue::Boolean),
        text().prop_map(WireValue::String),
        vec(any::<u8>(), 0..6).prop_map(WireValue::Bytes),
    ]
}

/// The value part of a metric: typed (datatype sent), null, or untyped (no datatype).
fn metric_value(depth: u32) -> BoxedStrategy<(Option<DataType>, MetricValue)> {
    prop_oneof![
        6 => prop::sample::select(metric_types())
            .prop_flat_map(move |t| value_of(t, depth))
            .prop_map(|v| (Some(v.datatype()), MetricValue::Value(v))),
        1 => proptest::option::of(prop::sample::select(metric_types())).prop_map(|t| (t, MetricValue::Null)),
        1 => wire_value().prop_map(|w| (None, MetricValue::Untyped(w))),
    ]
    .boxed()
}

pub fn metric(depth: u32) -> BoxedStrategy<Metric> {
    (
        proptest::option::of(text()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        any::<(bool, bool)>(),
        proptest::option::of(metadata()),
        proptest::option::of(property_set(depth.min(2))),
        metric_value(depth),
    )
        .prop_map(
            |(
                name,
                alias,
                timestamp,
                (is_historical, is_transient),
                metadata,
                properties,
                (datatype, value),
            )| Metric {
                name,
                alias,
                timestamp,
                datatype,
                is_historical,
                is_transient,
                metadata: metadata.map(Box::new),
                properties,
                value,
            },
        )
        .boxed()
}

pub fn payload() -> impl Strategy<Value = Payload> {
    (
        proptest::option::of(any::<u64>()),
        vec(metric(2), 0..6),
        proptest::option::of(any::<u64>()),
        proptest::option::of(text()),
        proptest::option::of(vec(any::<u8>(), 0..8)),
    )
        .prop_map(|(timestamp, metrics, seq, uuid, body)| Payload {
            timestamp,
            metrics,
            seq,
            uuid,
            body,
        })
}
