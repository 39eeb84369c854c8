//! A running simulator: the Modbus server plus the signal engine animating its banks.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::bank::RegisterBank;
use infra::ConfigError;

use super::config::SimulatorConfig;
use super::engine::SignalEngine;
use super::plant::{Plant, PlantError, UnitId};
use super::server::PlantServer;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        /// Shown in the message, so not also chained as a source.
        error: io::Error,
    },
}

/// A plant being served and animated. Faults are injected through [`Self::server`] (links)
/// and [`Self::plant`] (per unit).
#[derive(Debug)]
pub struct Simulator {
    server: PlantServer,
    /// Stops the engine when the simulator is dropped without [`Self::shutdown`].
    stop_engine: DropGuard,
    engine: JoinHandle<()>,
}

impl Simulator {
    /// Builds the plant from `config`, listens on `addr` and starts ticking.
    pub async fn start(config: &SimulatorConfig, addr: SocketAddr) -> Result<Self, StartError> {
        let (plant, models) = config.build()?;
        let engine = SignalEngine::new(models, config.tick_period());
        let server = PlantServer::start(addr, Arc::new(plant))
            .await
            .map_err(|error| StartError::Listen { addr, error })?;
        let stop_engine = CancellationToken::new();
        let engine = engine.spawn(stop_engine.clone());
        Ok(Self {
            server,
            stop_engine: stop_engine.drop_guard(),
            engine,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The Modbus server: connection count, dropped connections, stop/restart.
    pub fn server(&self) -> &PlantServer {
        &self.server
    }

    /// Units, banks and per-unit faults.
    pub fn plant(&self) -> &Arc<Plant> {
        self.server.plant()
    }

    pub fn bank(&self, unit: UnitId) -> Result<&Arc<RegisterBank>, PlantError> {
        self.server.bank(unit)
    }

    /// Stops the signals, then the server, and waits for both.
    pub async fn shutdown(self) {
        let Self {
            server,
            stop_engine,
            engine,
        } = self;
        drop(stop_engine);
        if let Err(error) = engine.await {
            tracing::warn!(%error, "signal engine task failed");
        }
        server.shutdown().await;
    }
}
