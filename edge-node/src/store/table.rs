//! The queue table `chunks`: rows of samples keyed by (original timestamp, sequence),
//! the samples of a row removed one by one in its `gone` bitmap. What reads, inserts and
//! removes rows, and the segment cursor the table keeps (see [`segments`](super::segments)).

use std::collections::VecDeque;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::aliases::TagAliases;
use super::codec::{self, CodecError, StoredSample};
use super::queue::{BatchId, Pos, RUN_BYTES, current_device};

/// Rows read per query by a [`TableReader`].
const PAGE_ROWS: i64 = 64;

/// Splits `samples` into queue rows: one per timestamp (input order kept within it),
/// split at [`RUN_BYTES`]. Calls `f(timestamp, the row's samples, its run, its stored
/// bytes)` for each, in timestamp order.
pub(crate) fn for_each_run<E>(
    samples: &[StoredSample],
    blob: &mut Vec<u8>,
    mut f: impl FnMut(u64, &[&StoredSample], &[u8], usize) -> Result<(), E>,
) -> Result<(), E> {
    let mut order: Vec<&StoredSample> = samples.iter().collect();
    // Stable: samples of one timestamp stay in input order.
    order.sort_by_key(|s| s.timestamp_ms);
    let mut start = 0;
    while start < order.len() {
        let ts = order[start].timestamp_ms;
        let (mut end, mut alias, mut bytes) = (start, 0, 0);
        blob.clear();
        while end < order.len() {
            let s = order[end];
            if s.timestamp_ms != ts
                || (end > start && blob.len() + codec::run_len(ts, alias, s) > RUN_BYTES)
            {
                break;
            }
            codec::encode_one(ts, &mut alias, s, blob);
            bytes += s.stored_len();
            end += 1;
        }
        f(ts, &order[start..end], blob, bytes)?;
        start = end;
    }
    Ok(())
}

/// Writes `samples` as queue rows from sequence `seq` on (see [`for_each_run`]). Returns
/// the next free sequence.
pub(crate) fn insert_runs(
    tx: &Transaction<'_>,
    samples: &[StoredSample],
    mut seq: i64,
    blob: &mut Vec<u8>,
) -> rusqlite::Result<i64> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO chunks (ts, seq, samples, gone, count, bytes) VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
    )?;
    for_each_run(samples, blob, |ts, row, blob, bytes| {
        insert.execute(params![
            ts as i64,
            seq,
            blob,
            row.len() as i64,
            bytes as i64
        ])?;
        seq += 1;
        Ok::<_, rusqlite::Error>(())
    })?;
    Ok(seq)
}

/// Writes one row as it was elsewhere (a segment's record), with its `gone` bitmap.
pub(crate) fn insert_row(
    tx: &Transaction<'_>,
    (ts, seq): (i64, i64),
    samples: &[StoredSample],
    gone: &[u8],
    blob: &mut Vec<u8>,
) -> rusqlite::Result<()> {
    blob.clear();
    codec::encode_run(ts as u64, samples, blob);
    let (mut count, mut bytes) = (0i64, 0i64);
    for (k, s) in samples.iter().enumerate() {
        if !is_gone(gone, k) {
            count += 1;
            bytes += s.stored_len() as i64;
        }
    }
    if count == 0 {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO chunks (ts, seq, samples, gone, count, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![ts, seq, &blob[..], gone, count, bytes])
    .map(drop)
}

/// The segment cursor the table keeps (see [`segments`](super::segments)).
pub(crate) fn load_cursor(conn: &Connection) -> rusqlite::Result<Option<Pos>> {
    conn.query_row(
        "SELECT ts, seq, k FROM segment_cursor WHERE id = 0",
        [],
        |r| {
            Ok(Pos {
                ts: r.get(0)?,
                seq: r.get(1)?,
                k: r.get(2)?,
            })
        },
    )
    .optional()
}

pub(crate) fn save_cursor(tx: &Transaction<'_>, pos: Pos) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO segment_cursor (id, ts, seq, k) VALUES (0, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET ts = excluded.ts, seq = excluded.seq, k = excluded.k",
    )?
    .execute(params![pos.ts, pos.seq, pos.k])
    .map(drop)
}

