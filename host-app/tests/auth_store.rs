//! The panel's account store contract ([`web::AuthStore`]), checked on both backends: the
//! same tests run on web's SQLite file and on the host's PostgreSQL store (a throw-away
//! server on loopback). Accounts and unique names, the one first admin, roles and
//! passwords, the last admin kept (also against stores racing to remove two admins at
//! once), deletion with its sessions and tokens, sessions and their purge, API
//! tokens, the audit table, and everything kept across a reopen; on PostgreSQL also two
//! stores on one database (two host instances) seeing each other's changes at once.

use std::sync::{Arc, Barrier};

use host_app::api::postgres_accounts::PostgresAuthStore;
use host_app::history::PostgresOptions;
use host_app_testkit::postgres::TempPostgres;
use web::store::{AuthStore, NewUser, SessionRecord, StoreError};
use web::token::{TokenHash, hash_token};
use web::{AuthEvent, AuthEventKind, Role, Scope, SqliteStore};

/// A backend under test: a fresh store, and another handle on the same accounts.
trait Backend: Sized {
    fn create() -> (Self, Arc<dyn AuthStore>);
    /// A second store on the same accounts: a reopen (SQLite) or another instance
    /// (PostgreSQL).
    fn open_again(&self) -> Arc<dyn AuthStore>;
}

struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    fn create() -> (Self, Arc<dyn AuthStore>) {
        let dir = tempfile::tempdir().unwrap();
        let backend = Sqlite(dir);
        let store = backend.open_again();
        (backend, store)
    }
    fn open_again(&self) -> Arc<dyn AuthStore> {
        Arc::new(SqliteStore::open(&self.0.path().join("auth.db")).expect("open auth.db"))
    }
}

struct Postgres(String);

impl Backend for Postgres {
    fn create() -> (Self, Arc<dyn AuthStore>) {
        let url = TempPostgres::shared().unwrap().fresh_database().unwrap();
        let backend = Postgres(url);
        let store = backend.open_again();
        (backend, store)
    }
    fn open_again(&self) -> Arc<dyn AuthStore> {
        Arc::new(
            PostgresAuthStore::open(&PostgresOptions::new(&self.0))
                .expect("open PostgreSQL accounts"),
        )
    }
}

host_app_testkit::backend_suite![
    accounts_round_trip_and_names_are_unique,
    only_one_first_admin_is_ever_created,
    roles_and_passwords_change_and_unknown_ids_are_named,
    the_last_admin_is_never_demoted_nor_deleted_even_by_racing_stores,
    deleting_an_account_deletes_its_sessions_and_tokens,
    sessions_are_found_touched_ended_and_purged,
    api_tokens_belong_to_their_owner,
    audit_events_come_newest_first_by_kind_and_are_purged_by_age_and_count,
    a_second_store_sees_every_change_at_once,
];

const T0: i64 = 1_700_000_000_000;

fn new_user(name: &str, role: Role) -> NewUser<'_> {
    NewUser {
        username: name,
        role,
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        created_ms: T0,
    }
}

fn add(store: &dyn AuthStore, name: &str, role: Role) -> i64 {
    store
        .create_user(&new_user(name, role))
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
}

fn token(n: u8) -> TokenHash {
    hash_token(&format!("token {n}"))
}

fn session(n: u8, user_id: i64, created_ms: i64, last_seen_ms: i64) -> SessionRecord {
    SessionRecord {
        token_hash: token(n),
        user_id,
        created_ms,
        last_seen_ms,
    }
}

fn event(at_ms: i64, kind: AuthEventKind, username: Option<&str>) -> AuthEvent {
    AuthEvent {
        at_ms,
        kind,
        username: username.map(str::to_owned),
        addr: Some("127.0.0.1".into()),
        detail: format!("at {at_ms}"),
    }
}

fn accounts_round_trip_and_names_are_unique<B: Backend>() {
    let (_b, store) = B::create();
    let zed = add(&*store, "zed", Role::Viewer);
    let ann = add(&*store, "ann", Role::Operator);
    assert_ne!(zed, ann);

    let got = store.user_by_name("ann").unwrap().expect("ann stored");
    assert_eq!(
        (got.id, got.username.as_str(), got.role, got.created_ms),
        (ann, "ann", Role::Operator, T0)
    );
    assert_eq!(
        got.password_hash,
        new_user("ann", Role::Operator).password_hash
    );
    assert_eq!(store.user_by_id(zed).unwrap().unwrap().username, "zed");
    assert!(store.user_by_name("nobody").unwrap().is_none());
    assert!(store.user_by_id(zed + ann + 100).unwrap().is_none());

    let names: Vec<String> = store
        .list_users()
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["ann", "zed"], "ordered by name");

    let again = store.create_user(&new_user("ann", Role::Admin));
    assert!(
        matches!(&again, Err(StoreError::Duplicate { what }) if what.contains("ann")),
        "{again:?}"
    );
    assert_eq!(
        store.list_users().unwrap().len(),
        2,
        "the duplicate left nothing"
    );
}

