//! How a service is told to stop: the process waits for SIGTERM (systemd) or Ctrl-C, and
//! hands the news to its tasks through a [`Shutdown`] token.

use std::io;

/// Cancelled once to stop every task holding a clone.
pub use tokio_util::sync::CancellationToken as Shutdown;

/// Installs the handlers now, so a signal arriving before the returned future is polled
/// (right after a readiness line, say) is not lost. The future resolves on SIGTERM or
/// SIGINT (Ctrl-C).
pub fn signal() -> io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Waits for SIGTERM or Ctrl-C; without handlers (never on a normal host) it waits for
/// ever and says so.
pub async fn wait_for_signal() {
    match signal() {
        Ok(signal) => signal.await,
        Err(e) => {
            tracing::warn!(error = %e, "stop signals not watched");
            std::future::pending::<()>().await
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sigterm_resolves_the_waiter() {
        let waiter = signal().unwrap();
        // SAFETY: raise() only sends SIGTERM to this process, now handled by tokio.
        unsafe { libc::raise(libc::SIGTERM) };
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("SIGTERM not seen");
    }
}
