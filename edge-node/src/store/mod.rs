//! Store-and-forward: what the edge node keeps while it cannot deliver live, and how it
//! sends it later, flagged historical, without starving live values.
//!
//! - [`Store`]: a durable FIFO of [`StoredSample`]s in one SQLite file (WAL), bounded in
//!   bytes and age, replayed at-least-once by `peek_batch` + `ack`.
//! - [`SentWindow`]: the samples published live during the last ~1.5 keep-alives, which
//!   may have gone into a dead TCP link before anyone noticed; moved into the store when
//!   the link is declared down.
//! - [`ReplayPacer`]: how many stored bytes may go out now, so that replay only fills
//!   what live data leaves of the configured link share.
//!
//! # How the session's publisher drives it
//!
//! 1. Each scan, link up and primary host online: publish the scan live, then
//!    `window.record(&sample, now)` for each published sample and
//!    `pacer.spend_live(payload_len, now)`.
//! 2. Each scan, link down / host offline / link not confirmed alive: `store.append(&samples)`
//!    (one transaction per scan).
//! 3. Link declared down (or host offline): `store.append(window.drain())` — the keep-alive
//!    gap — then keep storing.
//! 4. Link up again, after NBIRTH/DBIRTHs: nothing special; each replay tick below drains.
//! 5. Each replay tick (after the live publish of the scan): while
//!    `pacer.grant(now)` gives a budget, `store.peek_batch(grant.max_samples, grant.max_bytes)`,
//!    publish the batch as historical metrics, `pacer.spend_replay(payload_len, now)`,
//!    `store.ack(batch.id())` once the client accepted the publish.
//! 6. Every tick: `store.expire(now)` for the age cap; `store.dropped()` is the node
//!    metric `Store/Dropped`.
//!
//! A [`StoreError`] never stops live publishing: the caller logs it, counts it and goes on.

mod codec;
mod config;
mod pacer;
mod queue;
mod window;

pub use codec::{CodecError, StoredSample};
pub use config::{ConfigError, Overflow, StoreConfig, Synchronous};
pub use pacer::{ReplayGrant, ReplayPacer};
pub use queue::{Batch, BatchId, Store, StoreError};
pub use window::SentWindow;
