//! The simulator's TOML configuration: units, bank sizes, signals and tanks, validated at
//! load with every problem named by its key path (`unit[0].signal[2].period_s`).
//!
//! ```toml
//! tick_ms = 100
//!
//! [[unit]]
//! id = 1
//! name = "tank farm"
//! sizes = { coils = 16, discrete_inputs = 16, holding_registers = 64, input_registers = 64 }
//! invalid = [{ table = "holding_registers", start = 60, count = 4 }]
//!
//! [[unit.signal]]
//! name = "ambient_temperature"
//! table = "input_registers"
//! address = 20
//! type = "f32"          # bool, u16, i16, u32, i32, f32, f64 (default: bool or u16)
//! order = "abcd"        # abcd (default), cdab, badc, dcba
//! scale = 1.0           # stored = value * scale
//! kind = "sine"         # constant, ramp, sine, random_walk, counter, square
//! offset = 15.0
//! amplitude = 5.0
//! period_s = 600.0
//!
//! [[unit.tank]]
//! name = "tank_1"
//! area_m2 = 10.0
//! height_m = 5.0
//! inflow_m3_per_h = 40.0
//! pump_rate_m3_per_h = 90.0
//! initial_level_m = 2.0
//! start_level_m = 4.0
//! stop_level_m = 1.0
//! level = { table = "input_registers", address = 0, type = "f32" }
//! pump_mode = { table = "holding_registers", address = 0 }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use infra::{ConfigError, Problems};
use serde::Deserialize;

use super::bank::{BankSizes, MAX_TABLE_SIZE, Table};
use super::engine::UnitModel;
use super::plant::{BROADCAST_UNIT, Plant, UnitId};
use super::signal::{Point, Signal, Wave};
use super::tank::{Tank, TankParameters, TankPoints};
use super::value::{DataType, WordOrder};

pub const DEFAULT_TICK_MS: u64 = 100;

/// The whole simulator: tick period and units.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Period of the signal engine, in milliseconds.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    #[serde(default, rename = "unit")]
    pub units: Vec<UnitConfig>,
}

fn default_tick_ms() -> u64 {
    DEFAULT_TICK_MS
}

/// One simulated device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitConfig {
    pub id: UnitId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub sizes: BankSizes,
    /// Address ranges answering "illegal data address", like holes in a device's map.
    #[serde(default)]
    pub invalid: Vec<RangeConfig>,
    #[serde(default, rename = "signal")]
    pub signals: Vec<SignalConfig>,
    #[serde(default, rename = "tank")]
    pub tanks: Vec<TankConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeConfig {
    pub table: Table,
    pub start: u16,
    pub count: u32,
}

/// Where a value lives and how it is encoded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    pub table: Table,
    pub address: u16,
    #[serde(rename = "type")]
    pub data_type: Option<DataType>,
    #[serde(default)]
    pub order: WordOrder,
    pub scale: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveKind {
    Constant,
    Ramp,
    Sine,
    RandomWalk,
    Counter,
    Square,
}

impl WaveKind {
    fn name(self) -> &'static str {
        match self {
            WaveKind::Constant => "constant",
            WaveKind::Ramp => "ramp",
            WaveKind::Sine => "sine",
            WaveKind::RandomWalk => "random_walk",
            WaveKind::Counter => "counter",
            WaveKind::Square => "square",
        }
    }

    /// Parameter keys this kind requires, then those it accepts.
    fn keys(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            WaveKind::Constant => (&["value"], &[]),
            WaveKind::Ramp => (&["min", "max", "period_s"], &[]),
            WaveKind::Sine => (&["amplitude", "period_s"], &["offset"]),
            WaveKind::RandomWalk => (&["min", "max", "step"], &["start", "seed"]),
            WaveKind::Counter => (&["rate"], &["start"]),
            WaveKind::Square => (&["period_s"], &["duty"]),
        }
    }
}

/// A signal: a point plus a waveform. Parameters that do not apply to `kind` are refused.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    pub name: String,
    pub table: Table,
    pub address: u16,
    #[serde(rename = "type")]
    pub data_type: Option<DataType>,
    #[serde(default)]
    pub order: WordOrder,
    pub scale: Option<f64>,
    pub kind: WaveKind,
    pub value: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub offset: Option<f64>,
    pub amplitude: Option<f64>,
    pub period_s: Option<f64>,
    pub step: Option<f64>,
    pub start: Option<f64>,
    pub rate: Option<f64>,
    pub seed: Option<u64>,
    pub duty: Option<f64>,
}

