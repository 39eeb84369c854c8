//! The `[ui]` table: where the technician's web UI listens, HTTPS, where its accounts
//! and sessions live, and session lifetimes. No `[ui]` table: no UI.
//!
//! ```toml
//! [ui]
//! listen = "0.0.0.0:8443"
//! state_dir = "/var/lib/edge-node/ui"
//! [ui.tls]                    # absent: a self-signed certificate kept in state_dir
//! cert_file = "/etc/edge-node/tls/ui.pem"
//! key_file = "/etc/edge-node/tls/ui.key"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use infra::{ConfigError, Problems};
use serde::Deserialize;

/// `[ui]`: the technician's web UI.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Serve HTTPS (the default). Plain HTTP only on a loopback address.
    #[serde(default = "defaults::https")]
    pub https: bool,
    /// A configured certificate; without it, HTTPS uses a self-signed certificate
    /// generated at first start and kept in `state_dir`.
    #[serde(default)]
    pub tls: Option<UiTls>,
    /// Accounts, sessions, the setup token file and the self-signed certificate.
    pub state_dir: PathBuf,
    /// The address browsers use, when it is not `listen` (a name, a proxy).
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
}

/// `[ui.tls]`: the UI's certificate chain and key (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

mod defaults {
    pub fn listen() -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], 8443))
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
}

impl UiConfig {
    /// Checks every key; relative paths are taken relative to `base` (the file's directory).
    pub fn validate(mut self, base: &Path) -> Result<UiConfig, ConfigError> {
        let mut problems = Problems::new();
        if !self.https && !self.listen.ip().is_loopback() {
            problems.push(
                "ui.https",
                "plain HTTP is allowed on a loopback address only; set https = true (or listen on 127.0.0.1)",
            );
        }
        if self.tls.is_some() && !self.https {
            problems.push("ui.tls", "is given but https = false");
        }
        if let Some(tls) = &mut self.tls {
            for (key, path) in [
                ("cert_file", &mut tls.cert_file),
                ("key_file", &mut tls.key_file),
            ] {
                if path.as_os_str().is_empty() {
                    problems.push(format!("ui.tls.{key}"), "must name a PEM file");
                }
                *path = base.join(&*path);
            }
        }
        if self.state_dir.as_os_str().is_empty() {
            problems.push("ui.state_dir", "must name a directory");
        }
        self.state_dir = base.join(&self.state_dir);
        web::state::check_session_keys(
            "ui",
            self.public_url.as_deref(),
            self.idle_timeout_s,
            self.session_lifetime_s,
            &mut problems,
        );
        web::state::check_account_audit_keys(
            "ui",
            self.account_audit_retention_days,
            self.account_audit_max_rows,
            &mut problems,
        );
        problems.finish(self)
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

    /// The origin of `public_url`, if set.
    pub fn public_origin(&self) -> Option<String> {
        self.public_url.as_deref().and_then(web::state::origin_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_names_its_key() {
        let c: UiConfig = toml::from_str(
            r#"
listen = "0.0.0.0:8443"
https = false
state_dir = ""
public_url = "https://x/y"
idle_timeout_s = 1
account_audit_retention_days = 36501
account_audit_max_rows = 0
[tls]
cert_file = ""
key_file = "k"
"#,
        )
        .unwrap();
        let e = c.validate(Path::new("/etc")).unwrap_err();
        assert_eq!(
            e.keys(),
            [
                "ui.https",
                "ui.tls",
                "ui.tls.cert_file",
                "ui.state_dir",
                "ui.public_url",
                "ui.idle_timeout_s",
                "ui.account_audit_retention_days",
                "ui.account_audit_max_rows",
            ],
            "{e}"
        );
    }

    #[test]
    fn defaults_are_https_on_loopback() {
        let c: UiConfig = toml::from_str("state_dir = \"ui\"").unwrap();
        let c = c.validate(Path::new("/etc/edge-node")).unwrap();
        assert!(c.https);
        assert_eq!(c.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(c.state_dir, Path::new("/etc/edge-node/ui"));
        assert_eq!(
            c.account_audit(),
            web::state::AccountAuditRetention::default()
        );
    }

    #[test]
    fn account_events_are_kept_as_configured() {
        let c: UiConfig = toml::from_str(
            "state_dir = \"ui\"\naccount_audit_retention_days = 7\naccount_audit_max_rows = 1000",
        )
        .unwrap();
        let kept = c.validate(Path::new("/etc")).unwrap().account_audit();
        assert_eq!(kept.keep, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(kept.max_rows, 1000);
    }
}
