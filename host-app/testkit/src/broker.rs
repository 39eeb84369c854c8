//! Shared by the `broker_*` tests: an embedded broker configuration and a started broker;
//! the MQTT client they drive comes from `system_tests::mqtt::client`.

use std::time::Duration;

use host_app::broker::{EmbeddedBroker, EmbeddedConfig, PlainListenerConfig, Secret, UserConfig};

/// Upper bound for any single wait in these tests; never a speed assertion.
pub const WAIT: Duration = Duration::from_secs(10);

/// An embedded configuration on an OS-chosen loopback port, validated.
pub fn config() -> EmbeddedConfig {
    let mut config = EmbeddedConfig {
        plain: PlainListenerConfig {
            enabled: true,
            listen: "127.0.0.1:0".parse().unwrap(),
        },
        ..EmbeddedConfig::default()
    };
    config.validate().unwrap();
    config
}

pub fn with_users(mut config: EmbeddedConfig, users: &[(&str, &str)]) -> EmbeddedConfig {
    config.users = users
        .iter()
        .map(|(u, p)| UserConfig::new(*u, Secret::new(*p)))
        .collect();
    config.host_username = users.first().map(|(u, _)| u.to_string());
    config.validate().unwrap();
    config
}

pub async fn start(config: &EmbeddedConfig) -> EmbeddedBroker {
    system_tests::logs::init();
    EmbeddedBroker::start(config).await.unwrap()
}
