//! The `[broker]` configuration: the example file, defaults, and errors that name the key.

use host_app::broker::{Broker, BrokerConfig, BrokerMode, ClientCertificates};
use system_tests::config::host as cfg;
use system_tests::pki::Pki;

/// The example file, its password files (`/etc/host-app/secrets/...`) in `secrets`, each
/// written there holding "pa55word".
fn example(secrets: &std::path::Path) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/host-app.example.toml"
    );
    for name in ["mqtt-host", "mqtt-line1", "mqtt-dashboard", "mqtt-bridge"] {
        std::fs::write(secrets.join(name), "pa55word\n").unwrap();
    }
    std::fs::read_to_string(path).unwrap().replace(
        "/etc/host-app/secrets/",
        &format!("{}/", toml_path(secrets)),
    )
}

/// The keys of every problem, comma-separated.
fn error_key(document: &str) -> String {
    match BrokerConfig::from_toml(document) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.keys().join(", "),
    }
}

fn toml_path(p: &std::path::Path) -> String {
    p.display().to_string().replace('\\', "/")
}

#[test]
fn example_file_loads() {
    let secrets = tempfile::tempdir().unwrap();
    let config = BrokerConfig::from_toml(&example(secrets.path())).unwrap();
    assert_eq!(config.mode, BrokerMode::Embedded);
    assert_eq!(
        config.embedded.plain.listen,
        "127.0.0.1:1883".parse().unwrap()
    );
    assert_eq!(config.embedded.max_connections, 256);
    assert!(config.embedded.tls.is_none());
    assert!(!config.embedded.allow_anonymous);
    assert_eq!(config.embedded.host_username.as_deref(), Some("host"));
    assert_eq!(config.embedded.users.len(), 1, "the host's own account");
}

#[test]
fn connection_limits_of_the_example_are_the_defaults() {
    let secrets = tempfile::tempdir().unwrap();
    let example = BrokerConfig::from_toml(&example(secrets.path()))
        .unwrap()
        .embedded;
    let default = host_app::broker::EmbeddedConfig::default();
    let limits = |c: &host_app::broker::EmbeddedConfig| {
        (
            c.max_connections,
            c.max_pending_connections,
            c.max_connections_per_address,
            c.connect_rate,
            c.connect_rate_per_address,
            c.connection_timeout_ms,
            c.max_keepalive_s,
        )
    };
    assert_eq!(limits(&example), limits(&default));
}

#[test]
fn connection_limits_of_zero_are_each_named() {
    let doc = "[broker]\nmode = \"embedded\"\n[broker.embedded]\nmax_pending_connections = 0\n\
               max_connections_per_address = 0\nconnect_rate = 0\nconnect_rate_per_address = 0\n\
               max_keepalive_s = 0\nallow_anonymous = true\n";
    assert_eq!(
        error_key(doc),
        "broker.embedded.max_pending_connections, broker.embedded.max_connections_per_address, \
         broker.embedded.connect_rate, broker.embedded.connect_rate_per_address, \
         broker.embedded.max_keepalive_s"
    );
}

#[test]
fn store_limits_of_the_example_are_the_defaults_and_bad_ones_are_named() {
    let secrets = tempfile::tempdir().unwrap();
    let example = BrokerConfig::from_toml(&example(secrets.path()))
        .unwrap()
        .embedded;
    let default = host_app::broker::EmbeddedConfig::default();
    let limits = |c: &host_app::broker::EmbeddedConfig| {
        (
            c.persist,
            c.max_retained_messages,
            c.max_retained_bytes,
            c.max_stored_sessions,
            c.max_stored_messages,
            c.store_flush_ms,
        )
    };
    assert_eq!(limits(&example), limits(&default));

    let doc = "[broker]\nmode = \"embedded\"\n[broker.embedded]\nmax_retained_messages = 0\n\
               max_retained_bytes = 0\nmax_stored_sessions = 0\nmax_stored_messages = 0\n\
               store_flush_ms = 5\nallow_anonymous = true\n";
    assert_eq!(
        error_key(doc),
        "broker.embedded.max_retained_messages, broker.embedded.max_retained_bytes, \
         broker.embedded.max_stored_sessions, broker.embedded.max_stored_messages, \
         broker.embedded.store_flush_ms"
    );
}

