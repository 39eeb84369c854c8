//! A tank that fills through an inlet valve and is drained by a pump.
//!
//! In automatic mode the pump starts when the level reaches the start level and stops when it
//! falls to the stop level (hysteresis). An operator overrides it over Modbus through the
//! pump-mode register (0 automatic, 1 forced off, 2 forced on), closes the inlet valve coil,
//! or moves the start/stop levels: every one of these visibly changes the level.

use super::bank::Tables;
use super::signal::Point;

/// Pump mode register values.
pub const PUMP_MODE_AUTO: u16 = 0;
pub const PUMP_MODE_OFF: u16 = 1;
pub const PUMP_MODE_ON: u16 = 2;

/// Physical parameters of a tank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TankParameters {
    pub area_m2: f64,
    pub height_m: f64,
    /// Inflow with the inlet valve open.
    pub inflow_m3_per_h: f64,
    /// Outflow while the pump runs (and the tank is not empty).
    pub pump_rate_m3_per_h: f64,
    pub initial_level_m: f64,
    /// Automatic mode: the pump starts at or above this level...
    pub start_level_m: f64,
    /// ...and stops at or below this one.
    pub stop_level_m: f64,
}

/// Where the tank's measurements and commands live in the bank. Commands not mapped keep
/// their defaults (valve open, automatic mode, start/stop levels from the parameters).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TankPoints {
    pub level: Option<Point>,
    pub pump_running: Option<Point>,
    pub inflow: Option<Point>,
    pub outflow: Option<Point>,
    pub inlet_valve: Option<Point>,
    pub pump_mode: Option<Point>,
    pub start_level: Option<Point>,
    pub stop_level: Option<Point>,
}

/// A tank's state.
#[derive(Debug, Clone)]
pub struct Tank {
    pub name: String,
    pub parameters: TankParameters,
    pub points: TankPoints,
    level_m: f64,
    pump_running: bool,
    inflow_m3_per_h: f64,
    outflow_m3_per_h: f64,
}

impl Tank {
    pub fn new(name: impl Into<String>, parameters: TankParameters, points: TankPoints) -> Self {
        Self {
            name: name.into(),
            level_m: parameters.initial_level_m.clamp(0.0, parameters.height_m),
            parameters,
            points,
            pump_running: false,
            inflow_m3_per_h: 0.0,
            outflow_m3_per_h: 0.0,
        }
    }

    pub fn level_m(&self) -> f64 {
        self.level_m
    }

    pub fn pump_running(&self) -> bool {
        self.pump_running
    }

    /// Writes the command defaults (valve open, automatic mode, start/stop levels) and the
    /// initial measurements, before the first tick.
    pub fn initialize(&self, tables: &mut Tables) {
        let p = &self.parameters;
        let commands = [
            (self.points.inlet_valve, 1.0),
            (self.points.pump_mode, f64::from(PUMP_MODE_AUTO)),
            (self.points.start_level, p.start_level_m),
            (self.points.stop_level, p.stop_level_m),
        ];
        for (point, value) in commands {
            if let Some(point) = point {
                point.write(tables, value);
            }
        }
        self.publish(tables);
    }

    /// Advances the process by `dt` seconds: reads the operator's commands, decides the pump,
    /// integrates the level, writes the measurements.
    pub fn step(&mut self, tables: &mut Tables, dt: f64) {
        let p = self.parameters;
        let read = |point: Option<Point>, default: f64| point.map_or(default, |pt| pt.read(tables));
        let valve_open = read(self.points.inlet_valve, 1.0) != 0.0;
        let mode = read(self.points.pump_mode, f64::from(PUMP_MODE_AUTO));
        let start_level = read(self.points.start_level, p.start_level_m);
        let stop_level = read(self.points.stop_level, p.stop_level_m);

        self.pump_running = if mode == f64::from(PUMP_MODE_OFF) {
            false
        } else if mode == f64::from(PUMP_MODE_ON) {
            true
        } else if self.level_m >= start_level {
            // Unknown modes behave as automatic, like a controller ignoring a bad command.
            true
        } else if self.level_m <= stop_level {
            false
        } else {
            self.pump_running
        };

        let capacity_m3 = p.area_m2 * p.height_m;
        let volume_m3 = self.level_m * p.area_m2;
        let hours = dt / 3600.0;
        let inflow = if valve_open { p.inflow_m3_per_h } else { 0.0 };
        let pump = if self.pump_running {
            p.pump_rate_m3_per_h
        } else {
            0.0
        };
        // The pump cannot move more than the tank holds plus what flows in meanwhile.
        let outflow = if hours > 0.0 {
            pump.min(volume_m3 / hours + inflow)
        } else {
            0.0
        };
        // What does not fit overflows and is lost.
        let new_volume = (volume_m3 + (inflow - outflow) * hours).clamp(0.0, capacity_m3);
        self.level_m = new_volume / p.area_m2;
        self.inflow_m3_per_h = inflow;
        self.outflow_m3_per_h = outflow;
        self.publish(tables);
    }