impl SignalConfig {
    /// A signal of `kind` with no parameters set yet.
    pub fn new(
        name: impl Into<String>,
        kind: WaveKind,
        table: Table,
        address: u16,
        data_type: DataType,
    ) -> Self {
        Self {
            name: name.into(),
            table,
            address,
            data_type: Some(data_type),
            order: WordOrder::Abcd,
            scale: None,
            kind,
            value: None,
            min: None,
            max: None,
            offset: None,
            amplitude: None,
            period_s: None,
            step: None,
            start: None,
            rate: None,
            seed: None,
            duty: None,
        }
    }

    fn point_config(&self) -> PointConfig {
        PointConfig {
            table: self.table,
            address: self.address,
            data_type: self.data_type,
            order: self.order,
            scale: self.scale,
        }
    }

    fn parameters(&self) -> [(&'static str, Option<f64>); 11] {
        [
            ("value", self.value),
            ("min", self.min),
            ("max", self.max),
            ("offset", self.offset),
            ("amplitude", self.amplitude),
            ("period_s", self.period_s),
            ("step", self.step),
            ("start", self.start),
            ("rate", self.rate),
            ("seed", self.seed.map(|s| s as f64)),
            ("duty", self.duty),
        ]
    }
}

/// A tank with its inlet valve and pump; see [`super::Tank`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TankConfig {
    pub name: String,
    pub area_m2: f64,
    pub height_m: f64,
    pub inflow_m3_per_h: f64,
    pub pump_rate_m3_per_h: f64,
    #[serde(default)]
    pub initial_level_m: f64,
    pub start_level_m: f64,
    pub stop_level_m: f64,
    /// Measurement, required.
    pub level: Option<PointConfig>,
    pub pump_running: Option<PointConfig>,
    pub inflow: Option<PointConfig>,
    pub outflow: Option<PointConfig>,
    /// Operator commands: coils or holding registers.
    pub inlet_valve: Option<PointConfig>,
    pub pump_mode: Option<PointConfig>,
    pub start_level: Option<PointConfig>,
    pub stop_level: Option<PointConfig>,
}

impl SimulatorConfig {
    /// Parses and validates a configuration; `origin` names it in errors (a path, "built-in").
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text).in_file(origin))?;
        config.validate().map_err(|e| e.in_file(origin))?;
        Ok(config)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
        Self::from_toml_str(&text, &origin)
    }

    pub fn tick_period(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    /// Checks everything [`Self::build`] relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.build().map(drop)
    }

    /// Creates the units' banks and the models that animate them.
    pub fn build(&self) -> Result<(Plant, Vec<UnitModel>), ConfigError> {
        let mut problems = Problems::new();
        if self.tick_ms == 0 {
            problems.push("tick_ms", "must be at least 1");
        }
        if self.units.is_empty() {
            problems.push("unit", "at least one unit is required");
        }
        let mut plant = Plant::new();
        let mut models = Vec::with_capacity(self.units.len());
        for (i, unit) in self.units.iter().enumerate() {
            if let Some(model) = problems.check(unit.build(i, &mut plant)) {
                models.push(model);
            }
        }
        problems.finish((plant, models))
    }
}

impl UnitConfig {
    /// Builds the `index`th `[[unit]]`; its problems are keyed `unit[index]...`.
    fn build(&self, index: usize, plant: &mut Plant) -> Result<UnitModel, ConfigError> {
        let location = format!("unit[{index}]");
        if self.id == BROADCAST_UNIT {
            return Err(invalid(
                &location,
                "id",
                "0 is the broadcast address; use 1..=255",
            ));
        }
        if plant.unit(self.id).is_ok() {
            let problem = format!("unit {} is defined more than once", self.id);
            return Err(invalid(&location, "id", &problem));
        }
        for table in Table::ALL {
            if self.sizes.get(table) > MAX_TABLE_SIZE {
                let key = format!("sizes.{table}");
                return Err(invalid(
                    &location,
                    &key,
                    &format!("at most {MAX_TABLE_SIZE}"),
                ));
            }
        }
        let unit = plant
            .add_unit(self.id, self.sizes)
            .map_err(|e| invalid(&location, "id", &e.to_string()))?;
        for (i, range) in self.invalid.iter().enumerate() {
            let key = format!("invalid[{i}]");
            let end = u64::from(range.start) + u64::from(range.count);
            if range.count == 0 || end > self.sizes.get(range.table) as u64 {
                let problem = format!(
                    "{} {}..{end} must be non-empty and inside the table (size {})",
                    range.table,
                    range.start,
                    self.sizes.get(range.table)
                );
                return Err(invalid(&location, &key, &problem));
            }
            unit.bank()
                .mark_invalid(range.table, range.start, range.count);
        }

        // Each signal and tank reports its first problem; all of them are checked.
        let mut problems = Problems::new();
        let mut occupancy = Occupancy::new(self.sizes);
        let mut names = HashSet::new();
        let mut signals = Vec::with_capacity(self.signals.len());
        for (i, signal) in self.signals.iter().enumerate() {
            let location = format!("{location}.signal[{i}]");
            let built = (|| {
                if signal.name.is_empty() || !names.insert(signal.name.as_str()) {
                    return Err(invalid(
                        &location,
                        "name",
                        "must be non-empty and unique in the unit",
                    ));
                }
                let point = signal.point_config().build(&location, "")?;
                occupancy.claim(&location, "address", &point)?;
                Ok(Signal {
                    name: signal.name.clone(),
                    wave: build_wave(signal, &point, &location, self.id)?,
                    point,
                })
            })();
            signals.extend(problems.check(built));
        }
        let mut tanks = Vec::with_capacity(self.tanks.len());
        for (i, tank) in self.tanks.iter().enumerate() {
            let location = format!("{location}.tank[{i}]");
            if tank.name.is_empty() || !names.insert(tank.name.as_str()) {
                problems.extend(invalid(
                    &location,
                    "name",
                    "must be non-empty and unique in the unit",
                ));
                continue;
            }
            tanks.extend(problems.check(tank.build(&location, &mut occupancy)));
        }
        problems.finish(UnitModel::new(
            self.id,
            Arc::clone(unit.bank()),
            signals,
            tanks,
        ))
    }
}

