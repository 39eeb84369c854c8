//! The panic policy, tested on a real process: a panic in a spawned thread ends it.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_panic_in_any_thread_ends_the_process_with_the_failure_code() {
    let built = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "infra",
            "--example",
            "panic_in_thread",
        ])
        .status()
        .expect("running cargo");
    assert!(built.success());
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let exe = target.join("debug/examples/panic_in_thread");
    let mut child = Command::new(exe)
        .env("LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting the example");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the process outlived its panicking thread");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(infra::Exit::RuntimeFailure as i32));
    assert!(stderr.contains("panic; exiting"), "{stderr}");
    // The message is escaped: its newline cannot start a forged log line.
    assert!(
        !stderr.lines().any(|l| l.starts_with("forged line")),
        "{stderr}"
    );
    assert!(stderr.contains(r"injected\nforged line"), "{stderr}");
}
