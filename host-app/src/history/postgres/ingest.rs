//! A sample batch into `samples`, exactly once per (metric, ts), at close to the speed of a
//! raw COPY of the same rows (measured in BENCHMARKS.md, "host history in PostgreSQL"):
//! - the batch is reduced to one sample per (metric, ts) and sorted by that key, so the
//!   primary key is probed and extended in key order, each of its pages visited once per
//!   batch (in arrival order, one timestamp of every metric after another, each row
//!   probed a page far from the last: the largest single cost, measured);
//! - live data is new data: a batch first goes by binary COPY straight into `samples`
//!   (the cheapest way in: the server inserts rows in bulk). The primary key refuses the
//!   whole COPY if one of its samples is stored already (a replay, a window re-sent, a
//!   STALE marker to replace), and nothing of it stays;
//! - then, and for the batches after it until one comes with nothing stored (replays run
//!   over many batches), the rows go by COPY into a staging table of the session
//!   (temporary: no WAL, emptied at commit), and one `INSERT ... SELECT ... ON CONFLICT`
//!   moves them into `samples`, each row checked; its row count is the number accepted;
//! - either way in one transaction with the metric rows registered since the last batch.

use std::collections::HashSet;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, SimpleQueryMessage, Transaction};

use super::{KIND_BOOL, KIND_BYTES, KIND_F64, KIND_I64, KIND_NULL, KIND_TEXT, KIND_U64};
use crate::history::types::{MetricInfo, Quality, Sample, SampleValue};

/// The staging table, made by the first checked batch of each session (in the batch's
/// transaction, so a pooler that hands transactions to other sessions still finds one),
/// without the notice that it exists already.
const CREATE_STAGE: &str = "SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS history_stage (LIKE samples) ON COMMIT DELETE ROWS";

const COPY_SAMPLES: &str =
    "COPY samples (metric, ts, kind, quality, historical, num, i, t, b) FROM STDIN BINARY";

const COPY_STAGE: &str = "COPY pg_temp.history_stage \
    (metric, ts, kind, quality, historical, num, i, t, b) FROM STDIN BINARY";

const COLUMN_TYPES: [Type; 9] = [
    Type::INT8,
    Type::INT8,
    Type::INT2,
    Type::INT4,
    Type::BOOL,
    Type::FLOAT8,
    Type::INT8,
    Type::TEXT,
    Type::BYTEA,
];

/// The staged batch into `samples`; its row count (inserted or replaced) is how many
/// samples were accepted. The host's STALE marker (quality 500) is replaced by a
/// measurement; anything else stays.
const INSERT_STAGED: &str = "
INSERT INTO samples (metric, ts, kind, quality, historical, num, i, t, b)
SELECT metric, ts, kind, quality, historical, num, i, t, b FROM pg_temp.history_stage
ON CONFLICT (metric, ts) DO UPDATE SET
    kind = EXCLUDED.kind, quality = EXCLUDED.quality, historical = EXCLUDED.historical,
    num = EXCLUDED.num, i = EXCLUDED.i, t = EXCLUDED.t, b = EXCLUDED.b
WHERE samples.quality = 500 AND EXCLUDED.quality <> 500";

/// Which of the listed (metric, ts) rows are stored.
const STORED_AMONG: &str = "
SELECT u.metric, u.ts FROM unnest($1::int8[], $2::int8[]) AS u(metric, ts)
JOIN samples s ON s.metric = u.metric AND s.ts = u.ts";

const UPSERT_METRICS: &str = "
INSERT INTO metrics (id, group_id, edge_node_id, device_id, name, datatype, units)
SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[])
ON CONFLICT (id) DO UPDATE SET datatype = EXCLUDED.datatype, units = EXCLUDED.units
WHERE (metrics.group_id, metrics.edge_node_id, metrics.device_id, metrics.name)
    = (EXCLUDED.group_id, EXCLUDED.edge_node_id, EXCLUDED.device_id, EXCLUDED.name)
RETURNING id";

/// One sample to store, and whether it counts twice: it replaced a STALE marker of the
/// same (metric, ts) earlier in the batch, which counts too where no row was there before.
pub(super) type Row<'a> = (&'a Sample, bool);

