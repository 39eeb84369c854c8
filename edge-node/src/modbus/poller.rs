//! One task per link: it owns the connection, schedules the scan classes of the devices on
//! that link on absolute deadlines, tracks each device's health, and serves writes between
//! scans.
//!
//! A Modbus TCP device has a link of its own, so it polls independently of every other
//! device. An RTU line (serial or over TCP) is one link shared by its slaves: requests are
//! serialised, each slave has its own timeout, a slave that stops answering aborts only its
//! own scan and, once offline, is probed only at its backoff times — so a dead slave costs
//! the line one timeout per probe and live slaves keep their scan.
//!
//! Scheduling: each (device, scan class) has a next deadline, advanced by whole periods from
//! the start instant (no drift). A scan that overruns skips the ticks it missed rather than
//! running them back to back (the effect of `MissedTickBehavior::Skip`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rand::Rng as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};
use tokio_modbus::client::Context;
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};

use super::config::{Site, Transport};
use super::error::{Failure, RequestError};
use super::planner::{self, Block};
use super::sample::{DeviceId, Event, Quality, Report, Sample};
use super::tag::{Table, TagId};
use super::transport;
use super::value::Value;
use infra::watchdog::Progress;

/// Counters of one device, readable while it runs.
#[derive(Debug, Default)]
pub struct DeviceCounters {
    /// Requests sent (reads and writes).
    pub requests: AtomicU64,
    /// Scans completed without a communication failure.
    pub scans: AtomicU64,
    /// Requests that failed with an exception response.
    pub exceptions: AtomicU64,
    /// Requests or connections that failed to communicate (timeout, transport, protocol).
    pub failures: AtomicU64,
    /// Blocks split after "illegal data address".
    pub splits: AtomicU64,
    /// Requests that got no answer within the device's timeout (also in `failures`).
    pub timeouts: AtomicU64,
    /// Requests answered (data or exception), and their summed and worst response times.
    pub responses: AtomicU64,
    pub response_us_total: AtomicU64,
    pub response_us_max: AtomicU64,
    /// The device answers its polls (set as it goes online and offline).
    pub online: std::sync::atomic::AtomicBool,
    /// The newest failed request: what happened and when (Unix ms).
    pub last_error: std::sync::Mutex<Option<LastError>>,
}

/// The newest failed request of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    pub message: String,
    pub at_ms: u64,
}

/// A snapshot of [`DeviceCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceStats {
    pub requests: u64,
    pub scans: u64,
    pub exceptions: u64,
    pub failures: u64,
    pub splits: u64,
    pub timeouts: u64,
    pub responses: u64,
    pub response_us_total: u64,
    pub response_us_max: u64,
    pub online: bool,
}

impl DeviceStats {
    /// Mean response time in microseconds, `None` before the first answer.
    pub fn mean_response_us(&self) -> Option<u64> {
        self.response_us_total.checked_div(self.responses)
    }
}

impl DeviceCounters {
    pub fn snapshot(&self) -> DeviceStats {
        DeviceStats {
            requests: self.requests.load(Ordering::Relaxed),
            scans: self.scans.load(Ordering::Relaxed),
            exceptions: self.exceptions.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            splits: self.splits.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            responses: self.responses.load(Ordering::Relaxed),
            response_us_total: self.response_us_total.load(Ordering::Relaxed),
            response_us_max: self.response_us_max.load(Ordering::Relaxed),
            online: self.online.load(Ordering::Relaxed),
        }
    }

    /// The newest failed request, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record_error(&self, error: &RequestError) {
        let entry = LastError {
            message: error.to_string(),
            at_ms: infra::clock::now_ms(),
        };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(entry);
    }

    fn record_response(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.responses.fetch_add(1, Ordering::Relaxed);
        self.response_us_total.fetch_add(us, Ordering::Relaxed);
        self.response_us_max.fetch_max(us, Ordering::Relaxed);
    }
}

