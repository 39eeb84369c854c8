//! Broker accounts changed while the embedded broker runs (`EmbeddedBroker::reload_accounts`,
//! what a SIGHUP applies): a removed account's connection is ended at once, its will
//! published, and it cannot log in again; a new account logs in; a changed one is ended
//! and logs in again under its new rules; accounts left as they were keep their
//! connections (no reconnect, no Rebirth over a paid link).

use std::net::SocketAddr;

use host_app::broker::{EmbeddedBroker, EmbeddedConfig, Secret, UserConfig};
use host_app_testkit::broker::{config, with_accounts};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, EventLoop, LastWill, MqttOptions,
    PublishOptions, QoS,
};
use system_tests::mqtt::client::{
    connect, disconnect, next_publish, options, subscribe, wait_closed, wait_connack, wait_puback,
};

fn account(name: &str) -> UserConfig {
    UserConfig::new(name, Secret::new(format!("{name}-pw")))
}

/// The host `scada` and the edge accounts given.
fn plant(edges: Vec<UserConfig>) -> EmbeddedConfig {
    let mut accounts = vec![account("scada").host("scada")];
    accounts.extend(edges);
    with_accounts(config(), accounts)
}

/// An edge node of Plant1 logging in as `user`, its will its NDEATH.
fn edge(node: &str, user: &str, addr: SocketAddr) -> MqttOptions {
    let mut options = options(&format!("Plant1:{node}"), addr);
    options.set_credentials(user, format!("{user}-pw"));
    options.set_last_will(LastWill::new(
        format!("spBv1.0/Plant1/NDEATH/{node}"),
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    options
}

async fn refusal(options: MqttOptions) -> ConnectReturnCode {
    let (_client, mut eventloop) = AsyncClient::builder(options).build();
    match wait_connack(&mut eventloop).await {
        Err(ConnectionError::ConnectionRefused(code)) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Publishes NDATA of `node` at QoS 1 on the open connection and sees its PUBACK.
async fn still_publishes(client: &AsyncClient, eventloop: &mut EventLoop, node: &str) {
    client
        .publish(
            format!("spBv1.0/Plant1/NDATA/{node}"),
            &b"data"[..],
            PublishOptions::at_least_once(),
        )
        .await
        .unwrap();
    wait_puback(eventloop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_account_is_cut_off_a_new_one_logs_in_and_the_others_go_on() {
    let line1 = || account("line1").edge("Plant1", &["Line1"]);
    let line2 = || account("line2").edge("Plant1", &["Line2"]);
    let line3 = || account("line3").edge("Plant1", &["Line3"]);
    let broker = EmbeddedBroker::start(&plant(vec![line1(), line2()]))
        .await
        .unwrap();
    let addr = broker.plain_addr().unwrap();
    let mut host_options = options("scada", addr);
    host_options.set_credentials("scada", "scada-pw");
    let (host, mut host_loop) = connect(host_options).await;
    subscribe(&host, &mut host_loop, "spBv1.0/#", QoS::AtLeastOnce).await;
    let (one, mut one_loop) = connect(edge("Line1", "line1", addr)).await;
    let (_two, mut two_loop) = connect(edge("Line2", "line2", addr)).await;

    // line2 leaves, line3 arrives, line1 stays as it was.
    let reloaded = broker
        .reload_accounts(&plant(vec![line1(), line3()]))
        .await
        .unwrap();
    assert_eq!(reloaded.changes.ended, ["line2"], "{reloaded}");
    assert_eq!(reloaded.changes.added, ["line3"], "{reloaded}");
    assert_eq!(reloaded.connections_ended, 1, "{reloaded}");
    wait_closed(&mut two_loop).await;
    let will = next_publish(&mut host_loop).await;
    assert_eq!(&will.topic[..], b"spBv1.0/Plant1/NDEATH/Line2");
    assert_eq!(
        refusal(edge("Line2", "line2", addr)).await,
        ConnectReturnCode::BadUserNamePassword,
        "a removed account logs in no more"
    );
    let (three, three_loop) = connect(edge("Line3", "line3", addr)).await;
    disconnect(three, three_loop).await;
    // line1's connection went on: it publishes on it, and the host gets it.
    still_publishes(&one, &mut one_loop, "Line1").await;
    let data = next_publish(&mut host_loop).await;
    assert_eq!(&data.topic[..], b"spBv1.0/Plant1/NDATA/Line1");

    // The same accounts again: nothing changes, nobody is cut off.
    let again = broker
        .reload_accounts(&plant(vec![line1(), line3()]))
        .await
        .unwrap();
    assert!(again.changes.is_empty(), "{again}");
    assert_eq!(again.connections_ended, 0);
    still_publishes(&one, &mut one_loop, "Line1").await;

    // line1's rights change (Line1 is no longer its node): ended, and it may not publish
    // as Line1 once logged in again.
    let moved = account("line1").edge("Plant1", &["Line4"]);
    let changed = broker
        .reload_accounts(&plant(vec![moved, line3()]))
        .await
        .unwrap();
    assert_eq!(changed.changes.ended, ["line1"], "{changed}");
    assert_eq!(changed.connections_ended, 1);
    wait_closed(&mut one_loop).await;
    let mut as_line4 = options("Plant1:Line4", addr);
    as_line4.set_credentials("line1", "line1-pw");
    let (four, mut four_loop) = connect(as_line4).await;
    still_publishes(&four, &mut four_loop, "Line4").await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_ends_the_sessions_that_logged_in_with_the_old_one() {
    let line1 = |password: &str| {
        UserConfig::new("line1", Secret::new(password.to_owned())).edge("Plant1", &["Line1"])
    };
    let broker = EmbeddedBroker::start(&plant(vec![line1("line1-pw")]))
        .await
        .unwrap();
    let addr = broker.plain_addr().unwrap();
    let (_one, mut one_loop) = connect(edge("Line1", "line1", addr)).await;
    let reloaded = broker
        .reload_accounts(&plant(vec![line1("rotated-pw")]))
        .await
        .unwrap();
    assert_eq!(reloaded.changes.ended, ["line1"], "{reloaded}");
    wait_closed(&mut one_loop).await;
    assert_eq!(
        refusal(edge("Line1", "line1", addr)).await,
        ConnectReturnCode::BadUserNamePassword
    );
    // A configuration with a problem changes nothing.
    let mut bad = plant(vec![line1("rotated-pw")]);
    bad.users.push(account("line1").edge("Plant1", &["Line9"]));
    let e = broker.reload_accounts(&bad).await.unwrap_err().to_string();
    assert!(e.contains("listed twice"), "{e}");
    let mut rotated = edge("Line1", "line1", addr);
    rotated.set_credentials("line1", "rotated-pw");
    connect(rotated).await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_the_hosts_own_account_waits_for_a_restart() {
    let with_host = |password: &str| {
        let mut config = with_accounts(
            config(),
            vec![
                UserConfig::new("scada", Secret::new(password.to_owned())).host("scada"),
                account("line1").edge("Plant1", &["Line1"]),
            ],
        );
        config.host_username = Some("scada".to_owned());
        config
    };
    let broker = EmbeddedBroker::start(&with_host("scada-pw")).await.unwrap();
    let addr = broker.plain_addr().unwrap();
    let mut host_options = options("scada", addr);
    host_options.set_credentials("scada", "scada-pw");
    let (host, mut host_loop) = connect(host_options).await;
    let e = broker
        .reload_accounts(&with_host("rotated"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the host's own account \"scada\" changed"),
        "{e}"
    );
    // Nothing changed: the host's session goes on and line1 still logs in.
    subscribe(&host, &mut host_loop, "spBv1.0/#", QoS::AtLeastOnce).await;
    let (one, one_loop) = connect(edge("Line1", "line1", addr)).await;
    disconnect(one, one_loop).await;
    broker.stop().await;
}

/// A reader that keeps its session (clean session off) and loses a right: its kept
/// session goes with the reload, so no subscription made under the old rules brings it
/// messages it may no longer read; it logs in to a new session and subscribes afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_accounts_kept_session_is_cleared_with_its_subscriptions() {
    let dash = |filter: &str| {
        let mut reader = account("dash").reader();
        reader.subscribe = Some(vec![filter.to_owned()]);
        reader
    };
    let line1 = || account("line1").edge("Plant1", &["Line1"]);
    let broker = EmbeddedBroker::start(&plant(vec![line1(), dash("spBv1.0/Plant1/#")]))
        .await
        .unwrap();
    let addr = broker.plain_addr().unwrap();
    let kept = || {
        let mut options = options("dash-1", addr);
        options.set_credentials("dash", "dash-pw");
        options.set_clean_session(false);
        options
    };
    let (reader, mut reader_loop) = connect(kept()).await;
    subscribe(
        &reader,
        &mut reader_loop,
        "spBv1.0/Plant1/#",
        QoS::AtLeastOnce,
    )
    .await;
    disconnect(reader, reader_loop).await;
    let gauge = broker.client_gauge();
    for _ in 0..100 {
        if gauge.connected() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(gauge.connected(), 0, "the reader left");

    // While it is away its right to Plant1 goes.
    let reloaded = broker
        .reload_accounts(&plant(vec![line1(), dash("spBv1.0/Plant2/#")]))
        .await
        .unwrap();
    assert_eq!(reloaded.changes.ended, ["dash"], "{reloaded}");
    assert_eq!(reloaded.connections_ended, 0, "{reloaded}");
    assert_eq!(reloaded.sessions_cleared, 1, "{reloaded}");
    let (one, mut one_loop) = connect(edge("Line1", "line1", addr)).await;
    still_publishes(&one, &mut one_loop, "Line1").await;

    // Back: no session kept for it, nothing queued, and the old filter is refused.
    let (reader, mut reader_loop) = AsyncClient::builder(kept()).build();
    let present = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(ack)) =
                reader_loop.poll().await.unwrap()
            {
                return ack.session_present;
            }
        }
    })
    .await
    .unwrap();
    assert!(!present, "the kept session was cleared");
    reader
        .subscribe("spBv1.0/Plant1/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let codes = system_tests::mqtt::client::wait_suback(
        &mut reader_loop,
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(codes, [rumqttc::SubscribeReasonCode::Failure]);
    still_publishes(&one, &mut one_loop, "Line1").await;
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p)) =
                reader_loop.poll().await.unwrap()
            {
                return p;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "a message reached the reader: {quiet:?}");
    broker.stop().await;
}