/// Per (metric, ts) of a batch, the one sample to send, sorted by that key: the first
/// measurement if any, else the first sample. That is what storing them one by one leaves,
/// whatever was stored before (a marker is replaced only by a measurement, nothing else by
/// anything). Also returns how many samples were refused (timestamp beyond the store).
pub(super) fn reduce(samples: &[Sample]) -> (Vec<Row<'_>>, u64) {
    let mut sorted: Vec<&Sample> = Vec::with_capacity(samples.len());
    let mut rejected = 0;
    for sample in samples {
        if i64::try_from(sample.ts).is_err() {
            tracing::warn!(metric = %sample.metric, ts = sample.ts, "sample timestamp out of range; not stored");
            rejected += 1;
            continue;
        }
        sorted.push(sample);
    }
    // Stable: the copies of one (metric, ts) stay in arrival order. The writer sends its
    // commits sorted already, which this sort only checks.
    sorted.sort_by_key(|s| (s.metric, s.ts));
    let rows = sorted
        .chunk_by(|a, b| (a.metric, a.ts) == (b.metric, b.ts))
        .map(|copies| {
            let first = copies[0];
            match copies.iter().find(|s| s.quality != Quality::STALE) {
                Some(measured) => (*measured, first.quality == Quality::STALE),
                None => (first, false),
            }
        })
        .collect();
    (rows, rejected)
}

/// What a batch did.
pub(super) struct Written {
    /// Samples accepted (see [`Row`]).
    pub accepted: u64,
    /// Nothing of the batch was stored before: the next may go straight in.
    pub all_new: bool,
}

