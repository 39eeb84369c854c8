//! The open windows: samples not yet in a chunk, held in memory for live queries and
//! written, as they are acknowledged, to the recent log beside the database file
//! (`<file>-recent`).
//!
//! The log is what makes an acknowledged sample survive a crash without writing a SQLite
//! page per commit: a commit appends one record of just the samples' bytes (about 12 per
//! sample). When windows close, their samples move into chunks and the log is rewritten
//! with what stays open. At open the log is replayed; a torn last record (a power cut mid
//! write, never acknowledged) is cut off.
//!
//! Record: payload length (u32 LE), CRC-32 of the payload (u32 LE), payload. Payload: per
//! sample the zigzag varint deltas of metric id and timestamp from the previous sample,
//! a flags byte (value kind, `is_historical`, "quality follows"), the quality as a zigzag
//! varint if not GOOD, then the value (Double as 8 bytes, integers as zigzag varints, a
//! Bool as a byte, text and bytes with a varint length).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use super::chunk::{Reader, put_varint};
use crate::history::types::{MetricId, Quality, Sample, SampleValue};

/// Samples per record when the log is rewritten, so a record stays a few megabytes.
const REWRITE_RECORD: usize = 64 * 1024;

/// Memory a held sample takes in its list, beside its text or bytes.
const SAMPLE_BYTES: u64 = std::mem::size_of::<Sample>() as u64;

/// The samples of the open windows, per metric, each list sorted by time.
#[derive(Debug, Default)]
pub(super) struct Recent {
    /// Keyed by our own metric ids (the catalog assigns them), never by a client's string,
    /// so a fast unkeyed hash cannot be flooded from outside.
    by_metric: FxHashMap<MetricId, Vec<Sample>>,
    len: usize,
    /// Memory the lists hold: their capacity in samples, and each sample's text or bytes.
    bytes: u64,
    /// Smallest timestamp held, if any.
    oldest: Option<u64>,
}

/// Heap bytes a sample owns beside its place in a list.
fn heap_bytes(sample: &Sample) -> u64 {
    match &sample.value {
        SampleValue::Text(t) => t.capacity() as u64,
        SampleValue::Bytes(b) => b.capacity() as u64,
        _ => 0,
    }
}

impl Recent {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Memory held by the samples (see `open_window_max_bytes`).
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn oldest(&self) -> Option<u64> {
        self.oldest
    }

    pub(super) fn get(&self, metric: MetricId, ts: u64) -> Option<&Sample> {
        let list = self.by_metric.get(&metric)?;
        list.binary_search_by_key(&ts, |s| s.ts)
            .ok()
            .map(|i| &list[i])
    }

    /// Adds a sample, replacing one at the same (metric, ts).
    pub(super) fn insert(&mut self, sample: Sample) {
        self.oldest = Some(self.oldest.map_or(sample.ts, |o| o.min(sample.ts)));
        let list = self.by_metric.entry(sample.metric).or_default();
        let capacity = list.capacity();
        self.bytes += heap_bytes(&sample);
        // Live samples arrive in time order: the common case is a push.
        if list.last().is_none_or(|last| last.ts < sample.ts) {
            list.push(sample);
            self.len += 1;
        } else {
            match list.binary_search_by_key(&sample.ts, |s| s.ts) {
                Ok(i) => {
                    self.bytes -= heap_bytes(&list[i]);
                    list[i] = sample;
                }
                Err(i) => {
                    list.insert(i, sample);
                    self.len += 1;
                }
            }
        }
        self.bytes += (list.capacity() - capacity) as u64 * SAMPLE_BYTES;
    }

    /// The samples of `metric` in `[from, to)`, in time order.
    pub(super) fn range(&self, metric: MetricId, from: u64, to: u64) -> &[Sample] {
        let Some(list) = self.by_metric.get(&metric) else {
            return &[];
        };
        let start = list.partition_point(|s| s.ts < from);
        let end = list.partition_point(|s| s.ts < to);
        &list[start..end.max(start)]
    }

    pub(super) fn last(&self, metric: MetricId) -> Option<&Sample> {
        self.by_metric.get(&metric).and_then(|l| l.last())
    }

    /// Every sample older than `cutoff`, per metric (metrics in id order).
    pub(super) fn before(&self, cutoff: u64) -> Vec<(MetricId, &[Sample])> {
        let mut out: Vec<(MetricId, &[Sample])> = self
            .by_metric
            .iter()
            .filter_map(|(&metric, list)| {
                let n = list.partition_point(|s| s.ts < cutoff);
                (n > 0).then(|| (metric, &list[..n]))
            })
            .collect();
        out.sort_unstable_by_key(|(metric, _)| *metric);
        out
    }

