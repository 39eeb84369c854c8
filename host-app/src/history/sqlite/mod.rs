//! The embedded SQLite history backend: one writer connection (ingest, retention, audit
//! appends), a small pool of read-only connections, a checkpoint thread, the metric
//! catalog in memory (registration never waits for the writer; see `catalog`), and the
//! samples of the open windows in memory and in the recent log (see `recent`).
//!
//! Layout, and why (flash wear on gateways, measured in BENCHMARKS.md):
//! - time is cut into windows of ten minutes; a closed window's samples of one metric are
//!   one chunk in `sample_chunks`, encoded compactly (`chunk`: a few bytes per sample) in
//!   parts of under 1 KB, so each part is a row that fits its page (a larger row would
//!   take an overflow page of 4 KiB, mostly empty, written twice through the WAL);
//! - a commit appends its samples' bytes to the recent log and keeps them in memory for
//!   live queries: no SQLite page is written per commit. It still takes the database's
//!   write lock, so a tool holding the file's lock (a backup) holds ingest as before;
//! - once a window closes (the newest sample is a minute past its end), its samples are
//!   written as chunks in one transaction at the end of the table and the log keeps only
//!   what is still open; late samples of a closed window are merged into its chunk then;
//! - the open windows' samples in memory are bounded in bytes (`open_window_max_bytes`):
//!   reaching the bound (a flood) writes every open window's samples as chunks early, and
//!   what arrives after adds parts to those chunks instead of rewriting them.
//!
//! Settings, and why:
//! - `journal_mode = WAL`, `synchronous = NORMAL` by default: commits do not fsync; the
//!   database never corrupts, and a power cut may lose the last commits (a crash of the
//!   process loses nothing acknowledged). Closing a window always syncs, so it never drops
//!   samples from the log that the database does not hold. `FULL` syncs every commit.
//! - `page_size = 4096` (flash page / filesystem block), `auto_vacuum = INCREMENTAL` so
//!   retention can give space back, writer cache 8 MiB, reader caches 2 MiB each.
//! - checkpoints every second on their own connection and thread (PASSIVE: they wait for no
//!   one); the writer checkpoints itself only if the WAL reaches 64 MiB.

mod catalog;
mod checkpoint;
mod chunk;
mod codec;
mod intake;
mod migrate;
mod recent;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params,
};
use rustc_hash::FxHashMap;

use super::HistoryStore;
use super::blocking;
use super::error::{HistoryError, Result};
use super::types::{
    AppendOutcome, AuditEntry, AuditQuery, AuditRecord, AuditRetention, Bucket, CommandOutcome,
    MetricId, MetricInfo, MetricKey, MetricMeta, Quality, RetentionPolicy, RetentionStep, Sample,
    TimeRange, TimestampMs,
};
use intake::Intake;
use recent::{Recent, RecentLog};
use schema::WINDOW_MS;

/// A window closes this long after its end (by the newest sample's clock), so samples a
/// little late still land in memory rather than in a chunk to rewrite.
const GRACE_MS: u64 = 60_000;

/// Late samples of closed windows wait in memory until this many are held ...
const COMPACT_SAMPLES: usize = 64 * 1024;
/// ... or this long, so a replay merges into each chunk a few times, not once per batch.
const COMPACT_EVERY: Duration = Duration::from_secs(60);

/// The newest sample's clock may run ahead of this host's by at most this much before it
/// stops closing windows (a node with a clock in the future must not close them all).
const CLOCK_AHEAD_MS: u64 = 60_000;

/// Idle reader connections kept open for reuse; more are opened on demand.
const MAX_IDLE_READERS: usize = 4;

/// A size-retention pass deletes down to this share of `max_bytes` so it does not re-run on
/// every new batch.
const SIZE_TARGET_PERCENT: u64 = 90;

pub use infra::durability::Synchronous;

/// How to open the SQLite history database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// Most bytes the samples of the open windows may hold in memory: past it every open
    /// window is written to chunks at once.
    pub open_window_max_bytes: u64,
}

impl SqliteOptions {
    /// 16 MiB: about 290,000 samples, five minutes of a 1,000-tag plant changing every
    /// second; the reference plant (10 % changing) holds about 4 MiB and never reaches it.
    pub const DEFAULT_OPEN_WINDOW_MAX_BYTES: u64 = 16 * 1024 * 1024;
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::default(),
            open_window_max_bytes: Self::DEFAULT_OPEN_WINDOW_MAX_BYTES,
        }
    }
}

/// SQLite implementation of [`HistoryStore`]. Open one per database file and share it
/// (`Arc`); it is `Send + Sync`.
pub struct SqliteStore {
    path: PathBuf,
    synchronous: Synchronous,
    open_window_max_bytes: u64,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Samples of the open windows (and late ones not yet merged); changed only by the
    /// holder of `writer`.
    recent: RwLock<Recent>,
    /// Locked after `writer`.
    log: Mutex<RecentLog>,
    /// Locked after `writer` (and after `recent` when both are held).
    state: Mutex<WindowState>,
    /// What `admit` reuses from batch to batch; locked after `writer`, before the rest.
    intake: Mutex<Intake>,
    /// Oldest timestamp kept by the size-retention pass under way, if one is.
    size_cutoff: Mutex<Option<i64>>,
    /// Every registered metric; locked alone or after `writer`, never held across SQL.
    catalog: Mutex<catalog::Catalog>,
    checkpoint_gate: checkpoint::CheckpointGate,
    /// Declared last: its connection closes last and folds the WAL into the file.
    _checkpointer: checkpoint::Checkpointer,
}

/// Where a metric's chunks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    /// The first and last window that may hold a chunk (`chunk_windows`).
    first_win: i64,
    last_win: i64,
    /// No chunk holds a sample newer than this (a sample after it cannot be a duplicate
    /// there, so it is admitted without reading a chunk).
    newest: u64,
}

/// Which windows hold chunks, and when windows were last closed.
#[derive(Debug)]
struct WindowState {
    /// Per metric (our own ids: see `Recent`), where its chunks are.
    chunks: FxHashMap<MetricId, Span>,
    /// Newest sample timestamp stored.
    newest: u64,
    /// Windows before this one were closed by the last compaction.
    closed_before: i64,
    last_compaction: Instant,
}

impl WindowState {
    fn may_hold(&self, metric: MetricId, win: i64) -> bool {
        self.chunks
            .get(&metric)
            .is_some_and(|s| s.first_win <= win && win <= s.last_win)
    }

    /// Whether a chunk may hold a sample of `metric` at `ts`.
    fn may_hold_ts(&self, metric: MetricId, ts: u64) -> bool {
        self.may_hold(metric, window_of(ts))
            && self.chunks.get(&metric).is_some_and(|s| ts <= s.newest)
    }
}

