//! The data path: device events to DBIRTH, DDATA and DDEATH while born (kept for
//! store-and-forward otherwise), and the replay of stored samples as historical DDATA.

use super::*;

/// Replay batches published at most per scan or replay tick, so commands and live data
/// are served in between even on a fast link.
const REPLAY_BATCHES_PER_TICK: usize = 8;

impl EdgeNode {
    pub(super) async fn on_device_event(
        &mut self,
        link: &Link,
        event: Event,
        phase: Phase,
    ) -> Result<(), PublishError> {
        if phase != Phase::Born {
            self.absorb(&event);
            return Ok(());
        }
        let change = self.catalog.apply(&event);
        self.report_devices_online();
        let now = now_ms();
        match change {
            Change::Born(d) => {
                self.close_device_window(link, d).await?;
                self.publish_dbirth(link, d, now).await?;
                // Samples held for this device may go now.
                self.replay(link).await
            }
            Change::Data(d) => {
                let Event::Data(report) = &event else {
                    return Ok(());
                };
                if report.samples.is_empty() {
                    return Ok(());
                }
                if let Some(window) = self.window.as_mut() {
                    window.hold(report);
                    return Ok(());
                }
                self.publish_data(link, d, report, now).await?;
                // Live first, then what the link share leaves for history.
                self.replay(link).await
            }
            Change::Died(d) => {
                self.close_device_window(link, d).await?;
                let name = self.catalog.device_name(d).to_owned();
                info!(device = %name, "device offline: DDEATH");
                self.publisher
                    .publish(link, MessageType::DDeath, Some(&name), Catalog::ddeath(now))
                    .await
            }
        }
    }

    /// A device event while there are no births on a link (link down, connecting,
    /// primary host offline): the catalog takes it, and its samples are kept for replay.
    /// Offline reports are not kept: their device is dead, and DDEATH says so.
    pub(super) fn absorb(&mut self, event: &Event) {
        self.catalog.apply(event);
        self.report_devices_online();
        if let (Some(f), Event::Data(report) | Event::Online(report)) =
            (self.forwarder.as_mut(), event)
        {
            f.keep(report, self.catalog.aliases());
        }
    }

    /// The status after a device event, born or not: acquisition has polled (what the
    /// service's readiness waits for) and how many devices are online.
    fn report_devices_online(&mut self) {
        let online = (0..self.catalog.site().devices.len())
            .filter(|&d| self.catalog.is_online(d))
            .count();
        self.status.send_if_modified(|s| {
            let changed = !s.polled || s.devices_online != online;
            s.polled = true;
            s.devices_online = online;
            changed
        });
    }

    /// Publishes stored samples as historical DDATA while the pacer allows, one DDATA
    /// per device in each batch, and acks each batch once the MQTT client took it.
    pub(super) async fn replay(&mut self, link: &Link) -> Result<(), PublishError> {
        let Some(mut forwarder) = self.forwarder.take() else {
            return Ok(());
        };
        if !self.bill.replay_allowed() {
            self.forwarder = Some(forwarder);
            return Ok(());
        }
        let result = self.replay_with(&mut forwarder, link).await;
        self.forwarder = Some(forwarder);
        result
    }

    pub(super) async fn replay_with(
        &mut self,
        forwarder: &mut Forwarder,
        link: &Link,
    ) -> Result<(), PublishError> {
        let mut held = HeldDevices::default();
        for d in 0..self.catalog.site().devices.len() {
            if !self.catalog.is_online(d) {
                // Past the set's capacity the device rule below waits instead.
                held.insert(DeviceId(d as u32));
            }
        }
        let mut devices: Vec<DeviceId> = Vec::new();
        for _ in 0..REPLAY_BATCHES_PER_TICK {
            let Some(batch) = forwarder.next_batch(held) else {
                return Ok(());
            };
            devices.clear();
            for s in batch.samples() {
                if let Some(d) = s.device
                    && !devices.contains(&d)
                {
                    devices.push(d);
                }
            }
            // The device rule of the forwarder module: wait for every device's birth.
            if batch.samples().iter().any(|s| s.device.is_none())
                || devices.iter().any(|d| !self.catalog.is_online(d.index()))
            {
                debug!("replay waits for a device to be born again");
                return Ok(());
            }
            let now = now_ms();
            let mut bytes = 0;
            for &device in &devices {
                let mut payload = Payload::new(now);
                payload.metrics.extend(
                    batch
                        .samples()
                        .iter()
                        .filter(|s| s.device == Some(device))
                        .map(|s| {
                            let mut m = self.catalog.data_metric_fitted(
                                s.alias,
                                &s.value,
                                s.quality,
                                s.timestamp_ms,
                            );
                            m.is_historical = true;
                            m
                        }),
                );
                let name = self.catalog.device_name(device.index()).to_owned();
                self.publisher
                    .publish(link, MessageType::DData, Some(&name), payload)
                    .await?;
                bytes += self.publisher.last_payload_len();
            }
            forwarder.replayed(&batch, bytes);
        }
        Ok(())
    }

    pub(super) async fn publish_dbirth(
        &mut self,
        link: &Link,
        device: usize,
        now: u64,
    ) -> Result<(), PublishError> {
        let name = self.catalog.device_name(device).to_owned();
        let payload = self.catalog.dbirth(device, now);
        self.publisher
            .publish(link, MessageType::DBirth, Some(&name), payload)
            .await
    }
}
