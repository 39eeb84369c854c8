//! The one HTTP client of the tests, for the host's JSON API: one request per
//! connection (HTTP/1.1, `Connection: close`), chunked bodies decoded, and the
//! server-sent events of `/api/events`. Blocking; async tests use the `_async` forms,
//! which run the exchange on tokio's blocking pool so an in-process host keeps running.
//!
//! The API needs a login: [`Api::login`] opens a session (cookie, CSRF token and this
//! origin sent with every request), [`Api::with_token`] uses an API token; [`Api::new`]
//! alone is an anonymous client, refused everywhere but login and setup.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// The host's API at one address, as one caller.
#[derive(Debug, Clone)]
pub struct Api {
    addr: SocketAddr,
    credentials: Credentials,
}

/// How an [`Api`] client proves who it is.
#[derive(Debug, Clone)]
pub enum Credentials {
    None,
    /// `Authorization: Bearer <token>`.
    Token(String),
    /// A login session: the `Cookie` header value and the CSRF token.
    Session {
        cookie: String,
        csrf: String,
    },
}

/// The password [`Api::login`] callers and the test accounts use.
pub const TEST_PASSWORD: &str = "test password 0123";

impl Api {
    /// An anonymous client.
    pub fn new(addr: SocketAddr) -> Api {
        Api {
            addr,
            credentials: Credentials::None,
        }
    }

    /// A client sending the API token `token`.
    pub fn with_token(addr: SocketAddr, token: &str) -> Api {
        Api {
            addr,
            credentials: Credentials::Token(token.to_owned()),
        }
    }

    /// Logs in as `user`: a client holding the session.
    pub fn login(addr: SocketAddr, user: &str, password: &str) -> Result<Api, String> {
        let body = serde_json::json!({ "username": user, "password": password }).to_string();
        let (status, head, text) = Api::new(addr).exchange("POST", "/auth/login", &body, &[])?;
        if status != 200 {
            return Err(format!("login as {user}: {status} {text}"));
        }
        let cookie = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .and_then(|(_, v)| v.trim().split(';').next())
            .ok_or_else(|| format!("login as {user}: no Set-Cookie in {head:?}"))?
            .to_owned();
        let json: Json = serde_json::from_str(&text).map_err(|e| format!("login: {e}"))?;
        let csrf = json["csrf_token"]
            .as_str()
            .ok_or_else(|| format!("login: no csrf_token in {text}"))?
            .to_owned();
        Ok(Api {
            addr,
            credentials: Credentials::Session { cookie, csrf },
        })
    }

    /// [`Api::login`] from an async test.
    pub async fn login_async(addr: SocketAddr, user: &str, password: &str) -> Api {
        let (user, password) = (user.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || Api::login(addr, &user, &password))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates an API token of `scope` (`read` or `read_write`) with this client's
    /// session (an admin's); the token's value.
    pub fn create_token(&self, name: &str, scope: &str) -> Result<String, String> {
        let body = serde_json::json!({ "name": name, "scope": scope }).to_string();
        let (status, text) = self.request("POST", "/auth/tokens", &body)?;
        if status != 201 {
            return Err(format!("create token: {status} {text}"));
        }
        let json: Json = serde_json::from_str(&text).map_err(|e| format!("token: {e}"))?;
        json["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no token in {text}"))
    }

    /// [`Api::create_token`] from an async test; panics when it fails.
    pub async fn create_token_async(&self, name: &str, scope: &str) -> String {
        let (api, name, scope) = (self.clone(), name.to_owned(), scope.to_owned());
        tokio::task::spawn_blocking(move || api.create_token(&name, &scope))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The same caller (session or token) at `addr`: another host instance sharing the
    /// accounts.
    pub fn at(&self, addr: SocketAddr) -> Api {
        Api {
            addr,
            credentials: self.credentials.clone(),
        }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The headers this client's credentials add to a request.
    fn auth_headers(&self) -> String {
        match &self.credentials {
            Credentials::None => String::new(),
            Credentials::Token(t) => format!("Authorization: Bearer {t}\r\n"),
            Credentials::Session { cookie, csrf } => format!(
                "Cookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\nOrigin: http://{}\r\n",
                self.addr
            ),
        }
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
        let api = self.clone();
        let (method, path, body) = (method.to_owned(), path.to_owned(), body.map(str::to_owned));
        tokio::task::spawn_blocking(move || api.call(&method, &path, body.as_deref()))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// One request; the status and body, or why there is none.
    pub fn request(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        self.exchange(method, path, body, &[])
            .map(|(status, _, body)| (status, body))
    }

    /// One request with `extra` headers (`("Origin", "http://evil.example")`); the
    /// status, the response head and the body.
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> Result<(u16, String, String), String> {
        use std::io::{Read as _, Write as _};
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut headers = self.auth_headers();
        let mut content_type = "application/json";
        for (k, v) in extra {
            if k.eq_ignore_ascii_case("content-type") {
                content_type = v;
            } else {
                headers.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {content_type}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
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
        Ok((status, head.to_owned(), body))
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
            "GET /api/events HTTP/1.1\r\nHost: {}\r\n{}Accept: text/event-stream\r\n\r\n",
            self.addr,
            self.auth_headers()
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

/// Runs `host_app user add NAME --role ROLE --config CONFIG` with [`TEST_PASSWORD`] on
/// standard input, as an installer recovering access would; panics when it fails.
pub fn add_user(host_app: &std::path::Path, config: &std::path::Path, name: &str, role: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(host_app)
        .args(["user", "--config"])
        .arg(config)
        .args(["add", name, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", host_app.display()));
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{TEST_PASSWORD}").expect("password to host-app user add");
    }
    let out = child.wait_with_output().expect("host-app user add ends");
    assert!(out.status.success(), "host-app user add {name}: {out:?}");
}

/// Whether `host_app user list --config CONFIG` lists account `name` (host instances on
/// one PostgreSQL history share their accounts: the first may have made it already).
pub fn has_user(host_app: &std::path::Path, config: &std::path::Path, name: &str) -> bool {
    let out = std::process::Command::new(host_app)
        .args(["user", "--config"])
        .arg(config)
        .arg("list")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", host_app.display()));
    assert!(out.status.success(), "host-app user list: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split('\t').next() == Some(name))
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
