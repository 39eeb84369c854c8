//! Commissioning reads, outside the polling: "test connection" (connect, read one
//! register) and the register probe (N registers or bits at an address), over the same
//! transports and request path as the pollers, with every interpretation of the words
//! decoded by [`super::value::decode`].

use std::time::Duration;

use tokio_modbus::{Request, Response};

use super::config::{Site, Transport};
use super::error::Failure;
use super::tag::Table;
use super::transport;
use super::value::{self, ByteOrder, DataType};

/// Most registers (the protocol's limit per read) or bits one probe reads.
pub const MAX_REGISTERS: u16 = 125;
pub const MAX_BITS: u16 = 2000;

/// Where a probe goes: a link, a unit and a timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub transport: Transport,
    pub unit_id: u8,
    pub timeout: Duration,
}

impl Target {
    /// The target of the device at `index` of a checked site.
    pub fn of_device(site: &Site, index: usize) -> Option<Target> {
        let device = site.devices.get(index)?;
        Some(Target {
            transport: site.links.get(device.link)?.transport.clone(),
            unit_id: device.unit_id,
            timeout: device.timeout,
        })
    }
}

/// What a probe read.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// Why a probe failed: the request (or the count) and what happened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    #[error("count must be 1..={max} for {table}")]
    Count { table: &'static str, max: u16 },
    #[error("{0}")]
    Failed(Failure),
}

/// Connects, reads `count` items of `table` at the 0-based `address`, and disconnects.
pub async fn read(
    target: &Target,
    table: Table,
    address: u16,
    count: u16,
) -> Result<Read, ProbeError> {
    let max = if table.is_bits() {
        MAX_BITS
    } else {
        MAX_REGISTERS
    };
    if count == 0 || count > max {
        return Err(ProbeError::Count {
            table: table.name(),
            max,
        });
    }
    let mut ctx = transport::connect(&target.transport, target.timeout)
        .await
        .map_err(ProbeError::Failed)?;
    match &target.transport {
        Transport::Rtu(s) => tokio::time::sleep(s.inter_frame).await,
        Transport::RtuOverTcp { inter_frame, .. } => tokio::time::sleep(*inter_frame).await,
        Transport::Tcp { .. } => {}
    }
    let request = match table {
        Table::Coil => Request::ReadCoils(address, count),
        Table::DiscreteInput => Request::ReadDiscreteInputs(address, count),
        Table::InputRegister => Request::ReadInputRegisters(address, count),
        Table::HoldingRegister => Request::ReadHoldingRegisters(address, count),
    };
    let mut timer = Box::pin(tokio::time::sleep(target.timeout));
    let answer = transport::call(
        &mut ctx,
        target.unit_id,
        request,
        target.timeout,
        &mut timer,
    )
    .await
    .map_err(ProbeError::Failed)?;
    let n = usize::from(count);
    match answer {
        Response::ReadCoils(mut b) | Response::ReadDiscreteInputs(mut b) if b.len() >= n => {
            b.truncate(n);
            Ok(Read::Bits(b))
        }
        Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w) if w.len() == n => {
            Ok(Read::Words(w))
        }
        _ => Err(ProbeError::Failed(Failure::Protocol(format!(
            "answer does not cover {count} items"
        )))),
    }
}

/// "Test connection": connect and read one holding register at `address`. An exception
/// answer still proves the link and the unit: it is reported as the outcome.
pub async fn test_connection(target: &Target, address: u16) -> Result<String, ProbeError> {
    match read(target, Table::HoldingRegister, address, 1).await {
        Ok(Read::Words(w)) => Ok(format!(
            "connected; holding register {address} = {} (0x{:04X})",
            w[0], w[0]
        )),
        Ok(Read::Bits(_)) => Ok("connected".to_owned()),
        Err(ProbeError::Failed(f @ Failure::Exception(_))) => Ok(format!(
            "connected; the device answered holding register {address} with {f}"
        )),
        Err(e) => Err(e),
    }
}

/// One reading of the words at `offset` as `data_type` in `order`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interpretation {
    pub offset: usize,
    pub data_type: DataType,
    /// The order's name for this type's width (`CDAB`, `GHEFCDAB`, `BA`).
    pub order: &'static str,
    pub value: String,
}

/// Every numeric type at every offset the words allow, in each byte order (16-bit types
/// in AB and BA), decoded as a tag of that type and order would be.
pub fn interpretations(words: &[u16]) -> Vec<Interpretation> {
    const TYPES: [DataType; 8] = [
        DataType::U16,
        DataType::I16,
        DataType::U32,
        DataType::I32,
        DataType::F32,
        DataType::U64,
        DataType::I64,
        DataType::F64,
    ];
    let mut out = Vec::new();
    for data_type in TYPES {
        let width = usize::from(data_type.registers().unwrap_or(1));
        let orders: &[ByteOrder] = if width == 1 {
            &[ByteOrder::ABCD, ByteOrder::BADC]
        } else {
            &ByteOrder::ALL
        };
        for offset in 0..words.len().saturating_sub(width - 1) {
            for order in orders {
                let value = value::decode(data_type, *order, &words[offset..offset + width])
                    .map_or_else(|e| e.to_string(), |v| shown(&v));
                out.push(Interpretation {
                    offset,
                    data_type,
                    order: order.name(width as u16),
                    value,
                });
            }
        }
    }
    out
}

/// A value as the probe shows it: very large or small floats in exponent form.
fn shown(v: &value::Value) -> String {
    let float = match v {
        value::Value::F32(f) => f64::from(*f),
        value::Value::F64(f) => *f,
        other => return other.to_string(),
    };
    if float != 0.0 && !(1e-6..1e15).contains(&float.abs()) {
        match v {
            value::Value::F32(f) => format!("{f:e}"),
            _ => format!("{float:e}"),
        }
    } else {
        v.to_string()
    }
}

/// The words as text, two characters each, in both byte orders (AB then BA).
pub fn as_text(words: &[u16]) -> [(&'static str, String); 2] {
    [ByteOrder::ABCD, ByteOrder::BADC].map(|order| {
        let text = value::decode(DataType::String, order, words)
            .map_or_else(|e| e.to_string(), |v| v.to_string());
        (order.name(1), text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_in_each_order() {
        // 3.1415927 is 0x40490FDB; the device sends its low word first (CDAB).
        let words = [0x0FDB, 0x4049];
        let all = interpretations(&words);
        let f32s: Vec<_> = all
            .iter()
            .filter(|i| i.data_type == DataType::F32)
            .map(|i| (i.order, i.value.as_str()))
            .collect();
        assert_eq!(f32s.len(), 4);
        assert!(f32s.contains(&("CDAB", "3.1415927")), "{f32s:?}");
        assert!(f32s.contains(&("ABCD", "2.1619829e-29")), "{f32s:?}");
        assert_eq!(
            all.iter()
                .filter(|i| i.data_type == DataType::U16)
                .map(|i| (i.offset, i.order, i.value.as_str()))
                .collect::<Vec<_>>(),
            [
                (0, "AB", "4059"),
                (0, "BA", "56079"),
                (1, "AB", "16457"),
                (1, "BA", "18752")
            ]
        );
        assert!(all.iter().all(|i| i.data_type.registers() != Some(4)));
    }
}
