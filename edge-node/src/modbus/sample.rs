//! What the engine delivers: samples with quality and timestamp, grouped per device and
//! scan, and device health transitions, as [`Event`]s on one channel (in order per device).

use std::time::SystemTime;

use super::tag::TagId;
use super::value::Value;

/// Index of a device in the [`Site`](super::config::Site).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u32);

impl DeviceId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Trust in a sample's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// Read from the device in this scan.
    Good,
    /// The device answered but this tag could not be read or decoded (e.g. illegal data
    /// address); the value is the last good one (or zero).
    Bad,
    /// The device is unreachable; the value is the last good one (or zero).
    Stale,
}

/// One tag's value at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub tag: TagId,
    pub value: Value,
    pub quality: Quality,
    /// When the response carrying the value arrived (or the failure was seen).
    pub timestamp: SystemTime,
}

/// The samples of one device from one scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub device: DeviceId,
    /// Index of the scan class in the site; `None` for a full report of every tag.
    pub scan_class: Option<usize>,
    pub samples: Vec<Sample>,
}

/// Health transitions and data, per device, in the order they happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The device answers (first time, or again after being offline). The report holds
    /// every tag of the device, unfiltered: what a device birth needs.
    Online(Report),
    /// Samples of one scan that changed beyond their deadband or changed quality.
    Data(Report),
    /// Consecutive failures reached the device's limit; every tag is now [`Quality::Stale`]
    /// (the report holds them). The device is retried with backoff until it answers.
    Offline { report: Report, reason: String },
}

impl Event {
    pub fn device(&self) -> DeviceId {
        match self {
            Event::Online(r) | Event::Data(r) | Event::Offline { report: r, .. } => r.device,
        }
    }
}
