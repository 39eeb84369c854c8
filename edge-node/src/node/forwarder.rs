//! Store-and-forward in the session: keeps the DDATA samples the link cannot take now and
//! hands them back, paced, for replay flagged historical (the call sequence is the one
//! the [`crate::store`] docs give).
//!
//! Confirmation rule: what went out (live samples in the sent window, replayed batches
//! still in the store) stays until the session reports an answered liveness probe sent
//! after it ([`Forwarder::confirmed`]). A link lost before that stores the live samples
//! again and hands the batches out again; a killed process finds the batches still
//! stored. Duplicates are possible, losses are not: the host de-duplicates by metric and
//! timestamp.
//!
//! With `persist_sent_window`, each live scan is also written ahead into the store's
//! `sent` table before it is published, forgotten there on confirmation, and queued on a
//! link loss or, after a crash, when the store is opened again.
//!
//! Device rule: stored samples go out only as DDATA of a device born in the current
//! session. Replay passes over the samples of devices not born now (they stay queued
//! until the device's next DBIRTH), so a dead device holds up nobody. Past
//! [`HeldDevices::CAPACITY`] devices a dead one cannot be passed over: the batch that
//! reaches it waits for its birth. When the held set changes, replay waits until the
//! batches in flight are confirmed and starts again from the head, so each device's
//! samples still go out in timestamp order.
//!
//! Alias rule: samples are stored under the aliases of the store's alias map
//! ([`Forwarder::assign_aliases`] at start and at each applied tag list), so a stored
//! sample names the same metric whatever the tag list becomes. Samples of tags removed
//! since are never replayed: their batch's ack removes them, and they are counted
//! ([`ForwarderStats::dropped_removed_tag`]) and logged.

use std::collections::VecDeque;
use std::time::Instant;

use tracing::{error, info, warn};

use crate::modbus::{DeviceId, Report, Site};
use crate::store::{
    Batch, BatchId, HeldDevices, ReplayPacer, SentWindow, Store, StoreConfig, StoreError,
    StoredSample, TagAliases,
};

use infra::clock::millis;

/// Depth and drop count changes smaller than this are not logged.
const DEPTH_LOG_STEP: u64 = 1_000;

/// Batches of removed tags' samples alone removed per [`Forwarder::next_batch`]: bounds
/// the work of one call after a large tag removal.
const RETIRED_BATCHES_PER_CALL: usize = 16;

/// The node's store, sent window and replay pacer.
#[derive(Debug)]
pub struct Forwarder {
    store: Store,
    window: SentWindow,
    pacer: ReplayPacer,
    /// The pacer's monotonic clock.
    started: Instant,
    scratch: Vec<StoredSample>,
    /// Replayed batches not yet confirmed, oldest first: hand-out number, id, samples
    /// published, samples of removed tags left out.
    in_flight: VecDeque<(u64, BatchId, u64, u64)>,
    /// Batches handed to the link since start: the batch part of a [`LinkMark`].
    handed_out: u64,
    /// The devices the batches in flight passed over.
    held: HeldDevices,
    /// Stored samples published historical and confirmed since start.
    replayed: u64,
    /// (pacer clock ms, `replayed`) when the replay rate was last measured.
    rate_since: (u64, u64),
    /// Samples per second replayed over the last measured period.
    replay_rate: u64,
    /// Samples whose append the store refused (lost).
    refused: u64,
    /// Stored samples of tags no longer configured, removed unsent.
    dropped_removed_tag: u64,
    /// Live scans are written ahead into the store before they are published.
    persist_sent_window: bool,
    /// The last write-ahead failed (logged once until one succeeds again).
    write_ahead_failing: bool,
    logged_depth: u64,
    logged_dropped: u64,
}

/// What had gone out when a liveness probe was sent: an answer confirms all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkMark {
    window: u64,
    batches: u64,
}

/// What the node metrics show of the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwarderStats {
    pub depth: u64,
    /// Stored bytes, as counted against the store's `max_bytes`.
    pub bytes: u64,
    /// Samples dropped by the caps or the sent window's count bound, or refused.
    pub dropped: u64,
    /// Stored samples of tags removed from the configuration since: removed unsent.
    pub dropped_removed_tag: u64,
    pub oldest_age_ms: u64,
    pub replayed: u64,
    /// Samples per second, over the period before the last [`Forwarder::measure_rate`].
    pub replay_rate: u64,
}

