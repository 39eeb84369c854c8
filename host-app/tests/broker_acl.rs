//! The access rules at CONNECT, end to end against the embedded broker: anonymous logins
//! when not allowed, a client id of another account, a will on another node's NDEATH are
//! refused with CONNACK "not authorized" and a WARN naming who and what; the accounts'
//! own logins go through. The policy the engine asks per PUBLISH and SUBSCRIBE logs its
//! refusals the same way.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use host_app::broker::{Acl, EmbeddedBroker, EmbeddedConfig, Secret, TopicPolicy, UserConfig};
use host_app_testkit::broker::{WAIT, config, with_accounts};
use rumqttc::{ConnectReturnCode, ConnectionError, LastWill, MqttOptions, PublishOptions, QoS};
use system_tests::mqtt::client::{connect, disconnect, options, subscribe, wait_connack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every log line of this test binary, for the refusals' WARN lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

/// The WARN lines logged so far that hold every one of `parts`.
fn warnings_with(parts: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains("WARN") && parts.iter().all(|p| l.contains(p)))
        .map(str::to_owned)
        .collect()
}

fn account(name: &str) -> UserConfig {
    UserConfig::new(name, Secret::new(format!("{name}-pw")))
}

/// Host `scada`, edge nodes `Plant1/Line1` and `Plant1/Line2` with an account each, two
/// readers; anonymous access off.
fn plant() -> EmbeddedConfig {
    with_accounts(
        config(),
        vec![
            account("scada").host("scada"),
            account("line1").edge("Plant1", &["Line1"]),
            account("line2").edge("Plant1", &["Line2"]),
            account("dash").reader(),
            account("dash2").reader(),
        ],
    )
}

async fn start() -> (EmbeddedBroker, SocketAddr) {
    logs();
    let broker = EmbeddedBroker::start(&plant()).await.unwrap();
    let addr = broker.plain_addr().unwrap();
    (broker, addr)
}

fn login(client_id: &str, addr: SocketAddr, user: &str) -> MqttOptions {
    let mut options = options(client_id, addr);
    options.set_credentials(user, format!("{user}-pw"));
    options
}

