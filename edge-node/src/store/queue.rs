//! The durable queue: one SQLite file in WAL mode with 1 KiB pages, one table of runs
//! of samples clustered on (original timestamp, insertion sequence).
//!
//! # Layout
//!
//! An outage's appends go to append-only segment files beside the file
//! ([`segments`](super::segments)): one write per append, each sample's bytes written
//! once, replay reading the files directly and deleting each whole once its samples are
//! gone. The table holds only what cannot be replayed in segment order: samples older
//! than the segments' newest (a late report, the sent window queued after newer samples,
//! written-ahead samples of a killed process), and records of segments a removal could
//! not cut at the front (samples of held devices, an ack out of order, a batch whose
//! range an append reached), moved there whole.
//!
//! The table writes a row per original timestamp (the samples of one scan share it),
//! split at [`RUN_BYTES`] so a row never needs an overflow page, the samples compactly
//! encoded (see [`codec`](super::codec)); a segment record is such a row. A sample's
//! place ([`Pos`]) is (timestamp, row sequence, index in the row), the order a row per
//! sample with a per-sample sequence had; one sequence counter serves both. A row keeps
//! its samples until all are gone: `ack`, the byte cap and a batch boundary inside a row
//! mark the removed ones in the row's `gone` bitmap, and the row's `count` and `bytes`
//! say what is left. Replay merges the table and the segments by place. The live
//! write-ahead is a log file beside it ([`ahead`](super::ahead)), and late appends go to
//! another log first, folded into the table by the 64 KiB ([`pending`](super::pending)).
//! A file of the first layout (one row per sample, schema version 1) is converted when
//! opened ([`migrate`](super::migrate)); files of versions 2 and 3 (no segments) open as
//! they are, their logs folded into the table. Table `aliases` keeps the node's alias map
//! ([`aliases`](super::aliases), schema version 3); a file of versions 1 and 2 gets it
//! empty, to be derived from the configuration at the first `assign_aliases`. Table
//! `segment_cursor` (schema version 4) keeps the segments' cursor.
//!
//! # Guarantees
//!
//! - **Order.** `peek_batch` hands samples out in (original timestamp, insertion) order.
//!   Per metric this is strictly the original timestamp order, whatever order the
//!   batches were appended in (e.g. the sent window appended after newer samples).
//! - **Durability.** A sample is stored once `append` returned `Ok`. With
//!   `synchronous = "normal"` (WAL) a killed process loses no log or segment record
//!   written and no committed row (a record torn by the kill belonged to a call that
//!   never returned: its CRC drops it); power loss may lose the last ones. `synchronous = "full"` fsyncs
//!   each log record and each commit.
//! - **At-least-once.** `ack` removes exactly the samples its batch handed out, nothing
//!   appended since. A crash between handing a batch to the link and `ack` replays it
//!   again: those are the only duplicates, and the host de-duplicates them by
//!   (metric, timestamp).
//! - **Held devices.** `peek_batch_after` passes over the samples of [`HeldDevices`] (a
//!   device not born now must not hold up the others); they stay queued, and the batch's
//!   `ack` leaves them alone.
//! - **Bounds.** `max_bytes` (values plus [`ROW_OVERHEAD`](super::codec) per sample) and
//!   `max_age_s` (by `expire`); what they remove is counted in `dropped()` and logged.
//!   A batch already handed out may be dropped by the caps before its `ack`: it still
//!   counts as dropped, and the `ack` then removes nothing.
//! - **Unconfirmed live samples.** `write_ahead` keeps a copy of each live scan under
//!   the sent window's marks until `forget_sent` (the link confirmed it) or
//!   `append_unconfirmed` (the link was lost: the window's samples join the queue and
//!   the copies stop counting, in one transaction). Copies still counting when the file
//!   is opened belong to a process that died before either: they join the queue then
//!   (the byte cap applied, oldest first), so a `kill -9` loses no sample the link had
//!   not confirmed.
//! - **Damage.** A file SQLite does not recognise, or that fails `quick_check`, is moved
//!   aside as `<file>.corrupt-<unix ms>` and a fresh queue is built; disk full is
//!   [`StoreError::DiskFull`] and leaves the queue readable and ackable.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::Duration;

use infra::ConfigError;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction};
use tracing::{info, warn};

use super::ahead::{self, Ahead};
use super::aliases::{AliasMap, TagAliases};
use super::codec::StoredSample;
use super::config::{Overflow, StoreConfig, Synchronous};
use super::log;
use super::migrate;
use super::pending::{self, Pending};
use super::segments::{self, Entry, Segments};
use super::table::{self, TableItem, TableReader, insert_runs};
use crate::modbus::{DeviceId, Site};

pub(crate) const SCHEMA_VERSION: i64 = 4;

/// Page size of a new file: a WAL frame is a page, and a scan's commit touches few.
pub(crate) const PAGE_SIZE: i64 = 1024;

