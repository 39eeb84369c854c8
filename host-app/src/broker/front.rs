//! The front every client meets: our own accept loops (plain and TLS), admission at
//! accept (module `admission`: pending pool, limits per address, connect rates), the
//! CONNECT deadline, the limit on logged-in connections, the maximum keep-alive, the
//! login, client id and will checks of the access rules ([`Acl`]) and the order of
//! connections that share a client id. Each accepted client's stream, with its real
//! address, is then handed to the engine (module `handoff`). The listeners and
//! connections run on the engine's runtime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rmqtt::codec::MqttCodec;
use rmqtt::context::ServerContext;
use rmqtt::types::ListenerId;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use infra::logging::Escaped;

use super::acl::{Acl, AclChanges, Denied, LiveAcl, Login};
use super::admission::{Admission, Limits, Ticket};
use super::codec::{self, CodecError, Connect, Ending, LEVEL_5, RawPacket, Refusal};
use super::config::CertificateName;
use super::engine::READ_BUFFER;
use super::handoff::{Done, HandedOver, Takeover};

/// How long a connection waits for the engine to end the one it takes the client id of.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest CONNECT read (client id, will and login): bounds what a socket that has not
/// logged in yet can make the front hold.
const MAX_CONNECT_SIZE: usize = 32 * 1024;
/// Handed-over CONNECTs the engine answers "server unavailable" are tried again this many
/// times, this far apart (see the module docs of `broker`).
const UNAVAILABLE_RETRIES: u32 = 40;
const UNAVAILABLE_PAUSE: Duration = Duration::from_millis(25);

/// State shared by every accept loop and connection of one embedded broker.
pub struct Front {
    /// The engine each logged-in connection is handed to.
    pub engine: ServerContext,
    pub acl: Arc<LiveAcl>,
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
    /// Every logged-in connection by serial, with its account: what a reload of the
    /// access rules may end. The rules are replaced under this lock, so a connection is
    /// either here before they change or checked against the new ones ([`Front::enrol`]).
    logged_in: Mutex<HashMap<u64, LoggedIn>>,
}

/// A logged-in connection as a reload of the access rules sees it.
struct LoggedIn {
    /// `None`: anonymous.
    account: Option<String>,
    /// Ends the connection.
    taken_over: Arc<Takeover>,
    /// Cancelled once the engine has ended it (will published, session kept or cleaned).
    ended: CancellationToken,
}

/// Takes a connection off [`Front::logged_in`] when it ends, however it ends.
struct Enrolled<'a> {
    front: &'a Front,
    serial: u64,
}

impl Drop for Enrolled<'_> {
    fn drop(&mut self) {
        self.front
            .logged_in
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.serial);
    }
}

/// A session as the takeover of its client id sees it.
struct OpenSession {
    serial: u64,
    /// The account it logged in as (`None`: anonymous).
    account: Option<String>,
    /// Set when a newer connection takes the client id over.
    taken_over: Arc<Takeover>,
    /// Cancelled once the engine has ended the connection (will published, session
    /// cleaned or gone offline).
    ended: CancellationToken,
}

impl Front {
    pub fn new(
        engine: ServerContext,
        acl: Arc<LiveAcl>,
        connection_timeout: Duration,
        max_packet_size: usize,
        max_connections: usize,
        limits: Limits,
        max_keepalive: u16,
    ) -> Front {
        Front {
            engine,
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
            logged_in: Mutex::new(HashMap::new()),
        }
    }

    /// Puts new access rules in force: logins from now on and every check of a connected
    /// client follow them, and the connections of accounts removed or changed (and
    /// anonymous ones, when anonymous access changed) are ended, their wills published.
    /// Returns what changed and, for each connection ended, what says the engine is done
    /// with it.
    pub fn reload_acl(&self, acl: Acl) -> (AclChanges, Vec<CancellationToken>) {
        let logged_in = self.logged_in.lock().unwrap_or_else(|e| e.into_inner());
        let changes = self.acl.replace(acl);
        let mut ended = Vec::new();
        for connection in logged_in.values() {
            if changes.ends(connection.account.as_deref()) {
                connection.taken_over.take_over();
                ended.push(connection.ended.clone());
            }
        }
        (changes, ended)
    }

