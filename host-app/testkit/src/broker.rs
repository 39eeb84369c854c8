//! Shared by the `broker_*` tests: an embedded broker configuration and a started broker;
//! the MQTT client they drive comes from `system_tests::mqtt::client`.

use std::time::Duration;

use host_app::broker::{
    AnonymousConfig, EmbeddedBroker, EmbeddedConfig, PlainListenerConfig, Role, Secret, UserConfig,
};

/// Upper bound for any single wait in these tests; never a speed assertion.
pub const WAIT: Duration = Duration::from_secs(10);

/// An embedded configuration on an OS-chosen loopback port, validated, open to anonymous
/// clients with every right (these tests are about the broker, not its access rules;
/// `#` matches no topic that begins with `$`, so the Sparkplug Aware topics are granted
/// by name).
pub fn config() -> EmbeddedConfig {
    let everything = Some(vec!["#".to_owned()]);
    let mut config = EmbeddedConfig {
        plain: PlainListenerConfig {
            enabled: true,
            listen: "127.0.0.1:0".parse().unwrap(),
        },
        allow_anonymous: true,
        anonymous: Some(AnonymousConfig {
            role: Some(Role::Custom),
            publish: everything,
            subscribe: Some(vec!["#".to_owned(), "$sparkplug/certificates/#".to_owned()]),
            deny: None,
        }),
        ..EmbeddedConfig::default()
    };
    config.validate().unwrap();
    config
}

/// `config` with these accounts and anonymous access off: the first a host account whose
/// host id is its username (the host logs in as it), the others readers.
pub fn with_users(config: EmbeddedConfig, users: &[(&str, &str)]) -> EmbeddedConfig {
    let accounts = users
        .iter()
        .enumerate()
        .map(|(i, (u, p))| {
            let user = UserConfig::new(*u, Secret::new(*p));
            if i == 0 { user.host(u) } else { user.reader() }
        })
        .collect();
    with_accounts(config, accounts)
}

/// `config` with these accounts and anonymous access off; the host logs in as the first
/// `host` account.
pub fn with_accounts(mut config: EmbeddedConfig, accounts: Vec<UserConfig>) -> EmbeddedConfig {
    config.host_username = accounts
        .iter()
        .find(|u| u.role == Some(Role::Host))
        .map(|u| u.username.clone());
    config.users = accounts;
    config.allow_anonymous = false;
    config.anonymous = None;
    config.validate().unwrap();
    config
}

pub async fn start(config: &EmbeddedConfig) -> EmbeddedBroker {
    system_tests::logs::init();
    EmbeddedBroker::start(config).await.unwrap()
}

/// Reads one raw MQTT packet within [`WAIT`]: its first byte and its body.
pub async fn read_packet(stream: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let read = async {
        let first = stream.read_u8().await?;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let byte = stream.read_u8().await?;
            len |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        stream.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>((first, body))
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a packet in time")
        .expect("a packet")
}
