//! The edge node's web UI under test: plant-sim, the host (embedded broker) and the edge
//! node with a `[ui]` table (HTTPS, self-signed) as processes, the environment a browser
//! script needs to log in, and the commands it may ask for (change a plant register, wait
//! for a tag to appear at or vanish from the host).

use std::io::Write as _;
use std::path::Path;

use crate::config;
use crate::free_port;
use crate::http::Api;
use crate::stack::{Broker, EdgeNode, GROUP, HostApp, NODE, Plant, Tree, WAIT, edge_config};
use crate::wait;

/// The processes behind one browser run; they stop when it is dropped.
pub struct UiStack {
    pub plant: Plant,
    pub host: HostApp,
    pub edge: EdgeNode,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The UI's setup token, as the node wrote it.
    pub token: String,
    /// The node's bdSeq at the host once it was born.
    pub born: u64,
    api: Api,
    _dir: tempfile::TempDir,
}

impl UiStack {
    /// Starts plant-sim, the host and the edge node with its UI, and waits for the
    /// node's birth at the host.
    pub fn start() -> UiStack {
        let dir = tempfile::tempdir().expect("temp dir");
        let plant = Plant::start();
        let host = HostApp::start(dir.path(), Broker::Embedded { port: free_port() });
        let (edge, url, token) = start_edge_with_ui(dir.path(), host.broker().port(), plant.port());
        let api = host.api();
        let born = wait::until("the edge node's birth at the host", WAIT, || {
            api.get("/api/tree").ok().map(Tree).and_then(|t| t.bd_seq())
        });
        UiStack {
            plant,
            host,
            edge,
            url,
            token,
            born,
            api,
            _dir: dir,
        }
    }

    /// What every edge UI script reads: the UI's address, the setup token, the first
    /// admin's password and plant-sim's port.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PANEL_URL", self.url.clone()),
            ("SETUP_TOKEN", self.token.clone()),
            ("PANEL_PASSWORD", "edge ui test password 1".to_owned()),
            ("PLANT_PORT", self.plant.port().to_string()),
        ]
    }

    /// Answers a script's command: `set ...` (a plant-sim command), `host-sees DEVICE
    /// TAG` (its value reaches the host on the same bdSeq: a Rebirth, no NDEATH) and
    /// `host-lacks DEVICE TAG` (the host's births no longer list it). Device and tag
    /// names are percent-encoded by the script when they hold spaces.
    pub fn handle(&mut self, command: &str) -> Result<String, String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["set", ..] => Ok(self.plant.command(command)),
            ["host-sees", device, tag] => self.host_sees(&unescape(device), &unescape(tag)),
            ["host-lacks", device, tag] => self.host_lacks(&unescape(device), &unescape(tag)),
            _ => Err(format!("unknown command {command:?}")),
        }
    }

    fn tree(&self) -> Option<Tree> {
        self.api.get("/api/tree").ok().map(Tree)
    }

    fn host_sees(&self, device: &str, tag: &str) -> Result<String, String> {
        let born = self.born;
        let seen = wait::poll(WAIT, || {
            let t = self.tree()?;
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

    fn host_lacks(&self, device: &str, tag: &str) -> Result<String, String> {
        let gone = wait::poll(WAIT, || {
            let t = self.tree()?;
            t.device(GROUP, NODE, device)?;
            t.metric(GROUP, NODE, Some(device), tag)
                .is_none()
                .then_some(())
        });
        gone.map(|()| String::new())
            .ok_or_else(|| format!("{device}/{tag} still at the host after {WAIT:?}"))
    }
}

/// `%20` and the like back to text (the script encodes names with spaces).
fn unescape(word: &str) -> String {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
