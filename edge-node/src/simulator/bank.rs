//! The register bank of one simulated unit: coils, discrete inputs, holding and input
//! registers, shared between the Modbus service and the signal engine.

use std::ops::Range;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Deserialize;

/// Largest number of entries a Modbus table can address (addresses 0..=65535).
pub const MAX_TABLE_SIZE: usize = 65_536;

/// One of the four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Coils,
    DiscreteInputs,
    HoldingRegisters,
    InputRegisters,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Coils,
        Table::DiscreteInputs,
        Table::HoldingRegisters,
        Table::InputRegisters,
    ];

    /// The name used in configuration files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Table::Coils => "coils",
            Table::DiscreteInputs => "discrete_inputs",
            Table::HoldingRegisters => "holding_registers",
            Table::InputRegisters => "input_registers",
        }
    }

    /// Whether entries are single bits (coils, discrete inputs) rather than 16-bit words.
    pub fn is_bit(self) -> bool {
        matches!(self, Table::Coils | Table::DiscreteInputs)
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of entries in each table of a bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BankSizes {
    pub coils: usize,
    pub discrete_inputs: usize,
    pub holding_registers: usize,
    pub input_registers: usize,
}

impl BankSizes {
    /// Every table the same size.
    pub fn uniform(size: usize) -> Self {
        Self {
            coils: size,
            discrete_inputs: size,
            holding_registers: size,
            input_registers: size,
        }
    }

    pub fn get(&self, table: Table) -> usize {
        match table {
            Table::Coils => self.coils,
            Table::DiscreteInputs => self.discrete_inputs,
            Table::HoldingRegisters => self.holding_registers,
            Table::InputRegisters => self.input_registers,
        }
    }
}

impl Default for BankSizes {
    fn default() -> Self {
        Self::uniform(1_000)
    }
}

/// Why a bank access was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    #[error("{table} {start}..{end} is outside the table (size {size})")]
    OutOfRange {
        table: Table,
        start: usize,
        end: usize,
        size: usize,
    },
    #[error("{table} address {address} is configured invalid")]
    InvalidAddress { table: Table, address: u16 },
    #[error("{table} holds bits, not registers")]
    NotRegisters { table: Table },
    #[error("{table} holds registers, not bits")]
    NotBits { table: Table },
    #[error("{table} table size {size} exceeds {MAX_TABLE_SIZE}")]
    TooLarge { table: Table, size: usize },
}

/// The four tables of one unit; reached through [`RegisterBank::read`] / [`RegisterBank::write`].
#[derive(Debug)]
pub struct Tables {
    pub coils: Vec<bool>,
    pub discrete_inputs: Vec<bool>,
    pub holding_registers: Vec<u16>,
    pub input_registers: Vec<u16>,
    /// Address ranges that answer "illegal data address" although inside the table,
    /// like the holes in a real device's map.
    invalid: Vec<(Table, Range<u32>)>,
}

impl Tables {
    fn new(sizes: BankSizes) -> Self {
        Self {
            coils: vec![false; sizes.coils],
            discrete_inputs: vec![false; sizes.discrete_inputs],
            holding_registers: vec![0; sizes.holding_registers],
            input_registers: vec![0; sizes.input_registers],
            invalid: Vec::new(),
        }
    }

    pub fn size(&self, table: Table) -> usize {
        match table {
            Table::Coils => self.coils.len(),
            Table::DiscreteInputs => self.discrete_inputs.len(),
            Table::HoldingRegisters => self.holding_registers.len(),
            Table::InputRegisters => self.input_registers.len(),
        }
    }

    /// Checks that `start..start+count` lies inside `table` and touches no invalid address.
    pub fn check(&self, table: Table, start: u16, count: usize) -> Result<Range<usize>, BankError> {
        let first = usize::from(start);
        let end = first + count;
        let size = self.size(table);
        if end > size {
            return Err(BankError::OutOfRange {
                table,
                start: first,
                end,
                size,
            });
        }
        let span = u32::from(start)..(end as u32);
        for (hole_table, hole) in &self.invalid {
            if *hole_table == table && hole.start < span.end && span.start < hole.end {
                let address = hole.start.max(span.start) as u16;
                return Err(BankError::InvalidAddress { table, address });
            }
        }
        Ok(first..end)
    }

    /// The word table behind `table`, or `None` for a bit table.
    pub fn words(&self, table: Table) -> Option<&[u16]> {
        match table {
            Table::HoldingRegisters => Some(&self.holding_registers),
            Table::InputRegisters => Some(&self.input_registers),
            Table::Coils | Table::DiscreteInputs => None,
        }
    }

    pub fn words_mut(&mut self, table: Table) -> Option<&mut [u16]> {
        match table {
            Table::HoldingRegisters => Some(&mut self.holding_registers),
            Table::InputRegisters => Some(&mut self.input_registers),
            Table::Coils | Table::DiscreteInputs => None,
        }
    }

    /// The bit table behind `table`, or `None` for a word table.
    pub fn bits(&self, table: Table) -> Option<&[bool]> {
        match table {
            Table::Coils => Some(&self.coils),
            Table::DiscreteInputs => Some(&self.discrete_inputs),
            Table::HoldingRegisters | Table::InputRegisters => None,
        }
    }

    pub fn bits_mut(&mut self, table: Table) -> Option<&mut [bool]> {
        match table {
            Table::Coils => Some(&mut self.coils),
            Table::DiscreteInputs => Some(&mut self.discrete_inputs),
            Table::HoldingRegisters | Table::InputRegisters => None,
        }
    }
}

/// The data of one unit. Locks are held only to copy in or out.
#[derive(Debug)]
pub struct RegisterBank {
    tables: RwLock<Tables>,
}

