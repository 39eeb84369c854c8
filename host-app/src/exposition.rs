//! The host's Prometheus metrics (`[metrics] listen`): Sparkplug ingest, the Primary Host
//! session and the history writer, read from the counters the host keeps anyway.

use std::sync::Arc;

use infra::metrics::{Exposition, Kind, Render};

use crate::host::Host;
use crate::tracker::Liveness;

/// A renderer reading this host's live counters at each scrape.
pub fn source(host: &Host) -> Render {
    let shared = Arc::clone(host.shared());
    let commits = host.history_progress();
    Arc::new(move || {
        let (stats, online, known) = {
            let tracker = shared.tracker();
            let nodes = tracker.nodes();
            let online = nodes
                .iter()
                .filter(|(_, n)| n.state == Liveness::Online)
                .count();
            (tracker.stats(), online, nodes.len())
        };
        let mut e = Exposition::new();
        e.single(
            "host_sparkplug_messages_received_total",
            Kind::Counter,
            "Sparkplug messages the host session received.",
            stats.messages as f64,
        );
        e.single(
            "host_sparkplug_samples_received_total",
            Kind::Counter,
            "Metric values received in those messages.",
            stats.samples as f64,
        );
        e.single(
            "host_sparkplug_seq_gaps_total",
            Kind::Counter,
            "Gaps in an edge node's seq numbering.",
            stats.seq_gaps as f64,
        );
        e.single(
            "host_sparkplug_rebirths_requested_total",
            Kind::Counter,
            "Rebirth commands the host sent.",
            stats.rebirths_requested as f64,
        );
        e.single(
            "host_sparkplug_stale_deaths_ignored_total",
            Kind::Counter,
            "NDEATHs ignored for an old bdSeq.",
            stats.stale_deaths_ignored as f64,
        );
        e.single(
            "host_edge_nodes_online",
            Kind::Gauge,
            "Edge nodes online (born, not dead).",
            online as f64,
        );
        e.single(
            "host_edge_nodes_known",
            Kind::Gauge,
            "Edge nodes the host has heard of.",
            known as f64,
        );
        e.single(
            "host_session_connected",
            Kind::Gauge,
            "1 while the Primary Host session is connected to its broker.",
            f64::from(u8::from(shared.is_connected())),
        );
        e.single(
            "host_history_commits_total",
            Kind::Counter,
            "History commits that landed.",
            commits.beats() as f64,
        );
        e.finish()
    })
}
