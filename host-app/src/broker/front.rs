//! The front every client meets: our own accept loops (plain and TLS), admission at
//! accept (module `admission`: pending pool, limits per address, connect rates), the
//! CONNECT deadline, the limit on logged-in connections, the maximum keep-alive, the
//! login, client id and will checks of the access rules ([`Acl`]) and the order of
//! connections that share a client id. Each accepted client is proxied to the engine's
//! internal loopback listener, behind a PROXY protocol header naming the peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use infra::logging::Escaped;

use super::acl::{Acl, Denied, Login};
use super::admission::{Admission, Limits, Ticket};
use super::codec::{
    self, CodecError, Connect, DisconnectScanner, Ending, LEVEL_5, RawPacket, Refusal,
};
use super::config::{CertificateName, Secret};
use super::read_buffer::ReadBuffer;

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
    /// TLS: the client certificate's name that logs in as an account.
    certificate_username: Option<CertificateName>,
    pub max_connections: usize,
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
            certificate_username: None,
            max_connections,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            serials: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// TLS clients with a valid certificate log in as the account it names.
    pub fn certificate_username(mut self, which: Option<CertificateName>) -> Front {
        self.certificate_username = which;
        self
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

    /// Each connection's task holds this future for its whole life, sized for its largest
    /// state; the TLS handshake and the session are boxed so an idle connection holds only
    /// the state it is in.
    async fn serve_inner(&self, stream: TcpStream, tls: Option<TlsAcceptor>, mut ticket: Ticket) {
        // TLS handshake and CONNECT must both arrive within the deadline, which is set once
        // at accept: bytes trickling in do not extend it. Newer sockets may evict this one
        // from the pending pool meanwhile.
        let proxy_header = proxy_header(&stream);
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
                            // Boxed: the task keeps only the branch it runs (see `serve_inner`).
                            Box::pin(self.session(stream, first, proxy_header, None)).await;
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
                    let identity = self.certificate_username.and_then(|which| {
                        let certificate = stream.get_ref().1.peer_certificates()?.first()?;
                        super::tls::certificate_name(certificate, which)
                    });
                    let first = self.read_connect(&mut stream).await?;
                    Some((stream, first, identity))
                };
                // Boxed: freed once the handshake is done, and not part of plain tasks.
                let opening = Box::pin(opening);
                let opened = tokio::select! {
                    _ = evicted.cancelled() => {
                        debug!("pending pool full; closing the oldest socket without CONNECT");
                        return;
                    }
                    opened = timeout(self.connection_timeout, opening) => opened,
                };
                match opened {
                    Ok(Some((mut stream, first, identity))) => {
                        ticket.leave_pending();
                        if let Some(_permit) = self.session_permit(&mut stream, &first).await {
                            // Boxed: the task keeps only the branch it runs (see `serve_inner`).
                            Box::pin(self.session(stream, first, proxy_header, identity)).await;
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

    /// Who the CONNECT is (login and client id, see [`Acl::login`]; the account its
    /// verified certificate names, when `certificate_username` is set), and whether its
    /// will is its own to leave.
    fn admit(&self, connect: &Connect, identity: Option<&str>) -> Result<Login, Denied> {
        let login = match identity {
            Some(account) => self.acl.login_certified(account, &connect.client_id)?,
            None => self.acl.login(
                connect.username.as_deref(),
                connect.password.as_deref(),
                &connect.client_id,
            )?,
        };
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

    async fn session<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut client: S,
        first: RawPacket,
        proxy_header: Bytes,
        identity: Option<String>,
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

        // The engine publishes wills without asking the policy: the will topic is fixed
        // at CONNECT, so `admit` asks it here, as Mosquitto does.
        if let Some(account) = &identity {
            debug!(account = %Escaped(account), "client certificate names the account");
        }
        let login = match self.admit(&connect, identity.as_deref()) {
            Ok(login) => login,
            Err(denied) => return refuse_login(client, &connect, denied).await,
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
                return refuse_login(client, &connect, denied).await;
            }
        }
        let account = login.account().map(str::to_owned);
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
    /// left to do the takeover itself). Only the account that holds a client id may take
    /// it over.
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
        account: Option<String>,
        proxy_header: Bytes,
        taken_over: &CancellationToken,
    ) {
        let granted_keep_alive = self.grant_keep_alive(&mut connect);
        // A client silent for 1.5 times its keep-alive is gone (MQTT-3.1.2-24).
        let idle = Duration::from_millis(u64::from(connect.keep_alive) * 1500);
        // The engine learns the account from the username; anonymous is an empty one
        // (MQTT 3.1.1 allows no password without a username).
        connect.username = Some(Bytes::from(account.unwrap_or_default()));
        connect.password = Some(Bytes::from(self.upstream.secret.expose().to_owned()));
        let level = connect.level;

        // Boxed: its state (connect, timers, CONNACK read) is not kept while proxying.
        let opened = Box::pin(self.open_upstream(&connect, &proxy_header)).await;
        let Some((upstream, mut connack)) = opened else {
            refuse(&mut client, level, Refusal::ServerUnavailable).await;
            return;
        };
        // MQTT 5 is told the keep-alive it got (MQTT-3.2.2-22); 3.1.1 has no way to hear it.
        if let Some(granted) = granted_keep_alive.filter(|_| level == LEVEL_5 && connack.0 == 0) {
            connack.1 = codec::with_server_keep_alive(&connack.1, granted);
        }
        if client.write_all(&connack.1).await.is_err() {
            return;
        }
        if connack.0 != 0 {
            info!(code = connack.0, "CONNECT refused by the engine");
            return;
        }
        debug!("session open");

        let will_topic = connect.will.as_ref().map(|w| w.topic.clone());
        match (
            proxy(client, upstream, level, taken_over, idle).await,
            will_topic,
        ) {
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

/// Answers a refused CONNECT with its CONNACK and logs who and why.
async fn refuse_login<S: AsyncWrite + Unpin>(mut client: S, connect: &Connect, denied: Denied) {
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

/// Copies both ways until either side closes, the client is silent for `idle`, or the
/// session is taken over.
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
    idle: Duration,
) -> Ending {
    let mut scanner = DisconnectScanner::new(level);
    let mut ending = Ending::Dropped;
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut upstream_rx, mut upstream_tx) = upstream.into_split();
    // Ends when the client is gone; after a DISCONNECT the engine closes first.
    let mut to_broker = Box::pin(async {
        let mut buf = ReadBuffer::new();
        loop {
            match timeout(idle, buf.read(&mut client_rx)).await {
                Ok(Ok(0) | Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => {
                    info!("client silent for 1.5 times its keep-alive; closing");
                    return;
                }
            }
            let buf = buf.filled();
            let forward = match scanner.feed(buf) {
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
