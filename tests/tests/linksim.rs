//! The link simulator in front of a plain TCP echo server: latency, bandwidth cap, cut,
//! blackhole and restore. Only lower bounds on time are asserted.

use std::net::SocketAddr;
use std::time::Duration;

use system_tests::linksim::LinkSim;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(10);

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn echo_once(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    timeout(WAIT, stream.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    back
}

/// True once the peer closed (EOF or reset), within `WAIT`.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        timeout(WAIT, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn latency_adds_at_least_the_configured_delay_each_way() {
    let link = LinkSim::start(echo_server().await).await.unwrap();
    link.set_latency(Duration::from_millis(150));
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    let start = Instant::now();
    assert_eq!(echo_once(&mut stream, b"ping").await, b"ping");
    // Out and back through the link: two one-way delays.
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    link.shutdown().await;
}

#[tokio::test]
async fn bandwidth_cap_bounds_throughput_from_above() {
    let link = LinkSim::start(echo_server().await).await.unwrap();
    link.set_bandwidth(Some(64_000)); // 8000 bytes/s each way
    let stream = TcpStream::connect(link.addr()).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    const LEN: usize = 16 * 1024;
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let start = Instant::now();
    let writer = tokio::spawn(async move { w.write_all(&sent).await.map(|_| w) });
    let mut back = vec![0u8; LEN];
    timeout(WAIT, r.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(back, data);
    drop(writer.await.unwrap().unwrap());
    // Each direction may pass one chunk (rate / 20 = 400 bytes) unpaced; the rest at 8000 B/s.
    let min = Duration::from_secs_f64((LEN - 400) as f64 / 8000.0);
    assert!(elapsed >= min, "{elapsed:?} < {min:?}");
    link.shutdown().await;
}

#[tokio::test]
async fn cut_closes_and_refuses_until_restore() {
    let link = LinkSim::start(echo_server().await).await.unwrap();
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    assert_eq!(echo_once(&mut stream, b"before").await, b"before");
    link.cut();
    assert!(closed(&mut stream).await, "the live connection is closed");
    // New connections are accepted by the kernel and closed at once.
    let mut refused = TcpStream::connect(link.addr()).await.unwrap();
    let _ = refused.write_all(b"hello").await;
    assert!(closed(&mut refused).await, "a new connection is refused");
    link.restore();
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    assert_eq!(echo_once(&mut stream, b"after").await, b"after");
    link.shutdown().await;
}

#[tokio::test]
async fn blackhole_forwards_nothing_while_sockets_stay_open() {
    let link = LinkSim::start(echo_server().await).await.unwrap();
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    assert_eq!(echo_once(&mut stream, b"a").await, b"a");
    link.blackhole();
    stream.write_all(b"lost").await.unwrap();
    let mut buf = [0u8; 16];
    let quiet = timeout(Duration::from_millis(500), stream.read(&mut buf)).await;
    assert!(
        quiet.is_err(),
        "nothing comes back and the socket is not closed: {quiet:?}"
    );
    link.restore();
    // Same socket: what was sent while blackholed is gone, new data flows again.
    assert_eq!(echo_once(&mut stream, b"back").await, b"back");
    link.shutdown().await;
}

#[tokio::test]
async fn blackhole_holds_back_a_close_until_restore() {
    // A target that closes each connection 300 ms after accepting it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                drop(socket);
            });
        }
    });
    let link = LinkSim::start(target).await.unwrap();
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    assert!(
        closed(&mut stream).await,
        "an open link passes the close on"
    );

    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    // The proxy reaches the target, then the link goes half-open before the target closes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    link.blackhole();
    let mut buf = [0u8; 16];
    let quiet = timeout(Duration::from_millis(800), stream.read(&mut buf)).await;
    assert!(
        quiet.is_err(),
        "the target's close is not heard on a half-open link: {quiet:?}"
    );
    link.restore();
    assert!(closed(&mut stream).await, "the close arrives once restored");
    link.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_listening_and_closes_connections() {
    let link = LinkSim::start(echo_server().await).await.unwrap();
    let addr = link.addr();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(echo_once(&mut stream, b"x").await, b"x");
    link.shutdown().await;
    assert!(closed(&mut stream).await);
    assert!(TcpStream::connect(addr).await.is_err());
}
