//! Typed values and how they sit in 16-bit Modbus registers: data types, byte and word
//! orders, decoding straight from a register slice and encoding back for writes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A tag value as the engine delivers and accepts it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    String(String),
}

impl Value {
    /// The value as a float, for scaling and deadbands; `None` for strings.
    pub fn as_f64(&self) -> Option<f64> {
        Some(match *self {
            Value::Bool(b) => f64::from(u8::from(b)),
            Value::I16(v) => f64::from(v),
            Value::U16(v) => f64::from(v),
            Value::I32(v) => f64::from(v),
            Value::U32(v) => f64::from(v),
            Value::I64(v) => v as f64,
            Value::U64(v) => v as f64,
            Value::F32(v) => f64::from(v),
            Value::F64(v) => v,
            Value::String(_) => return None,
        })
    }

    /// The zero of a data type: the value a tag holds before its first good read.
    pub fn zero(data_type: DataType) -> Value {
        match data_type {
            DataType::Bool => Value::Bool(false),
            DataType::I16 => Value::I16(0),
            DataType::U16 => Value::U16(0),
            DataType::I32 => Value::I32(0),
            DataType::U32 => Value::U32(0),
            DataType::I64 => Value::I64(0),
            DataType::U64 => Value::U64(0),
            DataType::F32 => Value::F32(0.0),
            DataType::F64 => Value::F64(0.0),
            DataType::String => Value::String(String::new()),
        }
    }

    /// Name of the variant, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "bool",
            Value::I16(_) => "i16",
            Value::U16(_) => "u16",
            Value::I32(_) => "i32",
            Value::U32(_) => "u32",
            Value::I64(_) => "i64",
            Value::U64(_) => "u64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::String(_) => "string",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(v) => v.fmt(f),
            Value::I16(v) => v.fmt(f),
            Value::U16(v) => v.fmt(f),
            Value::I32(v) => v.fmt(f),
            Value::U32(v) => v.fmt(f),
            Value::I64(v) => v.fmt(f),
            Value::U64(v) => v.fmt(f),
            Value::F32(v) => v.fmt(f),
            Value::F64(v) => v.fmt(f),
            Value::String(v) => v.fmt(f),
        }
    }
}

/// The data type of a tag as stored in the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    Bool,
    I16,
    #[default]
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    String,
}

impl DataType {
    /// Registers taken by one value; `None` for strings, whose length is configured.
    pub fn registers(self) -> Option<u16> {
        match self {
            DataType::Bool | DataType::I16 | DataType::U16 => Some(1),
            DataType::I32 | DataType::U32 | DataType::F32 => Some(2),
            DataType::I64 | DataType::U64 | DataType::F64 => Some(4),
            DataType::String => None,
        }
    }

    pub fn name(self) -> &'static str {
        Value::zero(self).type_name()
    }

    fn is_integer(self) -> bool {
        matches!(
            self,
            DataType::I16
                | DataType::U16
                | DataType::I32
                | DataType::U32
                | DataType::I64
                | DataType::U64
        )
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "bool" => DataType::Bool,
            "i16" => DataType::I16,
            "u16" => DataType::U16,
            "i32" => DataType::I32,
            "u32" => DataType::U32,
            "i64" => DataType::I64,
            "u64" => DataType::U64,
            "f32" => DataType::F32,
            "f64" => DataType::F64,
            "string" => DataType::String,
            other => {
                return Err(format!(
                    "unknown data type `{other}` (expected bool, i16, u16, i32, u32, i64, u64, f32, f64 or string)"
                ));
            }
        })
    }
}

