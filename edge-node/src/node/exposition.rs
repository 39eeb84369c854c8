//! The edge node's Prometheus metrics (`[metrics] listen`): Modbus polling per device,
//! the MQTT link and the store, read from the counters the node keeps anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use infra::link::ByteCounters;
use infra::metrics::{Exposition, Kind};

use super::ServiceStatus;
use super::publisher::PublishCounters;
use crate::modbus::{DeviceId, DeviceStats, LastError};

/// Figures only the node's task sees, copied out for scrapes.
#[derive(Debug, Default)]
pub struct LinkGauges {
    /// Accepted CONNECTs since start.
    pub connects: AtomicU64,
    /// Samples waiting in the store, as of the last metrics period.
    pub store_depth: AtomicU64,
    /// Samples the store dropped (caps) since start, as of the last metrics period.
    pub store_dropped: AtomicU64,
    /// Stored samples of tags removed from the configuration, dropped unsent since
    /// start, as of the last metrics period.
    pub store_dropped_removed_tag: AtomicU64,
    /// Stored bytes, as of the last metrics period.
    pub store_bytes: AtomicU64,
    /// Age of the oldest stored sample (ms), as of the last metrics period.
    pub store_oldest_age_ms: AtomicU64,
    /// Stored samples replayed per second over the last metrics period.
    pub store_replay_rate: AtomicU64,
    /// When the link last came up or went down (Unix ms; 0 before the first connect).
    pub link_since_ms: AtomicU64,
    /// The newest primary host STATE the node took: online, and its timestamp.
    pub host_state: std::sync::Mutex<Option<(bool, u64)>>,
}

impl LinkGauges {
    /// Copies the store's figures out for scrapes and the status page.
    pub(super) fn set_store(&self, stats: &super::forwarder::ForwarderStats) {
        self.store_depth.store(stats.depth, Ordering::Relaxed);
        self.store_dropped.store(stats.dropped, Ordering::Relaxed);
        self.store_dropped_removed_tag
            .store(stats.dropped_removed_tag, Ordering::Relaxed);
        self.store_bytes.store(stats.bytes, Ordering::Relaxed);
        self.store_oldest_age_ms
            .store(stats.oldest_age_ms, Ordering::Relaxed);
        self.store_replay_rate
            .store(stats.replay_rate, Ordering::Relaxed);
    }

    pub(super) fn set_host_state(&self, online: bool, timestamp: u64) {
        *self.host_state.lock().unwrap_or_else(|p| p.into_inner()) = Some((online, timestamp));
    }

