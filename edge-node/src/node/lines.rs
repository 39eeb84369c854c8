//! Acquisition control: the node's Modbus polling as one [`Acquisition`] per link, so a
//! new configuration restarts only the links whose devices, tags or scan classes changed
//! while the others keep polling (and counting). Each line runs on a site of its own
//! (its link, its devices, their tags); [`Lines`] translates the line's device and tag
//! ids to the node's, and serves writes, counters and snapshots by the node's ids.

use std::sync::{Arc, Mutex, RwLock};

use infra::watchdog::Progress;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::modbus::{
    Acquisition, AcquisitionHandle, AcquisitionOptions, DeviceId, DeviceStats, Event, Report, Site,
    TagId, Value, WriteError,
};

/// Events of every line, in order per line, buffered before the lines wait.
const EVENT_CAPACITY: usize = 1024;

/// One line's event, before translation to the node's ids.
struct LineEvent {
    line: u64,
    event: Event,
}

/// One running link with the ids of its site in the node's site.
struct Line {
    id: u64,
    /// The line's own site: its link, devices and tags, indexed from 0.
    site: Site,
    acquisition: Acquisition,
    handle: AcquisitionHandle,
    /// The node's id of each of the line's devices and tags.
    devices: Vec<DeviceId>,
    tags: Vec<TagId>,
    forward: JoinHandle<()>,
}

/// What [`Acquisitions::apply`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restart {
    /// Devices (node ids of the new site) whose line kept polling.
    pub kept: Vec<DeviceId>,
    /// Names of the devices whose polling (re)started.
    pub restarted: Vec<String>,
    /// Names of the links stopped for good.
    pub stopped: Vec<String>,
}

/// The lines of the node's acquisition; owned by the session task.
pub struct Acquisitions {
    lines: Vec<Line>,
    view: Lines,
    tx: mpsc::Sender<LineEvent>,
    rx: mpsc::Receiver<LineEvent>,
    next_id: u64,
}

/// A line's view for readers: its handle and id maps.
#[derive(Debug, Clone)]
struct LineView {
    handle: AcquisitionHandle,
    devices: Vec<DeviceId>,
    tags: Vec<TagId>,
}

#[derive(Debug)]
struct View {
    site: Arc<Site>,
    lines: Vec<LineView>,
    /// Node device index -> (index in `lines`, the line's own id).
    devices: Vec<(usize, DeviceId)>,
    /// Node tag index -> (index in `lines`, the line's own id).
    tags: Vec<(usize, TagId)>,
}

/// One name's liveness for the watchdog, stable across line restarts: it beats while the
/// line now running under that name beats.
#[derive(Debug)]
struct Relay {
    name: String,
    stable: Arc<Progress>,
    current: Option<Arc<Progress>>,
    seen: u64,
}

/// Cheap to clone; reads counters and the site, writes tags of the running lines, by the
/// node's device and tag ids (as [`AcquisitionHandle`] does for one acquisition).
#[derive(Debug, Clone)]
pub struct Lines {
    view: Arc<RwLock<View>>,
    relays: Arc<Mutex<Vec<Relay>>>,
}

impl Acquisitions {
    /// Starts one line per link that has devices.
    pub fn start(site: &Site) -> Acquisitions {
        let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
        let view = Lines {
            view: Arc::new(RwLock::new(View {
                site: Arc::new(site.clone()),
                lines: Vec::new(),
                devices: Vec::new(),
                tags: Vec::new(),
            })),
            relays: Arc::default(),
        };
        let mut acquisitions = Acquisitions {
            lines: Vec::new(),
            view,
            tx,
            rx,
            next_id: 0,
        };
        for (link, own) in line_sites(site) {
            acquisitions.spawn(own, link);
        }
        acquisitions.publish_view(site);
        acquisitions
    }

    pub fn lines(&self) -> Lines {
        self.view.clone()
    }