impl RegisterBank {
    pub fn new(sizes: BankSizes) -> Result<Self, BankError> {
        for table in Table::ALL {
            let size = sizes.get(table);
            if size > MAX_TABLE_SIZE {
                return Err(BankError::TooLarge { table, size });
            }
        }
        Ok(Self {
            tables: RwLock::new(Tables::new(sizes)),
        })
    }

    /// Shared access to all four tables at once (one consistent snapshot).
    pub fn read(&self) -> RwLockReadGuard<'_, Tables> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Exclusive access to all four tables at once (one atomic update).
    pub fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn size(&self, table: Table) -> usize {
        self.read().size(table)
    }

    /// Marks `start..start+count` of `table` as answering "illegal data address".
    pub fn mark_invalid(&self, table: Table, start: u16, count: u32) {
        let start = u32::from(start);
        self.write().invalid.push((table, start..start + count));
    }

    /// Copies `count` words of a register table.
    pub fn read_words(
        &self,
        table: Table,
        start: u16,
        count: usize,
    ) -> Result<Vec<u16>, BankError> {
        let tables = self.read();
        let range = tables.check(table, start, count)?;
        Ok(tables
            .words(table)
            .ok_or(BankError::NotRegisters { table })?[range]
            .to_vec())
    }

    /// Overwrites words of a register table starting at `start`.
    pub fn write_words(&self, table: Table, start: u16, values: &[u16]) -> Result<(), BankError> {
        let mut tables = self.write();
        let range = tables.check(table, start, values.len())?;
        tables
            .words_mut(table)
            .ok_or(BankError::NotRegisters { table })?[range]
            .copy_from_slice(values);
        Ok(())
    }

    /// Copies `count` bits of a coil or discrete-input table.
    pub fn read_bits(
        &self,
        table: Table,
        start: u16,
        count: usize,
    ) -> Result<Vec<bool>, BankError> {
        let tables = self.read();
        let range = tables.check(table, start, count)?;
        Ok(tables.bits(table).ok_or(BankError::NotBits { table })?[range].to_vec())
    }

    /// Overwrites bits of a coil or discrete-input table starting at `start`.
    pub fn write_bits(&self, table: Table, start: u16, values: &[bool]) -> Result<(), BankError> {
        let mut tables = self.write();
        let range = tables.check(table, start, values.len())?;
        tables.bits_mut(table).ok_or(BankError::NotBits { table })?[range].copy_from_slice(values);
        Ok(())
    }

    /// One holding register (test convenience).
    pub fn holding_register(&self, address: u16) -> Result<u16, BankError> {
        Ok(self.read_words(Table::HoldingRegisters, address, 1)?[0])
    }

    pub fn set_holding_register(&self, address: u16, value: u16) -> Result<(), BankError> {
        self.write_words(Table::HoldingRegisters, address, &[value])
    }

    /// One input register (test convenience).
    pub fn input_register(&self, address: u16) -> Result<u16, BankError> {
        Ok(self.read_words(Table::InputRegisters, address, 1)?[0])
    }

    pub fn set_input_register(&self, address: u16, value: u16) -> Result<(), BankError> {
        self.write_words(Table::InputRegisters, address, &[value])
    }

    /// One coil (test convenience).
    pub fn coil(&self, address: u16) -> Result<bool, BankError> {
        Ok(self.read_bits(Table::Coils, address, 1)?[0])
    }

    pub fn set_coil(&self, address: u16, value: bool) -> Result<(), BankError> {
        self.write_bits(Table::Coils, address, &[value])
    }

    /// One discrete input (test convenience).
    pub fn discrete_input(&self, address: u16) -> Result<bool, BankError> {
        Ok(self.read_bits(Table::DiscreteInputs, address, 1)?[0])
    }

    pub fn set_discrete_input(&self, address: u16, value: bool) -> Result<(), BankError> {
        self.write_bits(Table::DiscreteInputs, address, &[value])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_written_and_rejects_out_of_range() {
        let bank = RegisterBank::new(BankSizes::uniform(10)).unwrap();
        bank.write_words(Table::HoldingRegisters, 8, &[1, 2])
            .unwrap();
        assert_eq!(
            bank.read_words(Table::HoldingRegisters, 7, 3).unwrap(),
            [0, 1, 2]
        );
        assert!(matches!(
            bank.read_words(Table::HoldingRegisters, 9, 2),
            Err(BankError::OutOfRange {
                end: 11,
                size: 10,
                ..
            })
        ));
        bank.set_coil(9, true).unwrap();
        assert!(bank.coil(9).unwrap());
        assert!(bank.set_coil(10, true).is_err());
    }

    #[test]
    fn invalid_ranges_refuse_overlapping_access_only() {
        let bank = RegisterBank::new(BankSizes::uniform(100)).unwrap();
        bank.mark_invalid(Table::InputRegisters, 10, 5);
        assert!(bank.read_words(Table::InputRegisters, 0, 10).is_ok());
        assert!(bank.read_words(Table::InputRegisters, 15, 10).is_ok());
        assert_eq!(
            bank.read_words(Table::InputRegisters, 5, 6),
            Err(BankError::InvalidAddress {
                table: Table::InputRegisters,
                address: 10
            })
        );
        // Same addresses in another table stay valid.
        assert!(bank.read_words(Table::HoldingRegisters, 10, 5).is_ok());
    }

    #[test]
    fn full_size_tables_reach_the_last_address() {
        let bank = RegisterBank::new(BankSizes::uniform(MAX_TABLE_SIZE)).unwrap();
        bank.set_holding_register(65_535, 7).unwrap();
        assert_eq!(bank.holding_register(65_535).unwrap(), 7);
        assert!(RegisterBank::new(BankSizes::uniform(MAX_TABLE_SIZE + 1)).is_err());
    }
}
