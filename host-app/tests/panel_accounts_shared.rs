//! Two host instances on one PostgreSQL history share the panel's accounts: the first
//! admin made through one instance's setup closes the other's; an account created on A
//! logs in on B; a session or API token made on A is accepted by B; logout, password and
//! role changes, token revocation and account deletion on A take effect on B at once; the
//! auth audit is shared; `host-app user` works on the shared accounts (and names the
//! server it cannot reach). What stays per instance is checked too: the setup token and
//! login throttling. The tests run on tokio's current-thread runtime: a store call made on
//! the runtime's worker would panic there (the client blocks on a runtime of its own).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use host_app::config::HostConfig;
use host_app::host::Host;
use host_app_testkit::host::host_config;
use host_app_testkit::postgres::TempPostgres;
use serde_json::{Value as Json, json};
use system_tests::config::host::History;
use system_tests::http::{Api, TEST_PASSWORD, add_user, has_user};
use web::{AuthEventKind, Role, Secret};

const NEW_PASSWORD: &str = "another password 4567";

/// A host instance with its own state directory and embedded broker, its history (and so
/// its accounts) in the PostgreSQL database `url`; returns it with its config file.
async fn instance(dir: &Path, url: &str) -> (Host, PathBuf) {
    system_tests::logs::init();
    let mut config = host_config(dir, None);
    config.history = History::postgres(url);
    config.history.flush_interval_ms = Some(20);
    config.api.state_dir = Some(dir.to_owned());
    let path = system_tests::config::write(&config, dir, "host.toml");
    let loaded = HostConfig::load(&path).unwrap();
    (Host::start(&loaded).await.unwrap(), path)
}

/// A fresh database on the shared server (its client blocks: off the runtime).
async fn database() -> String {
    tokio::task::spawn_blocking(|| TempPostgres::shared()?.fresh_database())
        .await
        .unwrap()
        .unwrap()
}

fn login(addr: SocketAddr, user: &str, password: &str) -> Result<Api, String> {
    Api::login(addr, user, password)
}

async fn login_async(addr: SocketAddr, user: &str, password: &str) -> Result<Api, String> {
    let (user, password) = (user.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || login(addr, &user, &password))
        .await
        .unwrap()
}

/// The caller's `(status, role)` by `GET /auth/session`.
async fn whoami(api: &Api) -> (u16, Json) {
    let (status, body) = api.call_async("GET", "/auth/session", None).await;
    (status, body["role"].clone())
}

fn refused(result: Result<Api, String>, status: &str) {
    match result {
        Ok(_) => panic!("login accepted, {status} expected"),
        Err(e) => assert!(e.contains(&format!(": {status} ")), "{e}"),
    }
}

