//! RTU for real: a pseudo-terminal pair from socat, tokio-modbus's RTU server answering from
//! the plant simulator on one end, the engine on the other. Two slaves share the line and one
//! of them is dead. Also RTU framing over TCP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use edge_node::modbus::{Acquisition, Quality, Value};
use edge_node::simulator::{BankSizes, Plant, PlantService};
use edge_node_testkit::modbus::{site, wait_online};
use system_tests::config::edge::{Bus, Device, Modbus, ScanClass, Tag};

/// A socat process joining two pseudo-terminals; killed (by its own pid) on drop.
struct PtyPair {
    child: Child,
    a: PathBuf,
    b: PathBuf,
    _dir: tempfile::TempDir,
}

impl PtyPair {
    fn open() -> PtyPair {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("master");
        let b = dir.path().join("slave");
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is installed (Debian package socat; tests/run.sh installs it)");
        let pair = PtyPair {
            child,
            a,
            b,
            _dir: dir,
        };
        for _ in 0..200 {
            if exists(&pair.a) && exists(&pair.b) {
                return pair;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("socat did not create the pty pair");
    }
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plant_with_unit_1() -> Arc<Plant> {
    let mut plant = Plant::new();
    plant.add_unit(1, BankSizes::uniform(100)).unwrap();
    let bank = plant.bank(1).unwrap();
    // f32 1.5 in CDAB and a u16.
    bank.set_holding_register(0, 0x0000).unwrap();
    bank.set_holding_register(1, 0x3FC0).unwrap();
    bank.set_holding_register(2, 4242).unwrap();
    Arc::new(plant)
}

/// `flow` (f32 CDAB at 40001) and `count` (u16 at 40003, writable), in 1-based notation.
fn tags() -> Vec<Tag> {
    vec![
        Tag::numbered("flow", "40001", "f32").order("CDAB"),
        Tag::numbered("count", "40003", "u16").writable(),
    ]
}

/// Device `name`, unit `unit_id` on `bus`, with [`tags`].
fn on_bus(name: &str, bus: &str, unit_id: u8) -> Device {
    Device {
        name: name.to_owned(),
        bus: Some(bus.to_owned()),
        unit_id: Some(unit_id),
        tags: tags(),
        ..Device::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_slaves_on_a_serial_line_one_dead_the_live_one_keeps_its_scan() {
    let pty = PtyPair::open();
    let plant = plant_with_unit_1();
    let port = tokio_serial::SerialStream::open(&tokio_serial::new(pty.b.to_string_lossy(), 38400))
        .expect("open the server end of the pty");
    let server = tokio_modbus::server::rtu::Server::new(port);
    let service = PlantService::new(Arc::clone(&plant));
    let server_task = tokio::spawn(async move { server.serve_forever(service).await });

    let modbus = Modbus {
        scan_classes: vec![ScanClass::new("fast", 100.0)],
        buses: vec![Bus {
            name: "line1".to_owned(),
            transport: "rtu".to_owned(),
            path: Some(pty.a.display().to_string()),
            baud: Some(38400),
            parity: Some("none".to_owned()),
            ..Bus::default()
        }],
        devices: vec![
            Device {
                timeout_ms: Some(150),
                ..on_bus("live", "line1", 1)
            },
            Device {
                timeout_ms: Some(150),
                offline_after_failures: Some(2),
                reconnect_min_ms: Some(300),
                reconnect_max_ms: Some(1200),
                ..on_bus("dead", "line1", 2)
            },
        ],
        ..Modbus::default()
    };
    let (acq, mut events) = Acquisition::start(site(&modbus.to_toml()), Default::default());
    let h = acq.handle();
    let live = h.device_id("live").unwrap();
    let dead = h.device_id("dead").unwrap();
    let online = wait_online(&mut events).await;
    assert_eq!(online.device, live);
    let flow = h.tag_id("live", "flow").unwrap();
    let s = online.samples.iter().find(|s| s.tag == flow).unwrap();
    assert_eq!((s.quality, &s.value), (Quality::Good, &Value::F32(1.5)));

    // A write over RTU lands in the slave.
    h.write(h.tag_id("live", "count").unwrap(), Value::U16(7))
        .await
        .unwrap();
    assert_eq!(plant.bank(1).unwrap().holding_register(2).unwrap(), 7);

    // Over a bounded run the live slave keeps (most of) its 100 ms scan although the dead
    // one times out on the same line.
    let before = h.stats(live);
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let elapsed = started.elapsed();
    let after = h.stats(live);
    let dead_stats = h.stats(dead);
    acq.shutdown().await;
    server_task.abort();
    let expected = (elapsed.as_millis() / 100) as u64;
    let scans = after.scans - before.scans;
    assert!(
        scans * 10 >= expected * 7,
        "live scans {scans} of {expected}"
    );
    assert_eq!(after.failures, 0, "the live slave never failed: {after:?}");
    assert!(
        dead_stats.failures >= 2 && dead_stats.scans == 0,
        "{dead_stats:?}"
    );
    // Once offline the dead slave is only probed at its backoff times, not every scan.
    assert!(
        dead_stats.requests < expected,
        "dead probes {} vs {expected} scans",
        dead_stats.requests
    );
    while let Ok(e) = events.try_recv() {
        assert_ne!(
            e.device(),
            dead,
            "the dead slave never reports online: {e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_over_tcp_reads_and_writes() {
    let plant = plant_with_unit_1();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio_modbus::server::rtu_over_tcp::Server::new(listener);
    let service_plant = Arc::clone(&plant);
    let server_task = tokio::spawn(async move {
        let on_connected = |stream, _addr| {
            let service = PlantService::new(Arc::clone(&service_plant));
            async move { Ok(Some((service, stream))) }
        };
        server.serve(&on_connected, |_err| {}).await
    });
    let modbus = Modbus {
        scan_classes: vec![ScanClass::new("fast", 100.0)],
        buses: vec![Bus {
            name: "gateway".to_owned(),
            transport: "rtu_over_tcp".to_owned(),
            host: Some("127.0.0.1".to_owned()),
            port: Some(port),
            ..Bus::default()
        }],
        devices: vec![on_bus("meter", "gateway", 1)],
        ..Modbus::default()
    };
    let (acq, mut events) = Acquisition::start(site(&modbus.to_toml()), Default::default());
    let h = acq.handle();
    let online = wait_online(&mut events).await;
    let count = h.tag_id("meter", "count").unwrap();
    let s = online.samples.iter().find(|s| s.tag == count).unwrap();
    assert_eq!(s.value, Value::U16(4242));
    h.write(count, Value::U16(9)).await.unwrap();
    assert_eq!(plant.bank(1).unwrap().holding_register(2).unwrap(), 9);
    acq.shutdown().await;
    server_task.abort();
}
