//! The embedded SQLite history backend: one writer connection (ingest, retention, audit
//! appends), a small pool of read-only connections, a checkpoint thread, and the metric
//! catalog in memory (registration never waits for the writer; see `catalog`), in WAL
//! mode so trend queries read a snapshot while ingest commits.
//!
//! Settings, and why:
//! - `journal_mode = WAL`, `synchronous = NORMAL` by default: a commit is an append to the
//!   WAL without fsync; the database never corrupts, and a power cut may lose the last
//!   commits (a crash of the process loses nothing committed). `FULL` is offered for sites
//!   that prefer an fsync per commit (one per batch, so still affordable).
//! - `page_size = 4096` (flash page / filesystem block), `auto_vacuum = INCREMENTAL` so
//!   retention can give space back, writer cache 8 MiB, reader caches 2 MiB each.
//! - checkpoints every second on their own connection and thread (PASSIVE: they wait for no
//!   one); the writer checkpoints itself only if the WAL reaches 64 MiB.
//! - small batches land in `samples_recent` (keyed by time, so a commit appends a few
//!   pages) and are folded into `samples` (keyed by metric, time) every minute or 64k rows;
//!   queries read both. See `schema` for why: flash wear on gateways.

mod catalog;
mod checkpoint;
mod codec;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, Row, TransactionBehavior, params};

use super::HistoryStore;
use super::error::{HistoryError, Result};
use super::types::{
    AppendOutcome, AuditEntry, AuditQuery, AuditRecord, AuditRetention, Bucket, CommandOutcome,
    MetricId, MetricInfo, MetricKey, MetricMeta, Quality, RetentionPolicy, RetentionStep, Sample,
    TimeRange, TimestampMs,
};

/// `samples_recent` is folded into `samples` once it holds this many rows ...
const FOLD_ROWS: u64 = 64 * 1024;
/// ... or this long after the previous fold, whichever comes first.
const FOLD_EVERY: Duration = Duration::from_secs(60);

/// A batch this large goes straight into `samples`: sorted by key, it writes each metric's
/// pages about once anyway, and skipping the recent table halves the work under a flood.
const DIRECT_ROWS: usize = 16 * 1024;

/// Idle reader connections kept open for reuse; more are opened on demand.
const MAX_IDLE_READERS: usize = 4;

/// A size-retention pass deletes down to this share of `max_bytes` so it does not re-run on
/// every new batch.
const SIZE_TARGET_PERCENT: u64 = 90;

pub use infra::durability::Synchronous;

/// How to open the SQLite history database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
}

/// SQLite implementation of [`HistoryStore`]. Open one per database file and share it
/// (`Arc`); it is `Send + Sync`.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Oldest timestamp kept by the size-retention pass under way, if one is.
    size_cutoff: Mutex<Option<i64>>,
    /// Locked after `writer`, like `size_cutoff`.
    fold: Mutex<FoldState>,
    /// Every registered metric; locked alone or after `writer`, never held across SQL.
    catalog: Mutex<catalog::Catalog>,
    checkpoint_gate: checkpoint::CheckpointGate,
    /// Declared last: its connection closes last and folds the WAL into the file.
    _checkpointer: checkpoint::Checkpointer,
}

/// Samples in `samples_recent` since the last fold into `samples`.
struct FoldState {
    rows: u64,
    last: Instant,
}

/// Exactly once: the recent table's key refuses a second copy of a recent (metric, ts), the
/// NOT EXISTS probe (a read, no page written) one already folded.
const INSERT_SAMPLE: &str = "INSERT OR IGNORE INTO samples_recent \
     (ts, metric_id, kind, value, quality, is_historical) \
     SELECT ?2, ?1, ?3, ?4, ?5, ?6 \
     WHERE NOT EXISTS (SELECT 1 FROM samples WHERE metric_id = ?1 AND ts = ?2)";

/// Straight into the main table; only used while `samples_recent` is empty.
const INSERT_SAMPLE_DIRECT: &str = "INSERT OR IGNORE INTO samples \
     (metric_id, ts, kind, value, quality, is_historical) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// A measured sample refused as a duplicate may be meeting the host's own STALE marker
/// (written at a death, at the host's clock) on the same millisecond: the measurement
/// wins. Run only after a refused insert, on whichever table holds the row.
const REPLACE_STALE_MARKER_RECENT: &str = "UPDATE samples_recent \
     SET kind = ?3, value = ?4, quality = ?5, is_historical = ?6 \
     WHERE ts = ?2 AND metric_id = ?1 AND quality = 500";
