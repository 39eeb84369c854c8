//! The edge node's remaining forms in a real headless Chromium
//! (tests/browser/edge-ui-forms.mjs) against plant-sim, the edge node and the host as
//! processes: the RTU bus, scan class, Sparkplug, MQTT and store-and-forward forms (a bad
//! value shown next to its field in check-config's words, then a good one in the draft's
//! diff), a CA uploaded as a PEM file and named by the server form, the single-tag
//! editor (edit one tag, remove another) and the link-economy levers (compression and a
//! report window), applied, both tag changes seen at the host's API through the levers;
//! two admins at once, the draft begun before the other's apply refused. Screenshots: `target/screenshots/edge-ui-forms/`.

use std::time::Duration;

use system_tests::browser;
use system_tests::edge_ui::UiStack;
use system_tests::pki::Pki;

/// Every step the script reports, in order.
const STEPS: [&str; 15] = [
    "01-setup",
    "02-bus",
    "03-scan-class",
    "04-sparkplug",
    "05-mqtt",
    "06-store",
    "07-server-ca-missing",
    "08-upload-ca",
    "09-server-ca",
    "10-discard",
    "11-tag-edit",
    "12-tag-remove",
    "13-economy",
    "14-apply-reaches-host",
    "15-two-admins",
];

#[test]
fn edge_ui_forms_in_chromium_from_bus_to_tag_editor() {
    let pki = Pki::generate();
    let mut stack = UiStack::start();
    let mut env = stack.env();
    env.push(("CA_FILE", pki.ca.display().to_string()));
    let outcome = browser::run("edge-ui-forms", &env, Duration::from_secs(240), |command| {
        stack.handle(command)
    });
    assert_eq!(outcome.passed, STEPS, "every step passed, in order");
}