    /// The next device event in the node's ids; events of lines stopped since are dropped.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            let LineEvent { line, event } = self.rx.recv().await?;
            if let Some(line) = self.lines.iter().find(|l| l.id == line) {
                return Some(translate(event, &line.devices, &line.tags));
            }
        }
    }

    /// Runs `site`: links whose own site is unchanged keep polling (unless `restart_all`),
    /// the others restart, links gone stop.
    pub async fn apply(&mut self, site: &Site, restart_all: bool) -> Restart {
        let mut restart = Restart::default();
        let mut old: Vec<Line> = std::mem::take(&mut self.lines);
        for ((devices, tags), own) in line_sites(site) {
            let name = own.links[0].name.clone();
            match old.iter().position(|l| l.site == own && !restart_all) {
                Some(i) => {
                    let mut line = old.swap_remove(i);
                    restart.kept.extend(&devices);
                    line.devices = devices;
                    line.tags = tags;
                    self.lines.push(line);
                }
                None => {
                    if let Some(i) = old.iter().position(|l| l.site.links[0].name == name) {
                        // The same link with other settings: closed before it opens again.
                        stop(old.swap_remove(i)).await;
                    }
                    restart
                        .restarted
                        .extend(own.devices.iter().map(|d| d.name.clone()));
                    self.spawn(own, (devices, tags));
                }
            }
        }
        for line in old {
            restart.stopped.push(line.site.links[0].name.clone());
            stop(line).await;
        }
        self.publish_view(site);
        restart
    }

    /// Stops every line and waits for them to close their connections.
    pub async fn shutdown(&mut self) {
        for line in self.lines.drain(..) {
            stop(line).await;
        }
    }

    fn spawn(&mut self, own: Site, (devices, tags): NodeIds) {
        let (acquisition, mut events) =
            Acquisition::start(own.clone(), AcquisitionOptions::default());
        let id = self.next_id;
        self.next_id += 1;
        let tx = self.tx.clone();
        let forward = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if tx.send(LineEvent { line: id, event }).await.is_err() {
                    break;
                }
            }
        });
        self.lines.push(Line {
            id,
            site: own,
            handle: acquisition.handle(),
            acquisition,
            devices,
            tags,
            forward,
        });
    }

    /// Readers see the new site and lines from here on; the watchdog's names follow.
    fn publish_view(&mut self, site: &Site) {
        let mut devices = vec![(usize::MAX, DeviceId(0)); site.devices.len()];
        let mut tags = vec![(usize::MAX, TagId(0)); site.tags.len()];
        let mut lines = Vec::with_capacity(self.lines.len());
        for (i, line) in self.lines.iter().enumerate() {
            for (local, d) in line.devices.iter().enumerate() {
                devices[d.index()] = (i, DeviceId(local as u32));
            }
            for (local, t) in line.tags.iter().enumerate() {
                tags[t.index()] = (i, TagId(local as u32));
            }
            lines.push(LineView {
                handle: line.handle.clone(),
                devices: line.devices.clone(),
                tags: line.tags.clone(),
            });
        }
        *self.view.view.write().unwrap_or_else(|e| e.into_inner()) = View {
            site: Arc::new(site.clone()),
            lines,
            devices,
            tags,
        };
        let mut relays = self.view.relays.lock().unwrap_or_else(|e| e.into_inner());
        for relay in relays.iter_mut() {
            relay.current = None;
        }
        for line in &self.lines {
            for (name, progress) in line.handle.progress() {
                match relays.iter_mut().find(|r| &r.name == name) {
                    Some(relay) => {
                        relay.seen = progress.beats();
                        relay.current = Some(Arc::clone(progress));
                    }
                    None => relays.push(Relay {
                        name: name.clone(),
                        stable: Progress::new(),
                        seen: progress.beats(),
                        current: Some(Arc::clone(progress)),
                    }),
                }
            }
        }
        for relay in relays.iter() {
            // A link removed by a configuration has nothing left to do.
            relay.stable.set_idle(relay.current.is_none());
        }
    }
}

async fn stop(line: Line) {
    line.acquisition.shutdown().await;
    let _ = line.forward.await;
}

impl Lines {
    /// The site the node runs now.
    pub fn site(&self) -> Arc<Site> {
        Arc::clone(&self.read().site)
    }

    /// Counters of a device (requests, scans, exceptions, failures, splits); zero for a
    /// device not in the site.
    pub fn stats(&self, device: DeviceId) -> DeviceStats {
        let view = self.read();
        match view.devices.get(device.index()) {
            Some(&(line, local)) if line != usize::MAX => view.lines[line].handle.stats(local),
            _ => DeviceStats::default(),
        }
    }

