//! A tag: one value in one device, where it lives (table and address), how it is encoded,
//! scaled to engineering units, filtered by deadband, and whether it may be written.
//!
//! # Addressing convention
//!
//! Inside the engine an address is the **0-based protocol address** within its table, exactly
//! what goes on the wire: holding register 0 is the first holding register. The common
//! 1-based notation of device manuals is accepted when no table is given:
//!
//! | notation          | table            | protocol address |
//! |-------------------|------------------|------------------|
//! | `00001`–`09999`   | coil             | 0–9998           |
//! | `10001`–`19999`   | discrete input   | 0–9998           |
//! | `30001`–`39999`   | input register   | 0–9998           |
//! | `40001`–`49999`   | holding register | 0–9998           |
//! | `000001`–`465536` | six-digit forms  | 0–65535          |
//!
//! So `address = "40001"` and `table = "holding", address = 0` name the same register.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::value::{self, ByteOrder, CodecError, DataType, Value};

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    #[serde(alias = "coils")]
    Coil,
    #[serde(alias = "discrete_inputs", alias = "discrete")]
    DiscreteInput,
    #[serde(alias = "input_registers", alias = "input")]
    InputRegister,
    #[serde(alias = "holding_registers", alias = "holding")]
    HoldingRegister,
}

impl Table {
    /// Coils and discrete inputs hold bits; the two register tables hold 16-bit words.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// Only coils and holding registers can be written.
    pub fn is_writable(self) -> bool {
        matches!(self, Table::Coil | Table::HoldingRegister)
    }

