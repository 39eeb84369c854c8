//! What host-app's integration tests share that needs host-app's own types; everything
//! that does not (brokers, recorders, waits, config builders, processes) is in
//! `system-tests`.
//!
//! - [`host`]: a host on its embedded broker and a real SQLite file, a born edge node;
//! - [`broker`]: an embedded broker configuration and a started broker;
//! - [`history`]: a history store on a temporary file and sample builders;
//! - [`postgres`]: a throw-away PostgreSQL server on loopback.

pub mod broker;
pub mod history;
pub mod host;
pub mod postgres;
