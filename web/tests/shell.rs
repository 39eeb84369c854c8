//! The panel shell through a router as an application mounts it: the login and setup
//! pages, the redirect to login for pages without a session, and the embedded assets
//! (hashed URLs, gzip, year-long immutable caching, public without login).

mod common;

use std::sync::Arc;

use axum::Router;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use common::{PASSWORD, config, fixture, send_empty, send_json};
use serde_json::json;
use web::shell::{Assets, SHELL_ASSETS, redirect_to_login};
use web::{Auth, AuthConfig, Caller, Role};

fn shell_config() -> AuthConfig {
    AuthConfig {
        public_paths: vec![
            "/static/*".to_owned(),
            "/login".to_owned(),
            "/setup".to_owned(),
        ],
        ..config()
    }
}

fn app(auth: &Auth, assets: Arc<Assets>) -> Router {
    Router::new()
        .route(
            "/",
            get(|c: Caller| async move { format!("hello {}", c.user) }),
        )
        .route("/trends", get(|| async { "trends" }))
        .merge(auth.routes())
        .merge(auth.pages("Test panel", Arc::clone(&assets)))
        .merge(assets.routes())
        .layer(auth.layer())
        .layer(axum::middleware::from_fn(redirect_to_login))
}

fn page(path: &str) -> axum::http::request::Builder {
    Request::get(path).header("accept", "text/html,application/xhtml+xml")
}

#[tokio::test]
async fn pages_without_a_session_go_to_login_and_come_back() {
    let f = fixture(shell_config());
    f.add_user("ada", Role::Admin);
    let app = app(&f.auth, Arc::new(Assets::new(&[SHELL_ASSETS])));

    let r = send_empty(&app, page("/trends?m=a%20b")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/login?next=/trends%3Fm%3Da%2520b");
    let r = send_empty(&app, page("/")).await;
    assert_eq!(r.headers["location"], "/login");
    // Scripts keep their JSON 401.
    let r = send_empty(&app, Request::get("/trends")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = send_empty(&app, page("/login")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<form") && r.body.contains("action=\"/auth/login\""));
    assert_eq!(r.headers["cache-control"], "no-store");
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    // No inline script: the policy would block it.
    assert!(!r.body.contains("<script>"), "{}", r.body);

    let login = send_json(
        &app,
        Request::post("/auth/login").header("sec-fetch-site", "same-origin"),
        json!({"username": "ada", "password": PASSWORD}),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK);
    let cookie = login.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let r = send_empty(&app, page("/").header("cookie", &cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "hello ada"));
    // Logged in, the login page sends the user on.
    let r = send_empty(&app, page("/login").header("cookie", &cookie)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn setup_page_only_until_the_first_admin() {
    let f = fixture(shell_config());
    let app = app(&f.auth, Arc::new(Assets::new(&[SHELL_ASSETS])));
    let r = send_empty(&app, page("/login")).await;
    assert_eq!(r.headers["location"], "/setup");
    let r = send_empty(&app, page("/setup?token=abc")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("data-auth=\"setup\""));
    // The token stays in the link: the page never echoes it.
    assert!(!r.body.contains("abc"));

    f.add_user("ada", Role::Admin);
    let r = send_empty(&app, page("/setup")).await;
    assert_eq!(r.headers["location"], "/login");
}

#[tokio::test]
async fn assets_are_public_hashed_gzipped_and_cached_for_a_year() {
    let f = fixture(shell_config());
    let assets = Arc::new(Assets::new(&[SHELL_ASSETS]));
    let app = app(&f.auth, Arc::clone(&assets));
    let url = assets.url("uPlot.iife.min.js");

    let r = send_empty(
        &app,
        Request::get(&url).header("accept-encoding", "gzip, br"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-encoding"], "gzip");
    assert_eq!(r.headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(
        r.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.headers["vary"], "accept-encoding");

    let plain = send_empty(&app, Request::get(&url)).await;
    assert!(plain.headers.get("content-encoding").is_none());
    assert!(
        plain
            .body
            .starts_with("/*! https://github.com/leeoniya/uPlot")
    );

    let r = send_empty(&app, Request::get("/static/uPlot.000000000000.js")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