/// Most encoded bytes of samples in one queue row: with its key and counters the row
/// stays under the 231 bytes a 1024-byte page keeps of a WITHOUT ROWID row before it
/// spills to an overflow page.
pub(crate) const RUN_BYTES: usize = 192;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS chunks (
    ts      INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    samples BLOB    NOT NULL,
    gone    BLOB,
    count   INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    PRIMARY KEY (ts, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    ahead_epoch INTEGER NOT NULL,
    queue_epoch INTEGER NOT NULL
);
INSERT OR IGNORE INTO logs (id, ahead_epoch, queue_epoch) VALUES (0, 0, 0);
CREATE TABLE IF NOT EXISTS segment_cursor (
    id  INTEGER PRIMARY KEY CHECK (id = 0),
    ts  INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    k   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (
    alias   INTEGER PRIMARY KEY,
    device  TEXT    NOT NULL,
    tag     TEXT    NOT NULL,
    retired INTEGER NOT NULL
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
    #[error("store {path}: write-ahead log: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store {path}: cannot move the corrupt file aside: {source}")]
    MoveAside {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A sample's place in the queue: its row's key, then its index in the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub(crate) ts: i64,
    pub(crate) seq: i64,
    pub(crate) k: u32,
}

impl Pos {
    /// The first and last place a row (or segment record) can hold.
    pub(crate) fn row(ts: i64, seq: i64) -> (Pos, Pos) {
        (
            Pos { ts, seq, k: 0 },
            Pos {
                ts,
                seq,
                k: u32::MAX,
            },
        )
    }
}

/// Identifies the samples one `peek_batch` handed out, for [`Store::ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchId {
    pub(crate) first: Pos,
    pub(crate) last: Pos,
    /// Highest row sequence that existed at peek time: later appends are never acked by it.
    pub(crate) max_seq: i64,
    /// Devices passed over at peek time: their samples in the range are not the batch's.
    pub(crate) held: HeldDevices,
    /// The alias assignment the batch was resolved with (see [`Store::assign_aliases`]).
    generation: u64,
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

    pub(crate) fn holds(self, device: Option<DeviceId>) -> bool {
        device.is_some_and(|d| d.0 < Self::CAPACITY && self.0 & (1 << d.0) != 0)
    }
}

/// Samples to replay, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    samples: Vec<StoredSample>,
    id: Option<BatchId>,
    bytes: usize,
    retired: u64,
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

    /// Samples in the batch's range whose alias no tag has any more (see
    /// [`Store::assign_aliases`]): left out of `samples`, removed by the batch's `ack`.
    pub fn retired(&self) -> u64 {
        self.retired
    }

    /// Nothing to publish and nothing to remove.
    pub fn is_void(&self) -> bool {
        self.id.is_none()
    }
}

/// The store-and-forward queue. See the module docs for its guarantees.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    max_bytes: u64,
    max_age_ms: u64,
    overflow: Overflow,
    /// Behind a `Cell` (and the queue log behind a `RefCell`): a replay's `peek_batch`
    /// folds the queue log into the table first.
    next_seq: Cell<i64>,
    pending: RefCell<Pending>,
    /// Queue log size that makes an append fold it (0: appends go straight to the table).
    fold_bytes: u64,
    segments: Segments,
    /// Appends may go to the segments (not after `limit_pages`).
    segmented: bool,
    depth: u64,
    bytes: u64,
    dropped: u64,
    moved_aside: Option<PathBuf>,
    /// Written-ahead samples moved into the queue when the file was opened.
    recovered: u64,
    ahead: Ahead,
    blob: Vec<u8>,
    aliases: AliasMap,
    /// The aliases of the site now, once assigned: replay resolves samples through them.
    resolve: Option<TagAliases>,
    /// Counts the changes of `resolve`.
    generation: u64,
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
        let (mut conn, migrated, moved_aside) = match open_connection(&path, config.synchronous) {
            Ok((conn, migrated)) => (conn, migrated, None),
            Err(e) if e.is_corruption() => {
                let aside = move_aside(&path)?;
                warn!(store = %path.display(), moved_to = %aside.display(), error = %e,
                      "store file is corrupt: moved aside, starting an empty queue");
                let (conn, migrated) = open_connection(&path, config.synchronous)
                    .map_err(|e| e.into_store_error(&path))?;
                (conn, migrated, Some(aside))
            }
            Err(e) => return Err(e.into_store_error(&path)),
        };
        let mut blob = Vec::with_capacity(RUN_BYTES);
        let sync = config.synchronous == Synchronous::Full;
        let cursor = table::load_cursor(&conn).map_err(|source| sqlite_error(&path, source))?;
        let opened = Segments::open(&path, cursor, sync).map_err(|e| log_error(&path, e))?;
        let ahead_log = log::path_beside(&path, "ahead");
        let queue_log = log::path_beside(&path, "queue");
        let recovery = recover_logs(
            &mut conn,
            &ahead_log,
            &queue_log,
            opened.segments.max_seq(),
            &mut blob,
        )
        .map_err(|e| e.into_store_error(&path))?;
        let recovered = recovery.recovered + migrated;
        let ahead = Ahead::create(ahead_log, recovery.ahead_epoch, sync)
            .map_err(|e| log_error(&path, e))?;
        let pending = Pending::create(queue_log, recovery.queue_epoch, sync)
            .map_err(|e| log_error(&path, e))?;
        if recovered > 0 {
            info!(store = %path.display(), samples = recovered,
                  "live samples the link never confirmed before the last stop: queued for replay");
        }
        let (depth, bytes, max_seq): (i64, i64, Option<i64>) = conn
            .query_row(
                "SELECT coalesce(sum(count), 0), coalesce(sum(bytes), 0), max(seq) FROM chunks",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|source| sqlite_error(&path, source))?;
        let max_seq = max_seq.max(opened.segments.max_seq());
        let aliases = AliasMap::load(&conn).map_err(|source| sqlite_error(&path, source))?;
        let mut store = Store {
            aliases,
            resolve: None,
            generation: 0,
            conn,
            max_bytes: config.max_bytes,
            max_age_ms: config.max_age_s.saturating_mul(1000),
            overflow: config.overflow,
            next_seq: Cell::new(max_seq.map_or(0, |s| s + 1)),
            pending: RefCell::new(pending),
            fold_bytes: pending::FOLD_BYTES,
            segments: opened.segments,
            segmented: true,
            depth: depth as u64 + opened.depth,
            bytes: bytes as u64 + opened.bytes,
            dropped: 0,
            moved_aside,
            recovered,
            ahead,
            blob,
            path,
        };
        // The written-ahead samples are stored already: the byte cap makes room, oldest first.
        if recovery.recovered > 0 && store.bytes > store.max_bytes {
            let (trimmed, _) = store.trim(store.bytes - store.max_bytes)?;
            store.dropped = trimmed;
            warn!(store = %store.path.display(), dropped_oldest = trimmed,
                  "store full after queueing them: samples dropped");
        }
        info!(store = %store.path.display(), depth = store.depth, bytes = store.bytes, "store opened");
        Ok(store)
    }

    /// Stores `samples`: one write to the active segment (and, for samples older than
    /// the segments hold, one to the queue log). Returns how many were stored; the rest
    /// (only with `overflow = "stop_storing"` at the cap) are counted as dropped.
    pub fn append(&mut self, samples: &[StoredSample]) -> Result<usize, StoreError> {
        if samples.is_empty() {
            return Ok(0);
        }
        self.append_inner(samples, false)
    }

    /// The link was lost: `samples` (the sent window's) join the queue like [`Store::append`]
    /// and the written-ahead copies stop counting, in one transaction.
    pub fn append_unconfirmed(&mut self, samples: &[StoredSample]) -> Result<usize, StoreError> {
        self.append_inner(samples, true)
    }

    fn append_inner(
        &mut self,
        samples: &[StoredSample],
        clear_sent: bool,
    ) -> Result<usize, StoreError> {
        let mut stored = samples.len();
        let mut added = 0u64;
        for (i, sample) in samples.iter().enumerate() {
            let len = sample.stored_len() as u64;
            if self.overflow == Overflow::StopStoring && self.bytes + added + len > self.max_bytes {
                stored = i;
                break;
            }
            added += len;
        }
        let over = self.bytes + added > self.max_bytes;
        let kept = &samples[..stored];
        if clear_sent || !self.segmented {
            self.insert_now(kept, clear_sent)?;
        } else {
            self.append_segmented(kept)?;
        }
        self.depth += stored as u64;
        self.bytes += added;
        let (trimmed, _) = if over {
            self.trim(self.bytes - self.max_bytes)?
        } else {
            (0, 0)
        };
        self.count_refused(samples.len() - stored, trimmed);
        Ok(stored)
    }

    /// `samples` go to the segments, those the segments cannot take (older than what
    /// they hold) to the queue log, or with it into the table once it is full.
    fn append_segmented(&mut self, samples: &[StoredSample]) -> Result<(), StoreError> {
        let (mut records, mut entries, mut late) = (Vec::new(), Vec::new(), Vec::new());
        let mut body = Vec::new();
        let mut seq = self.next_seq.get();
        let segments = &self.segments;
        table::for_each_run(samples, &mut self.blob, |ts, row, run, _| {
            let ts = ts as i64;
            if segments.takes(Pos { ts, seq, k: 0 }) {
                segments::record(ts, seq, run, &mut body, &mut records);
                entries.extend(row.iter().enumerate().map(|(k, s)| Entry {
                    pos: Pos {
                        ts,
                        seq,
                        k: k as u32,
                    },
                    sample: (*s).clone(),
                }));
                seq += 1;
            } else {
                late.extend(row.iter().map(|s| (*s).clone()));
            }
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap_or_else(|never| match never {});
        let late_bytes: u64 = late.iter().map(|s| s.stored_len() as u64).sum();
        if !records.is_empty() {
            self.segments
                .append(&records, entries)
                .map_err(|e| log_error(&self.path, e))?;
            self.next_seq.set(seq);
        }
        let pending = self.pending.get_mut();
        let stored_late = if late.is_empty() {
            Ok(())
        } else if pending.len() < self.fold_bytes {
            pending.append(&late).map_err(|e| log_error(&self.path, e))
        } else {
            self.insert_now(&late, false)
        };
        if let Err(e) = stored_late {
            // The segments' part is stored: counted, the rest reported lost.
            let late_n = late.len() as u64;
            self.depth += samples.len() as u64 - late_n;
            self.bytes += samples.iter().map(|s| s.stored_len() as u64).sum::<u64>() - late_bytes;
            return Err(e);
        }
        Ok(())
    }

    /// `samples` into the table in one transaction, with the queue log folded (and, for
    /// `clear_sent`, the written-ahead copies no longer counting).
    fn insert_now(&mut self, samples: &[StoredSample], clear_sent: bool) -> Result<(), StoreError> {
        let pending = self.pending.get_mut();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| map_err(&self.path, e))?;
        let folded = !pending.is_empty();
        let seq = insert_runs(&tx, pending.samples(), self.next_seq.get(), &mut self.blob)
            .map_err(|e| map_err(&self.path, e))?;
        let next_seq =
            insert_runs(&tx, samples, seq, &mut self.blob).map_err(|e| map_err(&self.path, e))?;
        let queue_epoch = pending.epoch() + 1;
        if folded {
            set_epoch(&tx, "queue_epoch", queue_epoch).map_err(|e| map_err(&self.path, e))?;
        }
        let ahead_epoch = self.ahead.epoch() + 1;
        if clear_sent {
            set_epoch(&tx, "ahead_epoch", ahead_epoch).map_err(|e| map_err(&self.path, e))?;
        }
        tx.commit().map_err(|e| map_err(&self.path, e))?;
        if folded {
            pending.restart(queue_epoch);
        }
        if clear_sent {
            self.ahead.restart(ahead_epoch);
        }
        self.next_seq.set(next_seq);
        Ok(())
    }

    /// Removes the oldest samples (table and segments merged by place) until at least
    /// `excess` bytes are freed; returns (samples, bytes).
    fn trim(&mut self, excess: u64) -> Result<(u64, u64), StoreError> {
        self.fold()?;
        // The last place that goes, and the segments' share.
        let (mut freed, mut bound) = (0u64, None);
        let (mut seg_n, mut seg_bytes, mut seg_to) = (0u64, 0u64, None);
        {
            let mut merged = Merged::new(&self.conn, &self.segments, &self.path, None)?;
            while freed < excess {
                let Some((item, from_segments)) = merged.next()? else {
                    break;
                };
                match item {
                    TableItem::Sample(pos, sample) => {
                        let len = sample.stored_len() as u64;
                        freed += len;
                        bound = Some(pos);
                        if from_segments {
                            seg_n += 1;
                            seg_bytes += len;
                            seg_to = Some(pos);
                        }
                    }
                    TableItem::Undecodable { last, bytes, .. } => {
                        freed += bytes as u64;
                        bound = Some(last);
                    }
                }
            }
        }
        let Some(bound) = bound else {
            return Ok((0, 0));
        };
        let (mut n, mut bytes) = (0, 0);
        if freed > seg_bytes {
            // Some of it is in the table.
            let tx = self
                .conn
                .transaction()
                .map_err(|e| map_err(&self.path, e))?;
            (n, bytes) = table::remove_through(&tx, bound).map_err(|e| map_err(&self.path, e))?;
            tx.commit().map_err(|e| map_err(&self.path, e))?;
        }
        if let Some(to) = seg_to {
            self.segments.advance(to, seg_n);
            n += seg_n;
            bytes += seg_bytes;
        }
        self.depth -= n;
        self.bytes -= bytes;
        Ok((n, bytes))
    }

    /// Counts and logs what an append could not keep.
    fn count_refused(&mut self, refused: usize, trimmed_rows: u64) {
        let refused = refused as u64;
        if refused + trimmed_rows > 0 {
            self.dropped += refused + trimmed_rows;
            warn!(store = %self.path.display(), dropped_oldest = trimmed_rows, refused,
                  total_dropped = self.dropped, "store full: samples dropped");
        }
    }

    /// Folds the queue log into the table, in one transaction.
    fn fold(&self) -> Result<(), StoreError> {
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            return Ok(());
        }
        let err = |e| map_err(&self.path, e);
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        let mut blob = Vec::with_capacity(RUN_BYTES);
        let next_seq =
            insert_runs(&tx, pending.samples(), self.next_seq.get(), &mut blob).map_err(err)?;
        let epoch = pending.epoch() + 1;
        set_epoch(&tx, "queue_epoch", epoch).map_err(err)?;
        tx.commit().map_err(err)?;
        self.next_seq.set(next_seq);
        pending.restart(epoch);
        Ok(())
    }

    /// The oldest samples not yet acknowledged: at most `max_samples`, and at most
    /// `max_bytes` stored bytes except that one sample always goes (a batch is never
    /// empty while the queue is not). Calling it again before `ack` hands out the same head.
    pub fn peek_batch(&self, max_samples: usize, max_bytes: usize) -> Result<Batch, StoreError> {
        self.peek_batch_after(None, HeldDevices::default(), max_samples, max_bytes)
    }

    /// Like [`Store::peek_batch`], but only samples after `after`'s last one (the batch
    /// that follows batches handed out and not yet acknowledged), passing over `held`
    /// devices.
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
        if let Err(e) = self.fold() {
            // What the table holds can still go; the log waits for the next try.
            warn!(error = %e, "queue log not folded before replay");
        }
        let after = after.map(|id| id.last);
        let mut merged = Merged::new(&self.conn, &self.segments, &self.path, after)?;
        let (mut first, mut last) = (None, None);
        while let Some((item, _)) = merged.next()? {
            match item {
                TableItem::Sample(pos, mut sample) => {
                    let Some(device) = current_device(self.resolve.as_ref(), &sample) else {
                        // Its tag is gone: inside the range, so the ack removes it.
                        if batch.samples.len() + batch.retired as usize == max_samples {
                            break;
                        }
                        batch.retired += 1;
                        first.get_or_insert(pos);
                        last = Some(pos);
                        continue;
                    };
                    sample.device = device;
                    if held.holds(sample.device) {
                        continue;
                    }
                    let len = sample.stored_len();
                    if batch.samples.len() + batch.retired as usize == max_samples
                        || (!batch.samples.is_empty() && batch.bytes + len > max_bytes)
                    {
                        break;
                    }
                    batch.samples.push(sample);
                    batch.bytes += len;
                    first.get_or_insert(pos);
                    last = Some(pos);
                }
                // A row that does not decode must not block the queue: it is left out of
                // the batch but inside its range, so the batch's ack removes it.
                TableItem::Undecodable {
                    first: row_first,
                    last: row_last,
                    bytes,
                    error,
                } => {
                    if !batch.samples.is_empty() && batch.bytes + bytes > max_bytes {
                        break;
                    }
                    warn!(store = %self.path.display(), ts = row_first.ts, seq = row_first.seq,
                          error = %error, "stored samples do not decode: skipped");
                    batch.bytes += bytes;
                    first.get_or_insert(row_first);
                    last = Some(row_last);
                }
            }
        }
        batch.id = first.zip(last).map(|(first, last)| BatchId {
            first,
            last,
            max_seq: self.next_seq.get() - 1,
            held,
            generation: self.generation,
        });
        Ok(batch)
    }

    /// Removes exactly the samples `id`'s batch handed out (those still present). Returns
    /// how many were removed.
    /// A batch peeked before the last change of the alias assignment removes nothing:
    /// which of its samples were held is no longer known, so it is handed out again.
    pub fn ack(&mut self, id: BatchId) -> Result<u64, StoreError> {
        if id.generation != self.generation {
            info!("replayed batch predates the tag list in force: it goes again");
            return Ok(0);
        }
        let seg = self.acked_in_segments(id)?;
        let mut to = seg.to;
        let resolve = self.resolve.as_ref();
        let err = |e| map_err(&self.path, e);
        let tx = self.conn.transaction().map_err(err)?;
        // Records holding samples that stay, at or before the batch's end: into the table
        // whole, so that the cursor can pass them.
        let (moved, ends) = move_records(
            &tx,
            &self.segments,
            &seg.kept,
            &mut self.blob,
            &self.path,
            |e| e.pos <= id.last && acks(id, resolve, e),
        )?;
        to = to.max(ends);
        if let Some(to) = to.filter(|_| !seg.kept.is_empty()) {
            table::save_cursor(&tx, to).map_err(err)?;
        }
        let (n, bytes) = table::remove_acked(&tx, id, resolve).map_err(err)?;
        tx.commit().map_err(err)?;
        if let Some(to) = to {
            self.segments.advance(to, seg.n + moved);
        }
        let (n, bytes) = (n + seg.n, bytes + seg.bytes);
        self.depth -= n;
        self.bytes -= bytes;
        Ok(n)
    }

    /// The segments' share of `id`'s ack.
    fn acked_in_segments(&self, id: BatchId) -> Result<SegmentAck, StoreError> {
        let mut ack = SegmentAck::default();
        let mut entries = self.segments.iter(None);
        while let Some(e) = entries.next().map_err(|e| log_error(&self.path, e))? {
            if e.pos > id.last {
                break;
            }
            ack.to = Some(e.pos);
            if acks(id, self.resolve.as_ref(), &e) {
                ack.n += 1;
                ack.bytes += e.sample.stored_len() as u64;
            } else if ack.kept.last() != Some(&(e.pos.ts, e.pos.seq)) {
                ack.kept.push((e.pos.ts, e.pos.seq));
            }
        }
        Ok(ack)
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
        self.ahead
            .write(first_mark, samples)
            .map_err(|e| log_error(&self.path, e))
    }

    /// The link confirmed every live sample before `mark`: their copies go.
    pub fn forget_sent(&mut self, mark: u64) -> Result<(), StoreError> {
        self.ahead
            .forget(mark)
            .map_err(|e| log_error(&self.path, e))
    }

    /// Live samples of a process that died before the link confirmed them, moved into the
    /// queue when the file was opened.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// The aliases of `site`'s tags from the file's alias map (assigned for new tags,
    /// retired for tags no longer there; see [`super::aliases`]). From now on replay
    /// hands samples out with the index their device has in `site`, and leaves out (for
    /// the batch's `ack` to remove, counted in [`Batch::retired`]) those whose alias no
    /// tag of `site` has. Until the first call, samples come out as they went in. The
    /// map is changed in memory: [`Store::save_aliases`] writes it.
    pub fn assign_aliases(&mut self, site: &Site) -> TagAliases {
        let aliases = self.aliases.assign(site);
        if self.resolve.as_ref() != Some(&aliases) {
            self.generation += 1;
            self.resolve = Some(aliases.clone());
        }
        aliases
    }

    /// Writes the alias map if it changed since it was last written.
    pub fn save_aliases(&mut self) -> Result<(), StoreError> {
        self.aliases
            .save(&mut self.conn)
            .map_err(|e| map_err(&self.path, e))
    }

    /// The file's alias map.
    pub fn alias_map(&self) -> &AliasMap {
        &self.aliases
    }

    /// Drops samples older than `max_age_s` at `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> Result<u64, StoreError> {
        if self.max_age_ms == 0 || self.depth == 0 {
            return Ok(0);
        }
        let cutoff = now_ms.saturating_sub(self.max_age_ms) as i64;
        if self
            .pending
            .get_mut()
            .oldest_ts()
            .is_some_and(|ts| (ts as i64) < cutoff)
        {
            self.fold()?;
        }
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM chunks WHERE ts < ?1 RETURNING count, bytes")
            .map_err(|e| map_err(&self.path, e))?;
        let mut rows = stmt.query([cutoff]).map_err(|e| map_err(&self.path, e))?;
        let (mut n, mut bytes) = (0u64, 0u64);
        while let Some(row) = rows.next().map_err(|e| map_err(&self.path, e))? {
            n += row.get::<_, i64>(0).map_err(|e| map_err(&self.path, e))? as u64;
            bytes += row.get::<_, i64>(1).map_err(|e| map_err(&self.path, e))? as u64;
        }
        drop(rows);
        drop(stmt);
        let (seg_n, seg_bytes) = self.expire_segments(cutoff)?;
        let (n, bytes) = (n + seg_n, bytes + seg_bytes);
        if n > 0 {
            self.depth -= n;
            self.bytes -= bytes;
            self.dropped += n;
            warn!(store = %self.path.display(), expired = n, max_age_ms = self.max_age_ms,
                  total_dropped = self.dropped, "stored samples past max_age_s dropped");
        }
        Ok(n)
    }

    /// Drops the segments' samples older than `cutoff`; returns (samples, bytes).
    fn expire_segments(&mut self, cutoff: i64) -> Result<(u64, u64), StoreError> {
        if self.segments.min_ts_bound().is_none_or(|ts| ts >= cutoff) {
            return Ok((0, 0));
        }
        let (mut n, mut bytes, mut to) = (0u64, 0u64, None);
        let mut entries = self.segments.iter(None);
        while let Some(e) = entries.next().map_err(|e| log_error(&self.path, e))? {
            if e.pos.ts >= cutoff {
                break;
            }
            n += 1;
            bytes += e.sample.stored_len() as u64;
            to = Some(e.pos);
        }
        if let Some(to) = to {
            self.segments.advance(to, n);
        }
        Ok((n, bytes))
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
            .query_row("SELECT ts FROM chunks ORDER BY ts, seq LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| map_err(&self.path, e))?;
        let segments = self
            .segments
            .oldest_ts()
            .map_err(|e| log_error(&self.path, e))?;
        let pending = self.pending.borrow().oldest_ts().map(|ts| ts as i64);
        let ts = [ts, segments, pending].into_iter().flatten().min();
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
    /// From then on appends go straight to the file (not through the queue log nor the
    /// segments), so that the cap bounds them all.
    pub fn limit_pages(&mut self, pages: u64) -> Result<u64, StoreError> {
        self.fold()?;
        self.fold_bytes = 0;
        self.segmented = false;
        self.move_segments()?;
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|p| p as u64)
            .map_err(|e| map_err(&self.path, e))
    }

    /// Moves every sample of the segments into the table.
    fn move_segments(&mut self) -> Result<(), StoreError> {
        let mut records: Vec<(i64, i64)> = Vec::new();
        let mut entries = self.segments.iter(None);
        while let Some(e) = entries.next().map_err(|e| log_error(&self.path, e))? {
            if records.last() != Some(&(e.pos.ts, e.pos.seq)) {
                records.push((e.pos.ts, e.pos.seq));
            }
        }
        let err = |e| map_err(&self.path, e);
        let tx = self.conn.transaction().map_err(err)?;
        let (moved, to) = move_records(
            &tx,
            &self.segments,
            &records,
            &mut self.blob,
            &self.path,
            |_| false,
        )?;
        let Some(to) = to else {
            return Ok(());
        };
        table::save_cursor(&tx, to).map_err(err)?;
        tx.commit().map_err(err)?;
        self.segments.advance(to, moved);
        Ok(())
    }

    /// Seals the active segment file once it holds `bytes` (64 KiB by default): smaller
    /// segments are deleted sooner after their samples are acked and cost less memory
    /// to replay, at a few more files.
    pub fn seal_segments_at(&mut self, bytes: u64) {
        self.segments.seal_at(bytes.max(1));
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

    /// Bytes the store occupies: the database file's pages in use times page size, plus
    /// the write-ahead and queue logs and the segments.
    pub fn file_bytes(&self) -> Result<u64, StoreError> {
        let logs = self.ahead.len() + self.pending.borrow().len() + self.segments.file_bytes();
        self.conn
            .query_row(
                "SELECT (page_count - freelist_count) * page_size
                 FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|b| b as u64 + logs)
            .map_err(|e| map_err(&self.path, e))
    }
}

/// A clean close folds the queue log into the table (a killed process leaves it to the
/// next open).
impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.fold() {
            warn!(error = %e, "queue log not folded at close: the next open does it");
        }
    }
}

