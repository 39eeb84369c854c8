//! The live plant seen through a real Modbus client: typed values in every word order,
//! counters wrapping, and operator writes that change the tank process.

use std::net::SocketAddr;
use std::time::Duration;

use edge_node::simulator::{Simulator, SimulatorConfig};
use system_tests::wait;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

const WAIT: Duration = Duration::from_secs(5);

async fn client(addr: SocketAddr, unit: u8) -> Context {
    tcp::connect_slave(addr, Slave(unit)).await.unwrap()
}

async fn input_registers(ctx: &mut Context, address: u16, count: u16) -> Vec<u16> {
    tokio::time::timeout(WAIT, ctx.read_input_registers(address, count))
        .await
        .expect("answer in time")
        .unwrap()
        .unwrap()
}

async fn discrete_input(ctx: &mut Context, address: u16) -> bool {
    tokio::time::timeout(WAIT, ctx.read_discrete_inputs(address, 1))
        .await
        .expect("answer in time")
        .unwrap()
        .unwrap()[0]
}

/// Big-endian f32 from two registers, high word first, decoded here independently.
fn f32_abcd(words: &[u16]) -> f32 {
    f32::from_bits((u32::from(words[0]) << 16) | u32::from(words[1]))
}

async fn start(config: &SimulatorConfig) -> Simulator {
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn constants_appear_in_each_documented_layout() {
    let config = SimulatorConfig::from_toml_str(
        r#"
        [[unit]]
        id = 5
        sizes = { coils = 4, discrete_inputs = 4, holding_registers = 4, input_registers = 32 }
        [[unit.signal]]
        name = "abcd"
        table = "input_registers"
        address = 0
        type = "f32"
        kind = "constant"
        value = 1.5
        [[unit.signal]]
        name = "cdab"
        table = "input_registers"
        address = 2
        type = "f32"
        order = "cdab"
        kind = "constant"
        value = 1.5
        [[unit.signal]]
        name = "badc"
        table = "input_registers"
        address = 4
        type = "f32"
        order = "badc"
        kind = "constant"
        value = 1.5
        [[unit.signal]]
        name = "dcba"
        table = "input_registers"
        address = 6
        type = "f32"
        order = "dcba"
        kind = "constant"
        value = 1.5
        [[unit.signal]]
        name = "u32"
        table = "input_registers"
        address = 8
        type = "u32"
        order = "cdab"
        kind = "constant"
        value = 305419896
        [[unit.signal]]
        name = "i16"
        table = "input_registers"
        address = 10
        type = "i16"
        kind = "constant"
        value = -2
        [[unit.signal]]
        name = "f64"
        table = "input_registers"
        address = 12
        type = "f64"
        kind = "constant"
        value = 1.0
        [[unit.signal]]
        name = "scaled"
        table = "input_registers"
        address = 16
        type = "u16"
        scale = 100.0
        kind = "constant"
        value = 12.34
        [[unit.signal]]
        name = "flag"
        table = "discrete_inputs"
        address = 2
        kind = "constant"
        value = 1
        "#,
        "layouts",
    )
    .unwrap();
    let sim = start(&config).await;
    let mut ctx = client(sim.local_addr(), 5).await;
    let words = input_registers(&mut ctx, 0, 17).await;
    // 1.5f32 = 0x3FC0_0000.
    assert_eq!(words[0..2], [0x3FC0, 0x0000], "abcd");
    assert_eq!(words[2..4], [0x0000, 0x3FC0], "cdab");
    assert_eq!(words[4..6], [0xC03F, 0x0000], "badc");
    assert_eq!(words[6..8], [0x0000, 0xC03F], "dcba");
    assert_eq!(words[8..10], [0x5678, 0x1234], "u32 cdab");
    assert_eq!(words[10], 0xFFFE, "i16 two's complement");
    assert_eq!(words[12..16], [0x3FF0, 0, 0, 0], "f64 abcd");
    assert_eq!(words[16], 1234, "scaled u16");
    assert!(discrete_input(&mut ctx, 2).await);
    sim.shutdown().await;
}

#[tokio::test]
async fn integer_counters_wrap_on_the_wire() {
    let config = SimulatorConfig::from_toml_str(
        r#"
        tick_ms = 10
        [[unit]]
        id = 1
        sizes = { coils = 1, discrete_inputs = 1, holding_registers = 1, input_registers = 4 }
        [[unit.signal]]
        name = "u16"
        table = "input_registers"
        address = 0
        type = "u16"
        kind = "counter"
        start = 65530
        rate = 100
        [[unit.signal]]
        name = "u32"
        table = "input_registers"
        address = 1
        type = "u32"
        order = "cdab"
        kind = "counter"
        start = 4294967290
        rate = 100
        "#,
        "counters",
    )
    .unwrap();
    let sim = start(&config).await;
    let mut ctx = client(sim.local_addr(), 1).await;
    let first = input_registers(&mut ctx, 0, 3).await;
    assert!(first[0] >= 65530, "{first:?}");
    // Wrapped: the u16 went past 65535, the u32 (low word first) past u32::MAX.
    let wrapped = wait::until_read(
        "counters wrap",
        WAIT,
        async || input_registers(&mut ctx, 0, 3).await,
        |w| w[0] < 100 && w[2] == 0 && w[1] < 100,
    )
    .await;
    assert!(wrapped[0] < first[0]);
    sim.shutdown().await;
}

#[tokio::test]
async fn operator_pump_command_drains_the_tank() {
    let mut config = SimulatorConfig::default_plant();
    config.tick_ms = 10;
    let sim = start(&config).await;
    let mut ctx = client(sim.local_addr(), 1).await;

    // tank_1 starts at 2.0 m, below its 4.0 m start level: the pump is off and it fills.
    let start_level = f32_abcd(&input_registers(&mut ctx, 0, 2).await);
    assert!(!discrete_input(&mut ctx, 0).await);
    wait::until_read(
        "tank_1 fills",
        WAIT,
        async || f32_abcd(&input_registers(&mut ctx, 0, 2).await),
        |&level| level > start_level,
    )
    .await;

    // Pump mode 2 = forced on (holding register 0).
    ctx.write_single_register(0, 2).await.unwrap().unwrap();
    wait::until_read(
        "pump_running follows the command",
        WAIT,
        async || discrete_input(&mut ctx, 0).await,
        |&running| running,
    )
    .await;
    let draining_from = f32_abcd(&input_registers(&mut ctx, 0, 2).await);
    let lower = wait::until_read(
        "tank_1 drains",
        WAIT,
        async || f32_abcd(&input_registers(&mut ctx, 0, 2).await),
        |&level| level < draining_from,
    )
    .await;
    assert!(lower >= 0.0);
    // Outflow (input registers 4..6) shows the pump rate.
    let outflow = f32_abcd(&input_registers(&mut ctx, 4, 2).await);
    assert_eq!(outflow, 360.0);
    sim.shutdown().await;
}

#[tokio::test]
async fn lowering_the_start_level_setpoint_starts_the_pump() {
    let mut config = SimulatorConfig::default_plant();
    config.tick_ms = 10;
    let sim = start(&config).await;
    let mut ctx = client(sim.local_addr(), 1).await;

    // tank_2: level in cm at input register 10, start level setpoint in cm at holding 11.
    let setpoint = ctx.read_holding_registers(11, 2).await.unwrap().unwrap();
    assert_eq!(setpoint, [300, 50], "start 3.00 m, stop 0.50 m");
    let level_cm = input_registers(&mut ctx, 10, 1).await[0];
    assert!((100..300).contains(&level_cm), "{level_cm}");
    assert!(!discrete_input(&mut ctx, 1).await);

    ctx.write_single_register(11, 90).await.unwrap().unwrap();
    wait::until_read(
        "pump of tank_2 starts",
        WAIT,
        async || discrete_input(&mut ctx, 1).await,
        |&running| running,
    )
    .await;
    let from = input_registers(&mut ctx, 10, 1).await[0];
    wait::until_read(
        "tank_2 drains",
        WAIT,
        async || input_registers(&mut ctx, 10, 1).await[0],
        |&level| level < from,
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn closing_the_inlet_valve_stops_the_filling() {
    let mut config = SimulatorConfig::default_plant();
    config.tick_ms = 10;
    let sim = start(&config).await;
    let mut ctx = client(sim.local_addr(), 1).await;
    assert!(
        ctx.read_coils(0, 1).await.unwrap().unwrap()[0],
        "valve starts open"
    );
    ctx.write_single_coil(0, false).await.unwrap().unwrap();
    // Inflow (input registers 2..4) falls to zero, then the level holds.
    wait::until_read(
        "inflow stops",
        WAIT,
        async || f32_abcd(&input_registers(&mut ctx, 2, 2).await),
        |&inflow| inflow == 0.0,
    )
    .await;
    let held = f32_abcd(&input_registers(&mut ctx, 0, 2).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(f32_abcd(&input_registers(&mut ctx, 0, 2).await), held);
    sim.shutdown().await;
}
