//! Well-known metric properties: the spec's `Quality`, and the engineering-unit
//! keys used by the wider Sparkplug ecosystem (Ignition MQTT Engine reads
//! `engUnit`, `engLow`, `engHigh`); those three are convention, not spec.

use crate::DataType;
use crate::model::{PropertySet, PropertyValue};
use crate::value::BasicValue;

/// Property keys.
pub mod keys {
    /// Value quality (spec): Int32 0 BAD, 192 GOOD, 500 STALE.
    pub const QUALITY: &str = "Quality";
    /// Engineering unit, String (convention).
    pub const ENG_UNIT: &str = "engUnit";
    /// Engineering range low, Double (convention).
    pub const ENG_LOW: &str = "engLow";
    /// Engineering range high, Double (convention).
    pub const ENG_HIGH: &str = "engHigh";
    /// The metric takes writes (NCMD/DCMD), Boolean (convention, as `engUnit`).
    pub const WRITABLE: &str = "writable";
}

/// The quality of a metric value. The property is sent only when not GOOD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// 0.
    Bad,
    /// 192.
    Good,
    /// 500.
    Stale,
}

/// A `Quality` property that is not an Int32 of 0, 192 or 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QualityError {
    /// The property is not an Int32.
    #[error("Quality property has type {0}, the spec requires Int32")]
    WrongType(DataType),
    /// An Int32 that is not a quality code.
    #[error("Quality code {0} is not 0, 192 or 500")]
    UnknownCode(i32),
}

impl Quality {
    /// The spec's code.
    pub const fn code(self) -> i32 {
        match self {
            Quality::Bad => 0,
            Quality::Good => 192,
            Quality::Stale => 500,
        }
    }

    /// The quality for a code.
    pub const fn from_code(code: i32) -> Option<Quality> {
        match code {
            0 => Some(Quality::Bad),
            192 => Some(Quality::Good),
            500 => Some(Quality::Stale),
            _ => None,
        }
    }
}

impl From<Quality> for PropertyValue {
    fn from(q: Quality) -> PropertyValue {
        PropertyValue::Value(BasicValue::Int32(q.code()))
    }
}

impl TryFrom<&PropertyValue> for Quality {
    type Error = QualityError;
    fn try_from(v: &PropertyValue) -> Result<Quality, QualityError> {
        match v {
            PropertyValue::Value(BasicValue::Int32(c)) => {
                Quality::from_code(*c).ok_or(QualityError::UnknownCode(*c))
            }
            other => Err(QualityError::WrongType(other.datatype())),
        }
    }
}

impl PropertySet {
    /// The `Quality` property; `Ok(None)` when absent (which means GOOD).
    pub fn quality(&self) -> Result<Option<Quality>, QualityError> {
        self.get(keys::QUALITY).map(Quality::try_from).transpose()
    }

    /// Sets the `Quality` property.
    pub fn with_quality(mut self, quality: Quality) -> PropertySet {
        self.set(keys::QUALITY, quality);
        self
    }

    /// The `engUnit` property, if it is a string.
    pub fn eng_unit(&self) -> Option<&str> {
        match self.get(keys::ENG_UNIT) {
            Some(PropertyValue::Value(BasicValue::String(s) | BasicValue::Text(s))) => Some(s),
            _ => None,
        }
    }

    /// Sets the `engUnit` property.
    pub fn with_eng_unit(mut self, unit: impl Into<String>) -> PropertySet {
        self.set(keys::ENG_UNIT, unit.into());
        self
    }

    /// Sets the `engLow` and `engHigh` properties.
    pub fn with_eng_range(mut self, low: f64, high: f64) -> PropertySet {
        self.set(keys::ENG_LOW, low);
        self.set(keys::ENG_HIGH, high);
        self
    }

    /// The `engLow`/`engHigh` range, if both are numeric.
    pub fn eng_range(&self) -> Option<(f64, f64)> {
        let num = |k| match self.get(k)? {
            PropertyValue::Value(v) => crate::Value::from(v.clone()).as_f64(),
            _ => None,
        };
        Some((num(keys::ENG_LOW)?, num(keys::ENG_HIGH)?))
    }

    /// The `writable` property; absent or not a Boolean means read-only.
    pub fn writable(&self) -> bool {
        matches!(
            self.get(keys::WRITABLE),
            Some(PropertyValue::Value(BasicValue::Boolean(true)))
        )
    }

    /// Sets the `writable` property.
    pub fn with_writable(mut self, writable: bool) -> PropertySet {
        self.set(keys::WRITABLE, writable);
        self
    }
}
