//! Retained messages for the engine: rmqtt's own storage answers nothing unless a
//! retainer plugin is loaded, so the engine is given this one (rmqtt's in-memory topic
//! tree, switched on).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{Retain, TopicFilter, TopicName};

/// The retained message of each topic, in memory; clones share it.
#[derive(Clone)]
pub struct Retained {
    tree: Arc<DefaultRetainStorage>,
}

impl Retained {
    pub fn new() -> Retained {
        Retained {
            tree: Arc::new(DefaultRetainStorage::new()),
        }
    }
}

#[async_trait]
impl RetainStorage for Retained {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry_interval: Option<Duration>,
    ) -> rmqtt::Result<()> {
        self.tree
            .set_with_timeout(topic, retain, expiry_interval)
            .await
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.tree.get_message(filter).await
    }

    async fn count(&self) -> isize {
        self.tree.count().await
    }

    async fn max(&self) -> isize {
        self.tree.max().await
    }
}