    /// The newest primary host STATE: online, and its timestamp.
    pub fn host_state(&self) -> Option<(bool, u64)> {
        *self.host_state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Everything a scrape reads; cheap to clone into the listener.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    pub(super) acquisition: super::lines::Lines,
    pub(super) published: Arc<PublishCounters>,
    pub(super) bytes: Arc<ByteCounters>,
    pub(super) gauges: Arc<LinkGauges>,
    pub(super) status: tokio::sync::watch::Receiver<ServiceStatus>,
    pub(super) bill: Arc<super::bill::Bill>,
}

impl MetricsSource {
    /// The exposition text of this moment.
    pub fn render(&self) -> String {
        let mut e = Exposition::new();
        let site = self.acquisition.site();
        let per_device: Vec<_> = (0..site.devices.len())
            .map(|d| {
                let stats = self.acquisition.stats(DeviceId(d as u32));
                (site.devices[d].name.as_str(), stats)
            })
            .collect();
        let device_counter =
            |e: &mut Exposition, name: &str, help: &str, value: fn(&DeviceStats) -> u64| {
                e.family(name, Kind::Counter, help);
                for (device, stats) in &per_device {
                    e.sample(&[("device", device)], value(stats));
                }
            };
        device_counter(
            &mut e,
            "edge_modbus_requests_total",
            "Modbus requests sent (reads and writes).",
            |s| s.requests,
        );
        device_counter(
            &mut e,
            "edge_modbus_scans_total",
            "Scans completed without a communication failure.",
            |s| s.scans,
        );
        device_counter(
            &mut e,
            "edge_modbus_failures_total",
            "Requests or connections that failed to communicate (timeouts included).",
            |s| s.failures,
        );
        device_counter(
            &mut e,
            "edge_modbus_exceptions_total",
            "Requests answered with a Modbus exception.",
            |s| s.exceptions,
        );
        device_counter(
            &mut e,
            "edge_modbus_timeouts_total",
            "Requests not answered within the device's timeout.",
            |s| s.timeouts,
        );
        device_counter(
            &mut e,
            "edge_modbus_responses_total",
            "Requests answered (data or exception).",
            |s| s.responses,
        );
        let device_gauge =
            |e: &mut Exposition, name: &str, help: &str, value: fn(&DeviceStats) -> f64| {
                e.family(name, Kind::Gauge, help);
                for (device, stats) in &per_device {
                    e.sample(&[("device", device)], value(stats));
                }
            };
        e.family(
            "edge_modbus_response_seconds_total",
            Kind::Counter,
            "Summed response time of answered requests; divide by edge_modbus_responses_total for the mean.",
        );
        for (device, stats) in &per_device {
            e.sample(&[("device", device)], stats.response_us_total as f64 / 1e6);
        }
        device_gauge(
            &mut e,
            "edge_modbus_response_seconds_max",
            "Worst response time of an answered request since start.",
            |s| s.response_us_max as f64 / 1e6,
        );
        device_gauge(
            &mut e,
            "edge_device_online",
            "1 while the device answers its polls.",
            |s| f64::from(u8::from(s.online)),
        );
        let status = self.status.borrow().clone();
        e.single(
            "edge_devices_online",
            Kind::Gauge,
            "Devices answering their polls.",
            status.devices_online,
        );
        e.single(
            "edge_mqtt_connected",
            Kind::Gauge,
            "1 while the node is born on an MQTT server.",
            status.born_on.is_some(),
        );
        let connects = self.gauges.connects.load(Ordering::Relaxed);
        e.single(
            "edge_mqtt_reconnects_total",
            Kind::Counter,
            "Accepted MQTT connects after the first.",
            connects.saturating_sub(1),
        );
        e.single(
            "edge_mqtt_sent_bytes_total",
            Kind::Counter,
            "Bytes sent to MQTT servers.",
            self.bytes.sent(),
        );
        e.single(
            "edge_mqtt_received_bytes_total",
            Kind::Counter,
            "Bytes received from MQTT servers.",
            self.bytes.received(),
        );
        let bill = self.bill.figures();
        for (name, help, value) in [
            (
                "edge_link_sent_bytes_this_hour",
                "Bytes sent on the MQTT link in the current UTC hour.",
                bill.sent_hour,
            ),
            (
                "edge_link_received_bytes_this_hour",
                "Bytes received on the MQTT link in the current UTC hour.",
                bill.received_hour,
            ),
            (
                "edge_link_sent_bytes_today",
                "Bytes sent on the MQTT link in the current UTC day.",
                bill.sent_today,
            ),
            (
                "edge_link_received_bytes_today",
                "Bytes received on the MQTT link in the current UTC day.",
                bill.received_today,
            ),
            (
                "edge_link_daily_budget_bytes",
                "The daily byte budget (0: none).",
                self.bill.budget().unwrap_or(0),
            ),
        ] {
            e.single(name, Kind::Gauge, help, value as f64);
        }
        e.single(
            "edge_store_replay_paused",
            Kind::Gauge,
            "1 while historical replay waits for the next UTC day (daily budget spent).",
            f64::from(u8::from(bill.replay_paused)),
        );
        e.single(
            "edge_sparkplug_messages_published_total",
            Kind::Counter,
            "Sparkplug messages published.",
            self.published.messages.load(Ordering::Relaxed),
        );
        e.single(
            "edge_store_depth",
            Kind::Gauge,
            "Samples waiting in the store (as of the last metrics period).",
            self.gauges.store_depth.load(Ordering::Relaxed),
        );
        e.single(
            "edge_store_dropped_total",
            Kind::Counter,
            "Samples the store dropped at its caps.",
            self.gauges.store_dropped.load(Ordering::Relaxed),
        );
        e.single(
            "edge_store_dropped_removed_tag_samples_total",
            Kind::Counter,
            "Stored samples of tags removed from the configuration, dropped unsent.",
            self.gauges
                .store_dropped_removed_tag
                .load(Ordering::Relaxed),
        );
        e.single(
            "edge_store_bytes",
            Kind::Gauge,
            "Bytes stored (as of the last metrics period).",
            self.gauges.store_bytes.load(Ordering::Relaxed) as f64,
        );
        e.single(
            "edge_store_oldest_age_seconds",
            Kind::Gauge,
            "Age of the oldest stored sample (as of the last metrics period).",
            self.gauges.store_oldest_age_ms.load(Ordering::Relaxed) as f64 / 1e3,
        );
        e.single(
            "edge_store_replay_rate",
            Kind::Gauge,
            "Stored samples replayed per second over the last metrics period.",
            self.gauges.store_replay_rate.load(Ordering::Relaxed) as f64,
        );
        if let Some((online, _)) = self.gauges.host_state() {
            e.single(
                "edge_primary_host_online",
                Kind::Gauge,
                "1 while the newest primary host STATE says online.",
                f64::from(u8::from(online)),
            );
        }
        e.finish()
    }

