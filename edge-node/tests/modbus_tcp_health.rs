//! Planner and device health over Modbus TCP against the plant simulator: request counts,
//! bad-tag isolation, dead and slow devices beside a healthy one, reconnects.

use std::sync::Arc;
use std::time::Duration;

use edge_node::modbus::{Acquisition, Event, Quality, Site, Value, WriteError};
use edge_node::simulator::{
    BankSizes, ExceptionRule, Plant, PlantServer, Table as SimTable, UnknownUnitReply,
};
use edge_node_testkit::modbus::{site, wait_for, wait_online};
use system_tests::config::edge::{Device, Modbus, ScanClass, Tag};
use system_tests::free_port;
use tokio_modbus::ExceptionCode;

async fn server(unit: u8) -> PlantServer {
    let mut plant = Plant::new();
    plant.add_unit(unit, BankSizes::uniform(2000)).unwrap();
    PlantServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(plant))
        .await
        .unwrap()
}

/// Unit 1 at `127.0.0.1:port`.
fn device(name: &str, port: u16) -> Device {
    Device::tcp(name, port, 1)
}

/// A holding-register tag.
fn tag(name: &str, address: u32, ty: &str) -> Tag {
    Tag::new(name, "holding", address, ty)
}

/// The site of `devices`, scanned every 50 ms.
fn fast(devices: Vec<Device>) -> Site {
    scanned(ScanClass::new("fast", 50.0), devices)
}

