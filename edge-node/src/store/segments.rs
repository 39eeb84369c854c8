//! The outage's samples in append-only segment files beside the queue's file,
//! `<file>-seg-<n>`: an append is one write of records of a few bytes per sample, the
//! active segment is sealed once it holds [`SEAL_BYTES`], replay reads the segments
//! directly and a segment is deleted whole once every sample in it is gone. Each sample's
//! bytes are written once.
//!
//! A record is a [`log`](super::log) record. Bodies: [`SAMPLES`] `varint timestamp,
//! varint sequence, a run of samples` (see [`codec`](super::codec); one row of the queue
//! table: one timestamp, one sequence, the same split) and [`CURSOR`] `varint timestamp,
//! varint sequence, varint index`.
//!
//! # Order and the cursor
//!
//! The segments hold their samples in queue order ([`Pos`]) across files: a record joins
//! only when it comes after every sample of the sealed segments and after the cursor
//! (the owner queues what does not in the table). Within a file records may come in any
//! order; a file is sorted when read. Every sample at or before the **cursor** is gone
//! (acked, dropped by the caps, or moved to the table). The cursor moves by a record
//! appended to the active segment and, when the table takes samples over, in the
//! table's transaction too (`segment_cursor`), so a crash in between cannot queue a
//! sample twice: opening takes the furthest of all. Each new segment starts with the
//! cursor, so deleting older files never loses it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::codec::{self, StoredSample};
use super::log::{self, Log};
use super::queue::Pos;

/// Active segment size past which it is sealed and a new one started.
pub(crate) const SEAL_BYTES: u64 = 64 * 1024;

const SAMPLES: u8 = 1;
const CURSOR: u8 = 2;

/// Decoded segments kept for replay (the head and the one a batch in flight reaches).
const CACHED: usize = 2;

/// A sample and its place in the queue.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) pos: Pos,
    pub(crate) sample: StoredSample,
}

#[derive(Debug)]
struct Sealed {
    id: u64,
    path: PathBuf,
    /// Its last sample's place (`None`: no sample).
    last: Option<Pos>,
    /// Its earliest timestamp.
    min_ts: i64,
    len: u64,
}

/// The segment files of one store.
#[derive(Debug)]
pub(crate) struct Segments {
    store: PathBuf,
    sync: bool,
    seal_bytes: u64,
    sealed: VecDeque<Sealed>,
    active_id: u64,
    active: Log,
    /// The active segment's samples not gone yet, sorted.
    entries: Vec<Entry>,
    /// Whether `entries` lost samples to the cursor: then they are not the whole file.
    entries_cut: bool,
    cursor: Option<Pos>,
    cache: RefCell<VecDeque<(u64, Arc<[Entry]>)>>,
    /// Samples after the cursor.
    depth: u64,
    max_seq: Option<i64>,
    body: Vec<u8>,
}

/// What opening found in the segment files.
pub(crate) struct Opened {
    pub(crate) segments: Segments,
    /// Samples after the cursor and their stored bytes.
    pub(crate) depth: u64,
    pub(crate) bytes: u64,
}

fn segment_path(store: &Path, id: u64) -> PathBuf {
    log::path_beside(store, &format!("seg-{id:010}"))
}

/// The segment files beside `store`, by id.
fn list(store: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let dir = match store.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Some(name) = store.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}-seg-");
    let mut out = Vec::new();
    for item in std::fs::read_dir(&dir)? {
        let item = item?;
        let file = item.file_name();
        let Some(id) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|id| id.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((id, item.path()));
    }
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

/// Renames the segment files of `store` to those of `aside`.
pub(crate) fn move_aside(store: &Path, aside: &Path) -> std::io::Result<()> {
    for (id, path) in list(store)? {
        std::fs::rename(path, segment_path(aside, id))?;
    }
    Ok(())
}

