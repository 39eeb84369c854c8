//! No password or token reaches a log line: every log event of a full
//! round (setup, logins right and wrong, lockout, API tokens, refused
//! requests) is captured through a tracing subscriber and searched.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use common::{PASSWORD, config, fixture, send_empty, send_json};
use web::{Role, Scope, Secret};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_a_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Global, so events from the blocking pool's threads are captured too.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let f = fixture(config());
    let setup_token = f
        .auth
        .begin_setup(&f.dir.path().join("setup-token"))
        .unwrap()
        .unwrap();
    f.auth
        .complete_setup(&setup_token, "root", &Secret::new(PASSWORD), None)
        .unwrap();
    f.add_user("op", Role::Operator);
    let app = Router::new()
        .route("/api/write", post(|| async { "ok" }))
        .merge(f.auth.routes())
        .layer(f.auth.layer());

    let login = |user: &str, password: &str| {
        send_json(
            &app,
            Request::post("/auth/login").header("host", "panel.local"),
            serde_json::json!({"username": user, "password": password}),
        )
    };
    let wrong = "not-the-password-1234";
    for _ in 0..4 {
        let r = login("op", wrong).await;
        assert_ne!(r.status, StatusCode::OK);
    }
    let r = login("root", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    let session_token = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("session=")
        .to_owned();
    // A refused write (no CSRF token) is logged too.
    let r = send_empty(
        &app,
        Request::post("/api/write")
            .header("host", "panel.local")
            .header("origin", "http://panel.local")
            .header("cookie", cookie.split(';').next().unwrap()),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let caller = f
        .auth
        .authenticate_session(&Secret::new(session_token.clone()))
        .unwrap()
        .unwrap();
    let api = f
        .auth
        .create_api_token(&caller, "script", Scope::ReadWrite)
        .unwrap();
    let csrf = match &caller.via {
        web::Via::Session { csrf_token } => csrf_token.expose().to_owned(),
        other => panic!("{other:?}"),
    };

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The log is not empty: failures, lockout, login and refusal are there.
    for expected in [
        "login failed",
        "locked out",
        "login",
        "request refused",
        "setup token written",
    ] {
        assert!(log.contains(expected), "{expected:?} not logged:\n{log}");
    }
    for secret in [
        PASSWORD,
        wrong,
        setup_token.expose(),
        &session_token,
        &csrf,
        api.token.expose(),
    ] {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
}