/// A write prepared by the handle: the raw value is checked and encoded already.
#[derive(Debug)]
pub(crate) struct WriteCommand {
    pub tag: TagId,
    /// Registers to write (register tables) — empty for coils.
    pub words: Vec<u16>,
    /// Coil value, or the bit value of a bit-of-register tag.
    pub bit: bool,
    pub reply: oneshot::Sender<Result<(), WriteOutcome>>,
}

/// A request to a link's task, served between scans.
#[derive(Debug)]
pub(crate) enum Command {
    Write(WriteCommand),
    /// The current sample of every tag of a device, without any I/O.
    Snapshot {
        device: DeviceId,
        reply: oneshot::Sender<Option<(bool, Report)>>,
    },
}

/// Why the line did not complete a write.
#[derive(Debug)]
pub(crate) enum WriteOutcome {
    Offline,
    Failed(RequestError),
}

struct ClassRun {
    class: usize,
    period: Duration,
    next: Instant,
    blocks: Vec<Block>,
}

struct DeviceRun {
    id: DeviceId,
    /// The device's tags are `site.tags[first_tag..first_tag + last.len()]`.
    first_tag: usize,
    classes: Vec<ClassRun>,
    online: bool,
    failures: u32,
    backoff: Duration,
    next_retry: Instant,
    /// Last good value per tag (zero before the first).
    last_good: Vec<Value>,
    /// Last reported value and quality per tag, for report by exception.
    reported: Vec<Option<(Value, Quality)>>,
    counters: Arc<DeviceCounters>,
}

pub(crate) struct LineTask {
    site: Arc<Site>,
    link: usize,
    devices: Vec<DeviceRun>,
    conn: Option<Context>,
    /// The link's request timer, reset for every request.
    timer: Pin<Box<Sleep>>,
    events: mpsc::Sender<Event>,
    commands: Option<mpsc::Receiver<Command>>,
    cancel: CancellationToken,
    /// Beats at every turn of the loop, for the service watchdog.
    progress: Arc<Progress>,
}

/// Longest the loop sleeps without a turn, so an idle line (long scan periods, an offline
/// device waiting for its retry) still shows the watchdog it is not stuck.
const BEAT: Duration = Duration::from_secs(1);

/// Granularity of tokio's timer wheel.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// Why the line task woke up.
enum Wake {
    Stop,
    Command(Option<Command>),
    Due,
}

/// Outcome of scanning one set of blocks.
enum ScanError {
    /// The device did not communicate; the scan was abandoned.
    Communication(RequestError),
    /// The event receiver is gone.
    Closed,
}

