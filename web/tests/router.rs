//! The axum layer and routes, driven through a Router with `oneshot` and
//! once over a real loopback listener: 401 without credentials, 403 for
//! role, scope, CSRF and origin failures, cookies, API tokens, throttling,
//! setup and logout.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use common::{Fixture, PASSWORD, config, fixture, send_empty, send_json, send_with};
use serde_json::json;
use web::{Auth, AuthConfig, AuthEventKind, Caller, Role};

const HOST: &str = "panel.local:8080";
const ORIGIN: &str = "http://panel.local:8080";
const FORM: &str = "application/x-www-form-urlencoded";

fn app(auth: &Auth) -> Router {
    Router::new()
        .route(
            "/api/values",
            get(|c: Caller| async move { format!("values for {}", c.user) }),
        )
        .route(
            "/api/write",
            post(|body: String| async move { format!("wrote {body}") })
                .route_layer(auth.require(Role::Operator)),
        )
        .route(
            "/api/settings",
            post(|| async { "saved" }).route_layer(auth.require(Role::Admin)),
        )
        .route("/static/app.js", get(|| async { "js" }))
        .route("/", get(|| async { "index" }))
        .merge(auth.routes())
        .layer(auth.layer())
}

fn request(method: &str, uri: &str) -> axum::http::request::Builder {
    request_from(method, uri, 1)
}

fn request_from(method: &str, uri: &str, last_octet: u8) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", HOST)
        .extension(ConnectInfo(SocketAddr::from((
            [192, 0, 2, last_octet],
            40_000,
        ))))
}

