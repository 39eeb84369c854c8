//! The authentication service against a real SQLite store: password hashes,
//! sessions and their expiry, API tokens, throttling, first-run setup and
//! redaction of secrets.

mod common;

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{PASSWORD, config, contains, fixture};
use web::account::{AccountError, PasswordHasher, Username, check_password};
use web::session::SessionConfig;
use web::token::hash_token;
use web::{AuthError, AuthEventKind, Caller, HashParams, Role, Scope, Secret, Via};

#[test]
fn argon2id_round_trip_and_wrong_password() {
    let h = PasswordHasher::new(HashParams::insecure_for_tests()).unwrap();
    let pw = Secret::new(PASSWORD);
    let phc = h.hash(&pw).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
    assert!(h.verify(&pw, &phc));
    assert!(!h.verify(&Secret::new("correct horse batterY"), &phc));
    assert!(!h.verify(&pw, "not a phc string"));
    // Two hashes of one password differ by their salt.
    assert_ne!(phc, h.hash(&pw).unwrap());
}

#[test]
fn default_cost_is_19_mib_two_passes_one_lane() {
    assert_eq!(
        HashParams::default(),
        HashParams {
            m_kib: 19 * 1024,
            t: 2,
            p: 1
        }
    );
    let h = PasswordHasher::new(HashParams::default()).unwrap();
    let phc = h.hash(&Secret::new(PASSWORD)).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    // A hasher with other parameters still verifies it: the PHC string carries them.
    let cheap = PasswordHasher::new(HashParams::insecure_for_tests()).unwrap();
    assert!(cheap.verify(&Secret::new(PASSWORD), &phc));
}

