//! The topic namespace: every message type parsed and formatted, every invalid
//! id refused with an error naming the part.

use sparkplug::{AnyTopic, IdPart, MessageType, StateTopic, Topic, TopicError};

#[test]
fn node_message_types_parse_and_format() {
    for (t, level) in [
        (MessageType::NBirth, "NBIRTH"),
        (MessageType::NDeath, "NDEATH"),
        (MessageType::NData, "NDATA"),
        (MessageType::NCmd, "NCMD"),
    ] {
        let s = format!("spBv1.0/Plant 1/{level}/Edge-7");
        let topic = Topic::parse(&s).unwrap();
        assert_eq!(topic.group_id(), "Plant 1");
        assert_eq!(topic.message_type(), t);
        assert_eq!(topic.edge_node_id(), "Edge-7");
        assert_eq!(topic.device_id(), None);
        assert!(!t.is_device());
        assert_eq!(topic.to_string(), s);
        let built = Topic::new("Plant 1", t, "Edge-7", None).unwrap();
        assert_eq!(built, topic);
    }
}

#[test]
fn device_message_types_parse_and_format() {
    for (t, level) in [
        (MessageType::DBirth, "DBIRTH"),
        (MessageType::DDeath, "DDEATH"),
        (MessageType::DData, "DDATA"),
        (MessageType::DCmd, "DCMD"),
    ] {
        let s = format!("spBv1.0/Sparkplug B Devices/{level}/Raspberry Pi/Pibrella");
        let topic = Topic::parse(&s).unwrap();
        assert_eq!(topic.group_id(), "Sparkplug B Devices");
        assert_eq!(topic.message_type(), t);
        assert_eq!(topic.edge_node_id(), "Raspberry Pi");
        assert_eq!(topic.device_id(), Some("Pibrella"));
        assert!(t.is_device());
        assert_eq!(topic.to_string(), s);
        let owned: Topic = s.parse().unwrap();
        assert_eq!(owned, topic.to_owned());
    }
}

#[test]
fn format_into_reused_string() {
    let mut buf = String::new();
    let topic = Topic::new("g", MessageType::DData, "n", Some("d")).unwrap();
    topic.write_to(&mut buf);
    assert_eq!(buf, "spBv1.0/g/DDATA/n/d");
    buf.clear();
    topic
        .with_message_type(MessageType::DCmd)
        .unwrap()
        .write_to(&mut buf);
    assert_eq!(buf, "spBv1.0/g/DCMD/n/d");
    assert_eq!(
        topic.with_message_type(MessageType::NCmd),
        Err(TopicError::DeviceIdNotAllowed(MessageType::NCmd))
    );
}

#[test]
fn state_topic_parse_and_format() {
    let t = StateTopic::parse("spBv1.0/STATE/scada-host-1").unwrap();
    assert_eq!(t.host_id(), "scada-host-1");
    let mut s = String::new();
    t.write_to(&mut s);
    assert_eq!(s, "spBv1.0/STATE/scada-host-1");
    assert_eq!(StateTopic::new("h").unwrap().to_string(), "spBv1.0/STATE/h");
    assert!(
        matches!(AnyTopic::parse("spBv1.0/STATE/h"), Ok(AnyTopic::State(t)) if t.host_id() == "h")
    );
    assert!(matches!(
        AnyTopic::parse("spBv1.0/g/NDATA/n"),
        Ok(AnyTopic::Edge(_))
    ));
    assert_eq!(
        StateTopic::parse("spBv1.0/STATE/"),
        Err(TopicError::EmptyId(IdPart::HostId))
    );
    assert_eq!(
        StateTopic::parse("spBv1.0/STATE/a/b"),
        Err(TopicError::ReservedChar {
            part: IdPart::HostId,
            found: '/'
        })
    );
    assert_eq!(
        StateTopic::new("h#"),
        Err(TopicError::ReservedChar {
            part: IdPart::HostId,
            found: '#'
        })
    );
}

#[test]
fn empty_ids_are_refused_naming_the_part() {
    assert_eq!(
        Topic::parse("spBv1.0//NDATA/n"),
        Err(TopicError::EmptyId(IdPart::GroupId))
    );
    assert_eq!(
        Topic::parse("spBv1.0/g/NDATA/"),
        Err(TopicError::EmptyId(IdPart::EdgeNodeId))
    );
    assert_eq!(
        Topic::parse("spBv1.0/g/DDATA/n/"),
        Err(TopicError::EmptyId(IdPart::DeviceId))
    );
    assert_eq!(
        Topic::new("", MessageType::NData, "n", None),
        Err(TopicError::EmptyId(IdPart::GroupId))
    );
}