struct Session {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

async fn login(app: &Router, user: &str) -> Session {
    let r = send_json(
        app,
        request("POST", "/auth/login").header("origin", ORIGIN),
        json!({"username": user, "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let set_cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    Session {
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        csrf: r.json()["csrf_token"].as_str().unwrap().to_owned(),
        set_cookie,
    }
}

/// A request with the session cookie alone: no CSRF header, no origin.
fn cookie_req(method: &str, uri: &str, s: &Session) -> axum::http::request::Builder {
    request(method, uri).header("cookie", &s.cookie)
}

/// A same-origin state-changing request with the session cookie and CSRF header.
fn write_req(method: &str, uri: &str, s: &Session) -> axum::http::request::Builder {
    cookie_req(method, uri, s)
        .header("origin", ORIGIN)
        .header("x-csrf-token", &s.csrf)
}

fn users(f: &Fixture) {
    f.add_user("root", Role::Admin);
    f.add_user("op", Role::Operator);
    f.add_user("view", Role::Viewer);
}

#[tokio::test]
async fn every_protected_route_refuses_anonymous_callers() {
    let f = fixture(config());
    users(&f);
    let app = app(&f.auth);
    for (method, uri) in [
        ("GET", "/api/values"),
        ("POST", "/api/write"),
        ("POST", "/api/settings"),
        ("GET", "/auth/session"),
        ("POST", "/auth/logout"),
        ("GET", "/auth/tokens"),
        ("POST", "/auth/tokens"),
        ("DELETE", "/auth/tokens/1"),
        ("GET", "/auth/users"),
        ("POST", "/auth/users"),
        ("DELETE", "/auth/users/op"),
        ("GET", "/not/a/route"),
    ] {
        let r = send_empty(&app, request(method, uri).header("origin", ORIGIN)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    // A forged or dead cookie is no better, and is cleared.
    let forged = request("GET", "/api/values").header("cookie", "session=forged");
    let r = send_empty(&app, forged).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // The original attack: a cross-site text/plain POST naming a user.
    let r = send_with(
        &app,
        request("POST", "/api/write")
            .header("content-type", "text/plain")
            .header("origin", "http://evil.example"),
        "user=op&value=1",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Public paths stay open.
    for uri in ["/", "/static/app.js", "/auth/setup"] {
        let r = send_empty(&app, request("GET", uri)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie() {
    let f = fixture(config());
    users(&f);
    let app = app(&f.auth);
    let s = login(&app, "op").await;
    assert!(s.cookie.starts_with("session="), "{}", s.set_cookie);
    for attr in ["Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=43200"] {
        assert!(
            s.set_cookie.contains(attr),
            "{attr} missing: {}",
            s.set_cookie
        );
    }
    assert!(!s.set_cookie.contains("Secure"));
    let r = send_empty(&app, cookie_req("GET", "/auth/session", &s)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["user"], "op");
    assert_eq!(r.json()["role"], "operator");
    assert_eq!(r.json()["csrf_token"], s.csrf.as_str());

    // Login by HTML form works the same.
    let r = send_with(
        &app,
        request("POST", "/auth/login")
            .header("content-type", FORM)
            .header("sec-fetch-site", "same-origin"),
        format!("username=view&password={}", PASSWORD.replace(' ', "+")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Under HTTPS: Secure and the __Host- prefix.
    let mut cfg = config();
    cfg.session.https = true;
    let f2 = fixture(cfg);
    users(&f2);
    let app2 = self::app(&f2.auth);
    let s2 = login(&app2, "op").await;
    assert!(
        s2.cookie.starts_with("__Host-session="),
        "{}",
        s2.set_cookie
    );
    assert!(s2.set_cookie.contains("; Secure"), "{}", s2.set_cookie);
    let r = send_empty(&app2, cookie_req("GET", "/api/values", &s2)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "values for op");
}

#[tokio::test]
async fn csrf_token_missing_wrong_and_right() {
    let f = fixture(config());
    users(&f);
    let app = app(&f.auth);
    let s = login(&app, "op").await;
    let base = || cookie_req("POST", "/api/write", &s).header("origin", ORIGIN);
    let r = send_with(&app, base(), "42").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "missing");
    let r = send_with(&app, base().header("x-csrf-token", "wrong"), "42").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "wrong");
    let r = send_with(&app, base().header("x-csrf-token", &s.csrf), "42").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "wrote 42");
    // The form field works too, and the handler still gets the whole body.
    let form = format!("value=7&csrf_token={}", s.csrf);
    let r = send_with(&app, base().header("content-type", FORM), form.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, format!("wrote {form}"));
    let nope = "value=7&csrf_token=nope";
    let r = send_with(&app, base().header("content-type", FORM), nope).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Every state-changing method needs it.
    for method in ["PUT", "PATCH", "DELETE"] {
        let r = send_empty(&app, base().method(method)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method}");
    }
    assert_eq!(f.events_of(AuthEventKind::CsrfRefused).len(), 6);
}

#[tokio::test]
async fn cross_site_origin_and_fetch_site_are_refused() {
    let f = fixture(config());
    users(&f);
    let app = app(&f.auth);
    let s = login(&app, "op").await;
    let with_token = || cookie_req("POST", "/api/write", &s).header("x-csrf-token", &s.csrf);
    let refused = [
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![("origin", "https://panel.local:8080.evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://evil.example"),
        ],
        vec![],
    ];
    for headers in &refused {
        let mut b = with_token();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let r = send_with(&app, b, "1").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    assert_eq!(
        f.events_of(AuthEventKind::OriginRefused).len(),
        refused.len()
    );
    for same in [("sec-fetch-site", "same-origin"), ("origin", ORIGIN)] {
        let r = send_with(&app, with_token().header(same.0, same.1), "1").await;
        assert_eq!(r.status, StatusCode::OK, "{same:?}");
    }
    // Login from another site is refused too (login CSRF).
    let r = send_json(
        &app,
        request("POST", "/auth/login").header("origin", "http://evil.example"),
        json!({"username": "op", "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A proxy's public origin can be allowed explicitly.
    let cfg = AuthConfig {
        allowed_origins: vec!["https://panel.example".to_owned()],
        ..config()
    };
    let f2 = fixture(cfg);
    users(&f2);
    let app2 = self::app(&f2.auth);
    let s2 = login(&app2, "op").await;
    let r = send_with(
        &app2,
        cookie_req("POST", "/api/write", &s2)
            .header("x-csrf-token", &s2.csrf)
            .header("origin", "https://panel.example"),
        "1",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn roles_gate_routes() {
    let f = fixture(config());
    users(&f);
    let app = app(&f.auth);
    let cases = [
        ("view", "/api/write", StatusCode::FORBIDDEN),
        ("op", "/api/write", StatusCode::OK),
        ("root", "/api/write", StatusCode::OK),
        ("view", "/api/settings", StatusCode::FORBIDDEN),
        ("op", "/api/settings", StatusCode::FORBIDDEN),
        ("root", "/api/settings", StatusCode::OK),
    ];
    for (user, uri, want) in cases {
        let s = login(&app, user).await;
        let r = send_with(&app, write_req("POST", uri, &s), "1").await;
        assert_eq!(r.status, want, "{user} {uri}");
        let r = send_empty(&app, cookie_req("GET", "/api/values", &s)).await;
        assert_eq!(r.status, StatusCode::OK, "{user} reads");
    }
    assert_eq!(f.events_of(AuthEventKind::Forbidden).len(), 3);

    // User management is admin only.
    let op = login(&app, "op").await;
    let r = send_empty(&app, cookie_req("GET", "/auth/users", &op)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let root = login(&app, "root").await;
    let r = send_json(
        &app,
        write_req("POST", "/auth/users", &root),
        json!({"username": "tech", "password": PASSWORD, "role": "operator"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = send_empty(&app, cookie_req("GET", "/auth/users", &root)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json().as_array().unwrap().len(), 4);
    assert!(!r.body.contains("argon2"), "hashes never leave the server");
    let r = send_empty(&app, write_req("DELETE", "/auth/users/tech", &root)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send_empty(&app, write_req("DELETE", "/auth/users/root", &root)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "the last admin stays");
}

async fn new_token(app: &Router, s: &Session, scope: &str) -> (i64, String) {
    let r = send_json(
        app,
        write_req("POST", "/auth/tokens", s),
        json!({"name": format!("script-{scope}"), "scope": scope}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let v = r.json();
    (
        v["id"].as_i64().unwrap(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

fn bearer(method: &str, uri: &str, token: &str) -> axum::http::request::Builder {
    request(method, uri).header("authorization", format!("Bearer {token}"))
}

#[tokio::test]
async fn api_tokens_read_versus_read_write() {
    let f = fixture(config());
    users(&f);
    let app = app(&f.auth);
    let op = login(&app, "op").await;
    let (read_id, read) = new_token(&app, &op, "read").await;
    let (_, write) = new_token(&app, &op, "read_write").await;

    let r = send_empty(&app, bearer("GET", "/api/values", &read)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "values for op");
    let r = send_with(&app, bearer("POST", "/api/write", &read), "1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "read scope cannot write");
    // Read+write: no cookie, so no CSRF token or origin needed.
    let r = send_with(&app, bearer("POST", "/api/write", &write), "5").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // But the owner's role still applies.
    let r = send_empty(&app, bearer("POST", "/api/settings", &write)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let view = login(&app, "view").await;
    let (_, viewer_write) = new_token(&app, &view, "read_write").await;
    let r = send_with(&app, bearer("POST", "/api/write", &viewer_write), "1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Unknown tokens are 401; tokens cannot mint tokens.
    let r = send_empty(&app, bearer("GET", "/api/values", "spk_forged")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let child = json!({"name": "child", "scope": "read"});
    let r = send_json(&app, bearer("POST", "/auth/tokens", &write), child).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Listing never shows a value; revoking ends the token.
    let r = send_empty(&app, cookie_req("GET", "/auth/tokens", &op)).await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    assert!(!r.body.contains(&read) && !r.body.contains(&write));
    let revoke = write_req("DELETE", &format!("/auth/tokens/{read_id}"), &op);
    let r = send_empty(&app, revoke).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send_empty(&app, bearer("GET", "/api/values", &read)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after_and_is_audited() {
    let f = fixture(config());
    users(&f);
    let app = app(&f.auth);
    let attempt = |user: &str, password: &str, octet: u8| {
        send_json(
            &app,
            request_from("POST", "/auth/login", octet),
            json!({"username": user, "password": password}),
        )
    };
    // Per address: three wrong guesses at three names.
    for name in ["a1", "a2", "a3"] {
        let r = attempt(name, "wrong password!", 7).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = attempt("op", PASSWORD, 7).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "60");
    // Per account: three addresses guess at one name.
    for octet in [10, 11, 12] {
        attempt("view", "wrong password!", octet).await;
    }
    let r = attempt("view", PASSWORD, 13).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let locked = f.events_of(AuthEventKind::LockedOut);
    assert!(
        locked
            .iter()
            .any(|e| e.addr.as_deref() == Some("192.0.2.7")),
        "{locked:?}"
    );
    assert!(
        locked.iter().any(|e| e.detail.contains("account \"view\"")),
        "{locked:?}"
    );
    assert_eq!(f.events_of(AuthEventKind::LoginFailed).len(), 8);
    // After the lockout the right password opens a session.
    f.clock.advance(Duration::from_secs(61));
    let r = attempt("view", PASSWORD, 13).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn setup_flow_over_http_works_once() {
    let f = fixture(config());
    let app = app(&f.auth);
    let status = send_empty(&app, request("GET", "/auth/setup")).await;
    assert_eq!(status.json()["setup_required"], true);
    let token = f
        .auth
        .begin_setup(&f.dir.path().join("setup-token"))
        .unwrap()
        .unwrap();
    let setup = |tok: &str, origin: &str| {
        send_json(
            &app,
            request("POST", "/auth/setup").header("origin", origin),
            json!({"setup_token": tok, "username": "root", "password": PASSWORD}),
        )
    };
    assert_eq!(setup("wrong", ORIGIN).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        setup(token.expose(), "http://evil.example").await.status,
        StatusCode::FORBIDDEN
    );
    let r = setup(token.expose(), ORIGIN).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["role"], "admin");
    assert_eq!(
        setup(token.expose(), ORIGIN).await.status,
        StatusCode::FORBIDDEN
    );
    let status = send_empty(&app, request("GET", "/auth/setup")).await;
    assert_eq!(status.json()["setup_required"], false);
    let root = login(&app, "root").await;
    let r = send_empty(&app, write_req("POST", "/api/settings", &root)).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let f = fixture(config());
    users(&f);
    let app = app(&f.auth);
    let s = login(&app, "op").await;
    // Logout is a state change: CSRF applies.
    let no_token = cookie_req("POST", "/auth/logout", &s).header("origin", ORIGIN);
    let r = send_empty(&app, no_token).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send_empty(&app, write_req("POST", "/auth/logout", &s)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers["set-cookie"],
        "session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    );
    let r = send_empty(&app, cookie_req("GET", "/api/values", &s)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.events_of(AuthEventKind::Logout).len(), 1);
}

#[tokio::test]
async fn idle_session_is_refused_over_http() {
    let f = fixture(config());
    users(&f);
    let app = app(&f.auth);
    let s = login(&app, "op").await;
    f.clock.advance(Duration::from_secs(30 * 60));
    let r = send_empty(&app, cookie_req("GET", "/api/values", &s)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// One exchange over a real TCP connection: HTTP/1.1 with `Connection: close`.
async fn raw_http(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("loopback exchange within 10 s")
}

#[tokio::test]
async fn loopback_listener_sees_the_client_address() {
    let f = fixture(config());
    users(&f);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app(&f.auth).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, service).await });

    let body = json!({"username": "op", "password": "wrong password!"}).to_string();
    let reply = raw_http(
        addr,
        &format!(
            "POST /auth/login HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    let failed = f.events_of(AuthEventKind::LoginFailed);
    assert_eq!(failed[0].addr.as_deref(), Some("127.0.0.1"));

    let reply = raw_http(
        addr,
        &format!("GET /api/values HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_share_the_hash_slots() {
    let cfg = AuthConfig {
        max_concurrent_hashes: 1,
        ..config()
    };
    let f = fixture(cfg);
    users(&f);
    let app = app(&f.auth);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move { login(&app, "op").await.csrf }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 8, "eight distinct sessions");
}