fn only_one_first_admin_is_ever_created<B: Backend>() {
    let (b, store) = B::create();
    add(&*store, "viewer", Role::Viewer);
    assert_eq!(store.count_admins().unwrap(), 0);
    // Several stores (instances, for PostgreSQL) race for the first admin: one wins.
    const RACERS: usize = 4;
    let stores: Vec<Arc<dyn AuthStore>> = (0..RACERS).map(|_| b.open_again()).collect();
    let barrier = Arc::new(Barrier::new(RACERS));
    let results: Vec<Result<i64, StoreError>> = std::thread::scope(|s| {
        let racers: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, racer)| {
                let barrier = Arc::clone(&barrier);
                s.spawn(move || {
                    let name = format!("admin{i}");
                    barrier.wait();
                    racer.create_first_admin(&new_user(&name, Role::Admin))
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let won = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::AdminExists)))
        .count();
    assert_eq!((won, refused), (1, RACERS - 1), "{results:?}");
    assert_eq!(store.count_admins().unwrap(), 1);
    let late = store.create_first_admin(&new_user("late", Role::Admin));
    assert!(matches!(late, Err(StoreError::AdminExists)), "{late:?}");
    assert!(store.user_by_name("late").unwrap().is_none());
}

fn roles_and_passwords_change_and_unknown_ids_are_named<B: Backend>() {
    let (_b, store) = B::create();
    add(&*store, "keeper", Role::Admin);
    let id = add(&*store, "op", Role::Operator);
    store.set_role(id, Role::Admin).unwrap();
    assert_eq!(store.user_by_id(id).unwrap().unwrap().role, Role::Admin);
    assert_eq!(store.count_admins().unwrap(), 2);
    store.set_role(id, Role::Viewer).unwrap();
    assert_eq!(store.count_admins().unwrap(), 1);
    store.set_password_hash(id, "$argon2id$new").unwrap();
    assert_eq!(
        store.user_by_name("op").unwrap().unwrap().password_hash,
        "$argon2id$new"
    );

    let missing = id + 1000;
    for result in [
        store.set_role(missing, Role::Admin),
        store.set_password_hash(missing, "x"),
        store.delete_user(missing),
    ] {
        assert!(
            matches!(&result, Err(StoreError::NotFound { what }) if what.contains(&missing.to_string())),
            "{result:?}"
        );
    }
}

fn the_last_admin_is_never_demoted_nor_deleted_even_by_racing_stores<B: Backend>() {
    let (b, store) = B::create();
    let root = add(&*store, "root", Role::Admin);
    let viewer = add(&*store, "viewer", Role::Viewer);
    for refused in [
        store.set_role(root, Role::Operator),
        store.delete_user(root),
    ] {
        assert!(matches!(refused, Err(StoreError::LastAdmin)), "{refused:?}");
    }
    assert_eq!(store.user_by_id(root).unwrap().unwrap().role, Role::Admin);
    store.set_role(root, Role::Admin).unwrap();
    store.delete_user(viewer).unwrap();

    // Two admins; two stores (instances, for PostgreSQL) at once remove one each: one
    // wins, the other is refused, one admin is left. Several rounds.
    let (one, two) = (b.open_again(), b.open_again());
    for round in 0..5 {
        let other = add(&*store, &format!("other{round}"), Role::Admin);
        let barrier = Barrier::new(2);
        let (demoted, deleted) = std::thread::scope(|s| {
            let demote = s.spawn(|| {
                barrier.wait();
                one.set_role(root, Role::Viewer)
            });
            let delete = s.spawn(|| {
                barrier.wait();
                two.delete_user(other)
            });
            (demote.join().unwrap(), delete.join().unwrap())
        });
        let refused = [&demoted, &deleted]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::LastAdmin)))
            .count();
        assert_eq!(
            (demoted.is_ok() as usize + deleted.is_ok() as usize, refused),
            (1, 1),
            "round {round}: {demoted:?} {deleted:?}"
        );
        assert_eq!(store.count_admins().unwrap(), 1, "round {round}");
        // Back to root as the one admin for the next round.
        if demoted.is_ok() {
            store.set_role(root, Role::Admin).unwrap();
            store.delete_user(other).unwrap();
        }
    }
}

