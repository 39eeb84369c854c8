//! The access rules of the embedded broker, account by account: who logs in under which
//! client id, and what each role may publish, subscribe to and leave as its will.

use host_app::broker::{
    Acl, AnonymousConfig, Denied, EmbeddedConfig, Role, Secret, TopicPolicy, UserConfig,
};

fn account(name: &str) -> UserConfig {
    UserConfig::new(name, Secret::new(format!("{name}-pw")))
}

/// A plant: host `scada`, edge account `line1` for nodes `Line1` and `Line1b` of group
/// `Plant1`, edge account `line2` for `Line2` (client ids also `l2-*`), a reader of
/// `Plant1`, a custom bridge, and anonymous readers of STATE.
fn plant() -> EmbeddedConfig {
    let mut config = EmbeddedConfig {
        users: vec![
            account("scada").host("scada"),
            account("line1").edge("Plant1", &["Line1", "Line1b"]),
            account("line2")
                .edge("Plant1", &["Line2"])
                .client_id_prefix("l2-"),
            account("dash").reader(),
            account("bridge")
                .custom(&["site/%u/#", "out/%c"], &["spBv1.0/+/NDATA/#", "in/#"])
                .deny(&["in/secret/#"])
                .client_id_prefix("bridge-"),
        ],
        host_username: Some("scada".into()),
        allow_anonymous: true,
        anonymous: Some(AnonymousConfig {
            role: Some(Role::Reader),
            publish: None,
            subscribe: Some(vec!["spBv1.0/STATE/+".into()]),
            deny: None,
        }),
        ..EmbeddedConfig::default()
    };
    config.users[3].subscribe = Some(vec!["spBv1.0/Plant1/#".into()]);
    config.validate().unwrap();
    config
}

fn acl() -> Acl {
    Acl::from_config(&plant()).unwrap()
}

/// The client id each account uses in the tables.
fn client_of(account: Option<&str>) -> &'static str {
    match account {
        Some("scada") => "host-scada",
        Some("line1") => "Plant1:Line1",
        Some("line2") => "l2-a",
        Some("dash") => "dash-1",
        Some("bridge") => "bridge-7",
        _ => "anon-1",
    }
}

const HOST: Option<&str> = Some("scada");
const LINE1: Option<&str> = Some("line1");
const LINE2: Option<&str> = Some("line2");
const DASH: Option<&str> = Some("dash");
const BRIDGE: Option<&str> = Some("bridge");
const ANON: Option<&str> = None;

#[test]
fn publish_rules() {
    let acl = acl();
    let table: &[(Option<&str>, &str, bool)] = &[
        // An edge account: its own nodes' and devices' births, deaths and data only.
        (LINE1, "spBv1.0/Plant1/NBIRTH/Line1", true),
        (LINE1, "spBv1.0/Plant1/NDEATH/Line1", true),
        (LINE1, "spBv1.0/Plant1/NDATA/Line1", true),
        (LINE1, "spBv1.0/Plant1/NDATA/Line1b", true),
        (LINE1, "spBv1.0/Plant1/DBIRTH/Line1/Pump", true),
        (LINE1, "spBv1.0/Plant1/DDEATH/Line1/Pump", true),
        (LINE1, "spBv1.0/Plant1/DDATA/Line1/Pump", true),
        (LINE1, "spBv1.0/Plant1/NDATA/Line2", false),
        (LINE1, "spBv1.0/Plant1/NBIRTH/Line2", false),
        (LINE1, "spBv1.0/Plant1/DDATA/Line2/Pump", false),
        (LINE1, "spBv1.0/Plant2/NDATA/Line1", false),
        (LINE1, "spBv1.0/Plant1/NCMD/Line1", false),
        (LINE1, "spBv1.0/Plant1/NCMD/Line2", false),
        (LINE1, "spBv1.0/Plant1/DCMD/Line2/Pump", false),
        (LINE1, "spBv1.0/STATE/scada", false),
        (LINE1, "spBv1.0/Plant1/NDATA/Line1/extra", false),
        (LINE1, "spBv1.0/Plant1/NDATA/+", false),
        (LINE1, "spBv1.0/Plant1/NDATA/#", false),
        (LINE1, "other/topic", false),
        (
            LINE1,
            "$sparkplug/certificates/spBv1.0/Plant1/NBIRTH/Line1",
            false,
        ),
        (LINE2, "spBv1.0/Plant1/NDATA/Line2", true),
        (LINE2, "spBv1.0/Plant1/NDATA/Line1", false),
        // The host: its own STATE and every command, nothing else.
        (HOST, "spBv1.0/STATE/scada", true),
        (HOST, "spBv1.0/STATE/other", false),
        (HOST, "spBv1.0/Plant1/NCMD/Line1", true),
        (HOST, "spBv1.0/Plant9/DCMD/Any/Pump", true),
        (HOST, "spBv1.0/Plant1/NDATA/Line1", false),
        (HOST, "spBv1.0/Plant1/NBIRTH/Line1", false),
        (HOST, "other/topic", false),
        // Readers publish nothing.
        (DASH, "spBv1.0/Plant1/NDATA/Line1", false),
        (DASH, "spBv1.0/STATE/dash", false),
        (ANON, "spBv1.0/STATE/scada", false),
        (ANON, "spBv1.0/Plant1/NCMD/Line1", false),
        // Custom: its filters with %u and %c filled in.
        (BRIDGE, "site/bridge/x/y", true),
        (BRIDGE, "site/other/x", false),
        (BRIDGE, "out/bridge-7", true),
        (BRIDGE, "out/bridge-8", false),
        (BRIDGE, "spBv1.0/Plant1/NCMD/Line1", false),
        // Unknown accounts get nothing.
        (Some("ghost"), "spBv1.0/Plant1/NDATA/Line1", false),
    ];
    for &(account, topic, expected) in table {
        assert_eq!(
            acl.may_publish(account, client_of(account), topic),
            expected,
            "{account:?} publishes {topic}"
        );
    }
}

