//! The keep-alive gap: what was published live in the last ~1.5 keep-alives. A TCP link
//! can die without a word; until the keep-alive notices, publishes go nowhere. When the
//! link is declared down these samples are appended to the store and replayed as
//! historical (the host de-duplicates by metric and timestamp).

use super::codec::StoredSample;
use super::config::StoreConfig;

/// A ring of recently published samples, bounded by age and by count. Its slots are
/// allocated once and reused: recording a scalar sample allocates nothing.
#[derive(Debug)]
pub struct SentWindow {
    /// (publish time ms, sample); logically `slots[(head + i) % capacity]` for `i < len`.
    slots: Vec<(u64, StoredSample)>,
    head: usize,
    len: usize,
    capacity: usize,
    window_ms: u64,
    evicted_by_count: u64,
}

impl SentWindow {
    /// Keeps samples published within `window_ms`, at most `capacity` of them.
    pub fn new(window_ms: u64, capacity: usize) -> SentWindow {
        let capacity = capacity.max(1);
        SentWindow {
            slots: Vec::with_capacity(capacity),
            head: 0,
            len: 0,
            capacity,
            window_ms,
            evicted_by_count: 0,
        }
    }

    pub fn from_config(config: &StoreConfig) -> SentWindow {
        SentWindow::new(config.sent_window_ms, config.sent_window_samples)
    }

    /// Remembers `sample`, published live at `now_ms`.
    pub fn record(&mut self, sample: &StoredSample, now_ms: u64) {
        self.expire(now_ms);
        if self.len == self.capacity {
            // Full of samples younger than the window: the count bound wins.
            self.head = (self.head + 1) % self.capacity;
            self.len -= 1;
            self.evicted_by_count += 1;
        }
        let at = (self.head + self.len) % self.capacity;
        if at < self.slots.len() {
            let slot = &mut self.slots[at];
            slot.0 = now_ms;
            slot.1.clone_from(sample);
        } else {
            self.slots.push((now_ms, sample.clone()));
        }
        self.len += 1;
    }

    /// Forgets samples published before `now_ms - window_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let cutoff = now_ms.saturating_sub(self.window_ms);
        while self.len > 0 && self.slots[self.head].0 < cutoff {
            self.head = (self.head + 1) % self.capacity;
            self.len -= 1;
        }
    }

    /// Moves the window's samples, oldest first, to the end of `out` and empties it.
    pub fn drain_into(&mut self, out: &mut Vec<StoredSample>) {
        out.reserve(self.len);
        for i in 0..self.len {
            out.push(self.slots[(self.head + i) % self.capacity].1.clone());
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

    /// Samples pushed out by the count bound while still inside the time window: the
    /// keep-alive gap was larger than the window could hold.
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
    fn keeps_only_what_was_published_within_the_window() {
        let mut w = SentWindow::new(1_500, 100);
        for t in 0..10u64 {
            w.record(&sample(t, t * 500), t * 500);
        }
        // At 4500 the window reaches back to 3000.
        assert_eq!(
            drained(&mut w),
            vec![(6, 3000), (7, 3500), (8, 4000), (9, 4500)]
        );
        assert!(w.is_empty());
        assert_eq!(w.evicted_by_count(), 0);
    }

    #[test]
    fn count_bound_keeps_the_newest_and_counts_the_rest() {
        let mut w = SentWindow::new(60_000, 3);
        for t in 0..5u64 {
            w.record(&sample(t, t), t);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.evicted_by_count(), 2);
        assert_eq!(drained(&mut w), vec![(2, 2), (3, 3), (4, 4)]);
    }

    #[test]
    fn slots_are_reused_after_wrapping_and_draining() {
        let mut w = SentWindow::new(10, 4);
        for t in 0..1_000u64 {
            w.record(&sample(t, t), t);
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
        // Empty after draining; expire on an empty window is a no-op.
        w.expire(u64::MAX);
        assert!(drained(&mut w).is_empty());
    }
}