impl LineTask {
    pub(crate) fn new(
        site: Arc<Site>,
        link: usize,
        counters: &[Arc<DeviceCounters>],
        events: mpsc::Sender<Event>,
        commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
    ) -> LineTask {
        let start = Instant::now();
        let mut devices = Vec::new();
        for (di, device) in site.devices.iter().enumerate() {
            if device.link != link {
                continue;
            }
            let first_tag = site.tags.iter().position(|t| t.device == di);
            let count = site.tags.iter().filter(|t| t.device == di).count();
            let first_tag = first_tag.unwrap_or(0);
            let mut classes = Vec::new();
            for (ci, sc) in site.scan_classes.iter().enumerate() {
                let tags = site.tags[first_tag..first_tag + count]
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.scan_class == ci)
                    .map(|(i, t)| (TagId((first_tag + i) as u32), t));
                let blocks = planner::plan(tags, device.limits);
                if !blocks.is_empty() {
                    classes.push(ClassRun {
                        class: ci,
                        period: sc.period,
                        next: start,
                        blocks,
                    });
                }
            }
            devices.push(DeviceRun {
                id: DeviceId(di as u32),
                first_tag,
                classes,
                online: false,
                failures: 0,
                backoff: device.health.reconnect_min,
                next_retry: start,
                last_good: site.tags[first_tag..first_tag + count]
                    .iter()
                    .map(|t| t.zero())
                    .collect(),
                reported: vec![None; count],
                counters: Arc::clone(&counters[di]),
            });
        }
        LineTask {
            site,
            link,
            devices,
            conn: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            events,
            commands: Some(commands),
            cancel,
            progress: Progress::new(),
        }
    }

    /// The line's liveness, beating while its loop turns.
    pub(crate) fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    pub(crate) async fn run(mut self) {
        let span = tracing::info_span!("modbus_link", link = %self.site.links[self.link].name);
        async move {
            loop {
                self.progress.beat();
                let next = self.next_due();
                let now = Instant::now();
                // Timers tick in whole milliseconds: a deadline nearer than that (a sub-ms
                // period, or a scan that overran) runs now instead of sleeping a full tick.
                if let Some((d, c, due)) = next
                    && due <= now + TIMER_RESOLUTION
                {
                    if self.cancel.is_cancelled() {
                        break;
                    }
                    // Writes are never starved by back-to-back scans.
                    if let Some(rx) = &mut self.commands {
                        match rx.try_recv() {
                            Ok(cmd) => {
                                self.serve(cmd).await;
                                continue;
                            }
                            Err(mpsc::error::TryRecvError::Disconnected) => self.commands = None,
                            Err(mpsc::error::TryRecvError::Empty) => {}
                        }
                    }
                    if self.run_due(d, c, due, now).await.is_err() {
                        break;
                    }
                    // Every request awaits I/O, so the task still yields (and tokio's
                    // cooperative budget bounds it) without an explicit yield here.
                    continue;
                }
                let wake = {
                    let sleep = async {
                        match next {
                            Some((_, _, due)) => {
                                tokio::time::sleep_until(due.min(now + BEAT)).await
                            }
                            None => tokio::time::sleep(BEAT).await,
                        }
                    };
                    let command = async {
                        match &mut self.commands {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        biased;
                        () = self.cancel.cancelled() => Wake::Stop,
                        cmd = command => Wake::Command(cmd),
                        () = sleep => Wake::Due,
                    }
                };
                match wake {
                    Wake::Stop => break,
                    Wake::Command(Some(cmd)) => self.serve(cmd).await,
                    Wake::Command(None) => self.commands = None,
                    Wake::Due => {
                        if let Some((d, c, due)) = next
                            && due <= Instant::now() + TIMER_RESOLUTION
                            && self.run_due(d, c, due, Instant::now()).await.is_err()
                        {
                            break;
                        }
                    }
                }
            }
            if let Some(mut ctx) = self.conn.take() {
                use tokio_modbus::client::Client as _;
                let _ = ctx.disconnect().await;
            }
        }
        .instrument(span)
        .await;
    }

    /// The earliest (device, class, deadline); an offline device waits for its retry time.
    fn next_due(&self) -> Option<(usize, usize, Instant)> {
        let mut best: Option<(usize, usize, Instant)> = None;
        for (d, dev) in self.devices.iter().enumerate() {
            for (c, class) in dev.classes.iter().enumerate() {
                let due = if dev.online {
                    class.next
                } else {
                    class.next.max(dev.next_retry)
                };
                if best.is_none_or(|(_, _, b)| due < b) {
                    best = Some((d, c, due));
                }
            }
        }
        best
    }

    /// Runs a due scan (`now` is when it started). `Err` only when the event receiver is gone.
    async fn run_due(&mut self, d: usize, c: usize, due: Instant, now: Instant) -> Result<(), ()> {
        let class = &mut self.devices[d].classes[c];
        // Next deadline on the grid start + k * period, strictly after now: missed ticks are
        // skipped, never bunched.
        class.next = next_on_grid(class.next.max(due), class.period, now);
        if self.devices[d].online {
            let result = self.scan(d, Some(c)).await;
            match result {
                Ok(report) => {
                    self.devices[d].failures = 0;
                    if !report.samples.is_empty() {
                        self.emit(Event::Data(report)).await?;
                    }
                }
                Err(ScanError::Closed) => return Err(()),
                Err(ScanError::Communication(e)) => self.record_failure(d, e).await?,
            }
        } else {
            // A probe: the device answers a full scan or stays offline.
            match self.scan(d, None).await {
                Ok(report) => {
                    let dev = &mut self.devices[d];
                    // The full scan just read every class: their next scans follow the grid.
                    let now = Instant::now();
                    for class in &mut dev.classes {
                        // A deadline still ahead is already the next one on the grid.
                        if class.next <= now {
                            class.next = next_on_grid(class.next, class.period, now);
                        }
                    }
                    dev.online = true;
                    dev.counters.online.store(true, Ordering::Relaxed);
                    dev.failures = 0;
                    dev.backoff = self.site.devices[dev.id.index()].health.reconnect_min;
                    info!(device = %self.site.devices[dev.id.index()].name, "device online");
                    self.emit(Event::Online(report)).await?;
                }
                Err(ScanError::Closed) => return Err(()),
                Err(ScanError::Communication(e)) => self.record_failure(d, e).await?,
            }
        }
        Ok(())
    }

    async fn emit(&mut self, event: Event) -> Result<(), ()> {
        self.events.send(event).await.map_err(|_| ())
    }

    /// Counts a communication failure; at the limit the device goes offline (every tag
    /// stale) and is retried with exponential backoff and jitter.
    async fn record_failure(&mut self, d: usize, error: RequestError) -> Result<(), ()> {
        let dev = &mut self.devices[d];
        let device = &self.site.devices[dev.id.index()];
        dev.failures = dev.failures.saturating_add(1);
        let now = Instant::now();
        let go_offline = dev.online && dev.failures >= device.health.offline_after_failures;
        if dev.online && !go_offline {
            debug!(device = %device.name, failures = dev.failures, %error, "request failed");
            return Ok(());
        }
        let jitter: f64 = rand::rng().random_range(0.8..1.2);
        dev.next_retry = now + dev.backoff.mul_f64(jitter);
        dev.backoff = (dev.backoff * 2).min(device.health.reconnect_max);
        if !go_offline {
            debug!(device = %device.name, %error, retry_in = ?dev.next_retry - now, "device still offline");
            return Ok(());
        }
        dev.online = false;
        dev.counters.online.store(false, Ordering::Relaxed);
        for block in dev.classes.iter_mut().flat_map(|c| &mut c.blocks) {
            block.all_good = false;
        }
        warn!(device = %device.name, %error, "device offline");
        let timestamp = SystemTime::now();
        let samples: Vec<Sample> = dev
            .last_good
            .iter()
            .enumerate()
            .map(|(i, v)| Sample {
                tag: TagId((dev.first_tag + i) as u32),
                value: v.clone(),
                quality: Quality::Stale,
                timestamp,
            })
            .collect();
        for (slot, s) in dev.reported.iter_mut().zip(&samples) {
            *slot = Some((s.value.clone(), Quality::Stale));
        }
        let report = Report {
            device: dev.id,
            scan_class: None,
            samples,
        };
        self.emit(Event::Offline {
            report,
            reason: error.to_string(),
        })
        .await
    }

    /// Reads the blocks of one scan class (`Some`) or of every class (`None`, a full report
    /// that ignores deadbands). Splits blocks refused with "illegal data address".
    async fn scan(&mut self, d: usize, class: Option<usize>) -> Result<Report, ScanError> {
        let site = Arc::clone(&self.site);
        let transport = &site.links[self.link].transport;
        let dev = &mut self.devices[d];
        let device = &site.devices[dev.id.index()];
        let full = class.is_none();
        let classes = match class {
            Some(c) => c..c + 1,
            None => 0..dev.classes.len(),
        };
        let capacity = classes
            .clone()
            .map(|c| {
                dev.classes[c]
                    .blocks
                    .iter()
                    .map(|b| b.tags.len())
                    .sum::<usize>()
            })
            .sum();
        // A scan where nothing changed allocates nothing; otherwise one buffer per report,
        // sized for every tag (full report) or for a typical burst of changes.
        let mut report = Report {
            device: dev.id,
            scan_class: class.map(|c| dev.classes[c].class),
            samples: if full {
                Vec::with_capacity(capacity)
            } else {
                Vec::new()
            },
        };
        let mode = ReportMode {
            full,
            reserve: capacity.min(64),
        };
        for c in classes {
            let mut i = 0;
            while i < dev.classes[c].blocks.len() {
                let block = &dev.classes[c].blocks[i];
                let result = read_block(
                    &mut self.conn,
                    &mut self.timer,
                    transport,
                    device,
                    block,
                    &dev.counters,
                )
                .await;
                match result {
                    Ok(response) => {
                        take_answer(dev, &site, c, i, response, mode, &mut report);
                        i += 1;
                    }
                    Err(e) => match &e.failure {
                        Failure::Exception(ExceptionCode::IllegalDataAddress)
                            if dev.classes[c].blocks[i].tags.len() > 1 =>
                        {
                            if let Some((a, b)) = dev.classes[c].blocks[i].split() {
                                debug!(device = %device.name, start = a.start, "splitting block after illegal data address");
                                dev.counters.splits.fetch_add(1, Ordering::Relaxed);
                                dev.classes[c].blocks.splice(i..=i, [a, b]);
                            }
                        }
                        f if f.is_communication() => {
                            return Err(ScanError::Communication(e));
                        }
                        _ => {
                            debug!(device = %device.name, error = %e, "tags unreadable");
                            let timestamp = SystemTime::now();
                            dev.classes[c].blocks[i].all_good = false;
                            for k in 0..dev.classes[c].blocks[i].tags.len() {
                                let id = dev.classes[c].blocks[i].tags[k].id;
                                push_sample(
                                    dev,
                                    &site,
                                    id,
                                    Quality::Bad,
                                    timestamp,
                                    mode,
                                    &mut report,
                                );
                            }
                            i += 1;
                        }
                    },
                }
            }
        }
        dev.counters.scans.fetch_add(1, Ordering::Relaxed);
        if self.events.is_closed() {
            return Err(ScanError::Closed);
        }
        Ok(report)
    }

    async fn serve(&mut self, cmd: Command) {
        match cmd {
            Command::Write(w) => self.write(w).await,
            Command::Snapshot { device, reply } => {
                let _ = reply.send(self.snapshot(device));
            }
        }
    }

    /// Every tag of `device` with its last good value and last reported quality (tags not
    /// yet read are Stale zeros); `None` if the device is not on this link.
    fn snapshot(&self, device: DeviceId) -> Option<(bool, Report)> {
        let dev = self.devices.iter().find(|d| d.id == device)?;
        let timestamp = SystemTime::now();
        let samples = dev
            .last_good
            .iter()
            .zip(&dev.reported)
            .enumerate()
            .map(|(i, (value, reported))| Sample {
                tag: TagId((dev.first_tag + i) as u32),
                value: value.clone(),
                quality: reported.as_ref().map_or(Quality::Stale, |(_, q)| *q),
                timestamp,
            })
            .collect();
        Some((
            dev.online,
            Report {
                device,
                scan_class: None,
                samples,
            },
        ))
    }

    async fn write(&mut self, cmd: WriteCommand) {
        let site = Arc::clone(&self.site);
        let tag = &site.tags[cmd.tag.index()];
        let Some(dev) = self.devices.iter().find(|d| d.id.index() == tag.device) else {
            return;
        };
        let device = &site.devices[tag.device];
        if !dev.online {
            let _ = cmd.reply.send(Err(WriteOutcome::Offline));
            return;
        }
        let counters = Arc::clone(&dev.counters);
        let transport = &site.links[self.link].transport;
        let multiple = device.use_multiple_writes;
        let result = async {
            let req = match (tag.table, tag.bit) {
                (Table::Coil, _) if multiple => {
                    Request::WriteMultipleCoils(tag.address, vec![cmd.bit].into())
                }
                (Table::Coil, _) => Request::WriteSingleCoil(tag.address, cmd.bit),
                (_, Some(bit)) => {
                    // Read-modify-write of one bit: another master writing the same register
                    // between our read and write would lose its change (documented).
                    let read = Request::ReadHoldingRegisters(tag.address, 1);
                    let word = match request(
                        &mut self.conn,
                        &mut self.timer,
                        transport,
                        device,
                        read,
                        &counters,
                    )
                    .await?
                    {
                        Response::ReadHoldingRegisters(w) if w.len() == 1 => w[0],
                        other => {
                            return Err(located(
                                device,
                                3,
                                tag.address,
                                Failure::Protocol(format!("unexpected answer {other:?}")),
                            ));
                        }
                    };
                    let mask = 1u16 << bit;
                    let word = if cmd.bit { word | mask } else { word & !mask };
                    if multiple {
                        Request::WriteMultipleRegisters(tag.address, vec![word].into())
                    } else {
                        Request::WriteSingleRegister(tag.address, word)
                    }
                }
                _ if cmd.words.len() == 1 && !multiple => {
                    Request::WriteSingleRegister(tag.address, cmd.words[0])
                }
                _ => Request::WriteMultipleRegisters(tag.address, cmd.words.as_slice().into()),
            };
            request(
                &mut self.conn,
                &mut self.timer,
                transport,
                device,
                req,
                &counters,
            )
            .await
            .map(drop)
        }
        .await;
        let _ = cmd.reply.send(result.map_err(WriteOutcome::Failed));
    }
}