/// A segment file's samples in queue order, and the furthest cursor it records.
fn read(path: &Path) -> std::io::Result<(Vec<Entry>, Option<Pos>)> {
    let mut entries = Vec::new();
    let mut cursor = None;
    for body in log::read_bodies(path)? {
        let mut fields = &body[..];
        let Some((&kind, rest)) = fields.split_first() else {
            break;
        };
        fields = rest;
        let (Ok(ts), Ok(seq)) = (
            codec::get_varint(&mut fields),
            codec::get_varint(&mut fields),
        ) else {
            break;
        };
        let (ts, seq) = (ts as i64, seq as i64);
        match kind {
            SAMPLES => match codec::decode_run(ts as u64, fields) {
                Ok(samples) => {
                    entries.extend(samples.into_iter().enumerate().map(|(k, sample)| Entry {
                        pos: Pos {
                            ts,
                            seq,
                            k: k as u32,
                        },
                        sample,
                    }))
                }
                Err(e) => warn!(segment = %path.display(), ts, seq, error = %e,
                                "segment samples do not decode: skipped"),
            },
            CURSOR => {
                let Ok(k) = codec::get_varint(&mut fields) else {
                    break;
                };
                let pos = Pos {
                    ts,
                    seq,
                    k: k.min(u64::from(u32::MAX)) as u32,
                };
                cursor = cursor.max(Some(pos));
            }
            _ => break,
        }
    }
    entries.sort_by_key(|e| e.pos);
    Ok((entries, cursor))
}

/// A record of `samples` (one timestamp, one sequence), appended to `out`.
pub(crate) fn record(ts: i64, seq: i64, run: &[u8], body: &mut Vec<u8>, out: &mut Vec<u8>) {
    body.clear();
    body.push(SAMPLES);
    codec::put_varint(body, ts as u64);
    codec::put_varint(body, seq as u64);
    body.extend_from_slice(run);
    log::frame(body, out);
}

impl Segments {
    /// Reads the segments beside `store` (`cursor`: the table's) and starts a new active
    /// one; files with no sample after the cursor are deleted.
    pub(crate) fn open(store: &Path, cursor: Option<Pos>, sync: bool) -> std::io::Result<Opened> {
        let files = list(store)?;
        // The cursor first: the newest file holding one has the furthest (each file
        // starts with the cursor of its time, and the cursor only moves on).
        let mut cursor = cursor;
        for (_, path) in files.iter().rev() {
            if let Some(pos) = read(path)?.1 {
                cursor = cursor.max(Some(pos));
                break;
            }
        }
        let (mut depth, mut bytes, mut max_seq) = (0u64, 0u64, cursor.map(|c| c.seq));
        let mut sealed = VecDeque::new();
        let mut behind = Vec::new();
        for (id, path) in &files {
            let (entries, _) = read(path)?;
            max_seq = max_seq.max(entries.iter().map(|e| e.pos.seq).max());
            let live: Vec<&Entry> = entries.iter().filter(|e| Some(e.pos) > cursor).collect();
            if live.is_empty() {
                behind.push(path);
                continue;
            }
            depth += live.len() as u64;
            bytes += live
                .iter()
                .map(|e| e.sample.stored_len() as u64)
                .sum::<u64>();
            sealed.push_back(Sealed {
                id: *id,
                path: path.clone(),
                last: entries.last().map(|e| e.pos),
                min_ts: entries.iter().map(|e| e.pos.ts).min().unwrap_or(i64::MAX),
                len: std::fs::metadata(path).map_or(0, |m| m.len()),
            });
        }
        let active_id = files.last().map_or(0, |(id, _)| id + 1);
        let mut segments = Segments {
            store: store.to_owned(),
            sync,
            seal_bytes: SEAL_BYTES,
            active: Log::create(segment_path(store, active_id), sync)?,
            active_id,
            sealed,
            entries: Vec::new(),
            entries_cut: false,
            cursor,
            cache: RefCell::new(VecDeque::new()),
            depth,
            max_seq,
            body: Vec::new(),
        };
        // The cursor is in the new file before a file that held it goes.
        segments.write_cursor()?;
        for path in behind {
            remove(path);
        }
        Ok(Opened {
            segments,
            depth,
            bytes,
        })
    }

    /// The highest sequence any segment holds.
    pub(crate) fn max_seq(&self) -> Option<i64> {
        self.max_seq
    }

    pub(crate) fn cursor(&self) -> Option<Pos> {
        self.cursor
    }

