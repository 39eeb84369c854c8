//! The engine's front door: [`Acquisition::start`] spawns one polling task per link and
//! returns the [`Event`] stream; an [`AcquisitionHandle`] writes tags and reads counters.
//!
//! ```no_run
//! # async fn demo(site: edge_node::modbus::Site) {
//! use edge_node::modbus::{Acquisition, Event, Value};
//! let (acquisition, mut events) = Acquisition::start(site, Default::default());
//! let handle = acquisition.handle();
//! if let Some(tag) = handle.tag_id("boiler", "setpoint") {
//!     let _ = handle.write(tag, Value::F64(72.5)).await;
//! }
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Online(full) => { /* device birth with every tag */ }
//!         Event::Data(changes) => { /* samples beyond deadband */ }
//!         Event::Offline { .. } => { /* device death */ }
//!     }
//! }
//! acquisition.shutdown().await;
//! # }
//! ```

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::Site;
use super::error::WriteError;
use super::poller::{Command, DeviceCounters, DeviceStats, LineTask, WriteCommand, WriteOutcome};
use super::sample::{DeviceId, Event, Report};
use super::tag::{Table, TagId};
use super::value::{self, Value};
use infra::watchdog::Progress;

/// Tuning of the engine itself (not of devices).
#[derive(Debug, Clone, Copy)]
pub struct AcquisitionOptions {
    /// Events buffered before polling waits for the consumer (backpressure, never loss).
    pub event_capacity: usize,
}

impl Default for AcquisitionOptions {
    fn default() -> Self {
        AcquisitionOptions {
            event_capacity: 1024,
        }
    }
}

/// Running polling tasks. Dropping it without [`Acquisition::shutdown`] also stops them.
#[derive(Debug)]
pub struct Acquisition {
    handle: AcquisitionHandle,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Cheap to clone; writes tags and reads counters of a running acquisition.
#[derive(Debug, Clone)]
pub struct AcquisitionHandle {
    site: Arc<Site>,
    /// One command queue per link, indexed like `site.links`.
    links: Arc<Vec<mpsc::Sender<Command>>>,
    counters: Arc<Vec<Arc<DeviceCounters>>>,
    /// Each polling line's liveness, named by the line.
    progress: Arc<Vec<(String, Arc<Progress>)>>,
}

impl Acquisition {
    /// Spawns one task per link on the current tokio runtime.
    pub fn start(site: Site, options: AcquisitionOptions) -> (Acquisition, mpsc::Receiver<Event>) {
        let site = Arc::new(site);
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let cancel = CancellationToken::new();
        let counters: Vec<Arc<DeviceCounters>> = site
            .devices
            .iter()
            .map(|_| Arc::new(DeviceCounters::default()))
            .collect();
        let mut links = Vec::with_capacity(site.links.len());
        let mut tasks = Vec::with_capacity(site.links.len());
        let mut progress = Vec::new();
        for link in 0..site.links.len() {
            let (tx, rx) = mpsc::channel(32);
            links.push(tx);
            if !site.devices.iter().any(|d| d.link == link) {
                continue;
            }
            let task = LineTask::new(
                Arc::clone(&site),
                link,
                &counters,
                events_tx.clone(),
                rx,
                cancel.child_token(),
            );
            progress.push((site.links[link].name.clone(), task.progress()));
            tasks.push(tokio::spawn(task.run()));
        }
        let handle = AcquisitionHandle {
            site,
            links: Arc::new(links),
            counters: Arc::new(counters),
            progress: Arc::new(progress),
        };
        (
            Acquisition {
                handle,
                cancel,
                tasks,
            },
            events_rx,
        )
    }

    pub fn handle(&self) -> AcquisitionHandle {
        self.handle.clone()
    }

    /// Stops every task and waits for them to close their connections.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Acquisition {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl AcquisitionHandle {
    /// Each polling line's liveness (name, progress), for the service watchdog.
    pub fn progress(&self) -> &[(String, Arc<Progress>)] {
        &self.progress
    }

    pub fn site(&self) -> &Site {
        &self.site
    }

    pub fn device_id(&self, device: &str) -> Option<DeviceId> {
        let i = self.site.devices.iter().position(|d| d.name == device)?;
        Some(DeviceId(i as u32))
    }

    pub fn tag_id(&self, device: &str, tag: &str) -> Option<TagId> {
        let d = self.device_id(device)?.index();
        let i = self
            .site
            .tags
            .iter()
            .position(|t| t.device == d && t.name == tag)?;
        Some(TagId(i as u32))
    }

    /// Every tag of a device as the engine knows it now — last good value, last reported
    /// quality — and whether the device is online; for a rebirth. No request is sent; the
    /// answer comes between two scans of the device's link. `None` once stopped or for an
    /// unknown device.
    pub async fn snapshot(&self, device: DeviceId) -> Option<(bool, Report)> {
        let link = self.site.devices.get(device.index())?.link;
        let (reply, answer) = oneshot::channel();
        self.links
            .get(link)?
            .send(Command::Snapshot { device, reply })
            .await
            .ok()?;
        answer.await.ok().flatten()
    }

    /// Counters of a device (requests, scans, exceptions, failures, splits, timeouts,
    /// response times, online).
    pub fn stats(&self, device: DeviceId) -> DeviceStats {
        self.counters
            .get(device.index())
            .map(|c| c.snapshot())
            .unwrap_or_default()
    }

    /// The newest failed request of a device, with its time.
    pub fn last_error(&self, device: DeviceId) -> Option<super::poller::LastError> {
        self.counters.get(device.index())?.last_error()
    }

    /// Writes an engineering value to a tag: checks access and range, undoes scaling,
    /// encodes in the tag's type and order, then sends 05/06/15/16 as fits (a bit of a
    /// holding register is a read-modify-write). Returns once the device acknowledged.
    pub async fn write(&self, tag: TagId, value: Value) -> Result<(), WriteError> {
        let Some(t) = self.site.tags.get(tag.index()) else {
            return Err(WriteError::UnknownTag(format!("#{}", tag.0)));
        };
        let device = &self.site.devices[t.device];
        let refused = |reason| WriteError::Refused {
            device: device.name.clone(),
            tag: t.name.clone(),
            reason,
        };
        let raw = t.raw_for_write(&value).map_err(refused)?;
        let mut words = Vec::new();
        let mut bit = false;
        if t.table == Table::Coil || t.bit.is_some() {
            bit = matches!(raw, Value::Bool(true));
        } else {
            value::encode(t.data_type, t.order, &raw, t.span, &mut words)
                .map_err(|e| refused(e.into()))?;
        }
        let (reply, answer) = oneshot::channel();
        let cmd = WriteCommand {
            tag,
            words,
            bit,
            reply,
        };
        let line = self.links.get(device.link).ok_or(WriteError::Stopped)?;
        line.send(Command::Write(cmd))
            .await
            .map_err(|_| WriteError::Stopped)?;
        match answer.await {
            Err(_) => Err(WriteError::Stopped),
            Ok(Ok(())) => Ok(()),
            Ok(Err(WriteOutcome::Offline)) => Err(WriteError::Offline {
                device: device.name.clone(),
                tag: t.name.clone(),
            }),
            Ok(Err(WriteOutcome::Failed(source))) => Err(WriteError::Request {
                tag: t.name.clone(),
                source,
            }),
        }
    }
}
