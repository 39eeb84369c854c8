//! rmqtt, a second independent MQTT broker, in a thread of the test process (plain,
//! anonymous, retained messages kept in memory).

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{Retain, TopicFilter, TopicName};

/// rmqtt on its own runtime in a thread of this process, on a loopback port the OS picks
/// (it runs until the test process exits). Returns the port.
pub fn start() -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("rmqtt runtime");
        runtime.block_on(async move {
            let scx = rmqtt::context::ServerContext::new()
                .busy_check_enable(false)
                .build()
                .await;
            *scx.extends.retain_mut().await = Box::new(Retained(DefaultRetainStorage::new()));
            let listener = rmqtt::net::Builder::new()
                .name("test")
                .laddr(SocketAddr::from(([127, 0, 0, 1], 0)))
                .nodelay(true)
                .bind()
                .expect("rmqtt binds")
                .tcp()
                .expect("rmqtt tcp");
            let port = listener.local_addr().expect("rmqtt address").port();
            let _ = tx.send(port);
            let _ = rmqtt::server::MqttServer::new(scx)
                .listener_by_id(listener, 1)
                .build()
                .run()
                .await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("rmqtt listens")
}

/// rmqtt keeps no retained message unless given a store.
struct Retained(DefaultRetainStorage);

#[async_trait]
impl RetainStorage for Retained {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry: Option<Duration>,
    ) -> rmqtt::Result<()> {
        self.0.set_with_timeout(topic, retain, expiry).await
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.0.get_message(filter).await
    }

    async fn count(&self) -> isize {
        self.0.count().await
    }

    async fn max(&self) -> isize {
        self.0.max().await
    }
}
