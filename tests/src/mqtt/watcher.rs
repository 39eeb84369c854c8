//! The blocking front end for tests without a runtime: a thread polls the connection
//! until told to stop or the connection is gone; waits block the calling thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rumqttc::{Client, MqttOptions, QoS, RecvTimeoutError};

use super::{Delivery, Message, Picked, RETRY_PAUSE, Wait, any_message, message_where, subscribed};
use crate::stack::WAIT;

/// How often the polling thread looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// A test MQTT client subscribed to one filter, its messages in arrival order; it
/// reconnects after a connection error and disconnects when dropped.
pub struct Watcher {
    client: Client,
    deliveries: mpsc::Receiver<Delivery>,
    stop: Arc<AtomicBool>,
}

impl Watcher {
    /// Connects to the broker on `port`, subscribes to `filter` and waits for the SUBACK.
    pub fn start(port: u16, id: &str, filter: &str) -> Watcher {
        let mut options = MqttOptions::new(id, ("127.0.0.1", port));
        options.set_keep_alive(30);
        let (client, mut connection) = Client::builder(options).build();
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .unwrap_or_else(|e| panic!("subscribe {filter}: {e}"));
        let (tx, deliveries) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Acquire) {
                match connection.recv_timeout(STOP_CHECK) {
                    Ok(Ok(event)) => {
                        if let Some(delivery) = Delivery::from_event(&event)
                            && tx.send(delivery).is_err()
                        {
                            return;
                        }
                    }
                    Ok(Err(_)) => std::thread::sleep(RETRY_PAUSE),
                    Err(RecvTimeoutError::Timeout { .. }) => {}
                    Err(_) => return,
                }
            }
        });
        let watcher = Watcher {
            client,
            deliveries,
            stop,
        };
        watcher.wait_for(&format!("SUBACK for {filter}"), subscribed);
        watcher
    }

    /// The next delivery before the wait's deadline.
    fn recv(&self, wait: &Wait<'_>) -> Option<Delivery> {
        self.deliveries.recv_timeout(wait.left()).ok()
    }

    /// Skips deliveries until `pick` takes one; panics after [`WAIT`].
    fn wait_for<T>(&self, what: &str, mut pick: impl FnMut(Delivery) -> Picked<T>) -> T {
        let mut wait = Wait::new(what, WAIT);
        loop {
            let Some(delivery) = self.recv(&wait) else {
                wait.failed()
            };
            if let Some(value) = wait.take(delivery, &mut pick) {
                return value;
            }
        }
    }

    /// The next message, whatever it is.
    pub fn next(&self) -> Message {
        self.wait_for("message", any_message)
    }

    /// Skips messages until one matches; panics naming `what` after [`WAIT`].
    pub fn next_matching(&self, what: &str, pred: impl FnMut(&Message) -> bool) -> Message {
        self.wait_for(what, message_where(pred))
    }

    /// The next message of a kind (NBIRTH, DDATA, ...), skipping others.
    pub fn next_kind(&self, kind: &str) -> Message {
        self.next_matching(kind, |m| m.kind() == kind)
    }

    /// The next message an edge node published, skipping commands and STATE.
    pub fn next_from_edge_node(&self) -> Message {
        self.next_matching("message of the edge node", |m| !m.is_from_host())
    }

    /// Every message received over the next `period`.
    pub fn drain_for(&self, period: Duration) -> Vec<Message> {
        let wait = Wait::new("end of the period", period);
        let mut out = Vec::new();
        while let Some(delivery) = self.recv(&wait) {
            if let Delivery::Message(m) = delivery {
                out.push(m);
            }
        }
        out
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.client.disconnect();
    }
}
