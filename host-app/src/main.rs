//! `host-app`: the Sparkplug B host application's command line. Exit codes follow
//! [`infra::Exit`]: 2 for a bad configuration or command line, 1 for a failure.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use host_app::config::HostConfig;
use host_app::host::Host;
use host_app::spy::{self, SpyOptions};
use host_app::tracker::Liveness;
use infra::Exit;
use infra::notify::Notifier;

/// Largest payload file `decode` reads; MQTT's own ceiling is 256 MiB, no real payload nears it.
const MAX_PAYLOAD_FILE: u64 = 64 * 1024 * 1024;

#[derive(Parser)]
#[command(name = "host-app", version, about = "Sparkplug B 3.0 host application")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print one Sparkplug B payload (raw protobuf bytes, compressed or not) as JSON.
    Decode {
        /// The payload file; standard input when absent or `-`.
        file: Option<PathBuf>,
        /// A birth (NBIRTH/DBIRTH payload file) naming the aliases and datatypes of a DATA/CMD payload.
        #[arg(long)]
        birth: Option<PathBuf>,
    },
    /// Run the whole host (broker, Primary Host session, history, API) until SIGTERM or Ctrl-C.
    Run {
        /// The host configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Load and validate a host configuration file, naming every wrong key.
    CheckConfig {
        /// The host configuration file (TOML).
        file: PathBuf,
    },
    /// Manage the panel's accounts (for recovery: works while the host runs or not).
    User {
        /// The host configuration file (TOML): the accounts live in its state directory.
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: web::cli::UserAction,
    },
    /// Subscribe to a broker and print every Sparkplug message as one JSON line.
    Spy {
        /// mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (also tcp:// and ssl://).
        #[arg(long)]
        broker: String,
        /// MQTT topic filter.
        #[arg(long, default_value = sparkplug::filter::NAMESPACE_ALL)]
        topic: String,
        #[arg(long)]
        username: Option<String>,
        /// A file holding the password (one line); requires --username.
        #[arg(long, requires = "username")]
        password_file: Option<PathBuf>,
        /// CA certificates (PEM) for mqtts.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
    },
}

fn main() -> ExitCode {
    infra::allocator::hold_mmap_threshold();
    let cli = Cli::parse();
    match cli.command {
        Command::Decode { file, birth } => decode(file, birth),
        Command::Run { config } => run(&config),
        Command::CheckConfig { file } => check_config(&file),
        Command::User { config, action } => user(&config, action),
        Command::Spy {
            broker,
            topic,
            username,
            password_file,
            ca,
            count,
            duration,
        } => spy(broker, topic, username, password_file, ca, count, duration),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn check_config(file: &Path) -> ExitCode {
    match HostConfig::load(file) {
        Ok(config) => {
            println!(
                "{}: ok (host_id {}, broker {:?}, history {}, API {})",
                file.display(),
                config.sparkplug.host_id,
                config.broker.mode,
                config.history.location(),
                config.api.listen
            );
            Exit::Success.into()
        }
        Err(e) => {
            eprintln!("{e}");
            Exit::BadInput.into()
        }
    }
}

fn run(file: &Path) -> ExitCode {
    let config = match HostConfig::load(file) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Exit::BadInput.into();
        }
    };
    infra::logging::init_with(config.log);
    infra::panic::install();
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            // Installed first: SIGHUP's default action would end the process.
            let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| format!("installing the SIGHUP handler: {e}"))?;
            let notifier = Notifier::from_env().map_err(|e| format!("NOTIFY_SOCKET: {e}"))?;
            let stop = infra::shutdown::signal()
                .map_err(|e| format!("installing the signal handlers: {e}"))?;
            let host = Host::start(&config).await.map_err(|e| e.to_string())?;
            let endpoint = host.broker().endpoint();
            println!(
                "host-app: running as {}; MQTT {}:{}; panel {}",
                config.sparkplug.host_id,
                endpoint.host,
                endpoint.port,
                host.api().base_url()
            );
            let metrics = infra::metrics::Listener::start(
                config.metrics,
                host_app::exposition::source(&host),
            )
            .await
            .map_err(|e| e.to_string())?;
            let watchdog = start_watchdog(&host);
            let mut reloader = infra::reload::Reloader::new(file, metrics);
            if host.broker().embedded().is_some() {
                reloader = reloader.with_live_keys(&ACCOUNT_KEYS);
            }
            // The self-signed panel certificate is the host's own: only configured files
            // are renewed from outside.
            if let Some(cert) = host.api().cert().filter(|_| config.api.tls.is_some()) {
                reloader = reloader.with_certificate("api.tls", Arc::clone(cert));
            }
            if let Some(cert) = host.broker().embedded().and_then(|b| b.tls_cert()) {
                reloader = reloader.with_certificate("broker.embedded.tls", Arc::clone(cert));
            }
            tell_systemd(&host, &notifier, stop, &mut hangup, &mut reloader).await;
            if let Some(task) = watchdog {
                task.abort();
            }
            tracing::info!("stopping");
            let stats = host.stop().await.map_err(|e| e.to_string())?;
            tracing::info!(?stats, "stopped");
            Ok(())
        })
    });
    match result {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            eprintln!("host-app run: {e}");
            Exit::RuntimeFailure.into()
        }
    }
}

