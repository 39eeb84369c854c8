//! Delays between connect attempts: exponential, capped, with full jitter, so gateways
//! that lost the broker together do not come back together.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff between connect attempts, with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffSettings {
    pub min: Duration,
    pub max: Duration,
}

/// The next delay grows as `min * 2^attempt` up to `max`; each delay is drawn uniformly
/// from `[ceiling / 2, ceiling]` (never zero, never more than the cap).
#[derive(Debug, Clone)]
pub struct Backoff {
    settings: BackoffSettings,
    attempt: u32,
}

impl Backoff {
    pub fn new(settings: BackoffSettings) -> Backoff {
        Backoff {
            settings,
            attempt: 0,
        }
    }

    /// After a session that worked: the next failure starts from `min` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .settings
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.settings.max);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let floor_ms = ceiling_ms / 2;
        Duration::from_millis(rand::rng().random_range(floor_ms..=ceiling_ms))
    }
}

/// The random start-up delay in `0..=max`.
pub fn startup_delay(max: Duration) -> Duration {
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=max_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_stays_in_the_jitter_window() {
        let mut b = Backoff::new(BackoffSettings {
            min: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        });
        let ceilings = [100, 200, 400, 800, 1000, 1000, 1000];
        for ceiling in ceilings {
            let d = b.next_delay().as_millis() as u64;
            assert!((ceiling / 2..=ceiling).contains(&d), "{d} vs {ceiling}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn startup_delay_stays_under_its_maximum() {
        assert_eq!(startup_delay(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(startup_delay(Duration::from_millis(50)) <= Duration::from_millis(50));
        }
    }
}
