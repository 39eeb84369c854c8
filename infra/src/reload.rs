//! Reload on SIGHUP (`systemctl reload`, `ExecReload=kill -HUP $MAINPID`): the service
//! reads its configuration file again and validates all of it as `check-config` does. A
//! file with a problem is refused and the running configuration stays, the problem logged
//! by its key; a valid file applies what can change live (`[metrics]`, and what the
//! service's own `apply_live` takes, such as the host's broker accounts) and names the
//! other tables that changed, which take effect at the next restart.
//!
//! Listener certificates ([`ServerCert`]) are read again at every SIGHUP, whatever the
//! file's fate: files that load and match serve new connections from then on; files that
//! do not leave the running certificate, and the log and status line say why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ConfigError;
use crate::metrics::Listener;
use crate::tls::ServerCert;

/// A running service's reload state: its file, the text it runs on, what applies live.
pub struct Reloader {
    path: PathBuf,
    running_text: String,
    metrics: Listener,
    /// Listener certificates by their configuration table (`api.tls`).
    certificates: Vec<(String, Arc<ServerCert>)>,
    /// Dotted keys the service applies live (`broker.embedded.users`): not named as
    /// waiting for a restart.
    live_keys: Vec<String>,
}

impl Reloader {
    pub fn new(path: &Path, metrics: Listener) -> Reloader {
        Reloader {
            path: path.to_owned(),
            running_text: std::fs::read_to_string(path).unwrap_or_default(),
            metrics,
            certificates: Vec::new(),
            live_keys: Vec::new(),
        }
    }

    /// Keys (dotted, `broker.embedded.users`) that the `apply_live` given to
    /// [`Reloader::reload`] applies: their changes do not wait for a restart.
    pub fn with_live_keys(mut self, keys: &[&str]) -> Reloader {
        self.live_keys.extend(keys.iter().map(|k| (*k).to_owned()));
        self
    }

    /// Also re-reads this listener certificate at each reload; `table` names it
    /// (`api.tls`) in the log and the status line.
    pub fn with_certificate(mut self, table: &str, cert: Arc<ServerCert>) -> Reloader {
        self.certificates.push((table.to_owned(), cert));
        self
    }

    /// Loads and checks the file with `load`; applies `[metrics]` (from `metrics_of`)
    /// live, then `apply_live` (what it applied, for the status line; or why it could
    /// not); logs the other changed tables, which apply at the next restart. A file with
    /// a problem changes nothing. Returns the status line saying how it went.
    pub async fn reload<C>(
        &mut self,
        load: impl FnOnce(&Path) -> Result<C, ConfigError>,
        metrics_of: impl FnOnce(&C) -> Option<SocketAddr>,
        apply_live: impl AsyncFnOnce(&C) -> Result<Option<String>, String>,
    ) -> String {
        let line = self.reload_config(load, metrics_of, apply_live).await;
        match self.reload_certificates() {
            None => line,
            Some(certificates) => format!("{line}; {certificates}"),
        }
    }

    /// Reads every listener certificate again: what changed, or what was kept and why.
    fn reload_certificates(&self) -> Option<String> {
        let mut said = Vec::new();
        for (table, cert) in &self.certificates {
            let file = cert.cert_file().display();
            match cert.reload() {
                Ok(true) => {
                    tracing::info!(table = %table, cert = %file, "reload: new certificate served to new connections");
                    said.push(format!("{table} certificate renewed"));
                }
                Ok(false) => {}
                Err(e) => {
                    let key = e.key(table);
                    tracing::error!(key = %key, error = %e, "reload: certificate not loaded; the running one stays");
                    said.push(format!(
                        "{key} not loaded ({e}); running on the previous certificate"
                    ));
                }
            }
        }
        (!said.is_empty()).then(|| said.join("; "))
    }

