//! The `plant-sim` binary as other processes use it: it prints its address, answers real
//! clients (tokio-modbus and, independently, pymodbus), takes fault commands on stdin and
//! stops cleanly on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

const WAIT: Duration = Duration::from_secs(10);

/// A running `plant-sim` process.
struct PlantSim {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
}

impl PlantSim {
    async fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_plant-sim"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("plant-sim starts");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let line = tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .expect("plant-sim reports its address in time")
            .unwrap()
            .expect("a first line on stdout");
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line `{line}`"))
            .parse()
            .unwrap();
        Self {
            child,
            stdin,
            stdout,
            addr,
        }
    }

    /// Sends one control line and returns the reply line.
    async fn command(&mut self, line: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("a reply in time")
            .unwrap()
            .expect("a reply line")
    }

    async fn client(&self, unit: u8) -> Context {
        tcp::connect_slave(self.addr, Slave(unit)).await.unwrap()
    }

    /// SIGTERM, then the exit status.
    async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("plant-sim exits after SIGTERM")
            .unwrap()
    }
}

async fn bounded<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, call)
        .await
        .expect("answer in time")
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test]
async fn serves_the_default_plant_and_exits_cleanly_on_sigterm() {
    let sim = PlantSim::spawn(&[]).await;
    let mut ctx = sim.client(1).await;
    let level = bounded(ctx.read_input_registers(0, 2))
        .await
        .unwrap()
        .unwrap();
    let level = f32::from_bits((u32::from(level[0]) << 16) | u32::from(level[1]));
    assert!((0.0..=5.0).contains(&level), "tank_1 level {level}");
    ctx.set_slave(Slave(3));
    assert_eq!(
        bounded(ctx.read_input_registers(30, 2)).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress),
        "the power meter's reserved block"
    );
    let status = sim.terminate().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn stdin_commands_inject_and_clear_faults() {
    let mut sim = PlantSim::spawn(&[]).await;
    let mut ctx = sim.client(1).await;

    assert_eq!(sim.command("set 1 hr 20 77").await, "ok");
    assert_eq!(
        bounded(ctx.read_holding_registers(20, 1)).await.unwrap(),
        Ok(vec![77])
    );
    bounded(ctx.write_single_register(21, 88))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sim.command("get 1 hr 20 2").await, "ok 77 88");

    assert_eq!(sim.command("exception 1 3 20 2 6").await, "ok");
    assert_eq!(
        bounded(ctx.read_holding_registers(21, 1)).await.unwrap(),
        Err(ExceptionCode::ServerDeviceBusy)
    );
    assert_eq!(sim.command("delay 1 300").await, "ok");
    assert_eq!(sim.command("clear 1").await, "ok");
    assert!(
        bounded(ctx.read_holding_registers(21, 1))
            .await
            .unwrap()
            .is_ok()
    );

    assert_eq!(sim.command("delay 2 250").await, "ok");
    ctx.set_slave(Slave(2));
    let started = Instant::now();
    bounded(ctx.read_input_registers(0, 2))
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(sim.command("clear").await, "ok");

    assert_eq!(
        sim.command("status").await,
        "ok listening=true connections=1"
    );
    assert_eq!(sim.command("drop").await, "ok");
    assert!(bounded(ctx.read_input_registers(0, 2)).await.is_err());

    assert_eq!(sim.command("stop").await, "ok");
    assert!(tokio::net::TcpStream::connect(sim.addr).await.is_err());
    assert_eq!(sim.command("start").await, "ok");
    let mut ctx = sim.client(1).await;
    assert!(bounded(ctx.read_coils(0, 2)).await.unwrap().is_ok());

    assert!(sim.command("delay one 5").await.starts_with("error: UNIT"));
    assert!(
        sim.command("delay 9 5")
            .await
            .contains("unit 9 does not exist")
    );

    // The end of stdin ends only the command reader: the plant keeps serving.
    drop(sim.stdin.take());
    assert!(bounded(ctx.read_coils(0, 2)).await.unwrap().is_ok());
    assert!(sim.terminate().await.success());
}

