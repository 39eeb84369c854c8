//! Store-and-forward: what the edge node keeps while it cannot deliver live, and how it
//! sends it later, flagged historical, without starving live values.
//!
//! - [`Store`]: a durable FIFO of [`StoredSample`]s in one SQLite file (WAL), two
//!   append-only logs and append-only segment files beside it, bounded in bytes and age,
//!   replayed at-least-once by `peek_batch` + `ack`. Each sample's bytes are written
//!   about once: an outage's appends are segment records of a few bytes per sample that
//!   replay reads in place and deletes whole, live write-aheads are log records, and
//!   only what cannot be replayed in segment order reaches the SQLite table.
//! - [`SentWindow`]: the samples published live that no answered liveness probe has
//!   confirmed yet, which may have gone into a dead TCP link before anyone noticed; moved
//!   into the store when the link is declared down.
//! - [`ReplayPacer`]: how many stored bytes may go out now, so that replay only fills
//!   what live data leaves of the configured link share.
//!
//! # How the session drives it
//!
//! The session's forwarder (`crate::node::forwarder`) owns one `Store`, one `SentWindow`
//! and one `ReplayPacer` (all three built from [`StoreConfig`]); `now` is wall-clock ms for the store and window, and a
//! monotonic ms clock for the pacer.
//!
//! 1. **Each scan, link up, host online:** `window.record(&sample)` per sample and, with
//!    `persist_sent_window`, `store.write_ahead(first_mark, &scan)`; then publish the scan
//!    live and `pacer.spend_live(payload_len, now)`. Until a probe confirms them, these
//!    samples count as not delivered.
//! 2. **Each scan otherwise** (link down, primary host offline, births not yet out):
//!    `store.append(&scan_samples)` — one segment record per scan.
//! 3. **Link declared down / host offline** (unanswered probe, keep-alive timeout,
//!    disconnect, STATE offline): `window.drain_into(&mut gap);
//!    store.append_unconfirmed(&gap)` — the samples that may have vanished into a dead TCP
//!    link, their written-ahead copies dropped in the same transaction — then go on with
//!    step 2.
//! 4. **Link up, after NBIRTH and the DBIRTHs:** nothing to call; the next replay ticks
//!    drain the queue. Births carry current values, replay carries history.
//! 5. **Each replay tick** (each scan, after its live publish, so live is never late):
//!    `while let Some(grant) = pacer.grant(now)`: `store.peek_batch(grant.max_samples,
//!    grant.max_bytes)` (`peek_batch_after` the last batch in flight); stop if empty;
//!    publish its samples as metrics with `is_historical = true`;
//!    `pacer.spend_replay(payload_len, now)`; keep the batch id in flight.
//! 6. **A liveness probe answered** (a SUBACK for a re-subscription sent after the
//!    publishes, so TCP order puts them at the broker first): `window.confirm(mark)`,
//!    `store.forget_sent(mark)` and `store.ack` each batch handed out before the probe.
//!    A probe unanswered for a keep-alive declares the link down (step 3); batches in
//!    flight are handed out again.
//! 7. **Every tick:** `store.expire(now)` for the age cap; `store.dropped()` (plus
//!    `window.evicted_by_count()`) is the node metric `Store/Dropped`; `store.depth()` and
//!    `store.oldest_age(now)` are worth publishing too.
//!
//! Opening the store queues the written-ahead samples a killed process left behind.
//!
//! **Aliases.** A sample is stored under its metric's alias, and the file keeps the
//! node's [`AliasMap`] (see [`aliases`]): at start and at each applied tag list the
//! session calls `store.assign_aliases(&site)` (the catalog is built from its answer)
//! and `store.save_aliases()`. Replay then hands each sample out with its device's index
//! in the site now, and the samples of tags removed since are left out, removed by the
//! batch's `ack` and counted ([`Batch::retired`]), never sent under another metric.
//!
//! A [`StoreError`] never stops live publishing: the publisher logs it, counts it and
//! goes on with the next scan (a refused append is lost data and must be counted).
//! A [`BatchId`] is only valid for the `Store` that handed it out: after reopening,
//! peek again.

mod ahead;
mod aliases;
mod codec;
mod config;
mod log;
mod migrate;
mod pacer;
mod pending;
mod queue;
mod segments;
mod table;
mod window;

pub use aliases::{AliasMap, FIRST_TAG_ALIAS, TagAliases};
pub use codec::{CodecError, StoredSample};
pub use config::{Overflow, StoreConfig, Synchronous};
pub use pacer::{ReplayGrant, ReplayPacer};
pub use queue::{Batch, BatchId, HeldDevices, Store, StoreError};
pub use window::SentWindow;

/// A site of Modbus TCP devices with u16 holding-register tags, by name.
#[cfg(test)]
pub(crate) fn test_site(devices: &[(&str, &[&str])]) -> crate::modbus::Site {
    let mut toml = String::from("[[modbus.scan_classes]]\nname = \"fast\"\nperiod_ms = 100\n");
    for (device, tags) in devices {
        toml += &format!("[[modbus.devices]]\nname = \"{device}\"\nhost = \"127.0.0.1\"\n");
        for (i, tag) in tags.iter().enumerate() {
            toml += &format!(
                "[[modbus.devices.tags]]\nname = \"{tag}\"\naddress = \"4{:04}\"\ntype = \"u16\"\n",
                i + 1
            );
        }
    }
    crate::modbus::ModbusConfig::from_toml(&toml, "test.toml")
        .and_then(|c| c.validate())
        .expect("test site is valid")
}
