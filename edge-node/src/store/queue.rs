//! The durable queue: one SQLite file in WAL mode, one table clustered on
//! (original timestamp, insertion sequence).
//!
//! # Guarantees
//!
//! - **Order.** `peek_batch` hands samples out in (original timestamp, insertion) order.
//!   Per metric this is strictly the original timestamp order, whatever order the
//!   batches were appended in (e.g. the sent window appended after newer samples).
//! - **Durability.** A sample is stored once `append` returned `Ok`. With
//!   `synchronous = "normal"` (WAL) a killed process loses no committed row; power loss
//!   may lose the last commits. `synchronous = "full"` fsyncs each commit.
//! - **At-least-once.** `ack` deletes exactly the rows its batch handed out, nothing
//!   appended since. A crash between handing a batch to the link and `ack` replays it
//!   again: those are the only duplicates, and the host de-duplicates them by
//!   (metric, timestamp).
//! - **Held devices.** `peek_batch_after` passes over the rows of [`HeldDevices`] (a
//!   device not born now must not hold up the others); they stay queued, and the batch's
//!   `ack` leaves them alone.
//! - **Bounds.** `max_bytes` (values plus [`ROW_OVERHEAD`](super::codec) per row) and
//!   `max_age_s` (by `expire`); what they remove is counted in `dropped()` and logged.
//!   A batch already handed out may be dropped by the caps before its `ack`: it still
//!   counts as dropped, and the `ack` then removes nothing.
//! - **Unconfirmed live samples.** `write_ahead` keeps a copy of each live scan in a
//!   second table, `sent`, keyed by the sent window's mark, until `forget_sent` (the
//!   link confirmed it) or `append_unconfirmed` (the link was lost: the window's samples
//!   join the queue and `sent` is emptied, in one transaction). Rows still in `sent` when
//!   the file is opened belong to a process that died before either: they join the
//!   queue then (the byte cap applied, oldest first), so a `kill -9` loses no sample the
//!   link had not confirmed.
//! - **Damage.** A file SQLite does not recognise, or that fails `quick_check`, is moved
//!   aside as `<file>.corrupt-<unix ms>` and a fresh queue is built; disk full is
//!   [`StoreError::DiskFull`] and leaves the queue readable and ackable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use infra::ConfigError;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use tracing::{info, warn};

