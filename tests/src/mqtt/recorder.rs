//! The tokio front end: a subscriber task feeding a channel, waits that yield to the
//! runtime, and publishing as a host would (commands, STATE).

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, PublishOptions, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Delivery, Message, Picked, RETRY_PAUSE, Wait, any_message, message_where, subscribed};

/// A plain MQTT client subscribed to a filter, recording what arrives in order; it
/// reconnects after a connection error and stops when dropped.
pub struct Recorder {
    client: AsyncClient,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    task: JoinHandle<()>,
}

impl Recorder {
    /// Bounds every wait of a recorder.
    pub const WAIT: Duration = Duration::from_secs(10);

    /// Connects to the broker on `port`, subscribes to `filter` and waits for the SUBACK.
    pub async fn start(port: u16, id: &str, filter: &str) -> Recorder {
        let mut options = MqttOptions::new(id, ("127.0.0.1", port));
        options.set_keep_alive(30);
        let (client, mut eventloop) = AsyncClient::builder(options).capacity(100).build();
        let (tx, deliveries) = mpsc::unbounded_channel();
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap_or_else(|e| panic!("subscribe {filter}: {e}"));
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if let Some(delivery) = Delivery::from_event(&event)
                            && tx.send(delivery).is_err()
                        {
                            return;
                        }
                    }
                    Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
                }
            }
        });
        let mut recorder = Recorder {
            client,
            deliveries,
            task,
        };
        recorder
            .wait_for(&format!("SUBACK for {filter}"), subscribed)
            .await;
        recorder
    }

    /// The next delivery before the wait's deadline.
    async fn recv(&mut self, wait: &Wait<'_>) -> Option<Delivery> {
        tokio::time::timeout(wait.left(), self.deliveries.recv())
            .await
            .ok()
            .flatten()
    }

    /// Skips deliveries until `pick` takes one; panics after [`Recorder::WAIT`].
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(Delivery) -> Picked<T>) -> T {
        let mut wait = Wait::new(what, Self::WAIT);
        loop {
            let Some(delivery) = self.recv(&wait).await else {
                wait.failed()
            };
            if let Some(value) = wait.take(delivery, &mut pick) {
                return value;
            }
        }
    }

    /// The next message, whatever it is.
    pub async fn next(&mut self) -> Message {
        self.wait_for("message", any_message).await
    }

    /// Skips messages until one matches; panics naming `what` after [`Recorder::WAIT`].
    pub async fn next_matching(
        &mut self,
        what: &str,
        pred: impl FnMut(&Message) -> bool,
    ) -> Message {
        self.wait_for(what, message_where(pred)).await
    }

    /// The next message of a kind (NBIRTH, DDATA, ...), skipping others.
    pub async fn next_kind(&mut self, kind: &str) -> Message {
        self.next_matching(kind, |m| m.kind() == kind).await
    }

    /// The next message the edge node published, skipping the commands and STATE this
    /// recorder (or another host) sent.
    pub async fn next_from_edge_node(&mut self) -> Message {
        self.next_matching("message of the edge node", |m| !m.is_from_host())
            .await
    }

    /// Everything that arrives within `period`.
    pub async fn drain_for(&mut self, period: Duration) -> Vec<Message> {
        let wait = Wait::new("end of the period", period);
        let mut out = Vec::new();
        while let Some(delivery) = self.recv(&wait).await {
            if let Delivery::Message(m) = delivery {
                out.push(m);
            }
        }
        out
    }

    /// Publishes at QoS 1, as a host sends commands and STATE.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        let options = PublishOptions::new(QoS::AtLeastOnce).retain(retain);
        self.client
            .publish(topic, payload, options)
            .await
            .unwrap_or_else(|e| panic!("publish {topic}: {e}"));
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
