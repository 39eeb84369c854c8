//! `fleet-sim` behaves as a fleet of Sparkplug edge nodes: births with bdSeq, the Rebirth
//! metric and every tag by name and alias; NDATA by alias with seq following the birth;
//! a Rebirth on NCMD; on a lost server the next one, with the next bdSeq; a report of what
//! it sent when stopped.

use std::process::Command;
use std::time::Duration;

use sparkplug::{Metric, Payload};
use system_tests::Mosquitto;
use system_tests::mqtt::{Message, Recorder};
use system_tests::process::Proc;

fn tag_aliases(birth: &Payload) -> Vec<(String, u64)> {
    birth
        .metrics
        .iter()
        .filter(|m| m.name.as_deref().is_some_and(|n| n.starts_with("Tag/")))
        .map(|m| (m.name.clone().unwrap_or_default(), m.alias.unwrap_or(0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_fleet_births_publishes_rebirths_and_moves_server() {
    let mut first = Mosquitto::start();
    let second = Mosquitto::start();
    let mut on_first = Recorder::start(first.port(), "watch-1", "spBv1.0/#").await;
    let mut on_second = Recorder::start(second.port(), "watch-2", "spBv1.0/#").await;

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet-sim"));
    cmd.args(["--server", &format!("127.0.0.1:{}", first.port())])
        .args(["--server", &format!("127.0.0.1:{}", second.port())])
        .args(["--group", "PlantA", "--group", "PlantB"])
        .args(["--nodes", "2", "--tags", "3", "--rate-hz", "20"]);
    let mut sim = Proc::spawn("fleet-sim", cmd);

    // Node 0 (PlantA) starts on the first server, node 1 (PlantB) on the second.
    let birth = on_first.next_kind("NBIRTH").await;
    assert_eq!(birth.topic, "spBv1.0/PlantA/NBIRTH/sim0000");
    let payload = birth.sparkplug();
    assert_eq!((payload.seq, birth.bd_seq()), (Some(0), 0));
    assert!(payload.metric("Node Control/Rebirth").is_some());
    let expected = vec![
        ("Tag/0000".to_owned(), 1),
        ("Tag/0001".to_owned(), 2),
        ("Tag/0002".to_owned(), 3),
    ];
    assert_eq!(tag_aliases(&payload), expected);
    let other = on_second.next_kind("NBIRTH").await;
    assert_eq!(other.topic, "spBv1.0/PlantB/NBIRTH/sim0001");

    // NDATA: aliases only, seq 1, 2, ... after the birth.
    let data: Vec<Message> = {
        let mut out = Vec::new();
        for _ in 0..5 {
            out.push(on_first.next_kind("NDATA").await);
        }
        out
    };
    for (i, m) in data.iter().enumerate() {
        let p = m.sparkplug();
        assert_eq!(p.seq, Some(i as u64 + 1), "{}", m.topic);
        assert_eq!(p.metrics.len(), 3);
        assert!(
            p.metrics
                .iter()
                .all(|m| m.name.is_none() && m.alias.is_some())
        );
    }

    // A Rebirth asked by NCMD: a new NBIRTH, seq 0, same bdSeq.
    let ask = Payload::new(1).with_metric(Metric::new("Node Control/Rebirth", true));
    on_first
        .publish(
            "spBv1.0/PlantA/NCMD/sim0000",
            ask.encode_to_vec().unwrap(),
            false,
        )
        .await;
    let rebirth = on_first.next_kind("NBIRTH").await;
    assert_eq!((rebirth.seq(), rebirth.bd_seq()), (Some(0), 0));

    // The first server lost: node 0 moves to the second with the next bdSeq.
    first.kill();
    let moved = on_second
        .next_matching("node 0's NBIRTH on the second server", |m| {
            m.topic == "spBv1.0/PlantA/NBIRTH/sim0000"
        })
        .await;
    assert_eq!((moved.seq(), moved.bd_seq()), (Some(0), 1));
    on_second
        .next_matching("node 0's NDATA on the second server", |m| {
            m.topic == "spBv1.0/PlantA/NDATA/sim0000"
        })
        .await;

    sim.signal("TERM");
    let line = sim.wait_for_line(Duration::from_secs(10), |l| l.starts_with('{'));
    let report: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(report["connects"], 3, "{line}");
    assert_eq!(report["rebirths"], 1, "{line}");
    assert!(report["births"].as_u64().unwrap() >= 4, "{line}");
    assert!(report["ndata"].as_u64().unwrap() >= 6, "{line}");
    assert_eq!(
        report["samples"].as_u64().unwrap(),
        3 * report["ndata"].as_u64().unwrap(),
        "{line}"
    );
}