impl Forwarder {
    pub fn open(config: &StoreConfig) -> Result<Forwarder, StoreError> {
        let store = Store::open(config)?;
        if let Some(aside) = store.moved_aside() {
            warn!(path = %aside.display(), "damaged store file moved aside; started a new one");
        }
        let depth = store.depth();
        info!(path = %config.path.display(), depth, recovered = store.recovered(),
              "store-and-forward queue open");
        Ok(Forwarder {
            window: SentWindow::from_config(config),
            pacer: ReplayPacer::from_config(config, 0),
            started: Instant::now(),
            scratch: Vec::with_capacity(config.batch_size),
            in_flight: VecDeque::new(),
            handed_out: 0,
            held: HeldDevices::default(),
            replayed: 0,
            rate_since: (0, 0),
            replay_rate: 0,
            refused: 0,
            dropped_removed_tag: 0,
            persist_sent_window: config.persist_sent_window,
            write_ahead_failing: false,
            logged_depth: depth,
            logged_dropped: 0,
            store,
        })
    }

    /// The aliases of `site`'s tags from the store's alias map (see [`Store::assign_aliases`]),
    /// which is written to the file at once.
    pub fn assign_aliases(&mut self, site: &Site) -> TagAliases {
        let aliases = self.store.assign_aliases(site);
        if let Err(e) = self.store.save_aliases() {
            // The running node is consistent; the file catches up at the next save.
            error!(error = %e, "alias map not saved: a restart now may rename stored samples");
        }
        aliases
    }

    fn mono_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A scan about to be published live: remembered (and written ahead, by config) until
    /// the link confirms it. If the publish then fails, the session ends and
    /// [`Forwarder::link_lost`] stores it.
    pub fn sending_live(&mut self, report: &Report, aliases: &TagAliases) {
        let first_mark = self.window.mark();
        self.fill_scratch(report, aliases);
        for s in &self.scratch {
            self.window.record(s);
        }
        if self.persist_sent_window {
            match self.store.write_ahead(first_mark, &self.scratch) {
                Ok(()) => self.write_ahead_failing = false,
                Err(e) if !self.write_ahead_failing => {
                    self.write_ahead_failing = true;
                    error!(error = %e, "live samples not written ahead: a crash now would lose them");
                }
                Err(_) => {}
            }
        }
        self.scratch.clear();
    }

    /// The scan given to [`Forwarder::sending_live`] went out: debited from the link share.
    pub fn published_live(&mut self, payload_len: usize) {
        let mono = self.mono_ms();
        self.pacer.spend_live(payload_len, mono);
    }

    /// A scan that could not go live: one append.
    pub fn keep(&mut self, report: &Report, aliases: &TagAliases) {
        if report.samples.is_empty() {
            return;
        }
        self.fill_scratch(report, aliases);
        self.append_scratch(false);
    }

    /// Something went out that the link has not confirmed yet: a probe is worth sending.
    pub fn unconfirmed(&self) -> bool {
        !self.window.is_empty() || !self.in_flight.is_empty()
    }

    /// What has gone out so far; pass it to [`Forwarder::confirmed`] when the probe sent
    /// right after it is answered.
    pub fn mark(&self) -> LinkMark {
        LinkMark {
            window: self.window.mark(),
            batches: self.handed_out,
        }
    }

    /// The broker answered a probe sent after `mark`: everything before it arrived. Live
    /// samples are forgotten, replayed batches leave the queue.
    pub fn confirmed(&mut self, mark: LinkMark) {
        self.window.confirm(mark.window);
        if self.persist_sent_window
            && let Err(e) = self.store.forget_sent(mark.window)
        {
            // Harmless but for duplicates: what stays is queued at the next link loss.
            warn!(error = %e, "confirmed live samples not forgotten in the store");
        }
        while let Some(&(number, id, _, retired)) = self.in_flight.front() {
            if number >= mark.batches {
                break;
            }
            self.in_flight.pop_front();
            match self.store.ack(id) {
                Ok(0) => {}
                Ok(n) => {
                    self.replayed += n.saturating_sub(retired);
                    self.count_removed_tag(retired.min(n));
                }
                Err(e) => error!(error = %e, "replayed batch not acked: it will be sent again"),
            }
        }
        self.log_changes();
    }

    /// The link or the host is gone: unconfirmed live samples are stored, unconfirmed
    /// batches will be handed out again.
    pub fn link_lost(&mut self) {
        if !self.in_flight.is_empty() {
            let samples: u64 = self.in_flight.iter().map(|b| b.2).sum();
            info!(
                batches = self.in_flight.len(),
                samples, "link lost: unconfirmed replay will be sent again"
            );
        }
        self.in_flight.clear();
        self.scratch.clear();
        self.window.drain_into(&mut self.scratch);
        if !self.scratch.is_empty() {
            info!(
                samples = self.scratch.len(),
                "link lost: recent live samples stored again"
            );
        }
        if !self.scratch.is_empty() || self.persist_sent_window {
            self.append_scratch(true);
        }
    }

