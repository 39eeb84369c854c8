//! Store-and-forward in the session: keeps the DDATA samples the link cannot take now and
//! hands them back, paced, for replay flagged historical (the call sequence is the one
//! the [`crate::store`] docs give).
//!
//! Device rule: stored samples go out only as DDATA of a device born in the current
//! session. A replay batch that holds a sample of a device not born now waits (nothing
//! acked) until that device's next DBIRTH, so nothing is published against a dead
//! device and nothing is lost; later samples of other devices wait behind it.

use std::time::Instant;

use tracing::{error, info, warn};

use crate::modbus::{DeviceId, Report};
use crate::store::{Batch, ReplayPacer, SentWindow, Store, StoreConfig, StoreError, StoredSample};

use super::catalog::millis;

/// Depth and drop count changes smaller than this are not logged.
const DEPTH_LOG_STEP: u64 = 1_000;

/// The node's store, sent window and replay pacer.
#[derive(Debug)]
pub struct Forwarder {
    store: Store,
    window: SentWindow,
    pacer: ReplayPacer,
    /// The pacer's monotonic clock.
    started: Instant,
    scratch: Vec<StoredSample>,
    /// Stored samples published historical since start.
    replayed: u64,
    /// Samples whose append the store refused (lost).
    refused: u64,
    logged_depth: u64,
    logged_dropped: u64,
}

/// What the node metrics show of the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwarderStats {
    pub depth: u64,
    /// Samples dropped by the caps or the sent window's count bound, or refused.
    pub dropped: u64,
    pub oldest_age_ms: u64,
    pub replayed: u64,
}

impl Forwarder {
    pub fn open(config: &StoreConfig) -> Result<Forwarder, StoreError> {
        let store = Store::open(config)?;
        if let Some(aside) = store.moved_aside() {
            warn!(path = %aside.display(), "damaged store file moved aside; started a new one");
        }
        let depth = store.depth();
        info!(path = %config.path.display(), depth, "store-and-forward queue open");
        Ok(Forwarder {
            window: SentWindow::from_config(config),
            pacer: ReplayPacer::from_config(config, 0),
            started: Instant::now(),
            scratch: Vec::with_capacity(config.batch_size),
            replayed: 0,
            refused: 0,
            logged_depth: depth,
            logged_dropped: 0,
            store,
        })
    }

    fn mono_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A scan published live: remembered for the keep-alive gap and debited from the
    /// link share.
    pub fn published_live(&mut self, report: &Report, payload_len: usize, now: u64) {
        for s in &report.samples {
            self.window.record(&stored(report.device, s), now);
        }
        let mono = self.mono_ms();
        self.pacer.spend_live(payload_len, mono);
    }

    /// A scan that could not go live: one append.
    pub fn keep(&mut self, report: &Report) {
        if report.samples.is_empty() {
            return;
        }
        self.scratch.clear();
        self.scratch
            .extend(report.samples.iter().map(|s| stored(report.device, s)));
        self.append_scratch();
    }

    /// The link or the host is gone: what went out in the last keep-alives may be lost.
    pub fn link_lost(&mut self) {
        self.scratch.clear();
        self.window.drain_into(&mut self.scratch);
        if !self.scratch.is_empty() {
            info!(
                samples = self.scratch.len(),
                "link lost: recent live samples stored again"
            );
            self.append_scratch();
        }
    }

    fn append_scratch(&mut self) {
        if let Err(e) = self.store.append(&self.scratch) {
            self.refused += self.scratch.len() as u64;
            error!(error = %e, samples = self.scratch.len(), "samples not stored: lost");
        }
        self.scratch.clear();
        self.log_changes();
    }

    /// The next stored samples to replay, if the pacer allows and the queue has any.
    pub fn next_batch(&mut self) -> Option<Batch> {
        let grant = self.pacer.grant(self.mono_ms())?;
        match self.store.peek_batch(grant.max_samples, grant.max_bytes) {
            Ok(batch) if !batch.is_empty() => Some(batch),
            Ok(_) => None,
            Err(e) => {
                error!(error = %e, "store unreadable: replay paused");
                None
            }
        }
    }

