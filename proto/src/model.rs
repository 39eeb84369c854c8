//! The typed Sparkplug B payload: what applications build and read.
//!
//! Shapes follow the spec's components; where the protobuf schema allows states
//! the spec forbids, the types here do not (a PropertySet is one list of key/value
//! pairs, a Template is a definition exactly when it has no `template_ref`).

use crate::value::{BasicValue, Value, WireValue};
use crate::{DataType, ValueError};

/// A Sparkplug B payload (the body of NBIRTH, NDATA, DDATA, NCMD, ...).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Payload {
    /// Publish time, milliseconds since the Unix epoch, UTC.
    pub timestamp: Option<u64>,
    /// The metrics, in order.
    pub metrics: Vec<Metric>,
    /// The sequence number as sent (a [`crate::Seq`] is 0..=255; absent on NDEATH/NCMD/DCMD).
    pub seq: Option<u64>,
    /// Schema marker; `SPBV1.0_COMPRESSED` marks a compressed envelope.
    pub uuid: Option<String>,
    /// Opaque body; the compressed inner payload of an envelope.
    pub body: Option<Vec<u8>>,
}

impl Payload {
    /// An empty payload with a publish timestamp.
    pub fn new(timestamp: u64) -> Payload {
        Payload {
            timestamp: Some(timestamp),
            ..Payload::default()
        }
    }

    /// Sets the sequence number.
    pub fn with_seq(mut self, seq: crate::Seq) -> Payload {
        self.seq = Some(u64::from(seq.value()));
        self
    }

    /// The sequence number as a [`crate::Seq`]: `Ok(None)` when absent, an error
    /// when above 255.
    pub fn sequence(&self) -> Result<Option<crate::Seq>, crate::CounterOutOfRange> {
        self.seq.map(crate::Seq::try_from).transpose()
    }

    /// Appends a metric.
    pub fn with_metric(mut self, metric: Metric) -> Payload {
        self.metrics.push(metric);
        self
    }

    /// The first metric with this name.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
    }
}

/// One metric: a name and/or alias, a timestamp, a datatype and a value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metric {
    /// Slash-delimited metric name; omitted in DATA/CMD once an alias is born.
    pub name: Option<String>,
    /// Alias bound to the name in the birth.
    pub alias: Option<u64>,
    /// Acquisition time, milliseconds since the Unix epoch, UTC.
    pub timestamp: Option<u64>,
    /// The datatype as sent; `None` when a DATA/CMD metric leaves it to the birth.
    /// When set together with a [`MetricValue::Value`], the two must agree.
    pub datatype: Option<DataType>,
    /// The value is not real time (store and forward).
    pub is_historical: bool,
    /// Hosts should not historize this value.
    pub is_transient: bool,
    /// Metadata for bytes/file/multi-part values.
    pub metadata: Option<Box<MetaData>>,
    /// Custom properties (Quality, engineering units, ...).
    pub properties: Option<PropertySet>,
    /// The value, explicitly null, or a value whose datatype was not sent.
    pub value: MetricValue,
}

/// What a metric carries.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum MetricValue {
    /// `is_null` is set: the metric has no value.
    Null,
    /// A typed value.
    Value(Value),
    /// The metric did not carry a datatype: the oneof as sent, to be typed with
    /// the datatype from the birth ([`Metric::resolve`]).
    Untyped(WireValue),
}

impl Metric {
    /// A metric with nothing set and a null value (the decoder's starting point).
    pub(crate) const fn empty() -> Metric {
        Metric {
            name: None,
            alias: None,
            timestamp: None,
            datatype: None,
            is_historical: false,
            is_transient: false,
            metadata: None,
            properties: None,
            value: MetricValue::Null,
        }
    }

    /// A named metric with a typed value; the datatype follows the value.
    pub fn new(name: impl Into<String>, value: impl Into<Value>) -> Metric {
        let value = value.into();
        Metric {
            name: Some(name.into()),
            alias: None,
            timestamp: None,
            datatype: Some(value.datatype()),
            is_historical: false,
            is_transient: false,
            metadata: None,
            properties: None,
            value: MetricValue::Value(value),
        }
    }

    /// An alias-only metric (NDATA/DDATA after the birth), datatype included.
    pub fn aliased(alias: u64, value: impl Into<Value>) -> Metric {
        let mut m = Metric::new(String::new(), value);
        m.name = None;
        m.alias = Some(alias);
        m
    }

    /// A null metric of the given datatype.
    pub fn null(name: impl Into<String>, datatype: DataType) -> Metric {
        let mut m = Metric::new(name, false);
        m.datatype = Some(datatype);
        m.value = MetricValue::Null;
        m
    }