const REPLACE_STALE_MARKER: &str = "UPDATE samples \
     SET kind = ?3, value = ?4, quality = ?5, is_historical = ?6 \
     WHERE metric_id = ?1 AND ts = ?2 AND quality = 500";

const SAMPLE_COLUMNS: &str = "ts, kind, value, quality, is_historical";

/// A metric's samples in `[?2, ?3)` from both tables, in time order (SQLite merges the two
/// ordered scans; no sort).
const SAMPLES_IN_RANGE: &str = "SELECT ts, kind, value, quality, is_historical FROM samples \
     WHERE metric_id = ?1 AND ts >= ?2 AND ts < ?3 \
     UNION ALL \
     SELECT ts, kind, value, quality, is_historical FROM samples_recent \
     WHERE metric_id = ?1 AND ts >= ?2 AND ts < ?3 \
     ORDER BY ts";

impl SqliteStore {
    /// Opens (creating if absent) the history database at `path`. A file that is not a
    /// SQLite database, has a damaged header or schema, belongs to another program or to a
    /// newer schema is refused here with [`HistoryError::Corrupt`] naming the file. Damage
    /// deeper in the file (no full integrity check at open: it would read every page) is
    /// reported as [`HistoryError::Corrupt`] by the first operation that reaches it.
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
        check_schema(&path, &conn)?;
        // Samples left recent by the previous run go where queries expect most of them.
        fold_recent(&mut conn).map_err(|e| sql_error(&path, "fold recent samples", e))?;
        let catalog =
            catalog::Catalog::load(&conn).map_err(|e| sql_error(&path, "load metrics", e))?;
        let checkpoint_gate = checkpoint::CheckpointGate::default();
        let checkpointer = checkpoint::Checkpointer::start(
            &path,
            options.synchronous.pragma_value(),
            checkpoint_gate.clone(),
        )
        .map_err(|e| open_error(&path, e))?;
        let store = SqliteStore {
            path,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            size_cutoff: Mutex::new(None),
            fold: Mutex::new(FoldState {
                rows: 0,
                last: Instant::now(),
            }),
            catalog: Mutex::new(catalog),
            checkpoint_gate,
            _checkpointer: checkpointer,
        };
        // Fail at open, not at the first trend query, if readers cannot attach.
        let reader = store.open_reader()?;
        lock(&store.readers).push(reader);
        tracing::info!(path = %store.path.display(), synchronous = ?options.synchronous, "history database open");
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the metrics registered since the last commit, copies the WAL into the
    /// database file and truncates the WAL, so the file holds everything and its size on
    /// disk is the database size (for tools, backups and size checks). Fails if a reader
    /// holds an old snapshot past the busy timeout. Routine checkpoints need no call.
    pub fn checkpoint(&self) -> Result<()> {
        let _gate = lock(&self.checkpoint_gate);
        let mut conn = lock(&self.writer);
        write_registered(&mut conn, &self.catalog).map_err(self.sql("write registered metrics"))?;
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

    /// Runs `f` on a reader connection from the pool (opening one if all are busy).
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = lock(&self.readers).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open_reader()?,
        };
        let result = f(&conn);
        let mut idle = lock(&self.readers);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    /// Maps a SQLite error to one naming this database and the operation.
    fn sql(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> HistoryError + '_ {
        move |e| sql_error(&self.path, what, e)
    }

    fn row_to_sample(&self, metric: MetricId, row: &Row<'_>) -> Result<Sample> {
        let sql = |e| sql_error(&self.path, "read sample", e);
        self.build_sample(
            metric,
            row.get(0).map_err(sql)?,
            row.get(1).map_err(sql)?,
            row.get_ref(2).map_err(sql)?,
            row.get(3).map_err(sql)?,
            row.get(4).map_err(sql)?,
        )
    }

    fn build_sample(
        &self,
        metric: MetricId,
        ts: i64,
        kind: i64,
        value: ValueRef<'_>,
        quality: i64,
        is_historical: bool,
    ) -> Result<Sample> {
        let bad = |reason: String| HistoryError::BadRow {
            path: self.path.clone(),
            metric,
            ts,
            reason,
        };
        Ok(Sample {
            metric,
            ts: u64::try_from(ts).map_err(|_| bad("negative timestamp".into()))?,
            value: codec::decode(kind, value).map_err(bad)?,
            quality: Quality(
                i32::try_from(quality).map_err(|_| bad(format!("quality {quality}")))?,
            ),
            is_historical,
        })
    }

