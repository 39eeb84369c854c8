//! The node's own metrics: Node Control, Properties and the health counters a host
//! can trend (link, traffic, polling, store-and-forward queue). All are in NBIRTH;
//! NDATA carries those that changed since they were last sent.

use sparkplug::names::{
    NODE_CONTROL_NEXT_SERVER, NODE_CONTROL_REBIRTH, NODE_CONTROL_REBOOT, NODE_CONTROL_SCAN_RATE,
};
use sparkplug::{Metric, Payload, Value};

use super::forwarder::ForwarderStats;

// Node Control names are the spec's (`sparkplug::names`); the rest are this node's own.
pub const SOFTWARE_VERSION: &str = "Properties/Software Version";
pub const HARDWARE: &str = "Properties/Hardware";
pub const LINK_STATE: &str = "Link/State";
pub const LINK_SERVER: &str = "Link/Server";
pub const RECONNECTS: &str = "Link/Reconnects";
pub const BYTES_SENT: &str = "Link/Bytes Sent";
pub const BYTES_RECEIVED: &str = "Link/Bytes Received";
pub const MESSAGES_PUBLISHED: &str = "Link/Messages Published";
pub const POLL_ERRORS: &str = "Modbus/Poll Errors";
pub const STORE_DEPTH: &str = "Store/Depth";
/// Samples lost to the store's caps, the sent window's bound or refused appends.
pub const STORE_DROPPED: &str = "Store/Dropped";
/// Age of the oldest stored sample, ms (0 when empty).
pub const STORE_OLDEST_AGE: &str = "Store/Oldest Age";
/// Stored samples published historical (and confirmed) since start.
pub const STORE_REPLAYED: &str = "Store/Replayed";
/// Stored samples replayed per second over the last metrics period.
pub const STORE_REPLAY_RATE: &str = "Store/Replay Rate";

/// Bytes sent on the link in the current UTC hour (TLS and MQTT framing included).
pub const BYTES_SENT_HOUR: &str = "Link/Bytes Sent This Hour";
/// Bytes received on the link in the current UTC hour.
pub const BYTES_RECEIVED_HOUR: &str = "Link/Bytes Received This Hour";
/// Bytes sent on the link in the current UTC day.
pub const BYTES_SENT_TODAY: &str = "Link/Bytes Sent Today";
/// Bytes received on the link in the current UTC day.
pub const BYTES_RECEIVED_TODAY: &str = "Link/Bytes Received Today";
/// The daily byte budget (`economy.daily_budget_bytes`; 0: none).
pub const DAILY_BUDGET: &str = "Link/Daily Budget";
/// Historical replay waits for the next UTC day: the daily budget is spent.
pub const REPLAY_PAUSED: &str = "Store/Replay Paused";

/// How many node metrics have aliases.
const ALIASED_COUNT: usize = 23;

/// The node metrics with aliases, in birth order (Rebirth, alias-less, comes first).
const ALIASED: [&str; ALIASED_COUNT] = [
    NODE_CONTROL_NEXT_SERVER,
    NODE_CONTROL_REBOOT,
    NODE_CONTROL_SCAN_RATE,
    SOFTWARE_VERSION,
    HARDWARE,
    LINK_STATE,
    LINK_SERVER,
    RECONNECTS,
    BYTES_SENT,
    BYTES_RECEIVED,
    MESSAGES_PUBLISHED,
    POLL_ERRORS,
    STORE_DEPTH,
    STORE_DROPPED,
    STORE_OLDEST_AGE,
    STORE_REPLAYED,
    STORE_REPLAY_RATE,
    BYTES_SENT_HOUR,
    BYTES_RECEIVED_HOUR,
    BYTES_SENT_TODAY,
    BYTES_RECEIVED_TODAY,
    DAILY_BUDGET,
    REPLAY_PAUSED,
];

/// The alias of a node metric (1-based position), `None` for Rebirth and unknown names.
pub fn alias_of(name: &str) -> Option<u64> {
    ALIASED
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u64 + 1)
}

/// The name of a node metric alias.
pub fn name_of(alias: u64) -> Option<&'static str> {
    let i = usize::try_from(alias.checked_sub(1)?).ok()?;
    ALIASED.get(i).copied()
}

/// What the node metrics say right now.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    pub scan_rate_ms: i64,
    pub hardware: String,
    pub link_state: &'static str,
    pub server: String,
    pub reconnects: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub messages_published: u64,
    pub poll_errors: u64,
    pub store: ForwarderStats,
    pub bill: super::bill::Figures,
    pub daily_budget: u64,
}

