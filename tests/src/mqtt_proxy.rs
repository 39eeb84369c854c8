//! A TCP proxy between an MQTT client and its broker that can lose one PUBLISH on
//! purpose, as a broker dropping a QoS 0 message under load would: the client's `seq`
//! numbers stay genuine, the receiver sees a real gap.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// MQTT control packet type of PUBLISH (high nibble of the first byte).
const PUBLISH: u8 = 3;

#[derive(Default)]
struct Plan {
    /// Drop the next client PUBLISH whose topic contains this.
    drop_next: Mutex<Option<String>>,
    dropped: AtomicUsize,
}

/// Listens on a free loopback port and forwards every connection to `target`.
pub struct DroppingProxy {
    port: u16,
    plan: Arc<Plan>,
}

impl DroppingProxy {
    pub fn start(target: u16) -> DroppingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback bind");
        let port = listener.local_addr().expect("bound address").port();
        let plan = Arc::new(Plan::default());
        let accept_plan = Arc::clone(&plan);
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                };
                let plan = Arc::clone(&accept_plan);
                let (Ok(in2), Ok(out2)) = (inbound.try_clone(), outbound.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || copy_raw(out2, in2));
                std::thread::spawn(move || forward_packets(inbound, outbound, &plan));
            }
        });
        DroppingProxy { port, plan }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next PUBLISH from a client whose topic contains `topic_part` is not forwarded.
    pub fn drop_next(&self, topic_part: &str) {
        *self
            .plan
            .drop_next
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(topic_part.to_owned());
    }

    /// PUBLISH packets dropped so far.
    pub fn dropped(&self) -> usize {
        self.plan.dropped.load(Ordering::Acquire)
    }
}

/// Broker to client: bytes as they come.
fn copy_raw(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
}

/// Client to broker: packet by packet, so one PUBLISH can be left out whole.
fn forward_packets(mut from: TcpStream, mut to: TcpStream, plan: &Plan) {
    while let Some(packet) = read_packet(&mut from) {
        if packet[0] >> 4 == PUBLISH && should_drop(&packet, plan) {
            continue;
        }
        if to.write_all(&packet).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

fn should_drop(packet: &[u8], plan: &Plan) -> bool {
    let mut armed = plan.drop_next.lock().unwrap_or_else(|e| e.into_inner());
    let Some(part) = armed.as_deref() else {
        return false;
    };
    let hit = publish_topic(packet).is_some_and(|t| t.contains(part));
    if hit {
        *armed = None;
        plan.dropped.fetch_add(1, Ordering::AcqRel);
    }
    hit
}

/// One whole MQTT packet (fixed header, remaining length, body), or `None` at the end.
fn read_packet(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut packet = vec![0u8];
    stream.read_exact(&mut packet).ok()?;
    let mut length = 0usize;
    for shift in 0..4 {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).ok()?;
        packet.push(byte[0]);
        length |= usize::from(byte[0] & 0x7f) << (7 * shift);
        if byte[0] & 0x80 == 0 {
            let start = packet.len();
            packet.resize(start + length, 0);
            stream.read_exact(&mut packet[start..]).ok()?;
            return Some(packet);
        }
    }
    None // a remaining length of more than 4 bytes is malformed
}

/// The topic of a PUBLISH packet.
fn publish_topic(packet: &[u8]) -> Option<&str> {
    let mut i = 1;
    while packet.get(i)? & 0x80 != 0 {
        i += 1;
    }
    let body = packet.get(i + 1..)?;
    let len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    std::str::from_utf8(body.get(2..2 + len)?).ok()
}
