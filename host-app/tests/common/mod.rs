//! Shared by the `host_*` tests: a host on a real broker and SQLite file; the scripted
//! edge node comes from `system_tests::mqtt`. Every wait is bounded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use host_app::config::HostConfig;
use host_app::host::Host;
use system_tests::config::host::{Broker, HostConfig as TestHostConfig};

/// Upper bound for any single wait; never a speed assertion.
pub const WAIT: Duration = Duration::from_secs(10);
/// The reorder timeout the test hosts use.
pub const REORDER_MS: u64 = 300;
pub const HOST_ID: &str = "scada";

/// The test host's configuration: embedded broker on an OS-chosen port, or an external
/// broker at `external`; history in `dir`.
pub fn host_config(dir: &std::path::Path, external: Option<SocketAddr>) -> TestHostConfig {
    let broker = match external {
        None => Broker::embedded(SocketAddr::from(([127, 0, 0, 1], 0))),
        Some(addr) => Broker::external(addr),
    };
    let mut config = TestHostConfig::new(HOST_ID, broker, dir);
    config.history.flush_interval_ms = Some(20);
    config.sparkplug.reorder_timeout_ms = Some(REORDER_MS);
    config.sparkplug.rebirth_min_interval_ms = Some(60_000);
    config
}

/// Starts a host and waits until its STATE birth is out.
pub async fn start_host(dir: &std::path::Path, external: Option<SocketAddr>) -> Host {
    system_tests::logs::init();
    let config = HostConfig::from_toml(&host_config(dir, external).to_toml()).unwrap();
    let host = Host::start(&config).await.unwrap();
    let shared = host.shared().clone();
    system_tests::wait::until_async("host connected", WAIT, || shared.is_connected()).await;
    host
}

/// The broker address edge nodes use: the host's embedded plain listener.
pub fn broker_addr(host: &Host) -> SocketAddr {
    host.broker().embedded().unwrap().plain_addr().unwrap()
}
