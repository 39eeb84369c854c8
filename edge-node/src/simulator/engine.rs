//! The signal engine: advances every unit's signals and tanks on a fixed tick.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::bank::RegisterBank;
use super::plant::UnitId;
use super::signal::Signal;
use super::tank::Tank;

/// The live part of one unit: what its registers show over time.
#[derive(Debug)]
pub struct UnitModel {
    pub unit: UnitId,
    bank: Arc<RegisterBank>,
    signals: Vec<Signal>,
    tanks: Vec<Tank>,
    /// Samples computed before taking the bank's lock, reused every tick.
    samples: Vec<f64>,
}

impl UnitModel {
    pub fn new(
        unit: UnitId,
        bank: Arc<RegisterBank>,
        signals: Vec<Signal>,
        tanks: Vec<Tank>,
    ) -> Self {
        let samples = Vec::with_capacity(signals.len());
        Self {
            unit,
            bank,
            signals,
            tanks,
            samples,
        }
    }

    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    pub fn tanks(&self) -> &[Tank] {
        &self.tanks
    }

    /// Writes the tanks' command defaults; called once before the first step.
    fn initialize(&mut self) {
        let mut tables = self.bank.write();
        for tank in &self.tanks {
            tank.initialize(&mut tables);
        }
    }

    fn step(&mut self, t: f64, dt: f64) {
        self.samples.clear();
        self.samples.extend(
            self.signals
                .iter_mut()
                .map(|signal| signal.wave.sample(t, dt)),
        );
        let mut tables = self.bank.write();
        for (signal, &value) in self.signals.iter().zip(&self.samples) {
            signal.point.write(&mut tables, value);
        }
        for tank in &mut self.tanks {
            tank.step(&mut tables, dt);
        }
    }
}

/// Every unit's model and the simulated clock.
#[derive(Debug)]
pub struct SignalEngine {
    units: Vec<UnitModel>,
    period: Duration,
    ticks: u64,
}

impl SignalEngine {
    /// Builds the engine and writes the initial state (tick 0) into the banks.
    pub fn new(mut units: Vec<UnitModel>, period: Duration) -> Self {
        for unit in &mut units {
            unit.initialize();
        }
        let mut engine = Self {
            units,
            period,
            ticks: 0,
        };
        engine.step();
        engine
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    pub fn units(&self) -> &[UnitModel] {
        &self.units
    }

    /// Seconds of simulated time since start.
    pub fn elapsed_s(&self) -> f64 {
        self.ticks as f64 * self.period.as_secs_f64()
    }

    /// Advances every unit by one tick.
    pub fn step(&mut self) {
        let t = self.elapsed_s();
        let dt = self.period.as_secs_f64();
        for unit in &mut self.units {
            unit.step(t, dt);
        }
        self.ticks += 1;
    }

    /// Ticks every period until `stop` is cancelled. A late tick is not caught up: the
    /// simulated clock slows rather than jumps.
    pub fn spawn(mut self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(self.period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                tokio::select! {
                    _ = interval.tick() => self.step(),
                    () = stop.cancelled() => break,
                }
            }
            tracing::debug!(ticks = self.ticks, "signal engine stopped");
        })
    }
}
