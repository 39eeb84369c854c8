//! Ready-made plants: the built-in demo plant and the large generated map for benchmarks.

use super::bank::{BankSizes, MAX_TABLE_SIZE, Table};
use infra::ConfigError;

use super::config::{DEFAULT_TICK_MS, SignalConfig, SimulatorConfig, UnitConfig, WaveKind};
use super::value::{DataType, WordOrder};

const DEFAULT_PLANT: &str = include_str!("default_plant.toml");

/// Words in one repeating block of the benchmark map.
pub const BENCH_BLOCK_WORDS: usize = 8;

/// Most units the benchmark map generates (unit ids 1..=247, the Modbus unicast range).
pub const BENCH_MAX_UNITS: usize = 247;

impl SimulatorConfig {
    /// The built-in demo plant: unit 1 tank farm, unit 2 compressor station, unit 3 power
    /// meter (register map in the module's README).
    pub fn default_plant() -> Self {
        match Self::from_toml_str(DEFAULT_PLANT, "built-in default plant") {
            Ok(config) => config,
            // The text is compiled in and covered by tests: failing here is a build defect.
            Err(error) => panic!("{error}"),
        }
    }

    /// `units` units (ids 1..=units), each with `registers` holding and `registers` input
    /// registers filled with live values of mixed types, for acquisition benchmarks.
    ///
    /// Both tables repeat the same 8-word block from address 0; in block `b` (base `8b`):
    ///
    /// | offset | type | order | signal |
    /// |---|---|---|---|
    /// | +0 | u16 | - | counter, +10/s |
    /// | +1 | i16 | - | sine, amplitude 1000 |
    /// | +2 | u32 | abcd | counter, +100/s |
    /// | +4 | f32 | abcd | sine, 50 +/- 25 |
    /// | +6 | f32 | cdab | ramp 0..100 |
    ///
    /// Words after the last whole block are u16 ramps. Signal names are
    /// `hr_<address>_<type>` / `ir_<address>_<type>`; iterate the returned config's signals to
    /// build matching tags. Each unit also has 64 coils and 64 discrete inputs of square waves.
    pub fn bench_map(units: usize, registers: usize) -> Result<Self, ConfigError> {
        if units == 0 || units > BENCH_MAX_UNITS {
            return Err(bench_error(
                "units",
                &format!("must be 1..={BENCH_MAX_UNITS}"),
            ));
        }
        if registers == 0 || registers > MAX_TABLE_SIZE {
            return Err(bench_error(
                "registers",
                &format!("must be 1..={MAX_TABLE_SIZE}"),
            ));
        }
        let units = (1..=units)
            .map(|id| bench_unit(id as u8, registers))
            .collect();
        let config = Self {
            tick_ms: DEFAULT_TICK_MS,
            units,
        };
        config.validate()?;
        Ok(config)
    }
}

fn bench_unit(id: u8, registers: usize) -> UnitConfig {
    let bits = 64;
    let mut signals = Vec::with_capacity(2 * registers + 2 * bits);
    for (table, prefix) in [
        (Table::HoldingRegisters, "hr"),
        (Table::InputRegisters, "ir"),
    ] {
        let mut address = 0;
        while address < registers {
            let offset = address % BENCH_BLOCK_WORDS;
            let block = address - offset + BENCH_BLOCK_WORDS <= registers;
            let (signal, words) = if block {
                bench_block_signal(offset, table, address as u16)
            } else {
                (ramp(table, address as u16, DataType::U16, 0.0, 1000.0), 1)
            };
            signals.push(named(signal, prefix));
            address += words;
        }
    }
    for (table, prefix) in [(Table::Coils, "co"), (Table::DiscreteInputs, "di")] {
        for address in 0..bits as u16 {
            let mut signal =
                SignalConfig::new("", WaveKind::Square, table, address, DataType::Bool);
            signal.period_s = Some(2.0 + f64::from(address % 8));
            signals.push(named(signal, prefix));
        }
    }
    UnitConfig {
        id,
        name: format!("bench unit {id}"),
        sizes: BankSizes {
            coils: bits,
            discrete_inputs: bits,
            holding_registers: registers,
            input_registers: registers,
        },
        invalid: Vec::new(),
        signals,
        tanks: Vec::new(),
    }
}

/// The signal at `offset` of a block and the words it takes.
fn bench_block_signal(offset: usize, table: Table, address: u16) -> (SignalConfig, usize) {
    match offset {
        0 => {
            let mut signal =
                SignalConfig::new("", WaveKind::Counter, table, address, DataType::U16);
            signal.rate = Some(10.0);
            (signal, 1)
        }
        1 => {
            let mut signal = SignalConfig::new("", WaveKind::Sine, table, address, DataType::I16);
            signal.amplitude = Some(1000.0);
            signal.period_s = Some(60.0);
            (signal, 1)
        }
        2 => {
            let mut signal =
                SignalConfig::new("", WaveKind::Counter, table, address, DataType::U32);
            signal.rate = Some(100.0);
            (signal, 2)
        }
        4 => {
            let mut signal = SignalConfig::new("", WaveKind::Sine, table, address, DataType::F32);
            signal.offset = Some(50.0);
            signal.amplitude = Some(25.0);
            signal.period_s = Some(30.0);
            (signal, 2)
        }
        _ => {
            let mut signal = ramp(table, address, DataType::F32, 0.0, 100.0);
            signal.order = WordOrder::Cdab;
            (signal, 2)
        }
    }
}

fn ramp(table: Table, address: u16, data_type: DataType, min: f64, max: f64) -> SignalConfig {
    let mut signal = SignalConfig::new("", WaveKind::Ramp, table, address, data_type);
    signal.min = Some(min);
    signal.max = Some(max);
    signal.period_s = Some(20.0);
    signal
}

fn named(mut signal: SignalConfig, prefix: &str) -> SignalConfig {
    let data_type = signal.data_type.map_or("u16", DataType::name);
    signal.name = format!("{prefix}_{:05}_{data_type}", signal.address);
    signal
}

fn bench_error(key: &str, problem: &str) -> ConfigError {
    ConfigError::new(format!("bench map {key}"), problem)
}
