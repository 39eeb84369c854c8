//! The ingest side of history: a task that takes sample batches from a bounded channel and
//! commits them to the store by size or by time, one commit in flight while the next batch
//! fills, and flushes everything queued when it is shut down.
//!
//! A failed commit loses nothing: its samples go back to the pending batch and are tried
//! again after a growing pause ([`RETRY_FIRST`] up to [`RETRY_MAX`]). While they wait,
//! intake stays bounded, so a disk that keeps failing is felt by ingest as backpressure,
//! like a slow one. Only samples still failing at shutdown are lost, and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use infra::watchdog::Progress;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::HistoryStore;
use super::error::{HistoryError, Result};
use super::types::{AppendOutcome, Sample};

/// How the writer groups samples into commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// Commit once this many samples are pending.
    pub batch_size: usize,
    /// Commit pending samples at most this long after the first of them arrived.
    pub flush_interval: Duration,
    /// Sample batches (messages) the channel holds before `append` waits.
    pub channel_capacity: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            flush_interval: Duration::from_millis(250),
            channel_capacity: 256,
        }
    }
}

/// What the writer did over its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub received: u64,
    pub commits: u64,
    pub stored: AppendOutcome,
    /// Commits that failed (logged at error level); their samples were tried again.
    pub failed_commits: u64,
    /// Samples whose commit still failed at shutdown (logged at error level).
    pub lost: u64,
}

/// The writer's running figures, for `/metrics`.
#[derive(Debug, Default)]
pub struct WriterMetrics {
    /// Samples the writer took in.
    pub received: AtomicU64,
    /// Samples in commits that landed.
    pub committed: AtomicU64,
    /// Time spent in commits that landed, in microseconds.
    pub commit_micros: AtomicU64,
    /// Commits that failed (their samples are tried again).
    pub failed_commits: AtomicU64,
}

impl WriterMetrics {
    /// Samples taken in and not committed yet: how far the writer is behind.
    pub fn pending(&self) -> u64 {
        let received = self.received.load(Ordering::Relaxed);
        received.saturating_sub(self.committed.load(Ordering::Relaxed))
    }
}

enum Command {
    Samples(Vec<Sample>),
    Flush(oneshot::Sender<Result<()>>),
    Shutdown,
}

/// Queues samples for the writer task. Cheap to clone; the task stops, after committing
/// everything queued, on [`HistoryWriter::shutdown`] or when every clone is dropped.
#[derive(Clone)]
pub struct HistoryWriter {
    tx: mpsc::Sender<Command>,
    progress: Arc<Progress>,
    metrics: Arc<WriterMetrics>,
}

/// The running writer task; [`WriterTask::join`] waits for its final flush.
pub struct WriterTask {
    handle: JoinHandle<WriterStats>,
}

impl HistoryWriter {
    /// Starts the writer task. Must be called from within a tokio runtime (it spawns a task
    /// and runs commits on the runtime's blocking pool).
    pub fn spawn(
        store: Arc<dyn HistoryStore>,
        config: WriterConfig,
    ) -> (HistoryWriter, WriterTask) {
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let progress = Progress::new();
        let mut batcher = Batcher::new(store, config.batch_size.max(1));
        batcher.progress = Arc::clone(&progress);
        let metrics = Arc::clone(&batcher.metrics);
        let handle = tokio::spawn(
            run(batcher, rx, config.flush_interval)
                .instrument(tracing::info_span!("history_writer")),
        );
        let writer = HistoryWriter {
            tx,
            progress,
            metrics,
        };
        (writer, WriterTask { handle })
    }

    /// The writer's running figures.
    pub fn metrics(&self) -> Arc<WriterMetrics> {
        Arc::clone(&self.metrics)
    }

