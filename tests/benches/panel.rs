//! The operator panel's benchmark (BENCHMARKS.md, "host panel"): plant-sim, an edge node
//! and the host as processes, a scripted edge node filling 24 h of a 1 Hz metric, and
//! tests/browser/bench.mjs in headless Chromium measuring
//! - the gzipped bytes of every JS and CSS file each page loads (target <= 60 KB);
//! - the time from a register change in plant-sim to the changed cell on screen, as a
//!   ratio of the tag's scan period (target <= 1 scan period + 0.5 s);
//! - the time to draw the 24 h trend beside the same query through the JSON API
//!   (target: drawing adds at most as much again).
//!
//! `cargo build -p edge-node -p host-app --bins --release && cargo bench -p system-tests --bench panel`
//! (`BENCH_ROUNDS`, default 10: register changes timed).

use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::browser;
use system_tests::free_port;
use system_tests::http::{Api, percent_encode};
use system_tests::stack::{Broker, EdgeNode, HostApp, Plant, WAIT, now_ms, publish_history};
use system_tests::wait;

/// The scan period of the tag the latency is measured on ("normal" in the test config).
const SCAN_MS: f64 = 250.0;
const DAY_MS: u64 = 86_400_000;
const TREND_METRIC: &str = "e2e/recorder:Signal";
const PASSWORD: &str = "bench password 0123";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plant = Plant::start();
    let host = HostApp::start_without_accounts(dir.path(), Broker::Embedded { port: free_port() });
    let mut _edge = EdgeNode::start(dir.path(), host.broker().port(), plant.port());
    let addr = host.anonymous().addr();

    let token_file = dir.path().join("setup-token");
    let token = wait::until("the setup token file", WAIT, || {
        std::fs::read_to_string(&token_file)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    });
    let body = json!({"setup_token": token, "username": "bench", "password": PASSWORD});
    let (status, text) = Api::new(addr)
        .request("POST", "/auth/setup", &body.to_string())
        .expect("setup");
    assert_eq!(status, 201, "setup: {text}");
    let api = Api::login(addr, "bench", PASSWORD).expect("login");

    let to = now_ms() / 1000 * 1000;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let broker = std::net::SocketAddr::from(([127, 0, 0, 1], host.broker().port()));
    let from = to - DAY_MS;
    runtime.block_on(publish_history(broker, "Signal", (from, to, 1000)));
    let full = |api: &Api| {
        let path = format!(
            "/api/history?metric={}&from={from}&to={to}&points=1",
            percent_encode(TREND_METRIC)
        );
        api.get(&path).ok().and_then(|j| {
            let count = j["points"][0]["count"].as_u64()?;
            (count >= DAY_MS / 1000).then_some(count)
        })
    };
    wait::until(
        "24 h of samples in history",
        Duration::from_secs(60),
        || full(&api),
    );

    let mut figures: Vec<(String, f64)> = Vec::new();
    let env = [
        ("PANEL_URL", format!("http://{addr}")),
        ("PANEL_USER", "bench".to_owned()),
        ("PANEL_PASSWORD", PASSWORD.to_owned()),
        ("TREND_METRIC", TREND_METRIC.to_owned()),
        ("TREND_FROM", from.to_string()),
        ("TREND_TO", to.to_string()),
        (
            "BENCH_ROUNDS",
            std::env::var("BENCH_ROUNDS").unwrap_or_else(|_| "10".into()),
        ),
    ];
    browser::run("bench", &env, Duration::from_secs(300), |command| {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["set", ..] => {
                let sent = now_ms();
                plant.command(command);
                Ok(sent.to_string())
            }
            ["metric", name, value] => {
                let v = value.parse().map_err(|_| format!("bad figure {value:?}"))?;
                figures.push(((*name).to_owned(), v));
                Ok(String::new())
            }
            _ => Err(format!("unknown command {command:?}")),
        }
    });
    let of = |name: &str| -> Vec<f64> {
        figures
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .collect()
    };

    // The same query the chart made, through the JSON API, five times.
    let points = of("trend_buckets").first().copied().unwrap_or(1000.0) as u64;
    let mut api_ms = Vec::new();
    for _ in 0..5 {
        let path = format!(
            "/api/history?metric={}&from={from}&to={to}&points={points}",
            percent_encode(TREND_METRIC)
        );
        let start = Instant::now();
        let j = api.get(&path).expect("history");
        api_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(j["points"].as_array().is_some_and(|p| !p.is_empty()));
    }

    println!("| figure | value | target |");
    println!("|---|---|---|");
    for page in ["overview", "device", "trends"] {
        let bytes = of(&format!("gzip_bytes_{page}"))[0];
        println!(
            "| gzipped JS + CSS, {page} page | {:.1} KB | <= 60 KB |",
            bytes / 1000.0
        );
    }
    let latency = of("latency_ms");
    let (med, worst) = (
        median(latency.clone()),
        latency.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "| register change to cell, median of {} | {med:.0} ms = {:.2} scan periods ({SCAN_MS} ms) | <= {:.0} ms (1 scan + 0.5 s) |",
        latency.len(),
        med / SCAN_MS,
        SCAN_MS + 500.0
    );
    println!(
        "| register change to cell, worst | {worst:.0} ms = {:.2} scan periods | |",
        worst / SCAN_MS
    );
    let (query, draw, api) = (
        median(of("trend_query_ms")),
        median(of("trend_draw_ms")),
        median(api_ms),
    );
    println!("| 24 h 1 Hz trend ({points} buckets): JSON API query | {api:.0} ms | |");
    println!("| same, fetched by the page | {query:.0} ms | |");
    println!(
        "| same, drawing in the page | {draw:.0} ms = {:.2} x the API query | <= 1.0 x |",
        draw / api
    );
}
