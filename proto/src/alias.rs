//! Metric aliases: the name <-> alias binding an edge node declares in its birth
//! and uses (alias only) in later DATA and CMD messages.

use std::collections::HashMap;

use crate::model::{Metric, Payload};
use crate::{DataType, ValueError};

/// A birth's aliases are inconsistent, or a metric cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AliasError {
    /// Two metrics with one alias.
    #[error("alias {alias} is bound to both {first:?} and {second:?}")]
    DuplicateAlias {
        /// The alias.
        alias: u64,
        /// The name bound first.
        first: String,
        /// The name bound second.
        second: String,
    },
    /// One name with two aliases.
    #[error("metric {name:?} has two aliases, {first} and {second}")]
    DuplicateName {
        /// The name.
        name: String,
        /// The alias bound first.
        first: u64,
        /// The alias bound second.
        second: u64,
    },
    /// A birth metric with an alias but no name.
    #[error("birth metric {index} has alias {alias} but no name")]
    MissingName {
        /// Position in the birth.
        index: usize,
        /// Its alias.
        alias: u64,
    },
    /// A DATA/CMD metric with an alias the birth did not declare.
    #[error("alias {0} was not declared in the birth")]
    UnknownAlias(u64),
    /// A DATA/CMD metric with neither name nor alias.
    #[error("metric has neither name nor alias")]
    Anonymous,
    /// The value does not fit the datatype from the birth.
    #[error("alias {alias}: {source}")]
    Value {
        /// The alias.
        alias: u64,
        /// What is wrong.
        source: ValueError,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    name: String,
    datatype: Option<DataType>,
}

/// The aliases of one birth (an NBIRTH or a DBIRTH): unique aliases, unique
/// names, lookup both ways, and the datatype each metric was born with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AliasTable {
    by_alias: HashMap<u64, Entry>,
    by_name: HashMap<String, u64>,
}

impl AliasTable {
    /// An empty table.
    pub fn new() -> AliasTable {
        AliasTable::default()
    }

    /// The table of a birth payload. Metrics without an alias are not aliased
    /// (aliases are optional); an alias without a name, a reused alias or a name
    /// with two aliases is an error.
    pub fn from_birth(birth: &Payload) -> Result<AliasTable, AliasError> {
        let mut table = AliasTable::new();
        for (index, m) in birth.metrics.iter().enumerate() {
            let Some(alias) = m.alias else { continue };
            let name = m
                .name
                .as_deref()
                .ok_or(AliasError::MissingName { index, alias })?;
            table.insert(name, alias, m.datatype)?;
        }
        Ok(table)
    }

    /// Binds `name` to `alias`. Rebinding the same pair updates the datatype.
    pub fn insert(
        &mut self,
        name: &str,
        alias: u64,
        datatype: Option<DataType>,
    ) -> Result<(), AliasError> {
        if let Some(e) = self.by_alias.get(&alias)
            && e.name != name
        {
            return Err(AliasError::DuplicateAlias {
                alias,
                first: e.name.clone(),
                second: name.to_owned(),
            });
        }
        if let Some(&first) = self.by_name.get(name)
            && first != alias
        {
            return Err(AliasError::DuplicateName {
                name: name.to_owned(),
                first,
                second: alias,
            });
        }
        self.by_alias.insert(
            alias,
            Entry {
                name: name.to_owned(),
                datatype,
            },
        );
        self.by_name.insert(name.to_owned(), alias);
        Ok(())
    }

    /// The name bound to `alias`.
    pub fn name_of(&self, alias: u64) -> Option<&str> {
        self.by_alias.get(&alias).map(|e| e.name.as_str())
    }

    /// The alias bound to `name`.
    pub fn alias_of(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// The datatype the metric with `alias` was born with.
    pub fn datatype_of(&self, alias: u64) -> Option<DataType> {
        self.by_alias.get(&alias).and_then(|e| e.datatype)
    }

    /// Number of aliases.
    pub fn len(&self) -> usize {
        self.by_alias.len()
    }

    /// No aliases.
    pub fn is_empty(&self) -> bool {
        self.by_alias.is_empty()
    }

    /// `(alias, name)` pairs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> {
        self.by_alias.iter().map(|(a, e)| (*a, e.name.as_str()))
    }

    /// Completes a DATA/CMD metric from the birth: the name of its alias, and the
    /// datatype (typing its value) if it was sent without one.
    pub fn resolve(&self, metric: &mut Metric) -> Result<(), AliasError> {
        let Some(alias) = metric.alias else {
            return if metric.name.is_some() {
                Ok(())
            } else {
                Err(AliasError::Anonymous)
            };
        };
        let entry = self
            .by_alias
            .get(&alias)
            .ok_or(AliasError::UnknownAlias(alias))?;
        if metric.name.is_none() {
            metric.name = Some(entry.name.clone());
        }
        if let (None, Some(t)) = (metric.datatype, entry.datatype) {
            metric
                .resolve(t)
                .map_err(|source| AliasError::Value { alias, source })?;
        }
        Ok(())
    }
}
