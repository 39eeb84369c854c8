//! The host's pages through the real server: each page answers for its role (the Users
//! page is the admin's), a tag table shows Write only to operators and only on metrics
//! the birth made writable, with the birth's datatype, units and limits; the overview
//! shows each node's bdSeq and seq gaps; the audit log exports CSV by user; a page
//! without a session leads to login.

use std::time::Duration;

use host_app_testkit::host::{born, login};
use sparkplug::{Metric, PropertySet};
use web::Role;

fn pump() -> Vec<Metric> {
    vec![
        Metric::new("Speed", 1450.0f64).with_properties(
            PropertySet::new()
                .with_eng_unit("rpm")
                .with_eng_range(0.0, 3000.0)
                .with_writable(true),
        ),
        Metric::new("Running", true),
    ]
}

/// `GET path` as a browser: status and body.
async fn page(api: &system_tests::http::Api, path: &str) -> (u16, String) {
    let (api, path) = (api.clone(), path.to_owned());
    tokio::task::spawn_blocking(move || {
        api.exchange("GET", &path, "", &[("Accept", "text/html")])
            .map(|(status, _, body)| (status, body))
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_answer_by_role_and_writes_show_where_the_birth_allows() {
    let dir = tempfile::tempdir().unwrap();
    let (host, mut edge) = born(dir.path(), 3, pump()).await;
    let operator = login(&host, "olivia", Role::Operator).await;
    let viewer = login(&host, "victor", Role::Viewer).await;
    let admin = login(&host, "admin", Role::Admin).await;

    let (status, body) = page(&operator, "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#"data-node="Plant/Edge1""#), "{body}");
    assert!(body.contains(">3</td>"), "bdSeq 3 shown: {body}");
    assert!(body.contains("ONLINE"));

    let (status, body) = page(&operator, "/device/Plant/Edge1/Pump").await;
    assert_eq!(status, 200, "{body}");
    let writes: Vec<&str> = body
        .match_indices("class=\"small write\"")
        .map(|(i, _)| &body[i..i + 200])
        .collect();
    assert_eq!(writes.len(), 1, "Write only on the writable metric: {body}");
    assert!(
        writes[0].contains(r#"data-datatype="Double""#)
            && writes[0].contains(r#"data-units="rpm""#)
    );
    assert!(writes[0].contains(r#"data-low="0""#) && writes[0].contains(r#"data-high="3000""#));
    assert!(body.contains("id=\"write-dialog\""));

    let (status, body) = page(&viewer, "/device/Plant/Edge1/Pump").await;
    assert_eq!(status, 200);
    assert!(!body.contains("class=\"small write\"") && !body.contains("write-dialog"));

    for path in ["/trends", "/audit", "/system", "/node/Plant/Edge1"] {
        assert_eq!(page(&viewer, path).await.0, 200, "{path}");
    }
    assert_eq!(page(&viewer, "/users").await.0, 403);
    let (status, body) = page(&admin, "/users").await;
    assert_eq!(status, 200);
    assert!(body.contains("olivia") && body.contains("victor"));
    assert_eq!(page(&viewer, "/device/Plant/Edge1/Nope").await.0, 404);

    // The audit log as CSV, filtered by user: victor's login, and nobody else's.
    let (status, csv) = page(&viewer, "/audit.csv?user=victor").await;
    assert_eq!(status, 200);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,ts_ms,time_utc,user,action,target,value,outcome,detail")
    );
    let rows: Vec<&str> = lines.collect();
    assert!(
        rows.iter().any(|r| r.contains(",victor,login_succeeded,")),
        "{csv}"
    );
    assert!(rows.iter().all(|r| r.contains(",victor,")), "{csv}");

    let anonymous = system_tests::http::Api::new(host.api_addr());
    let (status, head, _) = tokio::task::spawn_blocking(move || {
        anonymous.exchange("GET", "/audit", "", &[("Accept", "text/html")])
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status, 303);
    assert!(
        head.to_ascii_lowercase()
            .contains("location: /login?next=/audit"),
        "{head}"
    );

    // A seq gap shows on the overview once the reorder timeout gives it up.
    edge.next_seq(); // a seq never sent
    edge.ddata("Pump", vec![Metric::new("Running", false)])
        .await;
    let shared = host.shared().clone();
    system_tests::wait::until_async("the gap counted", Duration::from_secs(10), || {
        let gaps = shared
            .tracker()
            .node(&host_app::tracker::NodeId::new("Plant", "Edge1"))
            .map_or(0, |n| n.seq_gaps);
        (gaps > 0).then_some(())
    })
    .await;
    let (_, body) = page(&operator, "/").await;
    assert!(
        body.contains("data-label=\"Seq gaps\" class=\"num\">1</td>"),
        "{body}"
    );
    host.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_page_shows_the_link_bill_an_edge_node_reports() {
    use host_app_testkit::host::{WAIT, broker_addr, start_host};
    use system_tests::mqtt::ScriptedEdge;
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), None).await;
    let mut edge = ScriptedEdge::connect(broker_addr(&host), "Plant", "Sat1", 0).await;
    edge.nbirth(vec![
        Metric::new("Link/Bytes Sent This Hour", 1_234u64).with_alias(18),
        Metric::new("Link/Bytes Received This Hour", 56u64).with_alias(19),
        Metric::new("Link/Bytes Sent Today", 98_765u64).with_alias(20),
        Metric::new("Link/Bytes Received Today", 432u64).with_alias(21),
        Metric::new("Link/Daily Budget", 50_000_000u64).with_alias(22),
        Metric::new("Store/Replay Paused", false).with_alias(23),
    ])
    .await;
    let shared = host.shared().clone();
    system_tests::wait::until_async("birth tracked", WAIT, || {
        shared
            .tracker()
            .node(&host_app::tracker::NodeId::new("Plant", "Sat1"))
            .is_some()
    })
    .await;
    let viewer = login(&host, "victor", Role::Viewer).await;
    let (status, body) = page(&viewer, "/node/Plant/Sat1").await;
    assert_eq!(status, 200, "{body}");
    let bill = &body[body.find("id=\"bill\"").expect("the bill card")..];
    for shown in [
        "sent today (UTC)",
        "98765",
        "1234",
        "432",
        "50000000",
        "daily budget",
        // The page formats each figure by its kind (host.js), live values included.
        "data-format=\"bytes\" data-value=\"98765\"",
        "data-format=\"budget\" data-value=\"50000000\"",
        "data-format=\"replay\" data-value=\"false\"",
    ] {
        assert!(bill.contains(shown), "{shown} in {bill}");
    }
    // A node without a bill has no card.
    let (_, other) = page(&viewer, "/").await;
    assert!(!other.contains("id=\"bill\""));
}
