//! The host configuration file: one TOML document with `[broker]` (the broker module's),
//! `[history]` (the history module's), `[sparkplug]` and `[api]`, validated at load; every
//! problem of every table is reported, named by its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use infra::{ConfigError, Problems};
use serde::Deserialize;

pub use crate::api::config::{ApiConfig, ApiTls};
use crate::broker::BrokerConfig;
use crate::fleet::{GroupPattern, Ownership, PeerConfig};
use crate::history::HistoryConfig;
use crate::mqtt::MAX_PACKET_SIZE;
use crate::session::SessionConfig;
use crate::tracker::TrackerConfig;

/// `[sparkplug]`: who this host is and how it tracks edge nodes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparkplugConfig {
    /// The Primary Host id: `spBv1.0/STATE/<host_id>`, and what edge nodes are told to
    /// wait for.
    pub host_id: String,
    /// The groups this instance owns (names, or patterns with `*`); absent: every group.
    /// Births and deaths of the other groups are observed for the fleet view only.
    #[serde(default)]
    pub groups: Option<Vec<GroupPattern>>,
    /// The other host instances of the fleet and their groups: who owns what this
    /// instance only observes.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// How long a message after a `seq` gap waits for the missing ones before a Rebirth.
    #[serde(default = "defaults::reorder_timeout_ms")]
    pub reorder_timeout_ms: u64,
    /// Least time between two Rebirth requests to one edge node.
    #[serde(default = "defaults::rebirth_min_interval_ms")]
    pub rebirth_min_interval_ms: u64,
    /// Least time between two re-assertions of this host's STATE online after a STATE it
    /// did not send (so two hosts with one id cannot flood each other).
    #[serde(default = "defaults::state_reassert_min_interval_ms")]
    pub state_reassert_min_interval_ms: u64,
    /// Edge node payloads larger than this are dropped undecoded.
    #[serde(default = "defaults::max_payload_bytes")]
    pub max_payload_bytes: usize,
    /// Memory for messages held after `seq` gaps, over all edge nodes.
    #[serde(default = "defaults::reorder_buffer_bytes")]
    pub reorder_buffer_bytes: usize,
    /// Edge nodes tracked at once.
    #[serde(default = "defaults::max_nodes")]
    pub max_nodes: usize,
    /// Devices tracked per edge node.
    #[serde(default = "defaults::max_devices_per_node")]
    pub max_devices_per_node: usize,
    /// Metrics tracked over all edge nodes and devices.
    #[serde(default = "defaults::max_metrics")]
    pub max_metrics: usize,
}

impl SparkplugConfig {
    pub fn tracker(&self) -> TrackerConfig {
        TrackerConfig {
            reorder_timeout_ms: self.reorder_timeout_ms,
            rebirth_min_interval_ms: self.rebirth_min_interval_ms,
            reorder_buffer_bytes: self.reorder_buffer_bytes,
            max_nodes: self.max_nodes,
            max_devices_per_node: self.max_devices_per_node,
            max_metrics: self.max_metrics,
        }
    }

    /// Which groups this instance owns and which peer owns the others.
    pub fn ownership(&self) -> Ownership {
        Ownership::new(&self.host_id, self.groups.clone(), self.peers.clone())
    }

    pub fn session(&self) -> SessionConfig {
        SessionConfig {
            max_payload_bytes: self.max_payload_bytes,
            state_reassert_min_interval: Duration::from_millis(self.state_reassert_min_interval_ms),
        }
    }
}

mod defaults {
    pub fn reorder_timeout_ms() -> u64 {
        2_000
    }
    pub fn rebirth_min_interval_ms() -> u64 {
        5_000
    }
    pub fn state_reassert_min_interval_ms() -> u64 {
        1_000
    }
    pub fn max_payload_bytes() -> usize {
        1024 * 1024
    }
    pub fn reorder_buffer_bytes() -> usize {
        16 * 1024 * 1024
    }
    pub fn max_nodes() -> usize {
        10_000
    }
    pub fn max_devices_per_node() -> usize {
        1_000
    }
    pub fn max_metrics() -> usize {
        1_000_000
    }
}

/// The whole host configuration.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub broker: BrokerConfig,
    pub history: HistoryConfig,
    pub sparkplug: SparkplugConfig,
    pub api: ApiConfig,
    /// Where Prometheus `/metrics` is served (`[metrics] listen`, loopback); `None`: off.
    pub metrics: Option<std::net::SocketAddr>,
    /// `[log]`: the log format.
    pub log: infra::logging::LogConfig,
}