#[test]
fn reserved_characters_are_refused_naming_the_part() {
    for c in ['+', '#', '/'] {
        let bad = format!("a{c}b");
        assert_eq!(
            Topic::new(bad.as_str(), MessageType::NData, "n", None),
            Err(TopicError::ReservedChar {
                part: IdPart::GroupId,
                found: c
            })
        );
        assert_eq!(
            Topic::new("g", MessageType::NData, bad.as_str(), None),
            Err(TopicError::ReservedChar {
                part: IdPart::EdgeNodeId,
                found: c
            })
        );
        assert_eq!(
            Topic::new("g", MessageType::DData, "n", Some(bad.as_str())),
            Err(TopicError::ReservedChar {
                part: IdPart::DeviceId,
                found: c
            })
        );
    }
    assert_eq!(
        Topic::parse("spBv1.0/g+/NDATA/n"),
        Err(TopicError::ReservedChar {
            part: IdPart::GroupId,
            found: '+'
        })
    );
    assert_eq!(
        Topic::parse("spBv1.0/g/NDATA/#"),
        Err(TopicError::ReservedChar {
            part: IdPart::EdgeNodeId,
            found: '#'
        })
    );
    assert_eq!(
        Topic::parse("spBv1.0/g/DDATA/n/d+"),
        Err(TopicError::ReservedChar {
            part: IdPart::DeviceId,
            found: '+'
        })
    );
}

#[test]
fn nul_and_oversized_topics_are_refused() {
    // MQTT forbids U+0000 in topic names and caps them at 65535 bytes.
    assert_eq!(
        Topic::new("g\0", MessageType::NData, "n", None),
        Err(TopicError::ReservedChar {
            part: IdPart::GroupId,
            found: '\0'
        })
    );
    assert_eq!(
        Topic::parse("spBv1.0/g/DDATA/n/\0"),
        Err(TopicError::ReservedChar {
            part: IdPart::DeviceId,
            found: '\0'
        })
    );
    let long = "x".repeat(65_535 - "spBv1.0/g/NDATA/".len());
    assert_eq!(
        Topic::new("g", MessageType::NData, long.as_str(), None)
            .unwrap()
            .len(),
        65_535
    );
    let longer = format!("{long}x");
    assert_eq!(
        Topic::new("g", MessageType::NData, longer.as_str(), None),
        Err(TopicError::TopicTooLong { len: 65_536 })
    );
    assert!(matches!(
        StateTopic::new("h".repeat(65_535)),
        Err(TopicError::TopicTooLong { .. })
    ));
    // Any other UTF-8 is a valid id.
    let t = Topic::new("Zone Ö-1", MessageType::DData, "Ведущий", Some("泵 3")).unwrap();
    assert_eq!(Topic::parse(&t.to_string()).unwrap(), t);
}

#[test]
fn device_id_only_on_device_message_types() {
    assert_eq!(
        Topic::parse("spBv1.0/g/DDATA/n"),
        Err(TopicError::DeviceIdRequired(MessageType::DData))
    );
    assert_eq!(
        Topic::parse("spBv1.0/g/NDATA/n/d"),
        Err(TopicError::DeviceIdNotAllowed(MessageType::NData))
    );
    assert_eq!(
        Topic::new("g", MessageType::DBirth, "n", None),
        Err(TopicError::DeviceIdRequired(MessageType::DBirth))
    );
    assert_eq!(
        Topic::parse("spBv1.0/g/DDATA/n/d/x"),
        Err(TopicError::TooLong {
            message_type: MessageType::DData
        })
    );
}

#[test]
fn malformed_topics() {
    assert_eq!(
        Topic::parse("spAv1.0/g/NDATA/n"),
        Err(TopicError::WrongNamespace)
    );
    assert_eq!(Topic::parse("spBv1.0"), Err(TopicError::WrongNamespace));
    assert!(matches!(
        Topic::parse("spBv1.0/g/NDATA"),
        Err(TopicError::TooShort(_))
    ));
    assert_eq!(
        Topic::parse("spBv1.0/g/NFOO/n"),
        Err(TopicError::UnknownMessageType("NFOO".into()))
    );
    assert_eq!(
        Topic::parse("spBv1.0/g/ndata/n"),
        Err(TopicError::UnknownMessageType("ndata".into()))
    );
}
