//! The written-ahead copies of live scans (`persist_sent_window`): a ring of rows, each
//! holding one run of a scan's samples under the sent window's marks, overwritten in
//! place once the link has confirmed them. Overwriting a row that keeps its page to itself
//! changes one page, so a scan costs about one WAL frame instead of new rows, index
//! entries, freelist and header pages. Which marks are confirmed, and which ring rows
//! belong to the current process (`epoch`), is one more row, `sent_meta`.

use std::ops::Range;

use rusqlite::{Connection, Transaction, params};
use tracing::warn;

use super::codec::{self, StoredSample};

/// Most encoded bytes in one ring row: with the row's other columns it stays under the
/// 989 bytes a 1024-byte table page keeps without an overflow page, and a row written
/// this size keeps its page to itself (no second row fits beside it).
const SLOT_BYTES: usize = 900;

/// The ring's state as this process knows it; the file holds the same.
#[derive(Debug)]
pub(crate) struct Ahead {
    epoch: i64,
    /// Marks below this were confirmed by the link (in this epoch).
    confirmed: u64,
    /// Per ring row, the marks it holds for this epoch; `None` when it holds none.
    slots: Vec<Option<Range<u64>>>,
    blob: Vec<u8>,
}

impl Ahead {
    /// Reads the ring's epoch and size, and the samples a process left unconfirmed, in
    /// mark order. Call [`Ahead::restart_in`] before writing again.
    pub(crate) fn load(conn: &Connection) -> rusqlite::Result<(Ahead, Vec<StoredSample>)> {
        let (epoch, confirmed): (i64, i64) = conn.query_row(
            "SELECT epoch, confirmed FROM sent_meta WHERE id = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let rows: i64 = conn.query_row(
            "SELECT coalesce(max(slot) + 1, 0) FROM sent_slots",
            [],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(
            "SELECT slot, mark, ts, samples FROM sent_slots WHERE epoch = ?1 ORDER BY mark",
        )?;
        let mut cursor = stmt.query([epoch])?;
        let mut unconfirmed = Vec::new();
        while let Some(row) = cursor.next()? {
            let slot: i64 = row.get(0)?;
            let mark = row.get::<_, i64>(1)? as u64;
            let ts = row.get::<_, i64>(2)? as u64;
            match codec::decode_run(ts, row.get_ref(3)?.as_blob().unwrap_or(&[])) {
                Ok(samples) => unconfirmed.extend(
                    (mark..)
                        .zip(samples)
                        .filter(|(m, _)| *m >= confirmed as u64)
                        .map(|(_, s)| s),
                ),
                Err(e) => warn!(slot, mark, error = %e,
                                "written-ahead samples do not decode: skipped"),
            }
        }
        let ahead = Ahead {
            epoch,
            confirmed: confirmed as u64,
            slots: vec![None; rows as usize],
            blob: Vec::with_capacity(SLOT_BYTES),
        };
        Ok((ahead, unconfirmed))
    }

    /// In `tx`: every ring row stops counting (their samples were queued, or confirmed)
    /// and marks start again. Call [`Ahead::restarted`] once `tx` is committed.
    pub(crate) fn restart_in(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        tx.prepare_cached("UPDATE sent_meta SET epoch = ?1, confirmed = 0 WHERE id = 0")?
            .execute([self.epoch + 1])
            .map(drop)
    }

    pub(crate) fn restarted(&mut self) {
        self.epoch += 1;
        self.confirmed = 0;
        self.slots.iter_mut().for_each(|s| *s = None);
    }

    /// Keeps `samples` under marks `first_mark..`, in one transaction.
    pub(crate) fn write(
        &mut self,
        conn: &mut Connection,
        first_mark: u64,
        samples: &[StoredSample],
    ) -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        let taken = self.write_in(&tx, first_mark, samples)?;
        tx.commit()?;
        for (slot, marks) in taken {
            if slot == self.slots.len() {
                self.slots.push(Some(marks));
            } else {
                self.slots[slot] = Some(marks);
            }
        }
        Ok(())
    }

    /// Writes the rows of [`Ahead::write`] in `tx`; returns which ring rows now hold which
    /// marks, for after the commit.
    pub(crate) fn write_in(
        &mut self,
        tx: &Transaction<'_>,
        first_mark: u64,
        samples: &[StoredSample],
    ) -> rusqlite::Result<Vec<(usize, Range<u64>)>> {
        let mut taken = Vec::new();
        let reusable: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                self.slots[i]
                    .as_ref()
                    .is_none_or(|r| r.end <= self.confirmed)
            })
            .collect();
        let mut free = reusable.into_iter().chain(self.slots.len()..);
        let mut start = 0;
        while start < samples.len() {
            let base = samples[start].timestamp_ms;
            let (mut end, mut len, mut alias) = (start, 0, 0);
            // At least one sample per row, however long (a long string spills to an
            // overflow page, which is only a cost).
            while end < samples.len() {
                let n = codec::run_len(base, alias, &samples[end]);
                if end > start && len + n > SLOT_BYTES {
                    break;
                }
                len += n;
                alias = samples[end].alias;
                end += 1;
            }
            self.blob.clear();
            codec::encode_run(base, &samples[start..end], &mut self.blob);
            let slot = free.next().expect("the chain of new slots is endless");
            let marks = first_mark + start as u64..first_mark + end as u64;
            if slot >= self.slots.len() {
                // A new row, written full size first so that it keeps a page to itself.
                tx.prepare_cached(
                    "INSERT INTO sent_slots (slot, epoch, mark, ts, samples)
                     VALUES (?1, -1, 0, 0, zeroblob(?2))",
                )?
                .execute(params![slot as i64, SLOT_BYTES as i64])?;
            }
            tx.prepare_cached(
                "UPDATE sent_slots SET epoch = ?2, mark = ?3, ts = ?4, samples = ?5
                 WHERE slot = ?1",
            )?
            .execute(params![
                slot as i64,
                self.epoch,
                marks.start as i64,
                base as i64,
                &self.blob
            ])?;
            taken.push((slot, marks));
            start = end;
        }
        Ok(taken)
    }

    /// The link confirmed every mark below `mark`: their rows may be overwritten.
    pub(crate) fn forget(&mut self, conn: &Connection, mark: u64) -> rusqlite::Result<()> {
        if mark <= self.confirmed {
            return Ok(());
        }
        conn.prepare_cached("UPDATE sent_meta SET confirmed = ?1 WHERE id = 0")?
            .execute([mark as i64])?;
        self.confirmed = mark;
        Ok(())
    }
}