/// A sample of the table, or a row that does not decode.
pub(crate) enum TableItem {
    Sample(Pos, StoredSample),
    Undecodable {
        first: Pos,
        last: Pos,
        bytes: usize,
        error: CodecError,
    },
}

impl TableItem {
    pub(crate) fn pos(&self) -> Pos {
        match self {
            TableItem::Sample(pos, _) => *pos,
            TableItem::Undecodable { first, .. } => *first,
        }
    }
}

/// The table's samples not gone, after a place, in queue order, read a page of rows at
/// a time.
pub(crate) struct TableReader<'c> {
    conn: &'c Connection,
    after: Option<Pos>,
    /// Rows after this key are still to read.
    key: (i64, i64),
    items: VecDeque<TableItem>,
    done: bool,
}

impl<'c> TableReader<'c> {
    pub(crate) fn new(conn: &'c Connection, after: Option<Pos>) -> TableReader<'c> {
        TableReader {
            conn,
            after,
            // The row of `after` itself may hold samples after it.
            key: after.map_or((i64::MIN, i64::MIN), |a| (a.ts, a.seq - 1)),
            items: VecDeque::new(),
            done: false,
        }
    }

    pub(crate) fn next(&mut self) -> rusqlite::Result<Option<TableItem>> {
        while self.items.is_empty() && !self.done {
            self.fill()?;
        }
        Ok(self.items.pop_front())
    }

    fn fill(&mut self) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts, seq, samples, gone, bytes FROM chunks WHERE (ts, seq) > (?1, ?2)
             ORDER BY ts, seq LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![self.key.0, self.key.1, PAGE_ROWS])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            n += 1;
            let (ts, seq): (i64, i64) = (row.get(0)?, row.get(1)?);
            self.key = (ts, seq);
            let blob = row.get_ref(2)?.as_blob().unwrap_or(&[]);
            let gone = row
                .get_ref(3)?
                .as_blob_or_null()
                .ok()
                .flatten()
                .unwrap_or(&[]);
            let (first, last) = Pos::row(ts, seq);
            match codec::decode_run(ts as u64, blob) {
                Ok(samples) => {
                    for (k, sample) in samples.into_iter().enumerate() {
                        let pos = Pos {
                            ts,
                            seq,
                            k: k as u32,
                        };
                        if self.after.is_some_and(|a| pos <= a) || is_gone(gone, k) {
                            continue;
                        }
                        self.items.push_back(TableItem::Sample(pos, sample));
                    }
                }
                // A row that does not decode must not block the queue: it goes as a whole.
                Err(error) => {
                    if self.after.is_some_and(|a| first <= a) {
                        continue;
                    }
                    self.items.push_back(TableItem::Undecodable {
                        first,
                        last,
                        bytes: row.get::<_, i64>(4)? as usize,
                        error,
                    });
                }
            }
        }
        self.done = n < PAGE_ROWS;
        Ok(())
    }
}

pub(crate) fn is_gone(gone: &[u8], k: usize) -> bool {
    gone.get(k / 8).is_some_and(|b| b & (1 << (k % 8)) != 0)
}

pub(crate) fn set_gone(gone: &mut Vec<u8>, k: usize) {
    if gone.len() <= k / 8 {
        gone.resize(k / 8 + 1, 0);
    }
    gone[k / 8] |= 1 << (k % 8);
}

/// What an ack or the byte cap does to one row.
enum RowChange {
    Delete {
        ts: i64,
        seq: i64,
    },
    Update {
        ts: i64,
        seq: i64,
        gone: Vec<u8>,
        count: i64,
        bytes: i64,
    },
}

