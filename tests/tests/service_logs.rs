//! The host's log against forged input, with the real binary: MQTT clients put newlines
//! in their client id, username and topic, through the embedded broker's front and its
//! engine, and every log line the host writes is still one event: no line starts with
//! the forged text, and the forged text shows escaped inside its event. With `[log]
//! format = "json"` every line is a JSON object and the strings come back whole. The
//! refused password is in no line.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;

use system_tests::config::host::Log;
use system_tests::process::{Proc, bin};
use system_tests::stack::{Broker, WAIT, host_config};
use system_tests::{config, free_port};

/// What a forger would like the log to show as a line of its own.
const FORGED: &str = "ERROR forged: the plant is on fire";
/// The password of the refused login, which must never reach the log.
const PASSWORD: &str = "pw-never-logged-4242";

/// An MQTT string: length then UTF-8.
fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u16::try_from(s.len()).expect("short").to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A packet: its first byte, then the remaining length (variable length integer).
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// An MQTT 3.1.1 CONNECT, with a username and password when given.
fn connect(client_id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.push(4);
    body.push(0x02 | if login.is_some() { 0xC0 } else { 0 });
    body.extend_from_slice(&30u16.to_be_bytes());
    string(&mut body, client_id);
    if let Some((user, password)) = login {
        string(&mut body, user);
        string(&mut body, password);
    }
    packet(0x10, &body)
}

/// Sends `packets` on a new connection and reads until the broker closes it or is quiet.
fn session(port: u16, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the broker");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .expect("read timeout");
    for p in packets {
        stream.write_all(p).expect("send");
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    // Bounded: at most 8 reads of at most a second each.
    for _ in 0..8 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

/// Starts the host, forges through its broker, stops it; returns every line it wrote.
fn forge(format: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_port = free_port();
    let mut host_cfg = host_config(
        dir.path(),
        Broker::Embedded { port: broker_port },
        free_port(),
    );
    host_cfg.log = format.map(|f| Log {
        format: f.to_owned(),
    });
    let host_toml = config::write(&host_cfg, dir.path(), "host-app.toml");
    let mut cmd = Command::new(bin("host-app"));
    cmd.arg("run")
        .arg("--config")
        .arg(&host_toml)
        .env("NO_COLOR", "1")
        .env_remove("LOG_FORMAT")
        .env_remove("JOURNAL_STREAM");
    let mut host = Proc::spawn("host-app", cmd);
    host.wait_for_line(WAIT, |l| l.starts_with("host-app: running as"));

    // The front refuses the login and logs the client id and username.
    let refused = session(
        broker_port,
        &[connect(
            &format!("edge\n{FORGED}"),
            Some((&format!("nobody\r\n{FORGED}"), PASSWORD)),
        )],
    );
    assert_eq!(refused.first(), Some(&0x20), "a CONNACK: {refused:?}");
    assert_ne!(
        refused.get(3),
        Some(&0),
        "the login is refused: {refused:?}"
    );
    host.wait_for_line(WAIT, |l| l.contains("CONNECT refused"));

    // An anonymous reader may not publish: the engine logs the refused topic.
    let mut publish = Vec::new();
    string(&mut publish, &format!("spBv1.0/g/NDATA/n\n{FORGED}"));
    publish.extend_from_slice(b"payload");
    let answered = session(
        broker_port,
        &[connect("reader-1", None), packet(0x30, &publish)],
    );
    assert_eq!(
        answered.get(..4),
        Some(&[0x20, 2, 0, 0][..]),
        "anonymous CONNACK accepted"
    );
    host.wait_for_line(WAIT, |l| l.contains("publish refused"));

    host.signal("TERM");
    assert!(host.wait_exit(WAIT).expect("host exits").success());
    let lines = host.output().to_vec();
    assert!(
        !lines.iter().any(|l| l.contains(PASSWORD)),
        "a password in the log: {lines:#?}"
    );
    lines
}

#[test]
fn newlines_in_client_ids_usernames_and_topics_cannot_forge_a_log_line() {
    let lines = forge(None);
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(FORGED) || l.starts_with("nobody")),
        "a forged line: {lines:#?}"
    );
    let shown: Vec<&String> = lines.iter().filter(|l| l.contains(FORGED)).collect();
    // The refused CONNECT (client id and username) and the refused PUBLISH (topic).
    assert!(
        shown
            .iter()
            .any(|l| l.contains("CONNECT refused") && l.contains(r"edge\nERROR forged")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|l| l.contains(r#"username=Some("nobody\r\nERROR forged"#)),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|l| l.contains("publish refused") && l.contains(r"NDATA/n\nERROR forged")),
        "{shown:#?}"
    );
}

#[test]
fn with_log_format_json_every_line_is_an_object_holding_the_forged_strings_whole() {
    let lines = forge(Some("json"));
    let events: Vec<serde_json::Value> = lines
        .iter()
        // The one line on stdout, for the operator, is not a log event.
        .filter(|l| !l.starts_with("host-app: running as"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in {lines:#?}")))
        .collect();
    let refused = events
        .iter()
        .find(|e| e["fields"]["message"] == "CONNECT refused")
        .unwrap_or_else(|| panic!("no CONNECT refused in {events:#?}"));
    let client_id = refused["fields"]["client_id"].as_str().expect("client_id");
    assert!(client_id.contains(&format!("edge\\n{FORGED}")), "{refused}");
    let published = events
        .iter()
        .find(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("publish refused"))
        })
        .unwrap_or_else(|| panic!("no publish refused in {events:#?}"));
    let topic = published["fields"]["topic"].as_str().expect("topic");
    assert!(
        topic.contains(&format!("NDATA/n\\n{FORGED}")),
        "{published}"
    );
}
