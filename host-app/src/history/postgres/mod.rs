//! The PostgreSQL history backend: one database that several host instances share.
//!
//! - samples in `samples`, partitioned by time (see `schema`); a sample is identified by
//!   (metric, ts), its primary key, so a replay is stored once whichever instance gets it;
//! - a batch is sorted by that key and copied straight into `samples`; if the primary key
//!   refuses that (a sample of it is stored already), through a staging table and one
//!   `INSERT ... SELECT ... ON CONFLICT` (see `ingest`); in one transaction with the
//!   metrics registered since the last one;
//! - metric ids derive from their keys (see `catalog`), so instances agree without asking;
//! - retention drops whole partitions older than the age limit (cheap, whatever they hold)
//!   and deletes the rows of the partition the cutoff falls in, in bounded steps; the size
//!   limit drops the oldest partitions while the samples' partitions exceed it, one a
//!   step, never the newest that holds samples (so it cannot empty the history);
//! - trends are aggregated by the server: the same buckets and min/max/avg as SQLite's.
//!
//! The client is the blocking `postgres` crate (see `crate::pg`), which drives each
//! connection on a small runtime of its own; every use of a connection goes through
//! `blocking::run`, so the store may be called from async code too. Connections that break
//! are opened again at the next call.

mod catalog;
mod ingest;
mod schema;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Row};

use super::HistoryStore;
use super::blocking;
use super::error::{HistoryError, Result};
use super::types::{
    AppendOutcome, AuditEntry, AuditQuery, AuditRecord, AuditRetention, Bucket, CommandOutcome,
    MetricId, MetricInfo, MetricKey, MetricMeta, Quality, RetentionPolicy, RetentionStep, Sample,
    SampleValue, TimeRange, TimestampMs,
};
use crate::pg::{self, Pool, lock};
use catalog::Catalog;

/// Idle reader connections kept for reuse; more are opened on demand.
const MAX_IDLE_READERS: usize = 4;
/// Partitions kept ready ahead of the clock (beyond the current one).
const AHEAD: i64 = 2;

const KIND_NULL: i16 = 0;
const KIND_BOOL: i16 = 1;
const KIND_I64: i16 = 2;
const KIND_U64: i16 = 3;
const KIND_F64: i16 = 4;
const KIND_TEXT: i16 = 5;
const KIND_BYTES: i16 = 6;

const SAMPLE_COLUMNS: &str = "metric, ts, kind, quality, historical, num, i, t, b";

/// How to reach the database.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgresql://user@host:port/database`, without a password.
    pub url: String,
    pub password: Option<infra::secret::Secret>,
    /// Width of a partition of `samples` when this creates the database.
    pub partition: Duration,
    /// TLS to the server (required, the server checked), or none.
    pub tls: Option<infra::tls::ClientTls>,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            partition: Duration::from_secs(86_400),
            tls: None,
        }
    }
}

/// PostgreSQL implementation of [`HistoryStore`]; `Send + Sync`, share it (`Arc`).
pub struct PostgresStore {
    /// The URL, for errors (it holds no password).
    label: PathBuf,
    /// Partition width in ms, as the database has it.
    width: i64,
    /// Appends, retention, audit appends.
    writer: Mutex<Option<Client>>,
    /// Queries; also opens the writer's connection.
    readers: Pool,
    /// Partitions known to exist (another instance's retention may drop some: a miss
    /// reloads them).
    partitions: Mutex<BTreeSet<i64>>,
    catalog: Mutex<Catalog>,
    /// The next batch tries the COPY straight into `samples` (see `ingest`).
    direct: AtomicBool,
}

impl PostgresStore {
    /// Connects, creates the tables if they are not there (safe when several instances
    /// start at once) and the partitions around now.
    pub fn open(options: &PostgresOptions) -> Result<PostgresStore> {
        blocking::run(|| Self::connect_and_prepare(options))
    }