impl PointConfig {
    /// `prefix` is the key of the inline table holding the point ("" for a signal).
    fn build(&self, location: &str, prefix: &str) -> Result<Point, ConfigError> {
        let key = |name: &str| format!("{prefix}{name}");
        let data_type = match self.data_type {
            Some(data_type) => data_type,
            None if self.table.is_bit() => DataType::Bool,
            None => DataType::U16,
        };
        if self.table.is_bit() && data_type != DataType::Bool {
            let problem = format!("{} holds single bits; use type \"bool\"", self.table);
            return Err(invalid(location, &key("type"), &problem));
        }
        let scale = self.scale.unwrap_or(1.0);
        if !scale.is_finite() || scale == 0.0 {
            return Err(invalid(
                location,
                &key("scale"),
                "must be finite and non-zero",
            ));
        }
        Ok(Point {
            table: self.table,
            address: self.address,
            data_type,
            order: self.order,
            scale,
        })
    }
}

impl TankConfig {
    fn build(&self, location: &str, occupancy: &mut Occupancy) -> Result<Tank, ConfigError> {
        let positive = [("area_m2", self.area_m2), ("height_m", self.height_m)];
        for (key, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(invalid(location, key, "must be greater than 0"));
            }
        }
        let rates = [
            ("inflow_m3_per_h", self.inflow_m3_per_h),
            ("pump_rate_m3_per_h", self.pump_rate_m3_per_h),
        ];
        for (key, value) in rates {
            if !(value.is_finite() && value >= 0.0) {
                return Err(invalid(location, key, "must be 0 or more"));
            }
        }
        let in_tank = |value: f64| value.is_finite() && (0.0..=self.height_m).contains(&value);
        let levels = [
            ("initial_level_m", self.initial_level_m),
            ("start_level_m", self.start_level_m),
            ("stop_level_m", self.stop_level_m),
        ];
        for (key, value) in levels {
            if !in_tank(value) {
                let problem = format!("must be between 0 and height_m ({})", self.height_m);
                return Err(invalid(location, key, &problem));
            }
        }
        if self.stop_level_m >= self.start_level_m {
            return Err(invalid(
                location,
                "stop_level_m",
                "must be below start_level_m",
            ));
        }
        if self.level.is_none() {
            return Err(invalid(
                location,
                "level",
                "required: where the level is published",
            ));
        }
        let mut point = |key: &str, config: &Option<PointConfig>, command: bool| {
            let Some(config) = config else {
                return Ok(None);
            };
            if command && !matches!(config.table, Table::Coils | Table::HoldingRegisters) {
                let problem = format!(
                    "{} is read-only over Modbus; an operator command needs coils or holding_registers",
                    config.table
                );
                return Err(invalid(location, &format!("{key}.table"), &problem));
            }
            let point = config.build(location, &format!("{key}."))?;
            occupancy.claim(location, key, &point)?;
            Ok(Some(point))
        };
        let points = TankPoints {
            level: point("level", &self.level, false)?,
            pump_running: point("pump_running", &self.pump_running, false)?,
            inflow: point("inflow", &self.inflow, false)?,
            outflow: point("outflow", &self.outflow, false)?,
            inlet_valve: point("inlet_valve", &self.inlet_valve, true)?,
            pump_mode: point("pump_mode", &self.pump_mode, true)?,
            start_level: point("start_level", &self.start_level, true)?,
            stop_level: point("stop_level", &self.stop_level, true)?,
        };
        let parameters = TankParameters {
            area_m2: self.area_m2,
            height_m: self.height_m,
            inflow_m3_per_h: self.inflow_m3_per_h,
            pump_rate_m3_per_h: self.pump_rate_m3_per_h,
            initial_level_m: self.initial_level_m,
            start_level_m: self.start_level_m,
            stop_level_m: self.stop_level_m,
        };
        Ok(Tank::new(self.name.clone(), parameters, points))
    }
}

