//! The embedded broker's store: retained messages and the sessions clients ask to keep
//! (their subscriptions and the QoS 1/2 messages queued for them while offline), in one
//! SQLite file in the host's state directory (created 0600), so both survive a restart.
//!
//! The engine never waits for the disk: its hooks hand each change to [`StoreWriter`],
//! and one thread writes what arrived within `store_flush_ms` in one transaction (few
//! writes, for SD cards), and everything left when the broker stops. What a crash takes
//! is at most that last interval. The store is bounded: sessions past
//! `max_stored_sessions` and messages past `max_stored_messages` are not kept (logged at
//! WARN); retained messages are bounded where they are kept in memory (module
//! `retained`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rmqtt::types::{ConnectInfo, From, Id, Publish, Retain, SubscriptionOptions};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

/// The store's file in the state directory.
pub const STORE_FILE: &str = "broker.db";
/// The schema this code writes; a file with a later one was written by a newer host.
const SCHEMA_VERSION: i64 = 1;
/// Changes waiting for the writer; past it they are not kept (logged once per batch).
const QUEUE: usize = 65_536;

/// Why the store cannot be used; always names the file.
#[derive(Debug, thiserror::Error)]
#[error("broker store {}: {reason}", path.display())]
pub struct StoreError {
    pub path: PathBuf,
    pub reason: String,
}

/// What the store keeps at most, besides the retained messages.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    pub max_sessions: usize,
    pub max_messages: usize,
    pub flush: Duration,
}

/// A retained message as stored; `expires_at` in Unix milliseconds.
pub struct StoredRetain {
    pub topic: String,
    pub retain: Retain,
    pub expires_at: Option<i64>,
}

/// A kept session as stored.
pub struct StoredSession {
    pub id: Id,
    pub conn_info: ConnectInfo,
    pub subscriptions: Vec<(String, SubscriptionOptions)>,
    /// Unix milliseconds; `None` when the client was connected when the broker stopped.
    pub disconnected_at: Option<i64>,
    /// The session expiry in force when the client left, in milliseconds.
    pub expiry_ms: Option<i64>,
    /// Messages queued for it, oldest first.
    pub messages: Vec<(From, Publish)>,
}

/// Everything the store held at start.
pub struct Loaded {
    pub retained: Vec<StoredRetain>,
    pub sessions: Vec<StoredSession>,
}

/// One change for the writer. A session is named by its client id and the creation time
/// of the connection that made it, so a late change of an older connection touches
/// nothing.
pub enum Op {
    RetainSet(StoredRetain),
    RetainDelete(String),
    SessionUpsert {
        id: Id,
        conn_info: ConnectInfo,
        subscriptions: Vec<(String, SubscriptionOptions)>,
    },
    SessionDisconnected {
        client_id: String,
        created: i64,
        at: i64,
        expiry_ms: i64,
    },
    /// `created` `None`: whichever session the client id has.
    SessionDelete {
        client_id: String,
        created: Option<i64>,
    },
    Subscribe {
        client_id: String,
        created: i64,
        filter: String,
        opts: SubscriptionOptions,
    },
    Unsubscribe {
        client_id: String,
        created: Option<i64>,
        filter: String,
    },
    Message {
        client_id: String,
        created: i64,
        from: From,
        publish: Publish,
    },
    /// Write what is pending and end.
    Stop,
}

/// Hands changes to the writer thread; clones share it. Never blocks the engine.
#[derive(Clone)]
pub struct StoreWriter {
    tx: SyncSender<Op>,
    overflowed: Arc<AtomicBool>,
}

