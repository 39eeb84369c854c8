//! Logs of in-process services (an embedded broker, a host) in the test's captured
//! output, filtered by `RUST_LOG` (default: warnings).

/// Installs the subscriber once per test binary; later calls do nothing.
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