    fn connect_and_prepare(options: &PostgresOptions) -> Result<PostgresStore> {
        let label = PathBuf::from(&options.url);
        let open_error = |e: Box<dyn std::error::Error + Send + Sync>| HistoryError::Open {
            path: label.clone(),
            source: e,
        };
        let config = pg::client_config(&options.url, options.password.as_ref(), "host-app history")
            .map_err(|e| open_error(Box::new(e)))?;
        let mut readers = Pool::new(config, MAX_IDLE_READERS, "history-pg-close");
        if let Some(tls) = &options.tls {
            readers = readers.with_tls(tls).map_err(|e| open_error(Box::new(e)))?;
        }
        let mut client = readers
            .connect()
            .map_err(|e| open_error(Box::new(ClientError(e))))?;
        let wanted = i64::try_from(options.partition.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let width = schema::prepare(&mut client, wanted).map_err(|e| match e {
            schema::SchemaError::Foreign(reason) => HistoryError::Corrupt {
                path: label.clone(),
                reason,
            },
            schema::SchemaError::Sql(e) => open_error(Box::new(ClientError(e))),
        })?;
        let store = PostgresStore {
            label: label.clone(),
            width,
            writer: Mutex::new(Some(client)),
            readers,
            partitions: Mutex::new(BTreeSet::new()),
            catalog: Mutex::new(Catalog::default()),
            direct: AtomicBool::new(true),
        };
        store.with_writer("create partitions", |client| {
            store.reload_partitions(client)?;
            store.ensure_ahead(client, now_ms())
        })?;
        Ok(store)
    }

    /// The partition width in use.
    pub fn partition_width(&self) -> Duration {
        Duration::from_millis(self.width as u64)
    }

    fn sql(&self, what: &'static str) -> impl Fn(postgres::Error) -> HistoryError + '_ {
        move |e| HistoryError::Backend {
            path: self.label.clone(),
            what,
            source: Box::new(ClientError(e)),
        }
    }

    /// Runs `f` on the writer connection, opening it again if it broke.
    fn with_writer<T: Send>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error> + Send,
    ) -> Result<T> {
        blocking::run(|| {
            let mut slot = lock(&self.writer);
            let client = match slot.as_mut() {
                Some(c) if !c.is_closed() => c,
                _ => slot.insert(self.readers.connect().map_err(self.sql(what))?),
            };
            let result = f(client);
            if client.is_closed() {
                *slot = None;
            }
            result.map_err(self.sql(what))
        })
    }

    fn with_reader<T: Send>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error> + Send,
    ) -> Result<T> {
        blocking::run(|| self.readers.with(f).map_err(self.sql(what)))
    }

    fn reload_partitions(&self, client: &mut Client) -> std::result::Result<(), postgres::Error> {
        let there = schema::partitions(client)?;
        *lock(&self.partitions) = there.into_iter().collect();
        Ok(())
    }