    /// The read function code for this table (01, 02, 04, 03).
    pub fn read_function(self) -> u8 {
        match self {
            Table::Coil => 1,
            Table::DiscreteInput => 2,
            Table::InputRegister => 4,
            Table::HoldingRegister => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::DiscreteInput => "discrete_input",
            Table::InputRegister => "input_register",
            Table::HoldingRegister => "holding_register",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses the 1-based notation (`40001`, `400001`, `30010`...) into table and 0-based address.
pub fn parse_notation(s: &str) -> Result<(Table, u16), String> {
    let s = s.trim();
    if !(s.len() == 5 || s.len() == 6) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{s}` is not Modbus notation (5 or 6 digits such as 40001 or 400001); give `table` for a 0-based address"
        ));
    }
    let table = match s.as_bytes()[0] {
        b'0' => Table::Coil,
        b'1' => Table::DiscreteInput,
        b'3' => Table::InputRegister,
        b'4' => Table::HoldingRegister,
        _ => return Err(format!("`{s}`: the first digit must be 0, 1, 3 or 4")),
    };
    let number: u32 = s[1..]
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    let max = if s.len() == 5 { 9999 } else { 65536 };
    if number == 0 || number > max {
        return Err(format!("`{s}`: the register number must be 1..={max}"));
    }
    // In range 1..=65536 by the check above, so the 0-based address fits u16.
    Ok((table, (number - 1) as u16))
}

/// Whether a tag accepts writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    #[default]
    #[serde(alias = "ro", alias = "read_only")]
    Read,
    #[serde(alias = "rw")]
    ReadWrite,
}

/// Linear scaling from the raw device value to engineering units: `eng = raw * gain + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    pub gain: f64,
    pub offset: f64,
}

impl Scaling {
    /// The scaling that maps `raw_min..raw_max` onto `eng_min..eng_max`.
    pub fn from_ranges(raw: (f64, f64), eng: (f64, f64)) -> Scaling {
        let gain = (eng.1 - eng.0) / (raw.1 - raw.0);
        Scaling {
            gain,
            offset: eng.0 - raw.0 * gain,
        }
    }

    pub fn to_engineering(self, raw: f64) -> f64 {
        raw * self.gain + self.offset
    }

    pub fn to_raw(self, eng: f64) -> f64 {
        (eng - self.offset) / self.gain
    }
}

/// Report-by-exception filter: a new value is reported only when it moved by more than this.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Deadband {
    /// Every change is reported.
    #[default]
    None,
    /// In engineering units.
    Absolute(f64),
    /// In percent of the engineering range (`eng_max - eng_min`).
    Percent(f64),
}

/// Identifies a tag in an acquisition: its index in [`Site::tags`](super::config::Site).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagId(pub u32);

impl TagId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A validated tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub name: String,
    /// Index of the device in the site.
    pub device: usize,
    /// Index of the scan class in the site.
    pub scan_class: usize,
    pub table: Table,
    /// 0-based protocol address of the first register or bit.
    pub address: u16,
    /// For a bool held in a register: the bit, 0 = least significant.
    pub bit: Option<u8>,
    pub data_type: DataType,
    /// Registers (or bits) the tag spans.
    pub span: u16,
    pub order: ByteOrder,
    pub scaling: Option<Scaling>,
    /// Engineering limits: writes outside are refused; base of a percent deadband.
    pub eng_range: Option<(f64, f64)>,
    pub units: Option<String>,
    pub deadband: Deadband,
    pub access: Access,
    pub description: Option<String>,
}

/// Why a write was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteRefusal {
    #[error("tag is read-only")]
    ReadOnly,
    #[error("{value} is outside the engineering range {min}..={max}")]
    OutOfRange { value: f64, min: f64, max: f64 },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl Tag {
    /// Last address covered by the tag, inclusive.
    pub fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.span) - 1
    }

    /// The type of the values this tag delivers (a birth's metric type): `f64` when scaled,
    /// otherwise its data type.
    pub fn value_type(&self) -> DataType {
        if self.scaling.is_some() {
            DataType::F64
        } else {
            self.data_type
        }
    }

    /// The value a tag reports before its first good read.
    pub fn zero(&self) -> Value {
        if self.scaling.is_some() {
            Value::F64(0.0)
        } else {
            Value::zero(self.data_type)
        }
    }

    /// Decodes the tag from exactly its registers and applies scaling (a scaled tag is F64).
    pub fn decode_registers(&self, regs: &[u16]) -> Result<Value, CodecError> {
        if let Some(bit) = self.bit {
            let word = regs.first().ok_or(CodecError::Length {
                data_type: self.data_type,
                expected: 1,
                got: 0,
            })?;
            return Ok(Value::Bool((word >> bit) & 1 == 1));
        }
        let raw = value::decode(self.data_type, self.order, regs)?;
        Ok(self.scale(raw))
    }

    fn scale(&self, raw: Value) -> Value {
        match (self.scaling, raw.as_f64()) {
            (Some(s), Some(f)) => Value::F64(s.to_engineering(f)),
            _ => raw,
        }
    }

    /// Converts an engineering value written by a user into the raw value to encode:
    /// refuses read-only tags and values out of range, undoes scaling, checks the raw type.
    pub fn raw_for_write(&self, value: &Value) -> Result<Value, WriteRefusal> {
        if self.access != Access::ReadWrite {
            return Err(WriteRefusal::ReadOnly);
        }
        if let (Some((min, max)), Some(f)) = (self.eng_range, value.as_f64())
            && !(min..=max).contains(&f)
        {
            return Err(WriteRefusal::OutOfRange { value: f, min, max });
        }
        let raw_type = if self.bit.is_some() {
            DataType::Bool
        } else {
            self.data_type
        };
        let raw = match (self.scaling, value.as_f64(), value) {
            (Some(s), Some(f), v) if !matches!(v, Value::Bool(_)) => {
                let r = s.to_raw(f);
                let r = if matches!(raw_type, DataType::F32 | DataType::F64) {
                    r
                } else {
                    r.round()
                };
                Value::F64(r)
            }
            _ => value.clone(),
        };
        Ok(value::coerce(&raw, raw_type)?)
    }

    /// Whether `new` differs from the last reported `last` by more than the deadband.
    pub fn exceeds_deadband(&self, last: &Value, new: &Value) -> bool {
        let threshold = match (self.deadband, self.eng_range) {
            (Deadband::None, _) => return last != new,
            (Deadband::Absolute(d), _) => d,
            (Deadband::Percent(p), Some((min, max))) => (max - min).abs() * p / 100.0,
            (Deadband::Percent(_), None) => return last != new,
        };
        match (last.as_f64(), new.as_f64()) {
            (Some(a), Some(b)) if a.is_finite() && b.is_finite() => (b - a).abs() > threshold,
            _ => last != new,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(data_type: DataType) -> Tag {
        Tag {
            name: "t".into(),
            device: 0,
            scan_class: 0,
            table: Table::HoldingRegister,
            address: 0,
            bit: None,
            data_type,
            span: data_type.registers().unwrap_or(1),
            order: ByteOrder::ABCD,
            scaling: None,
            eng_range: None,
            units: None,
            deadband: Deadband::None,
            access: Access::ReadWrite,
            description: None,
        }
    }

    #[test]
    fn notation_maps_to_zero_based_addresses() {
        assert_eq!(parse_notation("40001"), Ok((Table::HoldingRegister, 0)));
        assert_eq!(parse_notation("400001"), Ok((Table::HoldingRegister, 0)));
        assert_eq!(
            parse_notation("465536"),
            Ok((Table::HoldingRegister, 65535))
        );
        assert_eq!(parse_notation("30010"), Ok((Table::InputRegister, 9)));
        assert_eq!(parse_notation("10001"), Ok((Table::DiscreteInput, 0)));
        assert_eq!(parse_notation("00005"), Ok((Table::Coil, 4)));
        assert!(parse_notation("40000").is_err());
        assert!(parse_notation("20001").is_err());
        assert!(parse_notation("465537").is_err());
        assert!(parse_notation("12").is_err());
    }

    #[test]
    fn range_scaling_round_trips_and_checks_limits() {
        let mut t = tag(DataType::U16);
        t.scaling = Some(Scaling::from_ranges((0.0, 4000.0), (0.0, 100.0)));
        t.eng_range = Some((0.0, 100.0));
        assert_eq!(t.value_type(), DataType::F64);
        assert_eq!(t.decode_registers(&[2000]).unwrap(), Value::F64(50.0));
        assert_eq!(
            t.raw_for_write(&Value::F64(25.0)).unwrap(),
            Value::U16(1000)
        );
        assert!(matches!(
            t.raw_for_write(&Value::F64(101.0)),
            Err(WriteRefusal::OutOfRange { .. })
        ));
        t.access = Access::Read;
        assert_eq!(
            t.raw_for_write(&Value::F64(1.0)),
            Err(WriteRefusal::ReadOnly)
        );
    }

    #[test]
    fn bit_of_register_decodes_one_bit() {
        let mut t = tag(DataType::Bool);
        t.bit = Some(3);
        assert_eq!(t.decode_registers(&[0b1000]).unwrap(), Value::Bool(true));
        assert_eq!(t.decode_registers(&[0b0111]).unwrap(), Value::Bool(false));
    }

    #[test]
    fn deadbands_filter_small_moves() {
        let mut t = tag(DataType::F32);
        t.deadband = Deadband::Absolute(0.5);
        assert!(!t.exceeds_deadband(&Value::F32(10.0), &Value::F32(10.4)));
        assert!(t.exceeds_deadband(&Value::F32(10.0), &Value::F32(10.6)));
        t.deadband = Deadband::Percent(1.0);
        t.eng_range = Some((0.0, 200.0));
        assert!(!t.exceeds_deadband(&Value::F32(10.0), &Value::F32(11.9)));
        assert!(t.exceeds_deadband(&Value::F32(10.0), &Value::F32(12.1)));
        t.deadband = Deadband::None;
        assert!(t.exceeds_deadband(&Value::F32(10.0), &Value::F32(10.001)));
    }
}