fn deleting_an_account_deletes_its_sessions_and_tokens<B: Backend>() {
    let (_b, store) = B::create();
    let gone = add(&*store, "gone", Role::Operator);
    let kept = add(&*store, "kept", Role::Operator);
    store.insert_session(&session(1, gone, T0, T0)).unwrap();
    store.insert_session(&session(2, kept, T0, T0)).unwrap();
    store
        .insert_api_token(&token(10), gone, "script", Scope::Read, T0)
        .unwrap();
    store
        .insert_api_token(&token(11), kept, "script", Scope::Read, T0)
        .unwrap();

    store.delete_user(gone).unwrap();
    assert!(store.user_by_id(gone).unwrap().is_none());
    assert!(store.session(&token(1)).unwrap().is_none());
    assert!(store.api_token(&token(10)).unwrap().is_none());
    assert!(store.list_api_tokens(gone).unwrap().is_empty());
    assert!(store.session(&token(2)).unwrap().is_some(), "others kept");
    assert!(store.api_token(&token(11)).unwrap().is_some());
}

fn sessions_are_found_touched_ended_and_purged<B: Backend>() {
    let (_b, store) = B::create();
    let u = add(&*store, "u", Role::Viewer);
    let v = add(&*store, "v", Role::Viewer);
    store.insert_session(&session(1, u, T0, T0)).unwrap();
    assert_eq!(
        store.session(&token(1)).unwrap(),
        Some(session(1, u, T0, T0))
    );
    assert!(store.session(&token(99)).unwrap().is_none());
    assert!(
        store.insert_session(&session(1, u, T0, T0)).is_err(),
        "a token hash names one session"
    );

    store.touch_session(&token(1), T0 + 5).unwrap();
    assert_eq!(
        store.session(&token(1)).unwrap().unwrap().last_seen_ms,
        T0 + 5
    );
    store.delete_session(&token(1)).unwrap();
    assert!(store.session(&token(1)).unwrap().is_none());
    store.delete_session(&token(1)).unwrap(); // an unknown token is fine

    store.insert_session(&session(2, u, T0, T0)).unwrap();
    store.insert_session(&session(3, u, T0, T0)).unwrap();
    store.insert_session(&session(4, v, T0, T0)).unwrap();
    store.delete_user_sessions(u).unwrap();
    assert!(store.session(&token(2)).unwrap().is_none());
    assert!(store.session(&token(3)).unwrap().is_none());
    assert!(store.session(&token(4)).unwrap().is_some());

    // Purge: idle at or before the first bound, or created at or before the second.
    store
        .insert_session(&session(5, v, T0 + 100, T0 + 200))
        .unwrap(); // idle
    store
        .insert_session(&session(6, v, T0 + 50, T0 + 900))
        .unwrap(); // too old
    store
        .insert_session(&session(7, v, T0 + 300, T0 + 900))
        .unwrap(); // alive
    store.delete_session(&token(4)).unwrap();
    assert_eq!(store.purge_sessions(T0 + 200, T0 + 50).unwrap(), 2);
    assert!(store.session(&token(5)).unwrap().is_none());
    assert!(store.session(&token(6)).unwrap().is_none());
    assert!(store.session(&token(7)).unwrap().is_some());
    assert_eq!(store.purge_sessions(T0 + 200, T0 + 50).unwrap(), 0);
}

fn api_tokens_belong_to_their_owner<B: Backend>() {
    let (_b, store) = B::create();
    let owner = add(&*store, "owner", Role::Admin);
    let other = add(&*store, "other", Role::Admin);
    let first = store
        .insert_api_token(&token(1), owner, "backup", Scope::Read, T0)
        .unwrap();
    let second = store
        .insert_api_token(&token(2), owner, "scada", Scope::ReadWrite, T0 + 1)
        .unwrap();
    assert_ne!(first, second);

    let got = store.api_token(&token(2)).unwrap().expect("token stored");
    assert_eq!(
        (
            got.id,
            got.user_id,
            got.name.as_str(),
            got.scope,
            got.created_ms
        ),
        (second, owner, "scada", Scope::ReadWrite, T0 + 1)
    );
    assert_eq!(got.token_hash, token(2));
    assert_eq!(got.last_used_ms, None);
    assert!(store.api_token(&token(3)).unwrap().is_none());

    store.touch_api_token(first, T0 + 60_000).unwrap();
    let listed = store.list_api_tokens(owner).unwrap();
    let ids: Vec<i64> = listed.iter().map(|t| t.id).collect();
    assert_eq!(ids, [first, second], "in creation order");
    assert_eq!(listed[0].last_used_ms, Some(T0 + 60_000));
    assert!(store.list_api_tokens(other).unwrap().is_empty());

    assert!(!store.delete_api_token(other, first).unwrap(), "not theirs");
    assert!(store.api_token(&token(1)).unwrap().is_some());
    assert!(store.delete_api_token(owner, first).unwrap());
    assert!(store.api_token(&token(1)).unwrap().is_none());
    assert!(
        !store.delete_api_token(owner, first).unwrap(),
        "already gone"
    );
}