/// The device a stored sample belongs to under `resolve` (its alias's device in the site
/// now; a node metric's `None` as stored); `None` when its tag is gone. Without a
/// resolution, the device it was stored with.
pub(crate) fn current_device(
    resolve: Option<&TagAliases>,
    sample: &StoredSample,
) -> Option<Option<DeviceId>> {
    match (resolve, sample.device) {
        (Some(resolve), Some(_)) => resolve.device(sample.alias).map(Some),
        _ => Some(sample.device),
    }
}

/// Moves the segments' `records` (timestamp, sequence) into the table as rows, the
/// samples at or before the cursor and those `removed` marked gone; returns the samples
/// moved and the last place the rows can hold.
fn move_records(
    tx: &Transaction<'_>,
    segments: &Segments,
    records: &[(i64, i64)],
    blob: &mut Vec<u8>,
    path: &Path,
    removed: impl Fn(&Entry) -> bool,
) -> Result<(u64, Option<Pos>), StoreError> {
    let cursor = segments.cursor();
    let (mut moved, mut end) = (0u64, None);
    for &(ts, seq) in records {
        let entries = segments
            .record_entries(ts, seq)
            .map_err(|e| log_error(path, e))?;
        let mut gone = Vec::new();
        for (k, e) in entries.iter().enumerate() {
            if Some(e.pos) <= cursor || removed(e) {
                table::set_gone(&mut gone, k);
            } else {
                moved += 1;
            }
        }
        let samples: Vec<StoredSample> = entries.into_iter().map(|e| e.sample).collect();
        table::insert_row(tx, (ts, seq), &samples, &gone, blob).map_err(|e| map_err(path, e))?;
        end = end.max(Some(Pos::row(ts, seq).1));
    }
    Ok((moved, end))
}