impl StoreWriter {
    pub fn send(&self, op: Op) {
        match self.tx.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if !self.overflowed.swap(true, Ordering::Relaxed) {
                    warn!("broker store falling behind; changes not kept until it catches up");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The writer thread; [`WriterThread::stop`] writes what is pending and waits for it.
pub struct WriterThread {
    tx: SyncSender<Op>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriterThread {
    /// Blocking: call from a blocking context.
    pub fn stop(mut self) {
        let _ = self.tx.send(Op::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        let _ = self.tx.try_send(Op::Stop);
    }
}

/// Opens (creating, 0600, with the directory 0700) the store in `state_dir`, reads what
/// it holds (dropping expired sessions and messages) and starts its writer.
pub fn open(
    state_dir: &Path,
    limits: StoreLimits,
) -> Result<(Loaded, StoreWriter, WriterThread), StoreError> {
    let path = state_dir.join(STORE_FILE);
    let fail = |reason: String| StoreError {
        path: path.clone(),
        reason,
    };
    crate::api::access::ensure_state_dir(state_dir)
        .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
    create_private(&path).map_err(|e| fail(format!("cannot create: {e}")))?;
    let conn = Connection::open(&path).map_err(|e| fail(format!("cannot open: {e}")))?;
    init(&conn).map_err(|e| fail(e.to_string()))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| fail(e.to_string()))?;
    if version > SCHEMA_VERSION {
        return Err(fail(format!(
            "schema version {version} is newer than this host's {SCHEMA_VERSION}"
        )));
    }
    let loaded = load(&conn, &path).map_err(|e| fail(e.to_string()))?;
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let writer = StoreWriter {
        tx: tx.clone(),
        overflowed: Arc::new(AtomicBool::new(false)),
    };
    let overflowed = writer.overflowed.clone();
    let thread_path = path.clone();
    let thread = std::thread::Builder::new()
        .name("mqtt-store".to_owned())
        .spawn(move || {
            Writer {
                conn,
                path: thread_path,
                limits,
                overflowed,
            }
            .run(rx)
        })
        .map_err(|e| fail(format!("cannot spawn its writer: {e}")))?;
    Ok((
        loaded,
        writer,
        WriterThread {
            tx,
            thread: Some(thread),
        },
    ))
}

/// Creates the file owner-only if absent; SQLite gives its WAL files the same mode.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS retained (
             topic TEXT PRIMARY KEY, meta TEXT NOT NULL, payload BLOB NOT NULL,
             expires_at INTEGER);
         CREATE TABLE IF NOT EXISTS sessions (
             client_id TEXT PRIMARY KEY, created INTEGER NOT NULL, id TEXT NOT NULL,
             conn_info TEXT NOT NULL, disconnected_at INTEGER, expiry_ms INTEGER);
         CREATE TABLE IF NOT EXISTS subscriptions (
             client_id TEXT NOT NULL, filter TEXT NOT NULL, opts TEXT NOT NULL,
             PRIMARY KEY (client_id, filter));
         CREATE TABLE IF NOT EXISTS messages (
             seq INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL,
             meta TEXT NOT NULL, payload BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS messages_client ON messages (client_id, seq);",
    )?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version == 0 {
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    Ok(())
}

/// A row this code cannot decode: logged and removed, the rest of the store kept.
fn undecodable(path: &Path, what: &str, key: &str, e: &dyn std::fmt::Display) {
    warn!(
        path = %path.display(),
        key = %infra::logging::Escaped(key),
        error = %e,
        "broker store: {what} cannot be read; dropped"
    );
}

fn load(conn: &Connection, path: &Path) -> rusqlite::Result<Loaded> {
    let now = now_ms();
    conn.execute(
        "DELETE FROM retained WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        [now],
    )?;
    let mut retained = Vec::new();
    let mut bad = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT topic, meta, payload, expires_at FROM retained")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let topic: String = row.get(0)?;
            match decode::<Retain>(&row.get::<_, String>(1)?) {
                Ok(mut retain) => {
                    retain.publish.inner.payload = row.get::<_, Vec<u8>>(2)?.into();
                    retained.push(StoredRetain {
                        topic,
                        retain,
                        expires_at: row.get(3)?,
                    });
                }
                Err(e) => {
                    undecodable(path, "retained message", &topic, &e);
                    bad.push(topic);
                }
            }
        }
    }
    for topic in bad {
        conn.execute("DELETE FROM retained WHERE topic = ?1", [topic])?;
    }

    let mut sessions = Vec::new();
    let mut bad = Vec::new();
    {
        let mut stmt = conn
            .prepare("SELECT client_id, id, conn_info, disconnected_at, expiry_ms FROM sessions")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let client_id: String = row.get(0)?;
            let (id, conn_info): (String, String) = (row.get(1)?, row.get(2)?);
            let decoded =
                decode::<Id>(&id).and_then(|id| decode::<ConnectInfo>(&conn_info).map(|c| (id, c)));
            match decoded {
                Ok((id, conn_info)) => sessions.push(StoredSession {
                    id,
                    conn_info,
                    subscriptions: Vec::new(),
                    disconnected_at: row.get(3)?,
                    expiry_ms: row.get(4)?,
                    messages: Vec::new(),
                }),
                Err(e) => {
                    undecodable(path, "session", &client_id, &e);
                    bad.push(client_id);
                }
            }
        }
    }
    for client_id in bad {
        delete_session(conn, &client_id)?;
    }
    // Orphans of a session removed while its rows were on their way.
    conn.execute_batch(
        "DELETE FROM subscriptions WHERE client_id NOT IN (SELECT client_id FROM sessions);
         DELETE FROM messages WHERE client_id NOT IN (SELECT client_id FROM sessions);",
    )?;
    let index: HashMap<String, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.client_id.to_string(), i))
        .collect();
    {
        let mut stmt = conn.prepare("SELECT client_id, filter, opts FROM subscriptions")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let client_id: String = row.get(0)?;
            let filter: String = row.get(1)?;
            let Some(&i) = index.get(&client_id) else {
                continue;
            };
            match decode::<SubscriptionOptions>(&row.get::<_, String>(2)?) {
                Ok(opts) => sessions[i].subscriptions.push((filter, opts)),
                Err(e) => undecodable(path, "subscription", &filter, &e),
            }
        }
    }
    {
        let mut stmt =
            conn.prepare("SELECT client_id, meta, payload FROM messages ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let client_id: String = row.get(0)?;
            let Some(&i) = index.get(&client_id) else {
                continue;
            };
            match decode::<(From, Publish)>(&row.get::<_, String>(1)?) {
                Ok((from, mut publish)) => {
                    publish.inner.payload = row.get::<_, Vec<u8>>(2)?.into();
                    sessions[i].messages.push((from, publish));
                }
                Err(e) => undecodable(path, "queued message", &client_id, &e),
            }
        }
    }
    Ok(Loaded { retained, sessions })
}

