//! seq and bdSeq counters, and the alias table built from a birth.

use sparkplug::{
    AliasError, AliasTable, BdSeq, BdSeqError, CounterOutOfRange, DataType, Metric, Payload, Seq,
    Value,
};

#[test]
fn seq_wraps_255_to_0() {
    assert_eq!(Seq::new(254).next(), Seq::new(255));
    assert_eq!(Seq::new(255).next(), Seq::ZERO);
    assert!(Seq::ZERO.follows(Seq::new(255)));
    assert!(!Seq::new(2).follows(Seq::ZERO));
    let mut s = Seq::ZERO;
    for _ in 0..256 {
        s = s.next();
    }
    assert_eq!(s, Seq::ZERO);
    assert_eq!(Seq::try_from(255u64), Ok(Seq::new(255)));
    assert_eq!(
        Seq::try_from(256u64),
        Err(CounterOutOfRange {
            counter: "seq",
            value: 256
        })
    );
}

#[test]
fn payload_sequence_is_range_checked() {
    assert_eq!(
        Payload::new(1).with_seq(Seq::new(255)).sequence(),
        Ok(Some(Seq::new(255)))
    );
    assert_eq!(Payload::new(1).sequence(), Ok(None));
    let wide = Payload {
        seq: Some(256),
        ..Payload::default()
    };
    assert_eq!(
        wide.sequence(),
        Err(CounterOutOfRange {
            counter: "seq",
            value: 256
        })
    );
}

#[test]
fn bdseq_wraps_255_to_0() {
    assert_eq!(BdSeq::new(255).next(), BdSeq::ZERO);
    assert!(BdSeq::ZERO.follows(BdSeq::new(255)));
    assert_eq!(
        BdSeq::try_from(300u64),
        Err(CounterOutOfRange {
            counter: "bdSeq",
            value: 300
        })
    );
}

#[test]
fn bdseq_metric_round_trip() {
    let nbirth = Payload::new(1)
        .with_seq(Seq::ZERO)
        .with_metric(BdSeq::new(255).to_metric(1));
    let m = &nbirth.metrics[0];
    assert_eq!(m.name.as_deref(), Some("bdSeq"));
    assert_eq!(m.datatype, Some(DataType::Int64));
    assert_eq!(m.datatype, Some(BdSeq::DATATYPE));
    let back = Payload::decode(&nbirth.encode_to_vec().unwrap()).unwrap();
    assert_eq!(BdSeq::from_payload(&back), Ok(BdSeq::new(255)));
    assert_eq!(back.seq, Some(0));
    // UInt64 (as some implementations send) is accepted; out of range is not.
    let uint64 = Payload::new(1).with_metric(Metric::new("bdSeq", 3u64));
    assert_eq!(BdSeq::from_payload(&uint64), Ok(BdSeq::new(3)));
    let big = Payload::new(1).with_metric(Metric::new("bdSeq", 256u64));
    assert!(matches!(
        BdSeq::from_payload(&big),
        Err(BdSeqError::OutOfRange(_))
    ));
    assert_eq!(
        BdSeq::from_payload(&Payload::new(1)),
        Err(BdSeqError::Missing)
    );
    let text = Payload::new(1).with_metric(Metric::new("bdSeq", "1"));
    assert_eq!(BdSeq::from_payload(&text), Err(BdSeqError::NotAnInteger));
}

fn birth() -> Payload {
    Payload::new(1)
        .with_metric(BdSeq::ZERO.to_metric(1))
        .with_metric(Metric::new("Node Control/Rebirth", false).with_alias(0))
        .with_metric(Metric::new("Inputs/A", 1.5f64).with_alias(1))
        .with_metric(Metric::new("Inputs/B", 7i8).with_alias(2))
}

#[test]
fn alias_table_from_birth_both_ways() {
    let t = AliasTable::from_birth(&birth()).unwrap();
    assert_eq!(t.len(), 3);
    assert_eq!(t.name_of(1), Some("Inputs/A"));
    assert_eq!(t.alias_of("Inputs/B"), Some(2));
    assert_eq!(t.datatype_of(2), Some(DataType::Int8));
    assert_eq!(t.alias_of("bdSeq"), None);
    assert_eq!(t.name_of(9), None);
    let mut pairs: Vec<_> = t.iter().collect();
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            (0, "Node Control/Rebirth"),
            (1, "Inputs/A"),
            (2, "Inputs/B")
        ]
    );
}

#[test]
fn alias_table_refuses_duplicates() {
    let dup_alias = birth().with_metric(Metric::new("Inputs/C", true).with_alias(1));
    assert_eq!(
        AliasTable::from_birth(&dup_alias),
        Err(AliasError::DuplicateAlias {
            alias: 1,
            first: "Inputs/A".into(),
            second: "Inputs/C".into()
        })
    );
    let dup_name = birth().with_metric(Metric::new("Inputs/A", true).with_alias(5));
    assert_eq!(
        AliasTable::from_birth(&dup_name),
        Err(AliasError::DuplicateName {
            name: "Inputs/A".into(),
            first: 1,
            second: 5
        })
    );
    let nameless = birth().with_metric(Metric::aliased(6, true));
    assert_eq!(
        AliasTable::from_birth(&nameless),
        Err(AliasError::MissingName { index: 4, alias: 6 })
    );
}

#[test]
fn alias_table_resolves_data_metrics() {
    let t = AliasTable::from_birth(&birth()).unwrap();
    let mut m = Metric::aliased(2, -1i8).without_datatype();
    // Encode and decode so the value is the untyped wire form.
    let p = Payload::decode(
        &Payload::new(2)
            .with_metric(m.clone())
            .encode_to_vec()
            .unwrap(),
    )
    .unwrap();
    m = p.metrics[0].clone();
    t.resolve(&mut m).unwrap();
    assert_eq!(m.name.as_deref(), Some("Inputs/B"));
    assert_eq!(m.typed_value(), Some(&Value::Int8(-1)));
    assert_eq!(
        t.resolve(&mut Metric::aliased(42, 1.0f64)),
        Err(AliasError::UnknownAlias(42))
    );
    let mut anonymous = Metric::aliased(1, 1.0f64);
    anonymous.alias = None;
    assert_eq!(t.resolve(&mut anonymous), Err(AliasError::Anonymous));
}
