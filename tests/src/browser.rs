//! Browser scripts (`tests/browser/*.mjs`, playwright-core driving Debian's headless
//! Chromium) run by a test against processes it started. A script asks the test for
//! what only the test can do (change a register in plant-sim, kill the edge node) with
//! `@@ <command>` lines on stdout, each answered on its stdin with `ok [data]` or
//! `error: <why>`; it reports `@@ passed <step>` per step and `@@ finished ok|failed`.
//! Screenshots go to `<target>/screenshots/<script>/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::Proc;
use crate::workspace_root;

/// Where the test command installs Chromium (Debian's `chromium` package).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// `tests/browser`, with `npm ci` done.
pub fn scripts_dir() -> PathBuf {
    let dir = workspace_root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "{}: playwright-core is not installed; run `npm ci` there (tests/run.sh does)",
        dir.display()
    );
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing; install Debian's `chromium` package (tests/run.sh does)"
    );
    dir
}

/// `<target>/screenshots/<name>`: beside the test binaries, kept after the run.
pub fn screenshot_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/debug/deps/<test binary>
    let target = exe
        .ancestors()
        .nth(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("screenshots").join(name)
}

/// What a finished script reported.
#[derive(Debug)]
pub struct Outcome {
    pub passed: Vec<String>,
    pub output: Vec<String>,
}

/// Runs `tests/browser/<script>.mjs` with `env` (plus `SCREENSHOT_DIR` and `CHROMIUM`),
/// answering its commands with `handle`, for at most `timeout`. Panics with the
/// script's output when it fails, hangs or asks for something `handle` refuses.
pub fn run(
    script: &str,
    env: &[(&str, String)],
    timeout: Duration,
    mut handle: impl FnMut(&str) -> Result<String, String>,
) -> Outcome {
    let dir = scripts_dir();
    let shots = screenshot_dir(script);
    let _ = std::fs::remove_dir_all(&shots);
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(format!("{script}.mjs")))
        .current_dir(&dir)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", CHROMIUM);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn_with_stdin(script, cmd);
    let deadline = Instant::now() + timeout;
    let mut passed = Vec::new();
    let finished = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(line) = proc.try_wait_for_line(left, |l| l.starts_with("@@ ")) else {
            proc.kill();
            panic!(
                "{script}: no end within {timeout:?}; output:\n{}",
                proc.output().join("\n")
            );
        };
        let command = &line[3..];
        if let Some(step) = command.strip_prefix("passed ") {
            passed.push(step.to_owned());
        } else if let Some(result) = command.strip_prefix("finished ") {
            break result == "ok";
        } else {
            let reply = match handle(command) {
                Ok(data) if data.is_empty() => "ok".to_owned(),
                Ok(data) => format!("ok {data}"),
                Err(e) => format!("error: {e}"),
            };
            proc.send_line(&reply);
        }
    };
    let status = proc.wait_exit(Duration::from_secs(20));
    let output = proc.output().to_vec();
    assert!(
        finished && status.is_some_and(|s| s.success()),
        "{script} failed ({status:?}); screenshots in {}; output:\n{}",
        shots.display(),
        output.join("\n")
    );
    Outcome { passed, output }
}
