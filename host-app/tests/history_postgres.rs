//! What only the PostgreSQL history store has: several host instances on one database
//! (schema created once when they start together, metric ids shared, a replay through
//! either stored once), partitions created ahead and dropped by retention, foreign tables
//! refused, and the `[history]` seam building it. The contract both backends share is in
//! history_backends.rs.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use host_app::history::{
    HistoryConfig, HistoryError, HistoryStore, MetricKey, MetricMeta, PostgresOptions,
    PostgresStore, RetentionPolicy, TimeRange,
};
use host_app_testkit::history::{count, register, series};
use host_app_testkit::postgres::TempPostgres;

const T0: u64 = 1_700_000_000_000;
const HOUR_MS: u64 = 3_600_000;

fn fresh() -> String {
    TempPostgres::shared().unwrap().fresh_database().unwrap()
}

fn hourly(url: &str) -> PostgresStore {
    PostgresStore::open(&PostgresOptions {
        partition: Duration::from_secs(3_600),
        ..PostgresOptions::new(url)
    })
    .unwrap()
}

/// Starts (ms) of the partitions of `samples`, oldest first.
fn partitions(url: &str) -> Vec<i64> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let mut starts: Vec<i64> = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'samples'::regclass",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            r.get::<_, String>(0)
                .trim_start_matches("samples_p")
                .parse()
                .unwrap()
        })
        .collect();
    starts.sort_unstable();
    starts
}