#[test]
fn username_and_password_rules() {
    assert!(Username::parse("alice").is_ok());
    assert!(Username::parse("op-1.line_2").is_ok());
    for bad in ["", "Alice", "-x", "a b", "ümlaut", &"a".repeat(33)] {
        assert!(
            matches!(
                Username::parse(bad),
                Err(AccountError::InvalidUsername { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        check_password(&Secret::new("short")),
        Err(AccountError::PasswordTooShort)
    );
    assert_eq!(
        check_password(&Secret::new("x".repeat(2000))),
        Err(AccountError::PasswordTooLong)
    );
    assert!(check_password(&Secret::new(PASSWORD)).is_ok());
    let f = fixture(config());
    let err = f
        .auth
        .create_user(None, "bob", &Secret::new("short"), Role::Viewer)
        .unwrap_err();
    assert!(matches!(
        err,
        AuthError::Account(AccountError::PasswordTooShort)
    ));
    f.add_user("bob", Role::Viewer);
    assert!(matches!(
        f.auth
            .create_user(None, "bob", &Secret::new(PASSWORD), Role::Viewer)
            .unwrap_err(),
        AuthError::Store(web::StoreError::Duplicate { .. })
    ));
}

#[test]
fn unknown_user_and_wrong_password_fail_alike() {
    let f = fixture(config());
    f.add_user("alice", Role::Viewer);
    let wrong = f
        .auth
        .login("alice", &Secret::new("not the password"), None)
        .unwrap_err();
    let unknown = f
        .auth
        .login("mallory", &Secret::new(PASSWORD), None)
        .unwrap_err();
    assert!(matches!(wrong, AuthError::BadCredentials));
    assert!(matches!(unknown, AuthError::BadCredentials));
    assert_eq!(wrong.to_string(), unknown.to_string());
    // Names no account can have, and oversized passwords, fail the same way.
    let long_name = "x".repeat(10_000);
    let e = f
        .auth
        .login(&long_name, &Secret::new(PASSWORD), None)
        .unwrap_err();
    assert!(matches!(e, AuthError::BadCredentials));
    let e = f
        .auth
        .login("alice", &Secret::new("p".repeat(100_000)), None)
        .unwrap_err();
    assert!(matches!(e, AuthError::BadCredentials));
    let failed = f.events_of(AuthEventKind::LoginFailed);
    assert_eq!(failed.len(), 4);
    // The audit log keeps a bounded prefix of what was typed.
    assert_eq!(failed[2].username.as_deref().map(str::len), Some(64));
    assert_eq!(failed[0].detail, failed[1].detail);
    assert_eq!(failed[1].username.as_deref(), Some("mallory"));
}

#[test]
fn session_lives_until_idle_timeout_and_logout() {
    let f = fixture(config());
    f.add_user("alice", Role::Operator);
    let login = f.auth.login("alice", &Secret::new(PASSWORD), None).unwrap();
    assert_eq!(login.user.role, Role::Operator);
    // The token is 256 bits, base64url.
    assert_eq!(login.session_token.expose().len(), 43);
    // Stored only hashed: neither the token nor the CSRF token is on disk.
    let disk = f.db_bytes();
    assert!(!contains(&disk, login.session_token.expose()));
    assert!(!contains(&disk, login.csrf_token.expose()));
    let conn = rusqlite::Connection::open(&f.db).unwrap();
    let stored: Vec<u8> = conn
        .query_row("SELECT token_hash FROM auth_sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, hash_token(login.session_token.expose()).0.to_vec());

    let caller = f
        .auth
        .authenticate_session(&login.session_token)
        .unwrap()
        .unwrap();
    assert_eq!(caller.user, "alice");
    assert_eq!(
        caller.via,
        Via::Session {
            csrf_token: login.csrf_token.clone()
        }
    );
    // Activity keeps it alive past one idle timeout.
    let idle = SessionConfig::default().idle_timeout;
    for _ in 0..3 {
        f.clock.advance(idle - Duration::from_secs(60));
        assert!(
            f.auth
                .authenticate_session(&login.session_token)
                .unwrap()
                .is_some()
        );
    }
    // Idle for the whole timeout: gone, and deleted.
    f.clock.advance(idle);
    assert!(
        f.auth
            .authenticate_session(&login.session_token)
            .unwrap()
            .is_none()
    );
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM auth_sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);

    let again = f.auth.login("alice", &Secret::new(PASSWORD), None).unwrap();
    f.auth.logout(&again.session_token, None).unwrap();
    assert!(
        f.auth
            .authenticate_session(&again.session_token)
            .unwrap()
            .is_none()
    );
    assert_eq!(f.events_of(AuthEventKind::Logout).len(), 1);
    // A made-up token is no session.
    assert!(
        f.auth
            .authenticate_session(&Secret::new("forged"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn session_ends_at_absolute_lifetime_however_busy() {
    let mut cfg = config();
    cfg.session.idle_timeout = Duration::from_secs(600);
    cfg.session.absolute_lifetime = Duration::from_secs(3600);
    let f = fixture(cfg);
    f.add_user("alice", Role::Viewer);
    let login = f.auth.login("alice", &Secret::new(PASSWORD), None).unwrap();
    // Busy every 5 minutes for 55 minutes.
    for _ in 0..11 {
        f.clock.advance(Duration::from_secs(300));
        assert!(
            f.auth
                .authenticate_session(&login.session_token)
                .unwrap()
                .is_some()
        );
    }
    f.clock.advance(Duration::from_secs(300));
    assert!(
        f.auth
            .authenticate_session(&login.session_token)
            .unwrap()
            .is_none()
    );
}

#[test]
fn expired_sessions_are_purged() {
    let f = fixture(config());
    f.add_user("alice", Role::Viewer);
    f.auth.login("alice", &Secret::new(PASSWORD), None).unwrap();
    f.auth.login("alice", &Secret::new(PASSWORD), None).unwrap();
    assert_eq!(f.auth.purge_expired_sessions().unwrap(), 0);
    f.clock.advance(SessionConfig::default().idle_timeout);
    assert_eq!(f.auth.purge_expired_sessions().unwrap(), 2);
}

#[test]
fn cookie_attributes_with_and_without_https() {
    let token = Secret::new("tok");
    let plain = SessionConfig::default();
    assert_eq!(
        plain.set_cookie(&token).expose(),
        "session=tok; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"
    );
    assert_eq!(
        plain.clear_cookie(),
        "session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    );
    let https = SessionConfig {
        https: true,
        ..SessionConfig::default()
    };
    assert_eq!(
        https.set_cookie(&token).expose(),
        "__Host-session=tok; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=43200"
    );
    // Under HTTPS only the prefixed cookie counts.
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("cookie", "session=plain; other=1".parse().unwrap());
    assert!(https.token_from(&headers).is_none());
    assert_eq!(plain.token_from(&headers).unwrap().expose(), "plain");
    headers.insert("cookie", "a=b; __Host-session=sec".parse().unwrap());
    assert_eq!(https.token_from(&headers).unwrap().expose(), "sec");
}

fn session_caller(f: &common::Fixture, name: &str) -> Caller {
    let login = f.auth.login(name, &Secret::new(PASSWORD), None).unwrap();
    f.auth
        .authenticate_session(&login.session_token)
        .unwrap()
        .unwrap()
}

#[test]
fn api_tokens_are_shown_once_stored_hashed_and_revocable() {
    let f = fixture(config());
    f.add_user("script", Role::Operator);
    let owner = session_caller(&f, "script");
    let read = f
        .auth
        .create_api_token(&owner, "grafana", Scope::Read)
        .unwrap();
    let write = f
        .auth
        .create_api_token(&owner, "loader", Scope::ReadWrite)
        .unwrap();
    assert!(read.token.expose().starts_with(web::API_TOKEN_PREFIX));
    assert!(!contains(&f.db_bytes(), read.token.expose()));

    let r = f.auth.authenticate_bearer(&read.token).unwrap().unwrap();
    assert_eq!(
        r.via,
        Via::ApiToken {
            id: read.id,
            scope: Scope::Read
        }
    );
    assert_eq!(r.role, Role::Operator);
    assert!(!r.may_write());
    let w = f.auth.authenticate_bearer(&write.token).unwrap().unwrap();
    assert!(w.may_write());

    let listed = f.auth.list_api_tokens(&owner).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(!format!("{listed:?}").contains(read.token.expose()));

    assert!(matches!(
        f.auth.create_api_token(&owner, "  ", Scope::Read),
        Err(AuthError::BadRequest(_))
    ));
    // A token cannot mint tokens.
    assert!(matches!(
        f.auth.create_api_token(&w, "child", Scope::ReadWrite),
        Err(AuthError::Forbidden(_))
    ));
    f.auth.revoke_api_token(&owner, read.id).unwrap();
    assert!(f.auth.authenticate_bearer(&read.token).unwrap().is_none());
    assert!(
        f.auth
            .authenticate_bearer(&Secret::new("spk_forged"))
            .unwrap()
            .is_none()
    );
    assert_eq!(f.events_of(AuthEventKind::ApiTokenCreated).len(), 2);
    assert_eq!(f.events_of(AuthEventKind::ApiTokenRevoked).len(), 1);
}

#[test]
fn throttling_per_account_refuses_even_the_right_password() {
    let f = fixture(config());
    f.add_user("alice", Role::Viewer);
    // Three failures from three addresses: the account locks.
    for i in 1..=3u8 {
        let addr = Some(IpAddr::from([192, 0, 2, i]));
        let e = f
            .auth
            .login("alice", &Secret::new("guess guess guess"), addr)
            .unwrap_err();
        assert!(matches!(e, AuthError::BadCredentials));
    }
    let locked = f.events_of(AuthEventKind::LockedOut);
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert!(
        locked[0].detail.contains("account \"alice\""),
        "{}",
        locked[0].detail
    );
    let e = f
        .auth
        .login(
            "alice",
            &Secret::new(PASSWORD),
            Some(IpAddr::from([192, 0, 2, 9])),
        )
        .unwrap_err();
    let AuthError::Throttled { retry_after } = e else {
        panic!("expected Throttled, got {e:?}");
    };
    assert_eq!(retry_after, Duration::from_secs(60));
    // Every failure is audited, the refused attempt too.
    assert_eq!(f.events_of(AuthEventKind::LoginFailed).len(), 4);
    // After the lockout the right password works again.
    f.clock.advance(Duration::from_secs(61));
    assert!(f.auth.login("alice", &Secret::new(PASSWORD), None).is_ok());
    // Audit events are stored too.
    let stored = f
        .auth
        .recent_audit(Some(AuthEventKind::LockedOut), 10)
        .unwrap();
    assert_eq!(stored.len(), 1);
}

#[test]
fn throttling_per_address_spans_accounts() {
    let f = fixture(config());
    f.add_user("alice", Role::Viewer);
    let addr = Some(IpAddr::from([198, 51, 100, 7]));
    for name in ["u1", "u2", "u3"] {
        f.auth
            .login(name, &Secret::new(PASSWORD), addr)
            .unwrap_err();
    }
    let locked = f.events_of(AuthEventKind::LockedOut);
    assert!(
        locked
            .iter()
            .any(|e| e.detail.contains("address 198.51.100.7")),
        "{locked:?}"
    );
    assert!(matches!(
        f.auth.login("alice", &Secret::new(PASSWORD), addr),
        Err(AuthError::Throttled { .. })
    ));
    // Another address is not affected.
    assert!(
        f.auth
            .login(
                "alice",
                &Secret::new(PASSWORD),
                Some(IpAddr::from([198, 51, 100, 8]))
            )
            .is_ok()
    );
}

#[test]
fn setup_token_works_once_and_setup_closes_after_first_admin() {
    let f = fixture(config());
    assert!(f.auth.setup_required().unwrap());
    let path = f.dir.path().join("setup-token");
    let token = f.auth.begin_setup(&path).unwrap().expect("setup token");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().trim(),
        token.expose()
    );

    let pw = Secret::new(PASSWORD);
    assert!(matches!(
        f.auth
            .complete_setup(&Secret::new("wrong"), "root", &pw, None),
        Err(AuthError::SetupTokenInvalid)
    ));
    // Bad input does not use the token up.
    assert!(matches!(
        f.auth
            .complete_setup(&token, "root", &Secret::new("short"), None),
        Err(AuthError::Account(_))
    ));
    let admin = f.auth.complete_setup(&token, "root", &pw, None).unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert!(!path.exists(), "the used token file is removed");
    assert!(!f.auth.setup_required().unwrap());
    assert!(matches!(
        f.auth.complete_setup(&token, "root2", &pw, None),
        Err(AuthError::SetupClosed)
    ));
    assert!(f.auth.begin_setup(&path).unwrap().is_none());
    assert_eq!(f.events_of(AuthEventKind::SetupCompleted).len(), 1);
    assert_eq!(f.events_of(AuthEventKind::SetupRefused).len(), 2);
    assert!(f.auth.login("root", &pw, None).is_ok());
}

#[test]
fn setup_token_file_replaces_a_wider_one() {
    let f = fixture(config());
    let path = f.dir.path().join("setup-token");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let first = f.auth.begin_setup(&path).unwrap().unwrap();
    let second = f.auth.begin_setup(&path).unwrap().unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Only the newest token opens setup.
    assert!(matches!(
        f.auth
            .complete_setup(&first, "root", &Secret::new(PASSWORD), None),
        Err(AuthError::SetupTokenInvalid)
    ));
    assert!(
        f.auth
            .complete_setup(&second, "root", &Secret::new(PASSWORD), None)
            .is_ok()
    );
}

#[test]
fn admin_rules_keep_the_last_admin() {
    let f = fixture(config());
    f.add_user("root", Role::Admin);
    f.add_user("op", Role::Operator);
    let op = session_caller(&f, "op");
    let root = session_caller(&f, "root");
    assert!(matches!(
        f.auth
            .create_user(Some(&op), "x1", &Secret::new(PASSWORD), Role::Admin),
        Err(AuthError::Forbidden(_))
    ));
    assert!(matches!(
        f.auth.delete_user(Some(&root), "root"),
        Err(AuthError::LastAdmin)
    ));
    assert!(matches!(
        f.auth.set_role(Some(&root), "root", Role::Viewer),
        Err(AuthError::LastAdmin)
    ));
    f.auth.set_role(Some(&root), "op", Role::Viewer).unwrap();
    // A password change ends the account's sessions.
    let login = f.auth.login("op", &Secret::new(PASSWORD), None).unwrap();
    f.auth
        .set_password(Some(&root), "op", &Secret::new("another long password"))
        .unwrap();
    assert!(
        f.auth
            .authenticate_session(&login.session_token)
            .unwrap()
            .is_none()
    );
    f.auth.delete_user(Some(&root), "op").unwrap();
    assert_eq!(f.auth.list_users(Some(&root)).unwrap().len(), 1);
}

#[test]
fn debug_output_never_shows_secrets() {
    let f = fixture(config());
    f.add_user("alice", Role::Operator);
    let login = f.auth.login("alice", &Secret::new(PASSWORD), None).unwrap();
    let caller = f
        .auth
        .authenticate_session(&login.session_token)
        .unwrap()
        .unwrap();
    let token = f.auth.create_api_token(&caller, "t", Scope::Read).unwrap();
    let user =
        web::store::AuthStore::user_by_name(&web::SqliteStore::open(&f.db).unwrap(), "alice")
            .unwrap()
            .unwrap();
    let secret = Secret::new(PASSWORD);
    let printed = format!(
        "{secret:?} {secret} {login:?} {caller:?} {token:?} {user:?} {:?}",
        f.auth
    );
    for s in [
        PASSWORD,
        login.session_token.expose(),
        login.csrf_token.expose(),
        token.token.expose(),
        &user.password_hash,
    ] {
        assert!(!printed.contains(s), "{s} leaked into {printed}");
    }
    assert!(printed.contains("redacted"));
}

#[test]
fn audit_events_are_stored_and_purged_by_age() {
    let f = fixture(config());
    f.add_user("alice", Role::Viewer);
    f.auth
        .login("alice", &Secret::new("wrong password!"), None)
        .unwrap_err();
    f.clock.advance(Duration::from_secs(3600));
    f.auth.login("alice", &Secret::new(PASSWORD), None).unwrap();
    let all = f.auth.recent_audit(None, 10).unwrap();
    let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            AuthEventKind::LoginSucceeded,
            AuthEventKind::LoginFailed,
            AuthEventKind::UserCreated
        ]
    );
    assert_eq!(
        f.auth.purge_audit(Duration::from_secs(1800), 100).unwrap(),
        2
    );
    let left = f.auth.recent_audit(None, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].kind, AuthEventKind::LoginSucceeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_periodic_purge_keeps_account_events_as_long_as_configured() {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let f = fixture(config());
    // A year, where the default is 90 days.
    let retention = web::state::AccountAuditRetention::from_keys(365, 1000);
    f.add_user("alice", Role::Viewer);
    f.auth
        .login("alice", &Secret::new("wrong password!"), None)
        .unwrap_err();
    f.clock.advance(100 * DAY);
    assert_eq!(
        f.auth
            .purge_audit(retention.keep, retention.max_rows)
            .unwrap(),
        0,
        "100 days old, past the default, within the configured year"
    );
    f.clock.advance(266 * DAY);
    f.auth.login("alice", &Secret::new(PASSWORD), None).unwrap();

    let shutdown = tokio_util::sync::CancellationToken::new();
    let purge = tokio::spawn(web::state::purge_expired(
        f.auth.clone(),
        retention,
        shutdown.clone(),
    ));
    let mut left = Vec::new();
    for _ in 0..100 {
        left = f.auth.recent_audit(None, 10).unwrap();
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    purge.await.unwrap();
    let kinds: Vec<_> = left.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [AuthEventKind::LoginSucceeded],
        "past the configured year only the recent login is kept"
    );
}
