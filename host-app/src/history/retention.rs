//! Periodic retention: applies the samples' age and size limits, then the audit log's own
//! age and row limits, in bounded steps, pausing between steps so ingest commits are never
//! held up for more than one step.

use std::sync::Arc;
use std::time::Duration;

use infra::clock::now_ms;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::HistoryStore;
use super::types::{AuditRetention, RetentionPolicy, RetentionStep};

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

    /// Starts applying `policy` to samples and `audit` to the audit log now and then every
    /// `every`. Must be called from within a tokio runtime.
    pub fn spawn(
        store: Arc<dyn HistoryStore>,
        policy: RetentionPolicy,
        audit: AuditRetention,
        every: Duration,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(
            run(store, policy, audit, every, stopped)
                .instrument(tracing::info_span!("history_retention")),
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

/// Which limits a pass applies.
#[derive(Clone, Copy)]
enum Pass {
    Samples(RetentionPolicy),
    Audit(AuditRetention),
}

impl Pass {
    fn name(self) -> &'static str {
        match self {
            Pass::Samples(_) => "history",
            Pass::Audit(_) => "audit log",
        }
    }

    fn step(self, store: &dyn HistoryStore) -> super::Result<RetentionStep> {
        let now = now_ms();
        let rows = RetentionTask::STEP_ROWS;
        match self {
            Pass::Samples(policy) => store.apply_retention(&policy, now, rows),
            Pass::Audit(audit) => store.apply_audit_retention(&audit, now, rows),
        }
    }
}

async fn run(
    store: Arc<dyn HistoryStore>,
    policy: RetentionPolicy,
    audit: AuditRetention,
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
        for pass in [Pass::Samples(policy), Pass::Audit(audit)] {
            if !run_pass(&store, pass, &mut stopped).await {
                return;
            }
        }
    }
}

/// One pass in bounded steps; false when stopped meanwhile.
async fn run_pass(
    store: &Arc<dyn HistoryStore>,
    pass: Pass,
    stopped: &mut oneshot::Receiver<()>,
) -> bool {
    let mut deleted = 0;
    for _ in 0..MAX_STEPS_PER_RUN {
        let store = Arc::clone(store);
        let step = tokio::task::spawn_blocking(move || pass.step(&*store)).await;
        match step {
            Ok(Ok(step)) => {
                deleted += step.deleted;
                if !step.more {
                    if deleted > 0 {
                        tracing::info!(
                            deleted,
                            bytes_in_use = step.bytes_in_use,
                            "{} retention pass done",
                            pass.name()
                        );
                    }
                    return true;
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "{} retention step failed", pass.name());
                return true;
            }
            Err(e) => {
                tracing::error!(error = %e, "{} retention step panicked", pass.name());
                return true;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(STEP_PAUSE) => {}
            _ = &mut *stopped => return false,
        }
    }
    true
}
