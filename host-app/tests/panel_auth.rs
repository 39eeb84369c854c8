//! The panel's access control against a running host: every route refuses without a
//! session or API token, roles and token scopes, cross-site requests, the one-time
//! setup token, login throttling in the audit log, cookie flags, HTTPS with a
//! self-signed certificate, and no secret in the log of the real binary.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use host_app::api::API_ROUTES;
use host_app::api::access::SETUP_TOKEN_FILE;
use host_app_testkit::host::*;
use serde_json::{Value, json};
use system_tests::config::host::Api as ApiSection;
use system_tests::http::{Api, Credentials, TEST_PASSWORD, add_user};
use system_tests::process::Proc;
use web::Role;

/// The JSON body of a write of `Pump/Setpoint`.
fn setpoint(value: u16) -> String {
    json!({ "group": "Plant", "node": "Edge1", "device": "Pump", "metric": "Setpoint", "value": value })
        .to_string()
}

async fn born_with_setpoint(
    dir: &std::path::Path,
) -> (host_app::host::Host, system_tests::mqtt::ScriptedEdge) {
    born(
        dir,
        0,
        vec![sparkplug::Metric::new("Setpoint", 50u16).with_alias(2)],
    )
    .await
}

/// Every other route of the panel: web's auth routes that need a caller.
const AUTH_ROUTES: &[(&str, &str)] = &[
    ("GET", "/auth/session"),
    ("GET", "/auth/tokens"),
    ("POST", "/auth/tokens"),
    ("DELETE", "/auth/tokens/1"),
    ("GET", "/auth/users"),
    ("POST", "/auth/users"),
    ("DELETE", "/auth/users/admin"),
];

/// How many entries of the audit log (`query`) have `action`.
fn count(audit: &Value, action: &str) -> usize {
    audit["entries"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["action"] == action).count())
}

/// The audit log (`query`) once `ready` accepts it: account events reach it from a
/// thread of their own, a moment after the request that caused them.
async fn audit_when(api: &Api, query: &str, ready: impl Fn(&Value) -> bool) -> Value {
    system_tests::wait::until_read(
        query,
        WAIT,
        async || api.call_async("GET", query, None).await.1,
        |audit| ready(audit),
    )
    .await
}

fn session_of(api: &Api) -> (String, String) {
    match api.credentials() {
        Credentials::Session { cookie, csrf } => (cookie.clone(), csrf.clone()),
        other => panic!("not a session: {other:?}"),
    }
}

async fn exchange(
    api: &Api,
    method: &str,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> (u16, String, String) {
    let api = api.clone();
    let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_owned());
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        api.exchange(&method, &path, &body, &extra)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn every_route_refuses_without_a_session_or_token() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _edge) = born_with_setpoint(dir.path()).await;
    let anonymous = Api::new(host.api_addr());
    // Before the first admin: only setup is served.
    let (status, e) = anonymous.call_async("GET", "/api/tree", None).await;
    assert_eq!(status, 503, "{e}");
    let (status, setup) = anonymous.call_async("GET", "/auth/setup", None).await;
    assert_eq!((status, &setup["setup_required"]), (200, &json!(true)));

    let _admin = admin(&host).await;
    let forged = Api::with_token(host.api_addr(), "spk_not-a-real-token");
    let routes = API_ROUTES
        .iter()
        .map(|(m, p, _)| (*m, *p))
        .chain(AUTH_ROUTES.iter().copied());
    for (method, path) in routes {
        for client in [&anonymous, &forged] {
            let (status, head, body) = exchange(client, method, path, "{}", &[]).await;
            assert_eq!(status, 401, "{method} {path} without credentials: {body}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("www-authenticate: bearer"),
                "{head}"
            );
        }
    }
    // An unknown path is no way around it either.
    let (status, _, _) = exchange(&anonymous, "GET", "/api/nothing-here", "", &[]).await;
    assert_eq!(status, 401);
    // Login and setup stay open.
    let (status, _) = anonymous.call_async("GET", "/auth/setup", None).await;
    assert_eq!(status, 200);
    host.stop().await.unwrap();
}

