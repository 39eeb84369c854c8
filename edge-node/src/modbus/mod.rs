//! Modbus acquisition: reads and writes field devices over Modbus TCP, RTU on a serial line
//! and RTU over TCP, and delivers typed, timestamped samples with quality.
//!
//! - [`value`]: data types, byte/word orders, register codec.
//! - [`tag`]: tables, addressing, scaling, deadband, access.
//! - [`config`]: the `[modbus]` TOML section, validated into a [`config::Site`].
//! - [`csv`]: tag lists imported from and exported to CSV.
//! - [`planner`]: tags coalesced into the fewest requests; blocks split on exception 02.
//! - [`poller`]: one task per link: scan classes on absolute deadlines, health, writes.
//! - [`acquisition`]: start/stop, the [`Event`] stream and the write handle.
//! - [`sample`]: samples, qualities, reports, events; [`error`]: located errors.

pub mod acquisition;
pub mod config;
pub mod csv;
pub mod error;
pub mod planner;
pub mod poller;
pub mod sample;
pub mod tag;
mod transport;
pub mod value;

pub use acquisition::{Acquisition, AcquisitionHandle, AcquisitionOptions};
pub use config::{ConfigError, ModbusConfig, Site};
pub use error::{Failure, RequestError, WriteError};
pub use poller::DeviceStats;
pub use sample::{DeviceId, Event, Quality, Report, Sample};
pub use tag::{Access, Table, Tag, TagId};
pub use value::{ByteOrder, DataType, Value};
