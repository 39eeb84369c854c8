//! The Sparkplug datatype codes, with the spec's numbers and names.

use std::fmt;
use std::str::FromStr;

/// A Sparkplug B datatype: the spec's numeric code and name.
///
/// The placeholder code 0 (`Unknown`) is not a datatype a value can have, so it is
/// not a variant: [`DataType::from_code`] returns `None` for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[allow(missing_docs)] // Variant names are the spec's datatype names.
pub enum DataType {
    Int8 = 1,
    Int16 = 2,
    Int32 = 3,
    Int64 = 4,
    UInt8 = 5,
    UInt16 = 6,
    UInt32 = 7,
    UInt64 = 8,
    Float = 9,
    Double = 10,
    Boolean = 11,
    String = 12,
    DateTime = 13,
    Text = 14,
    Uuid = 15,
    DataSet = 16,
    Bytes = 17,
    File = 18,
    Template = 19,
    PropertySet = 20,
    PropertySetList = 21,
    Int8Array = 22,
    Int16Array = 23,
    Int32Array = 24,
    Int64Array = 25,
    UInt8Array = 26,
    UInt16Array = 27,
    UInt32Array = 28,
    UInt64Array = 29,
    FloatArray = 30,
    DoubleArray = 31,
    BooleanArray = 32,
    StringArray = 33,
    DateTimeArray = 34,
}

impl DataType {
    /// Every datatype, in code order.
    pub const ALL: [DataType; 34] = [
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::UInt8,
        DataType::UInt16,
        DataType::UInt32,
        DataType::UInt64,
        DataType::Float,
        DataType::Double,
        DataType::Boolean,
        DataType::String,
        DataType::DateTime,
        DataType::Text,
        DataType::Uuid,
        DataType::DataSet,
        DataType::Bytes,
        DataType::File,
        DataType::Template,
        DataType::PropertySet,
        DataType::PropertySetList,
        DataType::Int8Array,
        DataType::Int16Array,
        DataType::Int32Array,
        DataType::Int64Array,
        DataType::UInt8Array,
        DataType::UInt16Array,
        DataType::UInt32Array,
        DataType::UInt64Array,
        DataType::FloatArray,
        DataType::DoubleArray,
        DataType::BooleanArray,
        DataType::StringArray,
        DataType::DateTimeArray,
    ];

    /// The spec's numeric code (what goes in `datatype`/`type` on the wire).
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The datatype for a spec code; `None` for 0 (`Unknown`) and codes above 34.
    pub const fn from_code(code: u32) -> Option<DataType> {
        if code >= 1 && code <= 34 {
            Some(Self::ALL[(code - 1) as usize])
        } else {
            None
        }
    }

    /// The spec's name, e.g. `"Int16"`, `"UUID"`, `"BooleanArray"`.
    pub const fn name(self) -> &'static str {
        match self {
            DataType::Int8 => "Int8",
            DataType::Int16 => "Int16",
            DataType::Int32 => "Int32",
            DataType::Int64 => "Int64",
            DataType::UInt8 => "UInt8",
            DataType::UInt16 => "UInt16",
            DataType::UInt32 => "UInt32",
            DataType::UInt64 => "UInt64",
            DataType::Float => "Float",
            DataType::Double => "Double",
            DataType::Boolean => "Boolean",
            DataType::String => "String",
            DataType::DateTime => "DateTime",
            DataType::Text => "Text",
            DataType::Uuid => "UUID",
            DataType::DataSet => "DataSet",
            DataType::Bytes => "Bytes",
            DataType::File => "File",
            DataType::Template => "Template",
            DataType::PropertySet => "PropertySet",
            DataType::PropertySetList => "PropertySetList",
            DataType::Int8Array => "Int8Array",
            DataType::Int16Array => "Int16Array",
            DataType::Int32Array => "Int32Array",
            DataType::Int64Array => "Int64Array",
            DataType::UInt8Array => "UInt8Array",
            DataType::UInt16Array => "UInt16Array",
            DataType::UInt32Array => "UInt32Array",
            DataType::UInt64Array => "UInt64Array",
            DataType::FloatArray => "FloatArray",
            DataType::DoubleArray => "DoubleArray",
            DataType::BooleanArray => "BooleanArray",
            DataType::StringArray => "StringArray",
            DataType::DateTimeArray => "DateTimeArray",
        }
    }

    /// The datatype with the spec's name; exact spelling (`"UInt32"`, `"UUID"`).
    pub fn from_name(name: &str) -> Option<DataType> {
        Self::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// A "basic type" of the spec (Int8 ..= Text): valid for DataSet columns,
    /// Template parameters and PropertyValues.
    pub const fn is_basic(self) -> bool {
        (self as u8) <= DataType::Text as u8
    }

    /// One of the 13 packed array types (Int8Array ..= DateTimeArray).
    pub const fn is_array(self) -> bool {
        (self as u8) >= DataType::Int8Array as u8
    }

    /// Valid as a Metric datatype: everything except PropertySet/PropertySetList.
    pub const fn is_metric_type(self) -> bool {
        !matches!(self, DataType::PropertySet | DataType::PropertySetList)
    }

    /// Valid as a PropertyValue type: the basic types plus PropertySet/PropertySetList.
    pub const fn is_property_type(self) -> bool {
        self.is_basic() || matches!(self, DataType::PropertySet | DataType::PropertySetList)
    }
}

/// Serialized as the spec's name (`"Int16"`), as in the spec's JSON examples.
impl serde::Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name is not one of the spec's datatype names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown Sparkplug datatype name {0:?}")]
pub struct UnknownDataTypeName(pub String);

impl FromStr for DataType {
    type Err = UnknownDataTypeName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataType::from_name(s).ok_or_else(|| UnknownDataTypeName(s.to_owned()))
    }
}

/// The code is 0 (`Unknown`) or above 34.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown Sparkplug datatype code {0}")]
pub struct UnknownDataTypeCode(pub u32);

impl TryFrom<u32> for DataType {
    type Error = UnknownDataTypeCode;
    fn try_from(code: u32) -> Result<Self, Self::Error> {
        DataType::from_code(code).ok_or(UnknownDataTypeCode(code))
    }
}

impl From<DataType> for u32 {
    fn from(t: DataType) -> u32 {
        t.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for (i, t) in DataType::ALL.iter().enumerate() {
            assert_eq!(t.code() as usize, i + 1);
            assert_eq!(DataType::from_code(t.code()), Some(*t));
            assert_eq!(t.name().parse::<DataType>().unwrap(), *t);
        }
        assert_eq!(DataType::from_code(0), None);
        assert_eq!(DataType::from_code(35), None);
        assert_eq!(DataType::Int16.name(), "Int16");
        assert_eq!(DataType::BooleanArray.code(), 32);
        assert_eq!(DataType::Uuid.name(), "UUID");
        assert!("Uint32".parse::<DataType>().is_err());
    }

    #[test]
    fn spec_classes() {
        let basic: Vec<u32> = DataType::ALL
            .iter()
            .filter(|t| t.is_basic())
            .map(|t| t.code())
            .collect();
        assert_eq!(basic, (1..=14).collect::<Vec<_>>());
        let arrays: Vec<u32> = DataType::ALL
            .iter()
            .filter(|t| t.is_array())
            .map(|t| t.code())
            .collect();
        assert_eq!(arrays, (22..=34).collect::<Vec<_>>());
        assert!(!DataType::PropertySet.is_metric_type());
        assert!(DataType::PropertySetList.is_property_type());
        assert!(!DataType::Uuid.is_property_type());
    }
}
