//! A plain MQTT client (rumqttc) driven step by step with bounded waits: connect and see
//! the CONNACK, subscribe and see the SUBACK, publish and see the PUBACK, disconnect.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttOptions, Publish, PublishOptions,
    SubscribeReasonCode,
};

/// Upper bound for any single wait; never a speed assertion.
const WAIT: Duration = Duration::from_secs(10);

pub fn options(id: &str, addr: SocketAddr) -> MqttOptions {
    let mut options = MqttOptions::new(id, (addr.ip().to_string(), addr.port()));
    options.set_keep_alive(30);
    options
}

/// Connects and waits for the CONNACK.
pub async fn connect(options: MqttOptions) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::builder(options).build();
    match wait_connack(&mut eventloop).await {
        Ok(()) => (client, eventloop),
        Err(e) => panic!("connect failed: {e:?}"),
    }
}

/// Polls until the CONNACK (Ok) or the first connection error.
pub async fn wait_connack(eventloop: &mut EventLoop) -> Result<(), ConnectionError> {
    let poll = async {
        loop {
            match eventloop.poll().await? {
                Event::Incoming(Incoming::ConnAck(_)) => return Ok(()),
                _ => continue,
            }
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .expect("no CONNACK or error in time")
}

/// Subscribes and waits for the SUBACK.
pub async fn subscribe(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    filter: &str,
    qos: rumqttc::QoS,
) {
    client.subscribe(filter, qos).await.unwrap();
    wait_suback(eventloop, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Polls until the SUBACK (its return codes), the connection fails, or `wait` passes.
pub async fn wait_suback(
    eventloop: &mut EventLoop,
    wait: Duration,
) -> Result<Vec<SubscribeReasonCode>, String> {
    let poll = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::SubAck(ack))) => return Ok(ack.return_codes),
                Ok(_) => continue,
                Err(e) => return Err(format!("connection failed waiting for a SUBACK: {e:?}")),
            }
        }
    };
    tokio::time::timeout(wait, poll)
        .await
        .unwrap_or_else(|_| Err(format!("no SUBACK within {wait:?}")))
}

/// A client `id` connected to `addr`, subscribed to `filter` (SUBACK seen).
pub async fn subscriber(
    addr: SocketAddr,
    id: &str,
    filter: &str,
    qos: rumqttc::QoS,
) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = connect(options(id, addr)).await;
    subscribe(&client, &mut eventloop, filter, qos).await;
    (client, eventloop)
}

/// The next PUBLISH delivered to this client.
pub async fn next_publish(eventloop: &mut EventLoop) -> Publish {
    let poll = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => return p,
                Ok(_) => continue,
                Err(e) => panic!("connection failed while waiting for a PUBLISH: {e:?}"),
            }
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .expect("no PUBLISH in time")
}

/// Drives the event loop until the PUBACK of the last QoS 1 publish (or the first
/// PUBLISH/PUBACK-free outgoing flush for QoS 0).
pub async fn wait_puback(eventloop: &mut EventLoop) {
    let poll = async {
        loop {
            if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await.unwrap() {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .expect("no PUBACK in time");
}

/// Drives the event loop until the outgoing PUBLISH has been written.
pub async fn wait_sent(eventloop: &mut EventLoop) {
    let poll = async {
        loop {
            if let Event::Outgoing(rumqttc::Outgoing::Publish(_)) = eventloop.poll().await.unwrap()
            {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .expect("PUBLISH not sent in time");
}

/// A client publishing one message and disconnecting cleanly.
pub async fn publish_once(
    addr: SocketAddr,
    id: &str,
    topic: &str,
    payload: &[u8],
    qos: rumqttc::QoS,
    retain: bool,
) {
    let (client, mut eventloop) = connect(options(id, addr)).await;
    client
        .publish(
            topic,
            payload.to_vec(),
            PublishOptions::new(qos).retain(retain),
        )
        .await
        .unwrap();
    match qos {
        rumqttc::QoS::AtMostOnce => wait_sent(&mut eventloop).await,
        _ => wait_puback(&mut eventloop).await,
    }
    disconnect(client, eventloop).await;
}

/// Drives the loop until the connection fails: the broker (or the network) ended it.
pub async fn wait_closed(eventloop: &mut EventLoop) {
    let poll = async { while eventloop.poll().await.is_ok() {} };
    tokio::time::timeout(WAIT, poll)
        .await
        .expect("the connection was not closed in time");
}

/// Sends DISCONNECT and drives the loop until the connection is closed.
pub async fn disconnect(client: AsyncClient, mut eventloop: EventLoop) {
    client.disconnect().await.unwrap();
    let poll = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => continue,
                Err(_) => return,
            }
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .expect("DISCONNECT not sent in time");
}
