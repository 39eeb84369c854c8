//! `host-app`: the Sparkplug B host application's command line.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode { file, birth } => decode(file, birth),
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("host-app decode: {e}");
            ExitCode::from(2)
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
