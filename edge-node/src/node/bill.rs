//! The link bill: bytes sent and received on the MQTT link in the current UTC hour and
//! UTC day, and the daily byte budget (`economy.daily_budget_bytes`). Past the budget,
//! historical replay pauses until the next UTC day; live values keep going, since they
//! are what the operator pays the link for.
//!
//! The bill reads the process's byte counters (TLS records and MQTT framing included)
//! and a clock the caller gives, so tests can move to the next day.

use std::sync::{Arc, Mutex, PoisonError};

use infra::link::ByteCounters;
use tracing::{info, warn};

/// Milliseconds since the Unix epoch, now.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(infra::clock::now_ms)
}

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

/// The bill of this moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub sent_hour: u64,
    pub received_hour: u64,
    pub sent_today: u64,
    pub received_today: u64,
    /// Historical replay waits for the next UTC day: the budget is spent.
    pub replay_paused: bool,
}

#[derive(Debug, Default)]
struct Marks {
    hour: u64,
    day: u64,
    /// Counter values when the current hour and day began.
    hour_start: (u64, u64),
    day_start: (u64, u64),
    paused: bool,
}

/// Counts the link's bytes per hour and day and keeps the budget.
pub struct Bill {
    bytes: Arc<ByteCounters>,
    clock: Clock,
    /// The daily budget in bytes; 0: none (a new configuration may change it).
    budget: std::sync::atomic::AtomicU64,
    marks: Mutex<Marks>,
}

impl std::fmt::Debug for Bill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bill")
            .field("budget", &self.budget())
            .field("figures", &self.figures())
            .finish()
    }
}

impl Bill {
    pub fn new(bytes: Arc<ByteCounters>, clock: Clock, budget: Option<u64>) -> Bill {
        let now = clock();
        let start = (bytes.sent(), bytes.received());
        Bill {
            marks: Mutex::new(Marks {
                hour: now / HOUR_MS,
                day: now / DAY_MS,
                hour_start: start,
                day_start: start,
                paused: false,
            }),
            bytes,
            clock,
            budget: std::sync::atomic::AtomicU64::new(budget.unwrap_or(0)),
        }
    }

    pub fn budget(&self) -> Option<u64> {
        match self.budget.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            b => Some(b),
        }
    }

    /// A new budget (from an applied configuration); `None` lifts it.
    pub fn set_budget(&self, budget: Option<u64>) {
        self.budget
            .store(budget.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
        if budget.is_none() {
            self.marks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .paused = false;
        }
    }

    /// The bill now; a new hour or day starts its count at zero.
    pub fn figures(&self) -> Figures {
        let now = (self.clock)();
        let total = (self.bytes.sent(), self.bytes.received());
        let mut m = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        if now / HOUR_MS != m.hour {
            m.hour = now / HOUR_MS;
            m.hour_start = total;
        }
        if now / DAY_MS != m.day {
            m.day = now / DAY_MS;
            m.day_start = total;
            if m.paused {
                m.paused = false;
                info!("new UTC day: historical replay resumes");
            }
        }
        let sent_today = total.0 - m.day_start.0;
        let received_today = total.1 - m.day_start.1;
        if let Some(budget) = self.budget()
            && !m.paused
            && sent_today + received_today >= budget
        {
            m.paused = true;
            warn!(
                budget,
                used = sent_today + received_today,
                "daily byte budget spent: historical replay paused until the next UTC day; live values continue"
            );
        }
        Figures {
            sent_hour: total.0 - m.hour_start.0,
            received_hour: total.1 - m.hour_start.1,
            sent_today,
            received_today,
            replay_paused: m.paused,
        }
    }

    /// Historical replay may use the link now.
    pub fn replay_allowed(&self) -> bool {
        !self.figures().replay_paused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra::link::CountingStream;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::AsyncWriteExt;

    fn clock_at(t: &Arc<AtomicU64>) -> Clock {
        let t = Arc::clone(t);
        Arc::new(move || t.load(Ordering::Relaxed))
    }

    async fn send(bytes: &Arc<ByteCounters>, n: usize) {
        let mut s = CountingStream::new(tokio::io::sink(), Arc::clone(bytes));
        s.write_all(&vec![0; n]).await.unwrap();
    }

    #[tokio::test]
    async fn hours_and_days_start_at_zero_and_the_budget_holds_until_the_next_day() {
        let t = Arc::new(AtomicU64::new(10 * DAY_MS + 23 * HOUR_MS));
        let bytes: Arc<ByteCounters> = Arc::default();
        send(&bytes, 500).await;
        let bill = Bill::new(Arc::clone(&bytes), clock_at(&t), Some(1_000));
        assert_eq!(bill.figures(), Figures::default());
        send(&bytes, 999).await;
        assert!(bill.replay_allowed());
        assert_eq!(bill.figures().sent_hour, 999);
        send(&bytes, 1).await;
        assert!(!bill.replay_allowed());
        assert!(bill.figures().replay_paused);
        // Still today: stays paused.
        t.fetch_add(HOUR_MS / 2, Ordering::Relaxed);
        assert!(!bill.replay_allowed());
        // The next UTC day.
        t.fetch_add(HOUR_MS, Ordering::Relaxed);
        let f = bill.figures();
        assert_eq!((f.sent_today, f.sent_hour, f.replay_paused), (0, 0, false));
        send(&bytes, 10).await;
        assert_eq!(bill.figures().sent_today, 10);
        assert!(bill.replay_allowed());
    }
}
