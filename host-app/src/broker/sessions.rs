//! The sessions clients ask to keep (MQTT 3.1.1 clean session false, MQTT 5 Session
//! Expiry Interval above 0), kept across a restart: the engine's hooks tell the store of
//! each kept session, its subscriptions and the messages queued for it while offline
//! (module `store`), and at start each stored session is rebuilt offline in the engine,
//! its subscriptions routed again and its messages queued, so the client finds it when it
//! reconnects.
//!
//! What is restored is held to today's access rules: a subscription the account may no
//! longer make is dropped (logged), and so is a queued message no kept subscription
//! covers. A restored session publishes no will (its connection ended with the broker's
//! stop, which publishes none). Messages a connected client had not received yet when the
//! broker stopped are not kept; messages queued for an offline client are, as are those
//! in flight when it left. A session whose client was connected at the stop has its
//! expiry counted from the start.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infra::logging::Escaped;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::{Session, SessionState};
use rmqtt::types::{ConnectInfo, DisconnectInfo, SessionSubMap, SessionSubs, TopicFilter};
use tracing::{info, warn};

use super::policy::TopicPolicy;
use super::store::{Op, StoreWriter, StoredSession, now_ms};
use super::topic_filter;

/// Tells the store of each kept session's changes.
#[derive(Clone)]
pub struct SessionKeeper {
    pub store: StoreWriter,
}

/// Whether the client asked its session to be kept after it leaves.
fn is_kept(conn_info: &ConnectInfo) -> bool {
    match conn_info {
        ConnectInfo::V3(_, c) => !c.clean_session,
        ConnectInfo::V5(_, c) => c.session_expiry_interval_secs > 0,
    }
}

fn names(session: &Session) -> (String, i64) {
    (session.id.client_id.to_string(), session.id.create_time)
}

#[async_trait]
impl Handler for SessionKeeper {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientConnected(session) => {
                let Ok(conn_info) = session.connect_info().await else {
                    return (true, acc);
                };
                let (client_id, _) = names(session);
                if is_kept(&conn_info) {
                    let mut subscriptions = Vec::new();
                    if let Ok(subs) = session.subscriptions().await {
                        for (filter, opts) in subs.read().await.iter() {
                            subscriptions.push((filter.to_string(), opts.clone()));
                        }
                    }
                    self.store.send(Op::SessionUpsert {
                        id: session.id.clone(),
                        conn_info: conn_info.as_ref().clone(),
                        subscriptions,
                    });
                } else {
                    self.store.send(Op::SessionDelete {
                        client_id,
                        created: None,
                    });
                }
            }
            Parameter::ClientDisconnected(session, _) => {
                let (client_id, created) = names(session);
                let disconnect = session.disconnect().await.ok().flatten();
                let expiry = session.fitter.session_expiry_interval(disconnect.as_ref());
                self.store.send(Op::SessionDisconnected {
                    client_id,
                    created,
                    at: now_ms(),
                    expiry_ms: i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX),
                });
            }
            Parameter::SessionTerminated(session, _) => {
                let (client_id, created) = names(session);
                self.store.send(Op::SessionDelete {
                    client_id,
                    created: Some(created),
                });
            }
            Parameter::SessionSubscribed(session, subscribe) => {
                let (client_id, created) = names(session);
                self.store.send(Op::Subscribe {
                    client_id,
                    created,
                    filter: subscribe.topic_filter.to_string(),
                    opts: subscribe.opts.clone(),
                });
            }
            Parameter::SessionUnsubscribed(session, unsubscribe) => {
                let (client_id, created) = names(session);
                self.store.send(Op::Unsubscribe {
                    client_id,
                    created: Some(created),
                    filter: unsubscribe.topic_filter.to_string(),
                });
            }
            Parameter::OfflineMessage(session, from, publish) => {
                let (client_id, created) = names(session);
                self.store.send(Op::Message {
                    client_id,
                    created,
                    from: from.clone(),
                    publish: (*publish).clone(),
                });
            }
            Parameter::OfflineInflightMessages(session, inflight) => {
                let (client_id, created) = names(session);
                for message in inflight {
                    self.store.send(Op::Message {
                        client_id: client_id.clone(),
                        created,
                        from: message.from.clone(),
                        publish: message.publish.clone(),
                    });
                }
            }
            _ => {}
        }
        (true, acc)
    }
}