#[derive(Deserialize)]
struct Own {
    sparkplug: Option<SparkplugConfig>,
    api: Option<ApiConfig>,
    metrics: Option<infra::metrics::MetricsConfig>,
    log: Option<infra::logging::LogConfig>,
}

const TABLES: [&str; 6] = ["broker", "history", "sparkplug", "api", "metrics", "log"];

impl HostConfig {
    pub fn load(path: &Path) -> Result<HostConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
        HostConfig::from_toml(&text).map_err(|e| e.in_file(path.display()))
    }

    /// Parses and validates a whole document; each table is read by its owner, and the
    /// problems of all of them are reported together.
    pub fn from_toml(text: &str) -> Result<HostConfig, ConfigError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text))?;
        let mut problems = Problems::new();
        for unknown in table.keys().filter(|k| !TABLES.contains(&k.as_str())) {
            problems.push(
                unknown.as_str(),
                "unknown table (expected broker, history, sparkplug, api, metrics, log)",
            );
        }
        let broker = problems.check(BrokerConfig::from_toml(text));
        let history = problems.check(HistoryConfig::from_toml(text));
        let own = problems
            .check(toml::from_str::<Own>(text).map_err(|e| ConfigError::from_toml(&e, text)));
        let (sparkplug, api, metrics, log) = match own {
            Some(Own {
                sparkplug,
                api,
                metrics,
                log,
            }) => {
                if sparkplug.is_none() {
                    problems.push("sparkplug", "missing table (host_id is required)");
                }
                let metrics = metrics.and_then(|m| problems.check(m.addr()));
                (sparkplug, Some(api.unwrap_or_default()), metrics, log)
            }
            None => (None, None, None, None),
        };
        if let Some(sparkplug) = &sparkplug {
            problems.check(sparkplug.validate());
        }
        if let Some(api) = &api {
            problems.check(api.validate());
        }
        if let (Some(history), Some(api)) = (&history, &api)
            && history.sqlite_path().is_none()
            && api.state_dir.is_none()
        {
            problems.push(
                "api.state_dir",
                "is required with history.backend = \"postgres\" (no history file to sit beside)",
            );
        }
        if let (Some(broker), Some(sparkplug)) = (&broker, &sparkplug) {
            problems.check(host_account_matches(broker, sparkplug));
        }
        let config = (|| {
            Some(HostConfig {
                broker: broker?,
                history: history?,
                sparkplug: sparkplug?,
                api: api?,
                metrics,
                log: log.unwrap_or_default(),
            })
        })();
        problems.complete(config)
    }
}

impl HostConfig {
    /// Where accounts, sessions, the setup token and the panel's own certificate live.
    pub fn state_dir(&self) -> PathBuf {
        // A PostgreSQL history requires `api.state_dir` (checked at load).
        self.api
            .state_dir(self.history.sqlite_path().unwrap_or(Path::new("")))
    }
}

/// The embedded broker's host account is the one of this host: its `host_id` is
/// `sparkplug.host_id`, so the host may publish its own STATE.
fn host_account_matches(
    broker: &BrokerConfig,
    sparkplug: &SparkplugConfig,
) -> Result<(), ConfigError> {
    let embedded = &broker.embedded;
    if broker.mode != crate::broker::BrokerMode::Embedded {
        return Ok(());
    }
    let Some(name) = &embedded.host_username else {
        return Ok(());
    };
    match embedded.users.iter().position(|u| &u.username == name) {
        Some(i)
            if embedded.users[i]
                .host_id
                .as_ref()
                .is_some_and(|id| id != &sparkplug.host_id) =>
        {
            Err(ConfigError::new(
                format!("broker.embedded.users[{i}].host_id"),
                format!(
                    "the host account {name:?} (broker.embedded.host_username) must have \
                     host_id = {:?} (sparkplug.host_id)",
                    sparkplug.host_id
                ),
            ))
        }
        _ => Ok(()),
    }
}

