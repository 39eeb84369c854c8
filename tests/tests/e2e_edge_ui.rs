//! The edge node's web UI in a real headless Chromium (tests/browser/edge-ui.mjs) against
//! plant-sim, the edge node (its UI on HTTPS with the self-signed certificate) and the host
//! as processes: setup and login, the status page, a device added pointing at plant-sim
//! (a bad field shown next to it first, test connection), a register probe showing the
//! f32 in the right byte order, a tag CSV with a bad line (line and column shown, nothing
//! imported) then a good one, apply, rollback, test connection to the MQTT server, the CSV
//! export imported back unchanged, a viewer refused every admin route, and no route served
//! without a session. Screenshots: `target/screenshots/edge-ui/`.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use system_tests::browser;
use system_tests::config;
use system_tests::free_port;
use system_tests::stack::{Broker, EdgeNode, GROUP, HostApp, NODE, Plant, Tree, WAIT, edge_config};
use system_tests::wait;

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

/// The test edge node's configuration with a `[ui]` table (HTTPS, self-signed), its
/// address, and the UI's setup token once the node wrote it.
fn start_edge_with_ui(dir: &Path, broker_port: u16, plant_port: u16) -> (EdgeNode, String, String) {
    let path = config::write(
        &edge_config(dir, broker_port, plant_port),
        dir,
        "edge-node.toml",
    );
    let ui_port = free_port();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("config file");
    writeln!(
        file,
        "\n[ui]\nlisten = \"127.0.0.1:{ui_port}\"\nstate_dir = \"ui\""
    )
    .expect("write [ui]");
    let edge = EdgeNode::start_config(path);
    let token_file = dir.join("ui").join("setup-token");
    let token = wait::until("the UI's setup token file", WAIT, || {
        std::fs::read_to_string(&token_file)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    });
    (edge, format!("https://127.0.0.1:{ui_port}"), token)
}

/// Runs the script; `live` adds the host's view of the applied tags.
fn run(live: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plant = Plant::start();
    let host = HostApp::start(dir.path(), Broker::Embedded { port: free_port() });
    let (_edge, url, token) = start_edge_with_ui(dir.path(), host.broker().port(), plant.port());
    let api = host.api();
    let tree = || api.get("/api/tree").ok().map(Tree);
    let born = wait::until("the edge node's birth at the host", WAIT, || {
        tree().and_then(|t| t.bd_seq())
    });
    let mut env = vec![
        ("PANEL_URL", url),
        ("SETUP_TOKEN", token),
        ("PANEL_PASSWORD", "edge ui test password 1".to_owned()),
        ("PLANT_PORT", plant.port().to_string()),
    ];
    if live {
        env.push(("LIVE_APPLY", "1".to_owned()));
    }
    let outcome = browser::run("edge-ui", &env, Duration::from_secs(240), |command| {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["set", ..] => Ok(plant.command(command)),
            ["host-sees", device, tag] => {
                // The new tags' values reach the host with the node's bdSeq unchanged: a
                // Rebirth on the same session, no NDEATH.
                let seen = wait::poll(WAIT, || {
                    let t = tree()?;
                    let value = t.metric(GROUP, NODE, Some(device), tag)?["value"].clone();
                    (!value.is_null()).then(|| (value, t.bd_seq()))
                });
                match seen {
                    Some((_, bd_seq)) if bd_seq == Some(born) => Ok(String::new()),
                    Some((_, bd_seq)) => Err(format!(
                        "bdSeq changed from {born} to {bd_seq:?}: the node reconnected (NDEATH)"
                    )),
                    None => Err(format!("{device}/{tag} not at the host within {WAIT:?}")),
                }
            }
            _ => Err(format!("unknown command {command:?}")),
        }
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
