//! The MQTT traffic a test watches: one [`Message`] type, what a subscriber's connection
//! delivers ([`Delivery`]: the SUBACK, then messages) and the bounded waits over it
//! ([`Wait`]). Two front ends share them: [`Recorder`] for tokio tests (it also publishes
//! commands and STATE as a host would) and [`Watcher`] on a plain thread for the
//! end-to-end tests. Beside them: [`ScriptedEdge`], an edge node the test drives by hand
//! (for host tests), and [`client`], a plain client stepped packet by packet.

pub mod client;
mod recorder;
mod scripted_edge;
mod watcher;

pub use recorder::Recorder;
pub use scripted_edge::{Received, ScriptedEdge};
pub use watcher::Watcher;

use std::time::{Duration, Instant};

use rumqttc::{Event, Packet, Publish, QoS};

/// How long a subscriber pauses after a connection error before polling again (the
/// client then reconnects).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How many of the messages a failed wait passed over its panic message lists.
const SHOWN_WHEN_FAILED: usize = 20;

/// One MQTT message as a test client received it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    /// The QoS it was delivered at (the lower of the publish's and the subscription's).
    pub qos: QoS,
    pub retain: bool,
    pub payload: Vec<u8>,
}

impl Message {
    /// The Sparkplug message type (`NBIRTH`, `DDATA`...), the topic's third part.
    pub fn kind(&self) -> &str {
        self.topic.split('/').nth(2).unwrap_or("")
    }

    /// The payload decoded as Sparkplug; panics naming the topic when it is not one.
    pub fn sparkplug(&self) -> sparkplug::Payload {
        sparkplug::Payload::decode(&self.payload)
            .unwrap_or_else(|e| panic!("{}: not a Sparkplug payload: {e}", self.topic))
    }

    pub fn seq(&self) -> Option<u64> {
        self.sparkplug().seq
    }

    /// The bdSeq metric of a birth or death; panics naming the topic when there is none.
    pub fn bd_seq(&self) -> u64 {
        sparkplug::BdSeq::from_payload(&self.sparkplug())
            .unwrap_or_else(|e| panic!("{}: bdSeq: {e}", self.topic))
            .value()
            .into()
    }

    /// Whether a host sent it (NCMD, DCMD, STATE): a recorder playing the host sees its
    /// own commands come back.
    pub fn is_from_host(&self) -> bool {
        matches!(self.kind(), "NCMD" | "DCMD") || self.topic.starts_with("spBv1.0/STATE/")
    }
}

impl From<&Publish> for Message {
    fn from(publish: &Publish) -> Message {
        Message {
            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
            qos: publish.qos,
            retain: publish.retain,
            payload: publish.payload.to_vec(),
        }
    }
}

/// What a subscriber's connection hands its test, in order.
#[derive(Debug)]
enum Delivery {
    /// The SUBACK: the subscription exists, the subscriber is ready.
    Subscribed,
    Message(Message),
}

impl Delivery {
    /// The delivery an event of the connection carries, if any.
    fn from_event(event: &Event) -> Option<Delivery> {
        match event {
            Event::Incoming(Packet::SubAck(_)) => Some(Delivery::Subscribed),
            Event::Incoming(Packet::Publish(p)) => Some(Delivery::Message(Message::from(p))),
            _ => None,
        }
    }
}

/// One bounded wait: what is awaited, until when, and what came meanwhile (for the panic
/// message when nothing matches).
struct Wait<'a> {
    what: &'a str,
    timeout: Duration,
    deadline: Instant,
    passed: Vec<String>,
    passed_count: usize,
}

