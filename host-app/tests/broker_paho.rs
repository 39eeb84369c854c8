//! The Eclipse Paho MQTT interoperability suites (MQTT 3.1.1 and 5) against the embedded
//! broker, with access rules that refuse subscribing to `test/nosubscribe`, and against
//! Mosquitto in the same run: every test Mosquitto passes must pass here too, but for
//! the known gaps listed below.
//!
//! The suites are a peer's code, kept outside the repository: `../shared/paho-mqtt-testing`
//! next to the workspace, or the directory `PAHO_MQTT_TESTING` names. A gap the suites
//! found is kept as a raw-socket test of our own too (Topic Alias 0).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use host_app::broker::{EmbeddedBroker, EmbeddedConfig};
use system_tests::Mosquitto;

/// Tests Mosquitto may pass and the embedded broker does not, each for a reason named
/// in the `host_app::broker` docs (none today).
const KNOWN_GAPS: &[&str] = &[];

/// Tests whose own timing races, on any broker that serves connections in parallel: each
/// may be run alone up to [`RACY_TRIES`] times. `test_request_response` publishes the
/// request after waiting for the requester's SUBACK (a second time) instead of the
/// responder's, and MQTT orders nothing across connections: under load the responder's
/// SUBSCRIBE is often applied after the request was routed. Measured on the embedded
/// broker with three busy processes beside it: 7 of 30 runs pass as the suite has it, 30
/// of 30 once it waits for the responder's SUBACK (Mosquitto serves all connections on
/// one thread, in the order their bytes arrive, so it does not race).
const RACY: &[&str] = &["test_request_response"];
const RACY_TRIES: usize = 3;

/// Seconds one test of a suite may take before it counts as failed.
const PER_TEST_TIMEOUT_S: &str = "20";

/// Anonymous clients may do anything but subscribe to `test/nosubscribe`, as the suites
/// expect of a broker's ACL; `$TopicA/#` is granted by name (`#` matches no topic that
/// begins with `$`) for the test that checks wildcards do not match such topics.
fn config() -> EmbeddedConfig {
    let mut config = host_app_testkit::broker::config();
    if let Some(anonymous) = config.anonymous.as_mut() {
        anonymous.publish = Some(vec!["#".to_owned(), "$TopicA/#".to_owned()]);
        anonymous.deny = Some(vec!["test/nosubscribe".to_owned()]);
    }
    config
}

fn suites_dir() -> PathBuf {
    let dir = std::env::var_os("PAHO_MQTT_TESTING")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            system_tests::workspace_root()
                .join("..")
                .join("shared")
                .join("paho-mqtt-testing")
        });
    assert!(
        dir.join("run_suite.py").exists(),
        "the Paho suites are missing at {} (set PAHO_MQTT_TESTING)",
        dir.display()
    );
    dir
}

/// Runs one suite (`3` or `5`) against `port`; the names of the tests that passed, and
/// how many tests ran. Failures are printed.
/// `only`: run just these tests (empty: all).
fn run_suite(
    dir: &Path,
    suite: &str,
    port: u16,
    out: &Path,
    only: &[&str],
) -> (BTreeSet<String>, usize) {
    let json = out.join(format!("suite{suite}-{port}.json"));
    let status = Command::new(system_tests::python())
        .arg(dir.join("run_suite.py"))
        .args([suite, "127.0.0.1", &port.to_string()])
        .arg(&json)
        .arg(PER_TEST_TIMEOUT_S)
        .arg(only.join(","))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("python runs");
    assert!(status.success(), "suite {suite} on port {port}: {status:?}");
    let text = std::fs::read_to_string(&json).expect("suite results");
    let record: serde_json::Value = serde_json::from_str(&text).expect("suite results JSON");
    let results = record["results"].as_object().expect("results");
    for (name, result) in results.iter().filter(|(_, r)| r["outcome"] != "pass") {
        eprintln!(
            "suite {suite} port {port}: {name} {}: {}",
            result["outcome"],
            result["detail"].as_str().unwrap_or_default()
        );
    }
    let passed = results
        .iter()
        .filter(|(_, r)| r["outcome"] == "pass")
        .map(|(name, _)| name.clone())
        .collect();
    (passed, results.len())
}

