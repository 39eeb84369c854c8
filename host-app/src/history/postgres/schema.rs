//! The tables, created or checked at open under an advisory lock, so host instances that
//! start at once against one database never race on DDL; and the partitions of `samples`.
//!
//! `samples` is partitioned by range of `ts` (ms since the epoch) into fixed-width
//! partitions named `samples_p<start>`. Partitions are created when a batch needs one, and
//! ahead of the clock by each retention run; the width is fixed when the database is
//! created (kept in `history_schema`), so every instance cuts time the same way.

use postgres::{Client, GenericClient};

/// This layout; a database written by a newer one is refused.
pub(super) const VERSION: i32 = 1;

/// Advisory lock keys ("SPBH" + a number): schema creation, partition DDL.
const SCHEMA_LOCK: i64 = 0x5350_4248_0000_0001;
const PARTITION_LOCK: i64 = 0x5350_4248_0000_0002;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS history_schema (
    version integer NOT NULL,
    partition_ms bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    id bigint PRIMARY KEY,
    group_id text NOT NULL,
    edge_node_id text NOT NULL,
    device_id text NOT NULL,
    name text NOT NULL,
    datatype text NOT NULL,
    units text,
    UNIQUE (group_id, edge_node_id, device_id, name)
);
CREATE TABLE IF NOT EXISTS samples (
    metric bigint NOT NULL,
    ts bigint NOT NULL,
    kind smallint NOT NULL,
    quality integer NOT NULL,
    historical boolean NOT NULL,
    num double precision,
    i bigint,
    t text,
    b bytea,
    PRIMARY KEY (metric, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE IF NOT EXISTS audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts bigint NOT NULL,
    user_name text NOT NULL,
    group_id text NOT NULL,
    edge_node_id text NOT NULL,
    device_id text NOT NULL,
    metric text NOT NULL,
    value text NOT NULL,
    outcome text NOT NULL,
    detail text
);
CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts);
";

#[derive(Debug, thiserror::Error)]
pub(super) enum SchemaError {
    #[error(transparent)]
    Sql(#[from] postgres::Error),
    #[error("{0}")]
    Foreign(String),
}

/// Creates the tables if absent and returns the partition width in use (the one stored,
/// whatever `partition_ms` asks, once the database exists).
pub(super) fn prepare(client: &mut Client, partition_ms: i64) -> Result<i64, SchemaError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    tx.batch_execute(TABLES)?;
    let kind: i8 = tx
        .query_one(
            "SELECT relkind FROM pg_class WHERE oid = 'samples'::regclass",
            &[],
        )?
        .get(0);
    if kind != b'p' as i8 {
        return Err(SchemaError::Foreign(
            "a table `samples` of another program is there (not partitioned)".into(),
        ));
    }
    let stored = tx.query_opt("SELECT version, partition_ms FROM history_schema", &[])?;
    let width = match stored {
        Some(row) => {
            let (version, width): (i32, i64) = (row.get(0), row.get(1));
            if version > VERSION {
                return Err(SchemaError::Foreign(format!(
                    "written by a newer layout ({version}; this build reads {VERSION})"
                )));
            }
            if width <= 0 {
                return Err(SchemaError::Foreign(format!("partition width {width} ms")));
            }
            if width != partition_ms {
                tracing::warn!(
                    configured_ms = partition_ms,
                    stored_ms = width,
                    "history.partition_hours differs from the database's; the database's applies"
                );
            }
            width
        }
        None => {
            tx.execute(
                "INSERT INTO history_schema (version, partition_ms) VALUES ($1, $2)",
                &[&VERSION, &partition_ms],
            )?;
            partition_ms
        }
    };
    tx.commit()?;
    Ok(width)
}

/// Start of the partition holding `ts`.
pub(super) fn partition_of(ts: i64, width: i64) -> i64 {
    ts - ts.rem_euclid(width)
}

fn name(start: i64) -> String {
    format!("samples_p{start}")
}

/// The partitions of `samples` there now, by start, with their names.
pub(super) fn partitions(client: &mut impl GenericClient) -> Result<Vec<i64>, postgres::Error> {
    let rows = client.query(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'samples'::regclass",
        &[],
    )?;
    let mut starts: Vec<i64> = rows
        .iter()
        .filter_map(|r| {
            r.get::<_, String>(0)
                .strip_prefix("samples_p")?
                .parse()
                .ok()
        })
        .collect();
    starts.sort_unstable();
    Ok(starts)
}

/// Creates the partitions starting at `starts` that are missing (another instance may
/// have made them meanwhile: the lock makes the check and the creation one step).
pub(super) fn create_partitions(
    client: &mut Client,
    starts: &[i64],
    width: i64,
) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])?;
    let there = partitions(&mut tx)?;
    for &start in starts {
        if there.binary_search(&start).is_ok() {
            continue;
        }
        let upper = match start.checked_add(width) {
            Some(end) => end.to_string(),
            None => "MAXVALUE".to_owned(),
        };
        tx.batch_execute(&format!(
            "CREATE TABLE {} PARTITION OF samples FOR VALUES FROM ({start}) TO ({upper})",
            name(start)
        ))?;
    }
    tx.commit()
}

/// Drops the partition starting at `start`; returns the rows it held.
pub(super) fn drop_partition(client: &mut Client, start: i64) -> Result<u64, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])?;
    if partitions(&mut tx)?.binary_search(&start).is_err() {
        return Ok(0); // another instance dropped it
    }
    let rows: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {}", name(start)), &[])?
        .get(0);
    tx.batch_execute(&format!("DROP TABLE {}", name(start)))?;
    tx.commit()?;
    Ok(rows as u64)
}

/// Whether the partition starting at `start` holds a sample.
pub(super) fn has_rows(client: &mut Client, start: i64) -> Result<bool, postgres::Error> {
    Ok(client
        .query_one(
            &format!("SELECT EXISTS (SELECT 1 FROM {})", name(start)),
            &[],
        )?
        .get(0))
}

/// Bytes the samples take on disk, partition by partition (oldest first), and the whole
/// store (samples, metrics, audit log).
pub(super) fn sizes(client: &mut Client) -> Result<(Vec<(i64, u64)>, u64), postgres::Error> {
    let mut out = Vec::new();
    for start in partitions(client)? {
        let bytes: i64 = client
            .query_one(
                "SELECT pg_total_relation_size($1::text::regclass)",
                &[&name(start)],
            )?
            .get(0);
        out.push((start, bytes as u64));
    }
    let rest: i64 = client
        .query_one(
            "SELECT pg_total_relation_size('metrics') + pg_total_relation_size('audit_log') \
             + pg_total_relation_size('history_schema')",
            &[],
        )?
        .get(0);
    let total = out.iter().map(|(_, b)| b).sum::<u64>() + rest as u64;
    Ok((out, total))
}
