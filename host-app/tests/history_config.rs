//! The `[history]` configuration: the example file loads, bad values are refused naming the
//! key, and each option reaches the part it configures.

use std::path::PathBuf;
use std::time::Duration;

use host_app::history::{
    HistoryBackend, HistoryConfig, PostgresSslMode, SqliteConfig, SqliteStore, Synchronous,
};

fn example() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/host-app.example.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sqlite(config: &HistoryConfig) -> &SqliteConfig {
    match &config.backend {
        HistoryBackend::Sqlite(sqlite) => sqlite,
        other => panic!("not SQLite: {other:?}"),
    }
}

fn with(key: &str, value: &str) -> String {
    example()
        .lines()
        .map(|line| {
            if line.starts_with(&format!("{key} =")) {
                format!("{key} = {value}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_file_loads_and_maps_to_store_writer_and_retention_settings() {
    let config = HistoryConfig::from_toml(&example()).unwrap();
    assert_eq!(
        sqlite(&config).path,
        PathBuf::from("/var/lib/host-app/history.db")
    );
    let writer = config.writer_config();
    assert_eq!(
        (
            writer.batch_size,
            writer.flush_interval,
            writer.channel_capacity
        ),
        (5_000, Duration::from_millis(250), 256)
    );
    let policy = config.retention_policy();
    assert_eq!(policy.max_age, Some(Duration::from_secs(90 * 86_400)));
    assert_eq!(policy.max_bytes, Some(4_096 * 1024 * 1024));
    assert_eq!(config.retention_interval(), Duration::from_secs(60));
    let audit = config.audit_retention();
    assert_eq!(audit.max_age, Some(Duration::from_secs(365 * 86_400)));
    assert_eq!(audit.max_rows, Some(1_000_000));
    assert_eq!(sqlite(&config).synchronous, Synchronous::Normal);
}

#[test]
fn zero_limits_mean_keep_everything() {
    let text = with("retention_days", "0").replace("max_size_mb = 4096", "max_size_mb = 0");
    let policy = HistoryConfig::from_toml(&text).unwrap().retention_policy();
    assert_eq!((policy.max_age, policy.max_bytes), (None, None));
}

#[test]
fn out_of_range_values_are_refused_naming_the_key() {
    for (key, value) in [
        ("batch_size", "0"),
        ("flush_interval_ms", "0"),
        ("channel_capacity", "0"),
        ("retention_days", "100000"),
        ("max_size_mb", "99999999999"),
        ("retention_interval_s", "0"),
        ("audit_retention_days", "36501"),
        ("audit_max_rows", "0"),
        ("path", "\"\""),
    ] {
        let err = HistoryConfig::from_toml(&with(key, value)).unwrap_err();
        assert_eq!(err.keys(), [format!("history.{key}")], "{key}: {err}");
        assert!(
            err.to_string().starts_with(&format!("history.{key}: ")),
            "{key}: {err}"
        );
    }
}

#[test]
fn unknown_keys_wrong_types_and_bad_choices_are_refused_naming_the_key() {
    let typo = example().replace("batch_size =", "batch_sise =");
    let err = HistoryConfig::from_toml(&typo).unwrap_err();
    assert_eq!(err.keys(), ["history.batch_sise"], "{err}");
    assert!(err.to_string().contains("batch_sise"), "{err}");

    let err = HistoryConfig::from_toml(&with("batch_size", "\"many\"")).unwrap_err();
    assert_eq!(err.keys(), ["history.batch_size"], "{err}");

    let err = HistoryConfig::from_toml(&with("synchronous", "\"off\"")).unwrap_err();
    assert_eq!(err.keys(), ["history.synchronous"], "{err}");
    assert!(err.to_string().contains("off"), "{err}");

    let err = HistoryConfig::from_toml("[broker]\nport = 1883\n").unwrap_err();
    assert_eq!(err.keys(), ["history"], "{err}");
    assert_eq!(err.to_string(), "history: missing table");

    let err = HistoryConfig::from_toml("[history]\nbatch_size = 10\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("path"), "{err}");
}

#[test]
fn every_out_of_range_value_is_reported_at_once() {
    let text = with("batch_size", "0")
        .replace("flush_interval_ms = 250", "flush_interval_ms = 0")
        .replace("retention_days = 90", "retention_days = 100000");
    let err = HistoryConfig::from_toml(&text).unwrap_err();
    assert_eq!(
        err.keys(),
        [
            "history.batch_size",
            "history.flush_interval_ms",
            "history.retention_days"
        ],
        "{err}"
    );
}

#[test]
fn other_tables_of_the_host_file_are_left_to_their_owners() {
    let text = format!("[elsewhere]\nport = 1883\n\n{}", example());
    assert!(HistoryConfig::from_toml(&text).is_ok());
}

#[test]
fn the_synchronous_choice_reaches_the_database_connection() {
    let dir = tempfile::tempdir().unwrap();
    for (choice, expected) in [
        ("\"full\"", Synchronous::Full),
        ("\"normal\"", Synchronous::Normal),
    ] {
        let path = dir
            .path()
            .join(format!("h-{}.db", choice.trim_matches('"')));
        let text = with("synchronous", choice).replace(
            "path = \"/var/lib/host-app/history.db\"",
            &format!("path = {:?}", path.display().to_string()),
        );
        let config = HistoryConfig::from_toml(&text).unwrap();
        let sqlite = sqlite(&config);
        let store = SqliteStore::open(&sqlite.path, &sqlite.options()).unwrap();
        assert_eq!(store.synchronous().unwrap(), expected);
    }
}

#[test]
fn the_open_window_bound_reaches_the_store_and_is_range_checked() {
    let config = HistoryConfig::from_toml(&with("open_window_max_mb", "64")).unwrap();
    assert_eq!(sqlite(&config).options().open_window_max_bytes, 64 << 20);
    let absent: String = example()
        .lines()
        .filter(|l| !l.starts_with("open_window_max_mb"))
        .collect::<Vec<_>>()
        .join("\n");
    let config = HistoryConfig::from_toml(&absent).unwrap();
    assert_eq!(sqlite(&config).options().open_window_max_bytes, 16 << 20);
    for value in ["0", "4097"] {
        let err = HistoryConfig::from_toml(&with("open_window_max_mb", value)).unwrap_err();
        assert_eq!(err.keys(), ["history.open_window_max_mb"], "{value}: {err}");
    }
}

/// `[history]` with `backend = "postgres"` and the common keys of the example.
fn postgres(extra: &str) -> String {
    format!(
        "[history]\nbackend = \"postgres\"\nurl = \"postgresql://sparkplug@127.0.0.1:5432/history\"\n\
         retention_days = 30\n{extra}"
    )
}

#[test]
fn the_backend_key_chooses_postgres_with_its_own_keys_and_sqlite_stays_the_default() {
    let config = HistoryConfig::from_toml(&postgres("partition_hours = 6\n")).unwrap();
    let HistoryBackend::Postgres(pg) = &config.backend else {
        panic!("{config:?}");
    };
    assert_eq!(pg.url, "postgresql://sparkplug@127.0.0.1:5432/history");
    assert_eq!((pg.partition_hours, pg.password_file.as_ref()), (6, None));
    assert_eq!(config.retention_days, 30);
    assert_eq!(
        config.location(),
        "postgresql://sparkplug@127.0.0.1:5432/history"
    );
    assert_eq!(config.sqlite_path(), None);

    let implicit = example().replace("backend = \"sqlite\"\n", "");
    assert_ne!(implicit, example(), "the example names its backend");
    assert_eq!(
        HistoryConfig::from_toml(&implicit).unwrap(),
        HistoryConfig::from_toml(&example()).unwrap()
    );
}

#[test]
fn postgres_keys_are_checked_and_the_other_backend_keys_refused_naming_each() {
    let cases = [
        ("path = \"/var/lib/h.db\"\n", "history.path"),
        ("synchronous = \"full\"\n", "history.synchronous"),
        ("open_window_max_mb = 8\n", "history.open_window_max_mb"),
        ("partition_hours = 0\n", "history.partition_hours"),
        (
            "password_file = \"/nonexistent/pg-password\"\n",
            "history.password_file",
        ),
    ];
    for (extra, key) in cases {
        let err = HistoryConfig::from_toml(&postgres(extra)).unwrap_err();
        assert_eq!(err.keys(), [key], "{extra}: {err}");
    }
    let with_password = postgres("").replace("sparkplug@", "sparkplug:hunter2@");
    let err = HistoryConfig::from_toml(&with_password).unwrap_err();
    assert_eq!(err.keys(), ["history.url"], "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let err = HistoryConfig::from_toml("[history]\nbackend = \"postgres\"\n").unwrap_err();
    assert_eq!(err.keys(), ["history.url"], "{err}");
    let err = HistoryConfig::from_toml(
        &with("url", "\"x\"").replace("path =", "url = \"postgresql://a@b/c\"\npath ="),
    )
    .unwrap_err();
    assert_eq!(err.keys(), ["history.url"], "{err}");
    let err = HistoryConfig::from_toml(&postgres("").replace("postgres\"", "mysql\"")).unwrap_err();
    assert_eq!(err.keys(), ["history.backend"], "{err}");
}

#[test]
fn a_password_file_is_read_for_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg-password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let text = postgres(&format!(
        "password_file = {:?}\n",
        file.display().to_string()
    ));
    let config = HistoryConfig::from_toml(&text).unwrap();
    let HistoryBackend::Postgres(pg) = &config.backend else {
        panic!("{config:?}");
    };
    let options = pg.options().unwrap();
    assert_eq!(options.password.unwrap().expose(), "s3cret");
    assert_eq!(options.partition, Duration::from_secs(24 * 3_600));
}

#[test]
fn tls_to_postgres_takes_a_ca_file_that_loads_and_no_other_way_of_asking() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["db.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&ca, cert.pem()).unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();

    let verify = |ca_file: &std::path::Path| {
        format!(
            "sslmode = \"verify-full\"\nca_file = {:?}\n",
            ca_file.display().to_string()
        )
    };
    let config = HistoryConfig::from_toml(&postgres(&verify(&ca))).unwrap();
    let HistoryBackend::Postgres(pg) = &config.backend else {
        panic!("{config:?}");
    };
    assert_eq!(
        (pg.sslmode, pg.ca_file.as_deref()),
        (PostgresSslMode::VerifyFull, Some(ca.as_path()))
    );
    let options = pg.options().unwrap();
    assert_eq!(options.tls.map(|t| t.ca_file), Some(ca.clone()));
    let plain = HistoryConfig::from_toml(&postgres("")).unwrap();
    let HistoryBackend::Postgres(pg) = &plain.backend else {
        panic!("{plain:?}");
    };
    assert_eq!(pg.sslmode, PostgresSslMode::Disable);
    assert!(pg.options().unwrap().tls.is_none());

    let cases = [
        ("sslmode = \"verify-full\"\n".to_owned(), "history.ca_file"),
        (verify(&dir.path().join("absent.pem")), "history.ca_file"),
        (verify(&not_pem), "history.ca_file"),
        (
            format!("ca_file = {:?}\n", ca.display().to_string()),
            "history.ca_file",
        ),
        ("sslmode = \"require\"\n".to_owned(), "history.sslmode"),
    ];
    for (extra, key) in &cases {
        let err = HistoryConfig::from_toml(&postgres(extra)).unwrap_err();
        assert_eq!(err.keys(), [*key], "{extra}: {err}");
    }
    let in_url = postgres("").replace("/history\"", "/history?sslmode=require\"");
    let err = HistoryConfig::from_toml(&in_url).unwrap_err();
    assert_eq!(err.keys(), ["history.url"], "{err}");
    for extra in ["sslmode = \"disable\"", "ca_file = \"/etc/ca.pem\""] {
        let text = example().replace("[history]\n", &format!("[history]\n{extra}\n"));
        let err = HistoryConfig::from_toml(&text).unwrap_err();
        let key = format!("history.{}", extra.split(' ').next().unwrap());
        assert_eq!(err.keys(), [key], "sqlite: {err}");
    }
}
