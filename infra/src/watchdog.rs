//! The systemd watchdog (`sd_watchdog_enabled(3)`): while `WATCHDOG_USEC` is set, the
//! service sends `WATCHDOG=1` at half that period, but only while every part of its data
//! path shows [`Progress`]. A part proves it is alive by beating (its loop turned, a
//! commit landed) or by saying it is idle with nothing to do; a part that did neither for
//! a whole period is wedged, the pings stop and systemd restarts the service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::notify::Notifier;

/// The variables systemd sets when `WatchdogSec=` is on.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// The watchdog period systemd asks for: `WATCHDOG_USEC`, when `WATCHDOG_PID` is unset or
/// names this process (as `sd_watchdog_enabled` reads them). `None`: no watchdog.
pub fn period_from_env() -> Option<Duration> {
    if let Ok(pid) = std::env::var(WATCHDOG_PID)
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var(WATCHDOG_USEC).ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// One part's liveness: a counter it bumps and a flag it raises while it has nothing to do.
#[derive(Debug, Default)]
pub struct Progress {
    beats: AtomicU64,
    idle: AtomicBool,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::default()
    }

    /// The part did its work (a loop turn, a commit).
    pub fn beat(&self) {
        self.beats.fetch_add(1, Ordering::Relaxed);
    }

    /// The part waits with nothing to do (true) or has work it must get through (false).
    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Relaxed);
    }

    /// Beats so far (for a part whose beat is a unit of work, e.g. commits).
    pub fn beats(&self) -> u64 {
        self.beats.load(Ordering::Relaxed)
    }

    fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }
}

/// A part the watchdog watches.
struct Watched {
    name: String,
    progress: Arc<Progress>,
    seen: u64,
    moved_at: Instant,
}

/// Decides, at each check, whether every part moved (or idled) within the period.
pub struct Watchdog {
    period: Duration,
    parts: Vec<Watched>,
}

impl Watchdog {
    pub fn new(period: Duration) -> Watchdog {
        Watchdog {
            period,
            parts: Vec::new(),
        }
    }

    /// Watches one more part under this name (for the log and the status line).
    pub fn watch(&mut self, name: impl Into<String>, progress: Arc<Progress>) {
        let seen = progress.beats();
        self.parts.push(Watched {
            name: name.into(),
            progress,
            seen,
            moved_at: Instant::now(),
        });
    }

    /// `Err(name)` of the first part that neither beat nor idled for a whole period.
    pub fn check(&mut self, now: Instant) -> Result<(), String> {
        let mut wedged = None;
        for part in &mut self.parts {
            let beats = part.progress.beats();
            if beats != part.seen || part.progress.is_idle() {
                part.seen = beats;
                part.moved_at = now;
            } else if now.duration_since(part.moved_at) >= self.period && wedged.is_none() {
                wedged = Some(part.name.clone());
            }
        }
        wedged.map_or(Ok(()), Err)
    }

    /// Pings at half the period while every part is alive, until the task is dropped;
    /// `refresh` runs before each check, for parts whose state is polled (a session's
    /// connection) rather than pushed.
    pub async fn run(mut self, notifier: Notifier, mut refresh: impl FnMut()) {
        let half = self.period / 2;
        // The first check half a period after start: parts get that long to show progress.
        let mut tick = tokio::time::interval_at(Instant::now() + half, half);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut wedged: Option<String> = None;
        loop {
            tick.tick().await;
            refresh();
            match self.check(Instant::now()) {
                Ok(()) => {
                    if let Some(part) = wedged.take() {
                        tracing::info!(part = %part, "watchdog: moving again; pinging");
                    }
                    if let Err(e) = notifier.watchdog() {
                        tracing::warn!(error = %e, "cannot ping the service manager's watchdog");
                    }
                }
                Err(part) => {
                    if wedged.as_deref() != Some(part.as_str()) {
                        tracing::error!(part = %part, period = ?self.period, "watchdog: no progress; not pinging");
                        let _ =
                            notifier.status(&format!("{part}: no progress; watchdog not pinged"));
                        wedged = Some(part);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_that_beats_or_idles_is_alive_and_one_that_stops_is_wedged() {
        let period = Duration::from_secs(10);
        let start = Instant::now();
        let (poller, writer) = (Progress::new(), Progress::new());
        let mut dog = Watchdog::new(period);
        dog.watch("poller", Arc::clone(&poller));
        dog.watch("writer", Arc::clone(&writer));
        writer.set_idle(true);
        poller.beat();
        assert_eq!(dog.check(start + period / 2), Ok(()));
        poller.beat();
        assert_eq!(dog.check(start + period), Ok(()));
        // The poller stops; half a period later it is not yet wedged, a period later it is.
        assert_eq!(dog.check(start + period * 3 / 2), Ok(()));
        assert_eq!(dog.check(start + period * 2), Err("poller".to_owned()));
        poller.beat();
        assert_eq!(dog.check(start + period * 5 / 2), Ok(()));
        // The writer has work and commits nothing.
        writer.set_idle(false);
        poller.beat();
        assert_eq!(dog.check(start + period * 3), Ok(()));
        poller.beat();
        assert_eq!(dog.check(start + period * 7 / 2), Err("writer".to_owned()));
    }

    #[test]
    fn the_period_is_read_as_sd_watchdog_enabled_reads_it() {
        // One test touches the environment, so no other test races it.
        unsafe {
            std::env::remove_var(WATCHDOG_PID);
            std::env::remove_var(WATCHDOG_USEC);
        }
        assert_eq!(period_from_env(), None);
        unsafe { std::env::set_var(WATCHDOG_USEC, "4000000") };
        assert_eq!(period_from_env(), Some(Duration::from_secs(4)));
        unsafe { std::env::set_var(WATCHDOG_PID, std::process::id().to_string()) };
        assert_eq!(period_from_env(), Some(Duration::from_secs(4)));
        unsafe { std::env::set_var(WATCHDOG_PID, "1") };
        assert_eq!(period_from_env(), None);
        unsafe {
            std::env::remove_var(WATCHDOG_PID);
            std::env::set_var(WATCHDOG_USEC, "0");
        }
        assert_eq!(period_from_env(), None);
        unsafe { std::env::remove_var(WATCHDOG_USEC) };
    }
}
