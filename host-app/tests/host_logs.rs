//! The `host-app` binary's log on stderr: under journald every line carries its `<N>`
//! priority, with `LOG_FORMAT=json` every line is a JSON object, and an MQTT client whose
//! client id and will topic hold a newline cannot forge a line in either.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use host_app_testkit::host::{WAIT, host_config};

const FORGED: &str = "forged line";

/// MQTT 3.1.1 CONNECT, clean session, with a will; built by hand because client
/// libraries refuse such an id.
fn connect_packet(client_id: &str, will_topic: &str) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
        out.extend_from_slice(s);
    }
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(0x02 | 0x04); // clean session, will flag (QoS 0, not retained)
    body.extend_from_slice(&30u16.to_be_bytes());
    string(&mut body, client_id.as_bytes());
    string(&mut body, will_topic.as_bytes());
    string(&mut body, b"gone");
    assert!(body.len() < 128, "one-byte remaining length");
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

/// Runs `host-app run` with `env`, stderr into `dir/stderr.log` (whose device and inode
/// `journal` puts in `JOURNAL_STREAM`); connects the forging client, lets its will go out,
/// stops the host and returns the stderr lines.
fn run_host(dir: &Path, journal: bool, env: &[(&str, &str)]) -> Vec<String> {
    let config = system_tests::config::write(&host_config(dir, None), dir, "host.toml");
    let log = dir.join("stderr.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_host-app"));
    command
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("JOURNAL_STREAM")
        .env_remove("LOG_FORMAT")
        .env("RUST_LOG", "info,host_app=debug")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr.try_clone().unwrap()));
    if journal {
        let meta = stderr.metadata().unwrap();
        command.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    }
    let mut child = Running(command.spawn().unwrap());
    let (tx, lines) = mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let banner = loop {
        let line = lines.recv_timeout(WAIT).expect("host-app banner");
        if line.starts_with("host-app: running as ") {
            break line;
        }
    };
    let mqtt = banner
        .split("MQTT ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no MQTT address in {banner}"));

    let mut client = TcpStream::connect(mqtt).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let id = format!("id\n{FORGED}");
    let topic = format!("t\n{FORGED}");
    client.write_all(&connect_packet(&id, &topic)).unwrap();
    let mut connack = [0u8; 4];
    client.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNECT accepted");
    // Gone without DISCONNECT: the will (and its topic) is logged.
    drop(client);
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("publishing will")
    {
        assert!(Instant::now() < deadline, "no will logged");
        std::thread::sleep(Duration::from_millis(20));
    }

    let term = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "host-app did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert!(
        lines.iter().all(|l| !l.starts_with(FORGED)),
        "a forged line:\n{text}"
    );
    lines
}

/// Kills the host if a test fails before it stops.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn under_journald_every_line_has_its_priority_and_a_forged_client_id_stays_on_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines = run_host(dir.path(), true, &[]);
    let text = lines.join("\n");
    for line in &lines {
        let priority = line
            .strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .map(|(n, _)| n);
        assert!(
            matches!(priority, Some("3" | "4" | "6" | "7")),
            "no <N> prefix: {line}\n{text}"
        );
    }
    // The client's strings did reach the log, escaped.
    assert!(text.contains(r"id\nforged line"), "{text}");
    assert!(text.contains(r#"topic="t\nforged line""#), "{text}");
    assert!(lines.iter().any(|l| l.starts_with("<6>")), "{text}");
}

#[test]
fn with_log_format_json_every_line_is_a_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let lines = run_host(dir.path(), false, &[("LOG_FORMAT", "json")]);
    let text = lines.join("\n");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{text}")))
        .collect();
    for event in &events {
        assert!(
            event["timestamp"].is_string()
                && event["level"].is_string()
                && event["target"].is_string()
                && event["fields"].is_object(),
            "{event}"
        );
    }
    let will = events
        .iter()
        .find(|e| e["fields"]["message"] == "publishing will")
        .unwrap_or_else(|| panic!("no will event:\n{text}"));
    assert_eq!(will["fields"]["topic"], "\"t\\nforged line\"", "{will}");
    assert_eq!(will["span"]["client_id"], "id\nforged line", "{will}");
}
