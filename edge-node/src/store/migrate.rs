//! Converts a file of the first store layout (schema version 1: one row per sample in
//! `samples`, one per written-ahead sample in `sent`) to the current one, in one
//! transaction, then rebuilds it with the current page size. The queued samples keep
//! their order; the written-ahead ones (of a process that died before the link confirmed
//! them) join the queue after them, as opening the first layout would have done.

use rusqlite::Connection;
use tracing::{info, warn};

use super::codec::{self, StoredSample};
use super::queue::{PAGE_SIZE, SCHEMA_VERSION};
use super::table::insert_runs;
use crate::modbus::DeviceId;

/// Converts the first layout's tables (the current schema already created beside them);
/// returns how many written-ahead samples were queued.
pub(crate) fn from_first_layout(conn: &mut Connection) -> rusqlite::Result<u64> {
    let queued = read_rows(
        conn,
        "SELECT ts, device, alias, value FROM samples ORDER BY ts, seq",
    )?;
    let sent = read_rows(
        conn,
        "SELECT ts, device, alias, value FROM sent ORDER BY mark",
    )?;
    let tx = conn.transaction()?;
    let mut blob = Vec::new();
    let seq = insert_runs(&tx, &queued, 0, &mut blob)?;
    insert_runs(&tx, &sent, seq, &mut blob)?;
    tx.execute_batch("DROP TABLE samples; DROP TABLE sent;")?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    // The page size of a WAL file changes only through a rebuild outside WAL mode.
    conn.query_row("PRAGMA journal_mode = DELETE", [], |r| {
        r.get::<_, String>(0)
    })?;
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.execute_batch("VACUUM")?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    info!(
        queued = queued.len(),
        written_ahead = sent.len(),
        "store file of the first layout converted"
    );
    Ok(sent.len() as u64)
}

/// The samples of a first-layout table, in the query's order; a value that does not
/// decode is left out (it could not be replayed either).
fn read_rows(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<StoredSample>> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let ts: i64 = row.get(0)?;
        let device: Option<u32> = row.get(1)?;
        let alias: i64 = row.get(2)?;
        match codec::decode(row.get_ref(3)?.as_blob().unwrap_or(&[])) {
            Ok((value, quality)) => out.push(StoredSample {
                device: device.map(DeviceId),
                alias: alias as u64,
                timestamp_ms: ts as u64,
                value,
                quality,
            }),
            Err(e) => warn!(ts, alias, error = %e, "stored value does not decode: left out"),
        }
    }
    Ok(out)
}