    /// The device's last polling error and its time; `None` for a device not in the site.
    pub fn last_error(&self, device: DeviceId) -> Option<crate::modbus::LastError> {
        let view = self.read();
        match view.devices.get(device.index()) {
            Some(&(line, local)) if line != usize::MAX => view.lines[line].handle.last_error(local),
            _ => None,
        }
    }

    /// Writes a tag by the node's id (see [`AcquisitionHandle::write`]).
    pub async fn write(&self, tag: TagId, value: Value) -> Result<(), WriteError> {
        let target = {
            let view = self.read();
            match view.tags.get(tag.index()) {
                Some(&(line, local)) if line != usize::MAX => {
                    Some((view.lines[line].handle.clone(), local))
                }
                _ => None,
            }
        };
        match target {
            Some((handle, local)) => handle.write(local, value).await,
            None => Err(WriteError::UnknownTag(format!("#{}", tag.0))),
        }
    }

    /// Every tag of a device as its line knows it now, in the node's ids; see
    /// [`AcquisitionHandle::snapshot`].
    pub async fn snapshot(&self, device: DeviceId) -> Option<(bool, Report)> {
        let (line, local) = {
            let view = self.read();
            let &(line, local) = view.devices.get(device.index())?;
            (view.lines.get(line)?.clone(), local)
        };
        let (online, report) = line.handle.snapshot(local).await?;
        let Event::Online(report) = translate(Event::Online(report), &line.devices, &line.tags)
        else {
            return None;
        };
        Some((online, report))
    }

    /// Each polling line's liveness by link name, stable across restarts of the line
    /// (refreshed by [`Lines::relay_progress`]).
    pub fn progress(&self) -> Vec<(String, Arc<Progress>)> {
        let relays = self.relays.lock().unwrap_or_else(|e| e.into_inner());
        relays
            .iter()
            .map(|r| (r.name.clone(), Arc::clone(&r.stable)))
            .collect()
    }

    /// Passes each running line's beats on to its stable liveness.
    pub fn relay_progress(&self) {
        let mut relays = self.relays.lock().unwrap_or_else(|e| e.into_inner());
        for relay in relays.iter_mut() {
            if let Some(current) = &relay.current {
                let beats = current.beats();
                if beats != relay.seen {
                    relay.seen = beats;
                    relay.stable.beat();
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The event with the node's device and tag ids.
fn translate(event: Event, devices: &[DeviceId], tags: &[TagId]) -> Event {
    let map = |mut report: Report| {
        report.device = devices[report.device.index()];
        for s in &mut report.samples {
            s.tag = tags[s.tag.index()];
        }
        report
    };
    match event {
        Event::Online(r) => Event::Online(map(r)),
        Event::Data(r) => Event::Data(map(r)),
        Event::Offline { report, reason } => Event::Offline {
            report: map(report),
            reason,
        },
    }
}

/// The node's ids of a line's devices and tags, in the line's order.
type NodeIds = (Vec<DeviceId>, Vec<TagId>);

/// Each link with devices as a site of its own, with the node's ids of its devices and
/// tags. Every scan class is kept, so a tag's scan class index is unchanged.
fn line_sites(site: &Site) -> Vec<(NodeIds, Site)> {
    let mut out = Vec::new();
    for (link, l) in site.links.iter().enumerate() {
        let members: Vec<usize> = (0..site.devices.len())
            .filter(|&d| site.devices[d].link == link)
            .collect();
        if members.is_empty() {
            continue;
        }
        let mut own = Site {
            scan_classes: site.scan_classes.clone(),
            links: vec![l.clone()],
            devices: Vec::with_capacity(members.len()),
            tags: Vec::new(),
        };
        for &d in &members {
            let mut device = site.devices[d].clone();
            device.link = 0;
            own.devices.push(device);
        }
        let mut tags = Vec::new();
        // Tags are grouped by device in device order; so are the line's.
        for (i, t) in site.tags.iter().enumerate() {
            if let Some(local) = members.iter().position(|&d| d == t.device) {
                let mut tag = t.clone();
                tag.device = local;
                own.tags.push(tag);
                tags.push(TagId(i as u32));
            }
        }
        let devices = members.iter().map(|&d| DeviceId(d as u32)).collect();
        out.push(((devices, tags), own));
    }
    out
}
