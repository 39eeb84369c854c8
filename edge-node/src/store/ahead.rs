//! The written-ahead copies of live samples (`persist_sent_window`): an append-only log
//! beside the queue's SQLite file, `<file>-ahead`. One live publish is one record of a
//! few bytes per sample written with one write(2); a probe answered is a record of a
//! few bytes more. A SQLite commit per publish would cost at least a page per publish
//! (a 4 KiB WAL frame for a handful of samples).
//!
//! # Records
//!
//! `varint body length, CRC-32 of the body (u32 LE), body`, the body being
//! `varint epoch, kind` then for [`SAMPLES`] `varint first mark, varint base timestamp,
//! a run of samples` (see [`codec`](super::codec)) and for [`CONFIRMED`] `varint mark`.
//! Reading stops at the first record that is cut short or fails its CRC: a write torn by
//! a crash belonged to a publish that never happened.
//!
//! # Epochs
//!
//! The log counts only while its records carry the epoch in the queue file's `sent_meta`
//! row. Moving the log's samples into the queue (the link lost, or the file opened after
//! a crash) bumps that epoch in the same SQLite transaction, so a crash before the log is
//! emptied cannot queue its samples twice.
//!
//! # Size
//!
//! Records of confirmed samples are dead weight: once the log passes [`ROTATE_BYTES`], the
//! next confirmation rewrites it with only the records still unconfirmed (a new file
//! renamed over the old, so a crash leaves one or the other whole).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::codec::{self, StoredSample};

const SAMPLES: u8 = 1;
const CONFIRMED: u8 = 2;

/// Log size past which a confirmation rewrites the log with what is still unconfirmed.
const ROTATE_BYTES: u64 = 1 << 20;

/// The log of written-ahead live samples, opened for appending.
#[derive(Debug)]
pub(crate) struct Ahead {
    path: PathBuf,
    file: File,
    /// fsync each record (`synchronous = "full"`).
    sync: bool,
    epoch: u64,
    /// Marks below this were confirmed by the link.
    confirmed: u64,
    /// Bytes of the log file.
    len: u64,
    /// The records not wholly confirmed yet, with the mark after their last sample.
    unconfirmed: VecDeque<(u64, Vec<u8>)>,
    /// The last append may have left a torn record: the next one rewrites the log first.
    torn: bool,
    body: Vec<u8>,
}

/// The log's path for the queue file `store`.
pub(crate) fn log_path(store: &Path) -> PathBuf {
    let mut path = store.as_os_str().to_owned();
    path.push("-ahead");
    PathBuf::from(path)
}

