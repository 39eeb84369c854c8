//! Typed values laid out in 16-bit registers.
//!
//! Convention: a multi-register value is big-endian by default (`abcd`: the most significant
//! byte first, the most significant register at the lowest address). The other orders name
//! where the bytes of the big-endian form `A B C D` (for 64-bit values `A..H`) end up:
//! - `abcd`: big-endian, high word first (Modbus's natural order);
//! - `cdab`: words swapped, bytes within each word big-endian ("word swap", low word first);
//! - `badc`: bytes swapped within each word, high word first ("byte swap");
//! - `dcba`: fully little-endian.
//!
//! For 64-bit values `cdab` reverses all four words and `badc`/`dcba` follow the same rule.

use serde::Deserialize;

/// How a value is stored in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// A coil or discrete input; in a register table, 0 or 1.
    Bool,
    U16,
    I16,
    U32,
    I32,
    F32,
    F64,
}

impl DataType {
    /// Registers (16-bit words) one value occupies.
    pub fn word_count(self) -> usize {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::F64 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
        }
    }

    /// The modulus integer values wrap at, for counters.
    pub fn wrap_modulus(self) -> Option<f64> {
        match self {
            DataType::U16 | DataType::I16 => Some(65_536.0),
            DataType::U32 | DataType::I32 => Some(4_294_967_296.0),
            DataType::Bool | DataType::F32 | DataType::F64 => None,
        }
    }
}

/// Byte and word order of multi-register values; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordOrder {
    #[default]
    Abcd,
    Cdab,
    Badc,
    Dcba,
}

/// Encodes `value` as `data_type` into `out` (exactly `data_type.word_count()` words).
///
/// Integers are rounded and saturate at the type's bounds; counters wrap before calling this.
pub fn encode(value: f64, data_type: DataType, order: WordOrder, out: &mut [u16]) {
    let mut bytes = [0u8; 8];
    let len = match data_type {
        DataType::Bool => {
            bytes[..2].copy_from_slice(&u16::from(value != 0.0).to_be_bytes());
            2
        }
        DataType::U16 => {
            bytes[..2].copy_from_slice(&(value.round() as u16).to_be_bytes());
            2
        }
        DataType::I16 => {
            bytes[..2].copy_from_slice(&(value.round() as i16).to_be_bytes());
            2
        }
        DataType::U32 => {
            bytes[..4].copy_from_slice(&(value.round() as u32).to_be_bytes());
            4
        }
        DataType::I32 => {
            bytes[..4].copy_from_slice(&(value.round() as i32).to_be_bytes());
            4
        }
        DataType::F32 => {
            bytes[..4].copy_from_slice(&(value as f32).to_be_bytes());
            4
        }
        DataType::F64 => {
            bytes.copy_from_slice(&value.to_be_bytes());
            8
        }
    };
    let words = len / 2;
    for (i, slot) in out.iter_mut().take(words).enumerate() {
        let source = match order {
            WordOrder::Abcd | WordOrder::Badc => i,
            WordOrder::Cdab | WordOrder::Dcba => words - 1 - i,
        };
        let word = u16::from_be_bytes([bytes[2 * source], bytes[2 * source + 1]]);
        *slot = match order {
            WordOrder::Abcd | WordOrder::Cdab => word,
            WordOrder::Badc | WordOrder::Dcba => word.swap_bytes(),
        };
    }
}

/// Decodes `words` (at least `data_type.word_count()`) written by [`encode`].
pub fn decode(words: &[u16], data_type: DataType, order: WordOrder) -> f64 {
    let count = data_type.word_count();
    let mut bytes = [0u8; 8];
    for (i, &stored) in words.iter().take(count).enumerate() {
        let target = match order {
            WordOrder::Abcd | WordOrder::Badc => i,
            WordOrder::Cdab | WordOrder::Dcba => count - 1 - i,
        };
        let word = match order {
            WordOrder::Abcd | WordOrder::Cdab => stored,
            WordOrder::Badc | WordOrder::Dcba => stored.swap_bytes(),
        };
        bytes[2 * target..2 * target + 2].copy_from_slice(&word.to_be_bytes());
    }
    match data_type {
        DataType::Bool => f64::from(u8::from(u16::from_be_bytes([bytes[0], bytes[1]]) != 0)),
        DataType::U16 => f64::from(u16::from_be_bytes([bytes[0], bytes[1]])),
        DataType::I16 => f64::from(i16::from_be_bytes([bytes[0], bytes[1]])),
        DataType::U32 => f64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        DataType::I32 => f64::from(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        DataType::F32 => f64::from(f32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        DataType::F64 => f64::from_be_bytes(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_orders_place_bytes_as_named() {
        // 1.0f32 = 0x3F80_0000: A=3F B=80 C=00 D=00.
        let mut out = [0u16; 2];
        encode(1.0, DataType::F32, WordOrder::Abcd, &mut out);
        assert_eq!(out, [0x3F80, 0x0000]);
        encode(1.0, DataType::F32, WordOrder::Cdab, &mut out);
        assert_eq!(out, [0x0000, 0x3F80]);
        encode(1.0, DataType::F32, WordOrder::Badc, &mut out);
        assert_eq!(out, [0x803F, 0x0000]);
        encode(1.0, DataType::F32, WordOrder::Dcba, &mut out);
        assert_eq!(out, [0x0000, 0x803F]);
    }

    #[test]
    fn u32_and_f64_word_orders() {
        let mut out = [0u16; 2];
        encode(
            f64::from(0x1234_5678u32),
            DataType::U32,
            WordOrder::Cdab,
            &mut out,
        );
        assert_eq!(out, [0x5678, 0x1234]);
        let mut out = [0u16; 4];
        let value = f64::from_bits(0x0102_0304_0506_0708);
        encode(value, DataType::F64, WordOrder::Abcd, &mut out);
        assert_eq!(out, [0x0102, 0x0304, 0x0506, 0x0708]);
        encode(value, DataType::F64, WordOrder::Cdab, &mut out);
        assert_eq!(out, [0x0708, 0x0506, 0x0304, 0x0102]);
        encode(value, DataType::F64, WordOrder::Dcba, &mut out);
        assert_eq!(out, [0x0807, 0x0605, 0x0403, 0x0201]);
    }

    #[test]
    fn decode_inverts_encode_for_every_type_and_order() {
        let cases = [
            (DataType::Bool, 1.0),
            (DataType::U16, 65_535.0),
            (DataType::I16, -1234.0),
            (DataType::U32, 4_000_000_000.0),
            (DataType::I32, -2_000_000_000.0),
            (DataType::F32, -3.5),
            (DataType::F64, 123_456.789_012_345),
        ];
        for (data_type, value) in cases {
            for order in [
                WordOrder::Abcd,
                WordOrder::Cdab,
                WordOrder::Badc,
                WordOrder::Dcba,
            ] {
                let mut out = [0u16; 4];
                encode(value, data_type, order, &mut out);
                assert_eq!(
                    decode(&out, data_type, order),
                    value,
                    "{data_type:?} {order:?}"
                );
            }
        }
    }

    #[test]
    fn integers_saturate_and_round() {
        let mut out = [0u16; 1];
        encode(70_000.0, DataType::U16, WordOrder::Abcd, &mut out);
        assert_eq!(out, [u16::MAX]);
        encode(-40_000.0, DataType::I16, WordOrder::Abcd, &mut out);
        assert_eq!(out, [i16::MIN as u16]);
        encode(2.6, DataType::U16, WordOrder::Abcd, &mut out);
        assert_eq!(out, [3]);
    }
}
