//! The Modbus TCP server: accepts connections for a [`Plant`] and lets tests break the link
//! on purpose (drop every connection, close and reopen the port, reject new clients).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::bank::RegisterBank;
use super::plant::{Plant, PlantError, UnitId};
use super::service::PlantService;

/// A running Modbus TCP server over a [`Plant`].
///
/// Dropping the handle stops the server; [`PlantServer::shutdown`] also waits for it.
#[derive(Debug)]
pub struct PlantServer {
    plant: Arc<Plant>,
    local_addr: SocketAddr,
    links: Arc<Links>,
    listener: tokio::sync::Mutex<Option<Listening>>,
}

/// State shared with every connection.
#[derive(Debug)]
struct Links {
    /// Cancelled to drop every open connection; replaced by a fresh token afterwards.
    generation: Mutex<CancellationToken>,
    connections: watch::Sender<usize>,
    reject_new: AtomicBool,
}

impl Links {
    fn current_generation(&self) -> CancellationToken {
        self.generation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn drop_all(&self) {
        let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        generation.cancel();
        *generation = CancellationToken::new();
    }
}

#[derive(Debug)]
struct Listening {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl PlantServer {
    /// Binds `addr` (port 0 lets the OS choose) and starts serving `plant`.
    pub async fn start(addr: SocketAddr, plant: Arc<Plant>) -> io::Result<Self> {
        let listener = bind(addr)?;
        let local_addr = listener.local_addr()?;
        let links = Arc::new(Links {
            generation: Mutex::new(CancellationToken::new()),
            connections: watch::Sender::new(0),
            reject_new: AtomicBool::new(false),
        });
        let listening = spawn_listener(listener, Arc::clone(&plant), Arc::clone(&links));
        tracing::info!(%local_addr, units = ?plant.unit_ids(), "Modbus TCP server listening");
        Ok(Self {
            plant,
            local_addr,
            links,
            listener: tokio::sync::Mutex::new(Some(listening)),
        })
    }

    /// The bound address (with the port the OS chose).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The served units, their banks and faults.
    pub fn plant(&self) -> &Arc<Plant> {
        &self.plant
    }

    /// The register bank of unit `unit`.
    pub fn bank(&self, unit: UnitId) -> Result<&Arc<RegisterBank>, PlantError> {
        self.plant.bank(unit)
    }

    /// Number of client connections open now.
    pub fn connection_count(&self) -> usize {
        *self.links.connections.borrow()
    }

    /// Waits until the number of open connections satisfies `ready`, at most `timeout`.
    /// Returns whether it did.
    pub async fn wait_for_connections(
        &self,
        ready: impl FnMut(&usize) -> bool,
        timeout: Duration,
    ) -> bool {
        let mut count = self.links.connections.subscribe();
        matches!(
            tokio::time::timeout(timeout, count.wait_for(ready)).await,
            Ok(Ok(_))
        )
    }

    /// Closes every open connection now; the port stays open for reconnects.
    pub fn drop_connections(&self) {
        tracing::info!(addr = %self.local_addr, "dropping all connections");
        self.links.drop_all();
    }

    /// While `reject` is true, new connections are accepted and closed at once.
    pub fn set_reject_new_connections(&self, reject: bool) {
        self.links.reject_new.store(reject, Ordering::Relaxed);
    }

    pub async fn is_listening(&self) -> bool {
        self.listener.lock().await.is_some()
    }

    /// Closes the port and every connection, like a device powering off: new connections are
    /// refused until [`Self::start_listening`].
    pub async fn stop_listening(&self) {
        let listening = self.listener.lock().await.take();
        if let Some(listening) = listening {
            listening.stop.cancel();
            if let Err(error) = listening.task.await {
                tracing::warn!(%error, "listener task failed");
            }
        }
        self.links.drop_all();
        tracing::info!(addr = %self.local_addr, "stopped listening");
    }

    /// Reopens the same address after [`Self::stop_listening`]; does nothing if listening.
    pub async fn start_listening(&self) -> io::Result<()> {
        let mut slot = self.listener.lock().await;
        if slot.is_none() {
            let listener = bind(self.local_addr)?;
            *slot = Some(spawn_listener(
                listener,
                Arc::clone(&self.plant),
                Arc::clone(&self.links),
            ));
            tracing::info!(addr = %self.local_addr, "listening again");
        }
        Ok(())
    }

    /// Stops and restarts on the same port: every client must reconnect.
    pub async fn restart(&self) -> io::Result<()> {
        self.stop_listening().await;
        self.start_listening().await
    }

    /// Stops accepting, closes every connection and waits for the listener to end.
    pub async fn shutdown(self) {
        self.stop_listening().await;
    }
}

impl Drop for PlantServer {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.listener.try_lock()
            && let Some(listening) = slot.take()
        {
            listening.stop.cancel();
        }
        self.links.drop_all();
    }
}

/// Binds with SO_REUSEADDR so the same port can be reopened while old sockets linger.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn spawn_listener(listener: TcpListener, plant: Arc<Plant>, links: Arc<Links>) -> Listening {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = |stream: TcpStream, peer: SocketAddr| {
            let plant = Arc::clone(&plant);
            let links = Arc::clone(&links);
            async move {
                if links.reject_new.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "rejecting connection");
                    return Ok(None);
                }
                tracing::debug!(%peer, "client connected");
                let closed = links.current_generation();
                let service = PlantService::for_connection(plant, peer, closed.clone());
                Ok(Some((service, Connection::new(stream, closed, &links))))
            }
        };
        let on_process_error = |error: io::Error| tracing::debug!(%error, "connection ended");
        // Dropping `serve` (on stop) also ends every connection task it spawned.
        tokio::select! {
            result = server.serve(&on_connected, on_process_error) => {
                if let Err(error) = result {
                    tracing::error!(%error, "accept failed; listener stopped");
                }
            }
            () = stopped.cancelled() => {}
        }
    });
    Listening { stop, task }
}

/// A client connection that counts itself and fails once its generation is dropped.
struct Connection {
    stream: TcpStream,
    closed: CancellationToken,
    closed_wakeup: Pin<Box<WaitForCancellationFutureOwned>>,
    connections: watch::Sender<usize>,
}

impl Connection {
    fn new(stream: TcpStream, closed: CancellationToken, links: &Links) -> Self {
        links.connections.send_modify(|count| *count += 1);
        Self {
            stream,
            closed_wakeup: Box::pin(closed.clone().cancelled_owned()),
            closed,
            connections: links.connections.clone(),
        }
    }

    fn dropped_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection dropped by the simulator",
        )
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.connections
            .send_modify(|count| *count = count.saturating_sub(1));
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.closed.is_cancelled() || self.closed_wakeup.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Self::dropped_error()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.closed.is_cancelled() {
            return Poll::Ready(Err(Self::dropped_error()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