fn apply(tx: &Transaction<'_>, changes: &[RowChange]) -> rusqlite::Result<()> {
    let mut delete = tx.prepare_cached("DELETE FROM chunks WHERE ts = ?1 AND seq = ?2")?;
    let mut update = tx.prepare_cached(
        "UPDATE chunks SET gone = ?3, count = ?4, bytes = ?5 WHERE ts = ?1 AND seq = ?2",
    )?;
    for change in changes {
        match change {
            RowChange::Delete { ts, seq } => delete.execute([ts, seq])?,
            RowChange::Update {
                ts,
                seq,
                gone,
                count,
                bytes,
            } => update.execute(params![ts, seq, gone, count, bytes])?,
        };
    }
    Ok(())
}

/// Marks gone the samples of `id`'s batch still present; returns (samples, bytes).
pub(crate) fn remove_acked(
    tx: &Transaction<'_>,
    id: BatchId,
    resolve: Option<&TagAliases>,
) -> rusqlite::Result<(u64, u64)> {
    remove_where(
        tx,
        (id.first, id.last),
        id.max_seq,
        |first, last| id.first <= first && last <= id.last,
        |pos, s| {
            id.first <= pos
                && pos <= id.last
                && !current_device(resolve, s).is_some_and(|device| id.held.holds(device))
        },
    )
}

/// Removes every sample at or before `bound` (a row that does not decode goes whole when
/// it starts there); returns (samples, bytes).
pub(crate) fn remove_through(tx: &Transaction<'_>, bound: Pos) -> rusqlite::Result<(u64, u64)> {
    let start = Pos::row(i64::MIN, i64::MIN).0;
    remove_where(
        tx,
        (start, bound),
        i64::MAX,
        |_, _| true,
        |pos, _| pos <= bound,
    )
}

/// Marks gone the samples `removes` picks in the rows from `range`'s first to its last
/// (sequences up to `max_seq`), deleting the rows left empty; a row that does not decode
/// goes whole when `whole` picks its (first, last) places. Returns (samples, bytes).
fn remove_where(
    tx: &Transaction<'_>,
    (from, to): (Pos, Pos),
    max_seq: i64,
    whole: impl Fn(Pos, Pos) -> bool,
    removes: impl Fn(Pos, &StoredSample) -> bool,
) -> rusqlite::Result<(u64, u64)> {
    let mut changes = Vec::new();
    let (mut n, mut freed) = (0u64, 0u64);
    {
        let mut stmt = tx.prepare_cached(
            "SELECT ts, seq, samples, gone, count, bytes FROM chunks
             WHERE (ts, seq) >= (?1, ?2) AND (ts, seq) <= (?3, ?4) AND seq <= ?5
             ORDER BY ts, seq",
        )?;
        let mut rows = stmt.query(params![from.ts, from.seq, to.ts, to.seq, max_seq])?;
        while let Some(row) = rows.next()? {
            let (ts, seq): (i64, i64) = (row.get(0)?, row.get(1)?);
            let count: i64 = row.get(4)?;
            let bytes: i64 = row.get(5)?;
            let (row_first, row_last) = Pos::row(ts, seq);
            let blob = row.get_ref(2)?.as_blob().unwrap_or(&[]);
            let Ok(samples) = codec::decode_run(ts as u64, blob) else {
                if whole(row_first, row_last) {
                    n += count as u64;
                    freed += bytes as u64;
                    changes.push(RowChange::Delete { ts, seq });
                }
                continue;
            };
            let mut gone = row.get_ref(3)?.as_blob_or_null()?.unwrap_or(&[]).to_vec();
            let (mut row_n, mut row_bytes) = (0i64, 0i64);
            for (k, s) in samples.iter().enumerate() {
                let pos = Pos {
                    ts,
                    seq,
                    k: k as u32,
                };
                if is_gone(&gone, k) || !removes(pos, s) {
                    continue;
                }
                set_gone(&mut gone, k);
                row_n += 1;
                row_bytes += s.stored_len() as i64;
            }
            if row_n == 0 {
                continue;
            }
            n += row_n as u64;
            freed += row_bytes as u64;
            changes.push(if row_n == count {
                RowChange::Delete { ts, seq }
            } else {
                RowChange::Update {
                    ts,
                    seq,
                    gone,
                    count: count - row_n,
                    bytes: bytes - row_bytes,
                }
            });
        }
    }
    apply(tx, &changes)?;
    Ok((n, freed))
}
