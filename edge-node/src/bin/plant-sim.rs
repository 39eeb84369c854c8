//! `plant-sim`: serves a simulated Modbus plant over TCP for tests, benchmarks and demos.
//!
//! Prints `listening on ADDR` on stdout once ready, then reads fault-injection commands on
//! stdin (see `edge_node::simulator::control`), answering each on stdout. Logs go to stderr.
//! Stops on SIGTERM or Ctrl-C; the end of stdin only ends the command reader.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use edge_node::simulator::{Simulator, SimulatorConfig, control};
use infra::Exit;
use tokio::io::{AsyncWriteExt, BufReader};

#[derive(Debug, Parser)]
#[command(name = "plant-sim", version, about = "Modbus TCP plant simulator")]
struct Args {
    /// Plant configuration (TOML); the built-in demo plant when absent.
    #[arg(long, conflicts_with = "bench_map")]
    config: Option<PathBuf>,
    /// Address to listen on; port 0 lets the OS choose (the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:5020")]
    listen: SocketAddr,
    /// Signal tick period in milliseconds (overrides the configuration's `tick_ms`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    tick_ms: Option<u64>,
    /// Generated benchmark map: UNITS,REGISTERS (e.g. 10,1000).
    #[arg(long, value_name = "UNITS,REGISTERS", value_parser = parse_bench_map)]
    bench_map: Option<(usize, usize)>,
}

fn parse_bench_map(text: &str) -> Result<(usize, usize), String> {
    let (units, registers) = text
        .split_once(',')
        .ok_or_else(|| format!("expected UNITS,REGISTERS, got `{text}`"))?;
    let units = units
        .trim()
        .parse()
        .map_err(|_| format!("UNITS: `{units}` is not a number"))?;
    let registers = registers
        .trim()
        .parse()
        .map_err(|_| format!("REGISTERS: `{registers}` is not a number"))?;
    Ok((units, registers))
}

fn main() -> ExitCode {
    let args = Args::parse();
    infra::logging::init();
    infra::panic::install();
    let loaded = match (&args.config, args.bench_map) {
        (Some(path), _) => SimulatorConfig::load(path),
        (None, Some((units, registers))) => SimulatorConfig::bench_map(units, registers),
        (None, None) => Ok(SimulatorConfig::default_plant()),
    };
    let mut config = match loaded {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Exit::BadInput.into();
        }
    };
    if let Some(tick_ms) = args.tick_ms {
        config.tick_ms = tick_ms;
    }
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|runtime| {
            let result = runtime.block_on(run(config, args.listen));
            // The stdin reader blocks in a read that cannot be cancelled; do not wait for it.
            runtime.shutdown_timeout(Duration::from_millis(200));
            result
        });
    match result {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            eprintln!("plant-sim: {e:#}");
            Exit::RuntimeFailure.into()
        }
    }
}

async fn run(config: SimulatorConfig, listen: SocketAddr) -> anyhow::Result<()> {
    let simulator = Simulator::start(&config, listen).await?;
    // Installed before announcing readiness, so a SIGTERM right after it is not fatal.
    let shutdown =
        infra::shutdown::signal().context("installing the SIGTERM and SIGINT handlers")?;

    let mut stdout = tokio::io::stdout();
    let ready = format!("listening on {}\n", simulator.local_addr());
    stdout.write_all(ready.as_bytes()).await?;
    stdout.flush().await?;

    let commands = async {
        let stdin = BufReader::new(tokio::io::stdin());
        if let Err(error) = control::serve_commands(simulator.server(), stdin, stdout).await {
            tracing::warn!(%error, "command input failed");
        }
        tracing::debug!("command input closed");
        std::future::pending::<()>().await
    };
    tokio::select! {
        () = commands => {}
        () = shutdown => {}
    }
    tracing::info!("shutting down");
    simulator.shutdown().await;
    Ok(())
}