/// Byte and word order of a multi-register value, named by where the bytes of the
/// big-endian value `A B C D (E F G H)` land on the wire.
///
/// Two independent swaps cover every order devices use:
/// - `ABCD` / `ABCDEFGH`: registers most significant first, bytes big-endian (Modbus standard);
/// - `BADC` / `BADCFEHG`: bytes swapped inside each register;
/// - `CDAB` / `GHEFCDAB`: registers least significant first ("word swap");
/// - `DCBA` / `HGFEDCBA`: both, i.e. fully little-endian.
///
/// For 16-bit values `AB` and `BA` name the byte swap; for strings `BADC` swaps the two
/// characters of each register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ByteOrder {
    pub swap_bytes: bool,
    pub swap_words: bool,
}

impl ByteOrder {
    pub const ABCD: ByteOrder = ByteOrder {
        swap_bytes: false,
        swap_words: false,
    };
    pub const BADC: ByteOrder = ByteOrder {
        swap_bytes: true,
        swap_words: false,
    };
    pub const CDAB: ByteOrder = ByteOrder {
        swap_bytes: false,
        swap_words: true,
    };
    pub const DCBA: ByteOrder = ByteOrder {
        swap_bytes: true,
        swap_words: true,
    };
    /// The four orders, for tests and tools that enumerate them.
    pub const ALL: [ByteOrder; 4] = [Self::ABCD, Self::BADC, Self::CDAB, Self::DCBA];

    /// The conventional name of this order for a value of `registers` registers.
    pub fn name(self, registers: u16) -> &'static str {
        match (registers, self.swap_bytes, self.swap_words) {
            (1, false, _) => "AB",
            (1, true, _) => "BA",
            (4, false, false) => "ABCDEFGH",
            (4, true, false) => "BADCFEHG",
            (4, false, true) => "GHEFCDAB",
            (4, true, true) => "HGFEDCBA",
            (_, false, false) => "ABCD",
            (_, true, false) => "BADC",
            (_, false, true) => "CDAB",
            (_, true, true) => "DCBA",
        }
    }
}

impl fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name(2))
    }
}

impl FromStr for ByteOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "ABCD" | "ABCDEFGH" | "AB" | "BIG" => Self::ABCD,
            "BADC" | "BADCFEHG" | "BA" => Self::BADC,
            "CDAB" | "GHEFCDAB" => Self::CDAB,
            "DCBA" | "HGFEDCBA" | "LITTLE" => Self::DCBA,
            other => {
                return Err(format!(
                    "unknown byte order `{other}` (expected ABCD, BADC, CDAB, DCBA or the 64-bit ABCDEFGH, BADCFEHG, GHEFCDAB, HGFEDCBA)"
                ));
            }
        })
    }
}

impl Serialize for ByteOrder {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name(2))
    }
}

impl<'de> Deserialize<'de> for ByteOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why registers could not become a value, or a value could not become registers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    #[error("{data_type} needs {expected} registers, got {got}")]
    Length {
        data_type: DataType,
        expected: usize,
        got: usize,
    },
    #[error("a {value} value does not fit a {data_type} tag")]
    Type {
        value: &'static str,
        data_type: DataType,
    },
    #[error("{value} is outside the range of {data_type}")]
    Range { value: String, data_type: DataType },
    #[error("string of {len} bytes does not fit {registers} registers")]
    StringLength { len: usize, registers: usize },
}

/// Assembles up to four registers into an integer, most significant register first
/// once `order` is undone.
fn gather(order: ByteOrder, regs: &[u16]) -> u64 {
    let n = regs.len();
    let mut acc = 0u64;
    for i in 0..n {
        let w = if order.swap_words {
            regs[n - 1 - i]
        } else {
            regs[i]
        };
        let w = if order.swap_bytes { w.swap_bytes() } else { w };
        acc = (acc << 16) | u64::from(w);
    }
    acc
}

/// Inverse of [`gather`]: spreads the low `out.len()` registers of `raw` in `order`.
fn scatter(order: ByteOrder, raw: u64, out: &mut [u16]) {
    let n = out.len();
    for i in 0..n {
        let shift = 16 * (n - 1 - i);
        let w = (raw >> shift) as u16;
        let w = if order.swap_bytes { w.swap_bytes() } else { w };
        let pos = if order.swap_words { n - 1 - i } else { i };
        out[pos] = w;
    }
}

