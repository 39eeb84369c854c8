//! A simulated satellite/cellular link for tests: a TCP proxy on 127.0.0.1:0 in front of
//! a target (the MQTT broker) with run-time controls — latency each way, a bandwidth
//! cap, `cut` (connections closed and refused) and `blackhole` (sockets stay open, nothing
//! is forwarded either way, not even a close: the half-open link a keep-alive must notice).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    Cut,
    Blackhole,
    Shutdown,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    one_way_latency: Duration,
    bytes_per_s: Option<u64>,
    mode: Mode,
}

/// Chunks queued per direction: bounds the proxy's memory (each at most `CHUNK` bytes).
const QUEUED_CHUNKS: usize = 32;
const CHUNK: usize = 16 * 1024;

/// The proxy. Dropping it without [`LinkSim::shutdown`] also stops it.
pub struct LinkSim {
    addr: SocketAddr,
    settings: watch::Sender<Settings>,
    accepted: Arc<AtomicU64>,
    counts: Arc<Counts>,
    task: Option<JoinHandle<()>>,
}

/// Bytes read from each side, over every connection: what a link bill counts.
#[derive(Debug, Default)]
struct Counts {
    /// Client to target.
    up: AtomicU64,
    /// Target to client.
    down: AtomicU64,
}

impl LinkSim {
    /// Listens on 127.0.0.1:0 and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<LinkSim> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (settings, state) = watch::channel(Settings {
            one_way_latency: Duration::ZERO,
            bytes_per_s: None,
            mode: Mode::Open,
        });
        let accepted = Arc::new(AtomicU64::new(0));
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(accept_loop(
            listener,
            target,
            state,
            Arc::clone(&accepted),
            Arc::clone(&counts),
        ));
        Ok(LinkSim {
            addr,
            settings,
            accepted,
            counts,
            task: Some(task),
        })
    }

    /// Where clients connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far, including those a cut refused: a client that noticed
    /// a dead link shows up here when it connects again.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Bytes the clients sent towards the target so far (every connection, TCP payload).
    pub fn bytes_up(&self) -> u64 {
        self.counts.up.load(Ordering::Relaxed)
    }

    /// Bytes the target sent towards the clients so far.
    pub fn bytes_down(&self) -> u64 {
        self.counts.down.load(Ordering::Relaxed)
    }

    /// Delay added to every chunk in each direction (round trip: twice this).
    pub fn set_latency(&self, one_way: Duration) {
        self.settings.send_modify(|s| s.one_way_latency = one_way);
    }

    /// Caps each direction at `bits_per_s` (`None`: unlimited).
    pub fn set_bandwidth(&self, bits_per_s: Option<u64>) {
        self.settings
            .send_modify(|s| s.bytes_per_s = bits_per_s.map(|b| (b / 8).max(1)));
    }

    /// Closes every connection and refuses new ones (accepted, then closed) until `restore`.
    pub fn cut(&self) {
        self.settings.send_modify(|s| s.mode = Mode::Cut);
    }

    /// Keeps sockets open but forwards nothing either way (data is discarded) until `restore`.
    pub fn blackhole(&self) {
        self.settings.send_modify(|s| s.mode = Mode::Blackhole);
    }

    /// Back to forwarding (new connections accepted again after a cut).
    pub fn restore(&self) {
        self.settings.send_modify(|s| s.mode = Mode::Open);
    }

    /// Stops listening, closes every connection and waits for the tasks to end.
    pub async fn shutdown(mut self) {
        self.settings.send_modify(|s| s.mode = Mode::Shutdown);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LinkSim {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mut state: watch::Receiver<Settings>,
    accepted_count: Arc<AtomicU64>,
    counts: Arc<Counts>,
) {
    // Dropping the set aborts every connection task.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                accepted_count.fetch_add(1, Ordering::Relaxed);
                if state.borrow().mode == Mode::Cut {
                    drop(client);
                    continue;
                }
                connections.spawn(connection(client, target, state.clone(), Arc::clone(&counts)));
            }
            changed = state.changed() => {
                if changed.is_err() || state.borrow().mode == Mode::Shutdown {
                    break;
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn connection(
    client: TcpStream,
    target: SocketAddr,
    mut state: watch::Receiver<Settings>,
    counts: Arc<Counts>,
) {
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_rx, client_tx) = client.into_split();
    let (upstream_rx, upstream_tx) = upstream.into_split();
    let mut pumps = JoinSet::new();
    let up = (Arc::clone(&counts), true);
    direction(&mut pumps, client_rx, upstream_tx, state.clone(), up);
    direction(
        &mut pumps,
        upstream_rx,
        client_tx,
        state.clone(),
        (counts, false),
    );
    loop {
        tokio::select! {
            done = pumps.join_next() => if done.is_none() { return },
            changed = state.changed() => {
                let mode = state.borrow().mode;
                if changed.is_err() || matches!(mode, Mode::Cut | Mode::Shutdown) {
                    return; // dropping `pumps` closes both sockets
                }
            }
        }
    }
}

/// One direction: a reader paces chunks through the bandwidth cap and stamps their
/// delivery time; a writer delivers them at that time, in order.
fn direction(
    pumps: &mut JoinSet<()>,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    state: watch::Receiver<Settings>,
    (counts, up): (Arc<Counts>, bool),
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUED_CHUNKS);
    let reader_state = state.clone();
    pumps.spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        // The link is busy sending earlier chunks until `link_free` (token bucket whose
        // burst is one chunk of at most 50 ms of link time).
        let mut link_free = Instant::now();
        loop {
            let limit = match reader_state.borrow().bytes_per_s {
                Some(rate) => usize::try_from(rate / 20).unwrap_or(CHUNK).clamp(1, CHUNK),
                None => CHUNK,
            };
            let n = match from.read(&mut buf[..limit]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let count = if up { &counts.up } else { &counts.down };
            count.fetch_add(n as u64, Ordering::Relaxed);
            let settings = *reader_state.borrow();
            if settings.mode == Mode::Blackhole {
                continue;
            }
            if let Some(rate) = settings.bytes_per_s {
                link_free =
                    link_free.max(Instant::now()) + Duration::from_secs_f64(n as f64 / rate as f64);
                tokio::time::sleep_until(link_free).await;
            }
            let deliver_at = Instant::now() + settings.one_way_latency;
            if tx.send((deliver_at, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    });
    pumps.spawn(async move {
        while let Some((deliver_at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(deliver_at).await;
            if state.borrow().mode == Mode::Blackhole {
                continue;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // Half-open: the far side's close is not passed on either, until the link is back.
        let mut state = state;
        while state.borrow().mode == Mode::Blackhole {
            if state.changed().await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
}
