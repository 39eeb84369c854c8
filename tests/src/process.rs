//! The project's own binaries as child processes: started with piped output that the
//! test can wait on line by line and that is also written to a log file, stopped with
//! SIGTERM or SIGKILL, never left behind. A test that panics prints each child's output.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::wait;

/// A workspace binary (`plant-sim`, `edge-node`, `host-app`), built beside this test.
///
/// Panics with the fix when it is missing: `tests/run.sh` builds every binary first.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` (tests/run.sh does)",
        path.display()
    );
    path
}

/// Asserts that the command `what` exited with `code` having written exactly one line
/// to stderr (a bad configuration's single placed error), and returns that line.
pub fn assert_exit_with_one_line(what: &str, out: &Output, code: i32) -> String {
    assert_eq!(out.status.code(), Some(code), "{what}: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one stderr line expected: {err}");
    lines[0].to_owned()
}

/// A running child whose stdout and stderr lines arrive on one channel.
pub struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdin null and both outputs captured.
    pub fn spawn(name: &str, cmd: Command) -> Proc {
        Self::start(name, cmd, false)
    }

    /// Like [`Proc::spawn`], with stdin piped for [`Proc::send_line`] (e.g. `plant-sim`'s
    /// fault commands).
    pub fn spawn_with_stdin(name: &str, cmd: Command) -> Proc {
        Self::start(name, cmd, true)
    }

    fn start(name: &str, mut cmd: Command, piped_stdin: bool) -> Proc {
        cmd.stdin(if piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let log = log_path(name, child.id());
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("{name}: create {}: {e}", log.display()));
        let file = Arc::new(Mutex::new(file));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            let file = Arc::clone(&file);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut file) = file.lock() {
                        let _ = writeln!(file, "{line}");
                    }
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Proc {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
            stdin,
            log,
        }
    }

    /// The file every output line is written to (kept after the test).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Writes one line to the child's stdin (started with [`Proc::spawn_with_stdin`]).
    pub fn send_line(&mut self, line: &str) {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{name}: started without a piped stdin"));
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{name}: write {line:?} to stdin: {e}"));
    }

    /// Closes the child's stdin (it sees end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends a signal (`"TERM"`, `"INT"`, `"KILL"`...) to the child.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "{}: kill -{signal} failed",
            self.name
        );
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait::poll(timeout, || self.child.try_wait().ok().flatten())
    }

    /// [`Proc::wait_exit`] inside an async test: the runtime keeps running (an in-process
    /// broker the child talks to, say) while it waits.
    pub async fn wait_exit_async(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait::poll_async(timeout, || self.child.try_wait().ok().flatten()).await
    }

    /// [`Proc::wait_for_line`] inside an async test, the runtime running meanwhile.
    pub async fn wait_for_line_async(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                let hit = pred(&line);
                self.seen.push(line.clone());
                if hit {
                    return line;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: no expected line within {timeout:?}; output so far:\n{}",
                self.name,
                self.seen.join("\n")
            );
            tokio::time::sleep(wait::POLL).await;
        }
    }

    /// Waits (at most `timeout`) for an output line that `pred` accepts, and returns it.
    pub fn wait_for_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        self.try_wait_for_line(timeout, pred).unwrap_or_else(|| {
            panic!(
                "{}: no expected line within {timeout:?}; output so far:\n{}",
                self.name,
                self.seen.join("\n")
            )
        })
    }

    /// [`Proc::wait_for_line`], `None` when no such line comes in time.
    pub fn try_wait_for_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            let hit = pred(&line);
            self.seen.push(line.clone());
            if hit {
                return Some(line);
            }
        }
    }

    /// Every line seen so far (those already waited through, plus any now buffered).
    pub fn output(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// SIGTERM, then waits up to `timeout` for the exit; SIGKILL if it does not come.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.wait_exit(timeout);
        if status.is_none() {
            self.kill();
        }
        status
    }

    /// SIGKILL (a crash as the operating system sees one), and reaps the child.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
        if std::thread::panicking() {
            let name = self.name.clone();
            let log = self.log.display().to_string();
            eprintln!(
                "--- {name} output (also in {log}) ---\n{}\n--- end of {name} ---",
                self.output().join("\n")
            );
        }
    }
}

/// `<tmp>/system-tests-logs/<name>-<pid>.log`.
fn log_path(name: &str, pid: u32) -> PathBuf {
    let dir = std::env::temp_dir().join("system-tests-logs");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir.join(format!("{name}-{pid}.log"))
}