/// The first instant `grid + k * period` (k >= 1) strictly after `now`.
fn next_on_grid(grid: Instant, period: Duration, now: Instant) -> Instant {
    let next = grid + period;
    if next > now {
        return next;
    }
    let behind = now.duration_since(next).as_nanos() / period.as_nanos().max(1);
    next + period.mul_f64((behind + 1) as f64)
}

fn located(
    device: &super::config::Device,
    function: u8,
    address: u16,
    failure: Failure,
) -> RequestError {
    RequestError {
        device: device.name.clone(),
        unit: device.unit_id,
        function,
        address,
        failure,
    }
}

/// Sends one request on the link, connecting first if needed. A communication failure
/// closes a TCP connection (a late answer could be mistaken for the next one); an RTU line
/// stays open across a slave's timeout and drains stale bytes before the next request.
async fn request(
    conn: &mut Option<Context>,
    timer: &mut Pin<Box<Sleep>>,
    transport: &Transport,
    device: &super::config::Device,
    req: Request<'_>,
    counters: &DeviceCounters,
) -> Result<Response, RequestError> {
    let function = req.function_code().value();
    let address = match &req {
        Request::ReadCoils(a, _)
        | Request::ReadDiscreteInputs(a, _)
        | Request::ReadHoldingRegisters(a, _)
        | Request::ReadInputRegisters(a, _)
        | Request::WriteSingleCoil(a, _)
        | Request::WriteMultipleCoils(a, _)
        | Request::WriteSingleRegister(a, _)
        | Request::WriteMultipleRegisters(a, _) => *a,
        _ => 0,
    };
    let fail = |failure: Failure| {
        if matches!(failure, Failure::Timeout) {
            counters.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        let e = located(device, function, address, failure);
        counters.record_error(&e);
        e
    };
    if conn.is_none() {
        match transport::connect(transport, device.timeout).await {
            Ok(ctx) => *conn = Some(ctx),
            Err(f) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                return Err(fail(f));
            }
        }
    }
    let Some(ctx) = conn.as_mut() else {
        return Err(fail(Failure::Transport("not connected".into())));
    };
    match transport {
        Transport::Rtu(s) => tokio::time::sleep(s.inter_frame).await,
        Transport::RtuOverTcp { inter_frame, .. } => tokio::time::sleep(*inter_frame).await,
        Transport::Tcp { .. } => {}
    }
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let sent = Instant::now();
    match transport::call(ctx, device.unit_id, req, device.timeout, timer).await {
        Ok(r) => {
            counters.record_response(sent.elapsed());
            Ok(r)
        }
        Err(f @ Failure::Exception(_)) => {
            counters.record_response(sent.elapsed());
            counters.exceptions.fetch_add(1, Ordering::Relaxed);
            Err(fail(f))
        }
        Err(f) => {
            counters.failures.fetch_add(1, Ordering::Relaxed);
            let keep =
                transport.is_shared_line() && matches!(f, Failure::Timeout | Failure::Protocol(_));
            if !keep {
                *conn = None;
            }
            Err(fail(f))
        }
    }
}