    /// Drops samples older than `cutoff`, at most `budget` of them (oldest first within
    /// each metric); returns how many went.
    pub(super) fn remove_before(&mut self, cutoff: u64, budget: u64) -> u64 {
        let mut removed = 0;
        let mut ids: Vec<MetricId> = self.by_metric.keys().copied().collect();
        ids.sort();
        for id in ids {
            let Some(list) = self.by_metric.get_mut(&id) else {
                continue;
            };
            let n = (list.partition_point(|s| s.ts < cutoff) as u64).min(budget - removed);
            let capacity = list.capacity();
            self.bytes -= list
                .drain(..n as usize)
                .map(|s| heap_bytes(&s))
                .sum::<u64>();
            if list.is_empty() {
                self.by_metric.remove(&id);
                self.bytes -= capacity as u64 * SAMPLE_BYTES;
            } else {
                // What a flood grew is given back once its samples are in chunks.
                if list.capacity() > 2 * list.len() {
                    list.shrink_to_fit();
                }
                self.bytes -= (capacity - list.capacity()) as u64 * SAMPLE_BYTES;
            }
            removed += n;
            if removed == budget {
                break;
            }
        }
        self.len -= removed as usize;
        self.oldest = self
            .by_metric
            .values()
            .filter_map(|l| l.first().map(|s| s.ts))
            .min();
        removed
    }

    /// Every sample held, metric by metric.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Sample> {
        self.by_metric.values().flatten()
    }
}

/// The append-only file of acknowledged samples of the open windows.
pub(super) struct RecentLog {
    path: PathBuf,
    file: File,
    len: u64,
    sync: bool,
    /// The record being written, kept between appends.
    buf: Vec<u8>,
}

/// What opening the log found.
pub(super) struct Opened {
    pub(super) log: RecentLog,
    /// Samples of logs left by stores that are gone (a crash), in the order written.
    pub(super) replayed: Vec<Sample>,
    /// Damaged tails cut off (a write cut short: never acknowledged).
    pub(super) damage: Vec<String>,
    /// Those logs, to remove once their samples are in this store's own log.
    pub(super) orphans: Vec<PathBuf>,
}

/// Stores opened in this process, so two stores of one process never share a log name.
static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl RecentLog {
    /// Every log of the database at `db` starts with this name.
    pub(super) fn prefix_for(db: &Path) -> PathBuf {
        let mut p = db.as_os_str().to_owned();
        p.push("-recent");
        PathBuf::from(p)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Creates this store's own log (`<db>-recent-<pid>-<n>`, locked while the store is
    /// open) and reads every log beside it that no open store holds: what a store that
    /// did not close left behind. A store still open elsewhere keeps its own log, so two
    /// stores on one file never forget each other's samples.
    pub(super) fn open(db: &Path, sync: bool) -> io::Result<Opened> {
        let prefix = Self::prefix_for(db);
        let own = PathBuf::from(format!(
            "{}-{}-{}",
            prefix.display(),
            std::process::id(),
            OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let dir = match db.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = prefix
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&name))
            .map(|e| e.path())
            .collect();
        found.sort();
        let (mut replayed, mut damage, mut orphans) = (Vec::new(), Vec::new(), Vec::new());
        for path in found {
            if path.extension().is_some_and(|e| e == "tmp") {
                orphans.push(path); // a rewrite cut short: the log it was to replace is still there
                continue;
            }
            let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => continue, // an open store's
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            let mut at = 0usize;
            while at < bytes.len() {
                match read_record(&bytes[at..], &mut replayed) {
                    Ok(n) => at += n,
                    Err(reason) => {
                        damage.push(format!(
                            "{}: record at offset {at} {reason}; {} bytes dropped",
                            path.display(),
                            bytes.len() - at
                        ));
                        break;
                    }
                }
            }
            if path != own {
                orphans.push(path);
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&own)?;
        file.lock()?;
        let log = RecentLog {
            path: own,
            file,
            len: 0,
            sync,
            buf: Vec::new(),
        };
        Ok(Opened {
            log,
            replayed,
            damage,
            orphans,
        })
    }

    /// Appends one record of `samples`; on failure the file is cut back to what it was.
    pub(super) fn append(&mut self, samples: &[Sample]) -> io::Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        encode_record(&mut self.buf, samples);
        let record = &self.buf;
        let result = self.file.write_all(record).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                self.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                // A partial record would hide every later one from the replay.
                self.file.set_len(self.len)?;
                self.file.seek(SeekFrom::Start(self.len))?;
                Err(e)
            }
        }
    }

    /// Replaces the log with one holding exactly `samples` (written beside it, synced,
    /// then renamed over it, so a crash leaves the old log or the new one).
    pub(super) fn rewrite<'a>(
        &mut self,
        samples: impl Iterator<Item = &'a Sample>,
        durable: bool,
    ) -> io::Result<()> {
        let mut tmp_path = self.path.clone().into_os_string();
        tmp_path.push(".tmp");
        let tmp_path = PathBuf::from(tmp_path);
        let mut tmp = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)?;
        // The lock stays with the file that takes the log's name.
        tmp.lock()?;
        let mut len = 0u64;
        let mut samples = samples.peekable();
        while samples.peek().is_some() {
            encode_record(&mut self.buf, samples.by_ref().take(REWRITE_RECORD));
            tmp.write_all(&self.buf)?;
            len += self.buf.len() as u64;
        }
        if durable {
            tmp.sync_all()?;
        }
        std::fs::rename(&tmp_path, &self.path)?;
        if durable && let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        (self.file, self.len) = (tmp, len);
        Ok(())
    }

    /// Removes the log file (everything it held is in chunks).
    pub(super) fn remove(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.len = 0;
        std::fs::remove_file(&self.path)
    }
}

