//! Shared by the `host_*` tests: a host on a real broker and SQLite file; the scripted
//! edge node comes from `system_tests::mqtt`. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use host_app::broker::{EmbeddedBroker, MqttEndpoint};
use host_app::config::HostConfig;
use host_app::history::{
    HistoryStore, HistoryWriter, MetricKey, Sample, SqliteOptions, SqliteStore, TimeRange,
    WriterConfig, WriterTask,
};
use host_app::host::Host;
use host_app::session::{Publisher, Session};
use host_app::shared::HostShared;
use host_app::tracker::{Liveness, NodeId, TrackerConfig};
use sparkplug::{Metric, PropertySet};
use system_tests::config::host::{Broker, HostConfig as TestHostConfig};
use system_tests::http::{Api, TEST_PASSWORD};
use system_tests::mqtt::ScriptedEdge;
use web::{Role, Secret};

/// Upper bound for any single wait; never a speed assertion.
pub const WAIT: Duration = Duration::from_secs(10);
/// The reorder timeout the test hosts use.
pub const REORDER_MS: u64 = 300;
pub const HOST_ID: &str = "scada";

/// The test host's configuration: embedded broker on an OS-chosen port, or an external
/// broker at `external`; history in `dir`.
pub fn host_config(dir: &std::path::Path, external: Option<SocketAddr>) -> TestHostConfig {
    let broker = match external {
        None => Broker::embedded(SocketAddr::from(([127, 0, 0, 1], 0))),
        Some(addr) => Broker::external(addr),
    };
    let mut config = TestHostConfig::new(HOST_ID, broker, dir);
    config.history.flush_interval_ms = Some(20);
    config.sparkplug.reorder_timeout_ms = Some(REORDER_MS);
    config.sparkplug.rebirth_min_interval_ms = Some(60_000);
    config
}

/// Starts a host and waits until its STATE birth is out.
pub async fn start_host(dir: &std::path::Path, external: Option<SocketAddr>) -> Host {
    system_tests::logs::init();
    let config = HostConfig::from_toml(&host_config(dir, external).to_toml()).unwrap();
    let host = Host::start(&config).await.unwrap();
    let shared = host.shared().clone();
    system_tests::wait::until_async("host connected", WAIT, || shared.is_connected()).await;
    host
}

/// Creates account `name` with `role` (password [`TEST_PASSWORD`]) in the host's
/// accounts database, and account `admin` first when no admin exists (the panel serves
/// only setup until one does), then logs in: the client the API tests use.
pub async fn login(host: &Host, name: &str, role: Role) -> Api {
    let auth = host.api().auth().clone();
    let user = name.to_owned();
    auth.blocking(move |a| {
        let password = Secret::new(TEST_PASSWORD);
        if a.setup_required()? {
            a.create_user(None, "admin", &password, Role::Admin)?;
        }
        match a.create_user(None, &user, &password, role) {
            Err(web::AuthError::Store(web::StoreError::Duplicate { .. })) if user == "admin" => {
                Ok(())
            }
            other => other.map(drop),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("create user {name}: {e}"));
    Api::login_async(host.api_addr(), name, TEST_PASSWORD).await
}

/// An admin's session (account `admin`), for tests that only need to get through.
pub async fn admin(host: &Host) -> Api {
    login(host, "admin", Role::Admin).await
}

/// The broker address edge nodes use: the host's embedded plain listener.
pub fn broker_addr(host: &Host) -> SocketAddr {
    host.broker().embedded().unwrap().plain_addr().unwrap()
}

/// A host, and an edge node `Plant/Edge1` (bdSeq `bd_seq`) with an NBIRTH of `Temp`
/// (alias 1, degC) and a DBIRTH of `Pump` with `pump`, both tracked by the host.
pub async fn born(dir: &std::path::Path, bd_seq: u8, pump: Vec<Metric>) -> (Host, ScriptedEdge) {
    let host = start_host(dir, None).await;
    let mut edge = ScriptedEdge::connect(broker_addr(&host), "Plant", "Edge1", bd_seq).await;
    edge.nbirth(vec![
        Metric::new("Temp", 20.5f64)
            .with_alias(1)
            .with_properties(PropertySet::new().with_eng_unit("degC")),
    ])
    .await;
    edge.dbirth("Pump", pump).await;
    let shared = host.shared().clone();
    system_tests::wait::until_async("births tracked", WAIT, || {
        shared
            .tracker()
            .node(&NodeId::new("Plant", "Edge1"))
            .and_then(|n| n.device("Pump").map(|d| d.state == Liveness::Online))
            .unwrap_or(false)
    })
    .await;
    (host, edge)
}

/// Every stored sample of `key` (at most `limit`), after a flush.
pub async fn stored(host: &Host, key: &MetricKey, limit: u32) -> Vec<Sample> {
    host.flush().await.unwrap();
    let store = host.shared().store.clone();
    let id = store
        .resolve_metric(key)
        .unwrap()
        .expect("metric registered");
    store
        .range(id, TimeRange::new(0, u64::MAX >> 2), limit)
        .unwrap()
}

/// An embedded broker alone, on an OS-chosen port, configured as the test host's is.
pub async fn embedded_broker() -> EmbeddedBroker {
    system_tests::logs::init();
    let text = host_config(std::path::Path::new("."), None).to_toml();
    let config = HostConfig::from_toml(&text).unwrap();
    EmbeddedBroker::start(&config.broker.embedded)
        .await
        .unwrap()
}

/// A Primary Host session, not yet running, with the parts a test watches or keeps.
pub struct HostSession {
    pub session: Session,
    pub shared: Arc<HostShared>,
    /// Kept so the session's publisher side stays open.
    pub publisher: Publisher,
    /// Kept so the history writer's task lives as long as the test.
    pub writer_task: WriterTask,
}

/// A session of host `HOST_ID` to plain MQTT at 127.0.0.1:`port`, its history in a new
/// SQLite file in `dir`.
pub fn host_session(dir: &std::path::Path, port: u16) -> HostSession {
    let store: Arc<dyn HistoryStore> =
        Arc::new(SqliteStore::open(dir.join("h.db"), &SqliteOptions::default()).unwrap());
    let (writer, writer_task) = HistoryWriter::spawn(store.clone(), WriterConfig::default());
    let shared = HostShared::new(HOST_ID, store, TrackerConfig::default());
    let endpoint = MqttEndpoint {
        host: "127.0.0.1".into(),
        port,
        tls: None,
        credentials: None,
    };
    let (session, publisher) = Session::new(&endpoint, shared.clone(), writer).unwrap();
    HostSession {
        session,
        shared,
        publisher,
        writer_task,
    }
}
