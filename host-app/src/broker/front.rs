//! The front every client meets: our own accept loops (plain and TLS), the connection
//! limit, the CONNECT deadline, username/password checks, the will topic's check and the
//! order of connections that share a client id. Each accepted client is proxied to the
//! engine's internal loopback listener, behind a PROXY protocol header naming the peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use infra::logging::Escaped;

use super::codec::{self, CodecError, Connect, DisconnectScanner, Ending, RawPacket, Refusal};
use super::config::Secret;
use super::policy::TopicPolicy;

/// How long the front waits on the engine's CONNACK on loopback.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the engine may take to close a connection the client or the front ended.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a taken-over connection may still deliver what its client already sent.
const TAKEOVER_DRAIN: Duration = Duration::from_millis(100);
/// Largest CONNECT read (client id, will and login): bounds what a socket that has not
/// logged in yet can make the front hold.
const MAX_CONNECT_SIZE: usize = 32 * 1024;
/// Forwarded CONNECTs the engine answers "server unavailable" are tried again this many
/// times, this far apart (see the module docs of `broker`).
const UNAVAILABLE_RETRIES: u32 = 40;
const UNAVAILABLE_PAUSE: Duration = Duration::from_millis(25);

/// The engine's internal listener and the password only the front knows.
pub struct Upstream {
    pub addr: SocketAddr,
    pub secret: Secret,
}

/// A configured user.
pub struct User {
    pub username: String,
    pub password: Secret,
}

/// State shared by every accept loop and connection of one embedded broker.
pub struct Front {
    pub upstream: Upstream,
    pub users: Vec<User>,
    pub policy: Arc<dyn TopicPolicy>,
    pub connection_timeout: Duration,
    pub max_packet_size: usize,
    pub permits: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// Numbers connections, to tell a client id's sessions apart.
    serials: AtomicU64,
    /// The open session of each client id, for session takeover.
    sessions: Mutex<HashMap<Bytes, OpenSession>>,
}

/// A session as the takeover of its client id sees it.
struct OpenSession {
    serial: u64,
    /// Cancelled when a newer connection takes the client id over.
    taken_over: CancellationToken,
    /// Cancelled once the session has ended and its will, if any, is published.
    ended: CancellationToken,
}

