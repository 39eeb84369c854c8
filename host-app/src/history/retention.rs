//! Periodic retention: applies the age and size limits in bounded steps, pausing between
//! steps so ingest commits are never held up for more than one step.

use std::sync::Arc;
use std::time::Duration;

use infra::clock::now_ms;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::HistoryStore;
use super::types::RetentionPolicy;

/// Pause between steps of one run, so queued ingest commits go first.
const STEP_PAUSE: Duration = Duration::from_millis(20);

/// Steps per run at most; a backlog larger than this continues at the next run.
const MAX_STEPS_PER_RUN: u32 = 1_000;

/// The running retention task. Stops when shut down or dropped.
pub struct RetentionTask {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl RetentionTask {
    /// Samples deleted per step: bounds how long one step holds the writer (see the
    /// history benchmark for the measured step time).
    pub const STEP_ROWS: u32 = 10_000;

    /// Starts applying `policy` now and then every `every`. Must be called from within a
    /// tokio runtime.
    pub fn spawn(store: Arc<dyn HistoryStore>, policy: RetentionPolicy, every: Duration) -> Self {
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(
            run(store, policy, every, stopped).instrument(tracing::info_span!("history_retention")),
        );
        RetentionTask { stop, handle }
    }

    /// Stops after the step under way, if any.
    pub async fn shutdown(self) {
        let _ = self.stop.send(()); // the task may already have ended
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "history retention task failed");
        }
    }
}

async fn run(
    store: Arc<dyn HistoryStore>,
    policy: RetentionPolicy,
    every: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stopped => return,
        }
        let mut deleted = 0;
        for _ in 0..MAX_STEPS_PER_RUN {
            let store = Arc::clone(&store);
            let step = tokio::task::spawn_blocking(move || {
                store.apply_retention(&policy, now_ms(), RetentionTask::STEP_ROWS)
            })
            .await;
            match step {
                Ok(Ok(step)) => {
                    deleted += step.deleted;
                    if !step.more {
                        if deleted > 0 {
                            tracing::info!(
                                deleted,
                                bytes_in_use = step.bytes_in_use,
                                "history retention pass done"
                            );
                        }
                        break;
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "history retention step failed");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "history retention step panicked");
                    break;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(STEP_PAUSE) => {}
                _ = &mut stopped => return,
            }
        }
    }
}