    /// Sets the alias.
    pub fn with_alias(mut self, alias: u64) -> Metric {
        self.alias = Some(alias);
        self
    }

    /// Sets the acquisition timestamp.
    pub fn with_timestamp(mut self, timestamp: u64) -> Metric {
        self.timestamp = Some(timestamp);
        self
    }

    /// Marks the value historical (store and forward).
    pub fn historical(mut self) -> Metric {
        self.is_historical = true;
        self
    }

    /// Marks the value transient.
    pub fn transient(mut self) -> Metric {
        self.is_transient = true;
        self
    }

    /// Sets the properties.
    pub fn with_properties(mut self, properties: PropertySet) -> Metric {
        self.properties = Some(properties);
        self
    }

    /// Omits the datatype on the wire (DATA messages whose receivers know it from
    /// the birth; saves two bytes per metric).
    pub fn without_datatype(mut self) -> Metric {
        self.datatype = None;
        self
    }

    /// The typed value, if the metric has one.
    pub fn typed_value(&self) -> Option<&Value> {
        match &self.value {
            MetricValue::Value(v) => Some(v),
            _ => None,
        }
    }

    /// Types an untyped value with the datatype the birth gave this metric, and
    /// records the datatype. Typed and null metrics are returned unchanged.
    pub fn resolve(&mut self, datatype: DataType) -> Result<(), ValueError> {
        if let MetricValue::Untyped(w) = &self.value {
            self.value = MetricValue::Value(w.to_value(datatype)?);
        }
        if self.datatype.is_none() {
            self.datatype = Some(datatype);
        }
        Ok(())
    }
}

/// Metadata describing bytes, file and multi-part values.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
#[allow(missing_docs)] // Field names are the spec's.
pub struct MetaData {
    pub is_multi_part: Option<bool>,
    pub content_type: Option<String>,
    pub size: Option<u64>,
    pub seq: Option<u64>,
    pub file_name: Option<String>,
    pub file_type: Option<String>,
    pub md5: Option<String>,
    pub description: Option<String>,
}

/// A PropertySet: key/value pairs in order (the wire's parallel `keys`/`values`
/// arrays, which must be of equal length, become one list).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct PropertySet {
    /// The properties, in wire order.
    pub properties: Vec<Property>,
}

/// One property of a [`PropertySet`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Property {
    /// The property name.
    pub key: String,
    /// Its value.
    pub value: PropertyValue,
}

/// The value of a property.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum PropertyValue {
    /// A value of a basic type.
    Value(BasicValue),
    /// A nested property set.
    PropertySet(PropertySet),
    /// A list of property sets.
    PropertySetList(Vec<PropertySet>),
    /// `is_null` set; the datatype is still sent.
    Null(DataType),
}

impl PropertyValue {
    /// The datatype sent in the `type` field.
    pub fn datatype(&self) -> DataType {
        match self {
            PropertyValue::Value(v) => v.datatype(),
            PropertyValue::PropertySet(_) => DataType::PropertySet,
            PropertyValue::PropertySetList(_) => DataType::PropertySetList,
            PropertyValue::Null(t) => *t,
        }
    }
}

impl<T: Into<BasicValue>> From<T> for PropertyValue {
    fn from(v: T) -> PropertyValue {
        PropertyValue::Value(v.into())
    }
}

impl PropertySet {
    /// An empty set.
    pub fn new() -> PropertySet {
        PropertySet::default()
    }

    /// Appends a property.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<PropertyValue>) -> PropertySet {
        self.properties.push(Property {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// The value of the first property with this key.
    pub fn get(&self, key: &str) -> Option<&PropertyValue> {
        self.properties
            .iter()
            .find(|p| p.key == key)
            .map(|p| &p.value)
    }

    /// Sets a property, replacing an existing one with the same key.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<PropertyValue>) {
        let key = key.into();
        let value = value.into();
        match self.properties.iter_mut().find(|p| p.key == key) {
            Some(p) => p.value = value,
            None => self.properties.push(Property { key, value }),
        }
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.properties.len()
    }

    /// No properties.
    pub fn is_empty(&self) -> bool {
        self.properties.is_empty()
    }
}

/// A DataSet: typed columns and rows of cells.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct DataSet {
    /// The columns, each a name and a basic datatype.
    pub columns: Vec<Column>,
    /// The rows; each has one cell per column, of the column's datatype or null.
    pub rows: Vec<Row>,
}

/// One DataSet column.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Column {
    /// Column header.
    pub name: String,
    /// Column datatype; a basic type.
    pub datatype: DataType,
}