impl Front {
    pub fn new(
        upstream: Upstream,
        users: Vec<User>,
        policy: Arc<dyn TopicPolicy>,
        connection_timeout: Duration,
        max_packet_size: usize,
        max_connections: usize,
    ) -> Front {
        Front {
            upstream,
            users,
            policy,
            connection_timeout,
            max_packet_size,
            permits: Arc::new(Semaphore::new(max_connections)),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            serials: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Accepts clients on `listener` until shutdown.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener, tls: Option<TlsAcceptor>) {
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                warn!(%peer, "connection limit reached; closing the new socket");
                continue;
            };
            let front = self.clone();
            let tls = tls.clone();
            let span = info_span!("mqtt_client", %peer, client_id = tracing::field::Empty);
            self.tasks
                .spawn(async move { front.serve(stream, tls, permit).await }.instrument(span));
        }
        debug!("listener closed");
    }

    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        tls: Option<TlsAcceptor>,
        _permit: OwnedSemaphorePermit,
    ) {
        let _ = stream.set_nodelay(true);
        let shutdown = self.shutdown.clone();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.serve_inner(stream, tls) => {}
        }
    }

    async fn serve_inner(&self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let proxy_header = proxy_header(&stream);
        // TLS handshake and CONNECT must both arrive within the deadline.
        match tls {
            None => {
                let mut stream = stream;
                match timeout(self.connection_timeout, self.read_connect(&mut stream)).await {
                    Ok(Some(first)) => self.session(stream, first, proxy_header).await,
                    Ok(None) => {}
                    Err(_) => info!("no CONNECT in time; closing"),
                }
            }
            Some(acceptor) => {
                let opening = async {
                    let mut stream = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            info!(error = %e, "TLS handshake failed");
                            return None;
                        }
                    };
                    let first = self.read_connect(&mut stream).await?;
                    Some((stream, first))
                };
                match timeout(self.connection_timeout, opening).await {
                    Ok(Some((stream, first))) => self.session(stream, first, proxy_header).await,
                    Ok(None) => {}
                    Err(_) => info!("no TLS handshake and CONNECT in time; closing"),
                }
            }
        }
    }

    async fn read_connect<S: AsyncRead + Unpin>(&self, stream: &mut S) -> Option<RawPacket> {
        let limit = self.max_packet_size.min(MAX_CONNECT_SIZE);
        match codec::read_packet(stream, limit).await {
            Ok(p) => Some(p),
            Err(CodecError::Closed) => None,
            Err(e) => {
                info!(error = %e, "unreadable first packet; closing");
                None
            }
        }
    }

    /// Constant-time check of the CONNECT's login against every configured user; the
    /// account the client is (`None`: anonymous, when no users are configured).
    fn authenticate(&self, connect: &Connect) -> Result<Option<String>, Refusal> {
        if self.users.is_empty() {
            return Ok(None);
        }
        let (Some(username), Some(password)) = (&connect.username, &connect.password) else {
            return Err(Refusal::NotAuthorized);
        };
        let mut accepted = subtle::Choice::from(0);
        let mut account = None;
        for user in &self.users {
            let matches = user.username.as_bytes().ct_eq(username)
                & user.password.expose().as_bytes().ct_eq(password);
            if bool::from(matches) {
                account = Some(user.username.clone());
            }
            accepted |= matches;
        }
        match account {
            Some(account) if bool::from(accepted) => Ok(Some(account)),
            _ => Err(Refusal::BadUsernameOrPassword),
        }
    }

    async fn session<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut client: S,
        first: RawPacket,
        proxy_header: Bytes,
    ) {
        let connect = match Connect::parse(&first) {
            Ok(c) => c,
            Err(CodecError::UnsupportedProtocol { name, level }) => {
                info!(protocol = %Escaped(&name), level, "unsupported protocol; refusing");
                // 3.1.1 return code 1: unacceptable protocol version.
                let _ = client.write_all(&[codec::CONNACK << 4, 2, 0, 1]).await;
                return;
            }
            Err(e) => {
                info!(error = %e, "malformed CONNECT; closing");
                return;
            }
        };
        let client_id = String::from_utf8_lossy(&connect.client_id).into_owned();
        tracing::Span::current().record("client_id", client_id.as_str());

        let account = match self.authenticate(&connect) {
            Ok(account) => account,
            Err(refusal) => {
                info!(?refusal, "login refused");
                refuse(&mut client, connect.level, refusal).await;
                return;
            }
        };
        // The engine publishes wills without asking the policy: the will topic is fixed
        // at CONNECT, so it is asked here, as Mosquitto does.
        if let Some(will) = &connect.will {
            let topic = String::from_utf8_lossy(&will.topic);
            if !self
                .policy
                .may_publish(account.as_deref(), &client_id, &topic)
            {
                warn!(
                    client_id = %Escaped(&client_id),
                    topic = %Escaped(&topic),
                    "will topic refused; refusing the CONNECT"
                );
                refuse(&mut client, connect.level, Refusal::NotAuthorized).await;
                return;
            }
        }

        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let taken_over = CancellationToken::new();
        let ended = CancellationToken::new();
        let _ended_on_exit = ended.clone().drop_guard();
        let client_key = connect.client_id.clone();
        if !client_key.is_empty() {
            self.take_over(&client_key, serial, &taken_over, &ended)
                .await;
        }
        self.run_session(client, connect, account, proxy_header, &taken_over)
            .await;
        if !client_key.is_empty() {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if sessions
                .get(&client_key)
                .is_some_and(|s| s.serial == serial)
            {
                sessions.remove(&client_key);
            }
        }
    }

    /// Registers this session under its client id; an older session with the same id is
    /// closed first, and this one goes on only once the engine has seen the older one end
    /// (MQTT 3.1.1 3.1.4-2; see the module docs of `broker` for why the engine is not
    /// left to do the takeover itself).
    async fn take_over(
        &self,
        client_id: &Bytes,
        serial: u64,
        taken_over: &CancellationToken,
        ended: &CancellationToken,
    ) {
        let previous = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.insert(
                client_id.clone(),
                OpenSession {
                    serial,
                    taken_over: taken_over.clone(),
                    ended: ended.clone(),
                },
            )
        };
        if let Some(previous) = previous {
            info!("client id taken over; closing its previous connection");
            previous.taken_over.cancel();
            if timeout(UPSTREAM_TIMEOUT, previous.ended.cancelled())
                .await
                .is_err()
            {
                warn!("previous connection did not close in time");
            }
        }
    }

    async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut client: S,
        mut connect: Connect,
        account: Option<String>,
        proxy_header: Bytes,
        taken_over: &CancellationToken,
    ) {
        // The engine learns the account from the username; anonymous is an empty one
        // (MQTT 3.1.1 allows no password without a username).
        connect.username = Some(Bytes::from(account.unwrap_or_default()));
        connect.password = Some(Bytes::from(self.upstream.secret.expose().to_owned()));
        let level = connect.level;

        let Some((upstream, connack)) = self.open_upstream(&connect, &proxy_header).await else {
            refuse(&mut client, level, Refusal::ServerUnavailable).await;
            return;
        };
        if client.write_all(&connack.1).await.is_err() {
            return;
        }
        if connack.0 != 0 {
            info!(code = connack.0, "CONNECT refused by the engine");
            return;
        }
        debug!("session open");

        let will_topic = connect.will.as_ref().map(|w| w.topic.clone());
        match (proxy(client, upstream, level, taken_over).await, will_topic) {
            (Ending::Clean, _) => debug!("closed with DISCONNECT"),
            (_, None) => debug!("closed without DISCONNECT; no will"),
            // The engine publishes it once it sees the upstream socket close.
            (_, Some(topic)) => info!(
                topic = %Escaped(String::from_utf8_lossy(&topic)),
                "publishing will"
            ),
        }
    }

    /// Connects to the engine and returns the socket with the CONNACK's code and bytes.
    /// A "server unavailable" answer is tried again a few times before it is passed on.
    async fn open_upstream(
        &self,
        connect: &Connect,
        proxy_header: &Bytes,
    ) -> Option<(TcpStream, (u8, Bytes))> {
        let mut opening = BytesMut::from(&proxy_header[..]);
        connect.encode(&mut opening);
        let opening = opening.freeze();
        let unavailable = codec::refusal_code(connect.level, Refusal::ServerUnavailable);
        let mut tries = 0;
        loop {
            let attempt = async {
                let mut upstream = TcpStream::connect(self.upstream.addr).await?;
                let _ = upstream.set_nodelay(true);
                // One write: the engine reads the PROXY header with a single peek.
                upstream.write_all(&opening).await?;
                let connack = codec::read_packet(&mut upstream, 1024).await?;
                let code = codec::connack_code(&connack)?;
                let mut bytes = BytesMut::new();
                reencode(&connack, &mut bytes);
                Ok::<_, CodecError>((upstream, (code, bytes.freeze())))
            };
            match timeout(UPSTREAM_TIMEOUT, attempt).await {
                Ok(Ok((_, (code, _)))) if code == unavailable && tries < UNAVAILABLE_RETRIES => {
                    tries += 1;
                    debug!(tries, "engine answered server unavailable; trying again");
                    tokio::time::sleep(UNAVAILABLE_PAUSE).await;
                }
                Ok(Ok(v)) => return Some(v),
                Ok(Err(e)) => {
                    warn!(error = %e, "engine did not accept the forwarded CONNECT");
                    return None;
                }
                Err(_) => {
                    warn!("engine did not answer the forwarded CONNECT in time");
                    return None;
                }
            }
        }
    }
}