const FLAG_HISTORICAL: u8 = 0x08;
const FLAG_QUALITY: u8 = 0x10;

/// Encodes one record of `samples` into `record` (cleared first), header and payload.
fn encode_record<'a>(record: &mut Vec<u8>, samples: impl IntoIterator<Item = &'a Sample>) {
    record.clear();
    // Length and checksum go here once the payload is known.
    record.extend_from_slice(&[0; 8]);
    let payload = record;
    let (mut metric, mut ts) = (0i64, 0i64);
    for s in samples {
        put_varint(payload, zigzag(s.metric.0.wrapping_sub(metric)));
        put_varint(payload, zigzag((s.ts as i64).wrapping_sub(ts)));
        (metric, ts) = (s.metric.0, s.ts as i64);
        let kind = match &s.value {
            SampleValue::Null => 0,
            SampleValue::Bool(_) => 1,
            SampleValue::I64(_) => 2,
            SampleValue::U64(_) => 3,
            SampleValue::F64(_) => 4,
            SampleValue::Text(_) => 5,
            SampleValue::Bytes(_) => 6,
        };
        let mut flags = kind;
        if s.is_historical {
            flags |= FLAG_HISTORICAL;
        }
        if s.quality != Quality::GOOD {
            flags |= FLAG_QUALITY;
        }
        payload.push(flags);
        if s.quality != Quality::GOOD {
            put_varint(payload, zigzag(i64::from(s.quality.0)));
        }
        match &s.value {
            SampleValue::Null => {}
            SampleValue::Bool(b) => payload.push(u8::from(*b)),
            SampleValue::I64(v) => put_varint(payload, zigzag(*v)),
            SampleValue::U64(v) => put_varint(payload, *v),
            SampleValue::F64(v) => payload.extend_from_slice(&v.to_bits().to_le_bytes()),
            SampleValue::Text(t) => {
                put_varint(payload, t.len() as u64);
                payload.extend_from_slice(t.as_bytes());
            }
            SampleValue::Bytes(b) => {
                put_varint(payload, b.len() as u64);
                payload.extend_from_slice(b);
            }
        }
    }
    let len = (payload.len() - 8) as u32;
    let crc = crc32fast::hash(&payload[8..]);
    payload[0..4].copy_from_slice(&len.to_le_bytes());
    payload[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the record at the start of `bytes` into `out`; returns its length.
fn read_record(bytes: &[u8], out: &mut Vec<Sample>) -> Result<usize, String> {
    if bytes.len() < 8 {
        return Err("is truncated".into());
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let payload = bytes
        .get(8..8 + len)
        .ok_or_else(|| "is truncated".to_owned())?;
    if crc32fast::hash(payload) != crc {
        return Err("fails its checksum".into());
    }
    let mut r = Reader {
        data: payload,
        at: 0,
    };
    let (mut metric, mut ts) = (0i64, 0i64);
    let start = out.len();
    let decoded = (|| -> Result<(), String> {
        while r.at < payload.len() {
            metric = metric.wrapping_add(unzigzag(r.varint()?));
            ts = ts.wrapping_add(unzigzag(r.varint()?));
            let flags = r.byte()?;
            let quality = if flags & FLAG_QUALITY != 0 {
                let q = unzigzag(r.varint()?);
                Quality(i32::try_from(q).map_err(|_| format!("quality {q}"))?)
            } else {
                Quality::GOOD
            };
            let value = match flags & 0x07 {
                0 => SampleValue::Null,
                1 => SampleValue::Bool(r.byte()? != 0),
                2 => SampleValue::I64(unzigzag(r.varint()?)),
                3 => SampleValue::U64(r.varint()?),
                4 => SampleValue::F64(f64::from_bits(u64::from_le_bytes(
                    r.take(8)?.try_into().expect("8 bytes"),
                ))),
                5 => {
                    let n = r.varint()? as usize;
                    let t = std::str::from_utf8(r.take(n)?).map_err(|_| "text not UTF-8")?;
                    SampleValue::Text(t.to_owned())
                }
                6 => {
                    let n = r.varint()? as usize;
                    SampleValue::Bytes(r.take(n)?.to_vec())
                }
                k => return Err(format!("unknown value kind {k}")),
            };
            if ts < 0 {
                return Err(format!("negative timestamp {ts}"));
            }
            out.push(Sample {
                metric: MetricId(metric),
                ts: ts as u64,
                value,
                quality,
                is_historical: flags & FLAG_HISTORICAL != 0,
            });
        }
        Ok(())
    })();
    if let Err(e) = decoded {
        out.truncate(start);
        return Err(format!("is not readable: {e}"));
    }
    Ok(8 + len)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(metric: i64, ts: u64, value: SampleValue, quality: i32) -> Sample {
        Sample {
            metric: MetricId(metric),
            ts,
            value,
            quality: Quality(quality),
            is_historical: ts.is_multiple_of(2),
        }
    }

    #[test]
    fn memory_is_counted_as_samples_come_are_replaced_and_go() {
        let mut recent = Recent::default();
        for ts in (0..300u64).rev() {
            recent.insert(s(
                1,
                ts,
                SampleValue::Text("x".repeat(ts as usize % 7)),
                192,
            ));
            recent.insert(s(2, ts, SampleValue::Bytes(vec![1; 3]), 192));
            recent.insert(s(3, ts, SampleValue::F64(1.0), 192));
        }
        let held = |r: &Recent| -> u64 {
            r.by_metric
                .values()
                .map(|l| l.capacity() as u64 * SAMPLE_BYTES + l.iter().map(heap_bytes).sum::<u64>())
                .sum()
        };
        assert_eq!(recent.bytes(), held(&recent));
        // A replacement trades its text for the new one's.
        recent.insert(s(1, 6, SampleValue::Text("longer text".into()), 0));
        assert_eq!(recent.bytes(), held(&recent));
        assert_eq!(recent.remove_before(250, u64::MAX), 750);
        assert_eq!(recent.bytes(), held(&recent));
        assert_eq!(recent.remove_before(u64::MAX, u64::MAX), 150);
        assert_eq!((recent.len(), recent.bytes()), (0, 0));
    }

    #[test]
    fn a_log_left_behind_is_replayed_an_open_one_is_not_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("h.db");
        let first = vec![
            s(1, 10, SampleValue::F64(-0.0), 192),
            s(7, 9, SampleValue::Text("é".into()), 500),
            s(2, u64::MAX >> 1, SampleValue::U64(u64::MAX), -3),
        ];
        let second = vec![
            s(3, 0, SampleValue::I64(i64::MIN), 0),
            s(3, 1, SampleValue::Bytes(vec![0, 1]), 192),
            s(3, 2, SampleValue::Bool(true), 192),
            s(3, 3, SampleValue::Null, 192),
        ];
        let left = {
            let mut a = RecentLog::open(&db, false).unwrap().log;
            a.append(&first).unwrap();
            a.append(&second).unwrap();
            // While `a` is open, another store does not take its samples.
            let b = RecentLog::open(&db, false).unwrap();
            assert!(b.replayed.is_empty() && b.orphans.is_empty());
            a.path().to_path_buf()
        };
        let full = std::fs::metadata(&left).unwrap().len();
        let c = RecentLog::open(&db, false).unwrap();
        assert_eq!(c.replayed, [first.clone(), second].concat());
        assert!(c.damage.is_empty());
        assert!(c.orphans.contains(&left));
        drop(c);
        // A torn second record: the first survives, the tail is reported.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&left)
            .unwrap()
            .set_len(full - 3)
            .unwrap();
        let mut d = RecentLog::open(&db, false).unwrap();
        assert_eq!(d.replayed, first);
        assert!(d.damage[0].contains("truncated"));
        d.log.rewrite(first[..1].iter(), true).unwrap();
        for orphan in &d.orphans {
            std::fs::remove_file(orphan).unwrap();
        }
        let own = d.log.path().to_path_buf();
        drop(d);
        let e = RecentLog::open(&db, false).unwrap();
        assert_eq!(e.replayed, first[..1]);
        assert_eq!(e.orphans, vec![own], "only the rewritten log was left");
    }
}