#[test]
fn commented_parts_of_the_example_load_when_enabled() {
    let pki = Pki::generate();
    let acl_file = pki.dir.path().join("mqtt.acl");
    std::fs::write(&acl_file, "user bridge\ntopic read site/#\n").unwrap();
    let mut doc = String::new();
    let mut external_part = false;
    for line in example(pki.dir.path()).lines() {
        external_part |= line.contains("[broker.external");
        // Uncomment the embedded TLS, accounts and ACL parts, pointing at real files.
        let setting = |l: &&str| {
            l.split_once(" = ")
                .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        };
        let enabled = line
            .strip_prefix("# ")
            .filter(|l| !external_part && (l.starts_with('[') || setting(l)));
        let line = match enabled {
            Some(l) => l
                .replace("/etc/host-app/tls/server.pem", &toml_path(&pki.server_cert))
                .replace("/etc/host-app/tls/server.key", &toml_path(&pki.server_key))
                .replace("/etc/host-app/tls/clients-ca.pem", &toml_path(&pki.ca))
                .replace("/etc/host-app/mqtt.acl", &toml_path(&acl_file)),
            None => line.replace("allow_anonymous = false", "allow_anonymous = true"),
        };
        doc.push_str(&line);
        doc.push('\n');
    }
    let config = BrokerConfig::from_toml(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    let tls = config.embedded.tls.as_ref().unwrap();
    assert_eq!(tls.client_certificates, ClientCertificates::Required);
    let roles: Vec<_> = config.embedded.users.iter().map(|u| u.role).collect();
    use host_app::broker::Role;
    assert_eq!(
        roles,
        [Role::Host, Role::Edge, Role::Reader, Role::Custom].map(Some)
    );
    assert_eq!(
        config.embedded.users[0].password().unwrap().expose(),
        "pa55word",
        "one trailing line break is not part of the password"
    );
    assert_eq!(config.embedded.host_username.as_deref(), Some("host"));
    assert!(config.embedded.anonymous.is_some() && config.embedded.acl_file.is_some());
}

#[test]
fn passwords_are_never_printed() {
    let doc = r#"
        [broker]
        mode = "embedded"
        [broker.embedded]
        host_username = "host"
        [[broker.embedded.users]]
        username = "host"
        password = "do-not-print-me"
        role = "host"
        host_id = "scada"
    "#;
    let config = BrokerConfig::from_toml(doc).unwrap();
    let printed = format!("{config:?}");
    assert!(printed.contains("host"));
    assert!(!printed.contains("do-not-print-me"), "{printed}");
}

/// An embedded `[broker]` open to anonymous readers, then `rest`.
fn embedded(rest: &str) -> String {
    format!("[broker]\nmode = \"embedded\"\n[broker.embedded]\nallow_anonymous = true\n{rest}")
}

/// `[[broker.embedded.users]]` named `name` with password "p" and `rest`.
fn user(name: &str, rest: &str) -> String {
    format!("[[broker.embedded.users]]\nusername = \"{name}\"\npassword = \"p\"\n{rest}")
}

#[test]
fn errors_name_the_key() {
    let host = "role = \"host\"\nhost_id = \"h\"\n";
    let cases: &[(String, &str)] = &[
        (
            embedded("host_username = \"h\"\n[[broker.embedded.users]]\nusername = \"h\"\nrole = \"host\"\nhost_id = \"h\"\n"),
            "broker.embedded.users[0].password",
        ),
        (
            embedded(&user("h", &format!("password_file = \"/nonexistent\"\n{host}"))),
            "broker.embedded.users[0]",
        ),
        (
            embedded("[[broker.embedded.users]]\nusername = \"h\"\npassword_file = \"/nonexistent/secret\"\nrole = \"host\"\nhost_id = \"h\"\n"),
            "broker.embedded.users[0].password_file",
        ),
        (
            format!("[broker]\nmode = \"embedded\"\n{}", user("h", host)),
            "broker.embedded.host_username",
        ),
        (
            "[broker]\nmode = \"embedded\"\n".to_owned(),
            "broker.embedded.host_username, broker.embedded.users",
        ),
        (
            embedded("max_connections = 0\n"),
            "broker.embedded.max_connections",
        ),
        (
            embedded("max_payload_size = 10\n"),
            "broker.embedded.max_payload_size",
        ),
        (
            embedded("[broker.embedded.tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"/nonexistent.pem\"\nkey_file = \"/nonexistent.key\"\n"),
            "broker.embedded.tls.cert_file, broker.embedded.tls.key_file",
        ),
        // The access rules.
        (embedded(&user("a", "")), "broker.embedded.users[0].role"),
        (
            embedded(&user("a", "role = \"edge\"\ngroup_id = \"g\"\n")),
            "broker.embedded.users[0].edge_node_ids",
        ),
        (
            embedded(&user("a", "role = \"edge\"\ngroup_id = \"g/x\"\nedge_node_ids = [\"n\", \"#\"]\nhost_id = \"h\"\n")),
            "broker.embedded.users[0].host_id, broker.embedded.users[0].group_id, \
             broker.embedded.users[0].edge_node_ids[1]",
        ),
        (
            embedded(&user("a", "role = \"host\"\n")),
            "broker.embedded.users[0].host_id",
        ),
        (
            embedded(&user("a", "role = \"reader\"\npublish = [\"x\"]\nsubscribe = [\"a/#/b\"]\n")),
            "broker.embedded.users[0].publish, broker.embedded.users[0].subscribe[0]",
        ),
        (
            embedded(&user("a", "role = \"custom\"\n")),
            "broker.embedded.users[0].role",
        ),
        (
            embedded(&user("a", "role = \"custom\"\npublish = [\"x+\"]\nclient_id_prefix = \"\"\n")),
            "broker.embedded.users[0].publish[0], broker.embedded.users[0].client_id_prefix",
        ),
        (
            embedded(&format!(
                "{}{}",
                user("a", "role = \"edge\"\ngroup_id = \"g\"\nedge_node_ids = [\"n\"]\n"),
                user("b", "role = \"reader\"\nclient_id_prefix = \"g:\"\n")
            )),
            "broker.embedded.users[1].client_id_prefix",
        ),
        (
            embedded(&format!("{}{}", user("a", host), user("b", host))),
            "broker.embedded.users[1]",
        ),
        (
            embedded("[broker.embedded.anonymous]\nrole = \"edge\"\n"),
            "broker.embedded.anonymous.role",
        ),
        (
            format!(
                "[broker]\nmode = \"embedded\"\n[broker.embedded]\nhost_username = \"h\"\n\
                 [broker.embedded.anonymous]\nrole = \"reader\"\n{}",
                user("h", host)
            ),
            "broker.embedded.anonymous",
        ),
        (
            embedded(&format!("host_username = \"r\"\n{}", user("r", "role = \"reader\"\n"))),
            "broker.embedded.host_username",
        ),
        (
            embedded("acl_file = \"/nonexistent.acl\"\n"),
            "broker.embedded.acl_file",
        ),
        (
            "[broker]\nmode = \"external\"\n".to_owned(),
            "broker.external",
        ),
        (
            "[broker]\nmode = \"external\"\n[broker.external]\nhost = \"\"\n".to_owned(),
            "broker.external.host",
        ),
        (
            "[broker]\nmode = \"external\"\n[broker.external]\nhost = \"b\"\npassword_file = \"/x\"\n"
                .to_owned(),
            "broker.external.username, broker.external.password_file",
        ),
        ("[other]\nx = 1\n".to_owned(), "broker"),
    ];
    for (doc, key) in cases {
        assert_eq!(&error_key(doc), key, "for:\n{doc}");
    }
}

#[test]
fn acl_file_problems_name_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("mqtt.acl");
    std::fs::write(
        &acl,
        "topic read x/#\nuser nobody\ntopic a\nuser e\ntopic b\nuser c\ntopic deny z/#/y\n",
    )
    .unwrap();
    let doc = embedded(&format!(
        "acl_file = \"{}\"\n{}{}",
        toml_path(&acl),
        user(
            "e",
            "role = \"edge\"\ngroup_id = \"g\"\nedge_node_ids = [\"n\"]\n"
        ),
        user("c", "role = \"custom\"\npublish = [\"q\"]\n")
    ));
    let e = BrokerConfig::from_toml(&doc).unwrap_err();
    assert_eq!(e.keys(), ["broker.embedded.acl_file"], "{e}");
    assert!(e.to_string().contains("line 7: topic \"z/#/y\""), "{e}");

    std::fs::write(
        &acl,
        "topic read x/#\nuser nobody\ntopic a\nuser e\ntopic b\nuser c\ntopic z\n",
    )
    .unwrap();
    let e = BrokerConfig::from_toml(&doc).unwrap_err();
    let text = e.to_string();
    for expected in [
        "line 2: user \"nobody\" is not in broker.embedded.users",
        "line 4: user \"e\" has role edge",
        "line 1: grants to anonymous clients need broker.embedded.anonymous.role = \"custom\"",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    std::fs::write(&acl, "user c\ntopic z\ntopic deny z/secret\n").unwrap();
    BrokerConfig::from_toml(&doc).unwrap();
}

#[test]
fn unknown_keys_and_bad_values_are_reported() {
    let err = BrokerConfig::from_toml(
        "[broker]\nmode = \"embedded\"\n[broker.embedded]\nmax_conections = 5\n",
    )
    .unwrap_err();
    assert_eq!(err.keys(), ["broker.embedded.max_conections"], "{err}");
    assert!(
        err.to_string()
            .starts_with("4:1: broker.embedded.max_conections: unknown field"),
        "{err}"
    );
    let err = BrokerConfig::from_toml("[broker]\nmode = \"cluster\"\n").unwrap_err();
    assert_eq!(err.keys(), ["broker.mode"], "{err}");
    assert!(err.to_string().contains("cluster"), "{err}");
}

/// A `[broker]` document: the embedded broker with `listener` as its TLS listener.
fn tls_listener(listener: cfg::TlsListener) -> String {
    cfg::Broker {
        mode: "embedded".to_owned(),
        embedded: Some(cfg::Embedded {
            tls: Some(listener),
            allow_anonymous: Some(true),
            ..cfg::Embedded::default()
        }),
        external: None,
    }
    .to_toml()
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let doc = "[broker]\nmode = \"embedded\"\n[broker.embedded]\nmax_connections = 0\nmax_payload_size = 10\n\
               [broker.embedded.tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"/nonexistent.pem\"\nkey_file = \"/nonexistent.key\"\n\
               [[broker.embedded.users]]\nusername = \"h\"\n[[broker.embedded.users]]\nusername = \"h\"\npassword = \"p\"\n";
    assert_eq!(
        error_key(doc),
        "broker.embedded.max_connections, broker.embedded.max_payload_size, \
         broker.embedded.tls.cert_file, broker.embedded.tls.key_file, \
         broker.embedded.users[0].password, broker.embedded.users[1].username, \
         broker.embedded.host_username, broker.embedded.users[0].role, \
         broker.embedded.users[1].role"
    );
    let doc = "[broker]\nmode = \"external\"\n[broker.external]\nhost = \"\"\nport = 0\npassword_file = \"/nonexistent\"\n";
    assert_eq!(
        error_key(doc),
        "broker.external.host, broker.external.port, broker.external.username, \
         broker.external.password_file"
    );
}

#[test]
fn client_certificates_need_a_client_ca() {
    let pki = Pki::generate();
    let doc = tls_listener(cfg::TlsListener {
        client_certificates: Some("optional".to_owned()),
        ..cfg::TlsListener::new(&pki.server_cert, &pki.server_key)
    });
    assert_eq!(error_key(&doc), "broker.embedded.tls.client_ca_file");
}

#[test]
fn a_key_file_that_is_not_a_key_is_reported_at_load() {
    let pki = Pki::generate();
    let doc = tls_listener(cfg::TlsListener::new(&pki.server_cert, &pki.server_cert));
    assert_eq!(error_key(&doc), "broker.embedded.tls.key_file");
}

#[tokio::test]
async fn external_mode_gives_the_configured_endpoint() {
    let pki = Pki::generate();
    let secret = pki.dir.path().join("pw");
    std::fs::write(&secret, "hunter2\n").unwrap();
    let doc = cfg::Broker {
        mode: "external".to_owned(),
        embedded: None,
        external: Some(cfg::External {
            host: "mqtt.plant.example".to_owned(),
            username: Some("host".to_owned()),
            password_file: Some(secret),
            tls: Some(cfg::ExternalTls {
                ca_file: pki.ca.clone(),
                client_cert_file: Some(pki.client_cert.clone()),
                client_key_file: Some(pki.client_key.clone()),
                ..cfg::ExternalTls::default()
            }),
            ..cfg::External::default()
        }),
    }
    .to_toml();
    let config = BrokerConfig::from_toml(&doc).unwrap();
    let state = tempfile::tempdir().unwrap();
    let broker = Broker::start(&config, state.path()).await.unwrap();
    assert!(broker.embedded().is_none());
    let endpoint = broker.endpoint().clone();
    assert_eq!(endpoint.host, "mqtt.plant.example");
    assert_eq!(endpoint.port, 8883, "TLS default port");
    let tls = endpoint.tls.as_ref().unwrap();
    assert_eq!(
        tls.server_name.as_deref(),
        Some("mqtt.plant.example"),
        "defaults to host"
    );
    assert!(infra::tls::client_config(tls).is_ok());
    let credentials = endpoint.credentials.unwrap();
    assert_eq!(credentials.username, "host");
    assert_eq!(credentials.password.unwrap().expose(), "hunter2");
    broker.stop().await;
}

#[tokio::test]
async fn external_failover_servers_follow_the_first_in_order() {
    let pki = Pki::generate();
    let doc = cfg::Broker {
        mode: "external".to_owned(),
        embedded: None,
        external: Some(cfg::External {
            host: "node1.example".to_owned(),
            port: Some(4001),
            failover: Some(vec!["node2.example:4002".into(), "[::1]".into()]),
            tls: Some(cfg::ExternalTls {
                ca_file: pki.ca.clone(),
                ..cfg::ExternalTls::default()
            }),
            ..cfg::External::default()
        }),
    }
    .to_toml();
    let config = BrokerConfig::from_toml(&doc).unwrap();
    let state = tempfile::tempdir().unwrap();
    let broker = Broker::start(&config, state.path()).await.unwrap();
    assert_eq!(broker.endpoint().to_string(), "mqtts://node1.example:4001");
    let failover: Vec<String> = broker.failover().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        failover,
        ["mqtts://node2.example:4002", "mqtts://[::1]:4001"],
        "a failover entry without a port takes `port`"
    );
    let names: Vec<_> = broker
        .failover()
        .iter()
        .map(|e| e.tls.as_ref().unwrap().server_name.clone().unwrap())
        .collect();
    assert_eq!(names, ["node2.example", "::1"], "each server's own name");
    broker.stop().await;
}

