//! The Trends page: a metric picker, preset ranges (1 h, 8 h, 24 h, 7 d) and a custom
//! one; the chart itself is drawn in the browser (`assets/trends.js`, uPlot) from
//! `/api/history` at the chart's pixel width, again on every drag-to-zoom.

use std::collections::BTreeSet;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use web::Caller;
use web::shell::Shell;

use super::{PanelState, metric_key};

/// Most metrics on one chart.
const MAX_SERIES: usize = 8;

#[derive(Template)]
#[template(path = "trends.html")]
struct TrendsPage {
    shell: Shell,
    /// Every metric the host tracks, by key.
    all: Vec<String>,
    chosen: Vec<String>,
    from: String,
    to: String,
}

/// The repeated `m` parameters, and `from`/`to`, of a query string.
fn parse_query(query: &str) -> (Vec<String>, String, String) {
    let (mut chosen, mut from, mut to) = (Vec::new(), String::new(), String::new());
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "m" if !v.is_empty() && chosen.len() < MAX_SERIES && !chosen.contains(&v) => {
                chosen.push(v)
            }
            "from" => from = v.chars().filter(char::is_ascii_digit).collect(),
            "to" => to = v.chars().filter(char::is_ascii_digit).collect(),
            _ => {}
        }
    }
    (chosen, from, to)
}

/// Decodes `%XX` and `+` of a query value; bad escapes are kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: Option<&u8>) -> Option<u8> {
    (*b? as char).to_digit(16).map(|d| d as u8)
}

pub async fn page(
    State(state): State<PanelState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Response {
    let (chosen, from, to) = parse_query(query.as_deref().unwrap_or(""));
    let all: BTreeSet<String> = {
        let tracker = state.shared.tracker();
        let mut all = BTreeSet::new();
        for (id, node) in tracker.nodes() {
            let (g, n) = (&id.group_id, &id.edge_node_id);
            for m in &node.metrics.list {
                all.insert(metric_key(g, n, None, &m.name));
            }
            for (d, dev) in &node.devices {
                for m in &dev.metrics.list {
                    all.insert(metric_key(g, n, Some(d), &m.name));
                }
            }
        }
        all
    };
    let page = TrendsPage {
        shell: state.shell(
            &caller,
            "Trends",
            "/trends",
            &["uPlot.min.css", "uPlot.iife.min.js", "trends.js"],
        ),
        all: all.into_iter().collect(),
        chosen,
        from,
        to,
    };
    web::shell::html(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_metrics_in_order_once() {
        let (m, from, to) = parse_query("m=g%2Fn%2Fd%3AT+1&m=g/n:x&m=g/n:x&from=100&to=2%3Cb%3E00");
        assert_eq!(m, ["g/n/d:T 1", "g/n:x"]);
        assert_eq!((from.as_str(), to.as_str()), ("100", "200"));
    }

    #[test]
    fn bad_escapes_stay_as_written() {
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
    }
}
