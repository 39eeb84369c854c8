//! Retained messages for the engine: rmqtt's own storage answers nothing unless a
//! retainer plugin is loaded, so the engine is given this one: rmqtt's in-memory topic
//! tree, switched on, bounded (`max_retained_messages`, `max_retained_bytes`: a retained
//! message past either is delivered but not kept, logged at WARN) and, when the broker
//! has a store, written through to it and filled from it at start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use infra::logging::Escaped;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{Retain, TopicFilter, TopicName};
use tracing::warn;

use super::store::{Op, StoreWriter, StoredRetain, now_ms};

/// How many retained messages, and how many bytes of topic and payload, are kept.
#[derive(Debug, Clone, Copy)]
pub struct RetainedLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
}

/// The retained message of each topic; clones share it.
#[derive(Clone)]
pub struct Retained {
    tree: Arc<DefaultRetainStorage>,
    /// Size and expiry (Unix ms) of each kept topic, for the limits.
    sizes: Arc<Mutex<Sizes>>,
    limits: RetainedLimits,
    store: Option<StoreWriter>,
}

#[derive(Default)]
struct Sizes {
    topics: HashMap<String, (usize, Option<i64>)>,
    bytes: usize,
}

impl Sizes {
    fn remove(&mut self, topic: &str) {
        if let Some((size, _)) = self.topics.remove(topic) {
            self.bytes -= size;
        }
    }

    /// Forgets the messages whose expiry has passed (the tree no longer delivers them).
    fn forget_expired(&mut self, now: i64) {
        let expired: Vec<String> = self
            .topics
            .iter()
            .filter(|(_, (_, expires))| expires.is_some_and(|at| at <= now))
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in expired {
            self.remove(&topic);
        }
    }
}

impl Retained {
    pub fn new(limits: RetainedLimits, store: Option<StoreWriter>) -> Retained {
        Retained {
            tree: Arc::new(DefaultRetainStorage::new()),
            sizes: Arc::new(Mutex::new(Sizes::default())),
            limits,
            store,
        }
    }

    /// Puts back what the store held (without writing it again).
    pub async fn restore(&self, stored: Vec<StoredRetain>) {
        let now = now_ms();
        for r in stored {
            let expiry = r
                .expires_at
                .map(|at| Duration::from_millis(at.saturating_sub(now).max(1) as u64));
            let topic = TopicName::from(r.topic.clone());
            if !self.admit(&r.topic, r.retain.publish.payload.len(), expiry) {
                continue;
            }
            if let Err(e) = self.tree.set_with_timeout(&topic, r.retain, expiry).await {
                warn!(topic = %Escaped(&r.topic), error = %e, "stored retained message not restored");
                self.lock().remove(&r.topic);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sizes> {
        // The map holds no invariant a panicking holder could break halfway.
        self.sizes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Books `topic` at `payload` bytes if the limits allow it.
    fn admit(&self, topic: &str, payload: usize, expiry: Option<Duration>) -> bool {
        let now = now_ms();
        let size = topic.len() + payload;
        let mut sizes = self.lock();
        let fits = |sizes: &Sizes| {
            let old = sizes.topics.get(topic).map(|(s, _)| *s);
            let count = sizes.topics.len() + usize::from(old.is_none());
            let bytes = sizes.bytes - old.unwrap_or(0) + size;
            count <= self.limits.max_messages && bytes <= self.limits.max_bytes
        };
        if !fits(&sizes) {
            sizes.forget_expired(now);
            if !fits(&sizes) {
                warn!(
                    topic = %Escaped(topic),
                    bytes = size,
                    "retained message not kept: broker.embedded.max_retained_messages or \
                     max_retained_bytes reached"
                );
                return false;
            }
        }
        sizes.remove(topic);
        let expires = expiry.map(|d| now.saturating_add(d.as_millis() as i64));
        sizes.topics.insert(topic.to_owned(), (size, expires));
        sizes.bytes += size;
        true
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
        _default_expiry: Option<Duration>,
    ) -> rmqtt::Result<()> {
        // rmqtt passes its 5-minute default when the message has no expiry of its own; a
        // retained message (a host's STATE) stays until replaced unless it carries one.
        let expiry_interval = retain
            .publish
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval)
            .map(|s| Duration::from_secs(u64::from(s.get())));
        if retain.publish.payload.is_empty() {
            self.lock().remove(topic);
            if let Some(store) = &self.store {
                store.send(Op::RetainDelete(topic.to_string()));
            }
            return self.tree.set_with_timeout(topic, retain, None).await;
        }
        if !self.admit(topic, retain.publish.payload.len(), expiry_interval) {
            return Ok(());
        }
        if let Some(store) = &self.store {
            store.send(Op::RetainSet(StoredRetain {
                topic: topic.to_string(),
                retain: retain.clone(),
                expires_at: expiry_interval.map(|d| now_ms().saturating_add(d.as_millis() as i64)),
            }));
        }
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
