//! The front every client meets: our own accept loops (plain and TLS), admission at
//! accept (module `admission`: pending pool, limits per address, connect rates), the
//! CONNECT deadline, the limit on logged-in connections, the maximum keep-alive, the
//! login, client id and will checks of the access rules ([`Acl`]) and Last Will handling.
//! Each accepted client is proxied to rumqttd's internal loopback listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use infra::logging::Escaped;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::acl::{Acl, Denied, Login};
use super::admission::{Admission, Limits, Ticket};
use super::codec::{
    self, CodecError, Connect, Ending, LEVEL_5, PacketScanner, RawPacket, Refusal, Will,
};
use super::config::Secret;
use super::read_buffer::ReadBuffer;

/// How long the front waits on rumqttd's own answers (CONNACK, PUBACK) on loopback.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long rumqttd may take to close a connection after DISCONNECT.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);
/// How long a taken-over connection may still deliver what its client already sent.
const TAKEOVER_DRAIN: Duration = Duration::from_millis(100);
/// Largest CONNECT read (client id, will and login): bounds what a socket that has not
/// logged in yet can make the front hold.
const MAX_CONNECT_SIZE: usize = 32 * 1024;

/// rumqttd's internal listeners and the credential only the front knows.
pub struct Upstream {
    pub v4: SocketAddr,
    pub v5: SocketAddr,
    pub username: String,
    pub password: Secret,
}

/// State shared by every accept loop and connection of one embedded broker.
pub struct Front {
    pub upstream: Upstream,
    pub acl: Arc<Acl>,
    pub connection_timeout: Duration,
    pub max_packet_size: usize,
    /// Places for logged-in connections (`max_connections`).
    pub permits: Arc<Semaphore>,
    /// Places for sockets before their CONNECT, and the limits at accept.
    admission: Arc<Admission>,
    /// Largest keep-alive granted, in seconds.
    max_keepalive: u16,
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
    /// The account it logged in as (`None`: anonymous).
    account: Option<String>,
    /// Cancelled when a newer connection takes the client id over.
    taken_over: CancellationToken,
    /// Cancelled once the session has ended and its will, if any, is published.
    ended: CancellationToken,
}

impl Front {
    pub fn new(
        upstream: Upstream,
        acl: Arc<Acl>,
        connection_timeout: Duration,
        max_packet_size: usize,
        max_connections: usize,
        limits: Limits,
        max_keepalive: u16,
    ) -> Front {
        Front {
            upstream,
            acl,
            connection_timeout,
            max_packet_size,
            permits: Arc::new(Semaphore::new(max_connections)),
            admission: Arc::new(Admission::new(limits)),
            max_keepalive,
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
            // Debug only: under a flood, a line per refused socket would fill the log.
            let ticket = match self.admission.admit(peer.ip()) {
                Ok(ticket) => ticket,
                Err(refused) => {
                    debug!(%peer, ?refused, "new socket refused at accept");
                    continue;
                }
            };
            let front = self.clone();
            let tls = tls.clone();
            let span = info_span!("mqtt_client", %peer, client_id = tracing::field::Empty);
            self.tasks
                .spawn(async move { front.serve(stream, tls, ticket).await }.instrument(span));
        }
        debug!("listener closed");
    }

