//! The whole host: broker (embedded or external), history store and writer, retention,
//! the Primary Host session and the API, started in order and stopped in reverse with
//! the STATE offline published and history flushed.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, ApiServer};
use crate::broker::{Broker, BrokerError};
use crate::config::HostConfig;
use crate::history::{
    HistoryError, HistoryStore, HistoryWriter, RetentionTask, WriterStats, WriterTask,
};
use crate::panel::SystemInfo;
use crate::session::{Publisher, Session, SessionError};
use crate::shared::HostShared;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    #[error("history: {0}")]
    History(#[from] HistoryError),
    #[error("session: {0}")]
    Session(#[from] SessionError),
    #[error("API: {0}")]
    Api(#[from] ApiError),
}

/// How long the embedded broker keeps delivering after the session's STATE offline.
const EMBEDDED_BROKER_DRAIN: std::time::Duration = std::time::Duration::from_millis(250);

/// A running host.
pub struct Host {
    broker: Broker,
    shared: Arc<HostShared>,
    publisher: Publisher,
    writer: HistoryWriter,
    writer_task: WriterTask,
    retention: RetentionTask,
    session: JoinHandle<()>,
    session_stop: CancellationToken,
    api: ApiServer,
    api_stop: CancellationToken,
    /// To write what is still in memory to the database at stop.
    store: Arc<dyn HistoryStore>,
}

impl Host {
    /// Starts every part; on an error, what was started is stopped again.
    pub async fn start(config: &HostConfig) -> Result<Host, HostError> {
        let broker = Broker::start(&config.broker, &config.state_dir()).await?;
        // Opening connects and may create the schema: off the runtime's workers.
        let history = config.history.clone();
        let opened = tokio::task::spawn_blocking(move || history.build())
            .await
            .unwrap_or_else(|e| Err(HistoryError::TaskFailed(e.to_string())));
        let store = match opened {
            Ok(store) => store,
            Err(e) => {
                broker.stop().await;
                return Err(e.into());
            }
        };
        let (writer, writer_task) =
            HistoryWriter::spawn(Arc::clone(&store), config.history.writer_config());
        let retention = RetentionTask::spawn(
            Arc::clone(&store),
            config.history.retention_policy(),
            config.history.audit_retention(),
            config.history.retention_interval(),
        );
        if let Some(groups) = &config.sparkplug.groups {
            let groups: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
            let peers: Vec<&str> = config
                .sparkplug
                .peers
                .iter()
                .map(|p| p.host_id.as_str())
                .collect();
            tracing::info!(
                ?groups,
                ?peers,
                "owning these groups; the others' births and deaths are observed"
            );
        }
        let shared = HostShared::with_ownership(
            Arc::clone(&store),
            config.sparkplug.tracker(),
            config.sparkplug.ownership(),
        );
        let started = Session::new(broker.endpoint(), Arc::clone(&shared), writer.clone()).map(
            |(session, publisher)| {
                let session = session
                    .with_config(config.sparkplug.session())
                    .with_failover(broker.failover().iter().cloned());
                (session, publisher)
            },
        );
        let (session, publisher) = match started {
            Ok(s) => s,
            Err(e) => {
                let _ = stop_storage(&writer, writer_task, retention).await; // the start error matters more
                broker.stop().await;
                return Err(e.into());
            }
        };
        let api_stop = CancellationToken::new();
        let api = match ApiServer::start(
            &config.api,
            &config.state_dir(),
            &config.history,
            Arc::clone(&shared),
            publisher.clone(),
            api_stop.clone(),
            SystemInfo {
                history_path: config.history.location().into(),
                retention_days: config.history.retention_days,
                max_size_mb: config.history.max_size_mb,
                broker_mode: if broker.embedded().is_some() {
                    "embedded"
                } else {
                    "external"
                },
                broker_clients: broker.embedded().map(|b| b.client_gauge()),
                cert: None,
            },
        )
        .await
        {
            Ok(api) => api,
            Err(e) => {
                drop(session);
                let _ = stop_storage(&writer, writer_task, retention).await; // the start error matters more
                broker.stop().await;
                return Err(e.into());
            }
        };
        let session_stop = CancellationToken::new();
        let session = tokio::spawn(session.run(session_stop.clone()));
        Ok(Host {
            broker,
            shared,
            publisher,
            writer,
            writer_task,
            retention,
            session,
            session_stop,
            api,
            api_stop,
            store,
        })
    }

    pub fn shared(&self) -> &Arc<HostShared> {
        &self.shared
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api.addr()
    }

    /// The panel's server: its accounts, URL and certificate fingerprint.
    pub fn api(&self) -> &ApiServer {
        &self.api
    }

    /// The history writer's liveness, for the service watchdog.
    pub fn history_progress(&self) -> Arc<infra::watchdog::Progress> {
        self.writer.progress()
    }

    /// The history writer's running figures, for `/metrics`.
    pub fn history_metrics(&self) -> Arc<crate::history::WriterMetrics> {
        self.writer.metrics()
    }

    /// Commits every sample queued so far (for tests and the CLI).
    pub async fn flush(&self) -> Result<(), HistoryError> {
        self.writer.flush().await
    }

    /// Stops in reverse order: API, session (STATE offline, disconnect, edge nodes
    /// offline), history writer (flush), retention, broker.
    pub async fn stop(self) -> Result<WriterStats, HistoryError> {
        self.api_stop.cancel();
        self.api.join().await;
        self.session_stop.cancel();
        let _ = self.session.await;
        let stats = stop_storage(&self.writer, self.writer_task, self.retention).await;
        let store = self.store;
        if let Err(e) = tokio::task::spawn_blocking(move || store.checkpoint())
            .await
            .unwrap_or_else(|e| Err(HistoryError::TaskFailed(e.to_string())))
        {
            tracing::warn!(error = %e, "history not all written to its database at stop; the SQLite recent log keeps it");
        }
        if self.broker.embedded().is_some() {
            // The STATE offline is acknowledged once the engine has it, not once it reached
            // the edge nodes, and the engine has no drain: let it deliver before closing.
            tokio::time::sleep(EMBEDDED_BROKER_DRAIN).await;
        }
        self.broker.stop().await;
        stats
    }
}

async fn stop_storage(
    writer: &HistoryWriter,
    task: WriterTask,
    retention: RetentionTask,
) -> Result<WriterStats, HistoryError> {
    retention.shutdown().await;
    let _ = writer.shutdown().await;
    task.join().await
}