fn audit_events_come_newest_first_by_kind_and_are_purged_by_age_and_count<B: Backend>() {
    let (_b, store) = B::create();
    let events = [
        event(T0, AuthEventKind::LoginFailed, Some("mallory")),
        event(T0 + 1, AuthEventKind::LoginSucceeded, Some("ann")),
        event(T0 + 2, AuthEventKind::LoginFailed, None),
        event(T0 + 3, AuthEventKind::UserCreated, Some("zed")),
    ];
    for e in &events {
        store.append_audit(e).unwrap();
    }
    let all = store.recent_audit(None, 10).unwrap();
    let newest_first: Vec<AuthEvent> = events.iter().rev().cloned().collect();
    assert_eq!(all, newest_first);
    assert_eq!(store.recent_audit(None, 2).unwrap(), newest_first[..2]);
    assert_eq!(
        store
            .recent_audit(Some(AuthEventKind::LoginFailed), 10)
            .unwrap(),
        [events[2].clone(), events[0].clone()]
    );
    assert!(
        store
            .recent_audit(Some(AuthEventKind::Logout), 10)
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        store.purge_audit(T0 + 2, 100).unwrap(),
        2,
        "strictly older only"
    );
    assert_eq!(
        store.recent_audit(None, 10).unwrap(),
        [events[3].clone(), events[2].clone()]
    );

    let later = [
        event(T0 + 4, AuthEventKind::LoginFailed, Some("mallory")),
        event(T0 + 5, AuthEventKind::LoginFailed, Some("mallory")),
    ];
    for e in &later {
        store.append_audit(e).unwrap();
    }
    assert_eq!(
        store.purge_audit(i64::MIN, 3).unwrap(),
        1,
        "the oldest beyond the newest 3"
    );
    assert_eq!(
        store.recent_audit(None, 10).unwrap(),
        [later[1].clone(), later[0].clone(), events[3].clone()]
    );
    assert_eq!(
        store.purge_audit(i64::MIN, 3).unwrap(),
        0,
        "3 kept, none over"
    );
    assert_eq!(
        store.purge_audit(i64::MIN, 0).unwrap(),
        3,
        "a cap of 0 keeps none"
    );
}

fn a_second_store_sees_every_change_at_once<B: Backend>() {
    let (b, a) = B::create();
    let id = add(&*a, "ann", Role::Viewer);
    a.insert_session(&session(1, id, T0, T0)).unwrap();
    let token_id = a
        .insert_api_token(&token(2), id, "script", Scope::Read, T0)
        .unwrap();
    a.append_audit(&event(T0, AuthEventKind::UserCreated, Some("ann")))
        .unwrap();

    // For SQLite a reopen of the file; for PostgreSQL another instance, both open.
    let b = b.open_again();
    assert_eq!(b.user_by_name("ann").unwrap().unwrap().id, id);
    assert_eq!(b.session(&token(1)).unwrap(), Some(session(1, id, T0, T0)));
    assert_eq!(b.api_token(&token(2)).unwrap().unwrap().id, token_id);
    assert_eq!(b.recent_audit(None, 1).unwrap().len(), 1);

    a.set_role(id, Role::Operator).unwrap();
    assert_eq!(b.user_by_id(id).unwrap().unwrap().role, Role::Operator);
    a.delete_session(&token(1)).unwrap();
    assert!(b.session(&token(1)).unwrap().is_none());
    assert!(a.delete_api_token(id, token_id).unwrap());
    assert!(b.api_token(&token(2)).unwrap().is_none());
    b.delete_user(id).unwrap();
    assert!(a.user_by_name("ann").unwrap().is_none());
}

