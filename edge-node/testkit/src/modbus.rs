//! Shared by the Modbus acquisition tests: building a site from TOML, waiting for events
//! with a bound, and an order-by-name register layout written independently of the codec.

use std::time::Duration;

use edge_node::modbus::{Event, ModbusConfig, Report, Site};
use tokio::sync::mpsc;

/// Longest wait for any single expected event; a test fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn site(toml: &str) -> Site {
    ModbusConfig::from_toml(toml, "test.toml")
        .and_then(|c| c.validate())
        .unwrap_or_else(|e| panic!("test config is valid: {e}"))
}

/// Receives events until `pick` returns `Some`, within [`WAIT`].
pub async fn wait_for<T>(
    events: &mut mpsc::Receiver<Event>,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the expected event arrived in time")
            .expect("the event channel is open");
        if let Some(t) = pick(&event) {
            return t;
        }
    }
}

/// The next device birth (`Event::Online`), within [`WAIT`].
pub async fn wait_online(events: &mut mpsc::Receiver<Event>) -> Report {
    wait_for(events, |e| match e {
        Event::Online(r) => Some(r.clone()),
        _ => None,
    })
    .await
}

/// Registers holding `be` (the value's big-endian bytes, A first) laid out as the order's
/// name spells it: "CDAB" puts bytes C,D in the first register and A,B in the second.
pub fn layout(order_name: &str, be: &[u8]) -> Vec<u16> {
    let bytes: Vec<u8> = order_name
        .bytes()
        .map(|letter| be[usize::from(letter - b'A')])
        .collect();
    bytes
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect()
}
