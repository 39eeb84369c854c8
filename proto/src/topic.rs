//! The Sparkplug topic namespace:
//! `spBv1.0/<group_id>/<message_type>/<edge_node_id>[/<device_id>]` and the
//! 3.0 host topic `spBv1.0/STATE/<host_id>`.
//!
//! Parsing borrows from the topic string (no allocation on the host's hot path);
//! formatting can append into a reused `String`. Ids are checked on both paths:
//! non-empty, free of the MQTT separator and wildcards `/`, `+`, `#` and of
//! NUL (which MQTT forbids in topic names); a whole topic fits MQTT's 65535
//! bytes.

use std::fmt;
use std::str::FromStr;

/// The first topic level of every Sparkplug B topic.
pub const NAMESPACE: &str = "spBv1.0";

/// The topic level of host STATE topics.
pub const STATE: &str = "STATE";

/// The longest topic name MQTT can carry, in bytes.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// The eight Sparkplug message types of edge node topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Edge node birth.
    NBirth,
    /// Edge node death.
    NDeath,
    /// Edge node data.
    NData,
    /// Command to an edge node.
    NCmd,
    /// Device birth.
    DBirth,
    /// Device death.
    DDeath,
    /// Device data.
    DData,
    /// Command to a device.
    DCmd,
}

impl MessageType {
    /// All message types.
    pub const ALL: [MessageType; 8] = [
        MessageType::NBirth,
        MessageType::NDeath,
        MessageType::NData,
        MessageType::NCmd,
        MessageType::DBirth,
        MessageType::DDeath,
        MessageType::DData,
        MessageType::DCmd,
    ];

    /// The topic level, e.g. `"NBIRTH"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::NBirth => "NBIRTH",
            MessageType::NDeath => "NDEATH",
            MessageType::NData => "NDATA",
            MessageType::NCmd => "NCMD",
            MessageType::DBirth => "DBIRTH",
            MessageType::DDeath => "DDEATH",
            MessageType::DData => "DDATA",
            MessageType::DCmd => "DCMD",
        }
    }

    /// The message type for a topic level.
    pub fn from_level(level: &str) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.as_str() == level)
    }

    /// A device message type (its topic carries a device_id).
    pub const fn is_device(self) -> bool {
        matches!(
            self,
            MessageType::DBirth | MessageType::DDeath | MessageType::DData | MessageType::DCmd
        )
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which id of a topic is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdPart {
    /// The group_id.
    GroupId,
    /// The edge_node_id.
    EdgeNodeId,
    /// The device_id.
    DeviceId,
    /// The sparkplug_host_id.
    HostId,
}

impl fmt::Display for IdPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdPart::GroupId => "group_id",
            IdPart::EdgeNodeId => "edge_node_id",
            IdPart::DeviceId => "device_id",
            IdPart::HostId => "host_id",
        })
    }
}

/// A topic or id that is not valid Sparkplug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The first level is not `spBv1.0`.
    #[error("topic does not start with {NAMESPACE}/")]
    WrongNamespace,
    /// Too few levels for the message type.
    #[error("topic has too few levels: {0:?}")]
    TooShort(String),
    /// More levels than the message type allows.
    #[error("topic has too many levels for {message_type}")]
    TooLong {
        /// The message type parsed.
        message_type: MessageType,
    },
    /// The message type level is not one of the eight (nor STATE).
    #[error("unknown message type {0:?}")]
    UnknownMessageType(String),
    /// An id is empty.
    #[error("{0} is empty")]
    EmptyId(IdPart),
    /// An id contains `/`, `+`, `#` or NUL.
    #[error("{part} contains the reserved character {found:?}")]
    ReservedChar {
        /// Which id.
        part: IdPart,
        /// The character found.
        found: char,
    },
    /// The topic is longer than MQTT allows.
    #[error("topic of {len} bytes exceeds MQTT's {MAX_TOPIC_LEN}")]
    TopicTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A device message type without a device_id.
    #[error("{0} needs a device_id")]
    DeviceIdRequired(MessageType),
    /// An edge node message type with a device_id.
    #[error("{0} must not have a device_id")]
    DeviceIdNotAllowed(MessageType),
}

/// Checks one id: non-empty, no `/`, `+`, `#` or NUL.
pub fn validate_id(part: IdPart, id: &str) -> Result<(), TopicError> {
    if id.is_empty() {
        return Err(TopicError::EmptyId(part));
    }
    match id.chars().find(|c| matches!(c, '/' | '+' | '#' | '\0')) {
        Some(found) => Err(TopicError::ReservedChar { part, found }),
        None => Ok(()),
    }
}

/// An edge node or device topic. `S` is `&str` when parsed in place, `String`
/// when owned. Always valid: constructed only through checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic<S = String> {
    group_id: S,
    message_type: MessageType,
    edge_node_id: S,
    device_id: Option<S>,
}

impl<S: AsRef<str>> Topic<S> {
    /// A topic after checking every id and that device message types (and only
    /// they) have a device_id.
    pub fn new(
        group_id: S,
        message_type: MessageType,
        edge_node_id: S,
        device_id: Option<S>,
    ) -> Result<Topic<S>, TopicError> {
        validate_id(IdPart::GroupId, group_id.as_ref())?;
        validate_id(IdPart::EdgeNodeId, edge_node_id.as_ref())?;
        match (&device_id, message_type.is_device()) {
            (Some(d), true) => validate_id(IdPart::DeviceId, d.as_ref())?,
            (None, true) => return Err(TopicError::DeviceIdRequired(message_type)),
            (Some(_), false) => return Err(TopicError::DeviceIdNotAllowed(message_type)),
            (None, false) => {}
        }
        let topic = Topic {
            group_id,
            message_type,
            edge_node_id,
            device_id,
        };
        let len = topic.len();
        if len > MAX_TOPIC_LEN {
            return Err(TopicError::TopicTooLong { len });
        }
        Ok(topic)
    }

