//! An append-only file of checksummed records beside the queue's SQLite file: what the
//! store keeps with one write(2) instead of a SQLite commit, which costs at least a page
//! (and for a handful of samples, a page is a hundred times their size).
//!
//! A record is `varint body length, CRC-32 of the body (u32 LE), body`. Reading stops at
//! the first record cut short or failing its CRC: a write torn by a crash belonged to a
//! call that never returned. Which records still count is the owner's business (epochs
//! kept in the SQLite file, see [`ahead`](super::ahead) and [`pending`](super::pending)).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::codec;

/// One log file, opened for appending.
#[derive(Debug)]
pub(crate) struct Log {
    path: PathBuf,
    file: File,
    /// fsync each append (`synchronous = "full"`).
    sync: bool,
    len: u64,
    /// A failed append may have left a partial record: the next append rewrites first.
    torn: bool,
}

/// `<store>-<suffix>`, beside the queue file.
pub(crate) fn path_beside(store: &Path, suffix: &str) -> PathBuf {
    let mut path = store.as_os_str().to_owned();
    path.push("-");
    path.push(suffix);
    PathBuf::from(path)
}

/// The bodies of the whole records at `path`, in order; none when there is no file.
pub(crate) fn read_bodies(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => file.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut bodies = Vec::new();
    let mut rest = &bytes[..];
    while let Some((body, after)) = next_record(rest) {
        bodies.push(body.to_vec());
        rest = after;
    }
    Ok(bodies)
}

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

/// A record around `body`, appended to `out`.
pub(crate) fn frame(body: &[u8], out: &mut Vec<u8>) {
    codec::put_varint(out, body.len() as u64);
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

impl Log {
    /// Starts an empty log at `path` (an old one is truncated).
    pub(crate) fn create(path: PathBuf, sync: bool) -> std::io::Result<Log> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.set_len(0)?;
        Ok(Log {
            path,
            file,
            sync,
            len: 0,
            torn: false,
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends whole records. After a failure the log holds what it held before, or
    /// [`Log::is_torn`] says the owner must [`Log::rewrite`] it.
    pub(crate) fn append(&mut self, records: &[u8]) -> std::io::Result<()> {
        let written = self.file.write_all(records).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.len += records.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.torn = self.file.set_len(self.len).is_err();
                Err(e)
            }
        }
    }

    pub(crate) fn is_torn(&self) -> bool {
        self.torn
    }

    /// Replaces the log by `records`: a new file renamed over the old, so a crash leaves
    /// one or the other whole.
    pub(crate) fn rewrite(&mut self, records: &[u8]) -> std::io::Result<()> {
        let tmp_path = path_beside(&self.path, "tmp");
        let mut tmp = File::create(&tmp_path)?;
        tmp.write_all(records)?;
        if self.sync {
            tmp.sync_data()?;
        }
        drop(tmp);
        std::fs::rename(&tmp_path, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.len = records.len() as u64;
        self.torn = false;
        Ok(())
    }

    /// Empties the log.
    pub(crate) fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.len = 0;
        self.torn = false;
        Ok(())
    }
}