    fn fold_now(&self, conn: &mut Connection, fold: &mut FoldState) -> Result<()> {
        let moved = fold_recent(conn).map_err(self.sql("fold recent samples"))?;
        tracing::debug!(moved, "recent samples folded");
        *fold = FoldState {
            rows: 0,
            last: Instant::now(),
        };
        Ok(())
    }

    /// Deletes up to `budget` samples older than `cutoff`, oldest first within each metric.
    fn delete_older_than(
        conn: &mut Connection,
        cutoff: i64,
        mut budget: u64,
    ) -> rusqlite::Result<u64> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut deleted = 0;
        {
            let mut with_old = tx.prepare_cached(
                "SELECT id FROM metrics AS m \
                 WHERE (SELECT min(ts) FROM samples WHERE metric_id = m.id) < ?1 ORDER BY id",
            )?;
            let ids = with_old
                .query_map([cutoff], |row| row.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            let mut delete = tx.prepare_cached(
                "DELETE FROM samples WHERE metric_id = ?1 AND ts IN \
                 (SELECT ts FROM samples WHERE metric_id = ?1 AND ts < ?2 ORDER BY ts LIMIT ?3)",
            )?;
            for id in ids {
                if budget == 0 {
                    break;
                }
                let n = delete.execute(params![id, cutoff, budget as i64])? as u64;
                deleted += n;
                budget -= n;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }
}

impl Drop for SqliteStore {
    /// Metrics registered with no sample since are written before the file closes.
    fn drop(&mut self) {
        let conn = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = write_registered(conn, &self.catalog) {
            tracing::warn!(path = %self.path.display(), error = %e, "registered metrics without samples not written at close");
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

impl HistoryStore for SqliteStore {
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
        let mut outcome = AppendOutcome::default();
        if samples.is_empty() {
            return Ok(outcome);
        }
        let mut conn = lock(&self.writer);
        let mut fold = lock(&self.fold);
        let direct = samples.len() >= DIRECT_ROWS;
        if direct && fold.rows > 0 {
            self.fold_now(&mut conn, &mut fold)?;
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin sample batch"))?;
        // Metrics registered since the last commit, before the samples that use them.
        let registered = lock(&self.catalog).pending();
        catalog::write(&tx, &registered).map_err(self.sql("write registered metrics"))?;
        {
            let mut insert = tx
                .prepare_cached(if direct {
                    INSERT_SAMPLE_DIRECT
                } else {
                    INSERT_SAMPLE
                })
                .map_err(self.sql("prepare sample insert"))?;
            for sample in samples {
                let Ok(ts) = i64::try_from(sample.ts) else {
                    tracing::warn!(metric = %sample.metric, ts = sample.ts, "sample timestamp out of range; not stored");
                    outcome.rejected += 1;
                    continue;
                };
                let (kind, value) = codec::encode(&sample.value);
                let row = params![
                    sample.metric.0,
                    ts,
                    kind,
                    value,
                    sample.quality.0,
                    sample.is_historical
                ];
                let mut changed = insert.execute(row).map_err(self.sql("insert sample"))?;
                if changed == 0 && sample.quality != Quality::STALE {
                    for sql in [REPLACE_STALE_MARKER_RECENT, REPLACE_STALE_MARKER] {
                        changed += tx
                            .prepare_cached(sql)
                            .and_then(|mut replace| replace.execute(row))
                            .map_err(self.sql("replace a STALE marker"))?;
                    }
                }
                if changed == 1 {
                    outcome.inserted += 1;
                } else {
                    outcome.duplicates += 1;
                }
            }
        }
        tx.commit().map_err(self.sql("commit sample batch"))?;
        lock(&self.catalog).written(registered.len());
        if direct {
            return Ok(outcome);
        }
        fold.rows += outcome.inserted;
        if fold.rows >= FOLD_ROWS || (fold.rows > 0 && fold.last.elapsed() >= FOLD_EVERY) {
            // The batch is committed whatever happens here; a failed fold is retried later.
            if let Err(e) = self.fold_now(&mut conn, &mut fold) {
                tracing::error!(error = %e, "folding recent samples failed; will retry");
            }
        }
        Ok(outcome)
    }

    fn range(&self, metric: MetricId, range: TimeRange, limit: u32) -> Result<Vec<Sample>> {
        if range.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!("{SAMPLES_IN_RANGE} LIMIT ?4"))
                .map_err(self.sql("query range"))?;
            let mut rows = stmt
                .query(params![
                    metric.0,
                    to_sql_ts(range.from),
                    to_sql_ts(range.to),
                    limit
                ])
                .map_err(self.sql("query range"))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(self.sql("query range"))? {
                out.push(self.row_to_sample(metric, row)?);
            }
            Ok(out)
        })
    }

    fn downsample(&self, metric: MetricId, range: TimeRange, buckets: u32) -> Result<Vec<Bucket>> {
        if range.is_empty() || buckets == 0 {
            return Ok(Vec::new());
        }
        let width = range.bucket_width(buckets);
        // One ordered pass over the metric's contiguous key range, aggregating as rows go
        // by. Measured 3x faster than `GROUP BY bucket`, whose temporary B-tree re-sorts rows
        // that the primary key already yields in time order.
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(SAMPLES_IN_RANGE)
                .map_err(self.sql("query trend"))?;
            let mut rows = stmt
                .query(params![
                    metric.0,
                    to_sql_ts(range.from),
                    to_sql_ts(range.to)
                ])
                .map_err(self.sql("query trend"))?;
            let mut out = Vec::with_capacity(buckets.min(10_000) as usize);
            let mut scan = BucketScan::default();
            while let Some(row) = rows.next().map_err(self.sql("query trend"))? {
                let sql = |e| sql_error(&self.path, "query trend", e);
                let ts: i64 = row.get(0).map_err(sql)?;
                let index = ts.abs_diff(to_sql_ts(range.from)) / width;
                if scan.count > 0 && scan.index != index {
                    out.push(self.finish_bucket(metric, &scan, range, width)?);
                    scan.count = 0;
                }
                let kind: i64 = row.get(1).map_err(sql)?;
                let value = row.get_ref(2).map_err(sql)?;
                scan.add(index, ts, kind, value);
                scan.last_quality = row.get(3).map_err(sql)?;
                scan.last_historical = row.get(4).map_err(sql)?;
            }
            if scan.count > 0 {
                out.push(self.finish_bucket(metric, &scan, range, width)?);
            }
            Ok(out)
        })
    }

