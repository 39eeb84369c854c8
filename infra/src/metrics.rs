//! Prometheus metrics: the figures the services already keep, encoded at each scrape by
//! the prometheus-client crate in the Prometheus text format (version 0.0.4), and the
//! small HTTP listener that serves them at `/metrics`.
//!
//! The listener has no authentication, so `[metrics] listen` must be a loopback address;
//! a Prometheus server elsewhere scrapes through a reverse proxy or an SSH tunnel. Each
//! scrape takes a fresh [`Exposition`] of the live counters (nothing is registered ahead).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, prometheus_text};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config_error::ConfigError;

/// `[metrics]`: where `/metrics` is served.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A loopback `address:port`, e.g. `127.0.0.1:9101`.
    pub listen: String,
}

impl MetricsConfig {
    /// The listen address, checked: it parses and is loopback.
    pub fn addr(&self) -> Result<SocketAddr, ConfigError> {
        match self.listen.parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_loopback() => Ok(addr),
            Ok(_) => Err(ConfigError::new(
                "metrics.listen",
                "must be a loopback address (127.0.0.1 or ::1): /metrics has no authentication",
            )),
            Err(_) => Err(ConfigError::new(
                "metrics.listen",
                format!("{:?} is not an address:port", self.listen),
            )),
        }
    }
}

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One figure: whole counts stay integers, durations are floats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(v as u64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(u64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

/// A metric family: its exported name, help, kind and labelled samples.
#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    samples: Vec<(Vec<(String, String)>, Value)>,
}

/// The figures of one scrape, families in order; a [`Collector`] the crate encodes.
#[derive(Debug, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family named as exported (a counter's name ends in `_total`); its
    /// samples follow with [`Exposition::sample`].
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        debug_assert!(kind == Kind::Gauge || name.ends_with("_total"), "{name}");
        self.families.push(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            samples: Vec::new(),
        });
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) -> &mut Self {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(family) = self.families.last_mut() {
            family.samples.push((labels, value.into()));
        }
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        value: impl Into<Value>,
    ) -> &mut Self {
        self.family(name, kind, help).sample(&[], value)
    }

    /// The text exposition of these families.
    pub fn finish(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        // Writing to a String fails only if a collector fails, and this one does not.
        let _ = prometheus_text::encode(&mut text, &registry);
        text
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            // The crate appends a counter's `_total` itself.
            let name = match family.kind {
                Kind::Counter => family.name.strip_suffix("_total").unwrap_or(&family.name),
                Kind::Gauge => &family.name,
            };
            let metric_type = match family.kind {
                Kind::Counter => prometheus_client::metrics::MetricType::Counter,
                Kind::Gauge => prometheus_client::metrics::MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(name, &family.help, None, metric_type)?;
            for (labels, value) in &family.samples {
                let sample = metric.encode_family(labels)?;
                match (family.kind, *value) {
                    (Kind::Counter, Value::Int(v)) => ConstCounter::new(v).encode(sample)?,
                    (Kind::Counter, Value::Float(v)) => ConstCounter::new(v).encode(sample)?,
                    (Kind::Gauge, Value::Int(v)) => ConstGauge::new(v).encode(sample)?,
                    (Kind::Gauge, Value::Float(v)) => ConstGauge::new(v).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// Renders the exposition for one scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Longest a client may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// Binds `addr` (errors name it) and serves `GET /metrics` until `stop`.
pub async fn serve(
    addr: SocketAddr,
    render: Render,
    stop: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics.listen {addr}: {e}")))?;
    tracing::info!(%addr, "serving /metrics");
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let render = Arc::clone(&render);
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, render)).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

/// The `/metrics` listener of a service, moved to a new address on a reload.
pub struct Listener {
    render: Render,
    running: Option<(SocketAddr, CancellationToken)>,
}

impl Listener {
    /// Serves on `addr` (none: off).
    pub async fn start(addr: Option<SocketAddr>, render: Render) -> std::io::Result<Listener> {
        let mut listener = Listener {
            render,
            running: None,
        };
        listener.apply(addr).await?;
        Ok(listener)
    }

    /// Moves to `addr` when it differs; on a bind error the old listener is kept.
    pub async fn apply(&mut self, addr: Option<SocketAddr>) -> std::io::Result<()> {
        if self.running.as_ref().map(|(a, _)| *a) == addr {
            return Ok(());
        }
        let next = match addr {
            Some(addr) => {
                let stop = CancellationToken::new();
                serve(addr, Arc::clone(&self.render), stop.clone()).await?;
                Some((addr, stop))
            }
            None => None,
        };
        if let Some((_, stop)) = std::mem::replace(&mut self.running, next) {
            stop.cancel();
        }
        Ok(())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((_, stop)) = &self.running {
            stop.cancel();
        }
    }
}

/// One request, one answer, then the connection closes.
async fn answer(mut stream: tokio::net::TcpStream, render: Render) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let path = path.map(|p| p.split(|&b| b == b'?').next().unwrap_or_default());
    let (status, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => ("200 OK", render()),
        (Some(b"GET"), _) => ("404 Not Found", "not found: try /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "GET only\n".to_owned()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        prometheus_text::CONTENT_TYPE,
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_escaped_labels_follow_the_text_format() {
        let mut e = Exposition::new();
        e.family("x_requests_total", Kind::Counter, "Requests.")
            .sample(&[("device", "a\"b\nc")], 3u64);
        e.single("x_up", Kind::Gauge, "Up.", true);
        e.single("x_busy_seconds_total", Kind::Counter, "Busy.", 1.5);
        assert_eq!(
            e.finish(),
            "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\n\
             x_requests_total{device=\"a\\\"b\\nc\"} 3\n\
             # HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n\
             # HELP x_busy_seconds_total Busy.\n# TYPE x_busy_seconds_total counter\n\
             x_busy_seconds_total 1.5\n"
        );
    }

    #[test]
    fn listen_must_be_loopback() {
        let config = |listen: &str| MetricsConfig {
            listen: listen.to_owned(),
        };
        assert!(config("127.0.0.1:9101").addr().is_ok());
        assert!(config("[::1]:9101").addr().is_ok());
        let e = config("0.0.0.0:9101").addr().unwrap_err().to_string();
        assert!(
            e.contains("metrics.listen") && e.contains("loopback"),
            "{e}"
        );
        let e = config("nine").addr().unwrap_err().to_string();
        assert!(e.contains("metrics.listen"), "{e}");
    }
}