/// The CONNACK refusal code of a CONNECT with `options`.
async fn refusal(options: MqttOptions) -> ConnectReturnCode {
    let (_client, mut eventloop) = rumqttc::AsyncClient::builder(options).build();
    match wait_connack(&mut eventloop).await {
        Err(ConnectionError::ConnectionRefused(code)) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn valid_edge_host_and_reader_logins_are_accepted() {
    let (broker, addr) = start().await;
    let ndeath = |node: &str| {
        LastWill::new(
            format!("spBv1.0/Plant1/NDEATH/{node}"),
            "x",
            QoS::AtLeastOnce,
            false,
        )
    };
    let mut edge = login("Plant1:Line1", addr, "line1");
    edge.set_last_will(ndeath("Line1"));
    let mut host = login("host-scada", addr, "scada");
    host.set_last_will(LastWill::new(
        "spBv1.0/STATE/scada",
        "{}",
        QoS::AtLeastOnce,
        true,
    ));
    for options in [edge, host, login("dash-1", addr, "dash")] {
        let (client, eventloop) = connect(options).await;
        disconnect(client, eventloop).await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn anonymous_login_is_refused_when_not_allowed() {
    let (broker, addr) = start().await;
    assert_eq!(
        refusal(options("anon-311", addr)).await,
        ConnectReturnCode::NotAuthorized
    );
    // MQTT 5: reason code 0x87 "not authorized".
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let client_id = b"anon-5";
    let mut connect = vec![0x10, 13 + client_id.len() as u8];
    connect.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30, 0]);
    connect.extend_from_slice(&[0, client_id.len() as u8]);
    connect.extend_from_slice(client_id);
    stream.write_all(&connect).await.unwrap();
    let mut connack = [0u8; 5];
    tokio::time::timeout(WAIT, stream.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .unwrap();
    assert_eq!(connack, [0x20, 3, 0, 0x87, 0]);
    for client_id in ["anon-311", "anon-5"] {
        assert_eq!(
            warnings_with(&[
                &format!("client_id=\"{client_id}\""),
                "anonymous access is not allowed"
            ])
            .len(),
            1,
            "one WARN for {client_id}"
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn taking_another_accounts_client_id_is_refused() {
    let (broker, addr) = start().await;
    // The host's own session is connected; nobody else may take its id.
    let (host, mut host_loop) = connect(login("host-scada", addr, "scada")).await;
    for (client_id, user) in [
        ("host-scada", "dash"),
        ("Plant1:Line2", "line1"),
        ("Plant1:Line1", "dash"),
    ] {
        assert_eq!(
            refusal(login(client_id, addr, user)).await,
            ConnectReturnCode::NotAuthorized,
            "{user} as {client_id}"
        );
        let logged = warnings_with(&[
            &format!("client_id=\"{client_id}\""),
            &format!("username=Some(\"{user}\")"),
            "belongs to account",
        ]);
        assert_eq!(logged.len(), 1, "one WARN for {user} as {client_id}");
    }
    // An edge account's own login does not stretch to an id it does not own.
    assert_eq!(
        refusal(login("line1-other", addr, "line1")).await,
        ConnectReturnCode::NotAuthorized
    );
    assert_eq!(
        warnings_with(&["client_id=\"line1-other\"", "not one of the account's"]).len(),
        1
    );
    // The host was never kicked: it still talks to the broker.
    host.publish(
        "spBv1.0/STATE/scada",
        b"{}".to_vec(),
        PublishOptions::new(QoS::AtLeastOnce).retain(true),
    )
    .await
    .unwrap();
    system_tests::mqtt::client::wait_puback(&mut host_loop).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_session_is_taken_over_only_by_its_own_account() {
    let (broker, addr) = start().await;
    // Readers own no client id: the session's account does.
    let (dash, mut dash_loop) = connect(login("shared-id", addr, "dash")).await;
    assert_eq!(
        refusal(login("shared-id", addr, "dash2")).await,
        ConnectReturnCode::NotAuthorized
    );
    let logged = warnings_with(&[
        "client_id=\"shared-id\"",
        "username=Some(\"dash2\")",
        "in use by a session of another account",
    ]);
    assert_eq!(logged.len(), 1, "{logged:?}");
    // The first session was left alone.
    subscribe(&dash, &mut dash_loop, "spBv1.0/#", QoS::AtLeastOnce).await;
    // Its own account takes it over, as MQTT says.
    let (again, again_loop) = connect(login("shared-id", addr, "dash")).await;
    disconnect(again, again_loop).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_will_on_another_nodes_ndeath_is_refused() {
    let (broker, addr) = start().await;
    for (topic, what) in [
        ("spBv1.0/Plant1/NDEATH/Line2", "another node's NDEATH"),
        ("spBv1.0/Plant1/NDATA/Line1", "its own NDATA"),
        ("spBv1.0/STATE/scada", "the host's STATE"),
    ] {
        let mut options = login("Plant1:Line1", addr, "line1");
        options.set_last_will(LastWill::new(topic, "x", QoS::AtLeastOnce, false));
        assert_eq!(
            refusal(options).await,
            ConnectReturnCode::NotAuthorized,
            "a will on {what}"
        );
        let logged = warnings_with(&[
            "client_id=\"Plant1:Line1\"",
            &format!("will_topic=Some(\"{topic}\")"),
            "will topic is not the client's",
        ]);
        assert_eq!(logged.len(), 1, "one WARN for a will on {what}");
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_logged_without_the_password() {
    let (broker, addr) = start().await;
    let mut options = options("Plant1:Line1", addr);
    options.set_credentials("line1", "guessed-pw");
    assert_eq!(
        refusal(options).await,
        ConnectReturnCode::BadUserNamePassword
    );
    let logged = warnings_with(&["username=Some(\"line1\")", "wrong password"]);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(!logged[0].contains("guessed-pw"));
    broker.stop().await;
}

#[test]
fn the_policy_logs_each_publish_and_subscribe_it_refuses() {
    logs();
    let acl = Acl::from_config(&plant()).unwrap();
    let (account, client_id) = (Some("line1"), "Plant1:Line1");
    assert!(!acl.may_publish(account, client_id, "spBv1.0/Plant1/NCMD/Line2"));
    assert!(!acl.may_subscribe(account, client_id, "spBv1.0/Plant1/DCMD/Line2/+"));
    assert!(acl.may_publish(account, client_id, "spBv1.0/Plant1/NDATA/Line1"));
    for (packet, topic) in [
        ("PUBLISH", "spBv1.0/Plant1/NCMD/Line2"),
        ("SUBSCRIBE", "spBv1.0/Plant1/DCMD/Line2/+"),
    ] {
        let logged = warnings_with(&[
            &format!("{packet} refused"),
            "client_id=\"Plant1:Line1\"",
            "username=Some(\"line1\")",
            &format!("topic=\"{topic}\""),
        ]);
        assert_eq!(logged.len(), 1, "{packet} {topic}");
    }
    assert!(warnings_with(&["refused by", "topic=\"spBv1.0/Plant1/NDATA/Line1\""]).is_empty());
}