fn user(file: &Path, action: web::cli::UserAction) -> ExitCode {
    use web::cli::UserError;
    let config = match HostConfig::load(file) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Exit::BadInput.into();
        }
    };
    match web::cli::run(action, || host_app::users::open(&config)) {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            eprintln!("host-app user: {e}");
            match e {
                UserError::BadInput(_) => Exit::BadInput.into(),
                UserError::Failed(_) => Exit::RuntimeFailure.into(),
            }
        }
    }
}

/// How often the status line is brought up to date.
const STATUS_PERIOD: Duration = Duration::from_secs(5);

/// Tells systemd the host is ready (broker listening, history open, API bound: `Host::start`
/// returned), keeps its status line current until `stop` resolves, then says it is stopping.
async fn tell_systemd(
    host: &Host,
    notifier: &Notifier,
    stop: impl Future<Output = ()>,
    hangup: &mut tokio::signal::unix::Signal,
    reloader: &mut infra::reload::Reloader,
) {
    let mut line = status_line(host);
    report(notifier.ready(&line));
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(STATUS_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = hangup.recv() => {
                let line = reloader
                    .reload(HostConfig::load, |c| c.metrics, async |c| {
                        apply_accounts(host, c).await
                    })
                    .await;
                report(notifier.status(&line));
            }
            _ = tick.tick() => {
                let now = status_line(host);
                if now != line {
                    line = now;
                    report(notifier.status(&line));
                }
            }
        }
    }
    report(notifier.stopping());
}

/// What a reload applies to the embedded broker while it runs: its accounts and rules.
const ACCOUNT_KEYS: [&str; 4] = [
    "broker.embedded.users",
    "broker.embedded.allow_anonymous",
    "broker.embedded.anonymous",
    "broker.embedded.acl_file",
];

/// A reload's accounts, applied to the running embedded broker (an external broker's
/// accounts are its own business; a change of mode waits for a restart).
async fn apply_accounts(host: &Host, config: &HostConfig) -> Result<Option<String>, String> {
    let Some(broker) = host.broker().embedded() else {
        return Ok(None);
    };
    if config.broker.mode != host_app::broker::BrokerMode::Embedded {
        return Ok(None);
    }
    let applied = broker
        .reload_accounts(&config.broker.embedded)
        .await
        .map_err(|e| format!("broker accounts not applied: {e}"))?;
    Ok((!applied.changes.is_empty()).then(|| applied.to_string()))
}

fn status_line(host: &Host) -> String {
    let endpoint = host.broker().endpoint();
    let kind = if host.broker().embedded().is_some() {
        "broker listening on"
    } else {
        "using broker"
    };
    let online = host
        .shared()
        .tracker()
        .nodes()
        .iter()
        .filter(|(_, node)| node.state == Liveness::Online)
        .count();
    let session = if host.shared().is_connected() {
        "connected"
    } else {
        "not connected"
    };
    format!(
        "{kind} {}:{}, session {session}, panel on {}, {online} edge nodes online",
        endpoint.host,
        endpoint.port,
        host.api().base_url()
    )
}