#[test]
fn subscribe_rules() {
    let acl = acl();
    let table: &[(Option<&str>, &str, bool)] = &[
        // An edge account: its own commands and STATE.
        (LINE1, "spBv1.0/Plant1/NCMD/Line1", true),
        (LINE1, "spBv1.0/Plant1/NCMD/Line1b", true),
        (LINE1, "spBv1.0/Plant1/DCMD/Line1/+", true),
        (LINE1, "spBv1.0/Plant1/DCMD/Line1/#", true),
        (LINE1, "spBv1.0/Plant1/DCMD/Line1/Pump", true),
        (LINE1, "spBv1.0/STATE/+", true),
        (LINE1, "spBv1.0/STATE/scada", true),
        (LINE1, "spBv1.0/STATE/#", false),
        (LINE1, "spBv1.0/Plant1/NCMD/Line2", false),
        (LINE1, "spBv1.0/Plant1/NCMD/+", false),
        (LINE1, "spBv1.0/Plant1/DCMD/Line2/+", false),
        (LINE1, "spBv1.0/Plant1/DCMD/+/+", false),
        (LINE1, "spBv1.0/Plant1/NDATA/Line2", false),
        (LINE1, "spBv1.0/Plant1/#", false),
        (LINE1, "spBv1.0/#", false),
        (LINE1, "#", false),
        (LINE1, "spBv1.0/Plant2/NCMD/Line1", false),
        (LINE2, "spBv1.0/Plant1/NCMD/Line2", true),
        (LINE2, "spBv1.0/Plant1/NCMD/Line1", false),
        // The host: the whole namespace and the Sparkplug Aware certificates.
        (HOST, "spBv1.0/#", true),
        (HOST, "spBv1.0/STATE/scada", true),
        (HOST, "spBv1.0/+/NDATA/+", true),
        (HOST, "$sparkplug/certificates/#", true),
        (HOST, "#", false),
        (HOST, "other/#", false),
        // Readers: what they were given.
        (DASH, "spBv1.0/Plant1/#", true),
        (DASH, "spBv1.0/Plant1/NDATA/+", true),
        (DASH, "spBv1.0/#", false),
        (DASH, "spBv1.0/Plant2/NDATA/x", false),
        (ANON, "spBv1.0/STATE/+", true),
        (ANON, "spBv1.0/STATE/scada", true),
        (ANON, "spBv1.0/Plant1/NCMD/Line1", false),
        (ANON, "spBv1.0/#", false),
        // Custom.
        (BRIDGE, "spBv1.0/+/NDATA/#", true),
        (BRIDGE, "spBv1.0/Plant1/NDATA/Line1", true),
        (BRIDGE, "spBv1.0/Plant1/NCMD/Line1", false),
        (BRIDGE, "in/a/b", true),
        // Its deny filters win over its grants.
        (BRIDGE, "in/secret/x", false),
        (BRIDGE, "in/secret/#", false),
        (BRIDGE, "in/+", true),
        // Malformed filters are refused whoever asks.
        (HOST, "spBv1.0/#/x", false),
        (HOST, "spBv1.0/a+", false),
        (HOST, "", false),
        (Some("ghost"), "spBv1.0/#", false),
    ];
    for &(account, filter, expected) in table {
        assert_eq!(
            acl.may_subscribe(account, client_of(account), filter),
            expected,
            "{account:?} subscribes to {filter}"
        );
    }
}