/// The samples of `epoch` in the log at `path` the link had not confirmed, in mark
/// order; none when there is no log.
pub(crate) fn unconfirmed(path: &Path, epoch: u64) -> std::io::Result<Vec<StoredSample>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => file.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut confirmed = 0u64;
    let mut runs: Vec<(u64, Vec<StoredSample>)> = Vec::new();
    let mut rest = &bytes[..];
    while let Some((body, after)) = next_record(rest) {
        rest = after;
        let Some((record_epoch, kind, mut fields)) = header(body) else {
            break;
        };
        if record_epoch != epoch {
            continue;
        }
        match kind {
            CONFIRMED => {
                let Some(mark) = codec::get_varint(&mut fields).ok() else {
                    break;
                };
                confirmed = confirmed.max(mark);
            }
            SAMPLES => {
                let (Ok(mark), Ok(base)) = (
                    codec::get_varint(&mut fields),
                    codec::get_varint(&mut fields),
                ) else {
                    break;
                };
                match codec::decode_run(base, fields) {
                    Ok(samples) => runs.push((mark, samples)),
                    Err(e) => {
                        warn!(log = %path.display(), mark, error = %e,
                              "written-ahead samples do not decode: skipped");
                    }
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

/// The next whole record's body and what follows it; `None` at the end or at a torn or
/// damaged record.
fn next_record(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut rest = bytes;
    let len = usize::try_from(codec::get_varint(&mut rest).ok()?).ok()?;
    if rest.len() < 4 + len {
        return None;
    }
    let (crc, rest) = rest.split_at(4);
    let (body, rest) = rest.split_at(len);
    (crc32fast::hash(body).to_le_bytes() == crc).then_some((body, rest))
}

fn header(body: &[u8]) -> Option<(u64, u8, &[u8])> {
    let mut rest = body;
    let epoch = codec::get_varint(&mut rest).ok()?;
    let (&kind, rest) = rest.split_first()?;
    Some((epoch, kind, rest))
}

impl Ahead {
    /// Starts an empty log for `epoch` at `path` (an old one is truncated).
    pub(crate) fn create(path: PathBuf, epoch: u64, sync: bool) -> std::io::Result<Ahead> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.set_len(0)?;
        Ok(Ahead {
            path,
            file,
            sync,
            epoch,
            confirmed: 0,
            len: 0,
            unconfirmed: VecDeque::new(),
            torn: false,
            body: Vec::new(),
        })
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Keeps `samples` under marks `first_mark..`: one record, written before this returns.
    pub(crate) fn write(
        &mut self,
        first_mark: u64,
        samples: &[StoredSample],
    ) -> std::io::Result<()> {
        if self.torn {
            self.rotate()?;
        }
        let base = samples.first().map_or(0, |s| s.timestamp_ms);
        self.body.clear();
        codec::put_varint(&mut self.body, self.epoch);
        self.body.push(SAMPLES);
        codec::put_varint(&mut self.body, first_mark);
        codec::put_varint(&mut self.body, base);
        codec::encode_run(base, samples, &mut self.body);
        let record = frame(&self.body);
        self.append(&record)?;
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
        if self.torn || self.len >= ROTATE_BYTES {
            return self.rotate();
        }
        let record = self.confirmed_record();
        self.append(&record)
    }

    /// The log's samples were queued (in the transaction that bumped the epoch to
    /// `epoch`): it starts again, empty.
    pub(crate) fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.confirmed = 0;
        self.unconfirmed.clear();
        match self.file.set_len(0) {
            Ok(()) => {
                self.len = 0;
                self.torn = false;
            }
            // Harmless: records of an older epoch are never read back.
            Err(e) => warn!(log = %self.path.display(), error = %e,
                            "write-ahead log not emptied"),
        }
    }

    fn confirmed_record(&mut self) -> Vec<u8> {
        self.body.clear();
        codec::put_varint(&mut self.body, self.epoch);
        self.body.push(CONFIRMED);
        codec::put_varint(&mut self.body, self.confirmed);
        frame(&self.body)
    }

    fn append(&mut self, record: &[u8]) -> std::io::Result<()> {
        let written = self.file.write_all(record).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut a partial record off, or have the next write rewrite the log.
                self.torn = self.file.set_len(self.len).is_err();
                Err(e)
            }
        }
    }

    /// Rewrites the log with the confirmation and the records still unconfirmed.
    fn rotate(&mut self) -> std::io::Result<()> {
        let mut tmp_path = self.path.as_os_str().to_owned();
        tmp_path.push(".tmp");
        let tmp_path = PathBuf::from(tmp_path);
        let mut content = self.confirmed_record();
        for (_, record) in &self.unconfirmed {
            content.extend_from_slice(record);
        }
        let mut tmp = File::create(&tmp_path)?;
        tmp.write_all(&content)?;
        if self.sync {
            tmp.sync_data()?;
        }
        drop(tmp);
        std::fs::rename(&tmp_path, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.len = content.len() as u64;
        self.torn = false;
        Ok(())
    }
}

/// A record around `body`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(body.len() + 9);
    codec::put_varint(&mut record, body.len() as u64);
    record.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    record.extend_from_slice(body);
    record
}