    /// Registers a logged-in connection for [`Front::reload_acl`]; when the rules changed
    /// since `acl` admitted it, the new ones decide again.
    fn enrol(
        &self,
        serial: u64,
        acl: &Arc<Acl>,
        login: Login,
        connect: &Connect,
        identity: Option<&str>,
        (taken_over, ended): (&Arc<Takeover>, &CancellationToken),
    ) -> Result<Login, Denied> {
        let mut logged_in = self.logged_in.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.acl.current();
        let login = if Arc::ptr_eq(acl, &now) {
            login
        } else {
            self.admit(&now, connect, identity)?
        };
        logged_in.insert(
            serial,
            LoggedIn {
                account: login.account().map(str::to_owned),
                taken_over: Arc::clone(taken_over),
                ended: ended.clone(),
            },
        );
        Ok(login)
    }

    /// TLS clients with a valid certificate log in as the account it names.
    pub fn certificate_username(mut self, which: Option<CertificateName>) -> Front {
        self.certificate_username = which;
        self
    }

    /// Accepts clients on `listener` until shutdown; the engine serves them with its
    /// listener configuration `lid`. Runs on the engine's runtime.
    pub async fn accept_loop(
        self: Arc<Self>,
        listener: std::net::TcpListener,
        tls: Option<TlsAcceptor>,
        lid: ListenerId,
    ) {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "listener not usable");
                return;
            }
        };
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
                .spawn(async move { front.serve(stream, tls, ticket, lid).await }.instrument(span));
        }
        debug!("listener closed");
    }

    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        tls: Option<TlsAcceptor>,
        ticket: Ticket,
        lid: ListenerId,
    ) {
        let _ = stream.set_nodelay(true);
        let shutdown = self.shutdown.clone();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.serve_inner(stream, tls, ticket, lid) => {}
        }
    }

    /// Each connection's task holds this future for its whole life, sized for its largest
    /// state; the TLS handshake and the session are boxed so an idle connection holds only
    /// the state it is in.
    async fn serve_inner(
        &self,
        stream: TcpStream,
        tls: Option<TlsAcceptor>,
        mut ticket: Ticket,
        lid: ListenerId,
    ) {
        // TLS handshake and CONNECT must both arrive within the deadline, which is set once
        // at accept: bytes trickling in do not extend it. Newer sockets may evict this one
        // from the pending pool meanwhile.
        let Ok(peer) = stream.peer_addr() else {
            return;
        };
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
                            Box::pin(self.session(stream, first, peer, None, lid)).await;
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
                            Box::pin(self.session(stream, first, peer, identity, lid)).await;
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

    /// Grants at most `max_keepalive_s` (a CONNECT asking 0 or more gets the maximum).
    fn grant_keep_alive(&self, connect: &mut Connect) {
        if connect.keep_alive == 0 || connect.keep_alive > self.max_keepalive {
            connect.keep_alive = self.max_keepalive;
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

    /// Who the CONNECT is (login and client id, see [`Acl::login`]; the account its
    /// verified certificate names, when `certificate_username` is set), and whether its
    /// will is its own to leave.
    fn admit(&self, acl: &Acl, connect: &Connect, identity: Option<&str>) -> Result<Login, Denied> {
        let login = match identity {
            Some(account) => acl.login_certified(account, &connect.client_id)?,
            None => acl.login(
                connect.username.as_deref(),
                connect.password.as_deref(),
                &connect.client_id,
            )?,
        };
        if let Some(will) = &connect.will {
            let client_id = std::str::from_utf8(&connect.client_id).unwrap_or_default();
            let mine = std::str::from_utf8(&will.topic)
                .is_ok_and(|topic| acl.may_will(login.account(), client_id, topic));
            if !mine {
                return Err(Denied::Will);
            }
        }
        Ok(login)
    }

    async fn session<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        &self,
        mut client: S,
        first: RawPacket,
        peer: SocketAddr,
        identity: Option<String>,
        lid: ListenerId,
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
        let acl = self.acl.current();
        let login = match self.admit(&acl, &connect, identity.as_deref()) {
            Ok(login) => login,
            Err(denied) => return refuse_login(client, &connect, denied).await,
        };
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let taken_over = Arc::new(Takeover::default());
        let ended = CancellationToken::new();
        let _ended_on_exit = ended.clone().drop_guard();
        let login = match self.enrol(
            serial,
            &acl,
            login,
            &connect,
            identity.as_deref(),
            (&taken_over, &ended),
        ) {
            Ok(login) => login,
            Err(denied) => return refuse_login(client, &connect, denied).await,
        };
        let _enrolled = Enrolled {
            front: self,
            serial,
        };
        debug!(account = ?login.account().map(Escaped), "logged in");

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
        self.hand_over(client, connect, account, peer, lid, taken_over)
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
            previous.taken_over.take_over();
            if timeout(TAKEOVER_TIMEOUT, previous.ended.cancelled())
                .await
                .is_err()
            {
                warn!("previous connection did not close in time");
            }
        }
        Ok(())
    }

    /// Hands the connection to the engine and waits until the engine has ended it.
    async fn hand_over<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        &self,
        client: S,
        mut connect: Connect,
        account: Option<String>,
        peer: SocketAddr,
        lid: ListenerId,
        taken_over: Arc<Takeover>,
    ) {
        // The engine applies the keep-alive granted (it closes a client silent for 1.5
        // times it) and tells MQTT 5 clients in the CONNACK's Server Keep Alive.
        self.grant_keep_alive(&mut connect);
        // The engine learns the account from the username; anonymous is an empty one.
        connect.username = Some(Bytes::from(account.unwrap_or_default()));
        connect.password = None;
        let level = connect.level;
        let will_topic = connect.will.as_ref().map(|w| w.topic.clone());
        let mut opening = BytesMut::new();
        connect.encode(&mut opening);
        let opening = opening.freeze();
        drop(connect);
        let Some(cfg) = self.engine.listen_cfgs.get(&lid).map(|c| c.value().clone()) else {
            warn!(lid, "no engine listener configuration");
            return;
        };

        let mut client = client;
        let mut tries = 0;
        let (ending, code) = loop {
            let (done_tx, done_rx) = oneshot::channel();
            let hold_unavailable = tries < UNAVAILABLE_RETRIES;
            let stream = HandedOver::new(
                client,
                opening.clone(),
                level,
                taken_over.clone(),
                hold_unavailable,
                done_tx,
            );
            let max = cfg.max_packet_size;
            let codec = if level == LEVEL_5 {
                MqttCodec::V5(rmqtt::codec::v5::Codec::new(max, max))
            } else {
                MqttCodec::V3(rmqtt::codec::v3::Codec::new(max))
            };
            // Small buffers that grow while the client is busy: `Framed` gives each 8 KiB
            // (also from parts), which an idle connection would keep for its whole life.
            let mut io = Framed::new(stream, codec);
            *io.read_buffer_mut() = BytesMut::with_capacity(READ_BUFFER);
            *io.write_buffer_mut() = BytesMut::new();
            let scx = self.engine.clone();
            let cfg = cfg.clone();
            self.tasks.spawn(async move {
                let served = if level == LEVEL_5 {
                    let stream = rmqtt::net::v5::MqttStream {
                        io,
                        remote_addr: peer,
                        cfg,
                    };
                    rmqtt::v5::process(scx, stream, lid).await
                } else {
                    let stream = rmqtt::net::v3::MqttStream {
                        io,
                        remote_addr: peer,
                        cfg,
                    };
                    rmqtt::v3::process(scx, stream, lid).await
                };
                if let Err(e) = served {
                    debug!(error = %e, "engine ended the connection");
                }
            });
            match done_rx.await {
                Ok(Done::Retry(stream)) => {
                    tries += 1;
                    debug!(tries, "engine answered server unavailable; trying again");
                    client = stream;
                    tokio::time::sleep(UNAVAILABLE_PAUSE).await;
                }
                Ok(Done::Ended { ending, connack }) => break (ending, connack),
                // The engine stopped.
                Err(_) => return,
            }
        };
        match (code, ending, will_topic) {
            (None, ..) => debug!("closed before the engine answered"),
            (Some(code), ..) if code != 0 => info!(code, "CONNECT refused by the engine"),
            (_, Ending::Clean, _) => debug!("closed with DISCONNECT"),
            (_, _, None) => debug!("closed without DISCONNECT; no will"),
            (_, _, Some(topic)) => info!(
                topic = %Escaped(String::from_utf8_lossy(&topic)),
                "publishing will"
            ),
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
