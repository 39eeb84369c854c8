//! Modbus acquisition: reads and writes field devices over Modbus TCP, RTU on a serial line
//! and RTU over TCP, and delivers typed, timestamped samples with quality.
//!
//! - [`value`]: data types, byte/word orders, register codec.
//! - [`tag`]: tables, addressing (0-based protocol address; `40001` notation accepted),
//!   scaling, deadband, access.
//! - [`config`]: the `[modbus]` TOML section, validated into a [`config::Site`].
//! - [`csv`]: tag lists imported from and exported to CSV.
//! - [`planner`]: tags coalesced into the fewest requests; blocks split on exception 02.
//! - [`poller`]: one task per link: scan classes on absolute deadlines, health, writes.
//! - [`probe`]: commissioning reads (test connection, register probe) with every decoding.
//! - [`acquisition`]: start/stop, the [`Event`] stream and the write handle.
//! - [`sample`]: samples, qualities, reports, events; [`error`]: located errors.
//!
//! # How it runs
//!
//! [`Acquisition::start`] spawns one task per *link*: a Modbus TCP device is a link of its
//! own (devices behind one gateway IP each get their connection and poll independently); an
//! RTU line, serial or over TCP, is one link whose slaves are served one request at a time.
//! Each task owns its connection, so there are no locks on the polling path.
//!
//! Events arrive on one bounded channel, in order per device:
//! - [`Event::Online`] the first time a device answers and after every outage, with every
//!   tag's sample (what a device birth needs);
//! - [`Event::Data`] after a scan, with only the samples that moved beyond their deadband or
//!   changed quality (report by exception);
//! - [`Event::Offline`] when `offline_after_failures` consecutive scans failed to
//!   communicate (timeout, broken connection, gateway exception 0A/0B), with every tag
//!   [`Quality::Stale`]. An offline device (or one down at start-up) is probed with
//!   exponential backoff and jitter between `reconnect_min_ms` and `reconnect_max_ms`,
//!   forever. A device that answers with an exception is online: the refused tags are
//!   [`Quality::Bad`].
//!
//! [`AcquisitionHandle::snapshot`] returns every tag's current sample of a device without
//! any request, for a rebirth.
//!
//! Timestamps are taken when the response arrived. Hot-path allocation: a scan whose
//! registers did not change decodes and allocates nothing of ours; a report allocates one
//! sample buffer; string values allocate their text. tokio-modbus returns each answer as a
//! fresh `Vec`, the one allocation per request not under our control.
//!
//! Writes ([`AcquisitionHandle::write`]) are checked (access, engineering range, raw type),
//! unscaled, encoded in the tag's type and order and sent between scans as 05/06 (15/16 with
//! `use_multiple_writes`, and 16 for multi-register values). A bool in a bit of a holding
//! register is a read-modify-write (03 then 06): a change another master makes to the same
//! register between the two requests is lost.

pub mod acquisition;
pub mod config;
pub mod csv;
pub mod error;
pub mod planner;
pub mod poller;
pub mod probe;
pub mod sample;
pub mod tag;
mod transport;
pub mod value;

pub use acquisition::{Acquisition, AcquisitionHandle, AcquisitionOptions};
pub use config::{ModbusConfig, Site};
pub use error::{Failure, RequestError, WriteError};
pub use poller::{DeviceStats, LastError};
pub use sample::{DeviceId, Event, Quality, Report, Sample};
pub use tag::{Access, Table, Tag, TagId};
pub use value::{ByteOrder, DataType, Value};