async fn read_block(
    conn: &mut Option<Context>,
    timer: &mut Pin<Box<Sleep>>,
    transport: &Transport,
    device: &super::config::Device,
    block: &Block,
    counters: &DeviceCounters,
) -> Result<Response, RequestError> {
    let req = match block.table {
        Table::Coil => Request::ReadCoils(block.start, block.count),
        Table::DiscreteInput => Request::ReadDiscreteInputs(block.start, block.count),
        Table::InputRegister => Request::ReadInputRegisters(block.start, block.count),
        Table::HoldingRegister => Request::ReadHoldingRegisters(block.start, block.count),
    };
    let response = request(conn, timer, transport, device, req, counters).await?;
    let n = usize::from(block.count);
    let ok = match &response {
        Response::ReadCoils(b) | Response::ReadDiscreteInputs(b) => b.len() >= n,
        Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w) => w.len() == n,
        _ => false,
    };
    if !ok {
        counters.failures.fetch_add(1, Ordering::Relaxed);
        return Err(located(
            device,
            block.table.read_function(),
            block.start,
            Failure::Protocol(format!("answer does not cover {} items", block.count)),
        ));
    }
    Ok(response)
}

/// Decodes and reports the tags of block `b` of class `c` from its answer, then keeps the
/// answer to compare the next one with.
fn take_answer(
    dev: &mut DeviceRun,
    site: &Site,
    c: usize,
    b: usize,
    response: Response,
    mode: ReportMode,
    report: &mut Report,
) {
    let block = &dev.classes[c].blocks[b];
    // The same answer as last scan, whose tags were all reported Good: nothing to decode or
    // report, and no clock to read (the common case when polling fast).
    if !mode.full && block.all_good && same_answer(&block.previous, &response) {
        return;
    }
    let timestamp = SystemTime::now();
    let known = block.previous.len() == usize::from(block.count);
    let mut all_good = true;
    for k in 0..block.tags.len() {
        let block = &dev.classes[c].blocks[b];
        let bt = block.tags[k];
        let local = bt.id.index() - dev.first_tag;
        // Same registers as last scan and reported good: same value, nothing to decode or
        // report.
        if !mode.full
            && known
            && matches!(dev.reported[local], Some((_, Quality::Good)))
            && unchanged(&block.previous, &bt, &response)
        {
            continue;
        }
        let quality = match decode(&site.tags[bt.id.index()], &bt, &response) {
            Some(v) => {
                dev.last_good[local] = v;
                Quality::Good
            }
            None => {
                all_good = false;
                Quality::Bad
            }
        };
        push_sample(dev, site, bt.id, quality, timestamp, mode, report);
    }
    let block = &mut dev.classes[c].blocks[b];
    remember(&mut block.previous, response, usize::from(block.count));
    block.all_good = all_good;
}

