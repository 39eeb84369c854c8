//! `edge-node`: polls the configured Modbus devices and publishes them as a Sparkplug B
//! 3.0 edge node. `edge-node --config FILE` runs (with the web UI when the file has a
//! `[ui]` table); `edge-node check-config FILE` checks a file and prints every problem;
//! `edge-node user --config FILE add|passwd|list|remove` manages the UI's accounts.
//! SIGTERM or Ctrl-C: NDEATH, DISCONNECT, exit. SIGHUP (`systemctl reload`): the files as
//! on disk now go through the configurator's validate-and-apply path, as the UI's applies
//! do (a bad file changes nothing; the status line says why). Exit codes
//! follow [`infra::Exit`]: 2 for a bad configuration or command line, 1 for a failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edge_node::{Config, EdgeNode};
use infra::Exit;
use infra::notify::Notifier;
use infra::watchdog::Watchdog;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "edge-node",
    version,
    about = "Sparkplug B edge node for Modbus devices",
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the last known good configuration and the configuration audit are kept
    /// (default: $STATE_DIRECTORY, else the directory of sparkplug.state_file, else the
    /// configuration file's directory).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks a configuration file and exits.
    CheckConfig { file: PathBuf },
    /// Manage the web UI's accounts (for recovery: works while the node runs or not).
    User {
        /// The configuration file: the accounts live in its `[ui] state_dir`.
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: web::cli::UserAction,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    infra::allocator::hold_mmap_threshold();
    infra::panic::install();
    let args = Args::parse();
    if let Some(Command::User { config, action }) = args.command {
        return user(&config, action);
    }
    if let Some(Command::CheckConfig { file }) = args.command {
        return match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} servers, {} devices, {} tags)",
                    file.display(),
                    c.mqtt.servers.len(),
                    c.site.devices.len(),
                    c.site.tags.len()
                );
                Exit::Success.into()
            }
            Err(e) => {
                eprintln!("{e}");
                Exit::BadInput.into()
            }
        };
    }
    let Some(path) = args.config else {
        eprintln!("edge-node: --config FILE is required (or check-config FILE)");
        return Exit::BadInput.into();
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Exit::BadInput.into();
        }
    };
    let state_dir = args
        .state_dir
        .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
        .or_else(|| {
            let file = config.sparkplug.state_file.as_ref()?;
            file.parent().map(std::path::Path::to_owned)
        })
        .unwrap_or_else(|| {
            path.parent()
                .unwrap_or(std::path::Path::new("."))
                .to_owned()
        });
    infra::logging::init_with(config.log);
    match run(config, &path, &state_dir).await {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            eprintln!("edge-node: {e:#}");
            Exit::RuntimeFailure.into()
        }
    }
}

/// Longest wait for the first poll report before telling systemd the node is ready anyway
/// (a device that never answers is reported offline only after its retries).
const FIRST_POLL_WAIT: Duration = Duration::from_secs(30);

/// `edge-node user ...` on the accounts database of the file's `[ui]`.
fn user(file: &std::path::Path, action: web::cli::UserAction) -> ExitCode {
    use web::cli::UserError;
    let ui = match Config::load(file) {
        Ok(Config { ui: Some(ui), .. }) => ui,
        Ok(_) => {
            eprintln!("{}: no [ui] table, so no UI accounts", file.display());
            return Exit::BadInput.into();
        }
        Err(e) => {
            eprintln!("{e}");
            return Exit::BadInput.into();
        }
    };
    match web::cli::run(action, || {
        edge_node::ui::open_auth(&ui).map_err(UserError::Failed)
    }) {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            eprintln!("edge-node user: {e}");
            match e {
                UserError::BadInput(_) => Exit::BadInput.into(),
                UserError::Failed(_) => Exit::RuntimeFailure.into(),
            }
        }
    }
}