    /// Whether a sample at `pos` may join: after the cursor and every sealed sample.
    pub(crate) fn takes(&self, pos: Pos) -> bool {
        let sealed = self.sealed.back().and_then(|s| s.last);
        Some(pos) > self.cursor.max(sealed)
    }

    /// Appends `records` (built by [`record`]) holding `entries`, with one write.
    pub(crate) fn append(&mut self, records: &[u8], entries: Vec<Entry>) -> std::io::Result<()> {
        if self.active.is_torn() {
            // Records after a torn one would never be read back: a new file.
            self.seal()?;
        }
        self.active.append(records)?;
        for entry in entries {
            self.depth += 1;
            self.max_seq = self.max_seq.max(Some(entry.pos.seq));
            let at = self.entries.partition_point(|e| e.pos < entry.pos);
            self.entries.insert(at, entry);
        }
        if self.active.len() >= self.seal_bytes
            && let Err(e) = self.seal()
        {
            // The samples are stored: the next append tries again.
            warn!(segment = %self.active.path().display(), error = %e, "segment not sealed");
        }
        Ok(())
    }

    /// Seals the active segment once it holds `bytes` (default [`SEAL_BYTES`]).
    pub(crate) fn seal_at(&mut self, bytes: u64) {
        self.seal_bytes = bytes;
    }

    /// The active segment becomes sealed and a new one starts with the cursor.
    fn seal(&mut self) -> std::io::Result<()> {
        let id = self.active_id + 1;
        let log = Log::create(segment_path(&self.store, id), self.sync)?;
        let old = std::mem::replace(&mut self.active, log);
        self.active_id = id;
        // The cursor is in the new file before the old one may go.
        let written = self.write_cursor();
        let entries: Arc<[Entry]> = std::mem::take(&mut self.entries).into();
        let whole = !std::mem::take(&mut self.entries_cut);
        match entries.last() {
            None if written.is_ok() => remove(old.path()),
            None => {}
            Some(last) => {
                self.sealed.push_back(Sealed {
                    id: id - 1,
                    path: old.path().to_owned(),
                    last: Some(last.pos),
                    min_ts: entries.iter().map(|e| e.pos.ts).min().unwrap_or(i64::MAX),
                    len: old.len(),
                });
                // A file's cache holds all its samples: readers place rows by index.
                if whole {
                    self.cache_put(id - 1, entries);
                }
            }
        }
        written
    }

    fn write_cursor(&mut self) -> std::io::Result<()> {
        let Some(pos) = self.cursor else {
            return Ok(());
        };
        self.body.clear();
        self.body.push(CURSOR);
        codec::put_varint(&mut self.body, pos.ts as u64);
        codec::put_varint(&mut self.body, pos.seq as u64);
        codec::put_varint(&mut self.body, u64::from(pos.k));
        let mut record = Vec::with_capacity(self.body.len() + 9);
        log::frame(&self.body, &mut record);
        self.active.append(&record)
    }

    /// Every sample at or before `to` is gone (`removed` of them were still counted): the
    /// cursor moves there, and whole files behind it are deleted.
    pub(crate) fn advance(&mut self, to: Pos, removed: u64) {
        if Some(to) <= self.cursor {
            return;
        }
        self.cursor = Some(to);
        self.depth -= removed;
        let before = self.entries.len();
        self.entries.retain(|e| e.pos > to);
        self.entries_cut |= self.entries.len() < before;
        // Files go only once the cursor that passes them is written; until then a
        // restart hands those samples out again (at least once, never lost).
        if let Err(e) = self.write_cursor() {
            warn!(segment = %self.active.path().display(), error = %e,
                  "segment cursor not written: replayed samples may replay again after a restart");
            return;
        }
        while self
            .sealed
            .front()
            .is_some_and(|s| s.last.is_none_or(|last| last <= to))
        {
            if let Some(s) = self.sealed.pop_front() {
                remove(&s.path);
                self.cache.borrow_mut().retain(|(id, _)| *id != s.id);
            }
        }
    }