/// Whether `id`'s ack removes the segments' sample `entry` (in its range).
fn acks(id: BatchId, resolve: Option<&TagAliases>, entry: &Entry) -> bool {
    entry.pos >= id.first
        && entry.pos.seq <= id.max_seq
        && !current_device(resolve, &entry.sample).is_some_and(|device| id.held.holds(device))
}

/// What an ack does in the segments.
#[derive(Default)]
struct SegmentAck {
    /// Samples removed, and their stored bytes.
    n: u64,
    bytes: u64,
    /// Records (timestamp, sequence) with samples that stay.
    kept: Vec<(i64, i64)>,
    /// The last place walked: the cursor goes there.
    to: Option<Pos>,
}

/// The queue's samples after a place, table and segments merged by place; each with
/// whether it is the segments'.
struct Merged<'a> {
    table: TableReader<'a>,
    segments: segments::Iter<'a>,
    path: &'a Path,
    next_table: Option<TableItem>,
    next_segment: Option<Entry>,
}

impl<'a> Merged<'a> {
    fn new(
        conn: &'a Connection,
        segments: &'a Segments,
        path: &'a Path,
        after: Option<Pos>,
    ) -> Result<Merged<'a>, StoreError> {
        let mut merged = Merged {
            table: TableReader::new(conn, after),
            segments: segments.iter(after),
            path,
            next_table: None,
            next_segment: None,
        };
        merged.next_table = merged.table.next().map_err(|e| map_err(path, e))?;
        merged.next_segment = merged.segments.next().map_err(|e| log_error(path, e))?;
        Ok(merged)
    }

    fn next(&mut self) -> Result<Option<(TableItem, bool)>, StoreError> {
        let from_table = match (&self.next_table, &self.next_segment) {
            (None, None) => return Ok(None),
            (Some(t), Some(s)) => t.pos() < s.pos,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if from_table {
            let next = self.table.next().map_err(|e| map_err(self.path, e))?;
            Ok(std::mem::replace(&mut self.next_table, next).map(|t| (t, false)))
        } else {
            let next = self.segments.next().map_err(|e| log_error(self.path, e))?;
            Ok(std::mem::replace(&mut self.next_segment, next)
                .map(|e| (TableItem::Sample(e.pos, e.sample), true)))
        }
    }
}

