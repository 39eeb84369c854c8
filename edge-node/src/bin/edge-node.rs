//! `edge-node`: polls the configured Modbus devices and publishes them as a Sparkplug B
//! 3.0 edge node. `edge-node --config FILE` runs; `edge-node check-config FILE` checks a
//! file and exits non-zero with every problem. SIGTERM or Ctrl-C: NDEATH, DISCONNECT, exit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edge_node::{Config, EdgeNode};

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
async fn main() -> anyhow::Result<ExitCode> {
    infra::logging::init();
    let args = Args::parse();
    if let Some(Command::CheckConfig { file }) = args.command {
        return Ok(match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} servers, {} devices, {} tags)",
                    file.display(),
                    c.mqtt.servers.len(),
                    c.site.devices.len(),
                    c.site.tags.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}:\n{e}", file.display());
                ExitCode::FAILURE
            }
        });
    }
    let Some(path) = args.config else {
        anyhow::bail!("--config FILE is required");
    };
    let config = Config::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let node = EdgeNode::start(config).context("starting the edge node")?;
    infra::shutdown::wait_for_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await.context("stopping the edge node")?;
    Ok(ExitCode::SUCCESS)
}
