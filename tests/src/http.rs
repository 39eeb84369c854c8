//! The one HTTP client of the tests, for the host's JSON API: one request per
//! connection (HTTP/1.1, `Connection: close`), chunked bodies decoded, and the
//! server-sent events of `/api/events`. Blocking; async tests use the `_async` forms,
//! which run the exchange on tokio's blocking pool so an in-process host keeps running.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// The host's API at one address.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    addr: SocketAddr,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api { addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One request with an optional raw body; the status and the body as JSON (a body
    /// that is not JSON comes back as a JSON string). Panics when no answer comes.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Json) {
        let (status, text) = self
            .request(method, path, body.unwrap_or(""))
            .unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::from_str(&text).unwrap_or(Json::String(text));
        (status, json)
    }

    /// [`Api::call`] from an async test.
    pub async fn call_async(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Json) {
        let api = *self;
        let (method, path, body) = (method.to_owned(), path.to_owned(), body.map(str::to_owned));
        tokio::task::spawn_blocking(move || api.call(&method, &path, body.as_deref()))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// One request; the status and body, or why there is none.
    pub fn request(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        use std::io::{Read as _, Write as _};
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("send {method} {path}: {e}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .map_err(|e| format!("read {method} {path}: {e}"))?;
        let text = String::from_utf8(raw).map_err(|e| format!("{method} {path}: {e}"))?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("{method} {path}: no end of headers in {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
        let chunked = head.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
        });
        let body = if chunked {
            dechunk(body)?
        } else {
            body.to_owned()
        };
        Ok((status, body))
    }

    /// Reads `/api/events` (server-sent events) until an event `accept` takes, at most
    /// `timeout`; the event's JSON, or why there is none.
    pub fn wait_event(
        &self,
        timeout: Duration,
        accept: impl Fn(&Json) -> bool,
    ) -> Result<Json, String> {
        use std::io::{BufRead as _, BufReader, Write as _};
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        write!(
            stream,
            "GET /api/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            self.addr
        )
        .map_err(|e| format!("send GET /api/events: {e}"))?;
        let deadline = Instant::now() + timeout;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return Err("/api/events: stream ended".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("/api/events: {e}")),
            }
            // Chunk-size lines carry no "data:" prefix: skipped like comments.
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            // An event split over two chunks does not parse: skip it, others follow.
            let Ok(event) = serde_json::from_str::<Json>(data.trim()) else {
                continue;
            };
            if accept(&event) {
                return Ok(event);
            }
        }
        Err(format!("/api/events: no such event within {timeout:?}"))
    }

    /// GET `path`, expecting 200 and JSON.
    pub fn get(&self, path: &str) -> Result<Json, String> {
        let (status, body) = self.request("GET", path, "")?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e} in {body:?}"))
    }

    /// POST a JSON body; the status and the JSON answer.
    pub fn post(&self, path: &str, body: &Json) -> (u16, Json) {
        let (status, text) = self
            .request("POST", path, &body.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let json =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e} in {text:?}"));
        (status, json)
    }
}

fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| "chunk size line missing".to_owned())?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| "chunk shorter than its size".to_owned())?;
        out.push_str(chunk);
        body = rest.get(size + 2..).unwrap_or("");
    }
}

/// Percent-encodes a query value (everything but the unreserved characters).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