    /// Creates the partitions of `starts` not known to exist.
    fn ensure(
        &self,
        client: &mut Client,
        starts: impl IntoIterator<Item = i64>,
    ) -> std::result::Result<(), postgres::Error> {
        let missing: Vec<i64> = {
            let known = lock(&self.partitions);
            starts.into_iter().filter(|s| !known.contains(s)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        schema::create_partitions(client, &missing, self.width)?;
        lock(&self.partitions).extend(missing);
        Ok(())
    }

    /// The partition of `now` and the next ones exist.
    fn ensure_ahead(
        &self,
        client: &mut Client,
        now: TimestampMs,
    ) -> std::result::Result<(), postgres::Error> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let first = schema::partition_of(now, self.width);
        let starts = (0..=AHEAD).filter_map(|k| first.checked_add(k.checked_mul(self.width)?));
        self.ensure(client, starts)
    }

    fn query_samples(
        &self,
        metric: MetricId,
        range: TimeRange,
        limit: Option<u32>,
    ) -> Result<Vec<Sample>> {
        let Some((from, last)) = sql_range(range) else {
            return Ok(Vec::new());
        };
        let limit = limit.map_or(i64::MAX, i64::from);
        let rows = self.with_reader("query samples", |c| {
            c.query(
                &format!(
                    "SELECT {SAMPLE_COLUMNS} FROM samples \
                     WHERE metric = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts LIMIT $4"
                ),
                &[&metric.0, &from, &last, &limit],
            )
        })?;
        rows.iter().map(|r| self.row_to_sample(r, 0)).collect()
    }

    /// The sample in `row` from column `at` on, in `SAMPLE_COLUMNS` order.
    fn row_to_sample(&self, row: &Row, at: usize) -> Result<Sample> {
        let metric = MetricId(row.get(at));
        let ts: i64 = row.get(at + 1);
        let kind: i16 = row.get(at + 2);
        let bad = |reason: String| HistoryError::BadRow {
            path: self.label.clone(),
            metric,
            ts,
            reason,
        };
        let num: Option<f64> = row.get(at + 5);
        let i: Option<i64> = row.get(at + 6);
        let missing = |what: &str| bad(format!("kind {kind} without its {what}"));
        let value = match kind {
            KIND_NULL => SampleValue::Null,
            KIND_BOOL => SampleValue::Bool(i.ok_or_else(|| missing("integer"))? != 0),
            KIND_I64 => SampleValue::I64(i.ok_or_else(|| missing("integer"))?),
            KIND_U64 => SampleValue::U64(i.ok_or_else(|| missing("integer"))? as u64),
            KIND_F64 => SampleValue::F64(num.unwrap_or(f64::NAN)),
            KIND_TEXT => SampleValue::Text(
                row.get::<_, Option<String>>(at + 7)
                    .ok_or_else(|| missing("text"))?,
            ),
            KIND_BYTES => SampleValue::Bytes(
                row.get::<_, Option<Vec<u8>>>(at + 8)
                    .ok_or_else(|| missing("bytes"))?,
            ),
            other => return Err(bad(format!("unknown value kind {other}"))),
        };
        Ok(Sample {
            metric,
            ts: u64::try_from(ts).map_err(|_| bad("negative timestamp".into()))?,
            value,
            quality: Quality(row.get(at + 3)),
            is_historical: row.get(at + 4),
        })
    }

    fn row_to_audit(&self, row: &Row) -> Result<AuditRecord> {
        let id: i64 = row.get(0);
        let bad = |reason: String| HistoryError::BadAuditRow {
            path: self.label.clone(),
            id,
            reason,
        };
        let ts: i64 = row.get(1);
        let device_id: String = row.get(5);
        let outcome: String = row.get(8);
        Ok(AuditRecord {
            id,
            entry: AuditEntry {
                ts: u64::try_from(ts).map_err(|_| bad(format!("timestamp {ts}")))?,
                user: row.get(2),
                metric: MetricKey {
                    group_id: row.get(3),
                    edge_node_id: row.get(4),
                    device_id: (!device_id.is_empty()).then_some(device_id),
                    name: row.get(6),
                },
                value: row.get(7),
                outcome: CommandOutcome::parse(&outcome)
                    .ok_or_else(|| bad(format!("outcome {outcome:?}")))?,
                detail: row.get(9),
            },
        })
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The readers close with their pool.
        pg::close("history-pg-close", lock(&self.writer).take());
    }
}

/// A client error shown with its causes: the client's own message names only the step
/// ("db error", "error performing TLS handshake"); its causes say what went wrong.
#[derive(Debug)]
struct ClientError(postgres::Error);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(&self.0);
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// The causes are in the message already.
impl std::error::Error for ClientError {}

/// `[from, to)` as inclusive SQL bounds, or `None` when nothing can be in it.
fn sql_range(range: TimeRange) -> Option<(i64, i64)> {
    if range.is_empty() {
        return None;
    }
    let from = i64::try_from(range.from).ok()?;
    let last = i64::try_from(range.to - 1).unwrap_or(i64::MAX);
    Some((from, last))
}

fn now_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn cutoff(now: TimestampMs, age: Duration) -> i64 {
    let ms = now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
    i64::try_from(ms).unwrap_or(i64::MAX)
}

impl HistoryStore for PostgresStore {
    fn register_metric(&self, key: &MetricKey, meta: &MetricMeta) -> Result<MetricId> {
        Ok(lock(&self.catalog).register(key, meta))
    }

