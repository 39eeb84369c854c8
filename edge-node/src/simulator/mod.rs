//! A Modbus plant simulator: simulated units (register banks), a transport-agnostic Modbus
//! service answering from them, a TCP server with fault injection for tests and demos.
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
mod plant;
mod server;
mod service;

pub use bank::{BankError, BankSizes, MAX_TABLE_SIZE, RegisterBank, Table, Tables};
pub use plant::{
    BROADCAST_UNIT, ExceptionRule, Plant, PlantError, Unit, UnitFaults, UnitId, UnknownUnitReply,
};
pub use server::PlantServer;
pub use service::{PlantService, ServiceResult, answer};