fn window_of(ts: u64) -> i64 {
    (ts / WINDOW_MS as u64) as i64
}

/// The parts of one chunk, in time order.
const SELECT_CHUNK: &str =
    "SELECT data FROM sample_chunks WHERE win = ?1 AND metric_id = ?2 ORDER BY part";

/// The last part of one chunk.
const SELECT_LAST_PART: &str = "SELECT part, last_ts, data FROM sample_chunks \
     WHERE win = ?1 AND metric_id = ?2 ORDER BY part DESC LIMIT 1";

impl SqliteStore {
    /// Opens (creating if absent) the history database at `path`. A file that is not a
    /// SQLite database, has a damaged header or schema, belongs to another program or to a
    /// newer schema is refused here with [`HistoryError::Corrupt`] naming the file. Damage
    /// deeper in the file (no full integrity check at open: it would read every page) is
    /// reported as [`HistoryError::Corrupt`] by the first operation that reaches it. A file
    /// of the previous layout (a row per sample) is converted to chunks here, in one
    /// transaction. Samples in the recent log from a run that did not close are replayed.
    pub fn open(path: impl AsRef<Path>, options: &SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&path, e))?;
        initialize(&conn, options).map_err(|e| open_error(&path, e))?;
        check_schema(&path, &mut conn)?;
        let catalog =
            catalog::Catalog::load(&conn).map_err(|e| sql_error(&path, "load metrics", e))?;
        let chunks = load_windows(&conn).map_err(|e| sql_error(&path, "load chunk windows", e))?;
        let opened =
            RecentLog::open(&path, options.synchronous == Synchronous::Full).map_err(|e| {
                HistoryError::Open {
                    path: RecentLog::prefix_for(&path),
                    source: Box::new(e),
                }
            })?;
        for damage in &opened.damage {
            tracing::warn!(%damage, "recent log had a damaged tail (a write cut short); it was not acknowledged");
        }
        let (log, replayed, orphans) = (opened.log, opened.replayed, opened.orphans);
        let checkpoint_gate = checkpoint::CheckpointGate::default();
        let checkpointer = checkpoint::Checkpointer::start(
            &path,
            options.synchronous.pragma_value(),
            checkpoint_gate.clone(),
        )
        .map_err(|e| open_error(&path, e))?;
        let store = SqliteStore {
            path,
            synchronous: options.synchronous,
            open_window_max_bytes: options.open_window_max_bytes,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            recent: RwLock::new(Recent::default()),
            log: Mutex::new(log),
            state: Mutex::new(WindowState {
                chunks,
                newest: 0,
                closed_before: i64::MIN,
                last_compaction: Instant::now(),
            }),
            intake: Mutex::new(Intake::default()),
            size_cutoff: Mutex::new(None),
            catalog: Mutex::new(catalog),
            checkpoint_gate,
            _checkpointer: checkpointer,
        };
        store.replay(replayed)?;
        // A log from a run with a larger bound (or none) is brought within this one.
        if let Err(e) = store.maybe_compact(&mut lock(&store.writer)) {
            tracing::error!(error = %e, "closing history windows at open failed; will retry");
        }
        // What earlier runs left is now in this store's log; theirs can go.
        if !orphans.is_empty() {
            lock(&store.log)
                .rewrite(read(&store.recent).iter(), true)
                .map_err(|e| HistoryError::Open {
                    path: RecentLog::prefix_for(&store.path),
                    source: Box::new(e),
                })?;
            for orphan in orphans {
                if let Err(e) = std::fs::remove_file(&orphan) {
                    tracing::warn!(path = %orphan.display(), error = %e, "old recent log not removed");
                }
            }
        }
        // Fail at open, not at the first trend query, if readers cannot attach.
        let reader = store.open_reader()?;
        lock(&store.readers).push(reader);
        tracing::info!(path = %store.path.display(), synchronous = ?options.synchronous, recent = read(&store.recent).len(), "history database open");
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Samples held in memory and in the recent log, not yet in chunks.
    pub fn recent_samples(&self) -> usize {
        read(&self.recent).len()
    }

    /// Bytes the samples of the open windows hold in memory (see `open_window_max_bytes`);
    /// at most the bound whenever no append is under way.
    pub fn open_window_bytes(&self) -> u64 {
        read(&self.recent).bytes()
    }

    /// Writes the metrics registered since the last commit and every sample still in
    /// memory as chunks, copies the WAL into the database file and truncates the WAL, so the
    /// file holds everything and its size on disk is the database size (for tools, backups
    /// and size checks). Fails if a reader holds an old snapshot past the busy timeout.
    /// Routine checkpoints need no call.
    pub fn checkpoint(&self) -> Result<()> {
        let _gate = lock(&self.checkpoint_gate);
        let mut conn = lock(&self.writer);
        write_registered(&mut conn, &self.catalog).map_err(self.sql("write registered metrics"))?;
        self.compact(&mut conn, u64::MAX)?;
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(self.sql("checkpoint"))?;
        if busy != 0 {
            return Err(HistoryError::Backend {
                path: self.path.clone(),
                what: "checkpoint",
                source: "a reader kept an old snapshot open past the busy timeout".into(),
            });
        }
        Ok(())
    }

    /// The `synchronous` setting in force on the writer connection.
    pub fn synchronous(&self) -> Result<Synchronous> {
        let conn = lock(&self.writer);
        let level: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(self.sql("read synchronous"))?;
        Synchronous::from_pragma(level).ok_or_else(|| HistoryError::Corrupt {
            path: self.path.clone(),
            reason: format!("unexpected synchronous level {level}"),
        })
    }

    /// Bytes the database occupies (pages in use and free), excluding the WAL.
    pub fn database_bytes(&self) -> Result<u64> {
        let conn = lock(&self.writer);
        let (pages, _) = page_counts(&conn).map_err(self.sql("read page counts"))?;
        Ok(pages * u64::from(schema::PAGE_SIZE))
    }

    fn open_reader(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&self.path, e))?;
        schema::configure_reader(&conn).map_err(|e| open_error(&self.path, e))?;
        Ok(conn)
    }

    /// Runs `f` on a reader connection from the pool (opening one if all are busy), where
    /// it may block (see `blocking`).
    fn with_reader<T: Send>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send) -> Result<T> {
        blocking::run(|| {
            let idle = lock(&self.readers).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => self.open_reader()?,
            };
            let result = f(&conn);
            let mut idle = lock(&self.readers);
            if idle.len() < MAX_IDLE_READERS && conn.is_autocommit() {
                idle.push(conn);
            }
            result
        })
    }

    /// Maps a SQLite error to one naming this database and the operation.
    fn sql(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> HistoryError + '_ {
        move |e| sql_error(&self.path, what, e)
    }

    fn decode_chunk(&self, metric: MetricId, win: i64, data: &[u8]) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        self.decode_chunk_into(metric, win, data, &mut out)?;
        Ok(out)
    }

    fn decode_chunk_into(
        &self,
        metric: MetricId,
        win: i64,
        data: &[u8],
        out: &mut Vec<Sample>,
    ) -> Result<()> {
        chunk::decode_into(metric, data, out).map_err(|reason| HistoryError::BadRow {
            path: self.path.clone(),
            metric,
            ts: win.saturating_mul(WINDOW_MS),
            reason: format!("chunk of window {win}: {reason}"),
        })
    }

    /// The stored chunk of (`win`, `metric`), every part decoded, if there is one.
    fn read_chunk(
        &self,
        conn: &Connection,
        win: i64,
        metric: MetricId,
    ) -> Result<Option<Vec<Sample>>> {
        let mut stmt = conn
            .prepare_cached(SELECT_CHUNK)
            .map_err(self.sql("read chunk"))?;
        let mut rows = stmt
            .query(params![win, metric.0])
            .map_err(self.sql("read chunk"))?;
        let mut out: Option<Vec<Sample>> = None;
        while let Some(row) = rows.next().map_err(self.sql("read chunk"))? {
            let data = row
                .get_ref(0)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(self.sql("read chunk"))?;
            let samples = out.get_or_insert_with(Vec::new);
            self.decode_chunk_into(metric, win, data, samples)?;
        }
        Ok(out)
    }

    /// The last part of the chunk of (`win`, `metric`): its number, its newest timestamp
    /// and its bytes.
    fn read_last_part(
        &self,
        conn: &Connection,
        win: i64,
        metric: MetricId,
    ) -> Result<Option<(i64, u64, Vec<u8>)>> {
        let row: Option<(i64, i64, Vec<u8>)> = conn
            .prepare_cached(SELECT_LAST_PART)
            .and_then(|mut s| {
                s.query_row(params![win, metric.0], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            })
            .map_err(self.sql("read chunk"))?;
        Ok(row.map(|(part, last_ts, data)| (part, last_ts.max(0) as u64, data)))
    }

    /// Puts in `intake.accepted` the samples to store and counts the rest: a sample whose
    /// (metric, ts) is already stored (in memory, in a chunk, or earlier in the batch) is a
    /// duplicate, unless the stored one is the host's own STALE marker and this one a
    /// measurement, which then replaces it.
    fn admit(
        &self,
        conn: &Connection,
        recent: &Recent,
        state: &WindowState,
        samples: &[Sample],
        intake: &mut Intake,
    ) -> Result<AppendOutcome> {
        let mut outcome = AppendOutcome::default();
        intake.clear();
        // Keyed by windows of the client's timestamps: SipHash, and rarely used (replays).
        let mut chunks: HashMap<(i64, MetricId), Option<Vec<Sample>>> = HashMap::new();
        for sample in samples {
            if i64::try_from(sample.ts).is_err() {
                tracing::warn!(metric = %sample.metric, ts = sample.ts, "sample timestamp out of range; not stored");
                outcome.rejected += 1;
                continue;
            }
            let earlier = intake.earlier(sample.metric, sample.ts);
            let stored = match earlier {
                Some(i) => Some(intake.accepted[i].quality),
                None => match recent.get(sample.metric, sample.ts) {
                    Some(s) => Some(s.quality),
                    None => {
                        let win = window_of(sample.ts);
                        if state.may_hold_ts(sample.metric, sample.ts) {
                            let chunk = match chunks.entry((win, sample.metric)) {
                                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                                std::collections::hash_map::Entry::Vacant(e) => {
                                    e.insert(self.read_chunk(conn, win, sample.metric)?)
                                }
                            };
                            chunk.as_ref().and_then(|c| {
                                c.binary_search_by_key(&sample.ts, |s| s.ts)
                                    .ok()
                                    .map(|i| c[i].quality)
                            })
                        } else {
                            None
                        }
                    }
                },
            };
            match stored {
                Some(q) if !(q == Quality::STALE && sample.quality != Quality::STALE) => {
                    outcome.duplicates += 1;
                }
                _ => {
                    outcome.inserted += 1;
                    match earlier {
                        Some(i) => intake.accepted[i].clone_from(sample),
                        None => intake.accept(sample),
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// Takes in the samples of the recent log at open, as `append` would (without logging
    /// them again): what a crash left there counts once, whatever was already in chunks.
    fn replay(&self, replayed: Vec<Sample>) -> Result<()> {
        if replayed.is_empty() {
            return Ok(());
        }
        let known: std::collections::HashSet<MetricId> = lock(&self.catalog)
            .list()
            .into_iter()
            .map(|m| m.id)
            .collect();
        let (kept, unknown): (Vec<Sample>, Vec<Sample>) = replayed
            .into_iter()
            .partition(|s| known.contains(&s.metric));
        if !unknown.is_empty() {
            tracing::warn!(
                samples = unknown.len(),
                "recent log holds samples of unknown metrics; dropped"
            );
        }
        let conn = lock(&self.writer);
        let mut intake = lock(&self.intake);
        let mut recent = write(&self.recent);
        let mut state = lock(&self.state);
        for part in kept.chunks(64 * 1024) {
            self.admit(&conn, &recent, &state, part, &mut intake)?;
            for sample in intake.accepted.drain(..) {
                state.newest = state.newest.max(sample.ts);
                recent.insert(sample);
            }
        }
        tracing::info!(samples = recent.len(), "recent log replayed");
        Ok(())
    }

    /// Closes windows whose time has come (see the constants above).
    fn maybe_compact(&self, conn: &mut Connection) -> Result<()> {
        let (held, oldest, bytes) = {
            let recent = read(&self.recent);
            (recent.len(), recent.oldest(), recent.bytes())
        };
        let cutoff = {
            let state = lock(&self.state);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let horizon = state.newest.min(now.saturating_add(CLOCK_AHEAD_MS));
            let closed_before = window_of(horizon.saturating_sub(GRACE_MS));
            let cutoff = (closed_before as u64).saturating_mul(WINDOW_MS as u64);
            let due = oldest.is_some_and(|o| o < cutoff)
                && (closed_before > state.closed_before
                    || held >= COMPACT_SAMPLES
                    || state.last_compaction.elapsed() >= COMPACT_EVERY);
            if bytes > self.open_window_max_bytes {
                tracing::debug!(
                    bytes,
                    held,
                    "open windows at their memory bound; written early"
                );
                Some(u64::MAX)
            } else {
                due.then_some(cutoff)
            }
        };
        match cutoff {
            Some(cutoff) => self.compact(conn, cutoff),
            None => Ok(()),
        }
    }

    /// Writes every sample in memory older than `cutoff` into its window's chunk (merging
    /// with a chunk already there), in one synced transaction, then keeps only the rest in
    /// memory and in the log.
    fn compact(&self, conn: &mut Connection, cutoff: u64) -> Result<()> {
        // Read in place: only the holder of `writer` (this caller) changes `recent`.
        let held = read(&self.recent);
        let groups = held.before(cutoff);
        if groups.is_empty() {
            return Ok(());
        }
        // Per metric: first and last window written, newest timestamp written.
        let mut touched: Vec<(MetricId, i64, i64, u64)> = Vec::new();
        let sync_normal = self.synchronous == Synchronous::Normal;
        if sync_normal {
            // The log forgets these samples below: the chunks must be on disk first.
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(self.sql("sync window close"))?;
        }
        let result = (|| -> Result<()> {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.sql("begin window close"))?;
            let mut state = lock(&self.state);
            for &(metric, samples) in &groups {
                let mut start = 0;
                while start < samples.len() {
                    let win = window_of(samples[start].ts);
                    let len = samples[start..].partition_point(|s| window_of(s.ts) == win);
                    let run = &samples[start..start + len];
                    start += len;
                    self.write_run(&tx, &state, win, metric, run)?;
                    let newest = run[run.len() - 1].ts;
                    match touched.last_mut() {
                        Some((m, _, last, n)) if *m == metric => (*last, *n) = (win, newest),
                        _ => touched.push((metric, win, win, newest)),
                    }
                }
            }
            {
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO chunk_windows (metric_id, first_win, last_win) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (metric_id) DO UPDATE SET \
                         first_win = min(first_win, excluded.first_win), \
                         last_win = max(last_win, excluded.last_win)",
                    )
                    .map_err(self.sql("write chunk windows"))?;
                for &(metric, first, last, _) in &touched {
                    let known = state.chunks.get(&metric).map(|s| (s.first_win, s.last_win));
                    let (f, l) = known.unwrap_or((first, last));
                    let bounds = (f.min(first), l.max(last));
                    if known != Some(bounds) {
                        upsert
                            .execute(params![metric.0, bounds.0, bounds.1])
                            .map_err(self.sql("write chunk windows"))?;
                    }
                }
            }
            tx.commit().map_err(self.sql("commit window close"))?;
            for &(metric, first, last, newest) in &touched {
                let span = state.chunks.entry(metric).or_insert(Span {
                    first_win: first,
                    last_win: last,
                    newest,
                });
                span.first_win = span.first_win.min(first);
                span.last_win = span.last_win.max(last);
                span.newest = span.newest.max(newest);
            }
            if cutoff != u64::MAX {
                state.closed_before = state.closed_before.max(window_of(cutoff));
            }
            state.last_compaction = Instant::now();
            Ok(())
        })();
        if sync_normal {
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(self.sql("restore synchronous"))?;
        }
        drop(groups);
        drop(held);
        result?;
        let mut recent = write(&self.recent);
        recent.remove_before(cutoff, u64::MAX);
        let recent = RwLockWriteGuard::downgrade(recent);
        self.rewrite_log(&recent);
        tracing::debug!(
            chunks = touched.len(),
            recent = recent.len(),
            "windows closed"
        );
        Ok(())
    }

    /// Writes `run` (sorted samples of `metric` in window `win`) into its chunk: as its
    /// first parts when there is none, as parts after the last when every sample is newer
    /// than what is stored (an early fold, then the rest of the window; a small last part is
    /// rewritten with them), else merged with the stored samples and written again.
    fn write_run(
        &self,
        tx: &Connection,
        state: &WindowState,
        win: i64,
        metric: MetricId,
        run: &[Sample],
    ) -> Result<()> {
        let last = if state.may_hold(metric, win) {
            self.read_last_part(tx, win, metric)?
        } else {
            None
        };
        let written = match last {
            None => write_parts(tx, win, metric, 0, run),
            Some((part, last_ts, data)) if last_ts < run[0].ts => {
                if data.len() < schema::PART_BYTES / 2 {
                    let mut joined = self.decode_chunk(metric, win, &data)?;
                    joined.extend_from_slice(run);
                    write_parts(tx, win, metric, part, &joined)
                } else {
                    write_parts(tx, win, metric, part + 1, run)
                }
            }
            Some(_) => {
                let stored = self.read_chunk(tx, win, metric)?.unwrap_or_default();
                write_chunk(tx, win, metric, &merge(stored, run))
            }
        };
        written.map_err(self.sql("write chunk"))
    }

    /// Rewrites the log to hold what is in memory. On failure the old log stays: it holds
    /// a superset, which replay de-duplicates.
    fn rewrite_log(&self, recent: &Recent) {
        let durable = true;
        if let Err(e) = lock(&self.log).rewrite(recent.iter(), durable) {
            tracing::error!(path = %self.path.display(), error = %e, "recent log not rewritten; it keeps samples already in chunks");
        }
    }

    /// Deletes up to `budget` samples older than `cutoff`: whole chunks where they fit,
    /// else the oldest samples of a chunk; then samples in memory. Also says whether old
    /// chunks may remain.
    fn delete_older_than(
        &self,
        conn: &mut Connection,
        cutoff: i64,
        budget: u64,
    ) -> Result<(u64, bool)> {
        let mut remain = false;
        let mut deleted = 0;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin deleting old samples"))?;
        {
            let mut candidates = Vec::new();
            let mut old = tx
                .prepare_cached(
                    "SELECT win, metric_id, part, last_ts, count FROM sample_chunks \
                     WHERE win <= ?1 AND first_ts < ?2 ORDER BY win, metric_id, part",
                )
                .map_err(self.sql("find old chunks"))?;
            let mut rows = old
                .query(params![window_of(cutoff.max(0) as u64), cutoff])
                .map_err(self.sql("find old chunks"))?;
            // Each candidate gives up at least one sample.
            while let Some(row) = rows.next().map_err(self.sql("find old chunks"))? {
                if candidates.len() as u64 == budget {
                    remain = true;
                    break;
                }
                let c: (i64, i64, i64, i64, i64) = (
                    row.get(0).map_err(self.sql("find old chunks"))?,
                    row.get(1).map_err(self.sql("find old chunks"))?,
                    row.get(2).map_err(self.sql("find old chunks"))?,
                    row.get(3).map_err(self.sql("find old chunks"))?,
                    row.get(4).map_err(self.sql("find old chunks"))?,
                );
                candidates.push(c);
            }
            drop(rows);
            for (win, metric, part, last_ts, count) in candidates {
                let left = budget - deleted;
                if left == 0 {
                    remain = true;
                    break;
                }
                let metric = MetricId(metric);
                if last_ts < cutoff && count as u64 <= left {
                    write_part(&tx, win, metric, part, &[]).map_err(self.sql("delete chunk"))?;
                    deleted += count as u64;
                    continue;
                }
                let data: Option<Vec<u8>> = tx
                    .prepare_cached(
                        "SELECT data FROM sample_chunks \
                         WHERE win = ?1 AND metric_id = ?2 AND part = ?3",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![win, metric.0, part], |r| r.get(0))
                            .optional()
                    })
                    .map_err(self.sql("read chunk"))?;
                let Some(data) = data else {
                    continue;
                };
                let samples = self.decode_chunk(metric, win, &data)?;
                let old = (samples.partition_point(|s| (s.ts as i64) < cutoff) as u64).min(left);
                write_part(&tx, win, metric, part, &samples[old as usize..])
                    .map_err(self.sql("trim chunk"))?;
                deleted += old;
            }
        }
        tx.commit()
            .map_err(self.sql("commit deleting old samples"))?;
        if deleted < budget {
            let mut recent = write(&self.recent);
            let removed = recent.remove_before(cutoff.max(0) as u64, budget - deleted);
            if removed > 0 {
                deleted += removed;
                self.rewrite_log(&recent);
            }
        }
        Ok((deleted, remain))
    }
}

/// `stored` (a chunk) and `new` (sorted samples of the same metric and window) as one
/// sorted list; at the same timestamp the stored sample stays unless it is the host's STALE
/// marker and the new one a measurement.
fn merge(stored: Vec<Sample>, new: &[Sample]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(stored.len() + new.len());
    let mut new = new.iter().peekable();
    for s in stored {
        while let Some(n) = new.next_if(|n| n.ts < s.ts) {
            out.push(n.clone());
        }
        match new.next_if(|n| n.ts == s.ts) {
            Some(n) if s.quality == Quality::STALE && n.quality != Quality::STALE => {
                out.push(n.clone())
            }
            _ => out.push(s),
        }
    }
    out.extend(new.cloned());
    out
}

/// Stores `samples` (sorted, of one metric and window) as the chunk of (`win`, `metric`),
/// replacing every part there; no samples deletes it.
fn write_chunk(
    conn: &Connection,
    win: i64,
    metric: MetricId,
    samples: &[Sample],
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM sample_chunks WHERE win = ?1 AND metric_id = ?2")?
        .execute(params![win, metric.0])?;
    write_parts(conn, win, metric, 0, samples)
}

/// Stores `samples` (sorted, of one metric and window) as parts `first_part..` of the
/// chunk of (`win`, `metric`), cut at [`schema::PART_BYTES`], replacing parts of those
/// numbers.
pub(super) fn write_parts(
    conn: &Connection,
    win: i64,
    metric: MetricId,
    first_part: i64,
    samples: &[Sample],
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO sample_chunks \
         (win, metric_id, part, first_ts, last_ts, count, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut at = 0;
    for (part, (count, data)) in
        (first_part..).zip(chunk::encode_parts(samples, schema::PART_BYTES))
    {
        let held = &samples[at..at + count];
        at += count;
        insert.execute(params![
            win,
            metric.0,
            part,
            held[0].ts as i64,
            held[count - 1].ts as i64,
            count as i64,
            data
        ])?;
    }
    Ok(())
}

/// Replaces one part of a chunk by `samples` (what retention leaves of it); none deletes
/// the part.
fn write_part(
    conn: &Connection,
    win: i64,
    metric: MetricId,
    part: i64,
    samples: &[Sample],
) -> rusqlite::Result<()> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        conn.prepare_cached(
            "DELETE FROM sample_chunks WHERE win = ?1 AND metric_id = ?2 AND part = ?3",
        )?
        .execute(params![win, metric.0, part])?;
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sample_chunks \
         (win, metric_id, part, first_ts, last_ts, count, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        win,
        metric.0,
        part,
        first.ts as i64,
        last.ts as i64,
        samples.len() as i64,
        chunk::encode(samples)
    ])?;
    Ok(())
}