    fn resolve_metric(&self, key: &MetricKey) -> Result<Option<MetricId>> {
        if let Some(id) = lock(&self.catalog).resolve(key) {
            return Ok(Some(id));
        }
        // Registered by another instance, or before a restart.
        let row = self.with_reader("resolve metric", |c| {
            c.query_opt(
                "SELECT id FROM metrics WHERE group_id = $1 AND edge_node_id = $2 \
                 AND device_id = $3 AND name = $4",
                &[
                    &key.group_id,
                    &key.edge_node_id,
                    &key.device_id.as_deref().unwrap_or(""),
                    &key.name,
                ],
            )
        })?;
        Ok(row.map(|r| MetricId(r.get(0))))
    }

    fn metrics(&self) -> Result<Vec<MetricInfo>> {
        let rows = self.with_reader("list metrics", |c| {
            c.query(
                "SELECT id, group_id, edge_node_id, device_id, name, datatype, units \
                 FROM metrics ORDER BY id",
                &[],
            )
        })?;
        let mut all: std::collections::BTreeMap<i64, MetricInfo> = rows
            .iter()
            .map(|r| {
                let device_id: String = r.get(3);
                let info = MetricInfo {
                    id: MetricId(r.get(0)),
                    key: MetricKey {
                        group_id: r.get(1),
                        edge_node_id: r.get(2),
                        device_id: (!device_id.is_empty()).then_some(device_id),
                        name: r.get(4),
                    },
                    meta: MetricMeta {
                        datatype: r.get(5),
                        units: r.get(6),
                    },
                };
                (info.id.0, info)
            })
            .collect();
        let mut catalog = lock(&self.catalog);
        for info in catalog.pending_infos() {
            all.insert(info.id.0, info.clone());
        }
        for info in all.values() {
            catalog.learn(info.clone());
        }
        Ok(all.into_values().collect())
    }

    fn append(&self, samples: &[Sample]) -> Result<AppendOutcome> {
        let (batch, rejected) = ingest::reduce(samples);
        let metrics = lock(&self.catalog).pending();
        if batch.is_empty() && metrics.is_empty() {
            return Ok(AppendOutcome {
                rejected,
                ..AppendOutcome::default()
            });
        }
        let starts: BTreeSet<i64> = batch
            .iter()
            .map(|(s, _)| schema::partition_of(s.ts as i64, self.width))
            .collect();
        let accepted = self.with_writer("store sample batch", |client| {
            self.ensure(client, starts.iter().copied())?;
            let direct = self.direct.load(Ordering::Relaxed);
            match ingest::write(client, &metrics, &batch, direct) {
                // Another instance's retention dropped a partition this one knew.
                Err(e) if e.code() == Some(&SqlState::CHECK_VIOLATION) => {
                    self.reload_partitions(client)?;
                    self.ensure(client, starts.iter().copied())?;
                    ingest::write(client, &metrics, &batch, direct)
                }
                other => other,
            }
        })?;
        let written = accepted.map_err(HistoryError::CommitFailed)?;
        self.direct.store(written.all_new, Ordering::Relaxed);
        let accepted = written.accepted;
        lock(&self.catalog).written(&metrics);
        Ok(AppendOutcome {
            inserted: accepted,
            duplicates: (samples.len() as u64 - rejected).saturating_sub(accepted),
            rejected,
        })
    }

    fn range(&self, metric: MetricId, range: TimeRange, limit: u32) -> Result<Vec<Sample>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.query_samples(metric, range, Some(limit))
    }

