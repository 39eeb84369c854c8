//! The host application: the Sparkplug B 3.0 Primary Host session over an embedded or
//! external MQTT broker, the tracking of every edge node, history and the panel's API.
//!
//! - [`config::HostConfig`]: the configuration file, validated at load.
//! - [`host::Host`]: every part started in order and stopped cleanly.
//! - [`session::Session`]: the Primary Host's MQTT session (STATE, ingest, Rebirth).
//! - [`tracker::Tracker`]: what the host knows of each edge node, as pure logic.
//! - [`command`]: operator writes as NCMD/DCMD, audited.
//! - [`api`]: the panel's HTTP server: the JSON API behind login, HTTPS.
//! - [`panel`]: the operator's pages.
//! - [`users`]: the `user` subcommands that manage accounts from the shell.
//! - [`spy`]: every Sparkplug message on a broker, one JSON line each.
//! - [`fleet`]: the groups this instance owns, who owns the others, its subscriptions.

pub mod api;
pub mod broker;
pub mod command;
pub mod config;
pub mod exposition;
pub mod fleet;
pub mod history;
pub mod host;
pub mod inspect;
pub mod json;
pub mod mqtt;
pub mod panel;
mod pg;
pub mod session;
pub mod shared;
pub mod spy;
pub mod tracker;
pub mod users;
