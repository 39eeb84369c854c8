//! WAL checkpoints off the ingest path: a thread with its own connection copies committed
//! pages into the database file every second, so commits only append to the WAL.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::schema;

/// How often committed pages are copied from the WAL into the database file.
const EVERY: Duration = Duration::from_secs(1);

/// Stops its thread when dropped.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Held by whoever checkpoints in this process: two checkpoints at once make the second
/// one return busy without doing anything.
pub(super) type CheckpointGate = Arc<Mutex<()>>;

impl Checkpointer {
    pub(super) fn start(
        path: &Path,
        synchronous: &str,
        gate: CheckpointGate,
    ) -> Result<Self, rusqlite::Error> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(schema::BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", synchronous)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("history-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    let _gate = gate.lock().unwrap_or_else(PoisonError::into_inner);
                    // PASSIVE never waits for the writer or readers; it copies what it can.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(path = %shown, error = %e, "history WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot start the checkpoint thread: {e}")),
                )
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("history checkpoint thread panicked");
        }
    }
}
