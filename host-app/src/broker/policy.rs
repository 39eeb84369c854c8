//! The seam between who a client is (decided by the front at CONNECT) and what it may do
//! once connected (asked by the broker engine on every PUBLISH and SUBSCRIBE).

/// What a connected client may publish and subscribe to. `account` is the name the front
/// authenticated the connection as (`None`: anonymous); `client_id` is the client's own id.
pub trait TopicPolicy: Send + Sync + 'static {
    /// May this client publish to `topic` (a topic name, no wildcards)?
    fn may_publish(&self, account: Option<&str>, client_id: &str, topic: &str) -> bool;
    /// May this client subscribe to `filter` (a topic filter, wildcards allowed)?
    fn may_subscribe(&self, account: Option<&str>, client_id: &str, filter: &str) -> bool;
}
