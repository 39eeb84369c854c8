//! The front every client meets: our own accept loops (plain and TLS), the connection
//! limit, the CONNECT deadline, username/password checks and Last Will handling. Each
//! accepted client is proxied to rumqttd's internal loopback listener.

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

use super::codec::{
    self, CodecError, Connect, Ending, LEVEL_5, PacketScanner, RawPacket, Refusal, Will,
};
use super::config::Secret;

/// How long the front waits on rumqttd's own answers (CONNACK, PUBACK) on loopback.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long rumqttd may take to close a connection after DISCONNECT.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);
/// How long a taken-over connection may still deliver what its client already sent.
const TAKEOVER_DRAIN: Duration = Duration::from_millis(100);
/// Largest CONNECT read (client id, will and login): bounds what a socket that has not
/// logged in yet can make the front hold.
const MAX_CONNECT_SIZE: usize = 32 * 1024;
/// Keep alive forwarded for a client that asked for none: rumqttd refuses 0.
const NO_KEEP_ALIVE: u16 = u16::MAX;

/// rumqttd's internal listeners and the credential only the front knows.
pub struct Upstream {
    pub v4: SocketAddr,
    pub v5: SocketAddr,
    pub username: String,
    pub password: Secret,
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
    pub connection_timeout: Duration,
    pub max_packet_size: usize,
    pub permits: Arc<Semaphore>,
    pub max_connections: usize,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// Numbers upstream connections, so rumqttd never sees a client id twice.
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
        connection_timeout: Duration,
        max_packet_size: usize,
        max_connections: usize,
    ) -> Front {
        Front {
            upstream,
            users,
            connection_timeout,
            max_packet_size,
            permits: Arc::new(Semaphore::new(max_connections)),
            max_connections,
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
        // TLS handshake and CONNECT must both arrive within the deadline.
        match tls {
            None => {
                let mut stream = stream;
                match timeout(self.connection_timeout, self.read_connect(&mut stream)).await {
                    Ok(Some(first)) => self.session(stream, first).await,
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
                    Ok(Some((stream, first))) => self.session(stream, first).await,
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

    /// Constant-time check of the CONNECT's login against every configured user.
    fn authenticate(&self, connect: &Connect) -> Result<(), Refusal> {
        if self.users.is_empty() {
            return Ok(());
        }
        let (Some(username), Some(password)) = (&connect.username, &connect.password) else {
            return Err(Refusal::NotAuthorized);
        };
        let mut accepted = subtle::Choice::from(0);
        for user in &self.users {
            accepted |= user.username.as_bytes().ct_eq(username)
                & user.password.expose().as_bytes().ct_eq(password);
        }
        if bool::from(accepted) {
            Ok(())
        } else {
            Err(Refusal::BadUsernameOrPassword)
        }
    }

    async fn session<S: AsyncRead + AsyncWrite + Unpin>(&self, mut client: S, first: RawPacket) {
        let connect = match Connect::parse(&first) {
            Ok(c) => c,
            Err(CodecError::UnsupportedProtocol { name, level }) => {
                info!(protocol = ?name, level, "unsupported protocol; refusing");
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

        if let Err(refusal) = self.authenticate(&connect) {
            info!(?refusal, "login refused");
            let mut out = BytesMut::new();
            codec::encode_connack_refusal(connect.level, refusal, &mut out);
            let _ = client.write_all(&out).await;
            let _ = client.shutdown().await;
            return;
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
        self.run_session(client, connect, serial, &taken_over).await;
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
    /// closed first and its will published before this one goes on (MQTT 3.1.1 3.1.4-2).
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
        serial: u64,
        taken_over: &CancellationToken,
    ) {
        // rumqttd panics (and then refuses every later client of that listener) when a
        // client id comes back after a failed CONNECT, and fails the CONNECT of any id
        // holding one of "+$#/". So clean sessions get an upstream id of their own (takeover
        // is done above); persistent sessions keep theirs and must avoid those characters.
        if connect.clean_start {
            connect.client_id = upstream_client_id(&connect.client_id, serial);
        } else if connect
            .client_id
            .iter()
            .any(|b| RUMQTTD_ID_FORBIDDEN.contains(b))
        {
            info!("persistent session with a client id rumqttd cannot hold; refusing");
            let mut out = BytesMut::new();
            codec::encode_connack_refusal(connect.level, Refusal::IdentifierRejected, &mut out);
            let _ = client.write_all(&out).await;
            return;
        }
        // The will is kept here and published by the front (see the module docs).
        let will = connect.will.take();
        connect.will_properties = Bytes::new();
        if connect.keep_alive == 0 {
            connect.keep_alive = NO_KEEP_ALIVE;
        }
        connect.username = Some(Bytes::from(self.upstream.username.clone()));
        connect.password = Some(Bytes::from(self.upstream.password.expose().to_owned()));
        let level = connect.level;

        let Some(upstream) = self.open_upstream(&connect).await else {
            let mut out = BytesMut::new();
            codec::encode_connack_refusal(level, Refusal::ServerUnavailable, &mut out);
            let _ = client.write_all(&out).await;
            return;
        };
        let (upstream, connack) = upstream;
        if client.write_all(&connack.1).await.is_err() {
            return;
        }
        if connack.0 != 0 {
            info!(code = connack.0, "CONNECT refused by the broker");
            return;
        }
        debug!(will = ?will, "session open");

        let mut scanner = PacketScanner::new(level);
        proxy(client, upstream, &mut scanner, taken_over).await;
        match (scanner.ending(), will) {
            (Ending::Clean, _) => debug!("closed with DISCONNECT"),
            (_, None) => debug!("closed without DISCONNECT; no will"),
            (_, Some(will)) => {
                info!(topic = ?String::from_utf8_lossy(&will.topic), "publishing will");
                if let Err(e) = self.publish_will(&will).await {
                    warn!(error = %e, "will not published");
                }
            }
        }
    }

    /// Connects to rumqttd and returns the socket with the CONNACK's code and bytes.
    async fn open_upstream(&self, connect: &Connect) -> Option<(TcpStream, (u8, Bytes))> {
        let addr = if connect.level == LEVEL_5 {
            self.upstream.v5
        } else {
            self.upstream.v4
        };
        let attempt = async {
            let mut upstream = TcpStream::connect(addr).await?;
            let _ = upstream.set_nodelay(true);
            let mut out = BytesMut::new();
            connect.encode(&mut out);
            upstream.write_all(&out).await?;
            let connack = codec::read_packet(&mut upstream, 1024).await?;
            let code = codec::connack_code(&connack)?;
            let mut bytes = BytesMut::new();
            reencode(&connack, &mut bytes);
            Ok::<_, CodecError>((upstream, (code, bytes.freeze())))
        };
        match timeout(UPSTREAM_TIMEOUT, attempt).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                warn!(error = %e, "broker did not accept the forwarded CONNECT");
                None
            }
            Err(_) => {
                warn!("broker did not answer the forwarded CONNECT in time");
                None
            }
        }
    }

    /// Publishes a will through its own short connection to rumqttd (MQTT 3.1.1).
    /// QoS 2 wills are published at QoS 1.
    async fn publish_will(&self, will: &Will) -> Result<(), CodecError> {
        let n = self.serials.fetch_add(1, Ordering::Relaxed);
        let relay = Connect {
            level: codec::LEVEL_311,
            clean_start: true,
            keep_alive: 30,
            properties: Bytes::new(),
            client_id: Bytes::from(format!("host-broker-will-relay-{n}")),
            will: None,
            will_properties: Bytes::new(),
            username: Some(Bytes::from(self.upstream.username.clone())),
            password: Some(Bytes::from(self.upstream.password.expose().to_owned())),
        };
        let relay_will = async {
            let Some((mut upstream, (code, _))) = self.open_upstream(&relay).await else {
                return Err(CodecError::Closed);
            };
            if code != 0 {
                return Err(CodecError::Malformed("will relay CONNACK"));
            }
            let qos = will.qos.min(1);
            let mut out = BytesMut::new();
            codec::encode_publish(will, qos, 1, &mut out);
            upstream.write_all(&out).await?;
            if qos == 1 {
                // Bounded: the whole relay runs under UPSTREAM_TIMEOUT.
                loop {
                    let packet = codec::read_packet(&mut upstream, self.max_packet_size).await?;
                    if packet.kind() == codec::PUBACK {
                        break;
                    }
                }
            }
            // Closed without DISCONNECT: see `proxy` for why rumqttd must not see both.
            drop(upstream);
            Ok(())
        };
        match timeout(UPSTREAM_TIMEOUT, relay_will).await {
            Ok(r) => r,
            Err(_) => Err(CodecError::Timeout("will relay")),
        }
    }
}

/// Characters rumqttd refuses in a client id.
const RUMQTTD_ID_FORBIDDEN: &[u8] = b"+$#/";

/// A client id unique to one upstream connection, recognisable in rumqttd's logs.
fn upstream_client_id(client_id: &[u8], serial: u64) -> Bytes {
    let mut id: Vec<u8> = client_id
        .iter()
        .map(|b| {
            if RUMQTTD_ID_FORBIDDEN.contains(b) {
                b'_'
            } else {
                *b
            }
        })
        .collect();
    id.extend_from_slice(format!(".{serial}").as_bytes());
    Bytes::from(id)
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

/// Copies both ways until either side closes or the session is taken over; `scanner`
/// follows what the client sent.
///
/// After a DISCONNECT the upstream socket is left for rumqttd to close: when it sees the
/// socket close while it handles the DISCONNECT, rumqttd disconnects the connection id
/// twice, and the second one can hit a newer client that was given the same id.
async fn proxy<S: AsyncRead + AsyncWrite + Unpin>(
    client: S,
    upstream: TcpStream,
    scanner: &mut PacketScanner,
    taken_over: &CancellationToken,
) {
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut upstream_rx, mut upstream_tx) = upstream.into_split();
    // Ends when the client is gone (false) or has sent a DISCONNECT that rumqttd will act
    // on (true).
    let to_broker = async {
        let mut buf = BytesMut::with_capacity(8 * 1024);
        loop {
            buf.clear();
            match client_rx.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            scanner.feed(&buf);
            if upstream_tx.write_all(&buf).await.is_err() {
                return false;
            }
            if scanner.ending() != Ending::Open {
                // rumqttd 0.20 waits forever for a properties length after an MQTT 5
                // DISCONNECT of one byte (reason code only), so it never acts on it.
                return !(scanner.level() == LEVEL_5 && scanner.disconnect_len() == Some(1));
            }
        }
    };
    // Ends when rumqttd closes; a client that stopped reading does not end it.
    let to_client = async {
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
    };
    tokio::pin!(to_broker);
    tokio::pin!(to_client);
    let disconnected = tokio::select! {
        disconnected = &mut to_broker => disconnected,
        _ = &mut to_client => return,
        _ = taken_over.cancelled() => {
            // What the client sent before the takeover still counts (a DISCONNECT).
            timeout(TAKEOVER_DRAIN, &mut to_broker).await.unwrap_or(false)
        }
    };
    if disconnected && timeout(DISCONNECT_GRACE, &mut to_client).await.is_err() {
        debug!("broker kept the connection open after DISCONNECT; closing it");
    }
}