#[test]
fn will_rules() {
    let acl = acl();
    let table: &[(Option<&str>, &str, bool)] = &[
        (LINE1, "spBv1.0/Plant1/NDEATH/Line1", true),
        (LINE1, "spBv1.0/Plant1/NDEATH/Line1b", true),
        (LINE1, "spBv1.0/Plant1/NDEATH/Line2", false),
        (LINE1, "spBv1.0/Plant1/NDATA/Line1", false),
        (LINE1, "spBv1.0/Plant1/DDEATH/Line1/Pump", false),
        (LINE1, "spBv1.0/STATE/scada", false),
        (HOST, "spBv1.0/STATE/scada", true),
        (HOST, "spBv1.0/STATE/other", false),
        (HOST, "spBv1.0/Plant1/NCMD/Line1", false),
        (DASH, "spBv1.0/STATE/dash", false),
        (ANON, "spBv1.0/Plant1/NDEATH/Line1", false),
        (BRIDGE, "out/bridge-7", true),
        (BRIDGE, "spBv1.0/Plant1/NDEATH/Line1", false),
    ];
    for &(account, topic, expected) in table {
        assert_eq!(
            acl.may_will(account, client_of(account), topic),
            expected,
            "{account:?} leaves a will on {topic}"
        );
    }
}

#[test]
fn login_decides_the_account_and_binds_its_client_id() {
    let acl = acl();
    let login = |user: Option<&str>, password: Option<&str>, client_id: &str| {
        acl.login(
            user.map(str::as_bytes),
            password.map(str::as_bytes),
            client_id.as_bytes(),
        )
        .map(|l| l.account().map(str::to_owned))
    };
    let ok = |name: &str| Ok(Some(name.to_owned()));
    let taken = |owner: &str| {
        Err(Denied::ClientIdTaken {
            owner: owner.to_owned(),
        })
    };
    // Each account under its own ids.
    assert_eq!(login(LINE1, Some("line1-pw"), "Plant1:Line1"), ok("line1"));
    assert_eq!(login(LINE1, Some("line1-pw"), "Plant1:Line1b"), ok("line1"));
    assert_eq!(login(LINE2, Some("line2-pw"), "Plant1:Line2"), ok("line2"));
    assert_eq!(login(LINE2, Some("line2-pw"), "l2-anything"), ok("line2"));
    assert_eq!(login(HOST, Some("scada-pw"), "host-scada"), ok("scada"));
    assert_eq!(login(HOST, Some("scada-pw"), "scada"), ok("scada"));
    assert_eq!(login(DASH, Some("dash-pw"), "any-id"), ok("dash"));
    assert_eq!(login(BRIDGE, Some("bridge-pw"), "bridge-1"), ok("bridge"));
    assert_eq!(login(None, None, "watcher"), Ok(None));
    // Wrong or partial credentials.
    assert_eq!(
        login(LINE1, Some("line2-pw"), "Plant1:Line1"),
        Err(Denied::BadCredentials)
    );
    assert_eq!(
        login(Some("ghost"), Some("x"), "g"),
        Err(Denied::BadCredentials)
    );
    assert_eq!(
        login(LINE1, None, "Plant1:Line1"),
        Err(Denied::BadCredentials)
    );
    assert_eq!(login(None, Some("p"), "x"), Err(Denied::BadCredentials));
    // An edge or host account only under its own ids.
    assert_eq!(
        login(LINE1, Some("line1-pw"), "Plant1:Line2"),
        taken("line2")
    );
    assert_eq!(
        login(LINE1, Some("line1-pw"), "line1"),
        Err(Denied::ClientIdNotBound)
    );
    assert_eq!(
        login(HOST, Some("scada-pw"), ""),
        Err(Denied::ClientIdNotBound)
    );
    assert_eq!(
        login(BRIDGE, Some("bridge-pw"), "other"),
        Err(Denied::ClientIdNotBound)
    );
    // Nobody takes another account's ids.
    assert_eq!(login(DASH, Some("dash-pw"), "host-scada"), taken("scada"));
    assert_eq!(login(None, None, "Plant1:Line1"), taken("line1"));
    assert_eq!(login(None, None, "l2-x"), taken("line2"));
    assert_eq!(login(None, None, "bridge-x"), taken("bridge"));
    assert_eq!(
        acl.login(None, None, b"\xff\xfe"),
        Err(Denied::InvalidClientId)
    );
}