fn decode<T: DeserializeOwned>(json: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(json)
}

/// JSON of everything but the payload, which goes in a BLOB of its own.
fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn without_payload(publish: &Publish) -> Publish {
    let mut meta = publish.clone();
    meta.inner.payload = bytes::Bytes::new();
    meta
}

fn delete_session(conn: &Connection, client_id: &str) -> rusqlite::Result<()> {
    for sql in [
        "DELETE FROM sessions WHERE client_id = ?1",
        "DELETE FROM subscriptions WHERE client_id = ?1",
        "DELETE FROM messages WHERE client_id = ?1",
    ] {
        conn.execute(sql, [client_id])?;
    }
    Ok(())
}

pub fn now_ms() -> i64 {
    rmqtt::utils::timestamp_millis()
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    limits: StoreLimits,
    overflowed: Arc<AtomicBool>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Op>) {
        let mut batch = Vec::new();
        loop {
            let Ok(first) = rx.recv() else { break };
            let mut stop = matches!(first, Op::Stop);
            batch.push(first);
            let deadline = Instant::now() + self.limits.flush;
            while !stop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(op) => {
                        stop = matches!(op, Op::Stop);
                        batch.push(op);
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        stop = true;
                    }
                }
            }
            let count = batch.len();
            if let Err(e) = self.write(&mut batch) {
                warn!(path = %self.path.display(), error = %e, "broker store: changes not written");
            } else {
                debug!(changes = count, "broker store written");
            }
            batch.clear();
            self.overflowed.store(false, Ordering::Relaxed);
            if stop {
                break;
            }
        }
    }

    fn write(&mut self, batch: &mut Vec<Op>) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let mut sessions: i64 = tx.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))?;
        let mut messages: i64 = tx.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
        let (mut sessions_refused, mut messages_refused) = (0usize, 0usize);
        let is_current = |client_id: &str, created: i64| -> rusqlite::Result<bool> {
            tx.query_row(
                "SELECT 1 FROM sessions WHERE client_id = ?1 AND created = ?2",
                params![client_id, created],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
        };
        for op in batch.drain(..) {
            match op {
                Op::RetainSet(r) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO retained (topic, meta, payload, expires_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![
                            r.topic,
                            encode(&Retain {
                                msg_id: r.retain.msg_id,
                                from: r.retain.from.clone(),
                                publish: without_payload(&r.retain.publish),
                            }),
                            &r.retain.publish.payload[..],
                            r.expires_at
                        ],
                    )?;
                }
                Op::RetainDelete(topic) => {
                    tx.execute("DELETE FROM retained WHERE topic = ?1", [topic])?;
                }
                Op::SessionUpsert {
                    id,
                    conn_info,
                    subscriptions,
                } => {
                    let client_id = id.client_id.to_string();
                    let known = tx
                        .query_row(
                            "SELECT 1 FROM sessions WHERE client_id = ?1",
                            [&client_id],
                            |_| Ok(()),
                        )
                        .optional()?
                        .is_some();
                    if !known && sessions >= self.limits.max_sessions as i64 {
                        sessions_refused += 1;
                        continue;
                    }
                    delete_session(&tx, &client_id)?;
                    tx.execute(
                        "INSERT INTO sessions (client_id, created, id, conn_info)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![client_id, id.create_time, encode(&id), encode(&conn_info)],
                    )?;
                    for (filter, opts) in subscriptions {
                        tx.execute(
                            "INSERT OR REPLACE INTO subscriptions (client_id, filter, opts)
                             VALUES (?1, ?2, ?3)",
                            params![client_id, filter, encode(&opts)],
                        )?;
                    }
                    if !known {
                        sessions += 1;
                    }
                }
                Op::SessionDisconnected {
                    client_id,
                    created,
                    at,
                    expiry_ms,
                } => {
                    tx.execute(
                        "UPDATE sessions SET disconnected_at = ?3, expiry_ms = ?4
                         WHERE client_id = ?1 AND created = ?2",
                        params![client_id, created, at, expiry_ms],
                    )?;
                }
                Op::SessionDelete { client_id, created } => {
                    if created.is_none_or(|c| is_current(&client_id, c).unwrap_or(false)) {
                        delete_session(&tx, &client_id)?;
                    }
                }
                Op::Subscribe {
                    client_id,
                    created,
                    filter,
                    opts,
                } => {
                    if is_current(&client_id, created)? {
                        tx.execute(
                            "INSERT OR REPLACE INTO subscriptions (client_id, filter, opts)
                             VALUES (?1, ?2, ?3)",
                            params![client_id, filter, encode(&opts)],
                        )?;
                    }
                }
                Op::Unsubscribe {
                    client_id,
                    created,
                    filter,
                } => {
                    if created.is_none_or(|c| is_current(&client_id, c).unwrap_or(false)) {
                        tx.execute(
                            "DELETE FROM subscriptions WHERE client_id = ?1 AND filter = ?2",
                            params![client_id, filter],
                        )?;
                    }
                }
                Op::Message {
                    client_id,
                    created,
                    from,
                    publish,
                } => {
                    if messages >= self.limits.max_messages as i64 {
                        messages_refused += 1;
                        continue;
                    }
                    if is_current(&client_id, created)? {
                        tx.execute(
                            "INSERT INTO messages (client_id, meta, payload) VALUES (?1, ?2, ?3)",
                            params![
                                client_id,
                                encode(&(from, without_payload(&publish))),
                                &publish.payload[..]
                            ],
                        )?;
                        messages += 1;
                    }
                }
                Op::Stop => {}
            }
        }
        tx.commit()?;
        if sessions_refused > 0 {
            warn!(
                refused = sessions_refused,
                "broker store full (broker.embedded.max_stored_sessions); sessions not kept \
                 across a restart"
            );
        }
        if messages_refused > 0 {
            warn!(
                refused = messages_refused,
                "broker store full (broker.embedded.max_stored_messages); queued messages \
                 not kept across a restart"
            );
        }
        Ok(())
    }
}