impl<'a> Wait<'a> {
    fn new(what: &'a str, timeout: Duration) -> Wait<'a> {
        Wait {
            what,
            timeout,
            deadline: Instant::now() + timeout,
            passed: Vec::new(),
            passed_count: 0,
        }
    }

    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// What `pick` makes of `delivery`; when it gives the delivery back, it is noted as
    /// passed over.
    fn take<T>(
        &mut self,
        delivery: Delivery,
        pick: &mut impl FnMut(Delivery) -> Picked<T>,
    ) -> Option<T> {
        match pick(delivery) {
            Ok(value) => Some(value),
            Err(Delivery::Message(m)) => {
                self.passed_count += 1;
                if self.passed.len() < SHOWN_WHEN_FAILED {
                    self.passed.push(m.topic);
                }
                None
            }
            Err(Delivery::Subscribed) => None,
        }
    }

    fn failed(&self) -> ! {
        let more = self.passed_count - self.passed.len();
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        panic!(
            "no {} within {:?}; came instead: {:?}{more}",
            self.what, self.timeout, self.passed
        )
    }
}

/// What a wait wants from a delivery, or the delivery given back.
type Picked<T> = Result<T, Delivery>;

/// Picks the messages `pred` accepts.
fn message_where(
    mut pred: impl FnMut(&Message) -> bool,
) -> impl FnMut(Delivery) -> Picked<Message> {
    move |d| match d {
        Delivery::Message(m) if pred(&m) => Ok(m),
        other => Err(other),
    }
}

/// Picks the SUBACK.
fn subscribed(delivery: Delivery) -> Picked<()> {
    match delivery {
        Delivery::Subscribed => Ok(()),
        other => Err(other),
    }
}

/// Picks any message.
fn any_message(delivery: Delivery) -> Picked<Message> {
    match delivery {
        Delivery::Message(m) => Ok(m),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mosquitto;

    fn message(topic: &str, payload: Vec<u8>) -> Message {
        Message {
            topic: topic.to_owned(),
            qos: QoS::AtMostOnce,
            retain: false,
            payload,
        }
    }

    fn birth(bd_seq: u8) -> Vec<u8> {
        sparkplug::Payload::new(1)
            .with_metric(sparkplug::BdSeq::new(bd_seq).to_metric(1))
            .encode_to_vec()
            .expect("a birth encodes")
    }

    #[test]
    fn kind_seq_and_bdseq_come_from_the_topic_and_the_payload() {
        let nbirth = message("spBv1.0/g/NBIRTH/n", birth(7));
        assert_eq!(nbirth.kind(), "NBIRTH");
        assert_eq!(nbirth.bd_seq(), 7);
        assert_eq!(nbirth.seq(), None);
        assert!(!nbirth.is_from_host());
        assert!(message("spBv1.0/g/DCMD/n/d", Vec::new()).is_from_host());
        assert!(message("spBv1.0/STATE/scada", Vec::new()).is_from_host());
    }

    #[test]
    fn a_failed_wait_names_what_it_awaited_and_what_came_instead() {
        let mut wait = Wait::new("NDEATH", Duration::ZERO);
        let mut pick = message_where(|m| m.kind() == "NDEATH");
        for topic in ["spBv1.0/g/NBIRTH/n", "spBv1.0/g/NDATA/n"] {
            let delivery = Delivery::Message(message(topic, Vec::new()));
            assert!(wait.take(delivery, &mut pick).is_none());
        }
        assert!(wait.take(Delivery::Subscribed, &mut pick).is_none());
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait.failed()))
            .expect_err("a failed wait panics");
        let text = panic.downcast_ref::<String>().expect("a formatted message");
        assert_eq!(
            text,
            r#"no NDEATH within 0ns; came instead: ["spBv1.0/g/NBIRTH/n", "spBv1.0/g/NDATA/n"]"#
        );
    }

    #[test]
    fn watcher_sees_what_is_published_in_order_and_skips_host_messages() {
        let broker = Mosquitto::start();
        let watcher = Watcher::start(broker.port(), "watch", "spBv1.0/#");
        let (client, mut connection) = rumqttc::Client::builder(rumqttc::MqttOptions::new(
            "node",
            ("127.0.0.1", broker.port()),
        ))
        .build();
        // Drives the publisher until the broker acknowledged all three (bounded).
        let pump = std::thread::spawn(move || {
            let deadline = Instant::now() + crate::stack::WAIT;
            let mut acked = 0;
            while acked < 3 && Instant::now() < deadline {
                if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
                    connection.recv_timeout(Duration::from_millis(100))
                {
                    acked += 1;
                }
            }
            acked
        });
        for (topic, payload) in [
            ("spBv1.0/g/NCMD/n", Vec::new()),
            ("spBv1.0/g/NBIRTH/n", birth(3)),
            ("spBv1.0/g/NDEATH/n", birth(3)),
        ] {
            client
                .publish(
                    topic,
                    payload,
                    rumqttc::PublishOptions::new(QoS::AtLeastOnce),
                )
                .expect("publish queued");
        }
        let nbirth = watcher.next_from_edge_node();
        assert_eq!(nbirth.kind(), "NBIRTH");
        assert_eq!(nbirth.bd_seq(), 3);
        assert_eq!(watcher.next_kind("NDEATH").bd_seq(), 3);
        assert!(watcher.drain_for(Duration::from_millis(200)).is_empty());
        assert_eq!(
            pump.join().expect("publisher thread"),
            3,
            "all three acknowledged"
        );
    }

    #[tokio::test]
    async fn recorder_sees_its_own_publishes_after_the_suback() {
        let broker = Mosquitto::start();
        let mut recorder = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
        recorder
            .publish("spBv1.0/STATE/scada", b"{}".to_vec(), true)
            .await;
        recorder
            .publish("spBv1.0/g/NBIRTH/n", birth(9), false)
            .await;
        let state = recorder.next().await;
        assert_eq!(state.topic, "spBv1.0/STATE/scada");
        assert!(state.is_from_host());
        assert_eq!(recorder.next_from_edge_node().await.bd_seq(), 9);
    }
}
