//! An independent MQTT implementation (paho-mqtt 1.6.1, Python) against the embedded
//! broker over MQTT 3.1.1 and 5: retained STATE and the QoS 1 will.

use std::time::Duration;

use host_app_testkit::broker::*;

#[tokio::test]
async fn paho_retained_state_and_will_over_mqtt_311_and_5() {
    let broker = start(&config()).await;
    let addr = broker.plain_addr().unwrap();
    let run = tokio::task::spawn_blocking(move || {
        system_tests::python_command("paho_check.py")
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .output()
    });
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("paho check did not finish")
        .unwrap()
        .expect("cannot run Python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "paho check failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("ok 3.1.1") && stdout.contains("ok 5"),
        "{stdout}"
    );
    broker.stop().await;
}