#[test]
fn bad_failover_entries_are_named_by_index() {
    let doc = |failover: &str| {
        format!(
            "[broker]\nmode = \"external\"\n[broker.external]\nhost = \"127.0.0.1\"\nport = 4001\nfailover = {failover}\n"
        )
    };
    assert_eq!(
        error_key(&doc(r#"["127.0.0.1:4002", "", "a:0"]"#)),
        "broker.external.failover[1], broker.external.failover[2]"
    );
    assert_eq!(
        error_key(&doc(r#"["127.0.0.1:4001"]"#)),
        "broker.external.failover[0]",
        "the first server again"
    );
    assert_eq!(
        error_key(&doc(r#"["h:4002/x", "h:4002", "h:4002"]"#)),
        "broker.external.failover[0], broker.external.failover[2]"
    );
    assert!(BrokerConfig::from_toml(&doc(r#"["127.0.0.1:4002", "other"]"#)).is_ok());
}

#[tokio::test]
async fn embedded_mode_gives_a_loopback_endpoint() {
    let doc = "[broker]\nmode = \"embedded\"\n[broker.embedded]\nallow_anonymous = true\n\
               [broker.embedded.plain]\nlisten = \"0.0.0.0:0\"\n";
    let config = BrokerConfig::from_toml(doc).unwrap();
    let state = tempfile::tempdir().unwrap();
    let broker = Broker::start(&config, state.path()).await.unwrap();
    let endpoint = broker.endpoint().clone();
    assert_eq!(
        endpoint.host, "127.0.0.1",
        "unspecified address reached over loopback"
    );
    assert_eq!(
        endpoint.port,
        broker.embedded().unwrap().plain_addr().unwrap().port()
    );
    assert!(endpoint.tls.is_none() && endpoint.credentials.is_none());
    let options = rumqttc::MqttOptions::new("host", (endpoint.host.clone(), endpoint.port));
    let (client, eventloop) = system_tests::mqtt::client::connect(options).await;
    system_tests::mqtt::client::disconnect(client, eventloop).await;
    broker.stop().await;
}
