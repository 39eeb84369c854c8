//! Modbus acquisition: reads and writes field devices over Modbus TCP, RTU on a serial line
//! and RTU over TCP, and delivers typed, timestamped samples with quality.
//!
//! - [`value`]: data types, byte/word orders, register codec.
//! - [`tag`]: tables, addressing, scaling, deadband, access.
//! - [`config`]: the `[modbus]` TOML section, validated into a [`config::Site`].
//! - [`csv`]: tag lists imported from and exported to CSV.

pub mod config;
pub mod csv;
pub mod tag;
pub mod value;

pub use config::{ConfigError, ModbusConfig, Site};
pub use tag::{Access, Table, Tag, TagId};
pub use value::{ByteOrder, DataType, Value};