/// Rebuilds each stored session offline in the engine (before it accepts connections).
pub async fn restore(
    scx: &ServerContext,
    stored: Vec<StoredSession>,
    policy: &Arc<dyn TopicPolicy>,
    store: &StoreWriter,
) {
    let count = stored.len();
    let mut restored = 0usize;
    for session in stored {
        let client_id = session.id.client_id.to_string();
        match restore_one(scx, session, policy, store).await {
            Ok(true) => restored += 1,
            Ok(false) => store.send(Op::SessionDelete {
                client_id,
                created: None,
            }),
            Err(e) => {
                warn!(client_id = %Escaped(&client_id), error = %e, "stored session not restored");
                store.send(Op::SessionDelete {
                    client_id,
                    created: None,
                });
            }
        }
    }
    if count > 0 {
        info!(
            restored,
            expired = count - restored,
            "kept MQTT sessions restored"
        );
    }
}

/// `Ok(false)`: the session has expired meanwhile.
async fn restore_one(
    scx: &ServerContext,
    stored: StoredSession,
    policy: &Arc<dyn TopicPolicy>,
    store: &StoreWriter,
) -> rmqtt::Result<bool> {
    let id = stored.id;
    let client_id = id.client_id.to_string();
    let account = id.username.as_deref().filter(|name| !name.is_empty());
    let listen_cfg = scx
        .listen_cfgs
        .get(&id.lid)
        .map(|c| c.value().clone())
        .ok_or_else(|| anyhow_error("the engine listener is missing"))?;
    // Its connection ended with the broker's stop, which publishes no will.
    let conn_info = Arc::new(match stored.conn_info {
        ConnectInfo::V3(cid, mut c) => {
            c.last_will = None;
            ConnectInfo::V3(cid, c)
        }
        ConnectInfo::V5(cid, mut c) => {
            c.last_will = None;
            ConnectInfo::V5(cid, c)
        }
    });
    let fitter =
        scx.extends
            .fitter_mgr()
            .await
            .create(conn_info.clone(), id.clone(), listen_cfg.clone());
    let now = now_ms();
    let disconnected_at = stored.disconnected_at.unwrap_or(now);
    let expiry_ms = stored.expiry_ms.unwrap_or_else(|| {
        i64::try_from(fitter.session_expiry_interval(None).as_millis()).unwrap_or(i64::MAX)
    });
    let remaining = expiry_ms.saturating_sub(now.saturating_sub(disconnected_at));
    if remaining <= 0 {
        return Ok(false);
    }

    let mut subscriptions = SessionSubMap::default();
    for (filter, opts) in stored.subscriptions {
        if policy.may_subscribe(account, &client_id, &filter) {
            subscriptions.insert(TopicFilter::from(filter), opts);
        } else {
            warn!(
                client_id = %Escaped(&client_id),
                filter = %Escaped(&filter),
                "stored subscription refused by the access rules; dropped"
            );
            store.send(Op::Unsubscribe {
                client_id: client_id.clone(),
                created: None,
                filter,
            });
        }
    }
    let routes: Vec<_> = subscriptions
        .iter()
        .map(|(f, o)| (f.clone(), o.clone()))
        .collect();

    let max_inflight = fitter.max_inflight();
    let max_queued = fitter.max_mqueue_len();
    let session = Session::new(
        id.clone(),
        scx.clone(),
        max_queued,
        listen_cfg,
        fitter,
        None,
        max_inflight,
        id.create_time,
        conn_info,
        false,
        false,
        false,
        disconnected_at,
        SessionSubs::from(subscriptions),
        Some(DisconnectInfo::new(disconnected_at)),
        None,
    )
    .await?;
    let queue = session.deliver_queue();
    let mut dropped = 0usize;
    for (from, publish) in stored.messages {
        let covered = routes
            .iter()
            .any(|(filter, _)| topic_filter::covers(filter, &publish.topic));
        if !covered || queue.push((from, publish)).is_err() {
            dropped += 1;
        }
    }
    if dropped > 0 {
        warn!(
            client_id = %Escaped(&client_id),
            dropped,
            "stored messages not restored: no kept subscription covers them, or the queue is full"
        );
    }
    let tx =
        SessionState::offline_restart(session.clone(), Duration::from_millis(remaining as u64))
            .await?;
    scx.extends
        .shared()
        .await
        .entry(id.clone())
        .set(session, tx)
        .await?;
    let router = scx.extends.router().await;
    for (filter, opts) in routes {
        router.add(&filter, id.clone(), opts).await?;
    }
    Ok(true)
}

fn anyhow_error(message: &str) -> rmqtt::Error {
    rmqtt::Error::msg(message.to_owned())
}
