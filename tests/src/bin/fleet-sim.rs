//! `fleet-sim`: plays N Sparkplug edge nodes with M tags each against one or more MQTT
//! servers, for load tests of the hosts (see `system_tests::fleet`). Prints one JSON
//! report line on stdout when it stops (after `--duration-s`, or on SIGTERM / Ctrl-C).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use system_tests::fleet::{self, FleetOptions};

#[derive(Debug, Parser)]
#[command(name = "fleet-sim", about = "Sparkplug B edge node fleet simulator")]
struct Args {
    /// MQTT server HOST:PORT; repeat for several (nodes are spread over them and move to
    /// the next one when a connection is lost).
    #[arg(long = "server", required = true)]
    servers: Vec<SocketAddr>,
    /// Sparkplug group; repeat for several (nodes are spread over them).
    #[arg(long = "group", default_value = "Fleet")]
    groups: Vec<String>,
    /// Number of edge nodes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    nodes: u32,
    /// Tags per node.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    tags: u32,
    /// NDATA messages per node per second (every tag changes in each).
    #[arg(long, default_value_t = 1.0)]
    rate_hz: f64,
    /// Stop after this many seconds; runs until SIGTERM / Ctrl-C when absent.
    #[arg(long)]
    duration_s: Option<f64>,
    /// Node ids are this prefix and a four-digit number.
    #[arg(long, default_value = "sim")]
    node_prefix: String,
    /// MQTT username for every node.
    #[arg(long, requires = "password_file")]
    username: Option<String>,
    /// File holding the MQTT password.
    #[arg(long, requires = "username")]
    password_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate_hz.is_finite() && args.rate_hz > 0.0 && args.rate_hz <= 1000.0,
        "--rate-hz: {} is not in (0, 1000]",
        args.rate_hz
    );
    let duration = match args.duration_s {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => anyhow::bail!("--duration-s: {s} is not a positive number"),
        None => None,
    };
    let login = match (args.username, args.password_file) {
        (Some(user), Some(file)) => {
            let password = std::fs::read_to_string(&file)
                .with_context(|| format!("--password-file {}", file.display()))?;
            Some((user, password.trim_end_matches(['\r', '\n']).to_owned()))
        }
        _ => None,
    };
    let options = FleetOptions {
        servers: args.servers,
        groups: args.groups,
        nodes: args.nodes as usize,
        tags: args.tags as usize,
        rate_hz: args.rate_hz,
        node_prefix: args.node_prefix,
        login,
    };
    system_tests::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let (report, elapsed) = runtime.block_on(fleet::run(options, duration));
    println!(
        "{}",
        serde_json::json!({
            "samples": report.samples,
            "ndata": report.ndata,
            "births": report.births,
            "connects": report.connects,
            "rebirths": report.rebirths,
            "elapsed_s": elapsed.as_secs_f64(),
        })
    );
    Ok(())
}