#[tokio::test]
async fn roles_and_token_scopes_bound_what_a_caller_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born_with_setpoint(dir.path()).await;
    let admin = admin(&host).await;
    let viewer = login(&host, "vic", Role::Viewer).await;
    let operator = login(&host, "otto", Role::Operator).await;

    let (status, _) = viewer.call_async("GET", "/api/tree", None).await;
    assert_eq!(status, 200);
    for path in ["/api/write", "/api/rebirth"] {
        let body = if path == "/api/write" {
            setpoint(60)
        } else {
            json!({"group": "Plant", "node": "Edge1"}).to_string()
        };
        let (status, e) = viewer.call_async("POST", path, Some(&body)).await;
        assert_eq!(status, 403, "viewer {path}: {e}");
    }
    for (method, path) in [("GET", "/auth/users"), ("GET", "/auth/tokens")] {
        let (status, e) = operator.call_async(method, path, None).await;
        assert_eq!(status, 403, "operator {method} {path}: {e}");
    }
    let (status, users) = admin.call_async("GET", "/auth/users", None).await;
    assert_eq!(status, 200);
    assert_eq!(users.as_array().unwrap().len(), 3, "{users}");

    // The operator's write is sent and audited under the operator.
    let (status, reply) = operator
        .call_async("POST", "/api/write", Some(&setpoint(61)))
        .await;
    assert_eq!(status, 200, "{reply}");
    edge.next_matching("/DCMD/").await;

    // API tokens: read, and read + write.
    let read = Api::with_token(
        host.api_addr(),
        &admin.create_token_async("dashboards", "read").await,
    );
    let rw = Api::with_token(
        host.api_addr(),
        &admin.create_token_async("scripts", "read_write").await,
    );
    let (status, _) = read.call_async("GET", "/api/tree", None).await;
    assert_eq!(status, 200);
    let (status, e) = read
        .call_async("POST", "/api/write", Some(&setpoint(62)))
        .await;
    assert_eq!(status, 403, "read-only token writes: {e}");
    let (status, reply) = rw
        .call_async("POST", "/api/write", Some(&setpoint(63)))
        .await;
    assert_eq!(status, 200, "{reply}");
    edge.next_matching("/DCMD/").await;

    let audit = audit_when(&admin, "/api/audit?limit=1000", |a| {
        count(a, "forbidden") >= 3
    })
    .await;
    let writes: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "write")
        .collect();
    let who: Vec<(&str, &Value)> = writes
        .iter()
        .map(|e| (e["user"].as_str().unwrap(), &e["value"]))
        .collect();
    assert_eq!(
        who,
        [("admin", &json!(63)), ("otto", &json!(61))],
        "{audit}"
    );
    let forbidden = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "forbidden")
        .count();
    assert!(forbidden >= 3, "refusals are audited: {audit}");
    host.stop().await.unwrap();
}

