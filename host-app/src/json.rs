//! The JSON view of a Sparkplug payload, as `host-app decode` and `host-app spy` print it.
//!
//! Numbers stay JSON numbers (u64 and i64 exactly), arrays become JSON arrays, bytes
//! become base64, DateTime is milliseconds since the epoch, datasets and templates
//! become nested objects. Non-finite floats, which JSON cannot hold, are the strings
//! `"NaN"`, `"Infinity"` and `"-Infinity"`. A metric sent without a datatype (usual in
//! DATA messages) shows `"datatype": null` and the protobuf field it came in, unless a
//! birth resolved it first.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value as Json, json};
use sparkplug::{
    BasicValue, DataSet, MetaData, Metric, MetricValue, Payload, PropertySet, PropertyValue,
    Template, Value, WireValue,
};

/// The whole payload.
pub fn payload(p: &Payload) -> Json {
    let mut out = Map::new();
    out.insert("timestamp".into(), json!(p.timestamp));
    out.insert("seq".into(), json!(p.seq));
    out.insert("uuid".into(), json!(p.uuid));
    if let Some(body) = &p.body {
        out.insert("body".into(), Json::String(BASE64.encode(body)));
    }
    out.insert(
        "metrics".into(),
        Json::Array(p.metrics.iter().map(metric).collect()),
    );
    Json::Object(out)
}

/// One metric, with every field the spec gives it.
pub fn metric(m: &Metric) -> Json {
    let (datatype, value) = match &m.value {
        MetricValue::Null => (m.datatype.map(|t| t.name()), Json::Null),
        MetricValue::Value(v) => (Some(v.datatype().name()), value(v)),
        MetricValue::Untyped(w) => (m.datatype.map(|t| t.name()), wire(w)),
    };
    let mut out = Map::new();
    out.insert("name".into(), json!(m.name));
    out.insert("alias".into(), json!(m.alias));
    out.insert("timestamp".into(), json!(m.timestamp));
    out.insert("datatype".into(), json!(datatype));
    out.insert("value".into(), value);
    if let MetricValue::Untyped(w) = &m.value {
        out.insert("field".into(), json!(w.field_name()));
    }
    out.insert("is_historical".into(), json!(m.is_historical));
    out.insert("is_transient".into(), json!(m.is_transient));
    out.insert(
        "is_null".into(),
        json!(matches!(m.value, MetricValue::Null)),
    );
    out.insert(
        "properties".into(),
        m.properties.as_ref().map_or(Json::Null, property_set),
    );
    if let Some(meta) = &m.metadata {
        out.insert("metadata".into(), metadata(meta));
    }
    Json::Object(out)
}

/// A typed metric value.
pub fn value(v: &Value) -> Json {
    match v {
        Value::Int8(x) => json!(x),
        Value::Int16(x) => json!(x),
        Value::Int32(x) => json!(x),
        Value::Int64(x) => json!(x),
        Value::UInt8(x) => json!(x),
        Value::UInt16(x) => json!(x),
        Value::UInt32(x) => json!(x),
        Value::UInt64(x) => json!(x),
        Value::Float(x) => float(f64::from(*x)),
        Value::Double(x) => float(*x),
        Value::Boolean(x) => json!(x),
        Value::String(s) | Value::Text(s) | Value::Uuid(s) => json!(s),
        Value::DateTime(ms) => json!(ms),
        Value::Bytes(b) | Value::File(b) => Json::String(BASE64.encode(b)),
        Value::DataSet(d) => dataset(d),
        Value::Template(t) => template(t),
        Value::Int8Array(a) => json!(a),
        Value::Int16Array(a) => json!(a),
        Value::Int32Array(a) => json!(a),
        Value::Int64Array(a) => json!(a),
        Value::UInt8Array(a) => json!(a),
        Value::UInt16Array(a) => json!(a),
        Value::UInt32Array(a) => json!(a),
        Value::UInt64Array(a) => json!(a),
        Value::FloatArray(a) => Json::Array(a.iter().map(|x| float(f64::from(*x))).collect()),
        Value::DoubleArray(a) => Json::Array(a.iter().map(|x| float(*x)).collect()),
        Value::BooleanArray(a) => json!(a),
        Value::StringArray(a) => json!(a),
        Value::DateTimeArray(a) => json!(a),
    }
}

fn basic(v: &BasicValue) -> Json {
    match v {
        BasicValue::Int8(x) => json!(x),
        BasicValue::Int16(x) => json!(x),
        BasicValue::Int32(x) => json!(x),
        BasicValue::Int64(x) => json!(x),
        BasicValue::UInt8(x) => json!(x),
        BasicValue::UInt16(x) => json!(x),
        BasicValue::UInt32(x) => json!(x),
        BasicValue::UInt64(x) => json!(x),
        BasicValue::Float(x) => float(f64::from(*x)),
        BasicValue::Double(x) => float(*x),
        BasicValue::Boolean(x) => json!(x),
        BasicValue::String(s) | BasicValue::Text(s) => json!(s),
        BasicValue::DateTime(ms) => json!(ms),
    }
}

fn wire(w: &WireValue) -> Json {
    match w {
        WireValue::Int(x) => json!(x),
        WireValue::Long(x) => json!(x),
        WireValue::Float(x) => float(f64::from(*x)),
        WireValue::Double(x) => float(*x),
        WireValue::Boolean(x) => json!(x),
        WireValue::String(s) => json!(s),
        WireValue::Bytes(b) => Json::String(BASE64.encode(b)),
    }
}

fn float(x: f64) -> Json {
    if x.is_nan() {
        json!("NaN")
    } else if x.is_infinite() {
        json!(if x > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(x)
    }
}

/// Properties as an object: key -> `{"type": ..., "value": ...}`, in wire order.
fn property_set(set: &PropertySet) -> Json {
    let mut out = Map::new();
    for p in &set.properties {
        let value = match &p.value {
            PropertyValue::Value(v) => basic(v),
            PropertyValue::PropertySet(s) => property_set(s),
            PropertyValue::PropertySetList(l) => Json::Array(l.iter().map(property_set).collect()),
            PropertyValue::Null(_) => Json::Null,
        };
        out.insert(
            p.key.clone(),
            json!({ "type": p.value.datatype().name(), "value": value }),
        );
    }
    Json::Object(out)
}

fn dataset(d: &DataSet) -> Json {
    json!({
        "columns": d.columns.iter().map(|c| json!({"name": c.name, "datatype": c.datatype.name()})).collect::<Vec<_>>(),
        "rows": d.rows.iter().map(|row| row.iter().map(|cell| cell.as_ref().map_or(Json::Null, basic)).collect::<Vec<_>>()).collect::<Vec<_>>(),
    })
}

fn template(t: &Template) -> Json {
    json!({
        "version": t.version,
        "template_ref": t.template_ref,
        "is_definition": t.is_definition(),
        "parameters": t.parameters.iter().map(|p| json!({
            "name": p.name,
            "datatype": p.datatype.name(),
            "value": p.value.as_ref().map_or(Json::Null, basic),
        })).collect::<Vec<_>>(),
        "metrics": t.metrics.iter().map(metric).collect::<Vec<_>>(),
    })
}

fn metadata(m: &MetaData) -> Json {
    json!({
        "is_multi_part": m.is_multi_part,
        "content_type": m.content_type,
        "size": m.size,
        "seq": m.seq,
        "file_name": m.file_name,
        "file_type": m.file_type,
        "md5": m.md5,
        "description": m.description,
    })
}
