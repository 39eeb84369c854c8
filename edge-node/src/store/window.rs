//! The keep-alive gap: what was published live and not yet confirmed by the link. A TCP
//! link can die without a word (or a satellite accelerator may keep acknowledging TCP for
//! a peer that is gone); QoS 0 publishes then go nowhere. The session confirms the link
//! with a probe the broker must answer; what was recorded before an answered probe is
//! forgotten, and when the link is declared down the rest is appended to the store and
//! replayed as historical (the host de-duplicates by metric and timestamp).

use super::codec::StoredSample;
use super::config::StoreConfig;

/// A ring of recently published samples, bounded by count. Its slots are allocated once
/// and reused: recording a scalar sample allocates nothing.
#[derive(Debug)]
pub struct SentWindow {
    /// Logically `slots[(head + i) % capacity]` for `i < len`, oldest first.
    slots: Vec<StoredSample>,
    head: usize,
    len: usize,
    capacity: usize,
    /// Samples recorded since creation: the marks [`SentWindow::confirm`] takes.
    recorded: u64,
    evicted_by_count: u64,
}

impl SentWindow {
    /// Keeps at most `capacity` unconfirmed samples.
    pub fn new(capacity: usize) -> SentWindow {
        let capacity = capacity.max(1);
        SentWindow {
            slots: Vec::with_capacity(capacity),
            head: 0,
            len: 0,
            capacity,
            recorded: 0,
            evicted_by_count: 0,
        }
    }

    pub fn from_config(config: &StoreConfig) -> SentWindow {
        SentWindow::new(config.sent_window_samples)
    }

    /// Remembers `sample`, just published live.
    pub fn record(&mut self, sample: &StoredSample) {
        if self.len == self.capacity {
            // More unconfirmed samples than the ring holds: the count bound wins.
            self.head = (self.head + 1) % self.capacity;
            self.len -= 1;
            self.evicted_by_count += 1;
        }
        let at = (self.head + self.len) % self.capacity;
        if at < self.slots.len() {
            self.slots[at].clone_from(sample);
        } else {
            self.slots.push(sample.clone());
        }
        self.len += 1;
        self.recorded += 1;
    }

    /// The position after the newest recorded sample, for a later [`SentWindow::confirm`].
    pub fn mark(&self) -> u64 {
        self.recorded
    }

    /// The link confirmed everything published before `mark`: forget it.
    pub fn confirm(&mut self, mark: u64) {
        let newer = usize::try_from(self.recorded.saturating_sub(mark)).unwrap_or(usize::MAX);
        let confirmed = self.len.saturating_sub(newer);
        self.head = (self.head + confirmed) % self.capacity;
        self.len -= confirmed;
    }

    /// Moves the window's samples, oldest first, to the end of `out` and empties it.
    pub fn drain_into(&mut self, out: &mut Vec<StoredSample>) {
        out.reserve(self.len);
        for i in 0..self.len {
            out.push(self.slots[(self.head + i) % self.capacity].clone());
        }
        self.head = (self.head + self.len) % self.capacity;
        self.len = 0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Samples pushed out by the count bound before the link confirmed them: the
    /// unconfirmed stretch was longer than the window could hold.
    pub fn evicted_by_count(&self) -> u64 {
        self.evicted_by_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::{DeviceId, Quality, Value};

    fn sample(alias: u64, ts: u64) -> StoredSample {
        StoredSample {
            device: Some(DeviceId(1)),
            alias,
            timestamp_ms: ts,
            value: Value::F32(alias as f32),
            quality: Quality::Good,
        }
    }

    fn drained(w: &mut SentWindow) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        w.drain_into(&mut out);
        out.iter().map(|s| (s.alias, s.timestamp_ms)).collect()
    }

    #[test]
    fn keeps_only_what_the_link_has_not_confirmed() {
        let mut w = SentWindow::new(100);
        for t in 0..4u64 {
            w.record(&sample(t, t * 500));
        }
        // A probe goes out after the fourth sample; two more are published before its answer.
        let mark = w.mark();
        w.record(&sample(4, 2_000));
        w.record(&sample(5, 2_500));
        w.confirm(mark);
        assert_eq!(drained(&mut w), vec![(4, 2_000), (5, 2_500)]);
        assert!(w.is_empty());
        assert_eq!(w.evicted_by_count(), 0);
    }

    #[test]
    fn an_old_mark_confirms_nothing_twice_and_a_new_one_everything() {
        let mut w = SentWindow::new(10);
        w.record(&sample(0, 0));
        let first = w.mark();
        w.record(&sample(1, 1));
        w.confirm(first);
        w.confirm(first);
        assert_eq!(w.len(), 1);
        w.record(&sample(2, 2));
        w.confirm(w.mark());
        assert!(w.is_empty());
    }

    #[test]
    fn count_bound_keeps_the_newest_and_counts_the_rest() {
        let mut w = SentWindow::new(3);
        for t in 0..5u64 {
            w.record(&sample(t, t));
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.evicted_by_count(), 2);
        assert_eq!(drained(&mut w), vec![(2, 2), (3, 3), (4, 4)]);
    }

    #[test]
    fn slots_are_reused_after_wrapping_confirming_and_draining() {
        let mut w = SentWindow::new(4);
        let mut mark = 0;
        for t in 0..1_000u64 {
            w.record(&sample(t, t));
            if t % 89 == 0 {
                w.confirm(mark);
                mark = w.mark();
            }
            if t % 97 == 0 {
                let got = drained(&mut w);
                assert_eq!(got.last(), Some(&(t, t)));
            }
        }
        assert_eq!(
            w.slots.capacity(),
            4,
            "the ring never grows past its capacity"
        );
        let got = drained(&mut w);
        assert_eq!(got, vec![(996, 996), (997, 997), (998, 998), (999, 999)]);
        assert!(drained(&mut w).is_empty());
    }
}
