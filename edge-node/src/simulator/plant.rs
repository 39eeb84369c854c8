//! The set of simulated units behind one server: each unit's register bank and the faults
//! injected into it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_modbus::ExceptionCode;

use super::bank::{BankError, BankSizes, RegisterBank};

/// A Modbus unit identifier (the slave address on RTU).
pub type UnitId = u8;

/// Unit id 0 is the Modbus broadcast address: writes reach every unit, nothing answers.
pub const BROADCAST_UNIT: UnitId = 0;

/// Errors building or addressing a plant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlantError {
    #[error("unit {0} does not exist")]
    UnknownUnit(UnitId),
    #[error("unit {0} is defined twice")]
    DuplicateUnit(UnitId),
    #[error("unit 0 is the broadcast address and cannot hold data")]
    BroadcastUnit,
    #[error("unit {unit}: {error}")]
    Bank {
        unit: UnitId,
        /// Shown in the message, so not also chained as a source.
        error: BankError,
    },
}

/// An injected exception: requests matching the function code (any when `None`) and
/// touching `start..start+count` get `code` instead of data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionRule {
    pub function: Option<u8>,
    pub start: u16,
    pub count: u32,
    pub code: ExceptionCode,
}

impl ExceptionRule {
    /// Whether a request of `function` touching `start..start+count` matches this rule.
    pub fn matches(&self, function: u8, start: u16, count: usize) -> bool {
        if self.function.is_some_and(|f| f != function) {
            return false;
        }
        let (rule_start, rule_end) = (u32::from(self.start), u32::from(self.start) + self.count);
        let (req_start, req_end) = (u32::from(start), u32::from(start) + count as u32);
        // A zero-quantity request still names an address; treat it as touching that address.
        let req_end = req_end.max(req_start + 1);
        rule_start < req_end && req_start < rule_end
    }
}

/// Faults currently injected into one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFaults {
    /// Added before every answer, like a slow device or a long radio hop.
    pub response_delay: Duration,
    /// Checked in order; the first match answers.
    pub exceptions: Vec<ExceptionRule>,
    /// The unit never answers, like a powered-off device behind a gateway.
    pub silent: bool,
}

/// One simulated Modbus device.
#[derive(Debug)]
pub struct Unit {
    id: UnitId,
    bank: Arc<RegisterBank>,
    faults: Mutex<UnitFaults>,
}

impl Unit {
    pub fn id(&self) -> UnitId {
        self.id
    }

    pub fn bank(&self) -> &Arc<RegisterBank> {
        &self.bank
    }

    /// A copy of the faults in force now.
    pub fn faults(&self) -> UnitFaults {
        self.lock_faults().clone()
    }

    pub(crate) fn lock_faults(&self) -> MutexGuard<'_, UnitFaults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the server does with a request for a unit id it does not simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownUnitReply {
    /// No answer at all, as an RTU line does for an absent slave (the default).
    #[default]
    Silent,
    /// Exception 0x0B "gateway target device failed to respond", as a TCP gateway does.
    GatewayTargetDevice,
}

/// All units served together, with their faults. Units are fixed once built.
#[derive(Debug, Default)]
pub struct Plant {
    units: BTreeMap<UnitId, Arc<Unit>>,
    gateway_exception_for_unknown_units: AtomicBool,
}

impl Plant {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a unit with zeroed tables of the given sizes.
    pub fn add_unit(&mut self, id: UnitId, sizes: BankSizes) -> Result<Arc<Unit>, PlantError> {
        if id == BROADCAST_UNIT {
            return Err(PlantError::BroadcastUnit);
        }
        if self.units.contains_key(&id) {
            return Err(PlantError::DuplicateUnit(id));
        }
        let bank =
            RegisterBank::new(sizes).map_err(|error| PlantError::Bank { unit: id, error })?;
        let unit = Arc::new(Unit {
            id,
            bank: Arc::new(bank),
            faults: Mutex::default(),
        });
        self.units.insert(id, Arc::clone(&unit));
        Ok(unit)
    }

    pub fn unit(&self, id: UnitId) -> Result<&Arc<Unit>, PlantError> {
        self.units.get(&id).ok_or(PlantError::UnknownUnit(id))
    }

    /// The register bank of unit `id`.
    pub fn bank(&self, id: UnitId) -> Result<&Arc<RegisterBank>, PlantError> {
        Ok(self.unit(id)?.bank())
    }

    pub fn units(&self) -> impl Iterator<Item = &Arc<Unit>> {
        self.units.values()
    }

    pub fn unit_ids(&self) -> Vec<UnitId> {
        self.units.keys().copied().collect()
    }

    pub fn unknown_unit_reply(&self) -> UnknownUnitReply {
        if self
            .gateway_exception_for_unknown_units
            .load(Ordering::Relaxed)
        {
            UnknownUnitReply::GatewayTargetDevice
        } else {
            UnknownUnitReply::Silent
        }
    }

    pub fn set_unknown_unit_reply(&self, reply: UnknownUnitReply) {
        let gateway = reply == UnknownUnitReply::GatewayTargetDevice;
        self.gateway_exception_for_unknown_units
            .store(gateway, Ordering::Relaxed);
    }

    /// Delays every answer of unit `id` by `delay` (zero removes the delay).
    pub fn set_response_delay(&self, id: UnitId, delay: Duration) -> Result<(), PlantError> {
        self.unit(id)?.lock_faults().response_delay = delay;
        Ok(())
    }

    /// Makes unit `id` answer `rule.code` to the requests the rule matches.
    pub fn add_exception(&self, id: UnitId, rule: ExceptionRule) -> Result<(), PlantError> {
        self.unit(id)?.lock_faults().exceptions.push(rule);
        Ok(())
    }

    /// Makes unit `id` stop (or resume) answering.
    pub fn set_silent(&self, id: UnitId, silent: bool) -> Result<(), PlantError> {
        self.unit(id)?.lock_faults().silent = silent;
        Ok(())
    }

    /// Removes every fault from unit `id`.
    pub fn clear_unit_faults(&self, id: UnitId) -> Result<(), PlantError> {
        *self.unit(id)?.lock_faults() = UnitFaults::default();
        Ok(())
    }

    /// Removes every fault from every unit.
    pub fn clear_faults(&self) {
        for unit in self.units.values() {
            *unit.lock_faults() = UnitFaults::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_rules_match_by_function_and_overlap() {
        let rule = ExceptionRule {
            function: Some(3),
            start: 100,
            count: 10,
            code: ExceptionCode::ServerDeviceBusy,
        };
        assert!(rule.matches(3, 95, 6));
        assert!(rule.matches(3, 109, 1));
        assert!(!rule.matches(3, 110, 5));
        assert!(!rule.matches(3, 90, 10));
        assert!(!rule.matches(4, 100, 1));
        let any = ExceptionRule {
            function: None,
            ..rule
        };
        assert!(any.matches(4, 100, 1));
    }

    #[test]
    fn units_are_unique_and_not_broadcast() {
        let mut plant = Plant::new();
        plant.add_unit(1, BankSizes::uniform(4)).unwrap();
        assert_eq!(
            plant.add_unit(1, BankSizes::uniform(4)).unwrap_err(),
            PlantError::DuplicateUnit(1)
        );
        assert_eq!(
            plant.add_unit(0, BankSizes::uniform(4)).unwrap_err(),
            PlantError::BroadcastUnit
        );
        assert_eq!(plant.bank(9).unwrap_err(), PlantError::UnknownUnit(9));
    }
}
