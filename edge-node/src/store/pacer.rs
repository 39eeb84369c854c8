//! Replay pacing: a token bucket over the forwarder's share of the link. Live data is
//! always sent and always debited; replay only gets what is left, in batches, so a long
//! flush never delays a live value past the scan it belongs to.

use super::config::StoreConfig;

/// How much stored data may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayGrant {
    pub max_samples: usize,
    pub max_bytes: usize,
}

/// Pure pacing logic; the caller passes the clock (milliseconds, monotonic).
#[derive(Debug, Clone)]
pub struct ReplayPacer {
    bytes_per_s: u64,
    batch_size: usize,
    /// Budget in byte-milliseconds (bytes x 1000), may be negative after live bursts.
    tokens: i64,
    /// The bucket holds at most one second of budget, and owes at most as much.
    burst: i64,
    last_ms: u64,
}

impl ReplayPacer {
    /// `bytes_per_s` of link for live plus replay, replay batches of `batch_size`.
    /// The bucket starts empty at `now_ms`.
    pub fn new(bytes_per_s: u64, batch_size: usize, now_ms: u64) -> ReplayPacer {
        let burst = i64::try_from(bytes_per_s.max(1).saturating_mul(1000)).unwrap_or(i64::MAX);
        ReplayPacer {
            bytes_per_s: bytes_per_s.max(1),
            batch_size: batch_size.max(1),
            tokens: 0,
            burst,
            last_ms: now_ms,
        }
    }

    pub fn from_config(config: &StoreConfig, now_ms: u64) -> ReplayPacer {
        ReplayPacer::new(config.replay_bytes_per_s, config.batch_size, now_ms)
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let add = i64::try_from(elapsed.saturating_mul(self.bytes_per_s)).unwrap_or(i64::MAX);
        self.tokens = self.tokens.saturating_add(add).min(self.burst);
    }

    fn debit(&mut self, bytes: usize) {
        let cost = i64::try_from(bytes)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        self.tokens = self.tokens.saturating_sub(cost).max(-self.burst);
    }

    /// Live bytes published at `now_ms`: never delayed, always debited.
    pub fn spend_live(&mut self, bytes: usize, now_ms: u64) {
        self.refill(now_ms);
        self.debit(bytes);
    }

    /// Replay bytes published at `now_ms`.
    pub fn spend_replay(&mut self, bytes: usize, now_ms: u64) {
        self.refill(now_ms);
        self.debit(bytes);
    }

    /// What replay may send now, after this scan's live data: `None` while the budget
    /// is spent.
    pub fn grant(&mut self, now_ms: u64) -> Option<ReplayGrant> {
        self.refill(now_ms);
        (self.tokens >= 1000).then(|| ReplayGrant {
            max_samples: self.batch_size,
            max_bytes: usize::try_from(self.tokens / 1000).unwrap_or(usize::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `secs` of 100 ms scans with `live` bytes each and an endless backlog of
    /// `sample_bytes` samples; returns replayed bytes and replay bytes per scan.
    fn run(rate: u64, live: usize, secs: u64, sample_bytes: usize) -> (usize, Vec<usize>) {
        let mut pacer = ReplayPacer::new(rate, 50, 0);
        let mut total = 0;
        let mut per_scan = Vec::new();
        for scan in 1..=secs * 10 {
            let now = scan * 100;
            if live > 0 {
                pacer.spend_live(live, now);
            }
            let mut this_scan = 0;
            while let Some(grant) = pacer.grant(now) {
                let n = (grant.max_bytes / sample_bytes).clamp(1, grant.max_samples);
                pacer.spend_replay(n * sample_bytes, now);
                this_scan += n * sample_bytes;
            }
            total += this_scan;
            per_scan.push(this_scan);
        }
        (total, per_scan)
    }

    #[test]
    fn replay_alone_holds_the_configured_rate() {
        let (total, _) = run(1_000, 0, 60, 20);
        // 60 s at 1000 B/s; a batch may overdraw by one sample.
        assert!((59_000..=60_020).contains(&total), "replayed {total} bytes");
    }

    #[test]
    fn replay_fills_only_what_live_leaves() {
        // Live takes 300 B/s of 1000: replay gets the remaining 700.
        let (total, _) = run(1_000, 30, 60, 20);
        assert!((41_000..=42_020).contains(&total), "replayed {total} bytes");
    }

    #[test]
    fn live_above_the_share_starves_replay_not_live() {
        let (total, per_scan) = run(1_000, 200, 10, 20);
        assert_eq!(total, 0);
        assert!(per_scan.iter().all(|&b| b == 0));
    }

    #[test]
    fn batches_are_capped_in_samples() {
        let mut pacer = ReplayPacer::new(1_000_000, 50, 0);
        let grant = pacer.grant(1_000).expect("a full bucket grants");
        assert_eq!(grant.max_samples, 50);
        assert_eq!(grant.max_bytes, 1_000_000, "one second of budget at most");
    }

    #[test]
    fn idle_time_banks_at_most_one_second() {
        let mut pacer = ReplayPacer::new(500, 10, 0);
        assert_eq!(pacer.grant(0), None, "starts empty");
        let grant = pacer.grant(3_600_000).expect("budget after an hour");
        assert_eq!(grant.max_bytes, 500);
        pacer.spend_replay(500, 3_600_000);
        assert_eq!(pacer.grant(3_600_000), None);
        assert_eq!(pacer.grant(3_600_100).map(|g| g.max_bytes), Some(50));
    }

    #[test]
    fn a_clock_going_back_adds_nothing() {
        let mut pacer = ReplayPacer::new(1_000, 10, 10_000);
        assert_eq!(pacer.grant(5_000), None);
        assert_eq!(pacer.grant(10_000), None);
        assert_eq!(pacer.grant(10_010).map(|g| g.max_bytes), Some(10));
    }
}
