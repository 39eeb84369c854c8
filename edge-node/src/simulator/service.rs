//! The Modbus service: answers requests from a [`Plant`], independent of the transport
//! (serve it over TCP with [`super::PlantServer`], or over RTU with tokio-modbus's RTU server).
//!
//! Supported function codes: 01, 02, 03, 04, 05, 06, 15, 16, 22 and 23. Exceptions:
//! - 01 illegal function: any other function code;
//! - 02 illegal data address: a range outside the table or touching a configured-invalid address;
//! - 03 illegal data value: a quantity outside the limits of the Modbus specification;
//! - injected exceptions ([`super::ExceptionRule`]) are checked before the request is served.
//!
//! A request for a unit id the plant does not hold gets no answer by default, or exception
//! 0x0B when [`UnknownUnitReply::GatewayTargetDevice`] is set. Unit 0 is broadcast: writes
//! reach every unit and nothing is answered.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::bank::{BankError, Table, Tables};
use super::plant::{BROADCAST_UNIT, Plant, Unit, UnknownUnitReply};

// Quantity limits from the Modbus application protocol specification v1.1b3.
const MAX_READ_BITS: usize = 2000;
const MAX_READ_REGISTERS: usize = 125;
const MAX_WRITE_BITS: usize = 1968;
const MAX_WRITE_REGISTERS: usize = 123;
const MAX_READ_WRITE_WRITE_REGISTERS: usize = 121;

/// The answer to one request: `Ok(None)` sends nothing.
pub type ServiceResult = Result<Option<Response>, ExceptionCode>;

/// A cloneable Modbus service over a shared [`Plant`].
#[derive(Debug, Clone)]
pub struct PlantService {
    plant: Arc<Plant>,
    /// Cancelled when the connection this service answers is dropped; ends injected delays early.
    connection_closed: Option<CancellationToken>,
    /// The client, for the request spans (TCP only).
    peer: Option<SocketAddr>,
}

impl PlantService {
    pub fn new(plant: Arc<Plant>) -> Self {
        Self {
            plant,
            connection_closed: None,
            peer: None,
        }
    }

    /// A service bound to the connection from `peer`: a pending delayed answer is abandoned
    /// when `closed` is cancelled.
    pub fn for_connection(plant: Arc<Plant>, peer: SocketAddr, closed: CancellationToken) -> Self {
        Self {
            plant,
            connection_closed: Some(closed),
            peer: Some(peer),
        }
    }

    pub fn plant(&self) -> &Arc<Plant> {
        &self.plant
    }
}

impl tokio_modbus::server::Service for PlantService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = ServiceResult> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let plant = Arc::clone(&self.plant);
        let closed = self.connection_closed.clone();
        let span = tracing::debug_span!(
            "modbus_request",
            peer = self.peer.map(tracing::field::display),
            unit = req.slave,
            function = req.request.function_code().value(),
        );
        let answered = async move {
            let SlaveRequest { slave, request } = req;
            if slave == BROADCAST_UNIT {
                broadcast(&plant, &request);
                return Ok(None);
            }
            let Ok(unit) = plant.unit(slave) else {
                return match plant.unknown_unit_reply() {
                    UnknownUnitReply::Silent => Ok(None),
                    UnknownUnitReply::GatewayTargetDevice => {
                        Err(ExceptionCode::GatewayTargetDevice)
                    }
                };
            };
            let (delay, silent) = {
                let faults = unit.lock_faults();
                (faults.response_delay, faults.silent)
            };
            if !delay.is_zero() {
                match &closed {
                    Some(closed) => {
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = closed.cancelled() => return Ok(None),
                        }
                    }
                    None => tokio::time::sleep(delay).await,
                }
            }
            if silent {
                return Ok(None);
            }
            answer(unit, &request).map(Some)
        };
        Box::pin(answered.instrument(span))
    }
}

