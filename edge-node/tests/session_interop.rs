//! An independent host (paho-mqtt + pysparkplug, tests/python/edge_node_host.py) on
//! Mosquitto records and decodes everything the edge node sends, and writes a tag.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;

use edge_node::EdgeNode;
use edge_node_testkit::session::*;
use serde_json::Value as Json;
use system_tests::Mosquitto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pysparkplug_host_decodes_births_data_and_death_and_its_write_lands() {
    let broker = Mosquitto::start();
    let plant = start_plant().await;
    plant.bank(1).unwrap().set_holding_register(0, 5).unwrap();
    let mut child = system_tests::python_command("edge_node_host.py")
        .args([&broker.port().to_string(), GROUP, NODE, "15"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(WAIT).expect("the host starts");
    assert_eq!(first, "ready");

    let node = EdgeNode::start(load(&boiler(&[broker.port()], plant.local_addr().port()))).unwrap();

    let mut seen: Vec<Json> = Vec::new();
    let written = loop {
        let line = lines.recv_timeout(WAIT).expect("a message from the host");
        let json: Json = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let done = json["type"] == "DDATA"
            && json["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "setpoint" && m["value"] == 321);
        seen.push(json);
        if done {
            break seen.last().cloned().unwrap();
        }
    };
    node.shutdown().await.unwrap();
    loop {
        let line = lines.recv_timeout(WAIT).expect("NDEATH reaches the host");
        let json: Json = serde_json::from_str(&line).unwrap();
        let end = json["type"] == "NDEATH";
        seen.push(json);
        if end {
            break;
        }
    }
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;

    // Births first and in order, as pysparkplug reads them.
    assert_eq!(seen[0]["type"], "NBIRTH");
    assert_eq!(seen[0]["seq"], 0);
    let bd_seq = seen[0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "bdSeq")
        .expect("bdSeq in NBIRTH")
        .clone();
    assert_eq!(bd_seq["datatype"], "Int64");
    assert_eq!(seen[1]["type"], "DBIRTH");
    assert_eq!(seen[1]["seq"], 1);
    let setpoint = seen[1]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "setpoint")
        .unwrap()
        .clone();
    assert_eq!(setpoint["datatype"], "UInt16");
    assert_eq!(setpoint["value"], 5);
    // The DDATA resolved through the DBIRTH: the name and type came from the birth.
    let metric = written["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "setpoint")
        .unwrap()
        .clone();
    assert_eq!(metric["datatype"], "UInt16");
    assert_eq!(metric["alias"], setpoint["alias"]);
    assert!(metric["timestamp"].as_u64().is_some());
    // seq runs on without gaps from the NBIRTH to the last DATA.
    let seqs: Vec<u64> = seen
        .iter()
        .filter(|m| m["type"] != "NDEATH")
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], (pair[0] + 1) % 256, "{seqs:?}");
    }
    let death = seen.last().unwrap();
    assert_eq!(death["type"], "NDEATH");
    assert_eq!(death["qos"], 1);
    assert_eq!(death["seq"], Json::Null);
    assert_eq!(death["metrics"][0]["name"], "bdSeq");
    assert_eq!(death["metrics"][0]["value"], bd_seq["value"]);
    assert!(seen.iter().all(|m| m["retain"] == false));
    assert_eq!(plant.bank(1).unwrap().holding_register(0).unwrap(), 321);
    plant.shutdown().await;
}