/// Decodes a value of `data_type` from exactly its registers.
///
/// `regs` must hold exactly the value's registers (a string's configured length).
/// Bools from registers are handled by the caller (a bit of a register).
pub fn decode(data_type: DataType, order: ByteOrder, regs: &[u16]) -> Result<Value, CodecError> {
    if let Some(expected) = data_type.registers() {
        let expected = usize::from(expected);
        if regs.len() != expected {
            return Err(CodecError::Length {
                data_type,
                expected,
                got: regs.len(),
            });
        }
    }
    let raw = if data_type == DataType::String {
        0
    } else {
        gather(order, regs)
    };
    Ok(match data_type {
        DataType::Bool => Value::Bool(raw != 0),
        DataType::I16 => Value::I16(raw as u16 as i16),
        DataType::U16 => Value::U16(raw as u16),
        DataType::I32 => Value::I32(raw as u32 as i32),
        DataType::U32 => Value::U32(raw as u32),
        DataType::I64 => Value::I64(raw as i64),
        DataType::U64 => Value::U64(raw),
        DataType::F32 => Value::F32(f32::from_bits(raw as u32)),
        DataType::F64 => Value::F64(f64::from_bits(raw)),
        DataType::String => Value::String(decode_string(order, regs)),
    })
}

/// Two characters per register, first character in the high byte unless `swap_bytes`;
/// the string ends at the first NUL and trailing spaces are trimmed.
fn decode_string(order: ByteOrder, regs: &[u16]) -> String {
    let mut s = String::with_capacity(regs.len() * 2);
    'outer: for &w in regs {
        let [a, b] = if order.swap_bytes {
            w.to_le_bytes()
        } else {
            w.to_be_bytes()
        };
        for byte in [a, b] {
            if byte == 0 {
                break 'outer;
            }
            // Latin-1 maps one byte to one char, so no byte is ever rejected.
            s.push(char::from(byte));
        }
    }
    let trimmed = s.trim_end_matches(' ').len();
    s.truncate(trimmed);
    s
}

/// Encodes `value` (already of `data_type`) into `out`, which is cleared first.
/// A string is padded with NULs to `string_registers`.
pub fn encode(
    data_type: DataType,
    order: ByteOrder,
    value: &Value,
    string_registers: u16,
    out: &mut Vec<u16>,
) -> Result<(), CodecError> {
    out.clear();
    let raw: u64 = match (data_type, value) {
        (DataType::Bool, Value::Bool(b)) => u64::from(*b),
        (DataType::I16, Value::I16(v)) => u64::from(*v as u16),
        (DataType::U16, Value::U16(v)) => u64::from(*v),
        (DataType::I32, Value::I32(v)) => u64::from(*v as u32),
        (DataType::U32, Value::U32(v)) => u64::from(*v),
        (DataType::I64, Value::I64(v)) => *v as u64,
        (DataType::U64, Value::U64(v)) => *v,
        (DataType::F32, Value::F32(v)) => u64::from(v.to_bits()),
        (DataType::F64, Value::F64(v)) => v.to_bits(),
        (DataType::String, Value::String(s)) => {
            let registers = usize::from(string_registers);
            let bytes = s.as_bytes();
            if bytes.len() > registers * 2 || !s.is_ascii() {
                return Err(CodecError::StringLength {
                    len: bytes.len(),
                    registers,
                });
            }
            for i in 0..registers {
                let a = bytes.get(2 * i).copied().unwrap_or(0);
                let b = bytes.get(2 * i + 1).copied().unwrap_or(0);
                out.push(if order.swap_bytes {
                    u16::from_le_bytes([a, b])
                } else {
                    u16::from_be_bytes([a, b])
                });
            }
            return Ok(());
        }
        (data_type, value) => {
            return Err(CodecError::Type {
                value: value.type_name(),
                data_type,
            });
        }
    };
    let n = usize::from(data_type.registers().unwrap_or(1));
    out.resize(n, 0);
    scatter(order, raw, out);
    Ok(())
}

