//! The operator's panel in a real headless Chromium (tests/browser/panel.mjs) against
//! plant-sim, an edge node and the host as processes: first-run setup from the one-time
//! token, login, the live tree, a value the simulator changes appearing without reload,
//! an operator's write confirmed by its echo and a Rebirth request, with their audit
//! rows, the node's link bill kept current, a trend drawn and zoomed, a viewer without write controls refused by the API,
//! the edge node killed and shown OFFLINE with STALE values, logout. Screenshots:
//! `target/screenshots/panel/`.

use std::time::Duration;

use system_tests::browser;
use system_tests::free_port;
use system_tests::stack::{
    Broker, EdgeNode, HostApp, Plant, WAIT, edge_config, now_ms, publish_history,
};
use system_tests::wait;

const HOUR_MS: u64 = 3_600_000;

/// Every step the script must report, in order.
const STEPS: [&str; 12] = [
    "01-setup",
    "02-users",
    "03-login",
    "04-tree",
    "05-live-value",
    "06-write-confirmed",
    "07-rebirth",
    "08-audit-rows",
    "09-trend-zoom",
    "10-viewer",
    "11-offline-stale",
    "12-logout",
];

#[test]
fn panel_in_chromium_from_setup_to_logout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plant = Plant::start();
    let mut host =
        HostApp::start_without_accounts(dir.path(), Broker::Embedded { port: free_port() });
    // Node metrics every 2 s: the node page's link bill must be seen to change.
    let mut config = edge_config(dir.path(), host.broker().port(), plant.port());
    config.sparkplug.metrics_period_ms = 2_000;
    let mut edge = EdgeNode::start_config(system_tests::config::write(
        &config,
        dir.path(),
        "edge-node.toml",
    ));
    // The host writes the one-time setup token into its state directory at start.
    let token_file = dir.path().join("setup-token");
    let token = wait::until("the setup token file", WAIT, || {
        std::fs::read_to_string(&token_file)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    });
    // An hour of a 1 Hz signal (a sine with one spike) for the trend, once the host's
    // session is up to take its birth.
    wait::until("the host's STATE online", WAIT, || {
        host.output()
            .iter()
            .any(|l| l.contains("STATE online published"))
    });
    let to = now_ms() / 1000 * 1000;
    let broker = std::net::SocketAddr::from(([127, 0, 0, 1], host.broker().port()));
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(publish_history(broker, "Signal", (to - HOUR_MS, to, 1000)));
    let env = [
        ("PANEL_URL", format!("http://{}", host.anonymous().addr())),
        ("TREND_TO", to.to_string()),
        ("SETUP_TOKEN", token),
        ("PANEL_PASSWORD", "panel test password 1".to_owned()),
    ];
    let outcome = browser::run("panel", &env, Duration::from_secs(180), |command| {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["set", ..] => Ok(plant.command(command)),
            ["kill-edge"] => {
                edge.kill();
                Ok(String::new())
            }
            _ => Err(format!("unknown command {command:?}")),
        }
    });
    assert_eq!(outcome.passed, STEPS, "every step passed, in order");
}
