//! The one test harness of the workspace, used by every crate's integration tests: where
//! the workspace is and how to reach the independent implementations (Python tools in the
//! project's venv, Mosquitto, rmqtt) they talk to, plus one module per job:
//! [`browser`] (scripts in headless Chromium), [`config`] (typed config files for
//! edge-node, host-app and plant-sim), [`edge_ui`] (the edge node's UI with its peers), [`wait`] (the bounded wait), [`http`] (the host API client), [`mqtt`] (recorder, watcher, scripted
//! edge node, step-by-step client), [`nats`] (a clustered MQTT broker), [`fleet`] (a simulated fleet of edge nodes), [`process`] (our binaries as children, logs captured)
//! and [`stack`] (the whole product for end-to-end tests).

pub mod browser;
pub mod config;
pub mod cpu_budget;
pub mod edge_ui;
pub mod fleet;
pub mod http;
pub mod linksim;
pub mod logs;
pub mod mqtt;
pub mod mqtt_proxy;
pub mod nats;
pub mod pki;
pub mod process;
pub mod rmqtt;
pub mod stack;
pub mod strategies;
pub mod wait;

use std::path::PathBuf;
use std::process::Command;

/// Raises this process's soft limit on open files to its hard limit: tests holding more
/// than 1,024 sockets at once need it.
pub fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The workspace root (this crate sits in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// A script under `tests/python/`.
pub fn python_script(name: &str) -> PathBuf {
    workspace_root().join("tests").join("python").join(name)
}

/// The Python interpreter of the venv that `tests/run.sh` fills (pysparkplug, pymodbus).
///
/// Panics with the fix when it is missing: an interop test that cannot reach its peer
/// must fail, not pass by skipping.
pub fn python() -> PathBuf {
    let path = std::env::var_os("SYSTEM_TESTS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv").join("bin").join("python"));
    assert!(
        path.exists(),
        "no Python venv at {}: run `bash tests/run.sh` once (it installs pysparkplug and pymodbus)",
        path.display()
    );
    path
}

/// `python tests/python/<script> <args>`, ready to run.
pub fn python_command(script: &str) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(python_script(script));
    cmd
}

/// A Mosquitto broker (the Debian package) on a free loopback port, killed on drop.
///
/// Panics with the fix when `/usr/sbin/mosquitto` is missing: `tests/run.sh` installs it.
pub struct Mosquitto {
    port: u16,
    child: std::process::Child,
    _dir: TempDir,
}

/// A directory removed on drop (no dependency needed for one helper).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Mosquitto {
    /// The broker binary.
    pub const BINARY: &'static str = "/usr/sbin/mosquitto";

    /// Writes a config (`listener PORT 127.0.0.1`, anonymous allowed), starts the broker and
    /// waits (bounded) until it accepts connections.
    pub fn start() -> Mosquitto {
        Self::start_with("")
    }

    /// Like [`Mosquitto::start`], with more configuration lines after the plain listener
    /// (e.g. a second, TLS listener).
    pub fn start_with(extra: &str) -> Mosquitto {
        assert!(
            std::path::Path::new(Self::BINARY).exists(),
            "{} is missing: run `bash tests/run.sh` once (it installs the mosquitto package)",
            Self::BINARY
        );
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("mosquitto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "allow_anonymous true\npersistence false\nlog_dest stderr\nlistener {port} 127.0.0.1\n{extra}\n"
            ),
        )
        .expect("temp dir is writable");
        let log_path = dir.join("mosquitto.log");
        let log = std::fs::File::create(&log_path).expect("temp dir is writable");
        let child = Command::new(Self::BINARY)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        let broker = Mosquitto {
            port,
            child,
            _dir: TempDir(dir),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return broker;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("mosquitto did not accept connections on port {port} within 5 s:\n{log}");
    }

    /// The broker's process id (for its CPU use).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the broker and starts it again on the same port (a broker restart as its
    /// clients see it), waiting (bounded) until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Command::new(Self::BINARY)
            .arg("-c")
            .arg(self._dir.0.join("mosquitto.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(self._dir.0.join("mosquitto.log"))
                    .expect("mosquitto log"),
            )
            .spawn()
            .expect("mosquitto starts");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!(
            "mosquitto did not accept connections again on port {} within 5 s",
            self.port
        );
    }

    /// Kills the broker now (every client connection drops).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port the OS says is free (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback bind");
    listener.local_addr().expect("bound address").port()
}