/// Pings systemd's watchdog while the data path is alive: the history writer commits (or
/// has nothing to commit) and, with the embedded broker, the host's own session to it is
/// connected (the broker accepts and serves clients).
fn start_watchdog(host: &Host) -> Option<tokio::task::JoinHandle<()>> {
    let period = infra::watchdog::period_from_env()?;
    let notifier = Notifier::from_env().ok()?;
    let mut watchdog = infra::watchdog::Watchdog::new(period);
    watchdog.watch("history writer", host.history_progress());
    let shared = Arc::clone(host.shared());
    // Alive while connected, so only a whole period without the session counts.
    let session = infra::watchdog::Progress::new();
    if host.broker().embedded().is_some() {
        watchdog.watch(
            "embedded broker (the host's session to it)",
            Arc::clone(&session),
        );
    }
    Some(tokio::spawn(watchdog.run(notifier, move || {
        session.set_idle(shared.is_connected());
    })))
}

/// A service manager that stopped listening is no reason to stop serving.
fn report(sent: std::io::Result<()>) {
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

#[allow(clippy::too_many_arguments)]
fn spy(
    broker: String,
    topic: String,
    username: Option<String>,
    password_file: Option<PathBuf>,
    ca: Option<PathBuf>,
    count: Option<u64>,
    duration: Option<f64>,
) -> ExitCode {
    let setup = || -> Result<SpyOptions, String> {
        let password = match &password_file {
            // Read the way the host reads its own broker password file.
            Some(path) => Some(
                infra::secret::read_secret_file(path)
                    .map_err(|e| format!("--password-file: {e}"))?,
            ),
            None => None,
        };
        let duration = duration
            .map(|s| {
                Duration::try_from_secs_f64(s)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| format!("--duration {s}: must be a positive number of seconds"))
            })
            .transpose()?;
        Ok(SpyOptions {
            endpoint: spy::endpoint(&broker, username.clone(), password, ca.clone())
                .map_err(|e| e.to_string())?,
            filter: topic.clone(),
            count,
            duration,
        })
    };
    let options = match setup() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("host-app spy: {e}");
            return Exit::BadInput.into();
        }
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let mut ready = || eprintln!("host-app spy: subscribed to {}", options.filter);
            tokio::select! {
                r = spy::run(&options, &mut out, &mut ready) => r.map_err(|e| e.to_string()),
                () = infra::shutdown::wait_for_signal() => Ok(0),
            }
        })
    });
    match result {
        Ok(_) => Exit::Success.into(),
        Err(e) => {
            eprintln!("host-app spy: {e}");
            Exit::RuntimeFailure.into()
        }
    }
}

fn decode(file: Option<PathBuf>, birth: Option<PathBuf>) -> ExitCode {
    let run = || -> Result<String, String> {
        let bytes = read_input(file.as_ref())?;
        let birth = birth.as_ref().map(|p| read_input(Some(p))).transpose()?;
        let json =
            host_app::inspect::decode(&bytes, birth.as_deref()).map_err(|e| e.to_string())?;
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())
    };
    match run() {
        Ok(text) => {
            println!("{text}");
            Exit::Success.into()
        }
        Err(e) => {
            eprintln!("host-app decode: {e}");
            Exit::BadInput.into()
        }
    }
}

/// Reads a whole file (or stdin for `None`/`-`), refusing anything larger than a payload can be.
fn read_input(path: Option<&PathBuf>) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let (name, result) = match path.filter(|p| p.as_os_str() != "-") {
        Some(p) => (
            p.display().to_string(),
            std::fs::File::open(p)
                .and_then(|f| f.take(MAX_PAYLOAD_FILE + 1).read_to_end(&mut bytes)),
        ),
        None => (
            "standard input".to_owned(),
            std::io::stdin()
                .take(MAX_PAYLOAD_FILE + 1)
                .read_to_end(&mut bytes),
        ),
    };
    result.map_err(|e| format!("{name}: {e}"))?;
    if bytes.len() as u64 > MAX_PAYLOAD_FILE {
        return Err(format!(
            "{name}: larger than {MAX_PAYLOAD_FILE} bytes, not a payload"
        ));
    }
    Ok(bytes)
}