#[test]
fn postgres_accounts_open_at_once_from_many_instances() {
    let url = TempPostgres::shared().unwrap().fresh_database().unwrap();
    const INSTANCES: usize = 6;
    let barrier = Barrier::new(INSTANCES);
    std::thread::scope(|s| {
        let opens: Vec<_> = (0..INSTANCES)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    PostgresAuthStore::open(&PostgresOptions::new(&url))
                })
            })
            .collect();
        for open in opens {
            open.join().unwrap().expect("every instance opens");
        }
    });
}

#[test]
fn postgres_accounts_live_beside_the_history_in_tables_of_their_own() {
    use host_app::history::{HistoryStore, MetricKey, MetricMeta, PostgresStore};
    let url = TempPostgres::shared().unwrap().fresh_database().unwrap();
    let history = PostgresStore::open(&PostgresOptions::new(&url)).unwrap();
    let accounts = PostgresAuthStore::open(&PostgresOptions::new(&url)).unwrap();
    add(&accounts, "ann", Role::Viewer);
    let key = MetricKey::node("G", "E", "Temp");
    let meta = MetricMeta {
        datatype: "Double".into(),
        units: None,
    };
    let id = history.register_metric(&key, &meta).unwrap();
    assert_eq!(history.resolve_metric(&key).unwrap(), Some(id));
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' \
             AND tablename LIKE 'auth\\_%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "auth_api_tokens",
            "auth_audit",
            "auth_schema",
            "auth_sessions",
            "auth_users"
        ]
    );
}

#[test]
fn postgres_accounts_of_a_newer_layout_are_refused() {
    let url = TempPostgres::shared().unwrap().fresh_database().unwrap();
    drop(PostgresAuthStore::open(&PostgresOptions::new(&url)).unwrap());
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    client
        .batch_execute("UPDATE auth_schema SET version = 99")
        .unwrap();
    let refused = PostgresAuthStore::open(&PostgresOptions::new(&url))
        .err()
        .expect("a newer layout is refused")
        .to_string();
    assert!(refused.contains("newer layout (99"), "{refused}");
}

/// A host moved from a SQLite to a PostgreSQL history keeps its accounts: the state
/// directory's `auth.db` is copied into the empty PostgreSQL accounts once (password
/// hashes and API tokens as stored, so both keep working), and never again.
#[test]
fn a_host_moved_to_postgres_takes_its_local_accounts_along() {
    let state = tempfile::tempdir().unwrap();
    let config = web::AuthConfig {
        hash: web::HashParams::insecure_for_tests(),
        ..web::AuthConfig::default()
    };
    let auth = |store: Arc<dyn AuthStore>| {
        web::Auth::builder(store)
            .config(config.clone())
            .build()
            .unwrap()
    };
    let password = web::Secret::new("a long enough password");
    let token = format!("{}migrated-token-value", web::API_TOKEN_PREFIX);
    {
        let local: Arc<dyn AuthStore> =
            Arc::new(web::state::open_store(&state.path().join("auth.db")).unwrap());
        let ann = auth(local.clone())
            .create_user(None, "ann", &password, Role::Admin)
            .unwrap();
        local
            .insert_api_token(&hash_token(&token), ann.id, "scada", Scope::Read, T0)
            .unwrap();
        auth(local.clone())
            .create_user(None, "bob", &password, Role::Viewer)
            .unwrap();
    }

    let url = TempPostgres::shared().unwrap().fresh_database().unwrap();
    let history = host_app::history::HistoryConfig::from_toml(&format!(
        "[history]\nbackend = \"postgres\"\nurl = \"{url}\"\n"
    ))
    .unwrap();
    let moved = host_app::api::access::open_store(state.path(), &history).unwrap();
    let names: Vec<(String, Role)> = moved
        .list_users()
        .unwrap()
        .into_iter()
        .map(|u| (u.username, u.role))
        .collect();
    assert_eq!(
        names,
        [
            ("ann".to_owned(), Role::Admin),
            ("bob".to_owned(), Role::Viewer)
        ]
    );
    let auth = auth(moved);
    auth.login("ann", &password, None)
        .expect("the old password logs in");
    let caller = auth
        .authenticate_bearer(&web::Secret::new(token.clone()))
        .unwrap()
        .expect("the old API token is valid");
    assert_eq!(caller.user, "ann");

    // A later start (or another instance) copies nothing again.
    auth.delete_user(None, "bob").unwrap();
    let again = host_app::api::access::open_store(state.path(), &history).unwrap();
    assert_eq!(
        again.list_users().unwrap().len(),
        1,
        "bob, deleted in PostgreSQL, is not copied back from the file"
    );
}