/// Where each metric's chunks are: `chunk_windows`, and the newest timestamp of the last
/// window's chunk.
fn load_windows(conn: &Connection) -> rusqlite::Result<FxHashMap<MetricId, Span>> {
    let mut stmt = conn.prepare("SELECT metric_id, first_win, last_win FROM chunk_windows")?;
    let rows: Vec<(i64, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut newest =
        conn.prepare("SELECT max(last_ts) FROM sample_chunks WHERE win = ?1 AND metric_id = ?2")?;
    let mut out = FxHashMap::with_capacity_and_hasher(rows.len(), Default::default());
    for (metric, first_win, last_win) in rows {
        let ts: Option<i64> = newest.query_row(params![last_win, metric], |r| r.get(0))?;
        // Without a chunk in its last window (retention), any sample of the span may be in one.
        let newest = ts.map_or(u64::MAX, |t| t.max(0) as u64);
        out.insert(
            MetricId(metric),
            Span {
                first_win,
                last_win,
                newest,
            },
        );
    }
    Ok(out)
}

impl Drop for SqliteStore {
    /// Metrics registered with no sample since, and every sample in memory, are written to
    /// the database before the file closes, so a closed history is one file.
    fn drop(&mut self) {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = write_registered(&mut conn, &self.catalog) {
            tracing::warn!(path = %self.path.display(), error = %e, "registered metrics without samples not written at close");
        }
        match self.compact(&mut conn, u64::MAX) {
            Ok(()) if read(&self.recent).len() == 0 => {
                if let Err(e) = lock(&self.log).remove() {
                    tracing::warn!(path = %self.path.display(), error = %e, "recent log not removed at close");
                }
            }
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "recent samples not written to chunks at close; the log keeps them")
            }
        }
    }
}