    /// Length of the topic string in bytes.
    pub fn len(&self) -> usize {
        NAMESPACE.len()
            + self.group_id().len()
            + self.message_type.as_str().len()
            + self.edge_node_id().len()
            + self.device_id().map_or(0, |d| d.len() + 1)
            + 3
    }

    /// Never true: a valid topic has every level (`len` has a partner for lints).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The group_id.
    pub fn group_id(&self) -> &str {
        self.group_id.as_ref()
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        self.message_type
    }

    /// The edge_node_id.
    pub fn edge_node_id(&self) -> &str {
        self.edge_node_id.as_ref()
    }

    /// The device_id of a device message type.
    pub fn device_id(&self) -> Option<&str> {
        self.device_id.as_ref().map(AsRef::as_ref)
    }

    /// Appends the topic string to `out` (reuse it on the hot path).
    pub fn write_to(&self, out: &mut String) {
        out.reserve(self.len());
        out.push_str(NAMESPACE);
        out.push('/');
        out.push_str(self.group_id());
        out.push('/');
        out.push_str(self.message_type.as_str());
        out.push('/');
        out.push_str(self.edge_node_id());
        if let Some(d) = self.device_id() {
            out.push('/');
            out.push_str(d);
        }
    }

    /// The same topic with owned ids.
    pub fn to_owned(&self) -> Topic<String> {
        Topic {
            group_id: self.group_id().to_owned(),
            message_type: self.message_type,
            edge_node_id: self.edge_node_id().to_owned(),
            device_id: self.device_id().map(str::to_owned),
        }
    }

    /// The same topic with another message type (e.g. the NCMD topic of an NBIRTH);
    /// fails if it moves between node and device message types.
    pub fn with_message_type(&self, message_type: MessageType) -> Result<Topic<&str>, TopicError> {
        Topic::new(
            self.group_id(),
            message_type,
            self.edge_node_id(),
            self.device_id(),
        )
    }
}

impl<'a> Topic<&'a str> {
    /// Parses an edge node or device topic in place.
    pub fn parse(topic: &'a str) -> Result<Topic<&'a str>, TopicError> {
        let rest = topic
            .strip_prefix(NAMESPACE)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(TopicError::WrongNamespace)?;
        let mut levels = rest.splitn(4, '/');
        let (Some(group_id), Some(kind), Some(edge_node_id)) =
            (levels.next(), levels.next(), levels.next())
        else {
            return Err(TopicError::TooShort(topic.to_owned()));
        };
        let message_type = MessageType::from_level(kind)
            .ok_or_else(|| TopicError::UnknownMessageType(kind.to_owned()))?;
        let device_id = levels.next();
        if let Some(d) = device_id
            && message_type.is_device()
            && d.contains('/')
        {
            return Err(TopicError::TooLong { message_type });
        }
        Topic::new(group_id, message_type, edge_node_id, device_id)
    }
}

impl<S: AsRef<str>> fmt::Display for Topic<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write_to(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Topic<String> {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::parse(s).map(|t| t.to_owned())
    }
}

/// The Sparkplug 3.0 host application topic `spBv1.0/STATE/<host_id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateTopic<S = String> {
    host_id: S,
}

impl<S: AsRef<str>> StateTopic<S> {
    /// The STATE topic of a host id, after checking it.
    pub fn new(host_id: S) -> Result<StateTopic<S>, TopicError> {
        validate_id(IdPart::HostId, host_id.as_ref())?;
        let len = NAMESPACE.len() + STATE.len() + 2 + host_id.as_ref().len();
        if len > MAX_TOPIC_LEN {
            return Err(TopicError::TopicTooLong { len });
        }
        Ok(StateTopic { host_id })
    }

    /// The sparkplug_host_id.
    pub fn host_id(&self) -> &str {
        self.host_id.as_ref()
    }

    /// Appends the topic string to `out`.
    pub fn write_to(&self, out: &mut String) {
        out.push_str(NAMESPACE);
        out.push('/');
        out.push_str(STATE);
        out.push('/');
        out.push_str(self.host_id());
    }
}

impl<'a> StateTopic<&'a str> {
    /// Parses a STATE topic in place.
    pub fn parse(topic: &'a str) -> Result<StateTopic<&'a str>, TopicError> {
        let rest = topic
            .strip_prefix(NAMESPACE)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(TopicError::WrongNamespace)?;
        let host_id = rest
            .strip_prefix(STATE)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| {
                TopicError::UnknownMessageType(rest.split('/').next().unwrap_or("").to_owned())
            })?;
        StateTopic::new(host_id)
    }
}

impl<S: AsRef<str>> fmt::Display for StateTopic<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{NAMESPACE}/{STATE}/{}", self.host_id())
    }
}

/// Any Sparkplug topic: an edge node/device topic or a host STATE topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyTopic<'a> {
    /// NBIRTH .. DCMD.
    Edge(Topic<&'a str>),
    /// spBv1.0/STATE/host_id.
    State(StateTopic<&'a str>),
}

impl<'a> AnyTopic<'a> {
    /// Parses any Sparkplug topic in place. Three levels with `STATE` in the
    /// middle is a host topic; anything else must be an edge node topic.
    pub fn parse(topic: &'a str) -> Result<AnyTopic<'a>, TopicError> {
        let is_state = topic
            .strip_prefix(NAMESPACE)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_prefix(STATE))
            .is_some_and(|r| r.starts_with('/') && !r[1..].contains('/'));
        if is_state {
            StateTopic::parse(topic).map(AnyTopic::State)
        } else {
            Topic::parse(topic).map(AnyTopic::Edge)
        }
    }
}
