//! SlowITe (CVE-2020-13849) against the whole product: while 1,000 silent sockets and 200
//! sockets trickling bytes press on the host's embedded broker (default limits), the edge
//! node's data keeps reaching the host's history at no less than 90% of its rate before.
//! The attacking sockets come from 120 loopback addresses, 10 each, so the limits per
//! address alone do not turn them away: the pending pool and connect rate are tested too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use system_tests::stack::{Stack, now_ms};
use system_tests::wait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// A metric the built-in plant changes on every read (230 V +- 3, "normal" scan class).
const METRIC: &str = "e2e/gw-1/power-meter:Voltage L1";
/// Each window in which the samples reaching history are counted.
const WINDOW: Duration = Duration::from_secs(10);

/// Set when the attacking tasks must stop.
type Stop = Arc<AtomicBool>;

/// One attacking socket from `source`, reopened a second after the broker closes or
/// refuses it, until `stop`: silent, or trickling a never-ending CONNECT.
/// `opened` counts the sockets it opened.
async fn attacker(
    source: IpAddr,
    broker: SocketAddr,
    trickle: bool,
    stop: Stop,
    opened: Arc<AtomicUsize>,
) {
    for _ in 0..1_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let socket = TcpSocket::new_v4().expect("socket");
        if socket.bind(SocketAddr::new(source, 0)).is_ok()
            && let Ok(mut stream) = socket.connect(broker).await
        {
            opened.fetch_add(1, Ordering::Relaxed);
            if trickle {
                // CONNECT claiming 16,000 bytes, then a byte every 200 ms.
                let mut open = stream.write_all(&[0x10, 0x80, 0x7d]).await.is_ok();
                for _ in 0..16_000 {
                    if !open || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    open = stream.write_all(&[0]).await.is_ok();
                }
            } else {
                let mut buf = [0u8; 16];
                for _ in 0..600 {
                    // Wakes every 100 ms to see the stop flag.
                    match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf))
                        .await
                    {
                        Ok(Ok(0) | Err(_)) => break,
                        _ if stop.load(Ordering::Relaxed) => return,
                        _ => {}
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Samples of [`METRIC`] stored with a time inside `from..to`.
fn samples(stack: &Stack, from: u64, to: u64) -> usize {
    let history = stack.api().history(METRIC, from, to);
    history["points"].as_array().map_or(0, |p| p.len())
}

#[test]
fn edge_data_reaches_the_host_at_90_percent_of_its_rate_under_slowite() {
    system_tests::raise_open_files_limit();
    let mut stack = Stack::start();
    stack.wait_tree("node online", |tree| tree.node_state() == Some("online"));
    // Let the edge node settle after its births.
    std::thread::sleep(Duration::from_secs(2));

    let calm_from = now_ms();
    std::thread::sleep(WINDOW);
    let calm_to = now_ms();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let broker = SocketAddr::from((Ipv4Addr::LOCALHOST, stack.host.broker().port()));
    let stop = Stop::default();
    let opened = Arc::new(AtomicUsize::new(0));
    for i in 0..1_200u32 {
        let source = IpAddr::V4(Ipv4Addr::new(
            127,
            1,
            (i / 10 / 250) as u8,
            (i / 10 % 250 + 1) as u8,
        ));
        runtime.spawn(attacker(
            source,
            broker,
            i >= 1_000,
            stop.clone(),
            opened.clone(),
        ));
    }
    // The attack builds up before its window is counted.
    std::thread::sleep(Duration::from_secs(2));
    let attacked_from = now_ms();
    std::thread::sleep(WINDOW);
    let attacked_to = now_ms();
    stop.store(true, Ordering::Relaxed);
    let opened = opened.load(Ordering::Relaxed);
    assert!(opened >= 1_200, "the attack opened only {opened} sockets");

    // History is written in batches: wait until the attacked window's samples are in.
    let calm = samples(&stack, calm_from, calm_to);
    assert!(
        calm > 0,
        "no {METRIC} samples in history without the attack"
    );
    let attacked = wait::poll(Duration::from_secs(15), || {
        let n = samples(&stack, attacked_from, attacked_to);
        (n * 10 >= calm * 9).then_some(n)
    })
    .unwrap_or_else(|| samples(&stack, attacked_from, attacked_to));
    runtime.shutdown_timeout(Duration::from_secs(5));
    println!(
        "{METRIC} samples in {WINDOW:?}: {calm} without the attack, {attacked} under it \
         ({opened} attacking sockets opened)"
    );
    assert!(
        attacked * 10 >= calm * 9,
        "under attack {attacked} samples, without {calm}:\n{}",
        stack.dump()
    );
}