    fn downsample(&self, metric: MetricId, range: TimeRange, buckets: u32) -> Result<Vec<Bucket>> {
        let Some((from, last)) = sql_range(range) else {
            return Ok(Vec::new());
        };
        if buckets == 0 {
            return Ok(Vec::new());
        }
        let width = range.bucket_width(buckets);
        let sql_width = i64::try_from(width).unwrap_or(i64::MAX);
        let rows = self.with_reader("downsample", |c| {
            c.query(
                &format!(
                    "WITH b AS ( \
                       SELECT (ts - $2) / $4 AS bucket, count(*) AS n, min(num) AS lo, \
                              max(num) AS hi, avg(num) AS mean, max(ts) AS last_ts \
                       FROM samples WHERE metric = $1 AND ts >= $2 AND ts <= $3 GROUP BY 1) \
                     SELECT b.bucket, b.n, b.lo, b.hi, b.mean, {} \
                     FROM b JOIN samples s ON s.metric = $1 AND s.ts = b.last_ts \
                     ORDER BY b.bucket",
                    SAMPLE_COLUMNS
                        .split(", ")
                        .map(|c| format!("s.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &[&metric.0, &from, &last, &sql_width],
            )
        })?;
        rows.iter()
            .map(|r| {
                let index: i64 = r.get(0);
                let start = range.from + index as u64 * width;
                Ok(Bucket {
                    start,
                    end: start.saturating_add(width).min(range.to),
                    count: r.get::<_, i64>(1) as u64,
                    min: r.get(2),
                    max: r.get(3),
                    avg: r.get(4),
                    last: self.row_to_sample(r, 5)?,
                })
            })
            .collect()
    }

    fn latest(&self, metrics: &[MetricId]) -> Result<Vec<Sample>> {
        let ids: Vec<i64> = metrics.iter().map(|m| m.0).collect();
        let rows = self.with_reader("query latest", |c| {
            c.query(
                &format!(
                    "SELECT s.* FROM unnest($1::int8[]) WITH ORDINALITY AS m(id, n), \
                     LATERAL (SELECT {SAMPLE_COLUMNS} FROM samples \
                              WHERE metric = m.id ORDER BY ts DESC LIMIT 1) s ORDER BY m.n"
                ),
                &[&ids],
            )
        })?;
        rows.iter().map(|r| self.row_to_sample(r, 0)).collect()
    }

    fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        now: TimestampMs,
        max_rows: u32,
    ) -> Result<RetentionStep> {
        let budget = i64::from(max_rows.max(1));
        self.with_writer("apply retention", |client| {
            // Other instances make and drop partitions too.
            self.reload_partitions(client)?;
            self.ensure_ahead(client, now_ms())?;
            let mut step = RetentionStep::default();
            if let Some(age) = policy.max_age {
                let cutoff = cutoff(now, age);
                // Whole partitions first: one cheap step each, whatever they hold.
                let expired = lock(&self.partitions)
                    .iter()
                    .copied()
                    .find(|&start| start.saturating_add(self.width) <= cutoff);
                if let Some(start) = expired {
                    step.deleted = schema::drop_partition(client, start)?;
                    lock(&self.partitions).remove(&start);
                    step.more = true;
                } else {
                    let deleted = client.execute(
                        "DELETE FROM samples WHERE (metric, ts) IN \
                         (SELECT metric, ts FROM samples WHERE ts < $1 LIMIT $2)",
                        &[&cutoff, &budget],
                    )?;
                    step.deleted = deleted;
                    step.more = deleted as i64 >= budget;
                }
            }
            let (partitions, total) = schema::sizes(client)?;
            step.bytes_in_use = total;
            if !step.more
                && let Some(max_bytes) = policy.max_bytes
            {
                let samples: u64 = partitions.iter().map(|(_, b)| b).sum();
                if samples > max_bytes {
                    // The oldest partition older than the newest one holding samples goes;
                    // that one, and the empty ones made ahead of the clock, stay.
                    let mut newest = None;
                    for &(start, _) in partitions.iter().rev() {
                        if schema::has_rows(client, start)? {
                            newest = Some(start);
                            break;
                        }
                    }
                    if let Some(&(oldest, bytes)) =
                        partitions.iter().find(|(start, _)| Some(*start) < newest)
                    {
                        step.deleted += schema::drop_partition(client, oldest)?;
                        lock(&self.partitions).remove(&oldest);
                        step.bytes_in_use = total.saturating_sub(bytes);
                        step.more = true; // the next step measures again
                    }
                }
            }
            Ok(step)
        })
    }

    fn apply_audit_retention(
        &self,
        policy: &AuditRetention,
        now: TimestampMs,
        max_rows: u32,
    ) -> Result<RetentionStep> {
        let budget = i64::from(max_rows.max(1));
        self.with_writer("apply audit retention", |client| {
            let mut deleted = 0i64;
            if let Some(age) = policy.max_age {
                deleted += client.execute(
                    "DELETE FROM audit_log WHERE id IN \
                     (SELECT id FROM audit_log WHERE ts < $1 ORDER BY id LIMIT $2)",
                    &[&cutoff(now, age), &budget],
                )? as i64;
            }
            if let Some(max) = policy.max_rows
                && deleted < budget
            {
                let rows: i64 = client
                    .query_one("SELECT count(*) FROM audit_log", &[])?
                    .get(0);
                let excess = rows.saturating_sub(i64::try_from(max).unwrap_or(i64::MAX));
                if excess > 0 {
                    deleted += client.execute(
                        "DELETE FROM audit_log WHERE id IN \
                         (SELECT id FROM audit_log ORDER BY id LIMIT $1)",
                        &[&excess.min(budget - deleted)],
                    )? as i64;
                }
            }
            let (_, total) = schema::sizes(client)?;
            Ok(RetentionStep {
                deleted: deleted as u64,
                bytes_in_use: total,
                more: deleted >= budget,
            })
        })
    }

    fn audit_append(&self, entry: &AuditEntry) -> Result<i64> {
        let key = &entry.metric;
        let ts = i64::try_from(entry.ts).unwrap_or(i64::MAX);
        let row = self.with_writer("append audit entry", |c| {
            c.query_one(
                "INSERT INTO audit_log (ts, user_name, group_id, edge_node_id, device_id, \
                 metric, value, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 RETURNING id",
                &[
                    &ts,
                    &entry.user,
                    &key.group_id,
                    &key.edge_node_id,
                    &key.device_id.as_deref().unwrap_or(""),
                    &key.name,
                    &entry.value,
                    &entry.outcome.as_str(),
                    &entry.detail,
                ],
            )
        })?;
        Ok(row.get(0))
    }

    fn audit_query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let Some((from, last)) = sql_range(query.range) else {
            return Ok(Vec::new());
        };
        let metric = query.metric.as_ref();
        let rows = self.with_reader("query audit log", |c| {
            c.query(
                "SELECT id, ts, user_name, group_id, edge_node_id, device_id, metric, value, \
                 outcome, detail FROM audit_log \
                 WHERE ts >= $1 AND ts <= $2 AND ($3::text IS NULL OR user_name = $3) \
                 AND ($4::text IS NULL OR (group_id = $4 AND edge_node_id = $5 \
                      AND device_id = $6 AND metric = $7)) \
                 ORDER BY id DESC LIMIT $8",
                &[
                    &from,
                    &last,
                    &query.user,
                    &metric.map(|m| m.group_id.as_str()),
                    &metric.map(|m| m.edge_node_id.as_str()),
                    &metric.map(|m| m.device_id.as_deref().unwrap_or("")),
                    &metric.map(|m| m.name.as_str()),
                    &i64::from(query.limit),
                ],
            )
        })?;
        rows.iter().map(|r| self.row_to_audit(r)).collect()
    }

    /// Writes the metrics registered since the last batch.
    fn checkpoint(&self) -> Result<()> {
        self.append(&[]).map(|_| ())
    }
}