/// What opening found in the logs.
struct Recovery {
    ahead_epoch: u64,
    queue_epoch: u64,
    /// Written-ahead samples queued.
    recovered: u64,
}

/// Moves into the table, in one transaction: the queue log's samples, then the samples a
/// process wrote ahead and never saw confirmed (in mark order), both after every row
/// there and every segment record; bumps both epochs.
fn recover_logs(
    conn: &mut Connection,
    ahead_log: &Path,
    queue_log: &Path,
    segments_max_seq: Option<i64>,
    blob: &mut Vec<u8>,
) -> Result<Recovery, OpenError> {
    let (ahead_epoch, queue_epoch): (i64, i64) = conn.query_row(
        "SELECT ahead_epoch, queue_epoch FROM logs WHERE id = 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (ahead_epoch, queue_epoch) = (ahead_epoch as u64, queue_epoch as u64);
    let queued = pending::read(queue_log, queue_epoch).map_err(OpenError::Log)?;
    let unconfirmed = ahead::unconfirmed(ahead_log, ahead_epoch).map_err(OpenError::Log)?;
    let tx = conn.transaction()?;
    let base: i64 = tx.query_row("SELECT coalesce(max(seq) + 1, 0) FROM chunks", [], |r| {
        r.get(0)
    })?;
    let base = base.max(segments_max_seq.map_or(0, |s| s + 1));
    let seq = insert_runs(&tx, &queued, base, blob)?;
    insert_runs(&tx, &unconfirmed, seq, blob)?;
    set_epoch(&tx, "ahead_epoch", ahead_epoch + 1)?;
    set_epoch(&tx, "queue_epoch", queue_epoch + 1)?;
    tx.commit()?;
    if !queued.is_empty() {
        info!(
            samples = queued.len(),
            "appended samples of the queue log folded into the table"
        );
    }
    Ok(Recovery {
        ahead_epoch: ahead_epoch + 1,
        queue_epoch: queue_epoch + 1,
        recovered: unconfirmed.len() as u64,
    })
}

/// Records of a log (`column` names which) older than `epoch` stop counting.
fn set_epoch(tx: &Transaction<'_>, column: &str, epoch: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(&format!("UPDATE logs SET {column} = ?1 WHERE id = 0"))?
        .execute([epoch as i64])
        .map(drop)
}

enum OpenError {
    Sqlite(rusqlite::Error),
    Log(std::io::Error),
    Corrupt(String),
    NewerSchema(i64),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Sqlite(e) => write!(f, "{e}"),
            OpenError::Log(e) => write!(f, "write-ahead log: {e}"),
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
            OpenError::NewerSchema(_) | OpenError::Log(_) => false,
        }
    }

    fn into_store_error(self, path: &Path) -> StoreError {
        let path = path.to_owned();
        match self {
            OpenError::Sqlite(source) => StoreError::Sqlite { path, source },
            OpenError::Log(source) => StoreError::Log { path, source },
            OpenError::Corrupt(reason) => StoreError::Corrupt { path, reason },
            OpenError::NewerSchema(found) => StoreError::NewerSchema { path, found },
        }
    }
}

/// Opens the file and brings it to the current schema; also returns how many
/// written-ahead samples of a first-layout file were queued by its conversion.
fn open_connection(path: &Path, synchronous: Synchronous) -> Result<(Connection, u64), OpenError> {
    let mut conn = Connection::open(path)?;
    // Only a new file takes it; a file of the first layout gets it when converted.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
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
    let migrated = match version {
        1 => migrate::from_first_layout(&mut conn)?,
        _ => 0,
    };
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok((conn, migrated))
}

/// Renames `path` (and its WAL, shared-memory and segment files) to `<path>.corrupt-<unix ms>`.
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
    // Their samples are stored under the aliases of the file's map: they go with it.
    segments::move_aside(path, &aside).map_err(err)?;
    Ok(aside)
}

fn log_error(path: &Path, source: std::io::Error) -> StoreError {
    if source.kind() == std::io::ErrorKind::StorageFull {
        StoreError::DiskFull {
            path: path.to_owned(),
        }
    } else {
        StoreError::Log {
            path: path.to_owned(),
            source,
        }
    }
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
