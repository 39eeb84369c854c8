//! The broker engine: rmqtt on a tokio runtime of its own (one thread owns it; stopping
//! it drops the runtime, which ends every engine task, the front's included). The engine
//! has no listener: the front hands it each accepted (and TLS-terminated) client stream
//! with the client's real address (module `handoff`), and rmqtt serves it with its own
//! per-connection handler (`rmqtt::v3::process`, `rmqtt::v5::process`, made public by
//! our patch in vendor/rmqtt). Each front listener has a listener configuration of its
//! own in the engine ([`PLAIN`], [`TLS`]).
//!
//! The engine's hooks: logins are the front's (the username carries the account the front
//! authenticated; nothing else reaches the engine), every PUBLISH and SUBSCRIBE is asked
//! of the [`TopicPolicy`], and each NBIRTH and DBIRTH is kept retained under
//! `$sparkplug/certificates/` (a Sparkplug Aware MQTT Server). With a store, the retained
//! messages and kept sessions it holds are put back before the engine accepts a
//! connection, and their changes are written to it (modules `retained`, `sessions`).

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use infra::logging::Escaped;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::retain::RetainStorage;
use rmqtt::session::Session;
use rmqtt::subscribe::SharedSubscription;
use rmqtt::types::{
    AuthResult, ClientId, Id, IsOnline, ListenerConfig, ListenerId, NodeId, Publish,
    PublishAclResult, Reason, Retain, SharedGroup, SubscribeAclResult, SubscriptionIdentifier,
    SubscriptionOptions, TopicName,
};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::BrokerError;
use super::policy::TopicPolicy;
use super::retained::{Retained, RetainedLimits};
use super::sessions::{self, SessionKeeper};
use super::store::{Loaded, StoreWriter, WriterThread};

/// Topic aliases an MQTT 5 client may set up (rmqtt allows none by default).
const MAX_TOPIC_ALIASES: u16 = 64;
/// How long the engine's runtime may take to end its tasks once stopped.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long the engine keeps running once told to stop, before its tasks are ended.
const STOP_SETTLE: Duration = Duration::from_millis(50);
/// The engine's listener configuration for clients of the front's plain listener.
pub const PLAIN: ListenerId = 1;
/// The same for clients of the front's TLS listener.
pub const TLS: ListenerId = 2;
/// Bytes the engine's read buffer of a connection starts with (rmqtt-net's default is
/// 8 KiB for reading and 8 KiB for writing, kept for the connection's whole life); both
/// grow while a client is busy.
pub const READ_BUFFER: usize = 512;

/// Limits the engine applies to each connection the front forwards.
pub struct EngineSettings {
    pub max_packet_size: usize,
    pub max_connections: usize,
    /// QoS 1/2 messages in flight to one subscriber.
    pub max_inflight: u16,
    /// Messages queued for one subscriber beyond those in flight.
    pub max_queued: usize,
    /// Where the engine counts the messages it takes in and delivers.
    pub counters: Arc<MessageCounters>,
    pub retained: RetainedLimits,
    /// The front's plain and TLS listener addresses (for the engine's connection ids).
    pub plain_addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
}

/// PUBLISH packets through the engine, for `/metrics`.
#[derive(Debug, Default)]
pub struct MessageCounters {
    /// Accepted from clients (refused ones are not counted).
    pub received: AtomicU64,
    /// Delivered to subscribers (one message to three subscribers counts three).
    pub delivered: AtomicU64,
}

/// What the store held at start, and where changes go.
pub struct EngineStore {
    pub loaded: Loaded,
    pub writer: StoreWriter,
    pub thread: WriterThread,
}

/// A running engine. Dropping it stops the engine without waiting.
pub struct Engine {
    handle: Handle,
    scx: ServerContext,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    store: Option<WriterThread>,
}

