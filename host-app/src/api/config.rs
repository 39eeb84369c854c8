//! The `[api]` table: where the panel and its JSON API listen, HTTPS, where the
//! accounts and sessions live, session lifetimes and the limits an exposed server needs.
//!
//! ```toml
//! [api]
//! listen = "0.0.0.0:8443"
//! https = true                # default; false is allowed on loopback only
//! state_dir = "/var/lib/host-app"
//! idle_timeout_s = 1800
//! [api.tls]                   # absent: a self-signed certificate kept in state_dir
//! cert_file = "/etc/host-app/tls/panel.pem"
//! key_file = "/etc/host-app/tls/panel.key"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infra::{ConfigError, Problems};
use serde::Deserialize;

/// `[api]`: the panel's HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Serve HTTPS (the default). Plain HTTP only on a loopback address.
    #[serde(default = "defaults::https")]
    pub https: bool,
    /// A configured certificate; without it, HTTPS uses a self-signed certificate
    /// generated at first start and kept in `state_dir`.
    #[serde(default)]
    pub tls: Option<ApiTls>,
    /// Accounts and sessions (with a SQLite history; a PostgreSQL history keeps them in
    /// its database), the setup token file and the self-signed certificate live here;
    /// default: the directory of `history.path`.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The address browsers use, when it is not `listen` (a name, a proxy): the setup
    /// link shows it and state-changing requests from it are accepted.
    #[serde(default)]
    pub public_url: Option<String>,
    /// A session unused this long ends.
    #[serde(default = "defaults::idle_timeout_s")]
    pub idle_timeout_s: u64,
    /// A session ends this long after login, however busy.
    #[serde(default = "defaults::session_lifetime_s")]
    pub session_lifetime_s: u64,
    /// Account events (logins, failed logins, account changes) older than this go.
    #[serde(default = "defaults::account_audit_retention_days")]
    pub account_audit_retention_days: u64,
    /// At most this many account events are kept, the oldest deleted first.
    #[serde(default = "defaults::account_audit_max_rows")]
    pub account_audit_max_rows: u64,
    /// A connection must send a request's headers within this.
    #[serde(default = "defaults::header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// A request must be answered (its headers; the event stream may run on) within this.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// History queries run at once; more wait (within the request timeout).
    #[serde(default = "defaults::max_history_queries")]
    pub max_history_queries: usize,
}

/// `[api.tls]`: the panel's certificate chain and key (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for ApiConfig {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable!("every [api] key has a default"))
    }
}

mod defaults {
    pub fn listen() -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn https() -> bool {
        true
    }
    pub fn idle_timeout_s() -> u64 {
        30 * 60
    }
    pub fn session_lifetime_s() -> u64 {
        12 * 60 * 60
    }
    pub fn account_audit_retention_days() -> u64 {
        web::state::AccountAuditRetention::DEFAULT_DAYS
    }
    pub fn account_audit_max_rows() -> u64 {
        web::state::AccountAuditRetention::DEFAULT_MAX_ROWS
    }
    pub fn header_timeout_ms() -> u64 {
        10_000
    }
    pub fn request_timeout_ms() -> u64 {
        30_000
    }
    pub fn max_connections() -> usize {
        128
    }
    pub fn max_history_queries() -> usize {
        4
    }
}