#[tokio::test]
async fn a_cross_site_post_is_refused_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _edge) = born_with_setpoint(dir.path()).await;
    let operator = login(&host, "otto", Role::Operator).await;
    let (cookie, csrf) = session_of(&operator);
    let raw = Api::new(host.api_addr());
    let body = setpoint(70);
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        // A form on another site posting text/plain with the victim's cookie.
        (
            "another site's Origin",
            vec![
                ("Cookie", &cookie),
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain"),
            ],
        ),
        (
            "Sec-Fetch-Site: cross-site",
            vec![
                ("Cookie", &cookie),
                ("Sec-Fetch-Site", "cross-site"),
                ("Content-Type", "text/plain"),
            ],
        ),
        // Even holding the CSRF token, another origin is refused.
        (
            "another origin with the CSRF token",
            vec![
                ("Cookie", &cookie),
                ("X-CSRF-Token", &csrf),
                ("Origin", "http://evil.example"),
            ],
        ),
        // Same origin but no CSRF token.
        (
            "no CSRF token",
            vec![("Cookie", &cookie), ("Origin", "http://PLACEHOLDER")],
        ),
    ];
    let own_origin = format!("http://{}", host.api_addr());
    for (what, headers) in cases {
        let headers: Vec<(&str, &str)> = headers
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    if v == "http://PLACEHOLDER" {
                        own_origin.as_str()
                    } else {
                        v
                    },
                )
            })
            .collect();
        let (status, _, reply) = exchange(&raw, "POST", "/api/write", &body, &headers).await;
        assert_eq!(status, 403, "{what}: {reply}");
    }
    let audit = audit_when(&operator, "/api/audit?limit=1000", |a| {
        count(a, "origin_refused") + count(a, "csrf_refused") >= 4
    })
    .await;
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries.iter().all(|e| e["action"] != "write"),
        "no write reached the command path: {audit}"
    );
    let refused = entries
        .iter()
        .filter(|e| e["action"] == "origin_refused" || e["action"] == "csrf_refused")
        .count();
    assert_eq!(refused, 4, "{audit}");
    host.stop().await.unwrap();
}

#[tokio::test]
async fn the_setup_token_works_once() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), None).await;
    let file = dir.path().join(SETUP_TOKEN_FILE);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "setup token file readable by the service user only"
    );
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    let anonymous = Api::new(host.api_addr());
    let setup = |token: &str, user: &str| {
        json!({ "setup_token": token, "username": user, "password": TEST_PASSWORD }).to_string()
    };

    let (status, e) = anonymous
        .call_async("POST", "/auth/setup", Some(&setup("wrong", "eve")))
        .await;
    assert_eq!(status, 403, "{e}");
    let (status, created) = anonymous
        .call_async("POST", "/auth/setup", Some(&setup(&token, "root")))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["role"], "admin");
    assert!(!file.exists(), "the used token's file is removed");
    let (status, e) = anonymous
        .call_async("POST", "/auth/setup", Some(&setup(&token, "eve")))
        .await;
    assert_eq!(status, 403, "a second use: {e}");

    let root = Api::login_async(host.api_addr(), "root", TEST_PASSWORD).await;
    let (status, _) = root.call_async("GET", "/api/tree", None).await;
    assert_eq!(status, 200);
    let audit = audit_when(&root, "/api/audit", |a| {
        count(a, "setup_completed") == 1 && count(a, "setup_refused") >= 1
    })
    .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"setup_completed") && actions.contains(&"setup_refused"),
        "{actions:?}"
    );
    host.stop().await.unwrap();
}

#[tokio::test]
async fn repeated_wrong_passwords_are_slowed_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), None).await;
    let admin = admin(&host).await;
    let anonymous = Api::new(host.api_addr());
    let wrong = json!({ "username": "admin", "password": "not the password" }).to_string();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..7 {
        let (status, head, _) = exchange(&anonymous, "POST", "/auth/login", &wrong, &[]).await;
        if status == 429 {
            retry_after = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("retry-after:")
                    .map(|v| v.trim().to_owned())
            });
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    // Locked even with the right password, until the lockout ends.
    let right = json!({ "username": "admin", "password": TEST_PASSWORD }).to_string();
    let (status, _, _) = exchange(&anonymous, "POST", "/auth/login", &right, &[]).await;
    assert_eq!(status, 429);

    let audit = audit_when(&admin, "/api/audit?user=admin&limit=1000", |a| {
        count(a, "login_failed") >= 8 && count(a, "locked_out") >= 1
    })
    .await;
    assert_eq!(count(&audit, "login_failed"), 8, "{audit}");
    assert_eq!(audit["entries"][0]["outcome"], "rejected");
    assert_eq!(audit["entries"][0]["value"]["addr"], "127.0.0.1");
    host.stop().await.unwrap();
}

