//! The host's Prometheus metrics (`[metrics] listen`): the embedded broker, Sparkplug
//! ingest, the Primary Host session and its MQTT link, the history writer and the API,
//! read from the counters the host keeps anyway.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use infra::metrics::{Exposition, Kind, Render};

use crate::host::Host;
use crate::tracker::Liveness;

/// A renderer reading this host's live counters at each scrape.
pub fn source(host: &Host) -> Render {
    let shared = Arc::clone(host.shared());
    let commits = host.history_progress();
    let writer = host.history_metrics();
    let requests = host.api().requests();
    let broker = host
        .broker()
        .embedded()
        .map(|b| (b.client_gauge(), b.message_counters()));
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
            stats.messages,
        );
        e.single(
            "host_sparkplug_samples_received_total",
            Kind::Counter,
            "Metric values received in those messages.",
            stats.samples,
        );
        e.single(
            "host_sparkplug_seq_gaps_total",
            Kind::Counter,
            "Gaps in an edge node's seq numbering.",
            stats.seq_gaps,
        );
        e.single(
            "host_sparkplug_rebirths_requested_total",
            Kind::Counter,
            "Rebirth commands the host sent.",
            stats.rebirths_requested,
        );
        e.single(
            "host_sparkplug_stale_deaths_ignored_total",
            Kind::Counter,
            "NDEATHs ignored for an old bdSeq.",
            stats.stale_deaths_ignored,
        );
        e.single(
            "host_edge_nodes_online",
            Kind::Gauge,
            "Edge nodes online (born, not dead).",
            online,
        );
        e.single(
            "host_edge_nodes_known",
            Kind::Gauge,
            "Edge nodes the host has heard of.",
            known,
        );
        e.single(
            "host_session_connected",
            Kind::Gauge,
            "1 while the Primary Host session is connected to its broker.",
            shared.is_connected(),
        );
        let bytes = shared.link_bytes();
        e.single(
            "host_session_reconnects_total",
            Kind::Counter,
            "Connections of the session after the first.",
            shared.connects().saturating_sub(1),
        );
        e.single(
            "host_session_sent_bytes_total",
            Kind::Counter,
            "Bytes the session sent to its broker.",
            bytes.sent(),
        );
        e.single(
            "host_session_received_bytes_total",
            Kind::Counter,
            "Bytes the session received from its broker.",
            bytes.received(),
        );
        e.single(
            "host_history_commits_total",
            Kind::Counter,
            "History commits that landed.",
            commits.beats(),
        );
        e.single(
            "host_history_commit_seconds_total",
            Kind::Counter,
            "Time spent in the commits that landed.",
            writer.commit_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        e.single(
            "host_history_failed_commits_total",
            Kind::Counter,
            "History commits that failed (their samples are tried again).",
            writer.failed_commits.load(Ordering::Relaxed),
        );
        e.single(
            "host_history_samples_committed_total",
            Kind::Counter,
            "Samples stored in the history by commits that landed.",
            writer.committed.load(Ordering::Relaxed),
        );
        e.single(
            "host_history_pending_samples",
            Kind::Gauge,
            "Samples the history writer took in and has not committed yet.",
            writer.pending(),
        );
        if let Some((clients, messages)) = &broker {
            e.single(
                "host_broker_connections",
                Kind::Gauge,
                "MQTT clients logged in to the embedded broker.",
                clients.connected(),
            );
            e.single(
                "host_broker_messages_received_total",
                Kind::Counter,
                "PUBLISH packets the embedded broker accepted from clients.",
                messages.received.load(Ordering::Relaxed),
            );
            e.single(
                "host_broker_messages_sent_total",
                Kind::Counter,
                "Messages the embedded broker delivered to subscribers.",
                messages.delivered.load(Ordering::Relaxed),
            );
        }
        e.family(
            "host_api_requests_total",
            Kind::Counter,
            "Requests the API and the panel answered, by status class.",
        );
        for (class, count) in requests.by_class() {
            e.sample(&[("code", class)], count);
        }
        e.finish()
    })
}
