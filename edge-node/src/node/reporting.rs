//! Live DDATA out of the node: at once per scan, or per device when the report window
//! (`economy.report_window_ms`, `super::window`) closes. Each DDATA is kept by
//! store-and-forward before it goes, as every live publish is.

use std::time::Duration;

use infra::clock::now_ms;
use sparkplug::MessageType;
use tokio::time::{Interval, MissedTickBehavior};

use super::EdgeNode;
use super::economy::Levers;
use super::publisher::PublishError;
use crate::modbus::Report;
use infra::link::Link;

/// The period the report window closes on (an idle hour when the window is off: its
/// branch is disabled then).
pub(super) fn window_interval(levers: &Levers) -> Interval {
    let period = if levers.report_window.is_zero() {
        Duration::from_secs(3600)
    } else {
        levers.report_window
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

impl EdgeNode {
    /// One live DDATA of `report`'s samples for device `d`.
    pub(super) async fn publish_data(
        &mut self,
        link: &Link,
        d: usize,
        report: &Report,
        now: u64,
    ) -> Result<(), PublishError> {
        let name = self.catalog.device_name(d).to_owned();
        // Kept before it goes: a publish that fails ends the session, and the link loss
        // stores what was kept.
        if let Some(f) = self.forwarder.as_mut() {
            f.sending_live(report, self.catalog.aliases());
        }
        let payload = self.catalog.ddata_fitted(report, now);
        self.publisher
            .publish(link, MessageType::DData, Some(&name), payload)
            .await?;
        if let Some(f) = self.forwarder.as_mut() {
            f.published_live(self.publisher.last_payload_len());
        }
        Ok(())
    }

    /// The window closes: one DDATA per device that has changes, then replay.
    pub(super) async fn close_window(&mut self, link: &Link) -> Result<(), PublishError> {
        let Some(window) = self.window.as_mut() else {
            return Ok(());
        };
        let held = window.take_all();
        let now = now_ms();
        for report in held {
            let d = report.device.index();
            if self.catalog.is_online(d) {
                self.publish_data(link, d, &report, now).await?;
            }
        }
        self.replay(link).await
    }

    /// A device's held changes go before its death or new birth.
    pub(super) async fn close_device_window(
        &mut self,
        link: &Link,
        d: usize,
    ) -> Result<(), PublishError> {
        let Some(report) = self.window.as_mut().and_then(|w| w.take(d)) else {
            return Ok(());
        };
        self.publish_data(link, d, &report, now_ms()).await
    }

    /// The session ended with changes still held: store-and-forward keeps them for
    /// replay (without a store they are lost with the link, as live values are).
    pub(super) fn keep_window(&mut self) {
        let Some(window) = self.window.as_mut() else {
            return;
        };
        let held = window.take_all();
        if let Some(f) = self.forwarder.as_mut() {
            for report in &held {
                f.keep(report, self.catalog.aliases());
            }
        }
    }
}