fn build_wave(
    signal: &SignalConfig,
    point: &Point,
    location: &str,
    unit: UnitId,
) -> Result<Wave, ConfigError> {
    let kind = signal.kind;
    let (required, optional) = kind.keys();
    for (key, value) in signal.parameters() {
        let needed = required.contains(&key);
        if needed && value.is_none() {
            let problem = format!("required by kind \"{}\"", kind.name());
            return Err(invalid(location, key, &problem));
        }
        if !needed && !optional.contains(&key) && value.is_some() {
            let problem = format!("does not apply to kind \"{}\"", kind.name());
            return Err(invalid(location, key, &problem));
        }
        if value.is_some_and(|v| !v.is_finite()) {
            return Err(invalid(location, key, "must be a finite number"));
        }
    }
    let get = |value: Option<f64>| value.unwrap_or(0.0);
    let period = || -> Result<f64, ConfigError> {
        match signal.period_s {
            Some(period) if period > 0.0 => Ok(period),
            _ => Err(invalid(location, "period_s", "must be greater than 0")),
        }
    };
    let ordered = || -> Result<(f64, f64), ConfigError> {
        let (min, max) = (get(signal.min), get(signal.max));
        if min < max {
            Ok((min, max))
        } else {
            Err(invalid(location, "max", "must be greater than min"))
        }
    };
    Ok(match kind {
        WaveKind::Constant => Wave::Constant {
            value: get(signal.value),
        },
        WaveKind::Ramp => {
            let (min, max) = ordered()?;
            Wave::Ramp {
                min,
                max,
                period_s: period()?,
            }
        }
        WaveKind::Sine => Wave::Sine {
            offset: get(signal.offset),
            amplitude: get(signal.amplitude),
            period_s: period()?,
        },
        WaveKind::RandomWalk => {
            let (min, max) = ordered()?;
            let step = get(signal.step);
            if step < 0.0 {
                return Err(invalid(location, "step", "must be 0 or more"));
            }
            let start = signal.start.unwrap_or((min + max) / 2.0);
            if !(min..=max).contains(&start) {
                return Err(invalid(location, "start", "must be between min and max"));
            }
            // Without a seed, each signal still gets its own reproducible walk.
            let seed = signal
                .seed
                .unwrap_or((u64::from(unit) << 32) | u64::from(point.address));
            Wave::random_walk(min, max, step, start, seed)
        }
        WaveKind::Counter => {
            if point.data_type == DataType::Bool {
                return Err(invalid(location, "type", "a counter needs a numeric type"));
            }
            Wave::counter(get(signal.start), get(signal.rate), point.data_type)
        }
        WaveKind::Square => {
            let duty = signal.duty.unwrap_or(0.5);
            if !(duty > 0.0 && duty < 1.0) {
                return Err(invalid(
                    location,
                    "duty",
                    "must be between 0 and 1 (exclusive)",
                ));
            }
            Wave::Square {
                period_s: period()?,
                duty,
            }
        }
    })
}

/// Which entity owns each address of a unit, to refuse overlapping points.
struct Occupancy {
    sizes: BankSizes,
    owners: BTreeMap<(Table, usize), String>,
}

impl Occupancy {
    fn new(sizes: BankSizes) -> Self {
        Self {
            sizes,
            owners: BTreeMap::new(),
        }
    }

    fn claim(&mut self, location: &str, key: &str, point: &Point) -> Result<(), ConfigError> {
        let span = point.span();
        let size = self.sizes.get(point.table);
        let key = if key == "address" {
            key.to_owned()
        } else {
            format!("{key}.address")
        };
        if span.end > size {
            let problem = format!(
                "{} {} needs {}..{} but the table holds {size}",
                point.data_type.name(),
                point.table,
                span.start,
                span.end
            );
            return Err(invalid(location, &key, &problem));
        }
        for address in span {
            if let Some(owner) = self.owners.get(&(point.table, address)) {
                let problem = format!("{} {address} is already used by {owner}", point.table);
                return Err(invalid(location, &key, &problem));
            }
        }
        for address in point.span() {
            self.owners
                .insert((point.table, address), location.to_owned());
        }
        Ok(())
    }
}

/// A problem at `key` of the entity whose key path is `location` (e.g. `unit[0].tank[1]`).
fn invalid(location: &str, key: &str, problem: &str) -> ConfigError {
    ConfigError::new(format!("{location}.{key}"), problem)
}
