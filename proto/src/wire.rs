//! Protobuf wire format primitives: varints, keys, length-delimited fields.
//! Reading never panics and never reads past the slice.

pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
pub(crate) const FIXED32: u8 = 5;

/// What can go wrong at the wire level. Kept to two bytes so reader results
/// travel in registers on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    Truncated,
    VarintOverflow,
    InvalidTag,
    InvalidWireType(u8),
}

/// A cursor over one protobuf message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    #[inline]
    pub(crate) fn has_more(&self) -> bool {
        self.pos < self.buf.len()
    }

    #[inline(always)]
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_multi_byte(),
        }
    }

    fn varint_multi_byte(&mut self) -> Result<u64, WireError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let mut value = 0u64;
        for (i, &b) in rest.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7F) << (7 * i);
            if b < 0x80 {
                // The tenth byte may only carry the top bit of a u64.
                if i == 9 && b > 1 {
                    return Err(WireError::VarintOverflow);
                }
                self.pos += i + 1;
                return Ok(value);
            }
        }
        if rest.len() >= 10 {
            Err(WireError::VarintOverflow)
        } else {
            Err(WireError::Truncated)
        }
    }

    /// The next field's number and wire type.
    #[inline(always)]
    pub(crate) fn key(&mut self) -> Result<(u32, u8), WireError> {
        let key = self.varint()?;
        let wire_type = (key & 7) as u8;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(WireError::InvalidTag);
        }
        Ok((field as u32, wire_type))
    }

    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let remaining = self.buf.len() - self.pos;
        if len > remaining as u64 {
            return Err(WireError::Truncated);
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    #[inline]
    pub(crate) fn fixed32(&mut self) -> Result<[u8; 4], WireError> {
        let b = self
            .buf
            .get(self.pos..self.pos + 4)
            .ok_or(WireError::Truncated)?;
        self.pos += 4;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(a)
    }

    #[inline]
    pub(crate) fn fixed64(&mut self) -> Result<[u8; 8], WireError> {
        let b = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or(WireError::Truncated)?;
        self.pos += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// Skips an unknown field (extensions, newer fields). Groups are skipped
    /// iteratively, so nesting cannot exhaust the stack.
    pub(crate) fn skip(&mut self, field: u32, wire_type: u8) -> Result<(), WireError> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.fixed32().map(drop),
            START_GROUP => {
                let mut open = vec![field];
                while let Some(&inner) = open.last() {
                    let (f, wt) = self.key()?;
                    match wt {
                        START_GROUP => open.push(f),
                        END_GROUP if f == inner => {
                            open.pop();
                        }
                        END_GROUP => {
                            return Err(WireError::InvalidWireType(wt));
                        }
                        _ => self.skip(f, wt)?,
                    }
                }
                Ok(())
            }
            other => Err(WireError::InvalidWireType(other)),
        }
    }
}

#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub(crate) fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

/// Bytes of a key for a field number (all fields here are below 16 except none).
#[inline]
pub(crate) fn key_len(field: u32) -> usize {
    varint_len(u64::from(field) << 3)
}

/// Bytes of a varint field, key included.
#[inline]
pub(crate) fn varint_field_len(field: u32, v: u64) -> usize {
    key_len(field) + varint_len(v)
}

/// Bytes of a length-delimited field of `len` bytes, key and length included.
#[inline]
pub(crate) fn len_field_len(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

#[inline]
pub(crate) fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, VARINT);
    put_varint(out, v);
}

#[inline]
pub(crate) fn put_bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        for (v, n) in [
            (0u64, 1),
            (127, 1),
            (128, 2),
            (16383, 2),
            (16384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), n);
            assert_eq!(Reader::new(&out).varint(), Ok(v));
        }
    }

    #[test]
    fn overlong_varint_is_an_error() {
        let eleven = [0xFFu8; 11];
        assert_eq!(
            Reader::new(&eleven).varint(),
            Err(WireError::VarintOverflow)
        );
        let mut tenth_too_big = [0xFFu8; 10];
        tenth_too_big[9] = 0x02;
        assert_eq!(
            Reader::new(&tenth_too_big).varint(),
            Err(WireError::VarintOverflow)
        );
        assert_eq!(Reader::new(&[0x80]).varint(), Err(WireError::Truncated));
    }

    #[test]
    fn groups_are_skipped() {
        // field 7 start group, field 1 varint 5, nested group 8 { }, end group 7.
        let b = [0x3B, 0x08, 0x05, 0x43, 0x44, 0x3C, 0x08, 0x01];
        let mut r = Reader::new(&b);
        let (f, wt) = r.key().unwrap();
        r.skip(f, wt).unwrap();
        assert_eq!(r.key(), Ok((1, VARINT)));
    }
}
