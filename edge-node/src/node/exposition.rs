//! The edge node's Prometheus metrics (`[metrics] listen`): Modbus polling per device,
//! the MQTT link and the store, read from the counters the node keeps anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use infra::link::ByteCounters;
use infra::metrics::{Exposition, Kind};

use super::ServiceStatus;
use super::publisher::PublishCounters;
use crate::modbus::DeviceId;

/// Figures only the node's task sees, copied out for scrapes.
#[derive(Debug, Default)]
pub struct LinkGauges {
    /// Accepted CONNECTs since start.
    pub connects: AtomicU64,
    /// Samples waiting in the store, as of the last metrics period.
    pub store_depth: AtomicU64,
    /// Samples the store dropped (caps) since start, as of the last metrics period.
    pub store_dropped: AtomicU64,
}

/// Everything a scrape reads; cheap to clone into the listener.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    pub(super) acquisition: super::lines::Lines,
    pub(super) published: Arc<PublishCounters>,
    pub(super) bytes: Arc<ByteCounters>,
    pub(super) gauges: Arc<LinkGauges>,
    pub(super) status: tokio::sync::watch::Receiver<ServiceStatus>,
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
            |e: &mut Exposition,
             name: &str,
             help: &str,
             value: fn(&crate::modbus::DeviceStats) -> u64| {
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
        e.finish()
    }
}
