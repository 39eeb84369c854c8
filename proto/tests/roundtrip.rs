//! Property tests: every datatype and whole payloads survive encode -> decode
//! unchanged, and our bytes are exactly what the generated prost types write
//! for the same message.

use system_tests::strategies;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use sparkplug::{DataType, FieldOrder, Metric, Payload, PropertySet, PropertyValue};

fn round_trip(p: &Payload) -> Result<(), TestCaseError> {
    let mut buf = Vec::new();
    p.encode(&mut buf)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(buf.len(), p.encoded_len());
    let back = Payload::decode(&buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, p);
    let raw =
        sparkplug::pb::Payload::decode(&buf[..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(raw.encode_to_vec(), buf);
    Ok(())
}

#[test]
fn every_metric_datatype_round_trips() {
    for t in strategies::metric_types() {
        let mut runner = TestRunner::new(Config {
            cases: 48,
            ..Config::default()
        });
        runner
            .run(&strategies::value_of(t, 2), |v| {
                prop_assert_eq!(v.datatype(), t);
                round_trip(&Payload {
                    metrics: vec![Metric::new("m", v)],
                    ..Payload::default()
                })
            })
            .unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}

#[test]
fn every_metric_datatype_round_trips_without_datatype_on_the_wire() {
    // DATA messages may leave the datatype to the birth: the value arrives
    // untyped and the birth's datatype gives it back exactly.
    for t in strategies::metric_types() {
        let mut runner = TestRunner::new(Config {
            cases: 32,
            ..Config::default()
        });
        runner
            .run(&strategies::value_of(t, 1), |v| {
                let p = Payload {
                    metrics: vec![Metric::aliased(1, v.clone()).without_datatype()],
                    ..Payload::default()
                };
                let mut back = Payload::decode(&p.encode_to_vec().unwrap())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let m = &mut back.metrics[0];
                m.resolve(t)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(m.typed_value(), Some(&v));
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}

#[test]
fn every_property_datatype_round_trips() {
    let property_types: Vec<DataType> = DataType::ALL
        .iter()
        .copied()
        .filter(|t| t.is_property_type())
        .collect();
    assert_eq!(property_types.len(), 16);
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    runner
        .run(&strategies::property_value(3), |v| {
            let props = PropertySet::new().with("p", v);
            round_trip(&Payload {
                metrics: vec![Metric::new("m", true).with_properties(props)],
                ..Payload::default()
            })
        })
        .unwrap();
    // Each property datatype as a null, which is the one form every type has.
    for t in property_types {
        let props = PropertySet::new().with("p", PropertyValue::Null(t));
        let p = Payload {
            metrics: vec![Metric::new("m", true).with_properties(props)],
            ..Payload::default()
        };
        let back = Payload::decode(&p.encode_to_vec().unwrap()).unwrap();
        assert_eq!(back, p, "{t}");
    }
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn whole_payloads_round_trip(p in strategies::payload()) {
        round_trip(&p)?;
    }

    #[test]
    fn datasets_round_trip(ds in strategies::dataset()) {
        round_trip(&Payload { metrics: vec![Metric::new("d", ds)], ..Payload::default() })?;
    }

    #[test]
    fn templates_round_trip(t in strategies::template(3)) {
        round_trip(&Payload { metrics: vec![Metric::new("t", t)], ..Payload::default() })?;
    }

    #[test]
    fn nested_property_set_lists_round_trip(ps in strategies::property_set(4)) {
        round_trip(&Payload { metrics: vec![Metric::new("m", 1u8).with_properties(ps)], ..Payload::default() })?;
    }

    #[test]
    fn every_field_order_decodes_to_the_same_payload(p in strategies::payload()) {
        // Protobuf readers take fields in any order: ours and prost read each order back
        // to the same payload, and prost re-encodes it to the schema-order bytes.
        let schema = p.encode_to_vec().map_err(|e| TestCaseError::fail(e.to_string()))?;
        for order in [FieldOrder::TimestampLast, FieldOrder::AliasLast] {
            let mut buf = Vec::new();
            p.encode_ordered(order, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(buf.len(), schema.len());
            let back = Payload::decode(&buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &p);
            let raw = sparkplug::pb::Payload::decode(&buf[..])
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(raw.encode_to_vec(), schema.clone());
        }
    }

    #[test]
    fn prost_encoded_payloads_decode_the_same(p in strategies::payload()) {
        // Bytes written by prost from our bytes' raw form decode to the model.
        let ours = p.encode_to_vec().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let theirs = sparkplug::pb::Payload::decode(&ours[..]).unwrap().encode_to_vec();
        prop_assert_eq!(Payload::decode(&theirs).map_err(|e| TestCaseError::fail(e.to_string()))?, p);
    }
}
