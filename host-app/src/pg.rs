//! PostgreSQL plumbing shared by the history and the panel's accounts: the client settings
//! built from `[history]`'s connection options, a small pool of connections reopened when
//! they break (over TLS if configured, see `tls`), and closing connections safely from
//! async code.
//!
//! The client is the blocking `postgres` crate, which drives each connection on a small
//! runtime of its own: everything here blocks and is called from blocking threads (the
//! history writer's commits, `spawn_blocking`), never from a runtime worker.

mod tls;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use postgres::config::SslMode;
use postgres::{Client, NoTls};

/// How long opening a connection may take before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The client settings for `url`, with `password` if given, shown to the server (in
/// `pg_stat_activity`) as `application`.
pub(crate) fn client_config(
    url: &str,
    password: Option<&infra::secret::Secret>,
    application: &str,
) -> Result<postgres::Config, postgres::Error> {
    let mut config: postgres::Config = url.parse()?;
    if let Some(password) = password {
        config.password(password.expose());
    }
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name(application);
    Ok(config)
}

/// Connections to one database: idle ones kept for reuse (at most `max_idle`), more
/// opened on demand, a broken one dropped and replaced at the next call.
pub(crate) struct Pool {
    config: postgres::Config,
    tls: Option<tls::MakeRustls>,
    idle: Mutex<Vec<Client>>,
    max_idle: usize,
    /// Names the closing thread.
    name: &'static str,
}

impl Pool {
    pub(crate) fn new(config: postgres::Config, max_idle: usize, name: &'static str) -> Pool {
        Pool {
            config,
            tls: None,
            idle: Mutex::new(Vec::new()),
            max_idle,
            name,
        }
    }

    /// Every connection over TLS, the server checked as `tls` says (files read now).
    pub(crate) fn with_tls(
        mut self,
        tls: &infra::tls::ClientTls,
    ) -> Result<Pool, infra::tls::TlsError> {
        self.tls = Some(tls::MakeRustls(infra::tls::client_config(tls)?));
        self.config.ssl_mode(SslMode::Require);
        Ok(self)
    }

    /// A new connection, outside the pool.
    pub(crate) fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        }
    }

    /// Runs `f` on an idle connection, or a new one, and keeps it for reuse unless it broke.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let idle = lock(&self.idle).pop();
        let mut client = match idle {
            Some(c) if !c.is_closed() => c,
            _ => self.connect()?,
        };
        let result = f(&mut client);
        if !client.is_closed() {
            let mut idle = lock(&self.idle);
            if idle.len() < self.max_idle {
                idle.push(client);
            }
        }
        result
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        close(self.name, std::mem::take(&mut *lock(&self.idle)));
    }
}

/// Drops `connections`; from async code on a thread of its own, because a connection
/// closes by blocking on its own small runtime, which a runtime worker must not do (tokio
/// refuses).
pub(crate) fn close<T: Send + 'static>(thread: &'static str, connections: T) {
    if tokio::runtime::Handle::try_current().is_err() {
        drop(connections);
        return;
    }
    let closing = std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || drop(connections));
    if let Err(e) = closing {
        tracing::warn!(error = %e, thread, "PostgreSQL connections not closed cleanly");
    }
}