/// Both suites against one broker, one after the other (they share client ids).
fn run_both(dir: &Path, port: u16, out: &Path) -> [(BTreeSet<String>, usize); 2] {
    [
        run_suite(dir, "3", port, out, &[]),
        run_suite(dir, "5", port, out, &[]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_suites_pass_every_test_mosquitto_passes() {
    let dir = suites_dir();
    let out = tempfile::tempdir().unwrap();
    let broker = EmbeddedBroker::start(&config()).await.unwrap();
    let ours = broker.plain_addr().unwrap().port();
    let mosquitto = Mosquitto::start();

    // The two brokers run their suites side by side: the suites mostly wait.
    let (theirs, mine) = {
        let (dir_a, out_a) = (dir.clone(), out.path().to_owned());
        let port = mosquitto.port();
        let theirs = tokio::task::spawn_blocking(move || run_both(&dir_a, port, &out_a));
        let (dir_b, out_b) = (dir.clone(), out.path().to_owned());
        let mine = tokio::task::spawn_blocking(move || run_both(&dir_b, ours, &out_b));
        (theirs.await.unwrap(), mine.await.unwrap())
    };
    for (suite, ((mosquitto_passed, total), (our_passed, _))) in [("3", "3.1.1"), ("5", "5")]
        .iter()
        .zip(theirs.iter().zip(mine.iter()))
    {
        let (suite_arg, suite) = *suite;
        eprintln!(
            "Paho MQTT {suite}: Mosquitto {}/{total}, embedded broker {}/{total}",
            mosquitto_passed.len(),
            our_passed.len()
        );
        let mut missing = Vec::new();
        for name in mosquitto_passed
            .difference(our_passed)
            .filter(|name| !KNOWN_GAPS.contains(&name.as_str()))
        {
            // The suites share two clients across tests, so a failure can be a leftover
            // of an earlier one: such a test is run again alone on a fresh broker.
            let tries = if RACY.contains(&name.as_str()) {
                RACY_TRIES
            } else {
                1
            };
            let mut passed = BTreeSet::new();
            for _ in 0..tries {
                let fresh = EmbeddedBroker::start(&config()).await.unwrap();
                let port = fresh.plain_addr().unwrap().port();
                let (dir, out, only) = (dir.clone(), out.path().to_owned(), name.clone());
                passed = tokio::task::spawn_blocking(move || {
                    run_suite(&dir, suite_arg, port, &out, &[only.as_str()]).0
                })
                .await
                .unwrap();
                fresh.stop().await;
                if passed.contains(name) {
                    break;
                }
            }
            if passed.contains(name) {
                eprintln!("MQTT {suite}: {name} passes alone on a fresh broker");
            } else {
                missing.push(name.clone());
            }
        }
        assert!(
            missing.is_empty(),
            "MQTT {suite}: passed by Mosquitto, not by the embedded broker: {missing:?}"
        );
    }
    // The policy's refusal is what test_subscribe_failure checks. The MQTT 5 suite wants
    // reason 0x80 where an ACL refusal is 0x87 "not authorized" (Mosquitto's too).
    assert!(
        mine[0].0.contains("test_subscribe_failure"),
        "MQTT 3.1.1: test_subscribe_failure"
    );
    broker.stop().await;
}

/// An MQTT 5 CONNECT (clean start, keep-alive 30 s, no properties).
fn connect_v5(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30, 0];
    body.extend((client_id.len() as u16).to_be_bytes());
    body.extend(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// An MQTT 5 QoS 0 PUBLISH with a Topic Alias property.
fn publish_v5_with_alias(topic: &str, alias: u16) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend(topic.as_bytes());
    body.extend([3, 0x23]);
    body.extend(alias.to_be_bytes());
    body.extend(b"aliased");
    let mut packet = vec![0x30, body.len() as u8];
    packet.extend(body);
    packet
}

/// A PUBLISH with Topic Alias 0 (MQTT-3.3.2-8), or one above the Topic Alias Maximum the
/// broker announced (64; MQTT-3.3.2-9), is answered with DISCONNECT 0x94 "Topic Alias
/// invalid" before the connection closes, as Mosquitto does; an empty topic with an alias
/// the connection never set, with 0x82 "Protocol Error".
#[tokio::test]
async fn an_invalid_topic_alias_gets_disconnect_0x94() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = host_app_testkit::broker::start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    for (topic, alias, reason) in [
        ("test/alias", 0, 0x94),
        ("test/alias", u16::MAX, 0x94),
        ("", 1, 0x82),
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(&connect_v5("alias-client")).await.unwrap();
        let (first, connack) = host_app_testkit::broker::read_packet(&mut stream).await;
        assert_eq!((first, connack[1]), (0x20, 0), "CONNACK accepted");
        stream
            .write_all(&publish_v5_with_alias(topic, alias))
            .await
            .unwrap();
        let (first, disconnect) = host_app_testkit::broker::read_packet(&mut stream).await;
        assert_eq!(first, 0xe0, "DISCONNECT for alias {alias}");
        assert_eq!(
            disconnect.first(),
            Some(&reason),
            "reason code for alias {alias}"
        );
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(
            host_app_testkit::broker::WAIT,
            stream.read_to_end(&mut rest),
        )
        .await
        .expect("the connection closes after the DISCONNECT");
        assert!(
            closed.is_ok() && rest.is_empty(),
            "nothing follows the DISCONNECT"
        );
    }
    broker.stop().await;
}