    /// The writer's liveness for the service watchdog: it beats at every successful
    /// commit and is idle while nothing waits to be committed.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Queues a batch of samples (typically one Sparkplug payload's metrics); waits while
    /// the channel is full, which is how ingest feels a slow disk.
    pub async fn append(&self, samples: Vec<Sample>) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Command::Samples(samples))
            .await
            .map_err(|_| HistoryError::WriterClosed)
    }

    /// Commits everything queued before this call; returns the first commit failure since
    /// the previous flush, if any.
    pub async fn flush(&self) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Command::Flush(reply))
            .await
            .map_err(|_| HistoryError::WriterClosed)?;
        done.await.map_err(|_| HistoryError::WriterClosed)?
    }

    /// Asks the task to commit everything queued before this call and stop.
    pub async fn shutdown(&self) -> Result<()> {
        self.tx
            .send(Command::Shutdown)
            .await
            .map_err(|_| HistoryError::WriterClosed)
    }
}

impl WriterTask {
    /// Waits for the task to finish its final flush.
    pub async fn join(self) -> Result<WriterStats> {
        self.handle
            .await
            .map_err(|e| HistoryError::TaskFailed(e.to_string()))
    }
}

/// While a commit is in flight, up to this many batch sizes keep accumulating (group
/// commit): under a flood each commit grows to amortise its fixed cost; beyond it, intake
/// stops and the channel's backpressure reaches ingest.
const MAX_PENDING_BATCHES: usize = 8;

/// The pause before the first retry of a failed commit; it doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

async fn run(
    mut batcher: Batcher,
    mut rx: mpsc::Receiver<Command>,
    flush_interval: Duration,
) -> WriterStats {
    let max_pending = batcher.batch_size.saturating_mul(MAX_PENDING_BATCHES);
    let mut deadline: Option<Instant> = None;
    loop {
        let idle = batcher.pending.is_empty() && batcher.in_flight.is_none();
        batcher.progress.set_idle(idle);
        tokio::select! {
            biased;
            done = in_flight(&mut batcher.in_flight) => {
                batcher.in_flight = None;
                batcher.record(done);
                if let Some(retry_at) = batcher.retry_at {
                    // A failed commit: the next try waits for its pause, whatever fills up.
                    deadline = Some(retry_at);
                    continue;
                }
                let due = deadline.is_some_and(|d| d <= Instant::now());
                if batcher.pending.len() >= batcher.batch_size || due {
                    deadline = None;
                    batcher.start_commit().await;
                }
            }
            command = rx.recv(), if batcher.pending.len() < max_pending => match command {
                Some(Command::Samples(mut samples)) => {
                    if batcher.pending.is_empty() {
                        deadline = Some(Instant::now() + flush_interval);
                    }
                    batcher.stats.received += samples.len() as u64;
                    batcher.metrics.received.fetch_add(samples.len() as u64, Ordering::Relaxed);
                    batcher.pending.append(&mut samples);
                    if batcher.pending.len() >= batcher.batch_size
                        && batcher.in_flight.is_none()
                        && batcher.retry_at.is_none()
                    {
                        deadline = None;
                        batcher.start_commit().await;
                    }
                }
                Some(Command::Flush(reply)) => {
                    // A flush tries now, even during a retry pause.
                    batcher.start_commit().await;
                    batcher.finish_commit().await;
                    deadline = batcher.retry_at;
                    let result = match batcher.failure.take() {
                        Some(message) => Err(HistoryError::CommitFailed(message)),
                        None => Ok(()),
                    };
                    let _ = reply.send(result); // the caller may have stopped waiting
                }
                Some(Command::Shutdown) | None => break,
            },
            () = sleep_until(deadline), if batcher.in_flight.is_none() => {
                deadline = None;
                batcher.start_commit().await;
            }
        }
    }
    batcher.start_commit().await;
    batcher.finish_commit().await;
    if !batcher.pending.is_empty() {
        let samples = batcher.pending.len();
        tracing::error!(
            samples,
            "history writer stopped with samples it could not store: lost"
        );
        batcher.stats.lost += samples as u64;
    }
    tracing::info!(stats = ?batcher.stats, "history writer stopped");
    batcher.stats
}