    async fn reload_config<C>(
        &mut self,
        load: impl FnOnce(&Path) -> Result<C, ConfigError>,
        metrics_of: impl FnOnce(&C) -> Option<SocketAddr>,
        apply_live: impl AsyncFnOnce(&C) -> Result<Option<String>, String>,
    ) -> String {
        tracing::info!(file = %self.path.display(), "SIGHUP: reloading the configuration");
        let config = match load(&self.path) {
            Ok(config) => config,
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!(problem = %line, "reload refused; the running configuration stays");
                }
                return format!(
                    "reload refused ({}); running on the previous configuration",
                    e.keys().join(", ")
                );
            }
        };
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        if let Err(e) = self.metrics.apply(metrics_of(&config)).await {
            tracing::error!(error = %e, "reload: metrics.listen not applied; the previous listener stays");
            return format!("reload: metrics.listen not applied: {e}");
        }
        let applied = match apply_live(&config).await {
            Ok(applied) => applied,
            Err(e) => {
                tracing::error!(error = %e, "reload: not applied; the running configuration stays");
                return format!("reload: {e}; running on the previous configuration");
            }
        };
        if let Some(applied) = &applied {
            tracing::info!(%applied, "reload: applied while running");
        }
        let changed = changed_tables_except(&self.running_text, &text, &self.live_keys);
        let later: Vec<&str> = changed
            .iter()
            .map(String::as_str)
            .filter(|t| *t != "metrics")
            .collect();
        if !later.is_empty() {
            tracing::warn!(tables = ?later, "reload: these tables changed and apply at the next restart");
        }
        tracing::info!(changed = ?changed, "configuration reloaded");
        let mut line = "configuration reloaded".to_owned();
        if let Some(applied) = applied {
            line = format!("{line}; {applied}");
        }
        if !later.is_empty() {
            line = format!("{line}; restart to apply [{}]", later.join("], ["));
        }
        self.running_text = text;
        line
    }
}

/// The top-level tables whose contents differ between two documents (a table added or
/// removed counts), in the order of the new document then the removed ones.
pub fn changed_tables(old: &str, new: &str) -> Vec<String> {
    changed_tables_except(old, new, &[])
}

/// As [`changed_tables`], with the dotted keys `except` (`broker.embedded.users`) left
/// out of both documents first.
pub fn changed_tables_except(old: &str, new: &str, except: &[String]) -> Vec<String> {
    let parse = |text: &str| {
        let mut table = text.parse::<toml::Table>().unwrap_or_default();
        for key in except {
            remove_dotted(&mut table, key);
        }
        table
    };
    let (old, new) = (parse(old), parse(new));
    let mut changed: Vec<String> = new
        .iter()
        .filter(|(key, value)| old.get(*key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect();
    changed.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    changed
}

fn remove_dotted(table: &mut toml::Table, key: &str) {
    match key.split_once('.') {
        None => {
            table.remove(key);
        }
        Some((first, rest)) => {
            if let Some(toml::Value::Table(inner)) = table.get_mut(first) {
                remove_dotted(inner, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_are_left_out_of_the_tables_that_wait_for_a_restart() {
        let old = "[broker.embedded]\nmax_connections = 10\n[[broker.embedded.users]]\nusername = \"a\"\n";
        let users = "[broker.embedded]\nmax_connections = 10\n[[broker.embedded.users]]\nusername = \"b\"\n";
        let live = ["broker.embedded.users".to_owned()];
        assert!(changed_tables_except(old, users, &live).is_empty());
        assert_eq!(changed_tables(old, users), ["broker"]);
        let both = "[broker.embedded]\nmax_connections = 11\n[[broker.embedded.users]]\nusername = \"b\"\n";
        assert_eq!(changed_tables_except(old, both, &live), ["broker"]);
    }

    #[test]
    fn only_tables_that_differ_are_named() {
        let old = "[a]\nx = 1\n[b]\ny = 2\n[gone]\nz = 3\n";
        let new = "[a]\nx = 1\n[b]\ny = 3\n[metrics]\nlisten = \"127.0.0.1:1\"\n";
        assert_eq!(changed_tables(old, new), ["b", "metrics", "gone"]);
        assert!(changed_tables(old, old).is_empty());
    }
}