async fn refuse<S: AsyncWrite + Unpin>(client: &mut S, level: u8, refusal: Refusal) {
    let mut out = BytesMut::new();
    codec::encode_connack_refusal(level, refusal, &mut out);
    let _ = client.write_all(&out).await;
    let _ = client.shutdown().await;
}

/// The PROXY protocol (version 1) line telling the engine who the client is.
fn proxy_header(stream: &TcpStream) -> Bytes {
    let line = match (stream.peer_addr(), stream.local_addr()) {
        (Ok(SocketAddr::V4(peer)), Ok(SocketAddr::V4(local))) => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            peer.ip(),
            local.ip(),
            peer.port(),
            local.port()
        ),
        (Ok(SocketAddr::V6(peer)), Ok(SocketAddr::V6(local))) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            peer.ip(),
            local.ip(),
            peer.port(),
            local.port()
        ),
        _ => "PROXY UNKNOWN\r\n".to_owned(),
    };
    Bytes::from(line)
}

fn reencode(packet: &RawPacket, out: &mut BytesMut) {
    use bytes::BufMut;
    out.put_u8(packet.header);
    let mut len = packet.body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
    out.put_slice(&packet.body);
}

/// Copies both ways until either side closes or the session is taken over.
///
/// An MQTT 5 DISCONNECT asking for the will (reason 0x04) is not forwarded: the engine
/// would discard the will; the upstream socket is closed instead, for which it publishes
/// the will.
///
/// However the client leaves (closed socket, takeover), the engine is the last to close: the front ends its side of the upstream socket and waits (bounded)
/// until the engine closes too, so the engine has ended the connection (and published
/// its will) before the client id is free for a new connection.
async fn proxy<S: AsyncRead + AsyncWrite + Unpin>(
    client: S,
    upstream: TcpStream,
    level: u8,
    taken_over: &CancellationToken,
) -> Ending {
    let mut scanner = DisconnectScanner::new(level);
    let mut ending = Ending::Dropped;
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut upstream_rx, mut upstream_tx) = upstream.into_split();
    // Ends when the client is gone; after a DISCONNECT the engine closes first.
    let mut to_broker = Box::pin(async {
        let mut buf = BytesMut::with_capacity(8 * 1024);
        loop {
            buf.clear();
            match client_rx.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let forward = match scanner.feed(&buf) {
                Some((at, Ending::WithWill)) => {
                    ending = Ending::WithWill;
                    at
                }
                Some((_, found)) => {
                    ending = found;
                    buf.len()
                }
                None => buf.len(),
            };
            if upstream_tx.write_all(&buf[..forward]).await.is_err() || ending != Ending::Dropped {
                return;
            }
        }
    });
    // Ends when the engine closes; a client that stopped reading does not end it.
    let mut to_client = Box::pin(async {
        let mut buf = BytesMut::with_capacity(8 * 1024);
        let mut client_open = true;
        loop {
            buf.clear();
            match upstream_rx.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if client_open && client_tx.write_all(&buf).await.is_err() {
                client_open = false;
            }
        }
        let _ = client_tx.shutdown().await;
    });
    tokio::select! {
        _ = &mut to_broker => {}
        _ = &mut to_client => {
            drop(to_broker);
            return ending;
        }
        _ = taken_over.cancelled() => {
            // What the client sent before the takeover still counts (a DISCONNECT).
            let _ = timeout(TAKEOVER_DRAIN, &mut to_broker).await;
        }
    }
    drop(to_broker);
    let _ = upstream_tx.shutdown().await;
    if timeout(CLOSE_GRACE, &mut to_client).await.is_err() {
        debug!("engine kept the connection open; closing it");
    }
    ending
}