    /// `batch` was handed to the MQTT client in `payload_len` bytes: it leaves the queue.
    pub fn replayed(&mut self, batch: &Batch, payload_len: usize) {
        let mono = self.mono_ms();
        self.pacer.spend_replay(payload_len, mono);
        if let Some(id) = batch.id() {
            match self.store.ack(id) {
                Ok(n) => self.replayed += n,
                Err(e) => error!(error = %e, "replayed batch not acked: it will be sent again"),
            }
        }
        self.log_changes();
    }

    /// The age cap and the sent window's age bound.
    pub fn expire(&mut self, now: u64) {
        self.window.expire(now);
        if let Err(e) = self.store.expire(now) {
            error!(error = %e, "store age cap not applied");
        }
        self.log_changes();
    }

    pub fn stats(&self, now: u64) -> ForwarderStats {
        let oldest_age_ms = match self.store.oldest_age(now) {
            Ok(age) => age.map_or(0, |a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
            Err(_) => 0,
        };
        ForwarderStats {
            depth: self.store.depth(),
            dropped: self.dropped(),
            oldest_age_ms,
            replayed: self.replayed,
        }
    }

    fn dropped(&self) -> u64 {
        self.store.dropped() + self.window.evicted_by_count() + self.refused
    }

    fn log_changes(&mut self) {
        let depth = self.store.depth();
        let dropped = self.dropped();
        // The first drop, then every DEPTH_LOG_STEP more: a full store drops each scan.
        let new_drops = dropped.saturating_sub(self.logged_dropped);
        if new_drops > 0 && (self.logged_dropped == 0 || new_drops >= DEPTH_LOG_STEP) {
            warn!(dropped, new = new_drops, depth, "store dropped samples");
            self.logged_dropped = dropped;
            self.logged_depth = depth;
        } else if depth.abs_diff(self.logged_depth) >= DEPTH_LOG_STEP
            || (depth == 0 && self.logged_depth != 0)
        {
            info!(depth, "store depth");
            self.logged_depth = depth;
        }
    }
}

fn stored(device: DeviceId, s: &crate::modbus::Sample) -> StoredSample {
    StoredSample {
        device: Some(device),
        alias: super::catalog::Catalog::alias(s.tag),
        timestamp_ms: millis(s.timestamp),
        value: s.value.clone(),
        quality: s.quality,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::modbus::{Quality, Sample, TagId, Value};

    fn report(values: &[u16], at_ms: u64) -> Report {
        Report {
            device: DeviceId(0),
            scan_class: Some(0),
            samples: values
                .iter()
                .enumerate()
                .map(|(i, &v)| Sample {
                    tag: TagId(i as u32),
                    value: Value::U16(v),
                    quality: Quality::Good,
                    timestamp: SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms),
                })
                .collect(),
        }
    }

    #[test]
    fn kept_and_lost_live_samples_replay_once_and_empty_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            path: dir.path().join("q.sqlite"),
            batch_size: 2,
            replay_bytes_per_s: 1_000_000,
            ..StoreConfig::default()
        };
        let mut f = Forwarder::open(&config).unwrap();
        let now = millis(SystemTime::now());
        // Two samples went out live just before the link died, three more while it was down.
        f.published_live(&report(&[1, 2], now), 40, now);
        f.link_lost();
        f.keep(&report(&[3, 4, 5], now + 100));
        assert_eq!(f.stats(now + 200).depth, 5);
        assert!(f.stats(now + 200).oldest_age_ms >= 200);

        // The pacer's bucket starts empty: let it fill a little.
        std::thread::sleep(Duration::from_millis(20));
        let mut replayed = Vec::new();
        for _ in 0..10 {
            let Some(batch) = f.next_batch() else { break };
            replayed.extend(batch.samples().iter().map(|s| s.value.clone()));
            f.replayed(&batch, 50);
        }
        let want: Vec<Value> = [1, 2, 3, 4, 5].into_iter().map(Value::U16).collect();
        assert_eq!(replayed, want);
        let stats = f.stats(now + 300);
        assert_eq!((stats.depth, stats.replayed, stats.dropped), (0, 5, 0));
        // The window was drained: a second loss stores nothing again.
        f.link_lost();
        assert_eq!(f.stats(now + 300).depth, 0);
    }
}
