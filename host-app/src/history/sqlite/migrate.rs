//! Conversion of a file of an earlier layout at open, in one transaction: either every
//! sample is converted and the old tables are gone, or the file is left as it was.
//! - schema version 1: a row per sample in `samples`, and `samples_recent` for the last
//!   minute: every sample is encoded into chunks;
//! - schema version 2: a chunk in one row whatever its size: each row becomes part 0 of
//!   its chunk as it is (parts written from then on are cut to fit a page).

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::{codec, schema, sql_error, window_of, write_parts};
use crate::history::error::{HistoryError, Result};
use crate::history::types::{MetricId, Quality, Sample};

/// The first layout: a row per sample.
pub(super) const ROWS_VERSION: i64 = 1;

/// Tables a version 1 file must have.
pub(super) const ROWS_TABLES: [&str; 4] = ["metrics", "samples", "samples_recent", "audit_log"];

/// Chunks in one row each.
pub(super) const WHOLE_CHUNKS_VERSION: i64 = 2;

/// Tables a version 2 file must have.
pub(super) const WHOLE_CHUNKS_TABLES: [&str; 4] =
    ["metrics", "sample_chunks", "chunk_windows", "audit_log"];

/// Makes every row of a version 2 `sample_chunks` part 0 of its chunk.
pub(super) fn to_parts(path: &Path, conn: &mut Connection) -> Result<()> {
    let sql = |what: &'static str| move |e| sql_error(path, what, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("begin conversion"))?;
    tx.execute_batch("ALTER TABLE sample_chunks RENAME TO sample_chunks_whole;")
        .map_err(sql("rename the old chunk table"))?;
    tx.execute_batch(schema::CREATE_SAMPLE_CHUNKS)
        .map_err(sql("create the chunk table"))?;
    let chunks = tx
        .execute(
            "INSERT INTO sample_chunks (win, metric_id, part, first_ts, last_ts, count, data) \
             SELECT win, metric_id, 0, first_ts, last_ts, count, data FROM sample_chunks_whole",
            [],
        )
        .map_err(sql("copy chunks"))?;
    tx.execute_batch(&format!(
        "DROP TABLE sample_chunks_whole; PRAGMA user_version = {};",
        schema::SCHEMA_VERSION
    ))
    .map_err(sql("drop the old chunk table"))?;
    tx.commit().map_err(sql("commit conversion"))?;
    tracing::info!(path = %path.display(), chunks, "history chunks converted to parts");
    Ok(())
}

/// Converts every sample of a version 1 file into chunks and drops the old tables.
pub(super) fn to_chunks(path: &Path, conn: &mut Connection) -> Result<()> {
    let sql = |what: &'static str| move |e| sql_error(path, what, e);
    let started = std::time::Instant::now();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("begin conversion"))?;
    tx.execute_batch(schema::CREATE_SAMPLE_CHUNKS)
        .and_then(|()| tx.execute_batch(schema::CREATE_CHUNK_WINDOWS))
        .map_err(sql("create chunk tables"))?;
    // A (metric, ts) was in at most one of the two tables; fold as the old layout did.
    tx.execute(
        "INSERT OR IGNORE INTO samples (metric_id, ts, kind, value, quality, is_historical) \
         SELECT metric_id, ts, kind, value, quality, is_historical FROM samples_recent",
        [],
    )
    .map_err(sql("fold recent samples"))?;
    let mut converted = 0u64;
    {
        let mut rows_stmt = tx
            .prepare(
                "SELECT metric_id, ts, kind, value, quality, is_historical FROM samples \
                 ORDER BY metric_id, ts",
            )
            .map_err(sql("read samples"))?;
        let mut rows = rows_stmt.query([]).map_err(sql("read samples"))?;
        let mut run: Vec<Sample> = Vec::new();
        let mut bounds: Option<(MetricId, i64, i64)> = None;
        let flush =
            |run: &mut Vec<Sample>, bounds: &mut Option<(MetricId, i64, i64)>| -> Result<()> {
                let Some(first) = run.first() else {
                    return Ok(());
                };
                let (metric, win) = (first.metric, window_of(first.ts));
                write_parts(&tx, win, metric, 0, run).map_err(sql("write chunk"))?;
                *bounds = match *bounds {
                    Some((m, lo, _)) if m == metric => Some((m, lo, win)),
                    Some((m, lo, hi)) => {
                        write_bounds(&tx, m, lo, hi).map_err(sql("write chunk windows"))?;
                        Some((metric, win, win))
                    }
                    None => Some((metric, win, win)),
                };
                run.clear();
                Ok(())
            };
        while let Some(row) = rows.next().map_err(sql("read samples"))? {
            let metric = MetricId(row.get(0).map_err(sql("read samples"))?);
            let ts: i64 = row.get(1).map_err(sql("read samples"))?;
            let bad = |reason: String| HistoryError::BadRow {
                path: path.to_path_buf(),
                metric,
                ts,
                reason,
            };
            let kind: i64 = row.get(2).map_err(sql("read samples"))?;
            let value =
                codec::decode(kind, row.get_ref(3).map_err(sql("read samples"))?).map_err(bad)?;
            let quality: i64 = row.get(4).map_err(sql("read samples"))?;
            let sample = Sample {
                metric,
                ts: u64::try_from(ts).map_err(|_| bad("negative timestamp".into()))?,
                value,
                quality: Quality(
                    i32::try_from(quality).map_err(|_| bad(format!("quality {quality}")))?,
                ),
                is_historical: row.get(5).map_err(sql("read samples"))?,
            };
            if run
                .first()
                .is_some_and(|f| f.metric != metric || window_of(f.ts) != window_of(sample.ts))
            {
                flush(&mut run, &mut bounds)?;
            }
            run.push(sample);
            converted += 1;
        }
        flush(&mut run, &mut bounds)?;
        if let Some((m, lo, hi)) = bounds {
            write_bounds(&tx, m, lo, hi).map_err(sql("write chunk windows"))?;
        }
    }
    tx.execute_batch(&format!(
        "DROP TABLE samples; DROP TABLE samples_recent; PRAGMA user_version = {};",
        schema::SCHEMA_VERSION
    ))
    .map_err(sql("drop the old tables"))?;
    tx.commit().map_err(sql("commit conversion"))?;
    tracing::info!(path = %path.display(), samples = converted, elapsed_ms = started.elapsed().as_millis() as u64, "history converted to chunks");
    Ok(())
}

fn write_bounds(
    conn: &Connection,
    metric: MetricId,
    first: i64,
    last: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO chunk_windows (metric_id, first_win, last_win) VALUES (?1, ?2, ?3)",
        rusqlite::params![metric.0, first, last],
    )?;
    Ok(())
}