    /// The scratch buffer holds `report`'s samples, as stored.
    fn fill_scratch(&mut self, report: &Report, aliases: &TagAliases) {
        self.scratch.clear();
        self.scratch.extend(
            report
                .samples
                .iter()
                .filter_map(|s| stored(report.device, s, aliases)),
        );
    }

    fn count_removed_tag(&mut self, n: u64) {
        if n > 0 {
            self.dropped_removed_tag += n;
            warn!(
                samples = n,
                total = self.dropped_removed_tag,
                "stored samples of tags removed from the configuration dropped"
            );
        }
    }

    /// Appends the scratch samples; `unconfirmed` when they are the sent window's, whose
    /// written-ahead copies go in the same transaction.
    fn append_scratch(&mut self, unconfirmed: bool) {
        let appended = match unconfirmed {
            true => self.store.append_unconfirmed(&self.scratch),
            false => self.store.append(&self.scratch),
        };
        if let Err(e) = appended {
            self.refused += self.scratch.len() as u64;
            error!(error = %e, samples = self.scratch.len(), "samples not stored: lost");
        }
        self.scratch.clear();
        self.log_changes();
    }

    /// The next stored samples to replay (after those in flight, passing over `held`
    /// devices), if the pacer allows and the queue has any.
    pub fn next_batch(&mut self, held: HeldDevices) -> Option<Batch> {
        if held != self.held {
            if !self.in_flight.is_empty() {
                // Samples of a device let go now lie behind the batches in flight.
                return None;
            }
            self.held = held;
        }
        let grant = self.pacer.grant(self.mono_ms())?;
        for _ in 0..RETIRED_BATCHES_PER_CALL {
            let after = self.in_flight.back().map(|b| b.1);
            let batch =
                match self
                    .store
                    .peek_batch_after(after, held, grant.max_samples, grant.max_bytes)
                {
                    Ok(batch) => batch,
                    Err(e) => {
                        error!(error = %e, "store unreadable: replay paused");
                        return None;
                    }
                };
            if !batch.is_empty() {
                return Some(batch);
            }
            // Only samples of removed tags: nothing to send, they go now.
            let id = batch.id()?;
            match self.store.ack(id) {
                Ok(n) => self.count_removed_tag(n),
                Err(e) => {
                    error!(error = %e, "samples of removed tags not removed: replay paused");
                    return None;
                }
            }
        }
        None
    }

    /// `batch` was handed to the MQTT client in `payload_len` bytes: it leaves the queue
    /// once a probe confirms it.
    pub fn replayed(&mut self, batch: &Batch, payload_len: usize) {
        let mono = self.mono_ms();
        self.pacer.spend_replay(payload_len, mono);
        if let Some(id) = batch.id() {
            self.in_flight
                .push_back((self.handed_out, id, batch.len() as u64, batch.retired()));
            self.handed_out += 1;
        }
    }

    /// Closes a replay rate period (the session calls it each metrics period) and logs
    /// the queue while a replay runs.
    pub fn measure_rate(&mut self, now: u64) {
        let mono = self.mono_ms();
        let (since, replayed_then) = self.rate_since;
        let elapsed = mono.saturating_sub(since).max(1);
        self.replay_rate = (self.replayed - replayed_then) * 1000 / elapsed;
        self.rate_since = (mono, self.replayed);
        if self.replay_rate > 0 {
            let stats = self.stats(now);
            info!(
                depth = stats.depth,
                oldest_age_ms = stats.oldest_age_ms,
                dropped = stats.dropped,
                replay_rate = self.replay_rate,
                "replaying stored samples"
            );
        }
    }