#[tokio::test]
async fn session_cookie_is_http_only_and_same_site_strict() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), None).await;
    let _admin = admin(&host).await;
    let body = json!({ "username": "admin", "password": TEST_PASSWORD }).to_string();
    let (status, head, _) = exchange(
        &Api::new(host.api_addr()),
        "POST",
        "/auth/login",
        &body,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let cookie = set_cookie(&head);
    assert!(cookie.starts_with("session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    host.stop().await.unwrap();
}

fn set_cookie(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no Set-Cookie in {head}"))
}

/// The host binary on `config`, its log captured.
fn run_host(config: &std::path::Path) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host-app"));
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn("host-app", command);
    proc.wait_for_line(WAIT, |l| l.starts_with("host-app: running as "));
    proc
}

fn stop(proc: &mut Proc) {
    let status = proc.terminate(WAIT);
    assert!(status.is_some_and(|s| s.success()), "{:?}", proc.output());
}

#[test]
fn no_password_or_token_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = host_config(dir.path(), None);
    let port = system_tests::free_port();
    config.api = ApiSection::plain(&format!("127.0.0.1:{port}"));
    let config = system_tests::config::write(&config, dir.path(), "host.toml");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_host-app"));
    add_user(bin, &config, "admin", "admin");
    let mut host = run_host(&config);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let wrong = "wrong horse battery staple";
    let body = json!({ "username": "admin", "password": wrong }).to_string();
    let (status, _, _) = Api::new(addr)
        .exchange("POST", "/auth/login", &body, &[])
        .unwrap();
    assert_eq!(status, 401);
    let admin = Api::login(addr, "admin", TEST_PASSWORD).unwrap();
    let token = admin.create_token("script", "read").unwrap();
    let (status, _) = Api::with_token(addr, &token)
        .request("GET", "/api/tree", "")
        .unwrap();
    assert_eq!(status, 200);
    let new_user =
        json!({ "username": "olaf", "password": "olaf's own password", "role": "operator" })
            .to_string();
    let (status, _) = admin.request("POST", "/auth/users", &new_user).unwrap();
    assert_eq!(status, 201);
    let (cookie, csrf) = session_of(&admin);
    let session = cookie.split_once('=').unwrap().1.to_owned();
    stop(&mut host);

    let log = host.output().join("\n");
    assert!(log.contains("login failed"), "the failure is logged: {log}");
    for secret in [
        TEST_PASSWORD,
        wrong,
        "olaf's own password",
        &token,
        &session,
        &csrf,
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}

/// The fingerprint the log states, `AB:CD:...`.
fn logged_fingerprint(proc: &mut Proc) -> String {
    // Logged before the banner `run_host` waited for.
    let line = proc
        .output()
        .iter()
        .find(|l| l.contains("fingerprint="))
        .cloned()
        .unwrap_or_else(|| proc.wait_for_line(WAIT, |l| l.contains("fingerprint=")));
    let at = line.find("fingerprint=").unwrap() + "fingerprint=".len();
    line[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == ':')
        .collect()
}

#[test]
fn https_self_signed_certificate_is_logged_served_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = host_config(dir.path(), None);
    let port = system_tests::free_port();
    config.api = ApiSection {
        https: Some(true),
        ..ApiSection::plain(&format!("127.0.0.1:{port}"))
    };
    let config = system_tests::config::write(&config, dir.path(), "host.toml");
    add_user(
        std::path::Path::new(env!("CARGO_BIN_EXE_host-app")),
        &config,
        "admin",
        "admin",
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let mut host = run_host(&config);
    let logged = logged_fingerprint(&mut host);
    let (served, head) = tls_login(addr);
    assert_eq!(logged, served, "the log states the served certificate");
    let cookie = set_cookie(&head);
    assert!(cookie.starts_with("__Host-session="), "{cookie}");
    assert!(
        cookie.contains("Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    for private in [web::cert::SELF_SIGNED_KEY, "auth.db"] {
        let mode = std::fs::metadata(dir.path().join(private))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{private} readable by the service user only"
        );
    }
    stop(&mut host);

    let mut again = run_host(&config);
    assert_eq!(logged_fingerprint(&mut again), logged, "reused on restart");
    assert_eq!(tls_login(addr).0, logged);
    stop(&mut again);
}

/// Logs in over TLS (trusting whatever certificate is served); the certificate's
/// fingerprint and the response head.
fn tls_login(addr: SocketAddr) -> (String, String) {
    use std::io::{Read as _, Write as _};
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(None));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Capture {
            seen: seen.clone(),
            provider,
        }))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect_timeout(&addr, WAIT).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = json!({ "username": "admin", "password": TEST_PASSWORD }).to_string();
    write!(
        tls,
        "POST /auth/login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let head = text.split("\r\n\r\n").next().unwrap().to_owned();
    let der = seen
        .lock()
        .unwrap()
        .clone()
        .expect("a certificate was served");
    (web::cert::fingerprint(&der), head)
}