    /// The samples after `from` (and after the cursor), in queue order.
    pub(crate) fn iter(&self, from: Option<Pos>) -> Iter<'_> {
        Iter {
            segments: self,
            from: from.max(self.cursor),
            next_segment: 0,
            current: None,
            at: 0,
        }
    }

    /// Every sample of the record (`ts`, `seq`), gone or not, in index order.
    pub(crate) fn record_entries(&self, ts: i64, seq: i64) -> std::io::Result<Vec<Entry>> {
        let key = |e: &Entry| (e.pos.ts, e.pos.seq);
        let from_active = self.entries.iter().any(|e| key(e) == (ts, seq)).then(|| {
            // The active segment keeps only samples after the cursor: read it whole.
            read(self.active.path()).map(|r| r.0)
        });
        let all = match from_active {
            Some(all) => all?,
            None => {
                let pos = Pos { ts, seq, k: 0 };
                match self
                    .sealed
                    .iter()
                    .find(|s| s.last.is_some_and(|last| last >= pos))
                {
                    Some(s) => self.decoded(s)?.to_vec(),
                    None => Vec::new(),
                }
            }
        };
        Ok(all.into_iter().filter(|e| key(e) == (ts, seq)).collect())
    }

    /// The earliest timestamp after the cursor.
    pub(crate) fn oldest_ts(&self) -> std::io::Result<Option<i64>> {
        self.iter(None).next().map(|e| e.map(|e| e.pos.ts))
    }

    /// A lower bound of the timestamps after the cursor (`None`: no sample).
    pub(crate) fn min_ts_bound(&self) -> Option<i64> {
        if self.depth == 0 {
            return None;
        }
        let cursor_ts = self.cursor.map_or(i64::MIN, |c| c.ts);
        let files = self.sealed.front().map(|s| s.min_ts);
        let active = self.entries.first().map(|e| e.pos.ts);
        let min = match (files, active) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(min.max(cursor_ts))
    }

    /// Bytes of the segment files.
    pub(crate) fn file_bytes(&self) -> u64 {
        self.sealed.iter().map(|s| s.len).sum::<u64>() + self.active.len()
    }

    fn decoded(&self, sealed: &Sealed) -> std::io::Result<Arc<[Entry]>> {
        if let Some((_, entries)) = self.cache.borrow().iter().find(|(id, _)| *id == sealed.id) {
            return Ok(entries.clone());
        }
        let entries: Arc<[Entry]> = read(&sealed.path)?.0.into();
        self.cache_put(sealed.id, entries.clone());
        Ok(entries)
    }

    fn cache_put(&self, id: u64, entries: Arc<[Entry]>) {
        let mut cache = self.cache.borrow_mut();
        if cache.len() == CACHED {
            cache.pop_front();
        }
        cache.push_back((id, entries));
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        // Harmless: its samples are behind the cursor and are never read back.
        warn!(segment = %path.display(), error = %e, "segment not deleted");
    }
}

/// Samples of the segments in queue order, from a place on.
pub(crate) struct Iter<'a> {
    segments: &'a Segments,
    from: Option<Pos>,
    /// Index of the next sealed segment; `sealed.len()` is the active one.
    next_segment: usize,
    current: Option<Current<'a>>,
    at: usize,
}

enum Current<'a> {
    Sealed(Arc<[Entry]>),
    Active(&'a [Entry]),
}

impl Current<'_> {
    fn entries(&self) -> &[Entry] {
        match self {
            Current::Sealed(entries) => entries,
            Current::Active(entries) => entries,
        }
    }
}

impl Iter<'_> {
    /// The next sample, cloned.
    pub(crate) fn next(&mut self) -> std::io::Result<Option<Entry>> {
        loop {
            if let Some(current) = &self.current {
                if let Some(entry) = current.entries().get(self.at) {
                    self.at += 1;
                    return Ok(Some(entry.clone()));
                }
                self.current = None;
            }
            let sealed = &self.segments.sealed;
            let current = if self.next_segment < sealed.len() {
                let s = &sealed[self.next_segment];
                self.next_segment += 1;
                if s.last.is_none_or(|last| Some(last) <= self.from) {
                    continue;
                }
                Current::Sealed(self.segments.decoded(s)?)
            } else if self.next_segment == sealed.len() {
                self.next_segment += 1;
                Current::Active(&self.segments.entries)
            } else {
                return Ok(None);
            };
            self.at = current
                .entries()
                .partition_point(|e| Some(e.pos) <= self.from);
            self.current = Some(current);
        }
    }
}
