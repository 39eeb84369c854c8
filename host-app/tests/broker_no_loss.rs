//! No acknowledged message lost: a QoS 1 burst into a subscriber that reads slowly (it
//! reads nothing until half the burst is acknowledged, then pauses every few messages).
//! Every message the broker acknowledged to the publisher reaches the subscriber.

use std::time::Duration;

use host_app_testkit::broker::*;
use rumqttc::{Event, Incoming, PublishOptions, QoS};
use system_tests::mqtt::client::*;

const MESSAGES: u32 = 200_000;
/// Each payload: the sequence number (4 bytes) and padding, so the backlog is well over
/// the 8 MiB where rumqttd began dropping.
const PAYLOAD_SIZE: usize = 64;
/// The whole test's bound; never a speed assertion.
const LIMIT: Duration = Duration::from_secs(120);

fn payload(seq: u32) -> Vec<u8> {
    let mut p = vec![0u8; PAYLOAD_SIZE];
    p[..4].copy_from_slice(&seq.to_be_bytes());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_qos1_message_reaches_a_slow_subscriber() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let (_sub, mut sub_loop) = subscriber(addr, "slow-reader", "burst/#", QoS::AtLeastOnce).await;
    let (publisher, mut pub_loop) = connect(options("fast-writer", addr)).await;

    let (half_acked_tx, half_acked) = tokio::sync::oneshot::channel::<()>();
    let publishing = tokio::spawn(async move {
        let sending = tokio::spawn(async move {
            for seq in 0..MESSAGES {
                publisher
                    .publish(
                        "burst/data",
                        payload(seq),
                        PublishOptions::new(QoS::AtLeastOnce),
                    )
                    .await
                    .unwrap();
            }
            publisher
        });
        let mut half_acked_tx = Some(half_acked_tx);
        let mut acked = 0u32;
        while acked < MESSAGES {
            match pub_loop.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher connection failed after {acked} PUBACKs: {e:?}"),
            }
            if acked == MESSAGES / 2
                && let Some(tx) = half_acked_tx.take()
            {
                let _ = tx.send(());
            }
        }
        let _publisher = sending.await.unwrap();
        acked
    });

    let receiving = async {
        // Reads nothing until the broker holds a large backlog for it (or a broker that
        // holds the publisher back has had its time).
        let _ = tokio::time::timeout(Duration::from_secs(20), half_acked).await;
        let mut seen = vec![false; MESSAGES as usize];
        let mut distinct = 0u32;
        let mut delivered = 0u64;
        while distinct < MESSAGES {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    delivered += 1;
                    let seq = u32::from_be_bytes(p.payload[..4].try_into().unwrap());
                    let slot = &mut seen[seq as usize];
                    if !*slot {
                        *slot = true;
                        distinct += 1;
                    }
                    if delivered.is_multiple_of(2_000) {
                        // A slow reader.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("subscriber connection failed after {distinct} messages: {e:?}"),
            }
        }
        distinct
    };

    let (acked, distinct) = tokio::time::timeout(LIMIT, async {
        let distinct = receiving.await;
        (publishing.await.unwrap(), distinct)
    })
    .await
    .expect("burst delivered within the bound");
    assert_eq!(acked, MESSAGES, "every message acknowledged");
    assert_eq!(distinct, MESSAGES, "every acknowledged message delivered");
    broker.stop().await;
}
