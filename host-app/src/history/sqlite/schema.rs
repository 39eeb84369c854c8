//! Schema and connection settings of the SQLite history database.

use rusqlite::Connection;

/// Written to `PRAGMA user_version` when the schema is created. Version 1 kept a row per
/// sample (`samples`, `samples_recent`), version 2 a chunk in one row whatever its size;
/// `migrate` converts such files at open.
pub(super) const SCHEMA_VERSION: i64 = 3;

/// Each chunk holds one metric's samples of one window of this many milliseconds.
pub(super) const WINDOW_MS: i64 = 10 * 60 * 1000;

/// Matches the flash page and filesystem block of typical SD cards and eMMC.
pub(super) const PAGE_SIZE: u32 = 4096;

/// Most encoded bytes in one chunk part: with its key and counters the row stays under
/// the 1,002 bytes a 4 KiB page keeps of a WITHOUT ROWID row before it spills to an
/// overflow page (a chunk of 2 KB in one row took a whole overflow page, most of it empty).
pub(super) const PART_BYTES: usize = 944;

/// Writer page cache (KiB): closing a window writes ~1,000 chunks and merges late samples.
pub(super) const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// Reader page cache (KiB) per connection: a 24-hour trend of one metric is ~0.5 MB.
pub(super) const READER_CACHE_KIB: i64 = 2 * 1024;

/// Checkpoints normally run on their own thread (`checkpoint`); the writer checkpoints
/// itself only if the WAL reaches this many pages (64 MiB), which bounds the WAL.
pub(super) const WAL_BACKSTOP_PAGES: i64 = 16 * 1024;

/// After a checkpoint the WAL file is truncated to at most this many bytes.
pub(super) const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// How long a connection waits for a lock held by another process before failing.
pub(super) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `device_id` is `''` for an edge node's own metrics: NULL would defeat the UNIQUE key.
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

/// `sample_chunks` holds closed windows: per (window, metric) the window's samples of that
/// metric encoded by `chunk`, in parts of at most [`PART_BYTES`] numbered in time order.
/// Keyed by window first, so closing a window appends its chunks at the end of the tree
/// and writes each page about once (flash wear on gateways); a trend of one metric is one
/// key range per window. Samples written to a window after it was written (an early fold,
/// see `recent`) add parts after the last. The samples of the open window live in memory
/// and in the recent log beside the file (see `recent`).
pub(super) const CREATE_SAMPLE_CHUNKS: &str = "
CREATE TABLE sample_chunks (
    win           INTEGER NOT NULL,
    metric_id     INTEGER NOT NULL,
    part          INTEGER NOT NULL,
    first_ts      INTEGER NOT NULL,
    last_ts       INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    data          BLOB NOT NULL,
    PRIMARY KEY (win, metric_id, part)
) STRICT, WITHOUT ROWID;
";

/// `chunk_windows` bounds each metric's windows, so queries and `latest` know where to look
/// without scanning other metrics' chunks.
pub(super) const CREATE_CHUNK_WINDOWS: &str = "
CREATE TABLE chunk_windows (
    metric_id     INTEGER PRIMARY KEY,
    first_win     INTEGER NOT NULL,
    last_win      INTEGER NOT NULL
) STRICT;
";

/// Tables a history database must have.
pub(super) const TABLES: [&str; 4] = ["metrics", "sample_chunks", "chunk_windows", "audit_log"];

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
