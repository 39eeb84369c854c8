//! The bdSeq of the last MQTT connect, kept in a small file so a restarted node
//! continues the sequence instead of repeating a value a host has already seen.

use std::path::PathBuf;

use sparkplug::BdSeq;

/// The state file cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("bdSeq state file {path}: {message}")]
pub struct BdSeqFileError {
    pub path: String,
    pub message: String,
}

/// The last bdSeq used in an accepted CONNECT, and where it is kept.
#[derive(Debug, Clone)]
pub struct BdSeqStore {
    path: Option<PathBuf>,
    last: Option<BdSeq>,
}

impl BdSeqStore {
    /// Nothing kept: the first connect uses 0.
    pub fn in_memory() -> BdSeqStore {
        BdSeqStore {
            path: None,
            last: None,
        }
    }

    /// Ignores what the file holds (unreadable): the next connect uses 0 and rewrites it.
    pub fn starting_over(path: PathBuf) -> BdSeqStore {
        BdSeqStore {
            path: Some(path),
            last: None,
        }
    }

    /// Reads the file; a missing file means no connect yet.
    pub fn open(path: PathBuf) -> Result<BdSeqStore, BdSeqFileError> {
        let error = |message: String| BdSeqFileError {
            path: path.display().to_string(),
            message,
        };
        let last = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let n: u8 = text
                    .trim()
                    .parse()
                    .map_err(|_| error(format!("{:?} is not a bdSeq 0..=255", text.trim())))?;
                Some(BdSeq::new(n))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(error(e.to_string())),
        };
        Ok(BdSeqStore {
            path: Some(path),
            last,
        })
    }

    /// The bdSeq for the next CONNECT's will and NBIRTH.
    pub fn next(&self) -> BdSeq {
        self.last.map_or(BdSeq::ZERO, BdSeq::next)
    }

    /// The last committed bdSeq.
    pub fn last(&self) -> Option<BdSeq> {
        self.last
    }

    /// The server accepted a CONNECT carrying `bd_seq`: later connects follow it.
    /// Written to a temporary file then renamed, so a power cut leaves old or new.
    pub fn commit(&mut self, bd_seq: BdSeq) -> Result<(), BdSeqFileError> {
        self.last = Some(bd_seq);
        let Some(path) = &self.path else {
            return Ok(());
        };
        let error = |e: std::io::Error| BdSeqFileError {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{bd_seq}\n")).map_err(error)?;
        std::fs::rename(&tmp, path).map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_continues_and_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bdseq");
        let mut store = BdSeqStore::open(path.clone()).unwrap();
        assert_eq!(store.next(), BdSeq::new(0));
        store.commit(BdSeq::new(0)).unwrap();
        store.commit(store.next()).unwrap();
        let reopened = BdSeqStore::open(path.clone()).unwrap();
        assert_eq!(reopened.next(), BdSeq::new(2));
        let mut store = reopened;
        store.commit(BdSeq::new(255)).unwrap();
        assert_eq!(BdSeqStore::open(path).unwrap().next(), BdSeq::new(0));
    }

    #[test]
    fn a_corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bdseq");
        std::fs::write(&path, "300").unwrap();
        let e = BdSeqStore::open(path.clone()).unwrap_err().to_string();
        assert!(e.contains("bdseq") && e.contains("300"), "{e}");
        let mut fresh = BdSeqStore::starting_over(path.clone());
        assert_eq!(fresh.next(), BdSeq::ZERO);
        fresh.commit(BdSeq::ZERO).unwrap();
        assert_eq!(BdSeqStore::open(path).unwrap().next(), BdSeq::new(1));
    }
}