impl ApiConfig {
    /// Checks every key; `history_path` gives the default state directory.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::new();
        if !self.https && !self.listen.ip().is_loopback() {
            problems.push(
                "api.https",
                "plain HTTP is allowed on a loopback address only; set https = true (or listen on 127.0.0.1)",
            );
        }
        if self.tls.is_some() && !self.https {
            problems.push("api.tls", "is given but https = false");
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
                if path.as_os_str().is_empty() {
                    problems.push(format!("api.tls.{key}"), "must name a PEM file");
                }
            }
        }
        if self
            .state_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            problems.push("api.state_dir", "must name a directory");
        }
        web::state::check_session_keys(
            "api",
            self.public_url.as_deref(),
            self.idle_timeout_s,
            self.session_lifetime_s,
            &mut problems,
        );
        web::state::check_account_audit_keys(
            "api",
            self.account_audit_retention_days,
            self.account_audit_max_rows,
            &mut problems,
        );
        if !(100..=600_000).contains(&self.header_timeout_ms) {
            problems.push("api.header_timeout_ms", "must be 100 to 600000 ms");
        }
        if !(100..=3_600_000).contains(&self.request_timeout_ms) {
            problems.push("api.request_timeout_ms", "must be 100 to 3600000 ms");
        }
        if !(1..=65_536).contains(&self.max_connections) {
            problems.push("api.max_connections", "must be 1 to 65536");
        }
        if !(1..=1024).contains(&self.max_history_queries) {
            problems.push("api.max_history_queries", "must be 1 to 1024");
        }
        problems.finish(())
    }

    /// The state directory: `state_dir`, else the directory of `history_path`.
    pub fn state_dir(&self, history_path: &Path) -> PathBuf {
        match &self.state_dir {
            Some(dir) => dir.clone(),
            None => match history_path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            },
        }
    }

    /// The accounts and sessions database in `state_dir` (with a SQLite history).
    pub fn auth_db(state_dir: &Path) -> PathBuf {
        state_dir.join(web::state::AUTH_DB)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }

    pub fn session_lifetime(&self) -> Duration {
        Duration::from_secs(self.session_lifetime_s)
    }

    pub fn account_audit(&self) -> web::state::AccountAuditRetention {
        web::state::AccountAuditRetention::from_keys(
            self.account_audit_retention_days,
            self.account_audit_max_rows,
        )
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The origin of `public_url`, if set (`https://panel.example:8443`).
    pub fn public_origin(&self) -> Option<String> {
        self.public_url.as_deref().and_then(web::state::origin_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ApiConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_https() {
        let c = ApiConfig::default();
        assert!(c.https);
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        c.validate().unwrap();
        assert_eq!(
            c.state_dir(Path::new("/var/lib/host-app/history.db")),
            Path::new("/var/lib/host-app")
        );
        assert_eq!(c.state_dir(Path::new("history.db")), Path::new("."));
        assert_eq!(
            c.account_audit(),
            web::state::AccountAuditRetention::default()
        );
    }

    #[test]
    fn account_events_are_kept_as_configured() {
        let c = parse("account_audit_retention_days = 400\naccount_audit_max_rows = 5000");
        c.validate().unwrap();
        let kept = c.account_audit();
        assert_eq!(kept.keep, Duration::from_secs(400 * 24 * 3600));
        assert_eq!(kept.max_rows, 5000);
    }

    #[test]
    fn each_problem_names_its_key() {
        let c = parse(
            r#"
listen = "0.0.0.0:8080"
https = false
public_url = "https://x/y"
idle_timeout_s = 1
session_lifetime_s = 0
account_audit_retention_days = 0
account_audit_max_rows = 10
header_timeout_ms = 0
request_timeout_ms = 0
max_connections = 0
max_history_queries = 0
state_dir = ""
[tls]
cert_file = ""
key_file = "k"
"#,
        );
        let e = c.validate().unwrap_err();
        assert_eq!(
            e.keys(),
            [
                "api.https",
                "api.tls",
                "api.tls.cert_file",
                "api.state_dir",
                "api.public_url",
                "api.idle_timeout_s",
                "api.session_lifetime_s",
                "api.account_audit_retention_days",
                "api.account_audit_max_rows",
                "api.header_timeout_ms",
                "api.request_timeout_ms",
                "api.max_connections",
                "api.max_history_queries",
            ],
            "{e}"
        );
    }

    #[test]
    fn public_origin() {
        let c = parse("public_url = \"https://panel.example:8443/\"");
        assert_eq!(
            c.public_origin().as_deref(),
            Some("https://panel.example:8443")
        );
    }
}