/// Sleeps until the deadline, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Waits for the commit in flight, or forever when there is none.
async fn in_flight(commit: &mut Option<Commit>) -> CommitResult {
    match commit {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

type Commit = JoinHandle<(Vec<Sample>, Result<AppendOutcome>)>;
type CommitResult =
    std::result::Result<(Vec<Sample>, Result<AppendOutcome>), tokio::task::JoinError>;

/// Pending samples, the commit in flight and a spare buffer, so steady ingest reuses two
/// allocations instead of one per batch.
struct Batcher {
    store: Arc<dyn HistoryStore>,
    batch_size: usize,
    pending: Vec<Sample>,
    spare: Vec<Sample>,
    in_flight: Option<Commit>,
    stats: WriterStats,
    failure: Option<String>,
    /// After a failed commit: when to try again, and the pause after that.
    retry_at: Option<Instant>,
    retry_pause: Duration,
    progress: Arc<Progress>,
    metrics: Arc<WriterMetrics>,
}

impl Batcher {
    fn new(store: Arc<dyn HistoryStore>, batch_size: usize) -> Self {
        Self {
            store,
            batch_size,
            pending: Vec::with_capacity(batch_size),
            spare: Vec::with_capacity(batch_size),
            in_flight: None,
            stats: WriterStats::default(),
            failure: None,
            retry_at: None,
            retry_pause: RETRY_FIRST,
            progress: Progress::new(),
            metrics: Arc::default(),
        }
    }

    /// Hands the pending samples to a blocking-pool commit, after the previous one ends.
    async fn start_commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.finish_commit().await;
        self.retry_at = None;
        let mut batch = std::mem::replace(&mut self.pending, std::mem::take(&mut self.spare));
        let store = Arc::clone(&self.store);
        let metrics = Arc::clone(&self.metrics);
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            // Key order: each metric's pages are visited once per commit. The sort is stable,
            // so of two copies of one (metric, ts) in a batch the first to arrive is kept.
            batch.sort_by_key(|s| (s.metric, s.ts));
            let started = std::time::Instant::now();
            let result = store.append(&batch);
            if result.is_ok() {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                metrics.commit_micros.fetch_add(micros, Ordering::Relaxed);
            }
            (batch, result)
        }));
    }

    /// Waits for the commit in flight, if any, and records how it went.
    async fn finish_commit(&mut self) {
        if let Some(commit) = self.in_flight.take() {
            let done = commit.await;
            self.record(done);
        }
    }

    fn record(&mut self, done: CommitResult) {
        match done {
            Ok((mut batch, result)) => {
                self.stats.commits += 1;
                match result {
                    Ok(outcome) => {
                        self.stats.stored.add(outcome);
                        let landed = batch.len() as u64;
                        self.metrics.committed.fetch_add(landed, Ordering::Relaxed);
                        self.progress.beat();
                        self.retry_pause = RETRY_FIRST;
                    }
                    Err(e) => {
                        self.record_failure(batch.len(), e.to_string());
                        // Back in front of what came since; the commit sorts anyway.
                        batch.append(&mut self.pending);
                        std::mem::swap(&mut batch, &mut self.pending);
                    }
                }
                batch.clear();
                if batch.capacity() > self.spare.capacity() {
                    self.spare = batch;
                }
            }
            // The commit task panicked: its samples are gone with it.
            Err(e) => {
                tracing::error!(error = %e, "history commit task failed: its samples are lost");
                self.failure
                    .get_or_insert(format!("commit task failed: {e}"));
            }
        }
    }

    fn record_failure(&mut self, samples: usize, message: String) {
        let pause = self.retry_pause;
        tracing::error!(samples, error = %message, retry_in = ?pause, "history batch not stored; kept for a retry");
        self.stats.failed_commits += 1;
        self.metrics.failed_commits.fetch_add(1, Ordering::Relaxed);
        self.retry_at = Some(Instant::now() + pause);
        self.retry_pause = (pause * 2).min(RETRY_MAX);
        self.failure.get_or_insert(message);
    }
}
