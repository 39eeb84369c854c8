//! The `plant-sim` binary as other processes use it: it prints its address, answers real
//! clients (tokio-modbus and, independently, pymodbus), takes fault commands on stdin and
//! stops cleanly on SIGTERM.

use std::process::Stdio;
use std::time::{Duration, Instant};

use system_tests::config::sim::{Signal, SimConfig, Unit};
use system_tests::stack::Plant;
use system_tests::wait;
use tokio::process::Command;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

const WAIT: Duration = Duration::from_secs(10);

async fn client(sim: &Plant, unit: u8) -> Context {
    tcp::connect_slave(sim.addr(), Slave(unit)).await.unwrap()
}

async fn bounded<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, call)
        .await
        .expect("answer in time")
}

#[tokio::test]
async fn serves_the_default_plant_and_exits_cleanly_on_sigterm() {
    let mut sim = Plant::start();
    let mut ctx = client(&sim, 1).await;
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
    let status = sim.terminate();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[tokio::test]
async fn stdin_commands_inject_and_clear_faults() {
    let mut sim = Plant::start();
    let mut ctx = client(&sim, 1).await;

    assert_eq!(sim.reply("set 1 hr 20 77"), "ok");
    assert_eq!(
        bounded(ctx.read_holding_registers(20, 1)).await.unwrap(),
        Ok(vec![77])
    );
    bounded(ctx.write_single_register(21, 88))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sim.reply("get 1 hr 20 2"), "ok 77 88");

    assert_eq!(sim.reply("exception 1 3 20 2 6"), "ok");
    assert_eq!(
        bounded(ctx.read_holding_registers(21, 1)).await.unwrap(),
        Err(ExceptionCode::ServerDeviceBusy)
    );
    assert_eq!(sim.reply("delay 1 300"), "ok");
    assert_eq!(sim.reply("clear 1"), "ok");
    assert!(
        bounded(ctx.read_holding_registers(21, 1))
            .await
            .unwrap()
            .is_ok()
    );

    assert_eq!(sim.reply("delay 2 250"), "ok");
    ctx.set_slave(Slave(2));
    let started = Instant::now();
    bounded(ctx.read_input_registers(0, 2))
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(sim.reply("clear"), "ok");

    assert_eq!(sim.reply("status"), "ok listening=true connections=1");
    assert_eq!(sim.reply("drop"), "ok");
    assert!(bounded(ctx.read_input_registers(0, 2)).await.is_err());

    assert_eq!(sim.reply("stop"), "ok");
    assert!(tokio::net::TcpStream::connect(sim.addr()).await.is_err());
    assert_eq!(sim.reply("start"), "ok");
    let mut ctx = client(&sim, 1).await;
    assert!(bounded(ctx.read_coils(0, 2)).await.unwrap().is_ok());

    assert!(sim.reply("delay one 5").starts_with("error: UNIT"));
    assert!(sim.reply("delay 9 5").contains("unit 9 does not exist"));

    // The end of stdin ends only the command reader: the plant keeps serving.
    sim.close_stdin();
    assert!(bounded(ctx.read_coils(0, 2)).await.unwrap().is_ok());
    assert!(sim.terminate().is_some_and(|s| s.success()));
}

#[tokio::test]
async fn bench_map_and_tick_options_shape_the_plant() {
    let mut sim = Plant::start_args(&["--bench-map", "2,300", "--tick-ms", "20"]);
    let mut ctx = client(&sim, 2).await;
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
    wait::until_read(
        "the counter moves",
        WAIT,
        async || {
            bounded(ctx.read_holding_registers(0, 1))
                .await
                .unwrap()
                .unwrap()
        },
        |now| now[0] != first[0],
    )
    .await;
    assert!(sim.terminate().is_some_and(|s| s.success()));
}

#[tokio::test]
async fn the_example_config_is_served() {
    let example = system_tests::workspace_root().join("config/plant-sim.example.toml");
    let mut sim = Plant::start_config(&example);
    let mut ctx = client(&sim, 10).await;
    assert_eq!(
        bounded(ctx.read_input_registers(0, 1)).await.unwrap(),
        Ok(vec![312]),
        "firmware_version constant"
    );
    assert!(sim.terminate().is_some_and(|s| s.success()));
}

#[tokio::test]
async fn a_bad_config_fails_with_a_message_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    // A sine without its period.
    let config = SimConfig {
        units: vec![Unit {
            signals: vec![Signal {
                amplitude: Some(1.0),
                ..Signal::new("p", "input_registers", 0, "sine")
            }],
            ..Unit::new(1)
        }],
        ..SimConfig::default()
    };
    std::fs::write(&path, config.to_toml()).unwrap();
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
    let python = system_tests::python();
    let mut sim = Plant::start();
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
            .arg(sim.addr().ip().to_string())
            .arg(sim.port().to_string())
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
    assert_eq!(sim.reply("get 1 hr 0"), "ok 2", "pymodbus's write landed");
    assert!(sim.terminate().is_some_and(|s| s.success()));
}