/// Runs `host-app user --config CONFIG ARGS` and asserts it succeeds.
fn user_cli(config: &Path, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_host-app"))
        .args(["user", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "host-app user {args:?}: {out:?}");
}

async fn set_password(host: &Host, user: &str, password: &str) {
    let (user, password) = (user.to_owned(), Secret::new(password));
    host.api()
        .auth()
        .blocking(move |a| a.set_password(None, &user, &password))
        .await
        .unwrap();
}

async fn set_role(host: &Host, user: &str, role: Role) {
    let user = user.to_owned();
    host.api()
        .auth()
        .blocking(move |a| a.set_role(None, &user, role))
        .await
        .unwrap();
}

#[tokio::test]
async fn two_instances_on_one_postgres_history_share_users_sessions_and_tokens() {
    let url = database().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, config_a) = instance(dir_a.path(), &url).await;
    let (b, _config_b) = instance(dir_b.path(), &url).await;
    let (at_a, at_b) = (a.api_addr(), b.api_addr());

    // First run: each instance wrote a setup token of its own; A's makes the admin,
    // which closes setup on B too.
    let token = |dir: &Path| std::fs::read_to_string(dir.join("setup-token")).unwrap();
    let (token_a, token_b) = (token(dir_a.path()), token(dir_b.path()));
    assert_ne!(token_a, token_b);
    let setup = |token: &str| {
        json!({ "setup_token": token.trim(), "username": "admin", "password": TEST_PASSWORD })
            .to_string()
    };
    let (status, body) = Api::new(at_a)
        .call_async("POST", "/auth/setup", Some(&setup(&token_a)))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = Api::new(at_b).call_async("GET", "/auth/setup", None).await;
    assert_eq!((status, &body["setup_required"]), (200, &json!(false)));
    let (status, body) = Api::new(at_b)
        .call_async("POST", "/auth/setup", Some(&setup(&token_b)))
        .await;
    assert_eq!(status, 403, "setup is closed on B: {body}");

    // An account created on A logs in on B; a wrong password is refused there.
    let admin_a = login_async(at_a, "admin", TEST_PASSWORD).await.unwrap();
    let admin_b = login_async(at_b, "admin", TEST_PASSWORD).await.unwrap();
    let alice = json!({ "username": "alice", "password": TEST_PASSWORD, "role": "operator" });
    let (status, body) = admin_a
        .call_async("POST", "/auth/users", Some(&alice.to_string()))
        .await;
    assert_eq!(status, 201, "{body}");
    let alice_b = login_async(at_b, "alice", TEST_PASSWORD).await.unwrap();
    assert_eq!(whoami(&alice_b).await, (200, json!("operator")));
    refused(
        login_async(at_b, "alice", "not the password 1").await,
        "401",
    );

    // A session made on A is accepted by B, until it logs out on A.
    let alice_a = login_async(at_a, "alice", TEST_PASSWORD).await.unwrap();
    assert_eq!(whoami(&alice_a.at(at_b)).await, (200, json!("operator")));
    let (status, _) = alice_a.call_async("POST", "/auth/logout", None).await;
    assert_eq!(status, 204);
    assert_eq!(whoami(&alice_a.at(at_b)).await.0, 401, "revoked on B too");
    assert_eq!(whoami(&alice_a).await.0, 401);

    // A role change on A holds on B for a live session.
    let (status, _) = alice_b.call_async("GET", "/auth/users", None).await;
    assert_eq!(status, 403, "an operator lists no accounts");
    set_role(&a, "alice", Role::Admin).await;
    assert_eq!(whoami(&alice_b).await, (200, json!("admin")));
    let (status, users) = alice_b.call_async("GET", "/auth/users", None).await;
    assert_eq!(status, 200, "{users}");

    // An API token made on A works on B, until it is revoked on A.
    let alice_a = login_async(at_a, "alice", TEST_PASSWORD).await.unwrap();
    let (status, made) = alice_a
        .call_async(
            "POST",
            "/auth/tokens",
            Some(&json!({ "name": "script", "scope": "read" }).to_string()),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let script = Api::with_token(at_b, made["token"].as_str().unwrap());
    assert_eq!(script.call_async("GET", "/api/tree", None).await.0, 200);
    let (status, _) = alice_a
        .call_async("DELETE", &format!("/auth/tokens/{}", made["id"]), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(script.call_async("GET", "/api/tree", None).await.0, 401);
    let kept = alice_a.create_token_async("kept", "read").await;
    let kept = Api::with_token(at_b, &kept);
    assert_eq!(kept.call_async("GET", "/api/tree", None).await.0, 200);

    // A password change on A ends the account's sessions everywhere; only the new
    // password opens one, on either instance.
    set_password(&a, "alice", NEW_PASSWORD).await;
    assert_eq!(whoami(&alice_b).await.0, 401, "B's session ended");
    assert_eq!(whoami(&alice_a.at(at_b)).await.0, 401);
    refused(login_async(at_b, "alice", TEST_PASSWORD).await, "401");
    let alice_b = login_async(at_b, "alice", NEW_PASSWORD).await.unwrap();

    // Deleting the account on A ends its session and tokens on B and its logins.
    let (status, _) = admin_a
        .call_async("DELETE", "/auth/users/alice", None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(whoami(&alice_b).await.0, 401);
    assert_eq!(kept.call_async("GET", "/api/tree", None).await.0, 401);
    refused(login_async(at_b, "alice", NEW_PASSWORD).await, "401");

    // One auth audit: B's shows what was done on A.
    let audit = b
        .api()
        .auth()
        .blocking(|a| a.recent_audit(None, 200))
        .await
        .unwrap();
    let on_a = |kind: AuthEventKind| {
        audit
            .iter()
            .any(|e| e.kind == kind && e.username.as_deref() == Some("alice"))
    };
    for kind in [
        AuthEventKind::UserCreated,
        AuthEventKind::RoleChanged,
        AuthEventKind::ApiTokenRevoked,
        AuthEventKind::PasswordChanged,
        AuthEventKind::UserDeleted,
    ] {
        assert!(on_a(kind), "{kind} in B's audit: {audit:?}");
    }

    // `host-app user` on A's config manages the same accounts.
    add_user(
        Path::new(env!("CARGO_BIN_EXE_host-app")),
        &config_a,
        "carol",
        "viewer",
    );
    let carol_b = login_async(at_b, "carol", TEST_PASSWORD).await.unwrap();
    assert_eq!(whoami(&carol_b).await, (200, json!("viewer")));
    assert!(has_user(
        Path::new(env!("CARGO_BIN_EXE_host-app")),
        &config_a,
        "admin"
    ));
    user_cli(&config_a, &["remove", "carol"]);
    assert_eq!(whoami(&carol_b).await.0, 401);
    assert_eq!(whoami(&admin_b).await, (200, json!("admin")));

    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn login_throttling_stays_with_each_instance() {
    let url = database().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, config_a) = instance(dir_a.path(), &url).await;
    let (b, _) = instance(dir_b.path(), &url).await;
    add_user(
        Path::new(env!("CARGO_BIN_EXE_host-app")),
        &config_a,
        "admin",
        "admin",
    );

    // Five failures lock the account on A (web's default throttle) ...
    for _ in 0..5 {
        refused(
            login_async(a.api_addr(), "admin", "not the password 1").await,
            "401",
        );
    }
    refused(
        login_async(a.api_addr(), "admin", TEST_PASSWORD).await,
        "429",
    );
    // ... and not on B, whose throttle counts its own failures only.
    let admin_b = login_async(b.api_addr(), "admin", TEST_PASSWORD)
        .await
        .unwrap();
    assert_eq!(whoami(&admin_b).await, (200, json!("admin")));

    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[test]
fn user_commands_name_the_postgres_server_they_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgresql://sparkplug@127.0.0.1:{port}/history");
    let mut config = host_config(dir.path(), None);
    config.history = History::postgres(&url);
    config.api.state_dir = Some(dir.path().to_owned());
    let path = system_tests::config::write(&config, dir.path(), "host.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_host-app"))
        .args(["user", "--config"])
        .arg(&path)
        .arg("list")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains(&format!("accounts in PostgreSQL {url}")),
        "{stderr}"
    );
    assert!(
        !dir.path().join("auth.db").exists(),
        "no SQLite accounts made instead"
    );
}