#[test]
fn instances_starting_at_once_share_the_schema_the_metric_ids_and_exactly_once() {
    let url = fresh();
    let instances = 4;
    let barrier = Arc::new(Barrier::new(instances));
    let stores: Vec<PostgresStore> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..instances)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let url = url.clone();
                s.spawn(move || {
                    barrier.wait();
                    PostgresStore::open(&PostgresOptions::new(url))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("every instance opens"))
            .collect()
    });
    let ids: Vec<_> = stores.iter().map(|s| register(s, "Shared")).collect();
    assert!(ids.iter().all(|&id| id == ids[0]), "{ids:?}");

    // Every instance gets the same samples (a replay through each): stored once.
    let samples = series(ids[0], T0, 600, 1_000);
    let inserted: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .map(|store| s.spawn(|| store.append(&samples).unwrap().inserted))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(inserted, 600);
    assert_eq!(count(&stores[3], ids[0]), 600);

    // An instance that never saw the birth finds the metric and its history.
    let late = PostgresStore::open(&PostgresOptions::new(&url)).unwrap();
    let key = MetricKey::device("Plant1", "Edge1", "PLC1", "Shared");
    assert_eq!(late.resolve_metric(&key).unwrap(), Some(ids[0]));
    let listed = late.metrics().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id, &listed[0].key), (ids[0], &key));
    assert_eq!(
        late.range(ids[0], TimeRange::new(T0, T0 + 1_000), 10)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn partitions_are_made_ahead_and_age_retention_drops_whole_ones() {
    let url = fresh();
    let store = hourly(&url);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let current = now - now.rem_euclid(HOUR_MS as i64);
    let ahead = partitions(&url);
    assert!(
        ahead.contains(&current) && ahead.contains(&(current + 2 * HOUR_MS as i64)),
        "{ahead:?} around {current}"
    );

    // Six hours at one sample a minute; keep the last two and a half.
    let id = register(&store, "P");
    let start = T0 - T0 % HOUR_MS;
    store.append(&series(id, start, 6 * 60, 60_000)).unwrap();
    let past = |p: &Vec<i64>| {
        p.iter()
            .filter(|&&s| s < start as i64 + 6 * HOUR_MS as i64)
            .count()
    };
    assert_eq!(past(&partitions(&url)), 6);
    let policy = RetentionPolicy {
        max_age: Some(Duration::from_millis(5 * HOUR_MS / 2)),
        max_bytes: None,
    };
    let now = start + 5 * HOUR_MS;
    let mut deleted = 0;
    for _ in 0..100 {
        let step = store.apply_retention(&policy, now, 1_000).unwrap();
        deleted += step.deleted;
        if !step.more {
            break;
        }
    }
    // Hours 0 and 1 dropped whole, half of hour 2 deleted row by row.
    assert_eq!(deleted, 2 * 60 + 30);
    assert_eq!(past(&partitions(&url)), 4);
    let kept = store
        .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
        .unwrap();
    assert_eq!(kept[0].ts, now - 5 * HOUR_MS / 2);
    assert_eq!(kept.len(), 6 * 60 - 150);
}

#[test]
fn size_retention_drops_the_oldest_partitions_and_keeps_the_newest() {
    let url = fresh();
    let store = hourly(&url);
    let id = register(&store, "P");
    let start = T0 - T0 % HOUR_MS;
    for chunk in series(id, start, 8 * 3_600, 1_000).chunks(5_000) {
        store.append(chunk).unwrap();
    }
    let policy = RetentionPolicy {
        max_age: None,
        max_bytes: Some(1),
    };
    let mut steps = 0;
    while store.apply_retention(&policy, start, 1_000).unwrap().more {
        steps += 1;
        assert!(steps < 100, "size retention does not finish");
    }
    // Only the newest partition holding samples stays (the empty ones made ahead of the
    // clock are newer and stay too).
    let kept = store
        .range(id, TimeRange::new(0, u64::MAX), u32::MAX)
        .unwrap();
    assert!(!kept.is_empty());
    assert_eq!(kept.last().unwrap().ts, start + 8 * HOUR_MS - 1_000);
    assert_eq!(kept.len(), 3_600, "the newest hour");
}

#[test]
fn a_database_with_a_foreign_samples_table_is_refused_at_open() {
    let url = fresh();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute("CREATE TABLE samples (x integer)")
        .unwrap();
    let err = PostgresStore::open(&PostgresOptions::new(&url))
        .err()
        .expect("refused");
    assert!(matches!(err, HistoryError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn the_history_table_builds_a_postgres_store_from_its_keys() {
    let url = fresh();
    let text = format!("[history]\nbackend = \"postgres\"\nurl = \"{url}\"\npartition_hours = 2\n");
    let store = HistoryConfig::from_toml(&text).unwrap().build().unwrap();
    let id = store
        .register_metric(
            &MetricKey::node("G", "E", "M"),
            &MetricMeta {
                datatype: "Int32".into(),
                units: None,
            },
        )
        .unwrap();
    store.checkpoint().unwrap();
    assert_eq!(store.metrics().unwrap()[0].id, id);
    let again = hourly(&url);
    assert_eq!(
        again.partition_width(),
        Duration::from_secs(2 * 3_600),
        "the width the database was made with applies"
    );
}

/// `sslmode = "verify-full"`: the store reaches a server with TLS on (a throwaway CA, a
/// certificate for 127.0.0.1) over TLS on every connection, and refuses a server whose
/// certificate does not chain to the configured CA, saying why.
#[test]
fn with_verify_full_every_connection_is_tls_to_a_server_the_ca_vouches_for() {
    let pki = system_tests::pki::Pki::generate();
    let pg = TempPostgres::start_with_tls(&pki.server_cert, &pki.server_key).unwrap();
    let url = pg.create_database("tls").unwrap();
    let text = |ca: &std::path::Path| {
        format!(
            "[history]\nbackend = \"postgres\"\nurl = \"{url}\"\nsslmode = \"verify-full\"\n\
             ca_file = \"{}\"\n",
            ca.display()
        )
    };
    let store = HistoryConfig::from_toml(&text(&pki.ca))
        .unwrap()
        .build()
        .unwrap();
    let id = register(&*store, "Encrypted");
    let samples = series(id, T0, 10, 1_000);
    assert_eq!(store.append(&samples).unwrap().inserted, 10);
    assert_eq!(count(&*store, id), 10, "read back on a reader connection");

    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'host-app history'",
            &[],
        )
        .unwrap();
    let (tls, plain): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((tls, plain), (2, 0), "writer and reader, both over TLS");

    // A CA that did not sign the server's certificate: refused at open.
    let other = system_tests::pki::Pki::generate();
    let err = HistoryConfig::from_toml(&text(&other.ca))
        .unwrap()
        .build()
        .err()
        .expect("a server the CA does not vouch for is refused");
    assert!(matches!(err, HistoryError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
}