use super::codec::{self, ROW_OVERHEAD, StoredSample};
use super::config::{Overflow, StoreConfig, Synchronous};
use crate::modbus::DeviceId;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS samples (
    ts     INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    device INTEGER,
    alias  INTEGER NOT NULL,
    value  BLOB    NOT NULL,
    PRIMARY KEY (ts, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent (
    mark   INTEGER PRIMARY KEY,
    ts     INTEGER NOT NULL,
    device INTEGER,
    alias  INTEGER NOT NULL,
    value  BLOB    NOT NULL
);
";

/// What went wrong with the queue, and in which file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The disk (or the file's page cap) is full: nothing of the append was stored.
    #[error("store {path}: disk full, append refused")]
    DiskFull { path: PathBuf },
    #[error("store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store {path}: schema version {found} is newer than this build's {SCHEMA_VERSION}")]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("store {path}: damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("store {path}: cannot move the corrupt file aside: {source}")]
    MoveAside {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Identifies the rows one `peek_batch` handed out, for [`Store::ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchId {
    first: (i64, i64),
    last: (i64, i64),
    /// Highest sequence that existed at peek time: later appends are never acked by it.
    max_seq: i64,
    /// Devices passed over at peek time: their rows in the range are not the batch's.
    held: HeldDevices,
}

/// Devices whose samples a replay must pass over for now (not born in this session), as
/// a set of device indexes below [`HeldDevices::CAPACITY`]. A device above it cannot be
/// held: its samples are handed out, and the caller must wait for its birth instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldDevices(u64);

impl HeldDevices {
    pub const CAPACITY: u32 = 64;

    /// Holds `device`; false when its index is beyond [`HeldDevices::CAPACITY`].
    pub fn insert(&mut self, device: DeviceId) -> bool {
        if device.0 >= Self::CAPACITY {
            return false;
        }
        self.0 |= 1 << device.0;
        true
    }

    /// The set as SQLite's signed integer; bit `d` is device `d`.
    fn mask(self) -> i64 {
        self.0 as i64
    }
}

/// SQL condition on a row's `device` (?N is the held mask): the row is not held.
macro_rules! not_held {
    ($n:literal) => {
        concat!(
            "(device IS NULL OR device >= 64 OR ((?",
            $n,
            " >> device) & 1) = 0)"
        )
    };
}

/// Samples to replay, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    samples: Vec<StoredSample>,
    id: Option<BatchId>,
    bytes: usize,
}

impl Batch {
    pub fn samples(&self) -> &[StoredSample] {
        &self.samples
    }

    /// `None` when the batch is empty.
    pub fn id(&self) -> Option<BatchId> {
        self.id
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Stored bytes of the batch (as counted against `max_bytes`).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The store-and-forward queue. See the module docs for its guarantees.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    max_bytes: u64,
    max_age_ms: u64,
    overflow: Overflow,
    next_seq: i64,
    depth: u64,
    bytes: u64,
    dropped: u64,
    moved_aside: Option<PathBuf>,
    /// Rows of `sent` moved into the queue when the file was opened.
    recovered: u64,
    blob: Vec<u8>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("depth", &self.depth)
            .field("bytes", &self.bytes)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the queue at `config.path`. A damaged file is moved aside and
    /// replaced by an empty queue ([`Store::moved_aside`] says where it went).
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        config.validate()?;
        let path = config.path.clone();
        let (conn, moved_aside) = match open_connection(&path, config.synchronous) {
            Ok(conn) => (conn, None),
            Err(e) if e.is_corruption() => {
                let aside = move_aside(&path)?;
                warn!(store = %path.display(), moved_to = %aside.display(), error = %e,
                      "store file is corrupt: moved aside, starting an empty queue");
                let conn = open_connection(&path, config.synchronous)
                    .map_err(|e| e.into_store_error(&path))?;
                (conn, Some(aside))
            }
            Err(e) => return Err(e.into_store_error(&path)),
        };
        let (recovered, trimmed) =
            recover_sent(&conn, config.max_bytes).map_err(|source| sqlite_error(&path, source))?;
        if recovered > 0 {
            info!(store = %path.display(), samples = recovered,
                  "live samples the link never confirmed before the last stop: queued for replay");
        }
        if trimmed > 0 {
            warn!(store = %path.display(), dropped_oldest = trimmed,
                  "store full after queueing them: samples dropped");
        }
        let (depth, bytes, max_seq): (i64, i64, Option<i64>) = conn
            .query_row(
                "SELECT count(*), coalesce(sum(length(value)), 0), max(seq) FROM samples",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|source| sqlite_error(&path, source))?;
        let depth = depth as u64;
        let store = Store {
            conn,
            max_bytes: config.max_bytes,
            max_age_ms: config.max_age_s.saturating_mul(1000),
            overflow: config.overflow,
            next_seq: max_seq.map_or(0, |s| s + 1),
            depth,
            bytes: bytes as u64 + depth * ROW_OVERHEAD as u64,
            dropped: trimmed,
            moved_aside,
            recovered,
            blob: Vec::with_capacity(64),
            path,
        };
        info!(store = %store.path.display(), depth = store.depth, bytes = store.bytes, "store opened");
        Ok(store)
    }

    /// Stores `samples` in one transaction. Returns how many were stored; the rest (only
    /// with `overflow = "stop_storing"` at the cap) are counted as dropped.
    pub fn append(&mut self, samples: &[StoredSample]) -> Result<usize, StoreError> {
        if samples.is_empty() {
            return Ok(0);
        }
        self.append_inner(samples, false)
    }

    /// The link was lost: `samples` (the sent window's) join the queue like [`Store::append`]
    /// and the `sent` table is emptied, in one transaction.
    pub fn append_unconfirmed(&mut self, samples: &[StoredSample]) -> Result<usize, StoreError> {
        self.append_inner(samples, true)
    }

    fn append_inner(
        &mut self,
        samples: &[StoredSample],
        clear_sent: bool,
    ) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| map_err(&self.path, e))?;
        let mut stored = 0usize;
        let mut added = 0u64;
        let mut seq = self.next_seq;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO samples (ts, seq, device, alias, value) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| map_err(&self.path, e))?;
            for sample in samples {
                let len = sample.stored_len() as u64;
                if self.overflow == Overflow::StopStoring
                    && self.bytes + added + len > self.max_bytes
                {
                    break;
                }
                codec::encode(&sample.value, sample.quality, &mut self.blob);
                insert
                    .execute(params![
                        sample.timestamp_ms as i64,
                        seq,
                        sample.device.map(|d| d.0),
                        sample.alias as i64,
                        &self.blob,
                    ])
                    .map_err(|e| map_err(&self.path, e))?;
                seq += 1;
                stored += 1;
                added += len;
            }
        }
        if clear_sent {
            tx.execute("DELETE FROM sent", [])
                .map_err(|e| map_err(&self.path, e))?;
        }
        let (trimmed_rows, trimmed_bytes) = if self.bytes + added > self.max_bytes {
            trim_oldest(&tx, self.bytes + added - self.max_bytes)
                .map_err(|e| map_err(&self.path, e))?
        } else {
            (0, 0)
        };
        tx.commit().map_err(|e| map_err(&self.path, e))?;
        self.next_seq = seq;
        self.depth = self.depth + stored as u64 - trimmed_rows;
        self.bytes = self.bytes + added - trimmed_bytes;
        let refused = (samples.len() - stored) as u64;
        if refused + trimmed_rows > 0 {
            self.dropped += refused + trimmed_rows;
            warn!(store = %self.path.display(), dropped_oldest = trimmed_rows, refused,
                  total_dropped = self.dropped, "store full: samples dropped");
        }
        Ok(stored)
    }

    /// The oldest samples not yet acknowledged: at most `max_samples`, and at most
    /// `max_bytes` stored bytes except that one sample always goes (a batch is never
    /// empty while the queue is not). Calling it again before `ack` hands out the same head.
    pub fn peek_batch(&self, max_samples: usize, max_bytes: usize) -> Result<Batch, StoreError> {
        self.peek_batch_after(None, HeldDevices::default(), max_samples, max_bytes)
    }

    /// Like [`Store::peek_batch`], but only rows after `after`'s last one (the batch that
    /// follows batches handed out and not yet acknowledged), passing over `held` devices.
    pub fn peek_batch_after(
        &self,
        after: Option<BatchId>,
        held: HeldDevices,
        max_samples: usize,
        max_bytes: usize,
    ) -> Result<Batch, StoreError> {
        let mut batch = Batch::default();
        if max_samples == 0 || self.depth == 0 {
            return Ok(batch);
        }
        let (after_ts, after_seq) = after.map_or((i64::MIN, i64::MIN), |id| id.last);
        let mut stmt = self
            .conn
            .prepare_cached(concat!(
                "SELECT ts, seq, device, alias, value FROM samples WHERE (ts, seq) > (?1, ?2) AND ",
                not_held!(4),
                " ORDER BY ts, seq LIMIT ?3"
            ))
            .map_err(|e| map_err(&self.path, e))?;
        let mut rows = stmt
            .query(params![
                after_ts,
                after_seq,
                max_samples as i64,
                held.mask()
            ])
            .map_err(|e| map_err(&self.path, e))?;
        let mut first = None;
        let mut last = (0, 0);
        while let Some(row) = rows.next().map_err(|e| map_err(&self.path, e))? {
            let key: (i64, i64) = (
                row.get(0).map_err(|e| map_err(&self.path, e))?,
                row.get(1).map_err(|e| map_err(&self.path, e))?,
            );
            let device: Option<u32> = row.get(2).map_err(|e| map_err(&self.path, e))?;
            let alias: i64 = row.get(3).map_err(|e| map_err(&self.path, e))?;
            let blob = row.get_ref(4).map_err(|e| map_err(&self.path, e))?;
            let blob = blob.as_blob().unwrap_or(&[]);
            let len = ROW_OVERHEAD + blob.len();
            if !batch.samples.is_empty() && batch.bytes + len > max_bytes {
                break;
            }
            // A row that does not decode must not block the queue: it is left out of the
            // batch but inside its key range, so the batch's ack removes it.
            match codec::decode(blob) {
                Ok((value, quality)) => batch.samples.push(StoredSample {
                    device: device.map(DeviceId),
                    alias: alias as u64,
                    timestamp_ms: key.0 as u64,
                    value,
                    quality,
                }),
                Err(e) => {
                    warn!(store = %self.path.display(), ts = key.0, seq = key.1, error = %e,
                          "stored value does not decode: skipped");
                }
            }
            batch.bytes += len;
            first.get_or_insert(key);
            last = key;
        }
        batch.id = first.map(|first| BatchId {
            first,
            last,
            max_seq: self.next_seq - 1,
            held,
        });
        Ok(batch)
    }

    /// Deletes exactly the rows `id`'s batch handed out (those still present). Returns
    /// how many were deleted.
    pub fn ack(&mut self, id: BatchId) -> Result<u64, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(concat!(
                "DELETE FROM samples WHERE (ts, seq) >= (?1, ?2) AND (ts, seq) <= (?3, ?4)
                 AND seq <= ?5 AND ",
                not_held!(6),
                " RETURNING length(value)"
            ))
            .map_err(|e| map_err(&self.path, e))?;
        let mut rows = stmt
            .query(params![
                id.first.0,
                id.first.1,
                id.last.0,
                id.last.1,
                id.max_seq,
                id.held.mask()
            ])
            .map_err(|e| map_err(&self.path, e))?;
        let (mut n, mut bytes) = (0u64, 0u64);
        while let Some(row) = rows.next().map_err(|e| map_err(&self.path, e))? {
            let len: i64 = row.get(0).map_err(|e| map_err(&self.path, e))?;
            n += 1;
            bytes += len as u64 + ROW_OVERHEAD as u64;
        }
        self.depth -= n;
        self.bytes -= bytes;
        Ok(n)
    }

    /// Keeps a copy of `samples`, about to be published live, under the sent window's
    /// marks `first_mark..`, in one transaction (see the module docs).
    pub fn write_ahead(
        &mut self,
        first_mark: u64,
        samples: &[StoredSample],
    ) -> Result<(), StoreError> {
        if samples.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction()
            .map_err(|e| map_err(&self.path, e))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO sent (mark, ts, device, alias, value)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| map_err(&self.path, e))?;
            for (mark, sample) in (first_mark..).zip(samples) {
                codec::encode(&sample.value, sample.quality, &mut self.blob);
                insert
                    .execute(params![
                        mark as i64,
                        sample.timestamp_ms as i64,
                        sample.device.map(|d| d.0),
                        sample.alias as i64,
                        &self.blob,
                    ])
                    .map_err(|e| map_err(&self.path, e))?;
            }
        }
        tx.commit().map_err(|e| map_err(&self.path, e))
    }

    /// The link confirmed every live sample before `mark`: their copies go.
    pub fn forget_sent(&mut self, mark: u64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM sent WHERE mark < ?1")
            .and_then(|mut stmt| stmt.execute([mark as i64]))
            .map(|_| ())
            .map_err(|e| map_err(&self.path, e))
    }

    /// Live samples of a process that died before the link confirmed them, moved into the
    /// queue when the file was opened.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// Drops samples older than `max_age_s` at `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> Result<u64, StoreError> {
        if self.max_age_ms == 0 || self.depth == 0 {
            return Ok(0);
        }
        let cutoff = now_ms.saturating_sub(self.max_age_ms) as i64;
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM samples WHERE ts < ?1 RETURNING length(value)")
            .map_err(|e| map_err(&self.path, e))?;
        let mut rows = stmt.query([cutoff]).map_err(|e| map_err(&self.path, e))?;
        let (mut n, mut bytes) = (0u64, 0u64);
        while let Some(row) = rows.next().map_err(|e| map_err(&self.path, e))? {
            let len: i64 = row.get(0).map_err(|e| map_err(&self.path, e))?;
            n += 1;
            bytes += len as u64 + ROW_OVERHEAD as u64;
        }
        drop(rows);
        drop(stmt);
        if n > 0 {
            self.depth -= n;
            self.bytes -= bytes;
            self.dropped += n;
            warn!(store = %self.path.display(), expired = n, max_age_ms = self.max_age_ms,
                  total_dropped = self.dropped, "stored samples past max_age_s dropped");
        }
        Ok(n)
    }

    /// Samples waiting.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// Stored bytes, as counted against `max_bytes`.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Samples dropped by the caps since this `Store` was opened (node metric `Store/Dropped`).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Age of the oldest waiting sample at `now_ms`; `None` when empty.
    pub fn oldest_age(&self, now_ms: u64) -> Result<Option<Duration>, StoreError> {
        let ts: Option<i64> = self
            .conn
            .query_row("SELECT ts FROM samples ORDER BY ts, seq LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| map_err(&self.path, e))?;
        Ok(ts.map(|ts| Duration::from_millis(now_ms.saturating_sub(ts as u64))))
    }

    /// Where a corrupt file found at open was moved, if one was.
    pub fn moved_aside(&self) -> Option<&Path> {
        self.moved_aside.as_deref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Caps the file at `pages` database pages (SQLite `max_page_count`): a hard ceiling
    /// on file growth below the free disk space, reached as [`StoreError::DiskFull`].
    pub fn limit_pages(&mut self, pages: u64) -> Result<u64, StoreError> {
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|p| p as u64)
            .map_err(|e| map_err(&self.path, e))
    }

    /// The `synchronous` level SQLite applies to this file.
    pub fn synchronous(&self) -> Result<Synchronous, StoreError> {
        let level: i64 = self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(|e| map_err(&self.path, e))?;
        // 1 = NORMAL, 2 = FULL (3 = EXTRA, only set outside this module).
        Ok(if level >= 2 {
            Synchronous::Full
        } else {
            Synchronous::Normal
        })
    }

    /// Bytes the database file occupies (pages in use times page size).
    pub fn file_bytes(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT (page_count - freelist_count) * page_size
                 FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|b| b as u64)
            .map_err(|e| map_err(&self.path, e))
    }
}

/// Moves every row of `sent` into the queue (after every row there, in mark order),
/// empties `sent` and drops the oldest rows beyond `max_bytes`, in one transaction;
/// returns how many moved and how many were dropped.
fn recover_sent(conn: &Connection, max_bytes: u64) -> rusqlite::Result<(u64, u64)> {
    let tx = conn.unchecked_transaction()?;
    let base: i64 = tx.query_row("SELECT coalesce(max(seq) + 1, 0) FROM samples", [], |r| {
        r.get(0)
    })?;
    let moved = tx.execute(
        "INSERT INTO samples (ts, seq, device, alias, value)
         SELECT ts, ?1 + mark - (SELECT min(mark) FROM sent), device, alias, value FROM sent",
        [base],
    )?;
    tx.execute("DELETE FROM sent", [])?;
    let mut trimmed = 0;
    if moved > 0 {
        let bytes: i64 = tx.query_row(
            "SELECT coalesce(sum(length(value)), 0) + count(*) * ?1 FROM samples",
            [ROW_OVERHEAD as i64],
            |r| r.get(0),
        )?;
        if bytes as u64 > max_bytes {
            trimmed = trim_oldest(&tx, bytes as u64 - max_bytes)?.0;
        }
    }
    tx.commit()?;
    Ok((moved as u64, trimmed))
}

/// Deletes the oldest rows until at least `excess` bytes are freed; returns (rows, bytes).
fn trim_oldest(tx: &rusqlite::Transaction<'_>, excess: u64) -> rusqlite::Result<(u64, u64)> {
    let mut freed = 0u64;
    let mut rows = 0u64;
    let mut last = None;
    {
        let mut stmt =
            tx.prepare_cached("SELECT ts, seq, length(value) FROM samples ORDER BY ts, seq")?;
        let mut cursor = stmt.query([])?;
        while freed < excess {
            let Some(row) = cursor.next()? else { break };
            let len: i64 = row.get(2)?;
            freed += len as u64 + ROW_OVERHEAD as u64;
            rows += 1;
            last = Some((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?));
        }
    }
    if let Some((ts, seq)) = last {
        tx.prepare_cached("DELETE FROM samples WHERE (ts, seq) <= (?1, ?2)")?
            .execute([ts, seq])?;
    }
    Ok((rows, freed))
}

enum OpenError {
    Sqlite(rusqlite::Error),
    Corrupt(String),
    NewerSchema(i64),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Sqlite(e) => write!(f, "{e}"),
            OpenError::Corrupt(reason) => write!(f, "quick_check: {reason}"),
            OpenError::NewerSchema(v) => write!(f, "schema version {v}"),
        }
    }
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> OpenError {
        OpenError::Sqlite(e)
    }
}

impl OpenError {
    fn is_corruption(&self) -> bool {
        match self {
            OpenError::Corrupt(_) => true,
            OpenError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
            ),
            OpenError::NewerSchema(_) => false,
        }
    }

    fn into_store_error(self, path: &Path) -> StoreError {
        let path = path.to_owned();
        match self {
            OpenError::Sqlite(source) => StoreError::Sqlite { path, source },
            OpenError::Corrupt(reason) => StoreError::Corrupt { path, reason },
            OpenError::NewerSchema(found) => StoreError::NewerSchema { path, found },
        }
    }
}