impl NodeStatus {
    fn values(&self) -> [Value; ALIASED_COUNT] {
        [
            Value::Boolean(false),
            Value::Boolean(false),
            Value::Int64(self.scan_rate_ms),
            Value::String(env!("CARGO_PKG_VERSION").to_owned()),
            Value::String(self.hardware.clone()),
            Value::String(self.link_state.to_owned()),
            Value::String(self.server.clone()),
            Value::UInt64(self.reconnects),
            Value::UInt64(self.bytes_sent),
            Value::UInt64(self.bytes_received),
            Value::UInt64(self.messages_published),
            Value::UInt64(self.poll_errors),
            Value::UInt64(self.store.depth),
            Value::UInt64(self.store.dropped),
            Value::UInt64(self.store.oldest_age_ms),
            Value::UInt64(self.store.replayed),
            Value::UInt64(self.store.replay_rate),
            Value::UInt64(self.bill.sent_hour),
            Value::UInt64(self.bill.received_hour),
            Value::UInt64(self.bill.sent_today),
            Value::UInt64(self.bill.received_today),
            Value::UInt64(self.daily_budget),
            Value::Boolean(self.bill.replay_paused),
        ]
    }
}

/// Remembers what was last sent, to send only changes.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    sent: Option<[Value; ALIASED_COUNT]>,
}

impl NodeMetrics {
    /// Appends every node metric (named, aliased, timestamped) to an NBIRTH.
    pub fn birth(&mut self, status: &NodeStatus, now: u64, payload: &mut Payload) {
        payload
            .metrics
            .push(Metric::new(NODE_CONTROL_REBIRTH, false).with_timestamp(now));
        let values = status.values();
        for (i, (name, value)) in ALIASED.iter().zip(values.iter()).enumerate() {
            payload.metrics.push(
                Metric::new(*name, value.clone())
                    .with_alias(i as u64 + 1)
                    .with_timestamp(now),
            );
        }
        self.sent = Some(values);
    }

    /// An NDATA with the metrics that changed since the birth or last NDATA, if any.
    pub fn changes(&mut self, status: &NodeStatus, now: u64) -> Option<Payload> {
        let values = status.values();
        let mut payload = Payload::new(now);
        for (i, value) in values.iter().enumerate() {
            let changed = self.sent.as_ref().is_none_or(|s| s[i] != *value);
            if changed {
                payload.metrics.push(
                    Metric::aliased(i as u64 + 1, value.clone())
                        .without_datatype()
                        .with_timestamp(now),
                );
            }
        }
        self.sent = Some(values);
        (!payload.metrics.is_empty()).then_some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> NodeStatus {
        NodeStatus {
            scan_rate_ms: 1000,
            hardware: "x86_64".into(),
            link_state: "online",
            server: "mqtt://a:1883".into(),
            reconnects: 0,
            bytes_sent: 10,
            bytes_received: 5,
            messages_published: 1,
            poll_errors: 0,
            store: ForwarderStats::default(),
            bill: super::super::bill::Figures::default(),
            daily_budget: 0,
        }
    }

    #[test]
    fn birth_has_everything_and_data_only_changes() {
        let mut m = NodeMetrics::default();
        let mut birth = Payload::new(1);
        m.birth(&status(), 1, &mut birth);
        assert_eq!(birth.metrics.len(), ALIASED_COUNT + 1);
        let rebirth = birth.metric(NODE_CONTROL_REBIRTH).unwrap();
        assert_eq!(rebirth.alias, None);
        assert_eq!(rebirth.typed_value(), Some(&Value::Boolean(false)));
        assert_eq!(
            birth.metric(STORE_DEPTH).unwrap().alias,
            alias_of(STORE_DEPTH)
        );
        assert_eq!(m.changes(&status(), 2), None);
        let mut later = status();
        later.bytes_sent = 99;
        let ndata = m.changes(&later, 3).unwrap();
        assert_eq!(ndata.metrics.len(), 1);
        assert_eq!(ndata.metrics[0].alias, alias_of(BYTES_SENT));
        assert_eq!(ndata.metrics[0].name, None);
        assert_eq!(
            name_of(alias_of(NODE_CONTROL_REBOOT).unwrap()),
            Some(NODE_CONTROL_REBOOT)
        );
    }
}
