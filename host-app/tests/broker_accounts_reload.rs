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
        .unwrap();
    assert!(again.changes.is_empty(), "{again}");
    assert_eq!(again.connections_ended, 0);
    still_publishes(&one, &mut one_loop, "Line1").await;

    // line1's rights change (Line1 is no longer its node): ended, and it may not publish
    // as Line1 once logged in again.
    let moved = account("line1").edge("Plant1", &["Line4"]);
    let changed = broker
        .reload_accounts(&plant(vec![moved, line3()]))
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
    let e = broker.reload_accounts(&bad).unwrap_err().to_string();
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