fn open_connection(path: &Path, synchronous: Synchronous) -> Result<Connection, OpenError> {
    let conn = Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::Corrupt(format!(
            "journal_mode is {mode}, not wal"
        )));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma_value())?;
    // Keep the WAL from growing on the SD card after a long fill.
    conn.pragma_update(None, "journal_size_limit", 4 * 1024 * 1024)?;
    let check: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(OpenError::Corrupt(check));
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema(version));
    }
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(conn)
}

/// Renames `path` (and its WAL and shared-memory files) to `<path>.corrupt-<unix ms>`.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let ms = infra::clock::now_ms();
    let aside = PathBuf::from(format!("{}.corrupt-{ms}", path.display()));
    let err = |source| StoreError::MoveAside {
        path: path.to_owned(),
        source,
    };
    std::fs::rename(path, &aside).map_err(err)?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            std::fs::rename(&side, format!("{}{suffix}", aside.display())).map_err(err)?;
        }
    }
    Ok(aside)
}

fn sqlite_error(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

fn map_err(path: &Path, source: rusqlite::Error) -> StoreError {
    if source.sqlite_error_code() == Some(ErrorCode::DiskFull) {
        StoreError::DiskFull {
            path: path.to_owned(),
        }
    } else {
        sqlite_error(path, source)
    }
}