/// Whether the tag's registers (or bit) equal those of the previous answer.
fn unchanged(previous: &[u16], bt: &planner::BlockTag, response: &Response) -> bool {
    let range = usize::from(bt.offset)..usize::from(bt.offset) + usize::from(bt.span);
    match response {
        Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits) => {
            match (bits.get(range.clone()), previous.get(range)) {
                (Some(now), Some(before)) => {
                    now.iter().zip(before).all(|(b, p)| u16::from(*b) == *p)
                }
                _ => false,
            }
        }
        Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words) => {
            matches!((words.get(range.clone()), previous.get(range)), (Some(a), Some(b)) if a == b)
        }
        _ => false,
    }
}

/// Whether the answer equals the block's previous one (bit answers are padded to whole
/// bytes, so only the bits read count).
fn same_answer(previous: &[u16], response: &Response) -> bool {
    match response {
        Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits) => {
            bits.len() >= previous.len()
                && bits.iter().zip(previous).all(|(b, p)| u16::from(*b) == *p)
        }
        Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words) => {
            words.as_slice() == previous
        }
        _ => false,
    }
}

/// Keeps the answer as the block's previous one: a register answer is moved in, a bit
/// answer copied as 0/1 into the reused buffer.
fn remember(previous: &mut Vec<u16>, response: Response, count: usize) {
    match response {
        Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits) => {
            previous.clear();
            previous.extend(bits.iter().map(|b| u16::from(*b)));
        }
        Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words) => {
            *previous = words;
        }
        _ => previous.clear(),
    }
    // Bit answers are padded to whole bytes.
    previous.truncate(count);
}

