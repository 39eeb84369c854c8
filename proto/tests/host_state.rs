//! The Sparkplug 3.0 STATE payload.

use sparkplug::{State, StateError};

#[test]
fn state_json_round_trip() {
    let online = State::online(1_700_000_000_123);
    assert_eq!(
        online.to_json(),
        r#"{"online":true,"timestamp":1700000000123}"#
    );
    assert_eq!(State::parse(online.to_json().as_bytes()), Ok(online));
    let mut buf = Vec::new();
    State::offline(5).write_json(&mut buf);
    assert_eq!(buf, br#"{"online":false,"timestamp":5}"#);
    assert_eq!(State::parse(&buf), Ok(State::offline(5)));
    // Member order and extra members do not matter.
    assert_eq!(
        State::parse(br#"{ "timestamp": 9, "online": true, "x": 1 }"#),
        Ok(State::online(9))
    );
}

#[test]
fn bad_state_json_is_a_typed_error() {
    assert!(matches!(
        State::parse(b"ONLINE"),
        Err(StateError::Syntax(_))
    ));
    assert!(matches!(
        State::parse(b"{\"online\":true,"),
        Err(StateError::Syntax(_))
    ));
    assert!(matches!(
        State::parse(&[0xFF, 0xFE]),
        Err(StateError::Syntax(_))
    ));
    assert_eq!(State::parse(b"[true, 1]"), Err(StateError::NotAnObject));
    assert_eq!(
        State::parse(br#"{"timestamp":1}"#),
        Err(StateError::Missing("online"))
    );
    assert_eq!(
        State::parse(br#"{"online":true}"#),
        Err(StateError::Missing("timestamp"))
    );
    assert_eq!(
        State::parse(br#"{"online":"true","timestamp":1}"#),
        Err(StateError::WrongType {
            field: "online",
            expected: "a boolean"
        })
    );
    assert_eq!(
        State::parse(br#"{"online":true,"timestamp":-1}"#),
        Err(StateError::WrongType {
            field: "timestamp",
            expected: "an unsigned integer"
        })
    );
    assert_eq!(
        State::parse(br#"{"online":true,"timestamp":1.5}"#),
        Err(StateError::WrongType {
            field: "timestamp",
            expected: "an unsigned integer"
        })
    );
}