impl Engine {
    /// Starts rmqtt on its own thread and runtime; returns once it takes connections.
    pub fn start(
        settings: EngineSettings,
        policy: Arc<dyn TopicPolicy>,
        store: Option<EngineStore>,
    ) -> Result<Engine, BrokerError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (store, writer_thread) = match store {
            Some(s) => (Some((s.loaded, s.writer)), Some(s.thread)),
            None => (None, None),
        };
        let thread = std::thread::Builder::new()
            .name("mqtt-engine".to_owned())
            .spawn(move || run(settings, policy, store, ready_tx, stop_rx))
            .map_err(|e| BrokerError::Start(format!("cannot spawn the engine thread: {e}")))?;
        let (handle, scx) = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => return Err(BrokerError::Start(e)),
            Err(_) => return Err(BrokerError::Start("the engine thread ended".to_owned())),
        };
        Ok(Engine {
            handle,
            scx,
            stop: Some(stop_tx),
            thread: Some(thread),
            store: writer_thread,
        })
    }

    /// The engine's runtime: the front's listeners and connections run there too, so
    /// that stopping the engine ends them.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The engine's state, which each handed-over connection is served with.
    pub fn context(&self) -> &ServerContext {
        &self.scx
    }

    /// Ends the engine and waits until its runtime is gone (its port closed) and the
    /// store has written every change.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let thread = self.thread.take();
        let store = self.store.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(thread) = thread {
                let _ = thread.join();
            }
            if let Some(store) = store {
                store.stop();
            }
        })
        .await;
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The engine thread: builds the runtime, runs rmqtt until told to stop, drops it all.
fn run(
    settings: EngineSettings,
    policy: Arc<dyn TopicPolicy>,
    store: Option<(Loaded, StoreWriter)>,
    ready: mpsc::Sender<Result<(Handle, ServerContext), String>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mqtt-engine-worker")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot build the engine runtime: {e}")));
            return;
        }
    };
    let handle = runtime.handle().clone();
    runtime.block_on(async move {
        let scx = build(settings, policy, store).await;
        let _ = ready.send(Ok((handle, scx)));
        let _ = stop.await;
        debug!("engine stopping");
        // A message already acknowledged to its publisher may still be on its way to an
        // offline session (and so to the store): let the sessions take it first.
        tokio::time::sleep(STOP_SETTLE).await;
    });
    // Ends every task on the runtime: the engine's, and the front's listeners and
    // connections.
    runtime.shutdown_timeout(STOP_GRACE);
}

async fn build(
    settings: EngineSettings,
    policy: Arc<dyn TopicPolicy>,
    store: Option<(Loaded, StoreWriter)>,
) -> ServerContext {
    let scx = ServerContext::new()
        // rmqtt refuses CONNECTs as "server unavailable" while it deems the host busy.
        .busy_check_enable(false)
        .build()
        .await;
    let (loaded, writer) = match store {
        Some((loaded, writer)) => (Some(loaded), Some(writer)),
        None => (None, None),
    };
    let retained = Retained::new(settings.retained, writer.clone());
    *scx.extends.retain_mut().await = Box::new(retained.clone());
    *scx.extends.shared_subscription_mut().await = Box::new(RoundRobin::default());
    let hooks = Hooks {
        policy: policy.clone(),
        retained: retained.clone(),
        counters: Arc::clone(&settings.counters),
    };
    let register = scx.extends.hook_mgr().register();
    for typ in [
        Type::ClientAuthenticate,
        Type::ClientSubscribeCheckAcl,
        Type::MessagePublishCheckAcl,
        Type::MessageDropped,
        Type::MessagePublish,
        Type::MessageDelivered,
    ] {
        register.add(typ, Box::new(hooks.clone())).await;
    }
    if let Some(writer) = &writer {
        let keeper = SessionKeeper {
            store: writer.clone(),
        };
        for typ in [
            Type::ClientConnected,
            Type::ClientDisconnected,
            Type::SessionTerminated,
            Type::SessionSubscribed,
            Type::SessionUnsubscribed,
            Type::OfflineMessage,
            Type::OfflineInflightMessages,
        ] {
            register.add(typ, Box::new(keeper.clone())).await;
        }
    }
    register.start().await;

    let unbound = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    for (lid, name, laddr) in [
        (PLAIN, "plain", settings.plain_addr),
        (TLS, "tls", settings.tls_addr),
    ] {
        let cfg = listener_config(&settings, name, laddr.unwrap_or(unbound));
        scx.listen_cfgs.insert(lid, cfg);
    }
    if let (Some(loaded), Some(writer)) = (loaded, &writer) {
        retained.restore(loaded.retained).await;
        sessions::restore(&scx, loaded.sessions, &policy, writer).await;
    }
    scx
}