    /// The store's age cap.
    pub fn expire(&mut self, now: u64) {
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
            bytes: self.store.bytes(),
            dropped: self.dropped(),
            dropped_removed_tag: self.dropped_removed_tag,
            oldest_age_ms,
            replayed: self.replayed,
            replay_rate: self.replay_rate,
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

/// A sample as stored; `None` for a tag `aliases` does not know (a report of a site
/// replaced since).
fn stored(
    device: DeviceId,
    s: &crate::modbus::Sample,
    aliases: &TagAliases,
) -> Option<StoredSample> {
    Some(StoredSample {
        device: Some(device),
        alias: aliases.alias(s.tag)?,
        timestamp_ms: millis(s.timestamp),
        value: s.value.clone(),
        quality: s.quality,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use infra::clock::now_ms;

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

    fn forwarder(dir: &std::path::Path) -> Forwarder {
        let config = StoreConfig {
            path: dir.join("q.sqlite"),
            batch_size: 2,
            replay_bytes_per_s: 1_000_000,
            ..StoreConfig::default()
        };
        Forwarder::open(&config).unwrap()
    }

    /// Hands out every batch the pacer allows (bounded), as the session does.
    fn replay_all(f: &mut Forwarder) -> Vec<Value> {
        // The pacer's bucket starts empty: let it fill a little.
        std::thread::sleep(Duration::from_millis(20));
        let mut replayed = Vec::new();
        for _ in 0..10 {
            let Some(batch) = f.next_batch(HeldDevices::default()) else {
                break;
            };
            replayed.extend(batch.samples().iter().map(|s| s.value.clone()));
            f.replayed(&batch, 50);
        }
        replayed
    }

    /// The aliases of a one-device site of five tags (`report`'s).
    fn aliases() -> TagAliases {
        TagAliases::positional(&crate::store::test_site(&[(
            "d",
            &["t0", "t1", "t2", "t3", "t4"],
        )]))
    }

    impl Forwarder {
        fn keep_positional(&mut self, report: &Report) {
            self.keep(report, &aliases());
        }
    }

    /// A scan published live, as the session does it.
    fn live(f: &mut Forwarder, report: &Report) {
        f.sending_live(report, &aliases());
        f.published_live(40);
    }

    fn values(v: &[u16]) -> Vec<Value> {
        v.iter().copied().map(Value::U16).collect()
    }

    #[test]
    fn unconfirmed_live_samples_are_stored_at_link_loss_and_replayed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = forwarder(dir.path());
        let now = now_ms();
        // Sample 1 went out live and a probe confirmed it; 2 went out unconfirmed just
        // before the link died; 3..5 came while it was down.
        live(&mut f, &report(&[1], now));
        let mark = f.mark();
        live(&mut f, &report(&[2], now + 1));
        f.confirmed(mark);
        assert!(f.unconfirmed());
        f.link_lost();
        f.keep_positional(&report(&[3, 4, 5], now + 100));
        assert_eq!(f.stats(now + 200).depth, 4);
        assert!(f.stats(now + 200).oldest_age_ms >= 199);

        assert_eq!(replay_all(&mut f), values(&[2, 3, 4, 5]));
        // Handed out, not yet confirmed: still stored.
        assert_eq!(f.stats(now + 300).depth, 4);
        f.confirmed(f.mark());
        let stats = f.stats(now + 300);
        assert_eq!((stats.depth, stats.replayed, stats.dropped), (0, 4, 0));
        assert!(!f.unconfirmed());
        // The window was drained: a second loss stores nothing again.
        f.link_lost();
        assert_eq!(f.stats(now + 300).depth, 0);
    }

    #[test]
    fn replay_lost_before_its_confirmation_is_handed_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = forwarder(dir.path());
        let now = now_ms();
        f.keep_positional(&report(&[1, 2, 3, 4, 5], now));
        let first = replay_all(&mut f);
        assert_eq!(first, values(&[1, 2, 3, 4, 5]));
        // The link is lost before any probe was answered.
        f.link_lost();
        let again = replay_all(&mut f);
        assert_eq!(again, first, "nothing confirmed: everything goes again");
        let mark = f.mark();
        f.confirmed(mark);
        assert_eq!(f.stats(now).depth, 0);
        assert_eq!(f.stats(now).replayed, 5);
        std::thread::sleep(Duration::from_millis(10));
        f.measure_rate(now);
        assert!(
            f.stats(now).replay_rate > 0,
            "5 samples confirmed since start"
        );
        std::thread::sleep(Duration::from_millis(10));
        f.measure_rate(now);
        assert_eq!(f.stats(now).replay_rate, 0, "none since the last period");
    }

    #[test]
    fn a_probe_confirms_only_the_batches_handed_out_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = forwarder(dir.path());
        let now = now_ms();
        f.keep_positional(&report(&[1, 2, 3, 4], now));
        std::thread::sleep(Duration::from_millis(20));
        let b1 = f.next_batch(HeldDevices::default()).unwrap();
        f.replayed(&b1, 50);
        let mark = f.mark();
        let b2 = f.next_batch(HeldDevices::default()).unwrap();
        assert_ne!(
            b1.samples(),
            b2.samples(),
            "the second batch follows the first"
        );
        f.replayed(&b2, 50);
        f.confirmed(mark);
        assert_eq!(f.stats(now).depth, 2);
        f.link_lost();
        assert_eq!(replay_all(&mut f), values(&[3, 4]));
    }

    #[test]
    fn unconfirmed_live_samples_of_a_killed_process_are_replayed_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let mut f = forwarder(dir.path());
        live(&mut f, &report(&[1, 2], now));
        let mark = f.mark();
        live(&mut f, &report(&[3], now + 1));
        f.confirmed(mark);
        live(&mut f, &report(&[4, 5], now + 2));
        // Killed: no link loss, no goodbye; only what is in the file survives.
        drop(f);
        let mut f = forwarder(dir.path());
        assert_eq!(f.store.recovered(), 3);
        assert_eq!(replay_all(&mut f), values(&[3, 4, 5]));

        // Without persistence the same crash loses them: that is what the option buys.
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            path: dir.path().join("q.sqlite"),
            persist_sent_window: false,
            ..StoreConfig::default()
        };
        let mut f = Forwarder::open(&config).unwrap();
        live(&mut f, &report(&[1, 2], now));
        drop(f);
        let f = Forwarder::open(&config).unwrap();
        assert_eq!((f.store.recovered(), f.stats(now).depth), (0, 0));
    }

    #[test]
    fn a_link_loss_moves_the_written_ahead_samples_once() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let mut f = forwarder(dir.path());
        live(&mut f, &report(&[1, 2], now));
        f.link_lost();
        assert_eq!(f.stats(now).depth, 2);
        // Reopened: the copies went with the loss, nothing comes twice.
        drop(f);
        let mut f = forwarder(dir.path());
        assert_eq!(f.store.recovered(), 0);
        assert_eq!(replay_all(&mut f), values(&[1, 2]));
    }

    /// A scan of `device` with `(tag index, value)` samples.
    fn scan(device: u32, samples: &[(u32, u16)], at_ms: u64) -> Report {
        Report {
            device: DeviceId(device),
            scan_class: Some(0),
            samples: samples
                .iter()
                .map(|&(tag, v)| Sample {
                    tag: TagId(tag),
                    value: Value::U16(v),
                    quality: Quality::Good,
                    timestamp: SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms),
                })
                .collect(),
        }
    }

    #[test]
    fn stored_samples_keep_their_metric_across_a_changed_tag_list_and_removed_tags_drop() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let old = crate::store::test_site(&[("a", &["x", "y"]), ("b", &["z"])]);
        let mut f = forwarder(dir.path());
        let aliases = f.assign_aliases(&old);
        f.keep(&scan(0, &[(0, 1), (1, 2)], now), &aliases);
        f.keep(&scan(1, &[(2, 3)], now), &aliases);
        f.keep(&scan(0, &[(1, 4), (1, 5)], now + 50), &aliases);
        drop(f);
        // Restarted with a device inserted first, a tag inserted before x, y removed.
        let new = crate::store::test_site(&[("c", &["w"]), ("b", &["z"]), ("a", &["new", "x"])]);
        let mut f = forwarder(dir.path());
        let aliases = f.assign_aliases(&new);
        std::thread::sleep(Duration::from_millis(20));
        let mut replayed = Vec::new();
        for _ in 0..10 {
            let Some(batch) = f.next_batch(HeldDevices::default()) else {
                break;
            };
            replayed.extend(batch.samples().iter().map(|s| {
                let tag = aliases.tag(s.alias).expect("a tag of the new list");
                let device = new.tags[tag.index()].device;
                assert_eq!(s.device, Some(DeviceId(device as u32)));
                (
                    new.devices[device].name.clone(),
                    new.tags[tag.index()].name.clone(),
                    s.value.clone(),
                )
            }));
            f.replayed(&batch, 50);
        }
        let named = |d: &str, t: &str, v| (d.to_owned(), t.to_owned(), Value::U16(v));
        assert_eq!(replayed, [named("a", "x", 1), named("b", "z", 3)]);
        // The last batch held y's sample alone: it went at once.
        assert_eq!(f.stats(now).dropped_removed_tag, 1);
        f.confirmed(f.mark());
        let stats = f.stats(now);
        assert_eq!(
            (
                stats.depth,
                stats.replayed,
                stats.dropped_removed_tag,
                stats.dropped
            ),
            (0, 2, 3, 0)
        );
    }
}