    fn latest(&self, metrics: &[MetricId]) -> Result<Vec<Sample>> {
        self.with_reader(|conn| {
            // Folded samples: one key lookup per metric.
            let mut newest: Vec<Option<Sample>> = Vec::with_capacity(metrics.len());
            let mut folded = conn
                .prepare_cached(&format!(
                    "SELECT {SAMPLE_COLUMNS} FROM samples WHERE metric_id = ?1 \
                     ORDER BY ts DESC LIMIT 1"
                ))
                .map_err(self.sql("query latest"))?;
            for &metric in metrics {
                let mut rows = folded.query([metric.0]).map_err(self.sql("query latest"))?;
                newest.push(match rows.next().map_err(self.sql("query latest"))? {
                    Some(row) => Some(self.row_to_sample(metric, row)?),
                    None => None,
                });
            }
            // Recent samples: one pass, newest first, until each metric has been seen.
            let mut unseen: HashMap<i64, usize> =
                metrics.iter().enumerate().map(|(i, m)| (m.0, i)).collect();
            let mut recent = conn
                .prepare_cached(&format!(
                    "SELECT {SAMPLE_COLUMNS}, metric_id FROM samples_recent ORDER BY ts DESC"
                ))
                .map_err(self.sql("query latest"))?;
            let mut rows = recent.query([]).map_err(self.sql("query latest"))?;
            while !unseen.is_empty()
                && let Some(row) = rows.next().map_err(self.sql("query latest"))?
            {
                let id: i64 = row.get(5).map_err(self.sql("query latest"))?;
                if let Some(i) = unseen.remove(&id) {
                    let sample = self.row_to_sample(MetricId(id), row)?;
                    if newest[i].as_ref().is_none_or(|s| s.ts < sample.ts) {
                        newest[i] = Some(sample);
                    }
                }
            }
            Ok(newest.into_iter().flatten().collect())
        })
    }

    fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        now: TimestampMs,
        max_rows: u32,
    ) -> Result<RetentionStep> {
        let budget = u64::from(max_rows.max(1));
        let mut conn = lock(&self.writer);
        // Replayed old samples may still be recent: fold so the policy sees every sample.
        let mut fold = lock(&self.fold);
        if fold.rows > 0 {
            self.fold_now(&mut conn, &mut fold)?;
        }
        drop(fold);
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
        let deleted = match age_cutoff.max(*size_cutoff) {
            Some(cutoff) => Self::delete_older_than(&mut conn, cutoff, budget)
                .map_err(self.sql("delete old samples"))?,
            None => 0,
        };
        let mut more = deleted == budget;
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
    }

    fn apply_audit_retention(
        &self,
        policy: &AuditRetention,
        now: TimestampMs,
        max_rows: u32,
    ) -> Result<RetentionStep> {
        let budget = i64::from(max_rows.max(1));
        let conn = lock(&self.writer);
        let sql = |e| sql_error(&self.path, "apply audit retention", e);
        let mut deleted = 0i64;
        if let Some(age) = policy.max_age {
            let cutoff =
                to_sql_ts(now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)));
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
    }

    fn audit_append(&self, entry: &AuditEntry) -> Result<i64> {
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

/// Running aggregates of the trend bucket being scanned; reused from bucket to bucket.
#[derive(Debug, Default)]
struct BucketScan {
    index: u64,
    count: u64,
    numeric: u64,
    min: f64,
    max: f64,
    sum: f64,
    last_ts: i64,
    last_kind: i64,
    last_value: codec::HeldValue,
    last_quality: i64,
    last_historical: bool,
}

impl BucketScan {
    fn add(&mut self, index: u64, ts: i64, kind: i64, value: ValueRef<'_>) {
        if self.count == 0 {
            *self = BucketScan {
                index,
                last_value: std::mem::take(&mut self.last_value),
                ..BucketScan::default()
            };
        }
        self.count += 1;
        if let Some(x) = codec::numeric(kind, value) {
            if self.numeric == 0 {
                (self.min, self.max) = (x, x);
            } else {
                (self.min, self.max) = (self.min.min(x), self.max.max(x));
            }
            self.numeric += 1;
            self.sum += x;
        }
        self.last_ts = ts;
        self.last_kind = kind;
        self.last_value.set(value);
    }
}

impl SqliteStore {
    fn finish_bucket(
        &self,
        metric: MetricId,
        scan: &BucketScan,
        range: TimeRange,
        width: u64,
    ) -> Result<Bucket> {
        let start = range.from + scan.index * width;
        let numeric = |x: f64| (scan.numeric > 0).then_some(x);
        Ok(Bucket {
            start,
            end: start.saturating_add(width).min(range.to),
            count: scan.count,
            min: numeric(scan.min),
            max: numeric(scan.max),
            avg: numeric(scan.sum / scan.numeric.max(1) as f64),
            last: self.build_sample(
                metric,
                scan.last_ts,
                scan.last_kind,
                scan.last_value.as_ref(),
                scan.last_quality,
                scan.last_historical,
            )?,
        })
    }

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

/// Creates the schema in an empty file, or checks that an existing file holds ours.
fn check_schema(path: &Path, conn: &Connection) -> Result<()> {
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
    match version {
        0 if tables.is_empty() => {
            conn.execute_batch(&format!(
                "BEGIN; {} PRAGMA user_version = {}; COMMIT;",
                schema::CREATE,
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
        schema::SCHEMA_VERSION => match schema::TABLES
            .iter()
            .find(|t| !tables.iter().any(|n| n == *t))
        {
            Some(missing) => Err(corrupt(format!("table `{missing}` is missing"))),
            None => Ok(()),
        },
        other => Err(corrupt(format!(
            "schema version {other}; this build reads version {}",
            schema::SCHEMA_VERSION
        ))),
    }
}

/// Moves every recent sample into `samples`, in key order, in one transaction.
fn fold_recent(conn: &mut Connection) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let moved = tx.execute(
        "INSERT OR IGNORE INTO samples (metric_id, ts, kind, value, quality, is_historical) \
         SELECT metric_id, ts, kind, value, quality, is_historical FROM samples_recent \
         ORDER BY metric_id, ts",
        [],
    )?;
    tx.execute("DELETE FROM samples_recent", [])?;
    tx.commit()?;
    Ok(moved)
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
    // Per-metric min/max are primary-key lookups; a global min(ts) would scan the table.
    let (oldest, newest): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT min((SELECT min(ts) FROM samples WHERE metric_id = m.id)), \
                max((SELECT max(ts) FROM samples WHERE metric_id = m.id)) FROM metrics AS m",
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