/// The engine's settings for the connections of one front listener.
fn listener_config(settings: &EngineSettings, name: &str, laddr: SocketAddr) -> ListenerConfig {
    let max_inflight = NonZeroU16::new(settings.max_inflight).unwrap_or(NonZeroU16::MIN);
    let cfg = Builder::new()
        .name(name)
        .laddr(laddr)
        .nodelay(true)
        .allow_anonymous(false)
        .max_packet_size(u32::try_from(settings.max_packet_size).unwrap_or(u32::MAX))
        .max_connections(settings.max_connections)
        .max_inflight(max_inflight)
        .max_mqueue_len(settings.max_queued)
        .max_topic_aliases(MAX_TOPIC_ALIASES)
        // Zero: a message without its own MQTT 5 expiry never expires (as Mosquitto), so
        // a kept session offline longer than rmqtt's 5-minute default loses nothing.
        .message_expiry_interval(Duration::ZERO)
        // The front keeps its own CONNECT deadline; the CONNECT it hands over is whole.
        .handshake_timeout(Duration::from_secs(10));
    Arc::new(cfg)
}

/// Shared subscriptions (`$share/{group}/{filter}`): each message to one member of the
/// group, in turn, online members first (rmqtt's default supports none).
#[derive(Default)]
struct RoundRobin {
    next: AtomicUsize,
}

#[async_trait]
impl SharedSubscription for RoundRobin {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        _scx: &ServerContext,
        _group: &SharedGroup,
        _publisher: &Id,
        _topic: &TopicName,
        members: &[(
            NodeId,
            ClientId,
            SubscriptionOptions,
            Option<Vec<SubscriptionIdentifier>>,
            Option<IsOnline>,
        )],
    ) -> Option<(usize, IsOnline)> {
        if members.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let online = |i: &usize| members[*i].4.unwrap_or(true);
        let order = (0..members.len()).map(|k| (start + k) % members.len());
        let chosen = order
            .clone()
            .find(online)
            .or_else(|| order.clone().next())?;
        Some((chosen, online(&chosen)))
    }
}

/// The engine's login and access checks.
#[derive(Clone)]
struct Hooks {
    policy: Arc<dyn TopicPolicy>,
    /// Where the Sparkplug Aware copies of NBIRTH and DBIRTH go.
    retained: Retained,
    counters: Arc<MessageCounters>,
}