/// One transaction: the pending metric rows, then the batch; straight into `samples` when
/// `direct`, else (or when a sample of it is stored already) each row checked. Returns
/// what it did, or why the metric rows were refused.
pub(super) fn write(
    client: &mut Client,
    metrics: &[MetricInfo],
    batch: &[Row<'_>],
    direct: bool,
) -> Result<Result<Written, String>, postgres::Error> {
    if direct || batch.is_empty() {
        let mut tx = client.transaction()?;
        if let Err(refused) = write_metrics(&mut tx, metrics)? {
            return Ok(Err(refused));
        }
        let copied = if batch.is_empty() {
            Ok(())
        } else {
            copy(&mut tx, COPY_SAMPLES, batch)
        };
        match copied {
            Ok(()) => {
                tx.commit()?;
                // Nothing was there: a marker replaced inside the batch counts twice.
                let twice = batch.iter().filter(|(_, bonus)| *bonus).count();
                return Ok(Ok(Written {
                    accepted: (batch.len() + twice) as u64,
                    all_new: true,
                }));
            }
            // Rolled back when `tx` drops.
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => return Err(e),
        }
    }
    write_checked(client, metrics, batch)
}

/// The batch through the staging table, each row checked against what is stored.
fn write_checked(
    client: &mut Client,
    metrics: &[MetricInfo],
    batch: &[Row<'_>],
) -> Result<Result<Written, String>, postgres::Error> {
    let mut tx = client.transaction()?;
    if let Err(refused) = write_metrics(&mut tx, metrics)? {
        return Ok(Err(refused));
    }
    // A marker replaced inside the batch counts twice only where no row was there (rare:
    // asked only then).
    let mut twice: HashSet<(i64, i64)> = batch
        .iter()
        .filter(|(_, bonus)| *bonus)
        .map(|(s, _)| (s.metric.0, s.ts as i64))
        .collect();
    if !twice.is_empty() {
        let (metric, ts): (Vec<i64>, Vec<i64>) = twice.iter().copied().unzip();
        for row in tx.query(STORED_AMONG, &[&metric, &ts])? {
            twice.remove(&(row.get(0), row.get(1)));
        }
    }
    tx.batch_execute(CREATE_STAGE)?;
    copy(&mut tx, COPY_STAGE, batch)?;
    let (accepted, all_new) = if twice.is_empty() {
        // The usual batch: the row count says it all; a simple query, nothing to prepare.
        let stored = tx
            .simple_query(INSERT_STAGED)?
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(0);
        (stored, stored == batch.len() as u64)
    } else {
        let stored = tx.query(&format!("{INSERT_STAGED} RETURNING metric, ts"), &[])?;
        let again = stored
            .iter()
            .filter(|r| twice.contains(&(r.get(0), r.get(1))))
            .count();
        ((stored.len() + again) as u64, stored.len() == batch.len())
    };
    tx.commit()?;
    Ok(Ok(Written { accepted, all_new }))
}

fn write_metrics(
    tx: &mut Transaction<'_>,
    metrics: &[MetricInfo],
) -> Result<Result<(), String>, postgres::Error> {
    if metrics.is_empty() {
        return Ok(Ok(()));
    }
    let ids: Vec<i64> = metrics.iter().map(|m| m.id.0).collect();
    let text = |f: fn(&MetricInfo) -> &str| metrics.iter().map(f).collect::<Vec<_>>();
    let units: Vec<Option<&str>> = metrics.iter().map(|m| m.meta.units.as_deref()).collect();
    let written = tx.query(
        UPSERT_METRICS,
        &[
            &ids,
            &text(|m| &m.key.group_id),
            &text(|m| &m.key.edge_node_id),
            &text(|m| m.key.device_id.as_deref().unwrap_or("")),
            &text(|m| &m.key.name),
            &text(|m| &m.meta.datatype),
            &units,
        ],
    )?;
    if written.len() == metrics.len() {
        return Ok(Ok(()));
    }
    let done: HashSet<i64> = written.iter().map(|r| r.get(0)).collect();
    Ok(Err(
        match metrics.iter().find(|m| !done.contains(&m.id.0)) {
            Some(m) => format!(
                "metric {} has id {} of another metric in the database",
                infra::logging::Escaped(&m.key.to_string()),
                m.id
            ),
            None => "metric rows not written".to_owned(),
        },
    ))
}

/// The batch by binary COPY, `statement` saying where to.
fn copy(
    tx: &mut Transaction<'_>,
    statement: &str,
    batch: &[Row<'_>],
) -> Result<(), postgres::Error> {
    let mut rows = BinaryCopyInWriter::new(tx.copy_in(statement)?, &COLUMN_TYPES);
    for (sample, _) in batch {
        let (kind, i, t, b) = columns(&sample.value);
        // The trend value (NULL for NaN and non-numbers), and a Double's own value: NaN
        // reads back from a Double kind with no number.
        let num = sample.value.as_f64();
        let row: [&(dyn ToSql + Sync); 9] = [
            &sample.metric.0,
            &(sample.ts as i64),
            &kind,
            &sample.quality.0,
            &sample.is_historical,
            &num,
            &i,
            &t,
            &b,
        ];
        rows.write(&row)?;
    }
    rows.finish()?;
    Ok(())
}

/// A value's kind and its column (besides `num`).
fn columns(value: &SampleValue) -> (i16, Option<i64>, Option<&str>, Option<&[u8]>) {
    match value {
        SampleValue::Null => (KIND_NULL, None, None, None),
        SampleValue::Bool(v) => (KIND_BOOL, Some(i64::from(*v)), None, None),
        SampleValue::I64(v) => (KIND_I64, Some(*v), None, None),
        // The same bits: values above i64::MAX round-trip exactly.
        SampleValue::U64(v) => (KIND_U64, Some(*v as i64), None, None),
        SampleValue::F64(_) => (KIND_F64, None, None, None),
        SampleValue::Text(s) => (KIND_TEXT, None, Some(s), None),
        SampleValue::Bytes(v) => (KIND_BYTES, None, None, Some(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::types::MetricId;

    fn s(metric: i64, ts: u64, quality: Quality, v: i64) -> Sample {
        Sample {
            metric: MetricId(metric),
            ts,
            value: SampleValue::I64(v),
            quality,
            is_historical: false,
        }
    }

    #[test]
    fn a_batch_keeps_the_first_measurement_per_key_in_key_order_and_flags_a_replaced_marker() {
        let batch = [
            s(2, 1, Quality::GOOD, 7),
            s(1, 2, Quality::GOOD, 4),
            s(1, 1, Quality::STALE, 1),
            s(1, 1, Quality::STALE, 0),
            s(1, 1, Quality::GOOD, 2),
            s(1, 1, Quality::GOOD, 3),
            s(1, 2, Quality::STALE, 5),
            s(1, 3, Quality::STALE, 8),
            s(1, 3, Quality::STALE, 9),
            s(1, u64::MAX, Quality::GOOD, 6),
        ];
        let (out, rejected) = reduce(&batch);
        assert_eq!(rejected, 1);
        let got: Vec<(i64, u64, i64, bool)> = out
            .iter()
            .map(|(s, b)| match s.value {
                SampleValue::I64(v) => (s.metric.0, s.ts, v, *b),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 1, 2, true),
                (1, 2, 4, false),
                (1, 3, 8, false),
                (2, 1, 7, false)
            ]
        );
    }
}