/// Serves one request for one unit, injected exceptions first.
pub fn answer(unit: &Unit, request: &Request<'_>) -> Result<Response, ExceptionCode> {
    let function = request.function_code().value();
    {
        let faults = unit.lock_faults();
        let ranges = if faults.exceptions.is_empty() {
            Vec::new()
        } else {
            touched_ranges(request)
        };
        for (start, count) in ranges {
            if let Some(rule) = faults
                .exceptions
                .iter()
                .find(|rule| rule.matches(function, start, count))
            {
                return Err(rule.code);
            }
        }
    }
    let bank = unit.bank();
    match request {
        Request::ReadCoils(start, quantity) => {
            check_quantity(*quantity, MAX_READ_BITS)?;
            let bits = bank.read_bits(Table::Coils, *start, usize::from(*quantity));
            Ok(Response::ReadCoils(bits.map_err(address_error)?))
        }
        Request::ReadDiscreteInputs(start, quantity) => {
            check_quantity(*quantity, MAX_READ_BITS)?;
            let bits = bank.read_bits(Table::DiscreteInputs, *start, usize::from(*quantity));
            Ok(Response::ReadDiscreteInputs(bits.map_err(address_error)?))
        }
        Request::ReadHoldingRegisters(start, quantity) => {
            check_quantity(*quantity, MAX_READ_REGISTERS)?;
            let words = bank.read_words(Table::HoldingRegisters, *start, usize::from(*quantity));
            Ok(Response::ReadHoldingRegisters(
                words.map_err(address_error)?,
            ))
        }
        Request::ReadInputRegisters(start, quantity) => {
            check_quantity(*quantity, MAX_READ_REGISTERS)?;
            let words = bank.read_words(Table::InputRegisters, *start, usize::from(*quantity));
            Ok(Response::ReadInputRegisters(words.map_err(address_error)?))
        }
        Request::WriteSingleCoil(address, value) => {
            bank.write_bits(Table::Coils, *address, &[*value])
                .map_err(address_error)?;
            Ok(Response::WriteSingleCoil(*address, *value))
        }
        Request::WriteSingleRegister(address, value) => {
            bank.write_words(Table::HoldingRegisters, *address, &[*value])
                .map_err(address_error)?;
            Ok(Response::WriteSingleRegister(*address, *value))
        }
        Request::WriteMultipleCoils(start, values) => {
            let quantity = check_len(values.len(), MAX_WRITE_BITS)?;
            bank.write_bits(Table::Coils, *start, values)
                .map_err(address_error)?;
            Ok(Response::WriteMultipleCoils(*start, quantity))
        }
        Request::WriteMultipleRegisters(start, values) => {
            let quantity = check_len(values.len(), MAX_WRITE_REGISTERS)?;
            bank.write_words(Table::HoldingRegisters, *start, values)
                .map_err(address_error)?;
            Ok(Response::WriteMultipleRegisters(*start, quantity))
        }
        Request::MaskWriteRegister(address, and_mask, or_mask) => {
            let mut tables = bank.write();
            let range = tables
                .check(Table::HoldingRegisters, *address, 1)
                .map_err(address_error)?;
            let register = &mut tables.holding_registers[range.start];
            *register = (*register & and_mask) | (or_mask & !and_mask);
            Ok(Response::MaskWriteRegister(*address, *and_mask, *or_mask))
        }
        Request::ReadWriteMultipleRegisters(read_start, read_quantity, write_start, values) => {
            check_quantity(*read_quantity, MAX_READ_REGISTERS)?;
            check_len(values.len(), MAX_READ_WRITE_WRITE_REGISTERS)?;
            let mut tables = bank.write();
            read_write(
                &mut tables,
                *read_start,
                *read_quantity,
                *write_start,
                values,
            )
            .map(Response::ReadWriteMultipleRegisters)
            .map_err(address_error)
        }
        Request::ReportServerId
        | Request::ReadDeviceIdentification(_, _)
        | Request::Custom(_, _) => Err(ExceptionCode::IllegalFunction),
    }
}