    /// What the node's status page shows, read now.
    pub fn figures(&self) -> Figures {
        let site = self.acquisition.site();
        let devices = site
            .devices
            .iter()
            .enumerate()
            .map(|(d, device)| {
                let id = DeviceId(d as u32);
                DeviceFigures {
                    name: device.name.clone(),
                    stats: self.acquisition.stats(id),
                    last_error: self.acquisition.last_error(id),
                }
            })
            .collect();
        let status = self.status.borrow().clone();
        let g = &self.gauges;
        Figures {
            born_on: status.born_on,
            link_since_ms: g.link_since_ms.load(Ordering::Relaxed),
            reconnects: g.connects.load(Ordering::Relaxed).saturating_sub(1),
            bytes_sent: self.bytes.sent(),
            bytes_received: self.bytes.received(),
            messages_published: self.published.messages.load(Ordering::Relaxed),
            host_state: g.host_state(),
            store_depth: g.store_depth.load(Ordering::Relaxed),
            store_bytes: g.store_bytes.load(Ordering::Relaxed),
            store_oldest_age_ms: g.store_oldest_age_ms.load(Ordering::Relaxed),
            store_replay_rate: g.store_replay_rate.load(Ordering::Relaxed),
            store_dropped: g.store_dropped.load(Ordering::Relaxed),
            bill: self.bill.figures(),
            daily_budget: self.bill.budget(),
            devices,
        }
    }

    /// The running acquisition (its site, device statistics, tag snapshots).
    pub fn acquisition(&self) -> &super::lines::Lines {
        &self.acquisition
    }
}

/// The node's figures at one moment, for the status page.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// The server the node is born on, if any.
    pub born_on: Option<String>,
    /// When the link last came up or went down (Unix ms, 0: never).
    pub link_since_ms: u64,
    pub reconnects: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub messages_published: u64,
    /// The newest primary host STATE: online, and its timestamp.
    pub host_state: Option<(bool, u64)>,
    pub store_depth: u64,
    pub store_bytes: u64,
    pub store_oldest_age_ms: u64,
    pub store_replay_rate: u64,
    pub store_dropped: u64,
    /// Bytes this UTC hour and day, and whether the daily budget paused replay.
    pub bill: super::bill::Figures,
    pub daily_budget: Option<u64>,
    pub devices: Vec<DeviceFigures>,
}

impl Figures {
    /// Seconds until the store is empty at the current replay rate, when it replays.
    pub fn drain_eta_s(&self) -> Option<u64> {
        (self.store_depth > 0)
            .then(|| self.store_depth.checked_div(self.store_replay_rate))
            .flatten()
    }
}

/// One device's figures.
#[derive(Debug, Clone)]
pub struct DeviceFigures {
    pub name: String,
    pub stats: DeviceStats,
    pub last_error: Option<LastError>,
}