#[test]
fn anonymous_clients_are_refused_unless_allowed() {
    let mut config = plant();
    config.allow_anonymous = false;
    config.anonymous = None;
    let acl = Acl::from_config(&config).unwrap();
    assert_eq!(
        acl.login(None, None, b"watcher"),
        Err(Denied::AnonymousNotAllowed)
    );
    assert!(!acl.may_subscribe(None, "watcher", "spBv1.0/STATE/+"));
    assert!(!acl.may_publish(None, "watcher", "spBv1.0/STATE/scada"));

    // Allowed without an [anonymous] table: readers of the whole namespace.
    config.allow_anonymous = true;
    let acl = Acl::from_config(&config).unwrap();
    assert!(acl.may_subscribe(None, "watcher", "spBv1.0/#"));
    assert!(!acl.may_publish(None, "watcher", "spBv1.0/Plant1/NCMD/Line1"));
}

#[test]
fn acl_file_grants_add_to_custom_accounts_and_anonymous_clients() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mqtt.acl");
    std::fs::write(
        &file,
        "topic read public/#\n\
         user bridge\n\
         topic write reports/#\n\
         pattern readwrite clients/%c/#\n",
    )
    .unwrap();
    let mut config = plant();
    config.acl_file = Some(file);
    config.anonymous = Some(AnonymousConfig {
        role: Some(Role::Custom),
        publish: None,
        subscribe: None,
        deny: None,
    });
    config.validate().unwrap();
    let acl = Acl::from_config(&config).unwrap();
    assert!(acl.may_publish(BRIDGE, "bridge-7", "reports/daily"));
    assert!(!acl.may_subscribe(BRIDGE, "bridge-7", "reports/daily"));
    assert!(acl.may_publish(BRIDGE, "bridge-7", "clients/bridge-7/x"));
    assert!(!acl.may_publish(BRIDGE, "bridge-7", "clients/bridge-8/x"));
    assert!(acl.may_subscribe(ANON, "anon-1", "public/news"));
    assert!(!acl.may_publish(ANON, "anon-1", "public/news"));
    assert!(acl.may_subscribe(ANON, "anon-1", "clients/anon-1/#"));
    // A client id that could reach into another's pattern topics gets no pattern.
    assert!(!acl.may_subscribe(ANON, "a/b", "clients/a/b/#"));
    assert!(!acl.may_subscribe(ANON, "+", "clients/+/#"));
    // Patterns are for custom rights only: an edge account gains nothing.
    assert!(!acl.may_publish(LINE1, "Plant1:Line1", "clients/Plant1:Line1/x"));
}

#[test]
fn deny_refuses_what_it_covers_whatever_else_grants_it() {
    // The interoperability suites' broker: everything to everyone but one topic.
    let mut config = EmbeddedConfig {
        allow_anonymous: true,
        anonymous: Some(AnonymousConfig {
            role: Some(Role::Custom),
            publish: Some(vec!["#".into()]),
            subscribe: Some(vec!["#".into()]),
            deny: Some(vec!["test/nosubscribe".into()]),
        }),
        ..EmbeddedConfig::default()
    };
    config.validate().unwrap();
    let acl = Acl::from_config(&config).unwrap();
    assert!(!acl.may_subscribe(ANON, "c", "test/nosubscribe"));
    assert!(!acl.may_publish(ANON, "c", "test/nosubscribe"));
    assert!(acl.may_subscribe(ANON, "c", "test/other"));
    assert!(
        acl.may_subscribe(ANON, "c", "#"),
        "a wider filter is not covered by the deny"
    );
    assert!(acl.may_publish(ANON, "c", "TopicA/B"));
}
