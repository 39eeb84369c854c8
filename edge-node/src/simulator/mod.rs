//! A Modbus plant simulator for tests, benchmarks and demos.
//!
//! - [`RegisterBank`]: one unit's coils, discrete inputs, holding and input registers;
//! - [`Plant`]: the units served together, with per-unit fault injection;
//! - [`PlantService`]: the transport-agnostic Modbus service answering from a plant;
//! - [`PlantServer`]: Modbus TCP with link faults (drop connections, stop/restart the port);
//! - [`SimulatorConfig`] (TOML), [`SignalEngine`], [`Tank`]: live signals and a tank process;
//! - [`Simulator`]: a configured plant served and animated; [`control`]: text fault commands.
//!
//! Multi-register values are big-endian (`abcd`) unless a signal sets `order`; see [`value`].
//! The built-in plant's register map is in `README.md` beside this file.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use edge_node::simulator::{BankSizes, Plant, PlantServer};
//!
//! let mut plant = Plant::new();
//! plant.add_unit(1, BankSizes::uniform(100)).expect("unit 1 is new");
//! let server = PlantServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(plant)).await?;
//! server.bank(1).expect("unit 1 exists").set_holding_register(0, 42).expect("in range");
//! println!("listening on {}", server.local_addr());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod bank;
mod config;
pub mod control;
mod engine;
mod plant;
mod plants;
pub mod reference;
mod running;
mod server;
mod service;
mod signal;
mod tank;
pub mod value;

pub use bank::{BankError, BankSizes, MAX_TABLE_SIZE, RegisterBank, Table, Tables};
pub use config::{
    DEFAULT_TICK_MS, PointConfig, RangeConfig, SignalConfig, SimulatorConfig, TankConfig,
    UnitConfig, WaveKind,
};
pub use engine::{SignalEngine, UnitModel};
pub use plant::{
    BROADCAST_UNIT, ExceptionRule, Plant, PlantError, Unit, UnitFaults, UnitId, UnknownUnitReply,
};
pub use plants::{BENCH_BLOCK_WORDS, BENCH_MAX_UNITS};
pub use running::{Simulator, StartError};
pub use server::PlantServer;
pub use service::{PlantService, ServiceResult, answer};
pub use signal::{Point, Signal, Wave};
pub use tank::{PUMP_MODE_AUTO, PUMP_MODE_OFF, PUMP_MODE_ON, Tank, TankParameters, TankPoints};
pub use value::{DataType, WordOrder};
