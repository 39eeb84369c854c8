//! The written-ahead copies of live samples (`persist_sent_window`): a [`Log`] beside the
//! queue's file, `<file>-ahead`. One live publish is one record of a few bytes per
//! sample; a probe answered is a record of a few bytes more.
//!
//! Record bodies: `varint epoch, kind` then for [`SAMPLES`] `varint first mark, varint
//! base timestamp, a run of samples` (see [`codec`](super::codec)) and for [`CONFIRMED`]
//! `varint mark`.
//!
//! # Epochs
//!
//! The log counts only while its records carry the epoch in the queue file's `logs`
//! row. Moving the log's samples into the queue (the link lost, or the file opened after
//! a crash) bumps that epoch in the same SQLite transaction, so a crash before the log is
//! emptied cannot queue its samples twice.
//!
//! # Size
//!
//! Records of confirmed samples are dead weight: once the log passes [`ROTATE_BYTES`], the
//! next confirmation rewrites it with only the records still unconfirmed.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::codec::{self, StoredSample};
use super::log::{self, Log};

const SAMPLES: u8 = 1;
const CONFIRMED: u8 = 2;

/// Log size past which a confirmation rewrites the log with what is still unconfirmed.
const ROTATE_BYTES: u64 = 1 << 20;

/// The log of written-ahead live samples.
#[derive(Debug)]
pub(crate) struct Ahead {
    log: Log,
    epoch: u64,
    /// Marks below this were confirmed by the link.
    confirmed: u64,
    /// The records not wholly confirmed yet, with the mark after their last sample.
    unconfirmed: VecDeque<(u64, Vec<u8>)>,
    body: Vec<u8>,
}

/// The samples of `epoch` in the log at `path` the link had not confirmed, in mark order.
pub(crate) fn unconfirmed(path: &Path, epoch: u64) -> std::io::Result<Vec<StoredSample>> {
    let mut confirmed = 0u64;
    let mut runs: Vec<(u64, Vec<StoredSample>)> = Vec::new();
    for body in log::read_bodies(path)? {
        let mut fields = &body[..];
        let Ok(record_epoch) = codec::get_varint(&mut fields) else {
            break;
        };
        let Some((&kind, mut fields)) = fields.split_first() else {
            break;
        };
        if record_epoch != epoch {
            continue;
        }
        match kind {
            CONFIRMED => match codec::get_varint(&mut fields) {
                Ok(mark) => confirmed = confirmed.max(mark),
                Err(_) => break,
            },
            SAMPLES => {
                let (Ok(mark), Ok(base)) = (
                    codec::get_varint(&mut fields),
                    codec::get_varint(&mut fields),
                ) else {
                    break;
                };
                match codec::decode_run(base, fields) {
                    Ok(samples) => runs.push((mark, samples)),
                    Err(e) => warn!(log = %path.display(), mark, error = %e,
                                    "written-ahead samples do not decode: skipped"),
                }
            }
            _ => break,
        }
    }
    Ok(runs
        .into_iter()
        .flat_map(|(mark, samples)| (mark..).zip(samples))
        .filter(|(mark, _)| *mark >= confirmed)
        .map(|(_, s)| s)
        .collect())
}

impl Ahead {
    /// Starts an empty log for `epoch` at `path`.
    pub(crate) fn create(path: PathBuf, epoch: u64, sync: bool) -> std::io::Result<Ahead> {
        Ok(Ahead {
            log: Log::create(path, sync)?,
            epoch,
            confirmed: 0,
            unconfirmed: VecDeque::new(),
            body: Vec::new(),
        })
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn len(&self) -> u64 {
        self.log.len()
    }

    /// Keeps `samples` under marks `first_mark..`: one record, written before this returns.
    pub(crate) fn write(
        &mut self,
        first_mark: u64,
        samples: &[StoredSample],
    ) -> std::io::Result<()> {
        if self.log.is_torn() {
            self.rotate()?;
        }
        let base = samples.first().map_or(0, |s| s.timestamp_ms);
        self.body.clear();
        codec::put_varint(&mut self.body, self.epoch);
        self.body.push(SAMPLES);
        codec::put_varint(&mut self.body, first_mark);
        codec::put_varint(&mut self.body, base);
        codec::encode_run(base, samples, &mut self.body);
        let mut record = Vec::with_capacity(self.body.len() + 9);
        log::frame(&self.body, &mut record);
        self.log.append(&record)?;
        self.unconfirmed
            .push_back((first_mark + samples.len() as u64, record));
        Ok(())
    }

    /// The link confirmed every mark below `mark`: recorded, and the log rewritten when
    /// it has grown past [`ROTATE_BYTES`].
    pub(crate) fn forget(&mut self, mark: u64) -> std::io::Result<()> {
        if mark <= self.confirmed {
            return Ok(());
        }
        self.confirmed = mark;
        while self
            .unconfirmed
            .front()
            .is_some_and(|(end, _)| *end <= mark)
        {
            self.unconfirmed.pop_front();
        }
        if self.log.is_torn() || self.log.len() >= ROTATE_BYTES {
            return self.rotate();
        }
        let record = self.confirmed_record();
        self.log.append(&record)
    }

    /// The log's samples were queued (in the transaction that bumped the epoch to
    /// `epoch`): it starts again, empty.
    pub(crate) fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.confirmed = 0;
        self.unconfirmed.clear();
        if let Err(e) = self.log.clear() {
            // Harmless: records of an older epoch are never read back.
            warn!(log = %self.log.path().display(), error = %e, "write-ahead log not emptied");
        }
    }

    fn confirmed_record(&mut self) -> Vec<u8> {
        self.body.clear();
        codec::put_varint(&mut self.body, self.epoch);
        self.body.push(CONFIRMED);
        codec::put_varint(&mut self.body, self.confirmed);
        let mut record = Vec::new();
        log::frame(&self.body, &mut record);
        record
    }

    /// Rewrites the log with the confirmation and the records still unconfirmed.
    fn rotate(&mut self) -> std::io::Result<()> {
        let mut content = self.confirmed_record();
        for (_, record) in &self.unconfirmed {
            content.extend_from_slice(record);
        }
        self.log.rewrite(&content)
    }
}