    async fn serve(self: Arc<Self>, stream: TcpStream, tls: Option<TlsAcceptor>, ticket: Ticket) {
        let _ = stream.set_nodelay(true);
        let shutdown = self.shutdown.clone();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.serve_inner(stream, tls, ticket) => {}
        }
    }

    async fn serve_inner(&self, stream: TcpStream, tls: Option<TlsAcceptor>, mut ticket: Ticket) {
        // TLS handshake and CONNECT must both arrive within the deadline, which is set once
        // at accept: bytes trickling in do not extend it. Newer sockets may evict this one
        // from the pending pool meanwhile.
        let evicted = ticket.evicted();
        match tls {
            None => {
                let mut stream = stream;
                let opening = timeout(self.connection_timeout, self.read_connect(&mut stream));
                let first = tokio::select! {
                    _ = evicted.cancelled() => {
                        debug!("pending pool full; closing the oldest socket without CONNECT");
                        return;
                    }
                    first = opening => first,
                };
                match first {
                    Ok(Some(first)) => {
                        ticket.leave_pending();
                        if let Some(_permit) = self.session_permit(&mut stream, &first).await {
                            self.session(stream, first).await;
                        }
                    }
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
                let opened = tokio::select! {
                    _ = evicted.cancelled() => {
                        debug!("pending pool full; closing the oldest socket without CONNECT");
                        return;
                    }
                    opened = timeout(self.connection_timeout, opening) => opened,
                };
                match opened {
                    Ok(Some((mut stream, first))) => {
                        ticket.leave_pending();
                        if let Some(_permit) = self.session_permit(&mut stream, &first).await {
                            self.session(stream, first).await;
                        }
                    }
                    Ok(None) => {}
                    Err(_) => info!("no TLS handshake and CONNECT in time; closing"),
                }
            }
        }
    }

    /// A place among logged-in connections for a socket whose CONNECT has arrived; when
    /// all are taken the CONNECT is refused (server unavailable).
    async fn session_permit<S: AsyncWrite + Unpin>(
        &self,
        client: &mut S,
        first: &RawPacket,
    ) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        warn!("connection limit reached; refusing the CONNECT");
        let level = Connect::parse(first).map_or(codec::LEVEL_311, |c| c.level);
        let mut out = BytesMut::new();
        codec::encode_connack_refusal(level, Refusal::ServerUnavailable, &mut out);
        let _ = client.write_all(&out).await;
        None
    }

    /// Grants at most `max_keepalive_s` (a CONNECT asking 0 or more gets the maximum);
    /// returns the granted value when it differs from what the client asked.
    fn grant_keep_alive(&self, connect: &mut Connect) -> Option<u16> {
        if connect.keep_alive != 0 && connect.keep_alive <= self.max_keepalive {
            return None;
        }
        connect.keep_alive = self.max_keepalive;
        Some(self.max_keepalive)
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

    /// Who the CONNECT is (login and client id, see [`Acl::login`]), and whether its will
    /// is its own to leave.
    fn admit(&self, connect: &Connect) -> Result<Login, Denied> {
        let login = self.acl.login(
            connect.username.as_deref(),
            connect.password.as_deref(),
            &connect.client_id,
        )?;
        if let Some(will) = &connect.will {
            let client_id = std::str::from_utf8(&connect.client_id).unwrap_or_default();
            let mine = std::str::from_utf8(&will.topic)
                .is_ok_and(|topic| self.acl.may_will(login.account(), client_id, topic));
            if !mine {
                return Err(Denied::Will);
            }
        }
        Ok(login)
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

        let login = match self.admit(&connect) {
            Ok(login) => login,
            Err(denied) => return refuse(client, &connect, denied).await,
        };
        debug!(account = ?login.account().map(Escaped), "logged in");

        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let taken_over = CancellationToken::new();
        let ended = CancellationToken::new();
        let _ended_on_exit = ended.clone().drop_guard();
        let client_key = connect.client_id.clone();
        if !client_key.is_empty() {
            let session = OpenSession {
                serial,
                account: login.account().map(str::to_owned),
                taken_over: taken_over.clone(),
                ended: ended.clone(),
            };
            if let Err(denied) = self.take_over(&client_key, session).await {
                return refuse(client, &connect, denied).await;
            }
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
    /// Only the account that holds a client id may take it over.
    async fn take_over(&self, client_id: &Bytes, session: OpenSession) -> Result<(), Denied> {
        let previous = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(open) = sessions.get(client_id)
                && open.account != session.account
            {
                return Err(Denied::ClientIdInUse);
            }
            sessions.insert(client_id.clone(), session)
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
        Ok(())
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
        let granted_keep_alive = self.grant_keep_alive(&mut connect);
        // A client silent for 1.5 times its keep-alive is gone (MQTT-3.1.2-24).
        let idle = Duration::from_millis(u64::from(connect.keep_alive) * 1500);
        connect.username = Some(Bytes::from(self.upstream.username.clone()));
        connect.password = Some(Bytes::from(self.upstream.password.expose().to_owned()));
        let level = connect.level;

        let Some(upstream) = self.open_upstream(&connect).await else {
            let mut out = BytesMut::new();
            codec::encode_connack_refusal(level, Refusal::ServerUnavailable, &mut out);
            let _ = client.write_all(&out).await;
            return;
        };
        let (upstream, mut connack) = upstream;
        // MQTT 5 is told the keep-alive it got (MQTT-3.2.2-22); 3.1.1 has no way to hear it.
        if let Some(granted) = granted_keep_alive.filter(|_| level == LEVEL_5 && connack.0 == 0) {
            connack.1 = codec::with_server_keep_alive(&connack.1, granted);
        }
        if client.write_all(&connack.1).await.is_err() {
            return;
        }
        if connack.0 != 0 {
            info!(code = connack.0, "CONNECT refused by the broker");
            return;
        }
        debug!(will = ?will, "session open");

        let mut scanner = PacketScanner::new(level);
        proxy(client, upstream, &mut scanner, taken_over, idle).await;
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

/// Answers a refused CONNECT with its CONNACK and logs who and why.
async fn refuse<S: AsyncWrite + Unpin>(mut client: S, connect: &Connect, denied: Denied) {
    let username = connect.username.as_deref().map(String::from_utf8_lossy);
    let will_topic = connect
        .will
        .as_ref()
        .map(|w| Escaped(String::from_utf8_lossy(&w.topic)));
    warn!(
        client_id = %Escaped(String::from_utf8_lossy(&connect.client_id)),
        username = ?username.map(Escaped),
        will_topic = ?will_topic,
        reason = %denied,
        "CONNECT refused"
    );
    let mut out = BytesMut::new();
    codec::encode_connack_refusal(connect.level, denied.refusal(), &mut out);
    let _ = client.write_all(&out).await;
    let _ = client.shutdown().await;
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

/// Copies both ways until either side closes, the client is silent for `idle`, or the
/// session is taken over; `scanner` follows what the client sent.
///
/// After a DISCONNECT the upstream socket is left for rumqttd to close: when it sees the
/// socket close while it handles the DISCONNECT, rumqttd disconnects the connection id
/// twice, and the second one can hit a newer client that was given the same id.
async fn proxy<S: AsyncRead + AsyncWrite + Unpin>(
    client: S,
    upstream: TcpStream,
    scanner: &mut PacketScanner,
    taken_over: &CancellationToken,
    idle: Duration,
) {
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut upstream_rx, mut upstream_tx) = upstream.into_split();
    // Ends when the client is gone (false) or has sent a DISCONNECT that rumqttd will act
    // on (true).
    let to_broker = async {
        let mut buf = ReadBuffer::new();
        loop {
            match timeout(idle, buf.read(&mut client_rx)).await {
                Ok(Ok(0) | Err(_)) => return false,
                Ok(Ok(_)) => {}
                Err(_) => {
                    info!("client silent for 1.5 times its keep-alive; closing");
                    return false;
                }
            }
            scanner.feed(buf.filled());
            if upstream_tx.write_all(buf.filled()).await.is_err() {
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
        let mut buf = ReadBuffer::new();
        let mut client_open = true;
        loop {
            match buf.read(&mut upstream_rx).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if client_open && client_tx.write_all(buf.filled()).await.is_err() {
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
