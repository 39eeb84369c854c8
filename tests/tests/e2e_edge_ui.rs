//! The edge node's web UI in a real headless Chromium (tests/browser/edge-ui.mjs) against
//! plant-sim, the edge node (its UI on HTTPS with the self-signed certificate) and the host
//! as processes: setup and login, the status page, a device added pointing at plant-sim
//! (a bad field shown next to it first, test connection), a register probe showing the
//! f32 in the right byte order, a tag CSV with a bad line (line and column shown, nothing
//! imported) then a good one, apply, rollback, test connection to the MQTT server, the CSV
//! export imported back unchanged, a viewer refused every admin route, and no route served
//! without a session. Screenshots: `target/screenshots/edge-ui/`.

use std::time::Duration;

use system_tests::browser;
use system_tests::edge_ui::UiStack;

/// Every step the script reports, in order.
const STEPS: [&str; 13] = [
    "01-setup",
    "02-status",
    "03-device-bad-field",
    "04-device-test-and-save",
    "05-probe",
    "06-import-bad-line",
    "07-import-good",
    "08-apply",
    "09-rollback",
    "10-server-test",
    "11-export-round-trip",
    "12-viewer",
    "13-anonymous",
];

/// Runs the script; `live` adds the host's view of the applied tags.
fn run(live: bool) {
    let mut stack = UiStack::start();
    let mut env = stack.env();
    if live {
        env.push(("LIVE_APPLY", "1".to_owned()));
    }
    let outcome = browser::run("edge-ui", &env, Duration::from_secs(240), |command| {
        stack.handle(command)
    });
    assert_eq!(outcome.passed, STEPS, "every step passed, in order");
}

#[test]
fn edge_ui_in_chromium_from_setup_to_viewer() {
    run(false);
}

/// The applied tags reach the host without an NDEATH: needs the running node to take an
/// applied configuration live (the configuration lifecycle's live apply).
#[test]
fn edge_ui_apply_reaches_the_host_with_a_rebirth() {
    run(true);
}
