//! `edge-node`: polls the configured Modbus devices and publishes them as a Sparkplug B
//! 3.0 edge node. `edge-node --config FILE` runs; `edge-node check-config FILE` checks a
//! file and prints every problem. SIGTERM or Ctrl-C: NDEATH, DISCONNECT, exit. Exit codes
//! follow [`infra::Exit`]: 2 for a bad configuration or command line, 1 for a failure.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edge_node::{Config, EdgeNode};
use infra::Exit;

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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks a configuration file and exits.
    CheckConfig { file: PathBuf },
}

#[tokio::main]
async fn main() -> ExitCode {
    infra::logging::init();
    let args = Args::parse();
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
    match run(config).await {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            eprintln!("edge-node: {e:#}");
            Exit::RuntimeFailure.into()
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let node = EdgeNode::start(config).context("starting the edge node")?;
    infra::shutdown::wait_for_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await.context("stopping the edge node")
}
