//! Live signals: waveforms and counters written into the register banks on every tick.
//!
//! Time is simulated (`ticks x period`), so the same configuration yields the same values.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::bank::{Table, Tables};
use super::value::{DataType, WordOrder, decode, encode};

/// Where a value lives in a unit's bank and how it is encoded there.
///
/// The stored (raw) value is the engineering value times `scale`, e.g. a level in metres
/// stored as a u16 in millimetres has `scale = 1000`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub table: Table,
    pub address: u16,
    pub data_type: DataType,
    pub order: WordOrder,
    pub scale: f64,
}

impl Point {
    /// A point with the default type of its table (bool for bit tables, u16 for registers).
    pub fn new(table: Table, address: u16) -> Self {
        let data_type = if table.is_bit() {
            DataType::Bool
        } else {
            DataType::U16
        };
        Self {
            table,
            address,
            data_type,
            order: WordOrder::Abcd,
            scale: 1.0,
        }
    }

    pub fn typed(table: Table, address: u16, data_type: DataType, order: WordOrder) -> Self {
        Self {
            data_type,
            order,
            ..Self::new(table, address)
        }
    }

    /// Entries the point occupies in its table.
    pub fn len(&self) -> usize {
        if self.table.is_bit() {
            1
        } else {
            self.data_type.word_count()
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The addresses the point occupies.
    pub fn span(&self) -> std::ops::Range<usize> {
        let start = usize::from(self.address);
        start..start + self.len()
    }

    /// Writes an engineering value. Points are checked against the table sizes when the
    /// plant is built, so a write outside the table is skipped rather than fatal.
    pub fn write(&self, tables: &mut Tables, value: f64) {
        let span = self.span();
        if let Some(bits) = tables.bits_mut(self.table) {
            if let Some(bit) = bits.get_mut(span.start) {
                *bit = value != 0.0;
            }
        } else if let Some(words) = tables.words_mut(self.table).and_then(|w| w.get_mut(span)) {
            encode(value * self.scale, self.data_type, self.order, words);
        }
    }

    /// Reads the engineering value back (0 when outside the table).
    pub fn read(&self, tables: &Tables) -> f64 {
        let span = self.span();
        if let Some(bits) = tables.bits(self.table) {
            bits.get(span.start)
                .map_or(0.0, |&bit| f64::from(u8::from(bit)))
        } else if let Some(words) = tables.words(self.table).and_then(|w| w.get(span)) {
            decode(words, self.data_type, self.order) / self.scale
        } else {
            0.0
        }
    }
}

/// How a signal's value evolves.
#[derive(Debug, Clone)]
pub enum Wave {
    /// A fixed value, written once per tick (an operator write is overwritten).
    Constant { value: f64 },
    /// Sawtooth from `min` to `max` over `period_s`, then back to `min`.
    Ramp { min: f64, max: f64, period_s: f64 },
    /// `offset + amplitude * sin(2 pi t / period_s)`.
    Sine {
        offset: f64,
        amplitude: f64,
        period_s: f64,
    },
    /// Moves by at most `step` per tick, never leaving `min..=max`.
    RandomWalk {
        min: f64,
        max: f64,
        step: f64,
        value: f64,
        rng: SmallRng,
    },
    /// Grows by `rate` per second; integer counters wrap at their type's width (`modulus`),
    /// signed ones from the most positive to the most negative value.
    Counter {
        rate: f64,
        value: f64,
        modulus: Option<f64>,
        signed: bool,
    },
    /// True for the first `duty` fraction of every `period_s`.
    Square { period_s: f64, duty: f64 },
}

impl Wave {
    pub fn random_walk(min: f64, max: f64, step: f64, start: f64, seed: u64) -> Self {
        Wave::RandomWalk {
            min,
            max,
            step,
            value: start.clamp(min, max),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// A counter starting at `start`, wrapping like `data_type` does.
    pub fn counter(start: f64, rate: f64, data_type: DataType) -> Self {
        let modulus = data_type.wrap_modulus();
        Wave::Counter {
            rate,
            value: modulus.map_or(start, |m| start.rem_euclid(m)),
            modulus,
            signed: matches!(data_type, DataType::I16 | DataType::I32),
        }
    }

    /// The value at simulated time `t` (seconds), `dt` seconds after the previous sample.
    pub fn sample(&mut self, t: f64, dt: f64) -> f64 {
        match self {
            Wave::Constant { value } => *value,
            Wave::Ramp { min, max, period_s } => {
                *min + (*max - *min) * (t / *period_s).rem_euclid(1.0)
            }
            Wave::Sine {
                offset,
                amplitude,
                period_s,
            } => *offset + *amplitude * (std::f64::consts::TAU * t / *period_s).sin(),
            Wave::RandomWalk {
                min,
                max,
                step,
                value,
                rng,
            } => {
                if *step > 0.0 {
                    *value = (*value + rng.random_range(-*step..=*step)).clamp(*min, *max);
                }
                *value
            }
            Wave::Counter {
                rate,
                value,
                modulus,
                signed,
            } => {
                let sample = match modulus {
                    // Integer counters show whole counts, signed ones in two's complement.
                    Some(m) if *signed && *value >= *m / 2.0 => value.floor() - *m,
                    Some(_) => value.floor(),
                    None => *value,
                };
                *value += *rate * dt;
                if let Some(modulus) = modulus {
                    *value = value.rem_euclid(*modulus);
                }
                sample
            }
            Wave::Square { period_s, duty } => {
                f64::from(u8::from((t / *period_s).rem_euclid(1.0) < *duty))
            }
        }
    }
}

/// A named waveform bound to a point.
#[derive(Debug, Clone)]
pub struct Signal {
    pub name: String,
    pub point: Point,
    pub wave: Wave,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_and_square_repeat_with_their_period() {
        let mut ramp = Wave::Ramp {
            min: 10.0,
            max: 20.0,
            period_s: 10.0,
        };
        assert_eq!(ramp.sample(0.0, 1.0), 10.0);
        assert_eq!(ramp.sample(5.0, 1.0), 15.0);
        assert_eq!(ramp.sample(10.0, 1.0), 10.0);
        let mut square = Wave::Square {
            period_s: 4.0,
            duty: 0.25,
        };
        let bits: Vec<f64> = (0..8).map(|t| square.sample(f64::from(t), 1.0)).collect();
        assert_eq!(bits, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn sine_reaches_its_peaks() {
        let mut sine = Wave::Sine {
            offset: 5.0,
            amplitude: 2.0,
            period_s: 8.0,
        };
        assert!((sine.sample(2.0, 1.0) - 7.0).abs() < 1e-9);
        assert!((sine.sample(6.0, 1.0) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn random_walk_stays_in_bounds_and_moves_at_most_one_step() {
        let mut walk = Wave::random_walk(-1.0, 1.0, 0.3, 0.0, 7);
        let mut previous = 0.0;
        for tick in 0..10_000 {
            let value = walk.sample(f64::from(tick), 1.0);
            assert!((-1.0..=1.0).contains(&value));
            assert!((value - previous).abs() <= 0.3 + 1e-12);
            previous = value;
        }
        let again: Vec<f64> = {
            let mut walk = Wave::random_walk(-1.0, 1.0, 0.3, 0.0, 7);
            (0..5).map(|t| walk.sample(f64::from(t), 1.0)).collect()
        };
        let mut walk = Wave::random_walk(-1.0, 1.0, 0.3, 0.0, 7);
        let first: Vec<f64> = (0..5).map(|t| walk.sample(f64::from(t), 1.0)).collect();
        assert_eq!(first, again, "same seed, same walk");
    }

    #[test]
    fn counters_wrap_at_their_type_width() {
        let mut u16_counter = Wave::counter(65_534.0, 1.0, DataType::U16);
        let values: Vec<f64> = (0..4)
            .map(|t| u16_counter.sample(f64::from(t), 1.0))
            .collect();
        assert_eq!(values, [65_534.0, 65_535.0, 0.0, 1.0]);

        let mut u32_counter = Wave::counter(4_294_967_290.0, 4.0, DataType::U32);
        let values: Vec<f64> = (0..3)
            .map(|t| u32_counter.sample(f64::from(t), 1.0))
            .collect();
        assert_eq!(values, [4_294_967_290.0, 4_294_967_294.0, 2.0]);

        // Fractional rates accumulate and show whole counts.
        let mut slow = Wave::counter(0.0, 0.4, DataType::U16);
        let values: Vec<f64> = (0..4).map(|t| slow.sample(f64::from(t), 1.0)).collect();
        assert_eq!(values, [0.0, 0.0, 0.0, 1.0]);

        let mut i16_counter = Wave::counter(32_766.0, 1.0, DataType::I16);
        let values: Vec<f64> = (0..3)
            .map(|t| i16_counter.sample(f64::from(t), 1.0))
            .collect();
        assert_eq!(values, [32_766.0, 32_767.0, -32_768.0]);
    }

    #[test]
    fn points_write_and_read_scaled_typed_values() {
        let bank =
            crate::simulator::RegisterBank::new(crate::simulator::BankSizes::uniform(8)).unwrap();
        let mut tables = bank.write();
        let level_mm = Point {
            scale: 1000.0,
            ..Point::new(Table::InputRegisters, 2)
        };
        level_mm.write(&mut tables, 2.345);
        assert_eq!(tables.input_registers[2], 2345);
        assert!((level_mm.read(&tables) - 2.345).abs() < 1e-9);
        let flag = Point::new(Table::Coils, 7);
        flag.write(&mut tables, 1.0);
        assert!(tables.coils[7]);
        // Out of the table: skipped, not a panic.
        Point::typed(Table::HoldingRegisters, 7, DataType::F32, WordOrder::Abcd)
            .write(&mut tables, 1.0);
        assert_eq!(tables.holding_registers[7], 0);
    }
}