/// Writes (and forgets) the catalog's pending rows in a transaction of their own.
fn write_registered(
    conn: &mut Connection,
    catalog: &Mutex<catalog::Catalog>,
) -> rusqlite::Result<()> {
    let pending = lock(catalog).pending();
    if pending.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    catalog::write(&tx, &pending)?;
    tx.commit()?;
    lock(catalog).written(pending.len());
    Ok(())
}

impl SqliteStore {
    /// The samples of `metric` in `range`, oldest first: at most `limit` of them when a
    /// limit is given. Memory and chunks are read as of one moment: the reader's snapshot
    /// starts while the in-memory samples are held, so a window closing meanwhile is seen
    /// on exactly one side (or on both, which the merge de-duplicates).
    fn collect(
        &self,
        metric: MetricId,
        range: TimeRange,
        limit: Option<usize>,
    ) -> Result<Vec<Sample>> {
        let (from, to) = (range.from, range.to.min(i64::MAX as u64 + 1));
        self.with_reader(|conn| {
            let recent = read(&self.recent);
            conn.execute_batch("BEGIN")
                .map_err(self.sql("begin read"))?;
            let result = (|| {
                let bounds: Option<(i64, i64)> = conn
                    .prepare_cached(
                        "SELECT first_win, last_win FROM chunk_windows WHERE metric_id = ?1",
                    )
                    .and_then(|mut s| {
                        s.query_row([metric.0], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(self.sql("read chunk windows"))?;
                let hot = recent.range(metric, from, to).to_vec();
                drop(recent);
                let mut stored = Vec::new();
                if let Some((first, last)) = bounds
                    && from < to
                {
                    let lo = window_of(from).max(first);
                    let hi = window_of(to - 1).min(last);
                    let mut stmt = conn
                        .prepare_cached(SELECT_CHUNK)
                        .map_err(self.sql("read chunk"))?;
                    for win in lo..=hi {
                        if limit.is_some_and(|l| stored.len() >= l) {
                            break;
                        }
                        let at = stored.len();
                        let mut rows = stmt
                            .query(params![win, metric.0])
                            .map_err(self.sql("read chunk"))?;
                        let mut found = false;
                        while let Some(row) = rows.next().map_err(self.sql("read chunk"))? {
                            let data = row
                                .get_ref(0)
                                .and_then(|v| Ok(v.as_blob()?))
                                .map_err(self.sql("read chunk"))?;
                            self.decode_chunk_into(metric, win, data, &mut stored)?;
                            found = true;
                        }
                        if found {
                            // Only the edge windows hold samples outside the range.
                            if win == lo || win == hi {
                                let mut kept = at;
                                for i in at..stored.len() {
                                    if stored[i].ts >= from && stored[i].ts < to {
                                        stored.swap(kept, i);
                                        kept += 1;
                                    }
                                }
                                stored.truncate(kept);
                            }
                        }
                    }
                }
                Ok(if hot.is_empty() {
                    stored
                } else {
                    merge(stored, &hot)
                })
            })();
            conn.execute_batch("COMMIT").map_err(self.sql("end read"))?;
            let mut out = result?;
            if let Some(l) = limit {
                out.truncate(l);
            }
            Ok(out)
        })
    }
}

impl HistoryStore for SqliteStore {
    fn checkpoint(&self) -> Result<()> {
        blocking::run(|| SqliteStore::checkpoint(self))
    }

    fn register_metric(&self, key: &MetricKey, meta: &MetricMeta) -> Result<MetricId> {
        Ok(lock(&self.catalog).register(key, meta))
    }

    fn resolve_metric(&self, key: &MetricKey) -> Result<Option<MetricId>> {
        Ok(lock(&self.catalog).resolve(key))
    }

    fn metrics(&self) -> Result<Vec<MetricInfo>> {
        Ok(lock(&self.catalog).list())
    }

    fn append(&self, samples: &[Sample]) -> Result<AppendOutcome> {
        blocking::run(|| {
            if samples.is_empty() {
                return Ok(AppendOutcome::default());
            }
            let mut conn = lock(&self.writer);
            // The database's write lock, as a row insert would take it, and the metrics
            // registered since the last commit, before the samples that use them.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.sql("begin sample batch"))?;
            let registered = lock(&self.catalog).pending();
            catalog::write(&tx, &registered).map_err(self.sql("write registered metrics"))?;
            let mut intake = lock(&self.intake);
            let outcome = {
                let recent = read(&self.recent);
                let state = lock(&self.state);
                self.admit(&tx, &recent, &state, samples, &mut intake)?
            };
            tx.commit().map_err(self.sql("commit sample batch"))?;
            lock(&self.catalog).written(registered.len());
            // Acknowledged once in the log; memory follows.
            {
                let mut log = lock(&self.log);
                log.append(&intake.accepted)
                    .map_err(|e| HistoryError::Backend {
                        path: log.path().to_path_buf(),
                        what: "append to the recent log",
                        source: Box::new(e),
                    })?;
            }
            {
                let mut recent = write(&self.recent);
                let mut state = lock(&self.state);
                for sample in intake.accepted.drain(..) {
                    state.newest = state.newest.max(sample.ts);
                    recent.insert(sample);
                }
            }
            drop(intake);
            // The batch is stored whatever happens here; closing windows is retried later.
            if let Err(e) = self.maybe_compact(&mut conn) {
                tracing::error!(error = %e, "closing history windows failed; will retry");
            }
            Ok(outcome)
        })
    }

    fn range(&self, metric: MetricId, range: TimeRange, limit: u32) -> Result<Vec<Sample>> {
        if range.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        self.collect(metric, range, Some(limit as usize))
    }

    fn downsample(&self, metric: MetricId, range: TimeRange, buckets: u32) -> Result<Vec<Bucket>> {
        if range.is_empty() || buckets == 0 {
            return Ok(Vec::new());
        }
        let width = range.bucket_width(buckets);
        let samples = self.collect(metric, range, None)?;
        // One ordered pass, aggregating as samples go by.
        let mut out = Vec::with_capacity(buckets.min(10_000) as usize);
        let mut scan = BucketScan::default();
        for (i, sample) in samples.iter().enumerate() {
            let index = (sample.ts - range.from) / width;
            if scan.count > 0 && scan.index != index {
                out.push(scan.finish(range, width, &samples[i - 1]));
                scan = BucketScan::default();
            }
            scan.add(index, sample);
        }
        if let Some(last) = samples.last() {
            out.push(scan.finish(range, width, last));
        }
        Ok(out)
    }

    fn latest(&self, metrics: &[MetricId]) -> Result<Vec<Sample>> {
        self.with_reader(|conn| {
            let recent = read(&self.recent);
            conn.execute_batch("BEGIN")
                .map_err(self.sql("begin read"))?;
            let result = (|| {
                let mut out = Vec::with_capacity(metrics.len());
                let mut windows = conn
                    .prepare_cached("SELECT last_win FROM chunk_windows WHERE metric_id = ?1")
                    .map_err(self.sql("query latest"))?;
                for &metric in metrics {
                    let last_win: Option<i64> = windows
                        .query_row([metric.0], |r| r.get(0))
                        .optional()
                        .map_err(self.sql("query latest"))?;
                    let stored = match last_win {
                        Some(win) => match self.read_last_part(conn, win, metric)? {
                            Some((_, _, data)) => self.decode_chunk(metric, win, &data)?.pop(),
                            None => None,
                        },
                        None => None,
                    };
                    let hot = recent.last(metric);
                    let newest = match (stored, hot) {
                        (Some(s), Some(h)) if h.ts > s.ts => Some(h.clone()),
                        (Some(s), Some(h)) if h.ts == s.ts => {
                            merge(vec![s], std::slice::from_ref(h)).pop()
                        }
                        (Some(s), _) => Some(s),
                        (None, h) => h.cloned(),
                    };
                    out.extend(newest);
                }
                Ok(out)
            })();
            drop(recent);
            conn.execute_batch("COMMIT").map_err(self.sql("end read"))?;
            result
        })
    }

    fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        now: TimestampMs,
        max_rows: u32,
    ) -> Result<RetentionStep> {
        blocking::run(|| {
            let budget = u64::from(max_rows.max(1));
            let mut conn = lock(&self.writer);
            let mut size_cutoff = lock(&self.size_cutoff);

            if policy.max_bytes.is_none() {
                *size_cutoff = None; // the limit was lifted mid-pass
            }
            if size_cutoff.is_none()
                && let Some(max_bytes) = policy.max_bytes
            {
                let live = live_bytes(&conn).map_err(self.sql("read page counts"))?;
                if live > max_bytes {
                    *size_cutoff = size_cutoff_for(&conn, live, max_bytes)
                        .map_err(self.sql("find oldest samples"))?;
                    tracing::info!(live, max_bytes, cutoff = ?*size_cutoff, "history over its size limit; deleting oldest samples");
                }
            }
            let age_cutoff = policy.max_age.map(|age| {
                to_sql_ts(now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)))
            });
            let (deleted, remain) = match age_cutoff.max(*size_cutoff) {
                Some(cutoff) => self.delete_older_than(&mut conn, cutoff, budget)?,
                None => (0, false),
            };
            let mut more = deleted == budget || remain;
            if !more {
                *size_cutoff = None;
            }

            let (_, free) = page_counts(&conn).map_err(self.sql("read page counts"))?;
            if free > 0 {
                incremental_vacuum(&conn, free).map_err(self.sql("incremental vacuum"))?;
            }
            let (pages, _) = page_counts(&conn).map_err(self.sql("read page counts"))?;
            let bytes_in_use = pages * u64::from(schema::PAGE_SIZE);
            if !more && deleted > 0 && policy.max_bytes.is_some_and(|max| bytes_in_use > max) {
                more = true; // still over: the next step picks a new cutoff
            }
            Ok(RetentionStep {
                deleted,
                bytes_in_use,
                more,
            })
        })
    }

