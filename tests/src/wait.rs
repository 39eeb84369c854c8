//! The one bounded wait of the tests: poll a condition until it holds or a deadline
//! passes. A wait that runs out panics naming what it awaited, so a failing test says
//! what never happened instead of hanging.

use std::time::{Duration, Instant};

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(20);

/// What a probe answers: `true`/`false`, or `Some(value)`/`None`.
pub trait Ready {
    type Value;
    fn ready(self) -> Option<Self::Value>;
}

impl Ready for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Polls `probe` until it is ready, at most `timeout`; `None` when it never is.
pub fn poll<R: Ready>(timeout: Duration, mut probe: impl FnMut() -> R) -> Option<R::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().ready() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// [`poll`], panicking naming `what` when the probe is never ready.
pub fn until<R: Ready>(what: &str, timeout: Duration, probe: impl FnMut() -> R) -> R::Value {
    poll(timeout, probe)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for: {what}"))
}

/// [`poll`] inside an async test: sleeps on the runtime between probes.
pub async fn poll_async<R: Ready>(
    timeout: Duration,
    mut probe: impl FnMut() -> R,
) -> Option<R::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().ready() {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`] inside an async test.
pub async fn until_async<R: Ready>(
    what: &str,
    timeout: Duration,
    probe: impl FnMut() -> R,
) -> R::Value {
    poll_async(timeout, probe)
        .await
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for: {what}"))
}

/// [`until_async`] with a probe that awaits (e.g. a Modbus read); the panic shows the
/// last value the probe saw.
pub async fn until_read<T: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut read: impl AsyncFnMut() -> T,
    mut done: impl FnMut(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = read().await;
        if done(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}; last value {value:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_probe_returns_its_value() {
        let mut n = 0;
        let value = until("n reaches 3", Duration::from_secs(5), || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(value, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for: the impossible")]
    fn a_failed_wait_names_what_it_awaited() {
        until("the impossible", Duration::from_millis(50), || false);
    }
}