impl SparkplugConfig {
    /// Checks `[sparkplug]` (the other tables validate themselves as they load).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        if let Err(e) = sparkplug::StateTopic::new(self.host_id.as_str()) {
            problems.push("sparkplug.host_id", e);
        }
        if !(1..=600_000).contains(&self.reorder_timeout_ms) {
            problems.push("sparkplug.reorder_timeout_ms", "must be 1 to 600000 ms");
        }
        if self.rebirth_min_interval_ms > 3_600_000 {
            problems.push(
                "sparkplug.rebirth_min_interval_ms",
                "must be 0 to 3600000 ms",
            );
        }
        if !(100..=3_600_000).contains(&self.state_reassert_min_interval_ms) {
            problems.push(
                "sparkplug.state_reassert_min_interval_ms",
                "must be 100 to 3600000 ms",
            );
        }
        if !(1024..=MAX_PACKET_SIZE).contains(&self.max_payload_bytes) {
            problems.push(
                "sparkplug.max_payload_bytes",
                format!("must be 1024 to {MAX_PACKET_SIZE} bytes"),
            );
        }
        if !(65_536..=1 << 30).contains(&self.reorder_buffer_bytes) {
            problems.push(
                "sparkplug.reorder_buffer_bytes",
                "must be 65536 to 1073741824 bytes",
            );
        }
        self.validate_fleet(&mut problems);
        let counts = [
            ("sparkplug.max_nodes", self.max_nodes, 1_000_000),
            (
                "sparkplug.max_devices_per_node",
                self.max_devices_per_node,
                100_000,
            ),
            ("sparkplug.max_metrics", self.max_metrics, 100_000_000),
        ];
        for (key, value, max) in counts {
            if !(1..=max).contains(&value) {
                problems.push(key, format!("must be 1 to {max}"));
            }
        }
        problems.finish(())
    }
}

impl SparkplugConfig {
    /// `groups` and `peers`: valid names or patterns, and peers only beside `groups`.
    fn validate_fleet(&self, problems: &mut Problems) {
        if let Some(groups) = &self.groups {
            if groups.is_empty() {
                problems.push(
                    "sparkplug.groups",
                    "must list at least one group (leave the key out to own every group)",
                );
            }
            check_patterns("sparkplug.groups", groups, problems);
        } else if !self.peers.is_empty() {
            problems.push(
                "sparkplug.peers",
                "needs sparkplug.groups: without it this host owns every group",
            );
        }
        for (i, peer) in self.peers.iter().enumerate() {
            let key = format!("sparkplug.peers[{i}]");
            if let Err(e) = sparkplug::StateTopic::new(peer.host_id.as_str()) {
                problems.push(format!("{key}.host_id"), e);
            } else if peer.host_id == self.host_id {
                problems.push(
                    format!("{key}.host_id"),
                    "is this host's own id (sparkplug.host_id)",
                );
            } else if self.peers[..i].iter().any(|p| p.host_id == peer.host_id) {
                problems.push(format!("{key}.host_id"), "is listed twice");
            }
            if peer.groups.is_empty() {
                problems.push(format!("{key}.groups"), "must list at least one group");
            }
            check_patterns(&format!("{key}.groups"), &peer.groups, problems);
            let own = self.groups.as_deref().unwrap_or_default();
            for (j, g) in peer.groups.iter().enumerate() {
                if own.contains(g) {
                    problems.push(
                        format!("{key}.groups[{j}]"),
                        format!("{:?} is also in sparkplug.groups", g.as_str()),
                    );
                }
            }
        }
    }
}

