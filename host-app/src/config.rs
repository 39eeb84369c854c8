//! The host configuration file: one TOML document with `[broker]` (the broker module's),
//! `[history]` (the history module's), `[sparkplug]` and `[api]`, validated at load with
//! messages that name the key.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::broker::BrokerConfig;
use crate::history::HistoryConfig;
use crate::tracker::TrackerConfig;

#[derive(Debug, thiserror::Error)]
pub enum HostConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("host configuration: {0}")]
    Syntax(String),
    #[error("host configuration: key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("host configuration: unknown table [{0}] (expected broker, history, sparkplug, api)")]
    UnknownTable(String),
    #[error(transparent)]
    History(#[from] crate::history::HistoryConfigError),
}

/// `[sparkplug]`: who this host is and how it tracks edge nodes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparkplugConfig {
    /// The Primary Host id: `spBv1.0/STATE/<host_id>`, and what edge nodes are told to
    /// wait for.
    pub host_id: String,
    /// How long a message after a `seq` gap waits for the missing ones before a Rebirth.
    #[serde(default = "defaults::reorder_timeout_ms")]
    pub reorder_timeout_ms: u64,
    /// Least time between two Rebirth requests to one edge node.
    #[serde(default = "defaults::rebirth_min_interval_ms")]
    pub rebirth_min_interval_ms: u64,
}

impl SparkplugConfig {
    pub fn tracker(&self) -> TrackerConfig {
        TrackerConfig {
            reorder_timeout_ms: self.reorder_timeout_ms,
            rebirth_min_interval_ms: self.rebirth_min_interval_ms,
        }
    }
}

/// `[api]`: the panel's HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
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
    pub fn listen() -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], 8080))
    }
}

/// The whole host configuration.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub broker: BrokerConfig,
    pub history: HistoryConfig,
    pub sparkplug: SparkplugConfig,
    pub api: ApiConfig,
}

#[derive(Deserialize)]
struct Own {
    sparkplug: Option<toml::Value>,
    api: Option<toml::Value>,
}

impl HostConfig {
    pub fn load(path: &Path) -> Result<HostConfig, HostConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| HostConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        HostConfig::from_toml(&text)
    }

    /// Parses and validates a whole document; each table is read by its owner.
    pub fn from_toml(text: &str) -> Result<HostConfig, HostConfigError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| HostConfigError::Syntax(e.to_string()))?;
        if let Some(unknown) = table
            .keys()
            .find(|k| !["broker", "history", "sparkplug", "api"].contains(&k.as_str()))
        {
            return Err(HostConfigError::UnknownTable(unknown.clone()));
        }
        let broker = BrokerConfig::from_toml(text).map_err(|e| HostConfigError::Invalid {
            key: e.key,
            reason: e.reason,
        })?;
        let history = HistoryConfig::from_toml(text)?;
        let own: Own = toml::from_str(text).map_err(|e| HostConfigError::Syntax(e.to_string()))?;
        let sparkplug: SparkplugConfig = own
            .sparkplug
            .ok_or_else(|| invalid("sparkplug", "missing table (host_id is required)"))?
            .try_into()
            .map_err(|e: toml::de::Error| invalid("sparkplug", e.message()))?;
        let api: ApiConfig = match own.api {
            Some(v) => v
                .try_into()
                .map_err(|e: toml::de::Error| invalid("api", e.message()))?,
            None => ApiConfig::default(),
        };
        let config = HostConfig {
            broker,
            history,
            sparkplug,
            api,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the host's own tables (the others validate themselves as they load).
    pub fn validate(&self) -> Result<(), HostConfigError> {
        let s = &self.sparkplug;
        if let Err(e) = sparkplug::StateTopic::new(s.host_id.as_str()) {
            return Err(invalid("sparkplug.host_id", e));
        }
        if !(1..=600_000).contains(&s.reorder_timeout_ms) {
            return Err(invalid(
                "sparkplug.reorder_timeout_ms",
                "must be 1 to 600000 ms",
            ));
        }
        if s.rebirth_min_interval_ms > 3_600_000 {
            return Err(invalid(
                "sparkplug.rebirth_min_interval_ms",
                "must be 0 to 3600000 ms",
            ));
        }
        Ok(())
    }
}

fn invalid(key: &str, reason: impl std::fmt::Display) -> HostConfigError {
    HostConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[broker]
mode = "embedded"
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
        let e = HostConfig::from_toml(&typo).unwrap_err().to_string();
        assert!(
            e.contains("sparkplug") && e.contains("rebirth_interval"),
            "{e}"
        );
        let listen = format!("{BASE}[api]\nlisten = \"nowhere\"\n");
        let e = HostConfig::from_toml(&listen).unwrap_err().to_string();
        assert!(e.contains("`api`"), "{e}");
        let extra = format!("{BASE}[panel]\nx = 1\n");
        let e = HostConfig::from_toml(&extra).unwrap_err().to_string();
        assert!(e.contains("[panel]"), "{e}");
        let missing = BASE.replace("[sparkplug]\nhost_id = \"scada\"\n", "");
        let e = HostConfig::from_toml(&missing).unwrap_err().to_string();
        assert!(e.contains("sparkplug"), "{e}");
    }

    #[test]
    fn example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/host-app.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let config = HostConfig::from_toml(&text).unwrap();
        assert_eq!(config.sparkplug.host_id, "scada-host");
    }
}