/// Decodes one tag straight from the block's answer; `None` if it does not decode.
fn decode(tag: &super::tag::Tag, bt: &planner::BlockTag, response: &Response) -> Option<Value> {
    let from = usize::from(bt.offset);
    match response {
        Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits) => {
            bits.get(from).map(|b| Value::Bool(*b))
        }
        Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words) => {
            let regs = words.get(from..from + usize::from(bt.span))?;
            tag.decode_registers(regs).ok()
        }
        _ => None,
    }
}

/// How a scan reports: every tag (`full`, a device birth) or changes only; `reserve` sizes
/// the report's buffer on its first sample.
#[derive(Clone, Copy)]
struct ReportMode {
    full: bool,
    reserve: usize,
}

/// Adds a sample to the report if it is a full report, or if it moved beyond the deadband
/// or changed quality since last reported.
fn push_sample(
    dev: &mut DeviceRun,
    site: &Site,
    id: TagId,
    quality: Quality,
    timestamp: SystemTime,
    mode: ReportMode,
    report: &mut Report,
) {
    let local = id.index() - dev.first_tag;
    let value = &dev.last_good[local];
    let changed = match &dev.reported[local] {
        None => true,
        Some((last, q)) => *q != quality || site.tags[id.index()].exceeds_deadband(last, value),
    };
    if !(mode.full || changed) {
        return;
    }
    match &mut dev.reported[local] {
        Some((v, q)) => {
            v.clone_from(value);
            *q = quality;
        }
        slot @ None => *slot = Some((value.clone(), quality)),
    }
    if report.samples.capacity() == 0 {
        report.samples.reserve(mode.reserve);
    }
    report.samples.push(Sample {
        tag: id,
        value: value.clone(),
        quality,
        timestamp,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_stay_on_the_grid_and_skip_missed_ticks() {
        let t0 = Instant::now();
        let p = Duration::from_millis(100);
        let ms = Duration::from_millis;
        // On time: the next tick.
        assert_eq!(next_on_grid(t0, p, t0 + ms(50)), t0 + ms(100));
        // Exactly on a tick: the one after.
        assert_eq!(next_on_grid(t0, p, t0 + ms(100)), t0 + ms(200));
        // A scan that overran 3.5 periods skips the missed ticks, stays on the grid.
        let next = next_on_grid(t0, p, t0 + ms(350));
        let err = next.max(t0 + ms(400)) - next.min(t0 + ms(400));
        assert!(err < Duration::from_micros(1), "{next:?}");
    }
}