/// The account a session was logged in as: the front sends an empty username for
/// anonymous clients (MQTT 3.1.1 allows no password without a username).
fn account(session: &Session) -> Option<&str> {
    session
        .id
        .username
        .as_deref()
        .filter(|name| !name.is_empty())
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            // Only the front hands connections to the engine, each one logged in there.
            Parameter::ClientAuthenticate(_) => (
                false,
                Some(HookResult::AuthResult(AuthResult::Allow(false, None))),
            ),
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let client_id = &session.id.client_id;
                let filter = &subscribe.topic_filter;
                let result = if self
                    .policy
                    .may_subscribe(account(session), client_id, filter)
                {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    warn!(
                        client_id = %Escaped(client_id),
                        filter = %Escaped(filter),
                        "subscribe refused"
                    );
                    SubscribeAclResult::new_failure(
                        rmqtt::codec::v5::SubscribeAckReason::NotAuthorized,
                    )
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let client_id = &session.id.client_id;
                let topic = &publish.topic;
                let result = if self.policy.may_publish(account(session), client_id, topic) {
                    PublishAclResult::allow()
                } else {
                    warn!(
                        client_id = %Escaped(client_id),
                        topic = %Escaped(topic),
                        "publish refused; dropped"
                    );
                    // As Mosquitto: acknowledged (MQTT 5: reason 0x87), not delivered.
                    PublishAclResult::rejected(false, None)
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::MessageDropped(to, _, publish, reason)
                if matches!(reason, Reason::MessageQueueFull | Reason::MessageExpiration) =>
            {
                let client_id = to.as_ref().map(|id| id.client_id.to_string());
                let why = if matches!(reason, Reason::MessageQueueFull) {
                    "subscriber's queue full (broker.embedded.max_queued_messages)"
                } else {
                    "not delivered within its expiry"
                };
                warn!(
                    client_id = %Escaped(client_id.unwrap_or_default()),
                    topic = %Escaped(&publish.topic),
                    "{why}; message dropped"
                );
                (true, acc)
            }
            Parameter::MessagePublish(Some(session), from, publish) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                let topic = &publish.topic;
                if is_birth(topic)
                    && self
                        .policy
                        .may_publish(account(session), &session.id.client_id, topic)
                {
                    self.keep_birth(from, publish).await;
                }
                (true, acc)
            }
            Parameter::MessageDelivered(..) => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

/// The Sparkplug Aware MQTT Server's store (Sparkplug 3.0 chapter 10): each NBIRTH and
/// DBIRTH as published, kept retained under `$sparkplug/certificates/` + its topic.
const CERTIFICATES: &str = "$sparkplug/certificates/";

/// `spBv1.0/{group_id}/NBIRTH/{edge_node_id}` or
/// `spBv1.0/{group_id}/DBIRTH/{edge_node_id}/{device_id}`. Asked of every message
/// published, so it allocates nothing.
fn is_birth(topic: &str) -> bool {
    let mut levels = topic.split('/');
    let (Some("spBv1.0"), Some(group), Some(kind), Some(node)) =
        (levels.next(), levels.next(), levels.next(), levels.next())
    else {
        return false;
    };
    let device = levels.next();
    if levels.next().is_some() || group.is_empty() || node.is_empty() {
        return false;
    }
    match (kind, device) {
        ("NBIRTH", None) => true,
        ("DBIRTH", Some(device)) => !device.is_empty(),
        _ => false,
    }
}

impl Hooks {
    /// Keeps `birth` retained under its `$sparkplug/certificates/` topic, replacing the
    /// one before.
    async fn keep_birth(&self, from: &rmqtt::types::From, birth: &Publish) {
        let mut copy = birth.clone();
        copy.inner.topic = format!("{CERTIFICATES}{}", birth.topic).into();
        copy.inner.retain = true;
        copy.inner.dup = false;
        let topic = copy.inner.topic.clone();
        let retain = Retain {
            msg_id: None,
            from: from.clone(),
            publish: copy,
        };
        if let Err(e) = self.retained.set(&topic, retain, None).await {
            warn!(topic = %Escaped(&topic), error = %e, "Sparkplug birth not kept");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_birth;

    #[test]
    fn only_whole_nbirth_and_dbirth_topics_are_births() {
        assert!(is_birth("spBv1.0/g/NBIRTH/n"));
        assert!(is_birth("spBv1.0/g/DBIRTH/n/d"));
        for not in [
            "spBv1.0/g/NBIRTH/n/d",
            "spBv1.0/g/DBIRTH/n",
            "spBv1.0/g/DBIRTH/n/",
            "spBv1.0//NBIRTH/n",
            "spBv1.0/g/NBIRTH/",
            "spBv1.0/g/NDATA/n",
            "spBv1.0/g/DBIRTH/n/d/x",
            "spAv1.0/g/NBIRTH/n",
            "spBv1.0/g/NBIRTH",
            "",
        ] {
            assert!(!is_birth(not), "{not}");
        }
    }
}
