//! Where a store's blocking work runs, so that every [`HistoryStore`](super::HistoryStore)
//! method may be called from async code as well as from a plain thread.
//!
//! The stores block: SQLite on its file, PostgreSQL on a round trip, through a client that
//! drives its connection with a runtime of its own and so cannot be used inside a tokio
//! runtime at all (tokio panics: "Cannot start a runtime from within a runtime"). [`run`]
//! places the work by where it is called:
//! - outside any runtime (a plain thread, the blocking pool): right here;
//! - on a multi-threaded runtime: right here, after handing this worker's other tasks to
//!   another worker (`block_in_place`), so no task waits behind the store;
//! - on a current-thread runtime, which cannot hand its tasks over: on a short-lived thread
//!   of its own while the caller waits (its runtime has no other thread to run tasks on
//!   anyway; async code that must not wait uses `spawn_blocking`).

use tokio::runtime::{Handle, RuntimeFlavor};

use super::error::{HistoryError, Result};

/// Runs `work` where it may block; see the module docs.
pub(crate) fn run<T: Send>(work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => work(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        Ok(_) => std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("history-blocking".into())
                .spawn_scoped(scope, work)
                .map_err(|e| HistoryError::TaskFailed(format!("no thread for the store: {e}")))?;
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the PostgreSQL client does: a runtime of its own, blocked on.
    fn own_runtime() -> Result<u32> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| HistoryError::TaskFailed(e.to_string()))?;
        Ok(rt.block_on(async { 7 }))
    }

    #[test]
    fn work_that_blocks_on_a_runtime_of_its_own_runs_from_every_kind_of_caller() {
        assert_eq!(run(own_runtime).unwrap(), 7);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for rt in [&multi, &current] {
            assert_eq!(rt.block_on(async { run(own_runtime) }).unwrap(), 7);
            let in_task = rt.block_on(async { tokio::spawn(async { run(own_runtime) }).await });
            assert_eq!(in_task.unwrap().unwrap(), 7);
            let pooled =
                rt.block_on(async { tokio::task::spawn_blocking(|| run(own_runtime)).await });
            assert_eq!(pooled.unwrap().unwrap(), 7);
        }
    }
}