fn scanned(scan_class: ScanClass, devices: Vec<Device>) -> Site {
    let modbus = Modbus {
        scan_classes: vec![scan_class],
        devices,
        ..Modbus::default()
    };
    site(&modbus.to_toml())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planner_reads_300_registers_in_3_requests() {
    let srv = server(1).await;
    let mut d = device("d", srv.local_addr().port());
    // 150 u16 then 75 f32: 300 contiguous registers -> 125 + 125 + 50.
    for i in 0..150 {
        d = d.tag(tag(&format!("u{i}"), i, "u16"));
    }
    for i in 0..75 {
        d = d.tag(tag(&format!("f{i}"), 150 + 2 * i, "f32"));
    }
    let (acq, mut events) = Acquisition::start(fast(vec![d]), Default::default());
    let h = acq.handle();
    let d = h.device_id("d").unwrap();
    let online = wait_online(&mut events).await;
    assert_eq!(online.samples.len(), 225);
    assert_eq!(h.stats(d).requests, 3, "one full scan is three requests");
    // Let it scan a while; every scan costs exactly three requests.
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if h.stats(d).scans >= 6 {
            break;
        }
    }
    acq.shutdown().await;
    let stats = h.stats(d);
    assert!(stats.scans >= 6, "{stats:?}");
    assert_eq!(stats.requests, 3 * stats.scans, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn illegal_address_isolates_the_bad_tag_and_the_split_is_kept() {
    let srv = server(1).await;
    let bank = Arc::clone(srv.bank(1).unwrap());
    for i in 0..8u16 {
        bank.set_holding_register(i, 100 + i).unwrap();
    }
    bank.mark_invalid(SimTable::HoldingRegisters, 5, 1);
    let mut d = device("d", srv.local_addr().port());
    for i in 0..8 {
        d = d.tag(tag(&format!("r{i}"), i, "u16"));
    }
    let (acq, mut events) = Acquisition::start(fast(vec![d]), Default::default());
    let h = acq.handle();
    let d = h.device_id("d").unwrap();
    let online = wait_online(&mut events).await;
    for i in 0..8u16 {
        let id = h.tag_id("d", &format!("r{i}")).unwrap();
        let s = online.samples.iter().find(|s| s.tag == id).unwrap();
        if i == 5 {
            assert_eq!(s.quality, Quality::Bad, "the wrong tag is BAD");
        } else {
            assert_eq!(
                (s.quality, &s.value),
                (Quality::Good, &Value::U16(100 + i)),
                "r{i}"
            );
        }
    }
    // First scan: 0-7 refused, 0-3 ok, 4-7 refused, 4-5 refused, 4 ok, 5 refused, 6-7 ok.
    let first = h.stats(d);
    assert_eq!((first.requests, first.splits), (7, 3), "{first:?}");
    // The plan keeps the split: 0-3, 4, 5, 6-7 = four requests per scan from now on.
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if h.stats(d).scans >= first.scans + 5 {
            break;
        }
    }
    acq.shutdown().await;
    let now = h.stats(d);
    assert!(now.scans >= first.scans + 5, "{now:?}");
    assert_eq!(
        now.requests - first.requests,
        4 * (now.scans - first.scans),
        "{now:?}"
    );
    assert_eq!(now.splits, 3, "no further splitting");
}

/// An exception answer makes a block's tags BAD; once the device answers again, the tags
/// are reported GOOD even though their registers never changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_refused_then_answered_unchanged_are_good_again() {
    let srv = server(1).await;
    let bank = Arc::clone(srv.bank(1).unwrap());
    for i in 0..3u16 {
        bank.set_holding_register(i, 7 + i).unwrap();
    }
    let mut d = device("d", srv.local_addr().port());
    for i in 0..3 {
        d = d.tag(tag(&format!("r{i}"), i, "u16"));
    }
    let (acq, mut events) = Acquisition::start(fast(vec![d]), Default::default());
    let h = acq.handle();
    let d = h.device_id("d").unwrap();
    wait_for(&mut events, |e| matches!(e, Event::Online(_)).then_some(())).await;
    // Several scans of the same answer: nothing to report.
    let scans = h.stats(d).scans;
    for _ in 0..300 {
        if h.stats(d).scans >= scans + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    srv.plant()
        .add_exception(
            1,
            ExceptionRule {
                function: None,
                start: 0,
                count: 3,
                code: ExceptionCode::ServerDeviceFailure,
            },
        )
        .unwrap();
    let bad = wait_for(&mut events, |e| match e {
        Event::Data(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!(bad.samples.len(), 3, "{bad:?}");
    assert!(
        bad.samples.iter().all(|s| s.quality == Quality::Bad),
        "{bad:?}"
    );
    srv.plant().clear_unit_faults(1).unwrap();
    let good = wait_for(&mut events, |e| match e {
        Event::Data(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    acq.shutdown().await;
    let mut seen: Vec<(Quality, Value)> = good
        .samples
        .iter()
        .map(|s| (s.quality, s.value.clone()))
        .collect();
    seen.sort_by_key(|(_, v)| v.as_f64().map(|f| f as i64));
    assert_eq!(
        seen,
        (0..3u16)
            .map(|i| (Quality::Good, Value::U16(7 + i)))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_slow_devices_do_not_delay_a_healthy_one() {
    let healthy = server(1).await;
    let slow = server(1).await;
    slow.plant()
        .set_response_delay(1, Duration::from_millis(400))
        .unwrap();
    let dead_silent = server(1).await;
    dead_silent.plant().set_silent(1, true).unwrap();
    let refused_port = free_port();

    let timed = |name: &str, port| {
        device(name, port)
            .timing(200, 2, (100, 400))
            .tag(tag("v", 0, "u32"))
    };
    let slow = Device {
        timeout_ms: Some(1000),
        ..device("slow", slow.local_addr().port()).tag(tag("v", 0, "u32"))
    };
    let devices = vec![
        timed("healthy", healthy.local_addr().port()),
        slow,
        timed("silent", dead_silent.local_addr().port()),
        timed("refused", refused_port),
    ];

    let (acq, mut events) = Acquisition::start(fast(devices), Default::default());
    let h = acq.handle();
    let hid = h.device_id("healthy").unwrap();
    let healthy_bank = Arc::clone(healthy.bank(1).unwrap());
    // Change the healthy value every few ms and count the data reports it produces.
    let started = tokio::time::Instant::now();
    let run = Duration::from_millis(1500);
    let mut counter = 0u32;
    let mut healthy_reports = 0u32;
    while started.elapsed() < run {
        counter += 1;
        healthy_bank
            .write_words(
                SimTable::HoldingRegisters,
                0,
                &[0, (counter % 60000) as u16],
            )
            .unwrap();
        if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(5), events.recv()).await
            && event.device() == hid
            && let Event::Data(r) | Event::Online(r) = &event
        {
            healthy_reports += 1;
            assert_eq!(r.samples[0].quality, Quality::Good);
        }
    }
    let elapsed = started.elapsed();
    let stats = h.stats(hid);
    let expected = (elapsed.as_millis() / 50) as u64;
    acq.shutdown().await;
    // The healthy device kept its 50 ms scan: at least 70% of the scans the period allows
    // in the time this test measured, and its samples changed in most of them. (The margin
    // is for a loaded machine; waiting on the others' 200 ms timeouts or 400 ms answers
    // would leave it a fraction of that.)
    assert!(
        stats.scans * 10 >= expected * 7,
        "healthy scans {} of {expected}: {stats:?}",
        stats.scans
    );
    assert!(
        u64::from(healthy_reports) * 10 >= expected * 5,
        "reports {healthy_reports} of {expected}"
    );
    let slow_stats = h.stats(h.device_id("slow").unwrap());
    assert!(
        slow_stats.scans >= 1,
        "the slow device answers, slowly: {slow_stats:?}"
    );
    assert!(h.stats(h.device_id("silent").unwrap()).failures >= 1);
    assert!(h.stats(h.device_id("refused").unwrap()).failures >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_restarts() {
    let srv = server(1).await;
    let bank = Arc::clone(srv.bank(1).unwrap());
    bank.set_holding_register(0, 1).unwrap();
    let d = device("d", srv.local_addr().port())
        .timing(200, 1, (50, 200))
        .tag(tag("v", 0, "u16"));
    let (acq, mut events) = Acquisition::start(fast(vec![d]), Default::default());
    let h = acq.handle();
    let d = h.device_id("d").unwrap();
    wait_for(&mut events, |e| matches!(e, Event::Online(_)).then_some(())).await;
    // A snapshot (for a rebirth) has every tag, without a request.
    let requests = h.stats(d).requests;
    let (online, snap) = h.snapshot(d).await.unwrap();
    assert!(online);
    assert_eq!(
        (snap.samples[0].quality, &snap.samples[0].value),
        (Quality::Good, &Value::U16(1))
    );
    assert!(
        h.stats(d).requests <= requests + 1,
        "at most a scan's request in between"
    );
    srv.stop_listening().await;
    let offline = wait_for(&mut events, |e| match e {
        Event::Offline { report, .. } => Some(report.clone()),
        _ => None,
    })
    .await;
    assert!(offline.samples.iter().all(|s| s.quality == Quality::Stale));
    let (online, snap) = h.snapshot(d).await.unwrap();
    assert!(!online);
    assert_eq!(snap.samples[0].quality, Quality::Stale);
    assert_eq!(
        offline.samples[0].value,
        Value::U16(1),
        "stale keeps the last good value"
    );
    bank.set_holding_register(0, 2).unwrap();
    srv.start_listening().await.unwrap();
    let back = wait_online(&mut events).await;
    assert_eq!(
        (back.samples[0].quality, &back.samples[0].value),
        (Quality::Good, &Value::U16(2))
    );
    acq.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_down_at_start_up_comes_online_later() {
    let port = free_port();
    let late = Device {
        timeout_ms: Some(200),
        reconnect_min_ms: Some(50),
        reconnect_max_ms: Some(100),
        ..device("late", port).tag(tag("v", 0, "u16"))
    };
    let (acq, mut events) = Acquisition::start(fast(vec![late]), Default::default());
    let h = acq.handle();
    let id = h.device_id("late").unwrap();
    // Let it fail a few retries first.
    for _ in 0..200 {
        if h.stats(id).failures >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.stats(id).failures >= 3);
    assert!(
        events.try_recv().is_err(),
        "nothing reported for a device never seen"
    );
    let mut plant = Plant::new();
    plant.add_unit(1, BankSizes::uniform(10)).unwrap();
    plant.bank(1).unwrap().set_holding_register(0, 77).unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let srv = PlantServer::start(addr, Arc::new(plant)).await.unwrap();
    let online = wait_online(&mut events).await;
    assert_eq!(online.samples[0].value, Value::U16(77));
    acq.shutdown().await;
    srv.shutdown().await;
}

/// The scan after a device comes online is one period after the probe, not two: the
/// probe's full scan keeps every class on its grid without skipping a tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_after_coming_online_is_one_period_later() {
    const PERIOD_MS: u64 = 400;
    let srv = server(1).await;
    let d = device("d", srv.local_addr().port()).tag(tag("v", 0, "u16"));
    let slow_site = scanned(ScanClass::new("slow", PERIOD_MS as f64), vec![d]);
    // The value changes faster than the scan, so every scan reports.
    let bank = Arc::clone(srv.bank(1).unwrap());
    let ticker = tokio::spawn(async move {
        for i in 1..=1_000u16 {
            bank.set_holding_register(0, i).unwrap();
            tokio::time::sleep(Duration::from_millis(PERIOD_MS / 8)).await;
        }
    });
    let (acq, mut events) = Acquisition::start(slow_site, Default::default());
    let mut stamps = Vec::new();
    while stamps.len() < 3 {
        let stamp = wait_for(&mut events, |e| match e {
            Event::Online(r) | Event::Data(r) => Some(r.samples[0].timestamp),
            _ => None,
        })
        .await;
        stamps.push(stamp);
    }
    acq.shutdown().await;
    ticker.abort();
    for pair in stamps.windows(2) {
        let step = pair[1].duration_since(pair[0]).unwrap();
        assert!(
            step < Duration::from_millis(PERIOD_MS * 3 / 2),
            "scans {step:?} apart, the period is {PERIOD_MS} ms: {stamps:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadband_filters_small_moves_and_errors_name_the_request() {
    let srv = server(1).await;
    let bank = Arc::clone(srv.bank(1).unwrap());
    bank.set_holding_register(0, 100).unwrap();
    bank.mark_invalid(SimTable::HoldingRegisters, 50, 1);
    let level = Tag {
        deadband: Some(5.0),
        ..tag("level", 0, "u16")
    };
    let d = device("d", srv.local_addr().port())
        .timing(200, 1, (50, 100))
        .tag(level)
        .tag(tag("bad", 50, "u16").writable());
    let (acq, mut events) = Acquisition::start(fast(vec![d]), Default::default());
    let h = acq.handle();
    let level = h.tag_id("d", "level").unwrap();
    let d = h.device_id("d").unwrap();
    wait_for(&mut events, |e| matches!(e, Event::Online(_)).then_some(())).await;

    // +3 is inside the deadband: several scans pass without a report of `level`.
    bank.set_holding_register(0, 103).unwrap();
    let scans = h.stats(d).scans;
    for _ in 0..300 {
        if h.stats(d).scans >= scans + 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(h.stats(d).scans >= scans + 4);
    while let Ok(e) = events.try_recv() {
        if let Event::Data(r) = e {
            assert!(
                r.samples.iter().all(|s| s.tag != level),
                "reported inside the deadband: {r:?}"
            );
        }
    }
    // +8 from the last report leaves it.
    bank.set_holding_register(0, 108).unwrap();
    let v = wait_for(&mut events, |e| match e {
        Event::Data(r) => r
            .samples
            .iter()
            .find(|s| s.tag == level)
            .map(|s| s.value.clone()),
        _ => None,
    })
    .await;
    assert_eq!(v, Value::U16(108));

    // An exception answer becomes an error naming device, unit, function and address.
    let e = h
        .write(h.tag_id("d", "bad").unwrap(), Value::U16(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("device `d` unit 1 function 06 address 50") && e.contains("exception 02"),
        "{e}"
    );
    // Writes to an offline device are refused, not queued.
    srv.stop_listening().await;
    wait_for(&mut events, |e| {
        matches!(e, Event::Offline { .. }).then_some(())
    })
    .await;
    let e = h
        .write(h.tag_id("d", "bad").unwrap(), Value::U16(1))
        .await
        .unwrap_err();
    assert!(matches!(e, WriteError::Offline { .. }), "{e}");
    acq.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_exception_for_a_missing_unit_counts_as_unreachable() {
    let srv = server(1).await;
    srv.plant()
        .set_unknown_unit_reply(UnknownUnitReply::GatewayTargetDevice);
    let missing = Device {
        reconnect_min_ms: Some(50),
        reconnect_max_ms: Some(100),
        ..Device::tcp("missing", srv.local_addr().port(), 9).tag(tag("v", 0, "u16"))
    };
    let present = device("present", srv.local_addr().port()).tag(tag("v", 0, "u16"));
    let (acq, mut events) = Acquisition::start(fast(vec![missing, present]), Default::default());
    let h = acq.handle();
    let present = h.device_id("present").unwrap();
    let online = wait_for(&mut events, |e| match e {
        Event::Online(r) => Some(r.device),
        _ => None,
    })
    .await;
    assert_eq!(online, present, "only the unit that exists comes online");
    let missing = h.device_id("missing").unwrap();
    for _ in 0..200 {
        if h.stats(missing).exceptions >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = h.stats(missing);
    acq.shutdown().await;
    assert!(stats.exceptions >= 2 && stats.scans == 0, "{stats:?}");
    while let Ok(e) = events.try_recv() {
        assert_ne!(e.device(), missing, "{e:?}");
    }
}