#[tokio::test]
async fn bench_map_and_tick_options_shape_the_plant() {
    let sim = PlantSim::spawn(&["--bench-map", "2,300", "--tick-ms", "20"]).await;
    let mut ctx = sim.client(2).await;
    let first = bounded(ctx.read_holding_registers(0, 125))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.len(), 125);
    assert!(
        bounded(ctx.read_input_registers(175, 125))
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(
        bounded(ctx.read_holding_registers(290, 20)).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    // The u16 counter at address 0 moves with the ticks.
    let mut moved = false;
    for _ in 0..250 {
        let now = bounded(ctx.read_holding_registers(0, 1))
            .await
            .unwrap()
            .unwrap();
        if now[0] != first[0] {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(moved, "the counter never moved");
    assert!(sim.terminate().await.success());
}

#[tokio::test]
async fn the_example_config_is_served() {
    let example = workspace_root().join("config/plant-sim.example.toml");
    let sim = PlantSim::spawn(&["--config", example.to_str().unwrap()]).await;
    let mut ctx = sim.client(10).await;
    assert_eq!(
        bounded(ctx.read_input_registers(0, 1)).await.unwrap(),
        Ok(vec![312]),
        "firmware_version constant"
    );
    assert!(sim.terminate().await.success());
}

#[tokio::test]
async fn a_bad_config_fails_with_a_message_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[unit]]\nid = 1\n[[unit.signal]]\nname = \"p\"\ntable = \"input_registers\"\naddress = 0\nkind = \"sine\"\namplitude = 1.0\n",
    )
    .unwrap();
    let output = bounded(
        Command::new(env!("CARGO_BIN_EXE_plant-sim"))
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(2), "a bad configuration exits 2");
    assert!(output.stdout.is_empty(), "nothing announced on stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unit[0].signal[0].period_s"), "{stderr}");
}

/// An independent Modbus implementation reads and writes the simulator.
#[tokio::test]
async fn pymodbus_reads_and_writes_the_plant() {
    let python = std::env::var_os("SYSTEM_TESTS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "no Python with pymodbus at {}: run `bash tests/run.sh` once or set SYSTEM_TESTS_PYTHON",
        python.display()
    );
    let sim = PlantSim::spawn(&[]).await;
    let script = r#"
import sys
from pymodbus.client import ModbusTcpClient
host, port = sys.argv[1], int(sys.argv[2])
c = ModbusTcpClient(host, port=port, timeout=5, retries=0)
assert c.connect(), "connect"
rr = c.read_input_registers(0, count=2, device_id=1)
assert not rr.isError(), rr
level = c.convert_from_registers(rr.registers, data_type=c.DATATYPE.FLOAT32)
assert 0.0 <= level <= 5.0, level
rr = c.read_holding_registers(1, count=2, device_id=1)
start = c.convert_from_registers(rr.registers, data_type=c.DATATYPE.FLOAT32)
assert start == 4.0, start
wr = c.write_register(0, 2, device_id=1)
assert not wr.isError(), wr
rr = c.read_coils(0, count=2, device_id=1)
assert rr.bits[0] is True, rr.bits
rr = c.read_input_registers(16, count=4, device_id=3)
energy = c.convert_from_registers(rr.registers, data_type=c.DATATYPE.FLOAT64)
assert energy >= 1500.0, energy
rr = c.read_input_registers(30, count=1, device_id=3)
assert rr.isError() and rr.exception_code == 2, rr
print("ok", level)
"#;
    let output = bounded(
        Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(sim.addr.ip().to_string())
            .arg(sim.addr.port().to_string())
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.starts_with("ok "),
        "pymodbus failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut sim = sim;
    assert_eq!(
        sim.command("get 1 hr 0").await,
        "ok 2",
        "pymodbus's write landed"
    );
    assert!(sim.terminate().await.success());
}