    fn publish(&self, tables: &mut Tables) {
        let measurements = [
            (self.points.level, self.level_m),
            (
                self.points.pump_running,
                f64::from(u8::from(self.pump_running)),
            ),
            (self.points.inflow, self.inflow_m3_per_h),
            (self.points.outflow, self.outflow_m3_per_h),
        ];
        for (point, value) in measurements {
            if let Some(point) = point {
                point.write(tables, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::value::{DataType, WordOrder};
    use crate::simulator::{BankSizes, RegisterBank, Table};

    fn parameters() -> TankParameters {
        TankParameters {
            area_m2: 1.0,
            height_m: 10.0,
            inflow_m3_per_h: 3600.0, // 1 m of level per second
            pump_rate_m3_per_h: 7200.0,
            initial_level_m: 5.0,
            start_level_m: 8.0,
            stop_level_m: 2.0,
        }
    }

    fn points() -> TankPoints {
        TankPoints {
            level: Some(Point::typed(
                Table::InputRegisters,
                0,
                DataType::F32,
                WordOrder::Abcd,
            )),
            pump_running: Some(Point::new(Table::DiscreteInputs, 0)),
            inlet_valve: Some(Point::new(Table::Coils, 0)),
            pump_mode: Some(Point::new(Table::HoldingRegisters, 0)),
            start_level: Some(Point::typed(
                Table::HoldingRegisters,
                1,
                DataType::F32,
                WordOrder::Abcd,
            )),
            ..TankPoints::default()
        }
    }

    #[test]
    fn automatic_mode_cycles_between_the_thresholds() {
        let bank = RegisterBank::new(BankSizes::uniform(8)).unwrap();
        let mut tank = Tank::new("t", parameters(), points());
        let mut tables = bank.write();
        tank.initialize(&mut tables);
        let mut levels = Vec::new();
        let mut pump = Vec::new();
        for _ in 0..20 {
            tank.step(&mut tables, 1.0);
            levels.push(tank.level_m());
            pump.push(tank.pump_running());
        }
        // Fills 1 m/s to 8 m, then drains at net 1 m/s to 2 m, then fills again.
        assert_eq!(&levels[..4], [6.0, 7.0, 8.0, 7.0]);
        assert!(pump[3], "pump started at the start level");
        let lowest = levels.iter().copied().fold(f64::MAX, f64::min);
        let highest = levels.iter().copied().fold(f64::MIN, f64::max);
        assert_eq!((lowest, highest), (2.0, 8.0));
        assert!(!pump[9] && pump[8], "pump stopped at the stop level");
        assert!(levels.iter().all(|l| (0.0..=10.0).contains(l)));
        assert_eq!(tables.discrete_inputs[0], tank.pump_running());
        let published = Point::typed(Table::InputRegisters, 0, DataType::F32, WordOrder::Abcd);
        assert_eq!(published.read(&tables), tank.level_m());
    }

    #[test]
    fn operator_commands_override_the_automatic_pump() {
        let bank = RegisterBank::new(BankSizes::uniform(8)).unwrap();
        let mut tank = Tank::new("t", parameters(), points());
        let mut tables = bank.write();
        tank.initialize(&mut tables);
        assert!(tables.coils[0], "valve starts open");

        // Forced on: drains to empty and stays there without going negative.
        tables.holding_registers[0] = PUMP_MODE_ON;
        for _ in 0..10 {
            tank.step(&mut tables, 1.0);
        }
        assert_eq!(tank.level_m(), 0.0);
        assert!(tank.pump_running());

        // Forced off with the valve open: fills and overflows at the top.
        tables.holding_registers[0] = PUMP_MODE_OFF;
        for _ in 0..15 {
            tank.step(&mut tables, 1.0);
        }
        assert_eq!(tank.level_m(), 10.0);
        assert!(!tank.pump_running());

        // Valve closed: the level holds.
        tables.coils[0] = false;
        tank.step(&mut tables, 1.0);
        assert_eq!(tank.level_m(), 10.0);
    }

    #[test]
    fn a_lower_start_level_setpoint_starts_the_pump_earlier() {
        let bank = RegisterBank::new(BankSizes::uniform(8)).unwrap();
        let mut tank = Tank::new("t", parameters(), points());
        let mut tables = bank.write();
        tank.initialize(&mut tables);
        tank.step(&mut tables, 1.0);
        assert!(!tank.pump_running(), "6 m is below the configured 8 m");
        let start_level = points().start_level.unwrap();
        start_level.write(&mut tables, 5.5);
        tank.step(&mut tables, 1.0);
        assert!(tank.pump_running());
        tank.step(&mut tables, 1.0);
        assert!(tank.level_m() < 6.0, "level falls once the pump runs");
    }

    #[test]
    fn empty_tank_pump_moves_only_the_inflow() {
        let bank = RegisterBank::new(BankSizes::uniform(8)).unwrap();
        let points = TankPoints {
            outflow: Some(Point::typed(
                Table::InputRegisters,
                4,
                DataType::F32,
                WordOrder::Abcd,
            )),
            ..points()
        };
        let parameters = TankParameters {
            initial_level_m: 0.0,
            ..parameters()
        };
        let mut tank = Tank::new("t", parameters, points);
        let mut tables = bank.write();
        tank.initialize(&mut tables);
        tables.holding_registers[0] = PUMP_MODE_ON;
        tank.step(&mut tables, 1.0);
        assert_eq!(tank.level_m(), 0.0);
        assert_eq!(points.outflow.unwrap().read(&tables), 3600.0);
    }
}
