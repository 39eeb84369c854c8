//! The Sparkplug session against rmqtt in process: births, data, the will, bdSeq
//! across reconnects, Rebirth without reconnect, commands.

use std::time::Duration;

use edge_node::EdgeNode;
use edge_node_testkit::session::*;
use rumqttc::QoS;
use sparkplug::{DataType, Metric, MetricValue, Payload, Quality, Value};
use system_tests::linksim::LinkSim;
use system_tests::mqtt::Recorder;
use system_tests::rmqtt;

async fn node_on(config: EdgeConfig) -> edge_node::NodeHandle {
    EdgeNode::start(load(&config)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_come_in_order_with_seq_bdseq_and_every_metric() {
    let broker = rmqtt::start();
    let plant = start_plant().await;
    plant.bank(1).unwrap().set_holding_register(0, 42).unwrap();
    plant
        .bank(1)
        .unwrap()
        .set_input_register(0, (-5i16) as u16)
        .unwrap();
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let node = node_on(boiler(&[broker], plant.local_addr().port())).await;

    let nbirth = host.next_kind("NBIRTH").await;
    assert_eq!(nbirth.topic, topic("NBIRTH", None));
    // QoS 0 on the wire is checked against Mosquitto: session_mosquitto.rs.
    assert!(!nbirth.retain);
    let p = nbirth.sparkplug();
    assert_eq!(p.seq, Some(0));
    assert!(p.timestamp.is_some());
    assert_eq!(nbirth.bd_seq(), 0);
    let bd = p.metric("bdSeq").unwrap();
    assert_eq!(bd.datatype, Some(DataType::Int64));
    let rebirth = p.metric("Node Control/Rebirth").unwrap();
    assert_eq!(rebirth.typed_value(), Some(&Value::Boolean(false)));
    assert_eq!(rebirth.alias, None);
    for name in [
        "Node Control/Next Server",
        "Node Control/Reboot",
        "Node Control/Scan Rate",
        "Properties/Software Version",
        "Properties/Hardware",
        "Link/Bytes Sent",
        "Link/Bytes Received",
        "Link/Messages Published",
        "Link/Reconnects",
        "Modbus/Poll Errors",
        "Store/Depth",
    ] {
        assert!(p.metric(name).is_some_and(|m| m.alias.is_some()), "{name}");
    }
    assert_eq!(
        p.metric("Node Control/Scan Rate").unwrap().typed_value(),
        Some(&Value::Int64(100))
    );

    // The DBIRTH follows, with seq 1, every tag, values, units.
    let dbirth = host.next().await;
    assert_eq!(dbirth.topic, topic("DBIRTH", Some(DEVICE)));
    let d = dbirth.sparkplug();
    assert_eq!(d.seq, Some(1));
    assert_eq!(d.metrics.len(), 3);
    let setpoint = d.metric("setpoint").unwrap();
    assert_eq!(setpoint.datatype, Some(DataType::UInt16));
    assert_eq!(setpoint.typed_value(), Some(&Value::UInt16(42)));
    let temp = d.metric("Process/temperature").unwrap();
    assert_eq!(temp.typed_value(), Some(&Value::Int16(-5)));
    assert_eq!(temp.properties.as_ref().unwrap().eng_unit(), Some("°C"));
    let mut aliases: Vec<u64> = d.metrics.iter().map(|m| m.alias.unwrap()).collect();
    aliases.extend(p.metrics.iter().filter_map(|m| m.alias));
    let n = aliases.len();
    aliases.sort();
    aliases.dedup();
    assert_eq!(aliases.len(), n, "aliases are unique across the node");

    // A change on the device arrives as DDATA by alias only, seq 2.
    plant.bank(1).unwrap().set_holding_register(0, 43).unwrap();
    let ddata = host.next_kind("DDATA").await;
    let dd = ddata.sparkplug();
    assert_eq!(dd.seq, Some(2));
    assert_eq!(dd.metrics.len(), 1);
    let m = &dd.metrics[0];
    assert_eq!(m.alias, Some(alias_in(&d, "setpoint")));
    assert_eq!(m.name, None);
    assert_eq!(m.datatype, None);
    assert!(m.timestamp.is_some());
    let mut typed = m.clone();
    typed.resolve(DataType::UInt16).unwrap();
    assert_eq!(typed.typed_value(), Some(&Value::UInt16(43)));

    node.shutdown().await.unwrap();
    // Clean shutdown: NDEATH published explicitly, same bdSeq, no seq.
    let ndeath = host.next_kind("NDEATH").await;
    assert_eq!(ndeath.bd_seq(), 0);
    assert_eq!(ndeath.seq(), None);
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_ndeath_at_qos1_with_the_births_bdseq_when_the_link_dies() {
    let broker = rmqtt::start();
    let link = LinkSim::start(([127, 0, 0, 1], broker).into())
        .await
        .unwrap();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let node = node_on(boiler(&[link.addr().port()], plant.local_addr().port())).await;

    let mut births = Vec::new();
    for round in 0..3u64 {
        let nbirth = host.next_kind("NBIRTH").await;
        assert_eq!(nbirth.bd_seq(), round, "bdSeq +1 per connect");
        births.push(nbirth);
        link.cut();
        let ndeath = host.next_kind("NDEATH").await;
        // The broker saw the link die: the node may connect again.
        link.restore();
        assert_eq!(ndeath.qos, QoS::AtLeastOnce, "the will is QoS 1");
        assert!(!ndeath.retain);
        assert_eq!(ndeath.bd_seq(), round, "the will matches its NBIRTH");
        let p = ndeath.sparkplug();
        assert_eq!(p.seq, None);
        assert_eq!(p.metrics.len(), 1);
        assert!(p.timestamp.is_some());
    }
    let fourth = host.next_kind("NBIRTH").await;
    assert_eq!(fourth.bd_seq(), 3);
    assert_eq!(
        fourth
            .sparkplug()
            .metric("Link/Reconnects")
            .unwrap()
            .typed_value(),
        Some(&Value::UInt64(3))
    );
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdseq_persists_across_restarts_and_wraps_255_to_0() {
    let broker = rmqtt::start();
    let plant = start_plant().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("bdseq");
    std::fs::write(&state, "254\n").unwrap();
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    for expected in [255u64, 0, 1] {
        let node = node_on(boiler(&[broker], plant.local_addr().port()).state_file(&state)).await;
        let nbirth = host.next_kind("NBIRTH").await;
        assert_eq!(nbirth.bd_seq(), expected);
        node.shutdown().await.unwrap();
        let ndeath = host.next_kind("NDEATH").await;
        assert_eq!(ndeath.bd_seq(), expected);
    }
    assert_eq!(std::fs::read_to_string(&state).unwrap().trim(), "1");
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebirth_republishes_with_the_same_bdseq_and_seq_from_0_without_reconnect() {
    let broker = rmqtt::start();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let mut config = direct_config(broker, &plant);
    // A fast scan so 260 DDATA take a moment.
    config.site.scan_classes[0].period = Duration::from_millis(5);
    let node = EdgeNode::start(config).unwrap();
    let first = host.next_kind("NBIRTH").await;
    host.next_kind("DBIRTH").await;

    // Wrap seq past 255 with data first.
    let bank = plant.bank(1).unwrap();
    let mut last_seq = 1;
    for v in 1..=260u16 {
        bank.set_holding_register(0, v).unwrap();
        let dd = host.next_kind("DDATA").await;
        let seq = dd.seq().unwrap();
        assert_eq!(seq, (last_seq + 1) % 256, "seq wraps 255 -> 0");
        last_seq = seq;
    }

    let rebirth = Payload::new(1).with_metric(Metric::new("Node Control/Rebirth", true));
    host.publish(
        &topic("NCMD", None),
        rebirth.encode_to_vec().unwrap(),
        false,
    )
    .await;
    let again = host.next_kind("NBIRTH").await;
    assert_eq!(again.seq(), Some(0));
    assert_eq!(again.bd_seq(), first.bd_seq(), "same bdSeq: no reconnect");
    let dbirth = host.next().await;
    assert_eq!(dbirth.kind(), "DBIRTH");
    assert_eq!(dbirth.seq(), Some(1));
    assert_eq!(
        again
            .sparkplug()
            .metric("Link/Reconnects")
            .unwrap()
            .typed_value(),
        Some(&Value::UInt64(0))
    );
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebirth_requests_inside_the_debounce_are_dropped() {
    let broker = rmqtt::start();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let node = {
        let mut config = direct_config(broker, &plant);
        config.sparkplug.rebirth_debounce = Duration::from_secs(3600);
        EdgeNode::start(config).unwrap()
    };
    host.next_kind("NBIRTH").await;
    let rebirth = Payload::new(1)
        .with_metric(Metric::new("Node Control/Rebirth", true))
        .encode_to_vec()
        .unwrap();
    for _ in 0..5 {
        host.publish(&topic("NCMD", None), rebirth.clone(), false)
            .await;
    }
    let seen = host.drain_for(Duration::from_millis(1500)).await;
    let nbirths = seen.iter().filter(|m| m.kind() == "NBIRTH").count();
    assert_eq!(nbirths, 0, "the birth itself starts the debounce window");
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcmd_writes_reach_the_register_and_come_back_in_ddata_refusals_do_not_stop_it() {
    let broker = rmqtt::start();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let node = node_on(boiler(&[broker], plant.local_addr().port())).await;
    let dbirth = host.next_kind("DBIRTH").await.sparkplug();
    let setpoint = alias_in(&dbirth, "setpoint");
    let temperature = alias_in(&dbirth, "Process/temperature");
    let dcmd = topic("DCMD", Some(DEVICE));

    // Refused: unknown alias, wrong datatype, read-only tag, garbage.
    let refused = Payload::new(1)
        .with_metric(Metric::aliased(9999, 1u16))
        .with_metric(Metric::aliased(setpoint, "text"))
        .with_metric(Metric::aliased(temperature, 7i16));
    host.publish(&dcmd, refused.encode_to_vec().unwrap(), false)
        .await;
    host.publish(&dcmd, vec![0xff, 0x01, 0x02], false).await;
    host.publish(&topic("NCMD", None), vec![0x0a, 0xff], false)
        .await;

    // Accepted, by alias alone (no name, no datatype, as a 3.0 host sends it): the
    // register changes and the value comes back.
    let write = Payload::new(1).with_metric(Metric::aliased(setpoint, 777u16).without_datatype());
    host.publish(&dcmd, write.encode_to_vec().unwrap(), false)
        .await;
    let back = host
        .next_matching("DDATA with 777", |m| {
            m.kind() == "DDATA"
                && m.sparkplug().metrics.iter().any(|x| {
                    x.alias == Some(setpoint)
                        && matches!(&x.value, MetricValue::Untyped(_) | MetricValue::Value(_))
                        && {
                            let mut t = x.clone();
                            t.resolve(DataType::UInt16).is_ok()
                                && t.typed_value() == Some(&Value::UInt16(777))
                        }
                })
        })
        .await;
    assert!(back.seq().is_some());
    assert_eq!(plant.bank(1).unwrap().holding_register(0).unwrap(), 777);
    assert_eq!(
        plant.bank(1).unwrap().input_register(0).unwrap(),
        0,
        "read-only untouched"
    );

    // By name, a coil.
    let write = Payload::new(1).with_metric(Metric::new("pump", true));
    host.publish(&dcmd, write.encode_to_vec().unwrap(), false)
        .await;
    host.next_matching("pump on", |m| {
        m.kind() == "DDATA"
            && m.sparkplug()
                .metrics
                .iter()
                .any(|x| x.alias == Some(alias_in(&dbirth, "pump")))
    })
    .await;
    assert!(plant.bank(1).unwrap().coil(0).unwrap());
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_gets_ddeath_and_a_fresh_dbirth_when_back() {
    let broker = rmqtt::start();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let node = node_on(boiler(&[broker], plant.local_addr().port())).await;
    host.next_kind("DBIRTH").await;
    plant.stop_listening().await;
    plant.drop_connections();
    let ddeath = host.next_kind("DDEATH").await;
    assert_eq!(ddeath.topic, topic("DDEATH", Some(DEVICE)));
    assert!(ddeath.seq().is_some());
    assert!(!ddeath.retain);
    assert!(ddeath.sparkplug().timestamp.is_some());
    plant.start_listening().await.unwrap();
    let dbirth = host.next_kind("DBIRTH").await;
    assert!(dbirth.seq().unwrap() > ddeath.seq().unwrap());
    let q = dbirth
        .sparkplug()
        .metric("setpoint")
        .unwrap()
        .properties
        .clone();
    assert!(q.is_none_or(|p| p.quality().unwrap() != Some(Quality::Bad)));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_metrics_are_trended_in_ndata_and_scan_rate_is_applied() {
    let broker = rmqtt::start();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let node = node_on(boiler(&[broker], plant.local_addr().port())).await;
    let nbirth = host.next_kind("NBIRTH").await.sparkplug();
    host.next_kind("DBIRTH").await;
    let scan_rate = alias_in(&nbirth, "Node Control/Scan Rate");
    let published = alias_in(&nbirth, "Link/Messages Published");

    let command = Payload::new(1).with_metric(Metric::new("Node Control/Scan Rate", 250i64));
    host.publish(
        &topic("NCMD", None),
        command.encode_to_vec().unwrap(),
        false,
    )
    .await;
    let ndata = host.next_kind("NDATA").await;
    assert!(!ndata.retain);
    assert!(ndata.seq().is_some());
    let p = ndata.sparkplug();
    let metric = p
        .metrics
        .iter()
        .find(|m| m.alias == Some(scan_rate))
        .expect("Scan Rate in NDATA");
    assert_eq!(metric.name, None);
    let mut typed = metric.clone();
    typed.resolve(DataType::Int64).unwrap();
    assert_eq!(typed.typed_value(), Some(&Value::Int64(250)));
    assert!(
        p.metrics.iter().any(|m| m.alias == Some(published)),
        "counters that moved are in the same NDATA"
    );
    // The acquisition restarted at the new rate: the device is born again.
    host.next_kind("DBIRTH").await;
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_restarts_the_mqtt_session_with_a_new_bdseq_and_traffic_is_counted() {
    let broker = rmqtt::start();
    let plant = start_plant().await;
    let mut host = Recorder::start(broker, "host", "spBv1.0/#").await;
    let node = node_on(boiler(&[broker], plant.local_addr().port())).await;
    let first = host.next_kind("NBIRTH").await;
    host.next_kind("DBIRTH").await;
    let reboot = Payload::new(1).with_metric(Metric::new("Node Control/Reboot", true));
    host.publish(&topic("NCMD", None), reboot.encode_to_vec().unwrap(), false)
        .await;
    let ndeath = host.next_kind("NDEATH").await;
    assert_eq!(ndeath.bd_seq(), first.bd_seq());
    let second = host.next_kind("NBIRTH").await;
    assert_eq!(second.bd_seq(), first.bd_seq() + 1);
    let p = second.sparkplug();
    let counter = |name: &str| match p.metric(name).and_then(|m| m.typed_value().cloned()) {
        Some(Value::UInt64(v)) => v,
        other => panic!("{name}: {other:?}"),
    };
    assert!(counter("Link/Bytes Sent") > 0);
    assert!(counter("Link/Bytes Received") > 0);
    assert!(
        counter("Link/Messages Published") >= 3,
        "NBIRTH, DBIRTH, NDEATH"
    );
    assert_eq!(counter("Link/Reconnects"), 1);
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}