/// One DataSet row: a cell per column, `None` where the cell is empty.
pub type Row = Vec<Option<BasicValue>>;

/// A DataSet whose shape breaks the spec's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataSetError {
    /// A column datatype that is not a basic type.
    #[error("column {column} has datatype {datatype}, not a basic type")]
    ColumnType {
        /// Column index.
        column: usize,
        /// Its datatype.
        datatype: DataType,
    },
    /// A row whose width differs from the number of columns.
    #[error("row {row} has {found} cells, the dataset has {expected} columns")]
    RowWidth {
        /// Row index.
        row: usize,
        /// Number of columns.
        expected: usize,
        /// Cells in the row.
        found: usize,
    },
    /// A cell whose type is not its column's.
    #[error("row {row} column {column}: {found} value in a {expected} column")]
    CellType {
        /// Row index.
        row: usize,
        /// Column index.
        column: usize,
        /// Column datatype.
        expected: DataType,
        /// Cell datatype.
        found: DataType,
    },
}

impl DataSet {
    /// A dataset with these columns and no rows.
    pub fn new(
        columns: impl IntoIterator<Item = (String, DataType)>,
    ) -> Result<DataSet, DataSetError> {
        let ds = DataSet {
            columns: columns
                .into_iter()
                .map(|(name, datatype)| Column { name, datatype })
                .collect(),
            rows: Vec::new(),
        };
        ds.validate()?;
        Ok(ds)
    }

    /// Appends a row after checking its width and cell types.
    pub fn push_row(&mut self, row: Row) -> Result<(), DataSetError> {
        self.check_row(self.rows.len(), &row)?;
        self.rows.push(row);
        Ok(())
    }

    /// Checks the spec's shape rules: basic column types, row width == columns,
    /// each cell of its column's type.
    pub fn validate(&self) -> Result<(), DataSetError> {
        for (column, c) in self.columns.iter().enumerate() {
            if !c.datatype.is_basic() {
                return Err(DataSetError::ColumnType {
                    column,
                    datatype: c.datatype,
                });
            }
        }
        for (i, row) in self.rows.iter().enumerate() {
            self.check_row(i, row)?;
        }
        Ok(())
    }

    fn check_row(&self, row: usize, cells: &Row) -> Result<(), DataSetError> {
        if cells.len() != self.columns.len() {
            return Err(DataSetError::RowWidth {
                row,
                expected: self.columns.len(),
                found: cells.len(),
            });
        }
        for (column, (cell, col)) in cells.iter().zip(&self.columns).enumerate() {
            if let Some(v) = cell
                && v.datatype() != col.datatype
            {
                return Err(DataSetError::CellType {
                    row,
                    column,
                    expected: col.datatype,
                    found: v.datatype(),
                });
            }
        }
        Ok(())
    }
}

/// A Template (user-defined type): a definition, or an instance of one.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Template {
    /// Optional version string.
    pub version: Option<String>,
    /// `None` for a definition; for an instance, the name of the metric holding
    /// the definition. `is_definition` on the wire follows from this.
    pub template_ref: Option<String>,
    /// The member metrics.
    pub metrics: Vec<Metric>,
    /// The parameters (defaults in a definition, values in an instance).
    pub parameters: Vec<Parameter>,
}

impl Template {
    /// An empty template definition.
    pub fn definition() -> Template {
        Template::default()
    }

    /// An empty instance of the definition published as metric `template_ref`.
    pub fn instance(template_ref: impl Into<String>) -> Template {
        Template {
            template_ref: Some(template_ref.into()),
            ..Template::default()
        }
    }

    /// A definition (`is_definition` true, no `template_ref`).
    pub fn is_definition(&self) -> bool {
        self.template_ref.is_none()
    }

    /// Appends a member metric.
    pub fn with_metric(mut self, metric: Metric) -> Template {
        self.metrics.push(metric);
        self
    }

    /// Appends a parameter.
    pub fn with_parameter(mut self, parameter: Parameter) -> Template {
        self.parameters.push(parameter);
        self
    }
}

/// A Template parameter: a name, a basic datatype and an optional value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Parameter {
    /// The parameter name.
    pub name: String,
    /// Its basic datatype.
    pub datatype: DataType,
    /// Its value (default in a definition); when set its datatype is `datatype`.
    pub value: Option<BasicValue>,
}

impl Parameter {
    /// A parameter with a value; the datatype follows the value.
    pub fn new(name: impl Into<String>, value: impl Into<BasicValue>) -> Parameter {
        let value = value.into();
        Parameter {
            name: name.into(),
            datatype: value.datatype(),
            value: Some(value),
        }
    }
}
