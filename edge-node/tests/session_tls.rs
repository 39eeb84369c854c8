//! The link over mutual TLS (rustls, ring) to Mosquitto, with a CA, server and client
//! certificates made by the `openssl` command for this test; and a password read from
//! its file.

mod session_support;

use std::path::Path;
use std::process::Command;

use edge_node::EdgeNode;
use edge_node::config::{Password, TlsSettings};
use session_support::*;
use system_tests::Mosquitto;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command (tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ca.pem, server.pem/server.key (localhost, 127.0.0.1), client.pem/client.key; all
/// readable by others, since Mosquitto started as root drops to its own user.
fn make_certificates(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = |name: &str| {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                name,
            ],
        )
    };
    key("ca.key");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=Test CA",
            "-days",
            "2",
            "-out",
            "ca.pem",
        ],
    );
    for (name, cn, san) in [
        (
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ),
        ("client", "gw1", "extendedKeyUsage=clientAuth"),
    ] {
        key(&format!("{name}.key"));
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), san).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_named_server_carries_the_session() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let tls_port = system_tests::free_port();
    let d = dir.path().display();
    let broker = Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n"
    ));
    let plant = start_plant().await;
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let mut config = node_config(&Setup {
        servers: &[tls_port],
        modbus_port: plant.local_addr().port(),
        sparkplug_extra: "",
    });
    config.mqtt.servers[0].tls = Some(TlsSettings {
        ca_file: dir.path().join("ca.pem"),
        server_name: Some("localhost".into()),
        client_auth: Some((dir.path().join("client.pem"), dir.path().join("client.key"))),
    });
    // Mosquitto allows anonymous here; the credentials still go in CONNECT.
    config.mqtt.username = Some("gw1".into());
    config.mqtt.password = Some(Password::new("not-logged"));
    let node = EdgeNode::start(config).unwrap();
    let nbirth = host.next_kind("NBIRTH").await;
    assert_eq!(nbirth.bd_seq(), 0);
    let server = nbirth
        .payload()
        .metric("Link/Server")
        .and_then(|m| m.typed_value().cloned());
    assert_eq!(
        server,
        Some(sparkplug::Value::String(format!(
            "mqtts://127.0.0.1:{tls_port}"
        )))
    );
    host.next_kind("DBIRTH").await;
    node.shutdown().await.unwrap();
    host.next_kind("NDEATH").await;
    plant.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let other = tempfile::tempdir().unwrap();
    make_certificates(other.path());
    let tls_port = system_tests::free_port();
    let d = dir.path().display();
    let broker = Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
    ));
    let plant = start_plant().await;
    let mut host = Recorder::start(broker.port(), "host", "spBv1.0/#").await;
    let mut config = node_config(&Setup {
        servers: &[tls_port],
        modbus_port: plant.local_addr().port(),
        sparkplug_extra: "",
    });
    config.mqtt.servers[0].tls = Some(TlsSettings {
        ca_file: other.path().join("ca.pem"),
        server_name: Some("localhost".into()),
        client_auth: None,
    });
    let node = EdgeNode::start(config).unwrap();
    let seen = host.drain_for(std::time::Duration::from_millis(1500)).await;
    assert!(
        seen.is_empty(),
        "no session with an untrusted server: {seen:?}"
    );
    node.shutdown().await.unwrap();
    plant.shutdown().await;
}