    fn apply_audit_retention(
        &self,
        policy: &AuditRetention,
        now: TimestampMs,
        max_rows: u32,
    ) -> Result<RetentionStep> {
        blocking::run(|| {
            let budget = i64::from(max_rows.max(1));
            let conn = lock(&self.writer);
            let sql = |e| sql_error(&self.path, "apply audit retention", e);
            let mut deleted = 0i64;
            if let Some(age) = policy.max_age {
                let cutoff = to_sql_ts(
                    now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
                );
                deleted += conn
                    .prepare_cached(
                        "DELETE FROM audit_log WHERE id IN \
                         (SELECT id FROM audit_log WHERE ts < ?1 ORDER BY id LIMIT ?2)",
                    )
                    .and_then(|mut s| s.execute(params![cutoff, budget]))
                    .map_err(sql)? as i64;
            }
            if let Some(max) = policy.max_rows
                && deleted < budget
            {
                let rows: i64 = conn
                    .query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))
                    .map_err(sql)?;
                let excess = rows.saturating_sub(i64::try_from(max).unwrap_or(i64::MAX));
                if excess > 0 {
                    deleted += conn
                        .prepare_cached(
                            "DELETE FROM audit_log WHERE id IN \
                             (SELECT id FROM audit_log ORDER BY id LIMIT ?1)",
                        )
                        .and_then(|mut s| s.execute([excess.min(budget - deleted)]))
                        .map_err(sql)? as i64;
                }
            }
            let (pages, _) = page_counts(&conn).map_err(sql)?;
            Ok(RetentionStep {
                deleted: deleted as u64,
                bytes_in_use: pages * u64::from(schema::PAGE_SIZE),
                more: deleted >= budget,
            })
        })
    }

    fn audit_append(&self, entry: &AuditEntry) -> Result<i64> {
        blocking::run(|| {
            let conn = lock(&self.writer);
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO audit_log \
                     (ts, user, group_id, edge_node_id, device_id, metric, value, outcome, detail) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(self.sql("append audit entry"))?;
            let key = &entry.metric;
            stmt.execute(params![
                to_sql_ts(entry.ts),
                entry.user,
                key.group_id,
                key.edge_node_id,
                key.device_id.as_deref().unwrap_or(""),
                key.name,
                entry.value,
                entry.outcome.as_str(),
                entry.detail
            ])
            .map_err(self.sql("append audit entry"))?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn audit_query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        if query.range.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        let key = query.metric.as_ref();
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, ts, user, group_id, edge_node_id, device_id, metric, value, \
                            outcome, detail \
                     FROM audit_log \
                     WHERE ts >= ?1 AND ts < ?2 AND (?3 IS NULL OR user = ?3) \
                       AND (?4 IS NULL OR (group_id = ?4 AND edge_node_id = ?5 \
                                           AND device_id = ?6 AND metric = ?7)) \
                     ORDER BY ts DESC, id DESC LIMIT ?8",
                )
                .map_err(self.sql("query audit log"))?;
            let mut rows = stmt
                .query(params![
                    to_sql_ts(query.range.from),
                    to_sql_ts(query.range.to),
                    query.user,
                    key.map(|k| &k.group_id),
                    key.map(|k| &k.edge_node_id),
                    key.map(|k| k.device_id.as_deref().unwrap_or("")),
                    key.map(|k| &k.name),
                    query.limit
                ])
                .map_err(self.sql("query audit log"))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(self.sql("query audit log"))? {
                out.push(self.row_to_audit(row)?);
            }
            Ok(out)
        })
    }
}