/// Accepts any server certificate and keeps it, for the fingerprint comparison.
#[derive(Debug)]
struct Capture {
    seen: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn a_configured_certificate_is_served_and_a_bad_one_named() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["panel.example".to_owned()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("panel.pem"), dir.path().join("panel.key"));
    std::fs::write(&cert_file, generated.cert.pem()).unwrap();
    std::fs::write(&key_file, generated.signing_key.serialize_pem()).unwrap();
    let mut config = host_config(dir.path(), None);
    config.api.https = Some(true);
    config.api.tls = Some(system_tests::config::host::ApiTls {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
    });
    let parsed = host_app::config::HostConfig::from_toml(&config.to_toml()).unwrap();
    let host = host_app::host::Host::start(&parsed).await.unwrap();
    assert_eq!(
        host.api().fingerprint(),
        Some(web::cert::fingerprint(generated.cert.der()).as_str())
    );
    assert!(host.api().base_url().starts_with("https://"));
    assert!(
        !dir.path().join(web::cert::SELF_SIGNED_CERT).exists(),
        "no self-signed certificate when one is configured"
    );
    host.stop().await.unwrap();

    config.api.tls.as_mut().unwrap().key_file = dir.path().join("missing.key");
    let parsed = host_app::config::HostConfig::from_toml(&config.to_toml()).unwrap();
    let e = host_app::host::Host::start(&parsed)
        .await
        .err()
        .expect("no key");
    let message = e.to_string();
    assert!(
        message.contains("api.tls") && message.contains("missing.key"),
        "{message}"
    );
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let mut config = host_config(dir.path(), None);
    config.api.header_timeout_ms = Some(200);
    let parsed = host_app::config::HostConfig::from_toml(&config.to_toml()).unwrap();
    let host = host_app::host::Host::start(&parsed).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(host.api_addr())
        .await
        .unwrap();
    slow.write_all(b"GET /auth/setup HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(WAIT, slow.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "the server closes a connection stuck in its headers"
    );
    // Others are still served.
    let (status, _) = Api::new(host.api_addr())
        .call_async("GET", "/auth/setup", None)
        .await;
    assert_eq!(status, 200);
    host.stop().await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = host_config(dir.path(), None);
    config.api.max_connections = Some(1);
    let parsed = host_app::config::HostConfig::from_toml(&config.to_toml()).unwrap();
    let host = host_app::host::Host::start(&parsed).await.unwrap();
    // An idle connection holds the only slot (until the 10 s header timeout).
    let holder = tokio::net::TcpStream::connect(host.api_addr())
        .await
        .unwrap();
    let waiting = Api::new(host.api_addr());
    let mut second =
        tokio::spawn(async move { waiting.call_async("GET", "/auth/setup", None).await.0 });
    let early = tokio::time::timeout(Duration::from_millis(300), &mut second).await;
    assert!(
        early.is_err(),
        "a second connection is not served while the first holds the slot"
    );
    drop(holder);
    let status = tokio::time::timeout(WAIT, second)
        .await
        .expect("served once the slot is free");
    assert_eq!(status.unwrap(), 200);
    host.stop().await.unwrap();
}
