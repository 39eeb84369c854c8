//! Appended samples the segments cannot take (older than what they hold, see
//! [`segments`](super::segments)) and not yet in the queue's SQLite table: a [`Log`]
//! beside the queue's file, `<file>-queue`, a record per append, folded into the table in
//! one transaction once it holds [`FOLD_BYTES`] (or before a replay reads the queue, or
//! when the byte cap must trim). A late report is a handful of samples; a commit each
//! would write a page or more each time.
//!
//! Record bodies: `varint epoch, varint base timestamp, a run of samples` (see
//! [`codec`](super::codec)). As for the write-ahead log, a fold bumps the epoch kept in
//! the queue file in its own transaction, so the log's records count once.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::codec::{self, StoredSample};
use super::log::{self, Log};

/// Log size past which the next append folds the log into the table.
pub(crate) const FOLD_BYTES: u64 = 64 * 1024;

/// The samples of `epoch` in the log at `path`, in append order.
pub(crate) fn read(path: &Path, epoch: u64) -> std::io::Result<Vec<StoredSample>> {
    let mut out = Vec::new();
    for body in log::read_bodies(path)? {
        let mut fields = &body[..];
        let (Ok(record_epoch), Ok(base)) = (
            codec::get_varint(&mut fields),
            codec::get_varint(&mut fields),
        ) else {
            break;
        };
        if record_epoch != epoch {
            continue;
        }
        match codec::decode_run(base, fields) {
            Ok(samples) => out.extend(samples),
            Err(e) => warn!(log = %path.display(), error = %e,
                            "appended samples do not decode: skipped"),
        }
    }
    Ok(out)
}

/// The appended samples not folded yet.
#[derive(Debug)]
pub(crate) struct Pending {
    log: Log,
    epoch: u64,
    /// The log's records, to rewrite it after a torn append.
    records: Vec<u8>,
    samples: Vec<StoredSample>,
    oldest_ts: Option<u64>,
    body: Vec<u8>,
}

impl Pending {
    /// Starts an empty log for `epoch` at `path`.
    pub(crate) fn create(path: PathBuf, epoch: u64, sync: bool) -> std::io::Result<Pending> {
        Ok(Pending {
            log: Log::create(path, sync)?,
            epoch,
            records: Vec::new(),
            samples: Vec::new(),
            oldest_ts: None,
            body: Vec::new(),
        })
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn samples(&self) -> &[StoredSample] {
        &self.samples
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub(crate) fn len(&self) -> u64 {
        self.log.len()
    }

    pub(crate) fn oldest_ts(&self) -> Option<u64> {
        self.oldest_ts
    }

    /// Keeps `samples`: one record, written before this returns.
    pub(crate) fn append(&mut self, samples: &[StoredSample]) -> std::io::Result<()> {
        if self.log.is_torn() {
            self.log.rewrite(&self.records)?;
        }
        let base = samples.first().map_or(0, |s| s.timestamp_ms);
        self.body.clear();
        codec::put_varint(&mut self.body, self.epoch);
        codec::put_varint(&mut self.body, base);
        codec::encode_run(base, samples, &mut self.body);
        let at = self.records.len();
        log::frame(&self.body, &mut self.records);
        if let Err(e) = self.log.append(&self.records[at..]) {
            self.records.truncate(at);
            return Err(e);
        }
        self.samples.extend_from_slice(samples);
        if let Some(t) = samples.iter().map(|s| s.timestamp_ms).min() {
            self.oldest_ts = Some(self.oldest_ts.map_or(t, |o| o.min(t)));
        }
        Ok(())
    }

    /// The samples were folded (in the transaction that bumped the epoch to `epoch`):
    /// the log starts again, empty.
    pub(crate) fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.records.clear();
        self.samples.clear();
        self.oldest_ts = None;
        if let Err(e) = self.log.clear() {
            // Harmless: records of an older epoch are never read back.
            warn!(log = %self.log.path().display(), error = %e, "queue log not emptied");
        }
    }
}