/// Running aggregates of the trend bucket being scanned.
#[derive(Debug, Default)]
struct BucketScan {
    index: u64,
    count: u64,
    numeric: u64,
    min: f64,
    max: f64,
    sum: f64,
}

impl BucketScan {
    fn add(&mut self, index: u64, sample: &Sample) {
        self.index = index;
        self.count += 1;
        if let Some(x) = sample.value.as_f64() {
            if self.numeric == 0 {
                (self.min, self.max) = (x, x);
            } else {
                (self.min, self.max) = (self.min.min(x), self.max.max(x));
            }
            self.numeric += 1;
            self.sum += x;
        }
    }

    /// The bucket, whose latest sample is `last`.
    fn finish(&self, range: TimeRange, width: u64, last: &Sample) -> Bucket {
        let start = range.from + self.index * width;
        let numeric = |x: f64| (self.numeric > 0).then_some(x);
        Bucket {
            start,
            end: start.saturating_add(width).min(range.to),
            count: self.count,
            min: numeric(self.min),
            max: numeric(self.max),
            avg: numeric(self.sum / self.numeric.max(1) as f64),
            last: last.clone(),
        }
    }
}

impl SqliteStore {
    fn row_to_audit(&self, row: &Row<'_>) -> Result<AuditRecord> {
        let sql = |e| sql_error(&self.path, "read audit entry", e);
        let id: i64 = row.get(0).map_err(sql)?;
        let bad = |reason: String| HistoryError::BadAuditRow {
            path: self.path.clone(),
            id,
            reason,
        };
        let ts: i64 = row.get(1).map_err(sql)?;
        let device_id: String = row.get(5).map_err(sql)?;
        let outcome: String = row.get(8).map_err(sql)?;
        Ok(AuditRecord {
            id,
            entry: AuditEntry {
                ts: u64::try_from(ts).map_err(|_| bad(format!("timestamp {ts}")))?,
                user: row.get(2).map_err(sql)?,
                metric: MetricKey {
                    group_id: row.get(3).map_err(sql)?,
                    edge_node_id: row.get(4).map_err(sql)?,
                    device_id: (!device_id.is_empty()).then_some(device_id),
                    name: row.get(6).map_err(sql)?,
                },
                value: row.get(7).map_err(sql)?,
                outcome: CommandOutcome::parse(&outcome)
                    .ok_or_else(|| bad(format!("unknown outcome {outcome:?}")))?,
                detail: row.get(9).map_err(sql)?,
            },
        })
    }
}

