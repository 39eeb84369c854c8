//! Shared test fixture: a real SQLite auth store in a temp dir, a manual
//! clock, cheap argon2 parameters and an audit hook that keeps every event;
//! and the requests the HTTP tests send through a Router.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, request};
use serde_json::Value;
use tower::ServiceExt;
use web::{
    Auth, AuthConfig, AuthEvent, AuthEventKind, HashParams, ManualClock, Role, Secret, SqliteStore,
    ThrottleConfig, UserInfo,
};

pub const PASSWORD: &str = "correct horse battery";
pub const START_MS: i64 = 1_800_000_000_000;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub auth: Auth,
    pub clock: Arc<ManualClock>,
    pub events: Arc<Mutex<Vec<AuthEvent>>>,
}

pub fn config() -> AuthConfig {
    AuthConfig {
        hash: HashParams::insecure_for_tests(),
        throttle: ThrottleConfig {
            max_failures: 3,
            window: Duration::from_secs(600),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(600),
            max_entries: 1000,
        },
        public_paths: vec!["/static/*".to_owned(), "/".to_owned()],
        ..AuthConfig::default()
    }
}

pub fn fixture(config: AuthConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("auth.db");
    let store = Arc::new(SqliteStore::open(&db).expect("open auth db"));
    let clock = Arc::new(ManualClock::new(START_MS));
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let auth = Auth::builder(store)
        .config(config)
        .clock(clock.clone())
        .audit_hook(Arc::new(move |e: &AuthEvent| {
            sink.lock().unwrap().push(e.clone())
        }))
        .build()
        .expect("build auth");
    Fixture {
        dir,
        db,
        auth,
        clock,
        events,
    }
}

impl Fixture {
    pub fn add_user(&self, name: &str, role: Role) -> UserInfo {
        self.auth
            .create_user(None, name, &Secret::new(PASSWORD), role)
            .expect("create user")
    }

    pub fn events_of(&self, kind: AuthEventKind) -> Vec<AuthEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == kind)
            .cloned()
            .collect()
    }

    /// Every stored byte of the database file and its WAL, for "is this
    /// secret anywhere on disk" checks.
    pub fn db_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for suffix in ["", "-wal"] {
            let mut p = self.db.clone().into_os_string();
            p.push(suffix);
            if let Ok(b) = std::fs::read(PathBuf::from(p)) {
                all.extend(b);
            }
        }
        all
    }
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// An answer read whole: its status, headers and body as text.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body parsed as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends one request through a clone of `app` and reads the whole answer.
pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app
        .clone()
        .oneshot(req)
        .await
        .expect("router is infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Sends the request `req` describes with `body` as its body.
pub async fn send_with(app: &Router, req: request::Builder, body: impl Into<Body>) -> Reply {
    send(app, req.body(body.into()).unwrap()).await
}

/// Sends the request `req` describes with an empty body.
pub async fn send_empty(app: &Router, req: request::Builder) -> Reply {
    send_with(app, req, Body::empty()).await
}

/// Sends the request `req` describes with `body` as JSON, content type and all.
pub async fn send_json(app: &Router, req: request::Builder, body: Value) -> Reply {
    let req = req.header("content-type", "application/json");
    send_with(app, req, body.to_string()).await
}