/// Converts a number of any variant into `data_type` when it is representable exactly
/// (integers) or closely (floats); a bool only becomes a bool.
pub fn coerce(value: &Value, data_type: DataType) -> Result<Value, CodecError> {
    let type_error = || CodecError::Type {
        value: value.type_name(),
        data_type,
    };
    if data_type == DataType::String {
        return match value {
            Value::String(_) => Ok(value.clone()),
            _ => Err(type_error()),
        };
    }
    if data_type == DataType::Bool {
        return match value {
            Value::Bool(_) => Ok(value.clone()),
            _ => Err(type_error()),
        };
    }
    let f = match value {
        Value::String(_) | Value::Bool(_) => return Err(type_error()),
        v => v.as_f64().ok_or_else(type_error)?,
    };
    if data_type.is_integer() {
        // Exact integer paths keep 64-bit precision that f64 would lose.
        let int: Option<i128> = match *value {
            Value::I16(v) => Some(i128::from(v)),
            Value::U16(v) => Some(i128::from(v)),
            Value::I32(v) => Some(i128::from(v)),
            Value::U32(v) => Some(i128::from(v)),
            Value::I64(v) => Some(i128::from(v)),
            Value::U64(v) => Some(i128::from(v)),
            _ if f.is_finite() && f.fract() == 0.0 => Some(f as i128),
            _ => None,
        };
        let range = || CodecError::Range {
            value: value.to_string(),
            data_type,
        };
        let int = int.ok_or_else(range)?;
        return Ok(match data_type {
            DataType::I16 => Value::I16(i16::try_from(int).map_err(|_| range())?),
            DataType::U16 => Value::U16(u16::try_from(int).map_err(|_| range())?),
            DataType::I32 => Value::I32(i32::try_from(int).map_err(|_| range())?),
            DataType::U32 => Value::U32(u32::try_from(int).map_err(|_| range())?),
            DataType::I64 => Value::I64(i64::try_from(int).map_err(|_| range())?),
            _ => Value::U64(u64::try_from(int).map_err(|_| range())?),
        });
    }
    match data_type {
        DataType::F32 => {
            if f.is_finite() && f.abs() > f64::from(f32::MAX) {
                return Err(CodecError::Range {
                    value: value.to_string(),
                    data_type,
                });
            }
            Ok(Value::F32(f as f32))
        }
        _ => Ok(Value::F64(f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_of_32_bit_value_match_their_names() {
        // 0x11223344: A=11 B=22 C=33 D=44.
        let cases = [
            ("ABCD", [0x1122, 0x3344]),
            ("BADC", [0x2211, 0x4433]),
            ("CDAB", [0x3344, 0x1122]),
            ("DCBA", [0x4433, 0x2211]),
        ];
        for (name, regs) in cases {
            let order: ByteOrder = name.parse().unwrap();
            assert_eq!(
                decode(DataType::U32, order, &regs).unwrap(),
                Value::U32(0x1122_3344),
                "{name}"
            );
            let mut out = Vec::new();
            encode(DataType::U32, order, &Value::U32(0x1122_3344), 0, &mut out).unwrap();
            assert_eq!(out, regs, "{name}");
            assert_eq!(order.name(2), name);
        }
    }

    #[test]
    fn orders_of_64_bit_value_match_their_names() {
        let v = 0x1122_3344_5566_7788u64;
        let cases = [
            ("ABCDEFGH", [0x1122, 0x3344, 0x5566, 0x7788]),
            ("BADCFEHG", [0x2211, 0x4433, 0x6655, 0x8877]),
            ("GHEFCDAB", [0x7788, 0x5566, 0x3344, 0x1122]),
            ("HGFEDCBA", [0x8877, 0x6655, 0x4433, 0x2211]),
        ];
        for (name, regs) in cases {
            let order: ByteOrder = name.parse().unwrap();
            assert_eq!(
                decode(DataType::U64, order, &regs).unwrap(),
                Value::U64(v),
                "{name}"
            );
            let mut out = Vec::new();
            encode(DataType::U64, order, &Value::U64(v), 0, &mut out).unwrap();
            assert_eq!(out, regs, "{name}");
            assert_eq!(order.name(4), name);
        }
    }

    #[test]
    fn floats_and_signed_round_trip_in_every_order() {
        let values = [
            (DataType::I16, Value::I16(-1234)),
            (DataType::U16, Value::U16(65000)),
            (DataType::I32, Value::I32(-123_456_789)),
            (DataType::U32, Value::U32(4_000_000_000)),
            (DataType::I64, Value::I64(-9_000_000_000_000)),
            (DataType::U64, Value::U64(u64::MAX - 5)),
            (DataType::F32, Value::F32(-273.15)),
            (DataType::F64, Value::F64(std::f64::consts::PI)),
            (DataType::String, Value::String("PUMP-7".into())),
        ];
        for order in ByteOrder::ALL {
            for (ty, v) in &values {
                let mut out = Vec::new();
                encode(*ty, order, v, 4, &mut out).unwrap();
                assert_eq!(&decode(*ty, order, &out).unwrap(), v, "{ty} {order}");
            }
        }
    }

    #[test]
    fn f32_abcd_is_ieee_big_endian() {
        // 1.0f32 = 0x3F800000.
        assert_eq!(
            decode(DataType::F32, ByteOrder::ABCD, &[0x3F80, 0]).unwrap(),
            Value::F32(1.0)
        );
        assert_eq!(
            decode(DataType::F32, ByteOrder::CDAB, &[0, 0x3F80]).unwrap(),
            Value::F32(1.0)
        );
    }

    #[test]
    fn strings_stop_at_nul_and_trim_spaces() {
        let regs = [u16::from_be_bytes(*b"AB"), u16::from_be_bytes(*b"C "), 0];
        assert_eq!(
            decode(DataType::String, ByteOrder::ABCD, &regs).unwrap(),
            Value::String("ABC".into())
        );
        let swapped = [u16::from_be_bytes(*b"BA"), u16::from_be_bytes(*b"\0C")];
        assert_eq!(
            decode(DataType::String, ByteOrder::BADC, &swapped).unwrap(),
            Value::String("ABC".into())
        );
        let mut out = Vec::new();
        let err = encode(
            DataType::String,
            ByteOrder::ABCD,
            &Value::String("TOO LONG".into()),
            2,
            &mut out,
        );
        assert!(matches!(err, Err(CodecError::StringLength { .. })));
    }

    #[test]
    fn wrong_length_is_an_error_not_a_panic() {
        assert!(matches!(
            decode(DataType::F64, ByteOrder::ABCD, &[1, 2]),
            Err(CodecError::Length { expected: 4, .. })
        ));
    }

    #[test]
    fn coerce_checks_ranges() {
        assert_eq!(
            coerce(&Value::I64(300), DataType::U16).unwrap(),
            Value::U16(300)
        );
        assert!(coerce(&Value::I64(70000), DataType::U16).is_err());
        assert!(coerce(&Value::I16(-1), DataType::U32).is_err());
        assert!(coerce(&Value::F64(1.5), DataType::I32).is_err());
        assert_eq!(
            coerce(&Value::F64(2.0), DataType::I32).unwrap(),
            Value::I32(2)
        );
        assert_eq!(
            coerce(&Value::U64(u64::MAX), DataType::U64).unwrap(),
            Value::U64(u64::MAX)
        );
        assert!(coerce(&Value::Bool(true), DataType::F32).is_err());
        assert!(coerce(&Value::F64(1e300), DataType::F32).is_err());
    }
}
