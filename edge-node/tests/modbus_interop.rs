//! Interoperability with an independent Modbus implementation: a pymodbus server (from the
//! test venv) lays out every type in every order with Python's struct module; the engine
//! must read each value and its writes must land in pymodbus's datastore.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc as std_mpsc;

use edge_node::modbus::{Acquisition, Quality, Value};
use edge_node_testkit::modbus::{WAIT, layout, site, wait_online};
use serde_json::Value as Json;
use system_tests::config::edge::{Device, Modbus, ScanClass, Tag};

/// The pymodbus server process, killed by its own pid on drop.
struct PyServer {
    child: Child,
    stdin: ChildStdin,
    lines: std_mpsc::Receiver<String>,
}

impl PyServer {
    fn start() -> (PyServer, Json) {
        let mut child = system_tests::python_command("modbus_server.py")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the pymodbus server");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = PyServer {
            child,
            stdin,
            lines,
        };
        let hello = server.line();
        (
            server,
            serde_json::from_str(&hello).expect("the server's JSON greeting"),
        )
    }

    fn line(&mut self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("the pymodbus server answered in time")
    }

    fn query(&mut self, command: &str) -> Vec<u16> {
        writeln!(self.stdin, "{command}").expect("write a command");
        self.stdin.flush().expect("flush");
        serde_json::from_str(&self.line()).expect("a JSON list")
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn expected(ty: &str, v: &Json) -> Value {
    match ty {
        "i16" => Value::I16(v.as_i64().unwrap() as i16),
        "u16" => Value::U16(v.as_u64().unwrap() as u16),
        "i32" => Value::I32(v.as_i64().unwrap() as i32),
        "u32" => Value::U32(v.as_u64().unwrap() as u32),
        "i64" => Value::I64(v.as_i64().unwrap()),
        "u64" => Value::U64(v.as_u64().unwrap()),
        "f32" => Value::F32(v.as_f64().unwrap() as f32),
        "f64" => Value::F64(v.as_f64().unwrap()),
        _ => Value::String(v.as_str().unwrap().to_owned()),
    }
}

/// A different value to write, with its big-endian bytes.
fn to_write(ty: &str) -> (Value, Vec<u8>) {
    match ty {
        "i16" => (Value::I16(-2), (-2i16).to_be_bytes().to_vec()),
        "u16" => (Value::U16(513), 513u16.to_be_bytes().to_vec()),
        "i32" => (Value::I32(-70_000), (-70_000i32).to_be_bytes().to_vec()),
        "u32" => (
            Value::U32(0x0102_0304),
            0x0102_0304u32.to_be_bytes().to_vec(),
        ),
        "i64" => (
            Value::I64(i64::MIN + 7),
            (i64::MIN + 7).to_be_bytes().to_vec(),
        ),
        "u64" => (
            Value::U64(0x1122_3344_5566_7788),
            0x1122_3344_5566_7788u64.to_be_bytes().to_vec(),
        ),
        "f32" => (Value::F32(6.25), 6.25f32.to_be_bytes().to_vec()),
        "f64" => (Value::F64(-1.0e100), (-1.0e100f64).to_be_bytes().to_vec()),
        _ => (Value::String("EDGE".into()), b"EDGE\0\0\0\0".to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymodbus_server_every_type_and_order_read_and_written() {
    let (mut py, hello) = PyServer::start();
    let port = hello["port"].as_u64().unwrap();
    let tags = hello["tags"].as_array().unwrap().clone();
    let mut py_device = Device::tcp("py", port as u16, hello["unit"].as_u64().unwrap() as u8)
        .tag(Tag::numbered("coil", "00001", "bool").writable());
    for t in &tags {
        let ty = t["type"].as_str().unwrap();
        let address = t["address"].as_u64().unwrap() as u32;
        py_device = py_device.tag(Tag {
            length: (ty == "string").then_some(4),
            ..Tag::new(t["name"].as_str().unwrap(), "holding", address, ty)
                .order(t["order"].as_str().unwrap())
                .writable()
        });
    }
    let modbus = Modbus {
        scan_classes: vec![ScanClass::new("s", 200.0)],
        devices: vec![py_device],
        ..Modbus::default()
    };
    let (acq, mut events) = Acquisition::start(site(&modbus.to_toml()), Default::default());
    let h = acq.handle();
    let online = wait_online(&mut events).await;
    for t in &tags {
        let name = t["name"].as_str().unwrap();
        let id = h.tag_id("py", name).unwrap();
        let s = online.samples.iter().find(|s| s.tag == id).unwrap();
        let want = expected(t["type"].as_str().unwrap(), &t["value"]);
        assert_eq!((s.quality, &s.value), (Quality::Good, &want), "read {name}");
    }
    for t in &tags {
        let name = t["name"].as_str().unwrap();
        let ty = t["type"].as_str().unwrap();
        let order = t["order"].as_str().unwrap();
        let (value, be) = to_write(ty);
        let registers = if ty == "string" {
            layout("ABCDEFGH", &be)
        } else {
            layout(order, &be)
        };
        let id = h.tag_id("py", name).unwrap();
        tokio::time::timeout(WAIT, h.write(id, value))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("write {name}: {e}"));
        let got = py.query(&format!("hr {} {}", t["address"], registers.len()));
        assert_eq!(got, registers, "pymodbus registers after writing {name}");
    }
    h.write(h.tag_id("py", "coil").unwrap(), Value::Bool(true))
        .await
        .unwrap();
    assert_eq!(py.query("co 0 1"), vec![1]);
    acq.shutdown().await;
}