/// Function 23: both ranges are checked before anything is written; the write happens first.
fn read_write(
    tables: &mut Tables,
    read_start: u16,
    read_quantity: u16,
    write_start: u16,
    values: &[u16],
) -> Result<Vec<u16>, BankError> {
    let read = tables.check(
        Table::HoldingRegisters,
        read_start,
        usize::from(read_quantity),
    )?;
    let write = tables.check(Table::HoldingRegisters, write_start, values.len())?;
    tables.holding_registers[write].copy_from_slice(values);
    Ok(tables.holding_registers[read].to_vec())
}

/// Applies a broadcast write to every unit; reads and failures are ignored, as nothing answers.
fn broadcast(plant: &Plant, request: &Request<'_>) {
    if !is_write(request) {
        return;
    }
    for unit in plant.units() {
        if let Err(code) = answer(unit, request) {
            tracing::debug!(unit = unit.id(), ?code, "broadcast write refused");
        }
    }
}

fn is_write(request: &Request<'_>) -> bool {
    matches!(
        request,
        Request::WriteSingleCoil(..)
            | Request::WriteSingleRegister(..)
            | Request::WriteMultipleCoils(..)
            | Request::WriteMultipleRegisters(..)
            | Request::MaskWriteRegister(..)
    )
}

/// The address ranges a request touches, for matching injected exceptions.
fn touched_ranges(request: &Request<'_>) -> Vec<(u16, usize)> {
    match request {
        Request::ReadCoils(start, quantity)
        | Request::ReadDiscreteInputs(start, quantity)
        | Request::ReadHoldingRegisters(start, quantity)
        | Request::ReadInputRegisters(start, quantity) => vec![(*start, usize::from(*quantity))],
        Request::WriteSingleCoil(address, _)
        | Request::WriteSingleRegister(address, _)
        | Request::MaskWriteRegister(address, _, _) => vec![(*address, 1)],
        Request::WriteMultipleCoils(start, values) => vec![(*start, values.len())],
        Request::WriteMultipleRegisters(start, values) => vec![(*start, values.len())],
        Request::ReadWriteMultipleRegisters(read_start, read_quantity, write_start, values) => {
            vec![
                (*read_start, usize::from(*read_quantity)),
                (*write_start, values.len()),
            ]
        }
        Request::ReportServerId
        | Request::ReadDeviceIdentification(_, _)
        | Request::Custom(_, _) => vec![(0, 0)],
    }
}

fn check_quantity(quantity: u16, max: usize) -> Result<(), ExceptionCode> {
    check_len(usize::from(quantity), max).map(drop)
}

fn check_len(len: usize, max: usize) -> Result<u16, ExceptionCode> {
    if len == 0 || len > max {
        return Err(ExceptionCode::IllegalDataValue);
    }
    u16::try_from(len).map_err(|_| ExceptionCode::IllegalDataValue)
}

fn address_error(error: BankError) -> ExceptionCode {
    tracing::debug!(%error, "illegal data address");
    ExceptionCode::IllegalDataAddress
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::bank::BankSizes;

    fn unit() -> Arc<Unit> {
        let mut plant = Plant::new();
        plant.add_unit(1, BankSizes::uniform(10)).unwrap()
    }

    #[test]
    fn mask_write_follows_the_specification_example() {
        let unit = unit();
        unit.bank().set_holding_register(4, 0x12).unwrap();
        answer(&unit, &Request::MaskWriteRegister(4, 0xF2, 0x25)).unwrap();
        assert_eq!(unit.bank().holding_register(4).unwrap(), 0x17);
    }

    #[test]
    fn read_write_writes_before_reading_and_checks_both_ranges() {
        let unit = unit();
        let response = answer(
            &unit,
            &Request::ReadWriteMultipleRegisters(0, 3, 1, vec![7, 8].into()),
        )
        .unwrap();
        assert_eq!(
            response,
            Response::ReadWriteMultipleRegisters(vec![0, 7, 8])
        );
        let refused = answer(
            &unit,
            &Request::ReadWriteMultipleRegisters(0, 1, 9, vec![5, 5].into()),
        );
        assert_eq!(refused, Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(
            unit.bank().holding_register(9).unwrap(),
            0,
            "nothing written"
        );
    }
}
