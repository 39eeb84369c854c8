//! Schema and connection settings of the SQLite history database.

use rusqlite::Connection;

/// Written to `PRAGMA user_version` when the schema is created.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// Matches the flash page and filesystem block of typical SD cards and eMMC.
pub(super) const PAGE_SIZE: u32 = 4096;

/// Writer page cache (KiB). Ingest from 1,000 metrics touches one leaf page per metric per
/// batch, so the cache holds those ~4 MB of leaves plus interior pages.
pub(super) const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// Reader page cache (KiB) per connection: a 24-hour trend of one metric is ~2.5 MB.
pub(super) const READER_CACHE_KIB: i64 = 2 * 1024;

/// Checkpoints normally run on their own thread (`checkpoint`); the writer checkpoints
/// itself only if the WAL reaches this many pages (64 MiB), which bounds the WAL.
pub(super) const WAL_BACKSTOP_PAGES: i64 = 16 * 1024;

/// After a checkpoint the WAL file is truncated to at most this many bytes.
pub(super) const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// How long a connection waits for a lock held by another process before failing.
pub(super) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `device_id` is `''` for an edge node's own metrics: NULL would defeat the UNIQUE key.
/// New samples land in `samples_recent`, keyed by time: live data appends to its end, so a
/// commit writes a few pages instead of one page per metric. Every minute (or 64k rows) it
/// is folded into `samples` in key order, one transaction, each metric's pages written
/// once. Very large batches (a flood, a long replay) go straight into `samples` after a
/// fold. A (metric, ts) is in at most one of the two tables.
/// `samples` is clustered on (metric_id, ts) without a rowid: the key *is* the
/// de-duplication (INSERT OR IGNORE), a trend is one contiguous range scan, and no second
/// index is written per sample. `value` is `ANY` in a STRICT table so every type keeps its
/// own storage class; `kind` says how to read it back (see `codec`).
pub(super) const CREATE: &str = "
CREATE TABLE metrics (
    id            INTEGER PRIMARY KEY,
    group_id      TEXT NOT NULL,
    edge_node_id  TEXT NOT NULL,
    device_id     TEXT NOT NULL DEFAULT '',
    name          TEXT NOT NULL,
    datatype      TEXT NOT NULL,
    units         TEXT,
    UNIQUE (group_id, edge_node_id, device_id, name)
) STRICT;

CREATE TABLE samples (
    metric_id     INTEGER NOT NULL,
    ts            INTEGER NOT NULL,
    kind          INTEGER NOT NULL,
    value         ANY,
    quality       INTEGER NOT NULL,
    is_historical INTEGER NOT NULL,
    PRIMARY KEY (metric_id, ts)
) STRICT, WITHOUT ROWID;

CREATE TABLE samples_recent (
    ts            INTEGER NOT NULL,
    metric_id     INTEGER NOT NULL,
    kind          INTEGER NOT NULL,
    value         ANY,
    quality       INTEGER NOT NULL,
    is_historical INTEGER NOT NULL,
    PRIMARY KEY (ts, metric_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY,
    ts            INTEGER NOT NULL,
    user          TEXT NOT NULL,
    group_id      TEXT NOT NULL,
    edge_node_id  TEXT NOT NULL,
    device_id     TEXT NOT NULL DEFAULT '',
    metric        TEXT NOT NULL,
    value         TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    detail        TEXT
) STRICT;

CREATE INDEX audit_log_ts ON audit_log (ts);
";

/// Tables a history database must have.
pub(super) const TABLES: [&str; 4] = ["metrics", "samples", "samples_recent", "audit_log"];

/// Settings that only take effect before the first table is written: fixed page size, and
/// incremental auto-vacuum so retention can hand freed pages back to the filesystem.
pub(super) fn set_new_file_layout(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
}

/// Per-connection settings of the writer.
pub(super) fn configure_writer(conn: &Connection, synchronous: &str) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)?;
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

/// Per-connection settings of a reader.
pub(super) fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "query_only", true)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}
