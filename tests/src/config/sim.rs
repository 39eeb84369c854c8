//! The plant simulator's file: `tick_ms` and its `[[unit]]`s with their signals.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct SimConfig {
    pub tick_ms: Option<u64>,
    #[serde(rename = "unit", skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<Unit>,
}

impl SimConfig {
    /// The TOML document.
    pub fn to_toml(&self) -> String {
        super::to_toml(self)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Unit {
    pub id: u8,
    pub name: Option<String>,
    pub sizes: Option<Sizes>,
    #[serde(rename = "signal", skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<Signal>,
}

impl Unit {
    pub fn new(id: u8) -> Unit {
        Unit {
            id,
            ..Unit::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sizes {
    pub coils: u32,
    pub discrete_inputs: u32,
    pub holding_registers: u32,
    pub input_registers: u32,
}

/// One `[[unit.signal]]`: `kind` with the keys it takes (see `plant-sim.example.toml`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Signal {
    pub name: String,
    pub table: String,
    pub address: u16,
    #[serde(rename = "type")]
    pub data_type: Option<String>,
    pub order: Option<String>,
    pub scale: Option<f64>,
    pub kind: String,
    pub value: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub offset: Option<f64>,
    pub amplitude: Option<f64>,
    pub period_s: Option<f64>,
    pub step: Option<f64>,
    pub start: Option<f64>,
    pub rate: Option<f64>,
    pub seed: Option<u64>,
    pub duty: Option<f64>,
}

impl Signal {
    /// A `kind` signal at `address` of `table` (`input_registers`, `holding_registers`...).
    pub fn new(name: &str, table: &str, address: u16, kind: &str) -> Signal {
        Signal {
            name: name.to_owned(),
            table: table.to_owned(),
            address,
            kind: kind.to_owned(),
            ..Signal::default()
        }
    }
}
