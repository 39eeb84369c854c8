//! The Sparkplug 3.0 host application STATE payload:
//! UTF-8 JSON `{"online":<bool>,"timestamp":<u64 ms since epoch>}`.

use serde_json::Value as Json;

/// A host application's STATE: online or not, as of a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct State {
    /// The host is online.
    pub online: bool,
    /// Milliseconds since the Unix epoch, UTC, when the host set this state
    /// (the same value in its birth and in the will registered before it).
    pub timestamp: u64,
}

/// A STATE payload that is not `{"online":bool,"timestamp":u64}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not JSON (or not UTF-8).
    #[error("STATE payload is not valid JSON: {0}")]
    Syntax(String),
    /// JSON, but not an object.
    #[error("STATE payload is not a JSON object")]
    NotAnObject,
    /// A required member is missing.
    #[error("STATE payload has no `{0}`")]
    Missing(&'static str),
    /// A member of the wrong JSON type (timestamp must be a non-negative integer).
    #[error("STATE payload member `{field}` is not {expected}")]
    WrongType {
        /// The member.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
}

impl State {
    /// An online state as of `timestamp`.
    pub fn online(timestamp: u64) -> State {
        State {
            online: true,
            timestamp,
        }
    }

    /// An offline state as of `timestamp`.
    pub fn offline(timestamp: u64) -> State {
        State {
            online: false,
            timestamp,
        }
    }

    /// Parses a STATE payload; other members are ignored (forward compatibility).
    pub fn parse(payload: &[u8]) -> Result<State, StateError> {
        let json: Json =
            serde_json::from_slice(payload).map_err(|e| StateError::Syntax(e.to_string()))?;
        let obj = json.as_object().ok_or(StateError::NotAnObject)?;
        let online = obj
            .get("online")
            .ok_or(StateError::Missing("online"))?
            .as_bool()
            .ok_or(StateError::WrongType {
                field: "online",
                expected: "a boolean",
            })?;
        let timestamp = obj
            .get("timestamp")
            .ok_or(StateError::Missing("timestamp"))?
            .as_u64()
            .ok_or(StateError::WrongType {
                field: "timestamp",
                expected: "an unsigned integer",
            })?;
        Ok(State { online, timestamp })
    }

    /// Appends the JSON payload to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "{{\"online\":{},\"timestamp\":{}}}",
            self.online, self.timestamp
        );
    }

    /// The JSON payload.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"online\":{},\"timestamp\":{}}}",
            self.online, self.timestamp
        )
    }
}