async fn run(
    config: Config,
    path: &std::path::Path,
    state_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let metrics_addr = config.metrics;
    let ui_config = config.ui.clone();
    // Installed first: SIGHUP's default action would end the process.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let notifier = Notifier::from_env().context("NOTIFY_SOCKET")?;
    let stop = infra::shutdown::signal().context("installing the signal handlers")?;
    tokio::pin!(stop);
    let node = EdgeNode::start(config).context("starting the edge node")?;
    let source = node.metrics();
    let mut metrics =
        infra::metrics::Listener::start(metrics_addr, Arc::new(move || source.render()))
            .await
            .context("starting the metrics listener")?;
    let configurator = node
        .configurator(path, state_dir)
        .context("starting the configurator")?;
    let ui_stop = tokio_util::sync::CancellationToken::new();
    let ui = match &ui_config {
        Some(ui) => {
            let server = edge_node::ui::UiServer::start(
                ui,
                configurator.clone(),
                path,
                node.metrics(),
                ui_stop.clone(),
            )
            .await
            .context("starting the web UI")?;
            Some(server)
        }
        None => None,
    };
    let mut status = node.status();
    // Ready once acquisition has polled: configuration, Modbus and the session task all run.
    let first_poll = tokio::time::timeout(FIRST_POLL_WAIT, status.wait_for(|s| s.polled));
    let stopped_early = tokio::select! {
        _ = first_poll => false,
        () = &mut stop => true,
    };
    if !stopped_early {
        let line = status.borrow_and_update().to_string();
        report(notifier.ready(&line));
        let _watchdog = start_watchdog(&node);
        let mut applied = configurator.watch();
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = hangup.recv() => {
                    tracing::info!(file = %path.display(), "SIGHUP: reloading the configuration");
                    let line = match configurator.reload("SIGHUP").await {
                        Ok(report) => {
                            // `[metrics]` moves before the status line says it is done.
                            let addr = applied.borrow_and_update().metrics;
                            if let Err(e) = metrics.apply(addr).await {
                                tracing::error!(error = %e, "metrics.listen not applied; the previous listener stays");
                            }
                            format!("configuration reloaded: {report}")
                        }
                        Err(e) => {
                            for line in e.to_string().lines() {
                                tracing::error!(problem = %line, "reload refused; the running configuration stays");
                            }
                            let keys: Vec<&str> = e.problems().iter().map(|p| p.key.as_str()).collect();
                            let why = if keys.is_empty() { e.to_string() } else { keys.join(", ") };
                            format!("reload refused ({why}); running on the previous configuration")
                        }
                    };
                    report(notifier.status(&line));
                }
                Ok(()) = applied.changed() => {
                    // `[metrics]` is the process's, not the node's: applied here.
                    let addr = applied.borrow_and_update().metrics;
                    if let Err(e) = metrics.apply(addr).await {
                        tracing::error!(error = %e, "metrics.listen not applied; the previous listener stays");
                    }
                }
                changed = status.changed() => {
                    if changed.is_err() {
                        break; // the node stopped by itself; shutdown reports why
                    }
                    let line = status.borrow_and_update().to_string();
                    report(notifier.status(&line));
                }
            }
        }
    }
    report(notifier.stopping());
    tracing::info!("shutting down");
    ui_stop.cancel();
    if let Some(ui) = ui {
        ui.join().await;
    }
    node.shutdown().await.context("stopping the edge node")
}

/// Pings systemd's watchdog while every polling line and the publisher make progress
/// (the task ends when the returned guard drops).
fn start_watchdog(node: &edge_node::NodeHandle) -> Option<tokio_util::sync::DropGuard> {
    let period = infra::watchdog::period_from_env()?;
    let notifier = Notifier::from_env().ok()?;
    let mut watchdog = Watchdog::new(period);
    for (name, progress) in node.liveness() {
        watchdog.watch(name.clone(), Arc::clone(progress));
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = watchdog.run(notifier, || {}) => {}
            () = stop.cancelled() => {}
        }
    });
    Some(cancel.drop_guard())
}

/// A service manager that stopped listening is no reason to stop serving.
fn report(sent: std::io::Result<()>) {
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}