/// Locks a mutex; a panic elsewhere while holding it leaves a connection whose open
/// transaction was rolled back on unwind, so the guard is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Timestamps beyond i64 cannot be stored; clamping query bounds keeps ranges meaningful.
fn to_sql_ts(ts: TimestampMs) -> i64 {
    i64::try_from(ts).unwrap_or(i64::MAX)
}

fn initialize(conn: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    // Reading the header here is what detects a file that is not a database.
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if tables == 0 {
        schema::set_new_file_layout(conn)?;
    }
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("cannot switch to WAL journal (still {mode})")),
        ));
    }
    schema::configure_writer(conn, options.synchronous.pragma_value())
}

/// Creates the schema in an empty file, converts a file of the previous layout, or checks
/// that an existing file holds ours.
fn check_schema(path: &Path, conn: &mut Connection) -> Result<()> {
    let sql = |e| open_error(path, e);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql)?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sql)?;
    let corrupt = |reason: String| HistoryError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let has_all = |names: &[&str]| -> Result<()> {
        match names.iter().find(|t| !tables.iter().any(|n| n == *t)) {
            Some(missing) => Err(corrupt(format!("table `{missing}` is missing"))),
            None => Ok(()),
        }
    };
    match version {
        0 if tables.is_empty() => {
            conn.execute_batch(&format!(
                "BEGIN; {} {} {} PRAGMA user_version = {}; COMMIT;",
                schema::CREATE,
                schema::CREATE_SAMPLE_CHUNKS,
                schema::CREATE_CHUNK_WINDOWS,
                schema::SCHEMA_VERSION
            ))
            .map_err(sql)?;
            let auto_vacuum: i64 = conn
                .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
                .map_err(sql)?;
            if auto_vacuum != 2 {
                tracing::warn!(path = %path.display(), "history database without incremental auto-vacuum; size retention cannot shrink the file");
            }
            Ok(())
        }
        0 => Err(corrupt(format!(
            "holds tables of another program ({})",
            tables.join(", ")
        ))),
        migrate::ROWS_VERSION => {
            has_all(&migrate::ROWS_TABLES)?;
            migrate::to_chunks(path, conn)
        }
        migrate::WHOLE_CHUNKS_VERSION => {
            has_all(&migrate::WHOLE_CHUNKS_TABLES)?;
            migrate::to_parts(path, conn)
        }
        schema::SCHEMA_VERSION => has_all(&schema::TABLES),
        other => Err(corrupt(format!(
            "schema version {other}; this build reads version {}",
            schema::SCHEMA_VERSION
        ))),
    }
}

