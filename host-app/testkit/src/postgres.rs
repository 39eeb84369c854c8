//! A throw-away PostgreSQL server for tests: `initdb` into a temporary directory, the server
//! on 127.0.0.1 on a free port with its socket inside that directory, stopped and removed on
//! drop.
//!
//! PostgreSQL refuses to run as root, and tests here often do: then `initdb` and `postgres`
//! run as `nobody`, which owns the directory. Durability is off (`fsync`, full page writes):
//! the data dies with the test anyway.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The superuser `initdb` creates; the URLs name it, with no password (trust on loopback).
const SUPERUSER: &str = "postgres";
/// Who runs the server when the tests run as root (`nobody` on Debian).
const UNPRIVILEGED: (u32, u32) = (65_534, 65_534);
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TempPostgres {
    dir: tempfile::TempDir,
    server: Mutex<Option<Child>>,
    port: u16,
}

impl TempPostgres {
    /// Creates a cluster and starts its server; ready for connections when this returns.
    pub fn start() -> Result<TempPostgres> {
        TempPostgres::start_with(false, None)
    }

    /// [`TempPostgres::start`] with TLS on (`ssl = on`), serving the PEM certificate chain
    /// and key given (copied into the server's directory, readable by it alone). Clients
    /// may still connect without TLS.
    pub fn start_with_tls(cert_file: &Path, key_file: &Path) -> Result<TempPostgres> {
        TempPostgres::start_with(false, Some((cert_file, key_file)))
    }

    /// `dies_with_process`: the server gets SIGQUIT when the thread that started it ends
    /// (Linux parent-death signal), for the shared server, whose thread lives as long as
    /// the test process, so an aborted test run leaves no server behind.
    fn start_with(dies_with_process: bool, tls: Option<(&Path, &Path)>) -> Result<TempPostgres> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("pg-").tempdir()?;
        let as_root = is_root();
        if as_root {
            chown(dir.path())?;
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), as_root, dir.path())
            .args(["--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"])
            .arg(format!("--username={SUPERUSER}"))
            .arg("-D")
            .arg(&data)
            .output()
            .context("run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut settings = Vec::new();
        if let Some((cert_file, key_file)) = tls {
            for (from, name) in [(cert_file, "server.crt"), (key_file, "server.key")] {
                let to = dir.path().join(name);
                std::fs::copy(from, &to).with_context(|| format!("copy {}", from.display()))?;
                // The server refuses a key others may read.
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
                if as_root {
                    chown(&to)?;
                }
                let key = if name == "server.crt" {
                    "ssl_cert_file"
                } else {
                    "ssl_key_file"
                };
                settings.push(format!("{key}={}", to.display()));
            }
            settings.push("ssl=on".to_owned());
        }
        // The port can be taken between choosing and binding: try a few.
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let log = std::fs::File::create(dir.path().join("server.log"))?;
            let mut server = command(&bin.join("postgres"), as_root, dir.path());
            if dies_with_process {
                // SAFETY: prctl is async-signal-safe; runs in the child before exec, after
                // the user change (which would clear the setting).
                unsafe {
                    server.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
            let mut server = server
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
                .args(["-c", "synchronous_commit=off", "-c", "max_connections=200"])
                .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("start postgres")?;
            match wait_ready(&mut server, port, dir.path()) {
                Ok(()) => {
                    return Ok(TempPostgres {
                        dir,
                        server: Mutex::new(Some(server)),
                        port,
                    });
                }
                Err(e) => {
                    stop(server);
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("postgres did not start")))
    }

    /// One server for the whole test process, started at first use and stopped (its
    /// directory removed) when the process exits. Give each test its own database
    /// ([`TempPostgres::fresh_database`]).
    pub fn shared() -> Result<&'static TempPostgres> {
        static SHARED: OnceLock<TempPostgres> = OnceLock::new();
        static STARTING: Mutex<()> = Mutex::new(());
        let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pg) = SHARED.get() {
            return Ok(pg);
        }
        // Started from a thread that never ends: the parent-death signal fires when the
        // starting thread ends, and test threads end with their test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("temp-postgres".into())
            .spawn(move || {
                let _ = tx.send(TempPostgres::start_with(true, None));
                loop {
                    std::thread::park();
                }
            })?;
        let started = rx.recv().context("temp-postgres thread")??;
        let _ = SHARED.set(started); // set once: `STARTING` is held
        extern "C" fn stop_shared() {
            if let Some(pg) = SHARED.get()
                && let Some(server) = pg.server_for_exit()
            {
                stop(server);
                let _ = std::fs::remove_dir_all(pg.dir.path());
            }
        }
        // SAFETY: registers a plain function to run at exit; it touches only the static.
        unsafe {
            libc::atexit(stop_shared);
        }
        SHARED
            .get()
            .ok_or_else(|| anyhow::anyhow!("shared PostgreSQL not set"))
    }

    /// The server process, taken once (at exit for the shared one: a static is never
    /// dropped).
    fn server_for_exit(&self) -> Option<Child> {
        self.server.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// A new empty database with a name no other caller in this process gets.
    pub fn fresh_database(&self) -> Result<String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("t{}_{n}", std::process::id()))
    }

    /// `postgresql://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("database name {name:?}: letters, digits and _ only");
        }
        let mut client = postgres::Client::connect(&self.url(), postgres::NoTls)?;
        client.batch_execute(&format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.url_of(name))
    }

    fn url_of(&self, database: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Where the server's own log is.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if let Some(server) = self.server_for_exit() {
            stop(server);
        }
    }
}

/// Waits until `server` answers a query, or says why not (its log).
fn wait_ready(server: &mut Child, port: u16, dir: &Path) -> Result<()> {
    let log = || std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = server.try_wait()? {
            bail!("postgres exited ({status}): {}", log());
        }
        let tried = postgres::Config::new()
            .host("127.0.0.1")
            .port(port)
            .user(SUPERUSER)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2))
            .connect(postgres::NoTls);
        match tried.and_then(|mut c| c.simple_query("SELECT 1")) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                bail!("postgres not ready after {START_TIMEOUT:?}: {e}; {}", log())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Immediate shutdown (SIGQUIT): nothing here needs to survive. Bounded, then SIGKILL.
fn stop(mut server: Child) {
    // SAFETY: kill(2) on the id of a child we own and have not reaped.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGQUIT);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn bin_dir() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .with_context(|| format!("{}: install PostgreSQL (tests/run.sh does)", root.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no initdb under {}", root.display()),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn chown(path: &Path) -> Result<()> {
    std::os::unix::fs::chown(path, Some(UNPRIVILEGED.0), Some(UNPRIVILEGED.1))
        .with_context(|| format!("chown {} to nobody", path.display()))
}

/// `program` run in `dir`, as `nobody` when this process is root.
fn command(program: &Path, as_root: bool, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir).env("LC_ALL", "C");
    if as_root {
        command
            .uid(UNPRIVILEGED.0)
            .gid(UNPRIVILEGED.1)
            .env("HOME", dir);
    }
    command
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_server_serves_new_databases_and_leaves_nothing_behind() {
        let pg = TempPostgres::start().unwrap();
        let url = pg.create_database("fresh_db").unwrap();
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let row = client.query_one("SELECT current_database()", &[]).unwrap();
        assert_eq!(row.get::<_, String>(0), "fresh_db");
        drop(client);
        let dir = pg.dir.path().to_owned();
        drop(pg);
        assert!(!dir.exists(), "{} removed", dir.display());
    }
}