fn check_patterns(key: &str, groups: &[GroupPattern], problems: &mut Problems) {
    for (i, g) in groups.iter().enumerate() {
        if let Some(problem) = g.problem() {
            problems.push(format!("{key}[{i}]"), problem);
        } else if groups[..i].contains(g) {
            problems.push(
                format!("{key}[{i}]"),
                format!("{:?} is listed twice", g.as_str()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[broker]
mode = "embedded"
[broker.embedded]
allow_anonymous = true
[history]
path = "/tmp/history.db"
[sparkplug]
host_id = "scada"
"#;

    #[test]
    fn minimal_document_takes_defaults() {
        let config = HostConfig::from_toml(BASE).unwrap();
        assert_eq!(config.sparkplug.reorder_timeout_ms, 2_000);
        assert_eq!(config.sparkplug.rebirth_min_interval_ms, 5_000);
        assert_eq!(config.sparkplug.tracker(), TrackerConfig::default());
        assert_eq!(config.sparkplug.max_payload_bytes, 1024 * 1024);
        assert_eq!(
            config.sparkplug.session().state_reassert_min_interval,
            Duration::from_secs(1)
        );
        assert_eq!(config.api.listen, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn errors_name_the_key() {
        let bad_id = BASE.replace("\"scada\"", "\"a/b\"");
        let e = HostConfig::from_toml(&bad_id).unwrap_err().to_string();
        assert!(e.contains("sparkplug.host_id"), "{e}");
        let zero = format!("{BASE}reorder_timeout_ms = 0\n");
        let e = HostConfig::from_toml(&zero).unwrap_err().to_string();
        assert!(e.contains("sparkplug.reorder_timeout_ms"), "{e}");
        let typo = format!("{BASE}rebirth_interval = 1\n");
        let e = HostConfig::from_toml(&typo).unwrap_err();
        assert_eq!(e.keys(), ["sparkplug.rebirth_interval"], "{e}");
        assert!(
            e.to_string()
                .starts_with("10:1: sparkplug.rebirth_interval: unknown field"),
            "{e}"
        );
        let listen = format!("{BASE}[api]\nlisten = \"nowhere\"\n");
        let e = HostConfig::from_toml(&listen).unwrap_err();
        assert_eq!(e.keys(), ["api.listen"], "{e}");
        let extra = format!("{BASE}[panel]\nx = 1\n");
        let e = HostConfig::from_toml(&extra).unwrap_err().to_string();
        assert!(e.starts_with("panel: unknown table"), "{e}");
        let missing = BASE.replace("[sparkplug]\nhost_id = \"scada\"\n", "");
        let e = HostConfig::from_toml(&missing).unwrap_err().to_string();
        assert_eq!(e, "sparkplug: missing table (host_id is required)");
    }

    #[test]
    fn defence_bounds_are_checked_naming_the_key() {
        for (key, value) in [
            ("state_reassert_min_interval_ms", "0"),
            ("max_payload_bytes", "10"),
            ("max_payload_bytes", "99999999"),
            ("reorder_buffer_bytes", "1"),
            ("max_nodes", "0"),
            ("max_devices_per_node", "0"),
            ("max_metrics", "0"),
        ] {
            let text = format!("{BASE}{key} = {value}\n");
            let e = HostConfig::from_toml(&text).unwrap_err();
            assert_eq!(e.keys(), [format!("sparkplug.{key}")], "{e}");
        }
    }

    #[test]
    fn groups_are_optional_and_every_group_is_owned_without_them() {
        let config = HostConfig::from_toml(BASE).unwrap();
        assert_eq!(config.sparkplug.groups, None);
        assert!(config.sparkplug.ownership().owns("any"));
        let text = format!(
            "{BASE}groups = [\"Plant1\", \"Pipeline-*\"]\n\
             peers = [{{ host_id = \"HostB\", groups = [\"Plant2\"] }}]\n"
        );
        let ownership = HostConfig::from_toml(&text).unwrap().sparkplug.ownership();
        assert!(ownership.owns("Plant1") && ownership.owns("Pipeline-North"));
        assert!(!ownership.owns("Plant2"));
        assert_eq!(ownership.owner("Plant2"), Some("HostB"));
    }

    #[test]
    fn bad_groups_and_peers_are_named_by_key() {
        for (lines, keys) in [
            ("groups = []", vec!["sparkplug.groups"]),
            ("groups = [\"\"]", vec!["sparkplug.groups[0]"]),
            ("groups = [\"A\", \"a/b\"]", vec!["sparkplug.groups[1]"]),
            ("groups = [\"Plant+\"]", vec!["sparkplug.groups[0]"]),
            ("groups = [\"#\"]", vec!["sparkplug.groups[0]"]),
            ("groups = [\"A\", \"A\"]", vec!["sparkplug.groups[1]"]),
            (
                "peers = [{ host_id = \"B\", groups = [\"P\"] }]",
                vec!["sparkplug.peers"],
            ),
            (
                "groups = [\"A\"]\npeers = [{ host_id = \"scada\", groups = [\"P\"] }]",
                vec!["sparkplug.peers[0].host_id"],
            ),
            (
                "groups = [\"A\"]\npeers = [{ host_id = \"B\", groups = [] }]",
                vec!["sparkplug.peers[0].groups"],
            ),
            (
                "groups = [\"A\"]\npeers = [{ host_id = \"B\", groups = [\"x/y\", \"A\"] }]",
                vec![
                    "sparkplug.peers[0].groups[0]",
                    "sparkplug.peers[0].groups[1]",
                ],
            ),
        ] {
            let e = HostConfig::from_toml(&format!("{BASE}{lines}\n")).unwrap_err();
            assert_eq!(e.keys(), keys, "{lines}: {e}");
        }
    }

    #[test]
    fn metrics_listen_is_optional_and_loopback_only() {
        assert_eq!(HostConfig::from_toml(BASE).unwrap().metrics, None);
        let on = format!("{BASE}[metrics]\nlisten = \"127.0.0.1:9102\"\n");
        let config = HostConfig::from_toml(&on).unwrap();
        assert_eq!(config.metrics, Some("127.0.0.1:9102".parse().unwrap()));
        let open = format!("{BASE}[metrics]\nlisten = \"0.0.0.0:9102\"\n");
        let e = HostConfig::from_toml(&open).unwrap_err();
        assert_eq!(e.keys(), ["metrics.listen"], "{e}");
    }

    #[test]
    fn every_problem_of_every_table_is_reported() {
        let text = r#"
[broker]
mode = "embedded"
[broker.embedded]
allow_anonymous = true
max_connections = 0
connection_timeout_ms = 0
[history]
path = "/tmp/history.db"
batch_size = 0
retention_interval_s = 0
[sparkplug]
host_id = "a/b"
reorder_timeout_ms = 0
[panel]
x = 1
"#;
        let e = HostConfig::from_toml(text).unwrap_err();
        assert_eq!(
            e.keys(),
            [
                "panel",
                "broker.embedded.max_connections",
                "broker.embedded.connection_timeout_ms",
                "history.batch_size",
                "history.retention_interval_s",
                "sparkplug.host_id",
                "sparkplug.reorder_timeout_ms",
            ],
            "{e}"
        );
        let lines: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
        assert!(
            lines
                .iter()
                .zip(e.keys())
                .all(|(line, key)| line.contains(key)),
            "one line per problem, in order, each naming its key: {e}"
        );
    }

    #[test]
    fn the_log_table_names_the_format() {
        let c = HostConfig::from_toml(&format!("{BASE}\n[log]\nformat = \"journald\"\n")).unwrap();
        assert_eq!(c.log.format, Some(infra::logging::Format::Journald));
        assert_eq!(HostConfig::from_toml(BASE).unwrap().log.format, None);
        let e = HostConfig::from_toml(&format!("{BASE}\n[log]\nformat = \"xml\"\n")).unwrap_err();
        assert!(e.keys().contains(&"log.format"), "{e}");
    }

    #[test]
    fn a_loaded_file_names_itself_on_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.toml");
        std::fs::write(
            &file,
            format!("{BASE}reorder_timeout_ms = 0\nrebirth_min_interval_ms = 3600001\n"),
        )
        .unwrap();
        let e = HostConfig::load(&file).unwrap_err().to_string();
        let shown = file.display();
        assert_eq!(
            e,
            format!(
                "{shown}: sparkplug.reorder_timeout_ms: must be 1 to 600000 ms\n{shown}: sparkplug.rebirth_min_interval_ms: must be 0 to 3600000 ms"
            )
        );
        let e = HostConfig::load(&dir.path().join("none.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "{}: cannot read: ",
                dir.path().join("none.toml").display()
            )),
            "{e}"
        );
    }

    #[test]
    fn example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/host-app.example.toml");
        let secrets = tempfile::tempdir().unwrap();
        std::fs::write(secrets.path().join("mqtt-host"), "pa55word\n").unwrap();
        let text = std::fs::read_to_string(path).unwrap().replace(
            "/etc/host-app/secrets/",
            &format!("{}/", secrets.path().display()),
        );
        let config = HostConfig::from_toml(&text).unwrap();
        assert_eq!(config.sparkplug.host_id, "scada-host");
        // [sparkplug] host_id, the last one: the host account no longer matches it.
        let at = text.rfind("host_id = \"scada-host\"").unwrap();
        let other = format!("{}host_id = \"other\"{}", &text[..at], &text[at + 22..]);
        let e = HostConfig::from_toml(&other).unwrap_err();
        assert_eq!(e.keys(), ["broker.embedded.users[0].host_id"], "{e}");
    }

    #[test]
    fn a_postgres_history_needs_a_state_dir_of_its_own() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/host-app.example.toml");
        let secrets = tempfile::tempdir().unwrap();
        std::fs::write(secrets.path().join("mqtt-host"), "pa55word\n").unwrap();
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace(
                "/etc/host-app/secrets/",
                &format!("{}/", secrets.path().display()),
            )
            .replace("backend = \"sqlite\"", "backend = \"postgres\"")
            .replace(
                "path = \"/var/lib/host-app/history.db\"",
                "url = \"postgresql://host@127.0.0.1/history\"",
            )
            .replace("synchronous = \"normal\"", "")
            .replace("open_window_max_mb = 16", "");
        let e = HostConfig::from_toml(&text).unwrap_err();
        assert_eq!(e.keys(), ["api.state_dir"], "{e}");
        let with_dir = text.replace("\n[api]\n", "\n[api]\nstate_dir = \"/var/lib/host-app\"\n");
        let config = HostConfig::from_toml(&with_dir).unwrap();
        assert_eq!(config.state_dir(), PathBuf::from("/var/lib/host-app"));
    }
}