/// Hands up to `pages` free pages back to the filesystem. The pragma frees one page per
/// result row, so it is stepped to the end.
fn incremental_vacuum(conn: &Connection, pages: u64) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

fn page_counts(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    Ok((pages as u64, free as u64))
}

/// Bytes in pages that hold data (free pages excluded, so a database without auto-vacuum
/// is not emptied chasing a file size it cannot reach).
fn live_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let (pages, free) = page_counts(conn)?;
    Ok(pages.saturating_sub(free) * u64::from(schema::PAGE_SIZE))
}

/// The timestamp below which deleting samples brings the database to the size target,
/// assuming samples spread evenly over time (the pass repeats if they did not).
fn size_cutoff_for(conn: &Connection, live: u64, max_bytes: u64) -> rusqlite::Result<Option<i64>> {
    // The first and last windows are the ends of the key: two short range reads.
    let (oldest, newest): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT (SELECT min(first_ts) FROM sample_chunks \
                 WHERE win = (SELECT min(win) FROM sample_chunks)), \
                (SELECT max(last_ts) FROM sample_chunks \
                 WHERE win = (SELECT max(win) FROM sample_chunks))",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (Some(oldest), Some(newest)) = (oldest, newest) else {
        return Ok(None);
    };
    let target = max_bytes / 100 * SIZE_TARGET_PERCENT;
    let share = (live - target.min(live)) as f64 / live as f64;
    let span = (newest - oldest).saturating_add(1) as f64;
    let advance = ((span * share).ceil() as i64).max(1);
    Ok(Some(oldest.saturating_add(advance)))
}

fn open_error(path: &Path, e: rusqlite::Error) -> HistoryError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => HistoryError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
        _ => HistoryError::Open {
            path: path.to_path_buf(),
            source: Box::new(e),
        },
    }
}

fn sql_error(path: &Path, what: &'static str, e: rusqlite::Error) -> HistoryError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => HistoryError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{what}: {e}"),
        },
        _ => HistoryError::Backend {
            path: path.to_path_buf(),
            what,
            source: Box::new(e),
        },
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
