//! Tag lists as CSV, one row per tag, the way integrators keep them in a spreadsheet.
//!
//! The header row names the columns; only `device`, `name`, `address` and `type` are
//! required, any other column may be left out or left empty. Columns are the keys of a
//! TOML tag ([`TagConfig`]) plus `device`:
//!
//! `device,name,table,address,bit,type,length,order,scan_class,access,units,gain,offset,raw_min,raw_max,eng_min,eng_max,deadband,deadband_percent,description`
//!
//! Problems name the file, the line and the column (the field number, 1-based), keyed by
//! the column's name.

use std::io::{Read, Write};
use std::sync::Arc;

use infra::{ConfigError, ConfigProblem, Problems};

use super::config::{ModbusConfig, RowSource, TagConfig};

/// Reads tag rows; each keeps its line and the file's columns for later validation
/// messages. Every bad row is reported, each at its file, line and column.
pub fn import_tags(mut reader: impl Read, file: &str) -> Result<Vec<TagConfig>, ConfigError> {
    // Read whole (sheets are small) so lines are counted from byte offsets: the reader's
    // own line count is off by one per CRLF line, which spreadsheets write.
    let mut text = Vec::new();
    reader
        .read_to_end(&mut text)
        .map_err(|e| ConfigError::from(ConfigProblem::new("", e).in_file(file)))?;
    let lines = Lines(&text);
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_slice());
    let headers = rdr
        .headers()
        .map_err(|e| ConfigError::from(csv_problem(file, &e, None, lines)))?
        .clone();
    let columns: Arc<[String]> = headers.iter().map(str::to_owned).collect();
    let mut rows = Vec::new();
    let mut problems = Problems::new();
    for record in rdr.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                problems.add(csv_problem(file, &e, None, lines));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| lines.at(p));
        match record.deserialize::<TagConfig>(Some(&headers)) {
            Ok(mut row) => {
                row.source = Some(RowSource {
                    file: file.to_owned(),
                    line,
                    columns: Arc::clone(&columns),
                });
                rows.push(row);
            }
            Err(e) => problems.add(csv_problem(file, &e, Some((&headers, &record)), lines)),
        }
    }
    problems.finish(rows)
}

/// The problem a CSV error is, keyed by its column's name and placed at its line and
/// column (the field number, 1-based; the row's start when no column is known).
fn csv_problem(
    file: &str,
    e: &csv::Error,
    row: Option<(&csv::StringRecord, &csv::StringRecord)>,
    lines: Lines<'_>,
) -> ConfigProblem {
    let mut line = e.position().map_or(1, |p| lines.at(p));
    let mut column = None;
    let mut message = e.to_string();
    if let csv::ErrorKind::Deserialize { pos, err } = e.kind() {
        line = pos.as_ref().map_or(line, |p| lines.at(p));
        message = err.kind().to_string();
        column = err
            .field()
            .map(|i| i as usize)
            .or_else(|| row.and_then(|(h, r)| column_in_message(&message, h, r)));
    }
    let key = column
        .and_then(|i| row.and_then(|(h, _)| h.get(i)))
        .unwrap_or_default();
    ConfigProblem::new(key, message)
        .in_file(file)
        .at(line, column.map_or(1, |i| i as u64 + 1))
}

/// Line numbers of a sheet, counted from byte offsets.
#[derive(Clone, Copy)]
struct Lines<'a>(&'a [u8]);

impl Lines<'_> {
    /// The 1-based line a record starts on. The reader places a record after a CR at
    /// the LF that follows it: line ends at the position are skipped.
    fn at(self, position: &csv::Position) -> u64 {
        let mut start =
            usize::try_from(position.byte()).map_or(self.0.len(), |b| b.min(self.0.len()));
        while start < self.0.len() && matches!(self.0[start], b'\r' | b'\n') {
            start += 1;
        }
        1 + self.0[..start].iter().filter(|&&b| b == b'\n').count() as u64
    }
}

/// Serde's own messages (unknown variant `x`, unknown field `y`) carry no column index:
/// find the column by the quoted name or value.
fn column_in_message(
    message: &str,
    headers: &csv::StringRecord,
    record: &csv::StringRecord,
) -> Option<usize> {
    let quoted = message.split('`').nth(1)?;
    headers
        .iter()
        .position(|h| h == quoted)
        .or_else(|| record.iter().position(|v| v == quoted))
}

/// Writes every tag of every device, one row each, with the header row.
pub fn export_tags(config: &ModbusConfig, writer: impl Write) -> Result<(), csv::Error> {
    let rows: Vec<TagConfig> = config
        .devices
        .iter()
        .flat_map(|device| {
            device.tags.iter().map(|tag| TagConfig {
                device: Some(device.name.clone()),
                ..tag.clone()
            })
        })
        .collect();
    write_rows(&rows, writer)
}

/// Writes rows that name their device, with the header row.
pub fn write_rows(rows: &[TagConfig], writer: impl Write) -> Result<(), csv::Error> {
    let mut wtr = csv::Writer::from_writer(writer);
    for row in rows {
        wtr.serialize(row)?;
    }
    wtr.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::tag::Table;
    use crate::modbus::value::{ByteOrder, DataType};

    const SHEET: &str = "\
device,name,table,address,bit,type,length,order,scan_class,access,units,gain,offset,eng_min,eng_max,deadband
boiler,temp,,40001,,f32,,CDAB,fast,,degC,,,0,200,0.5
boiler,run,,00003,,bool,,,,read_write,,,,,,
boiler,alarm_word_b3,holding,10,3,bool,,,,,,,,,,
";

    const TOML: &str = r#"
        [[modbus.scan_classes]]
        name = "fast"
        period_ms = 100
        [[modbus.devices]]
        name = "boiler"
        host = "127.0.0.1"
    "#;

    #[test]
    fn import_attach_validate_and_export_round_trip() {
        let rows = import_tags(SHEET.as_bytes(), "tags.csv").unwrap();
        assert_eq!(rows.len(), 3);
        let mut config = ModbusConfig::from_toml(TOML, "t.toml").unwrap();
        config.attach_rows(rows).unwrap();
        let site = config.validate().unwrap();
        assert_eq!(site.tags[0].order, ByteOrder::CDAB);
        assert_eq!(site.tags[0].data_type, DataType::F32);
        // Leading zeros survive: 00003 is coil 2, not holding register 2.
        assert_eq!((site.tags[1].table, site.tags[1].address), (Table::Coil, 2));
        assert_eq!(site.tags[2].bit, Some(3));

        let mut out = Vec::new();
        export_tags(&config, &mut out).unwrap();
        let again = import_tags(out.as_slice(), "export.csv").unwrap();
        let mut config2 = ModbusConfig::from_toml(TOML, "t.toml").unwrap();
        config2.attach_rows(again).unwrap();
        assert_eq!(config2.validate().unwrap().tags, site.tags);
    }

    #[test]
    fn errors_name_line_and_column() {
        let bad_type = "device,name,address,type\nboiler,a,40001,u16\nboiler,b,40002,float\n";
        let e = import_tags(bad_type.as_bytes(), "tags.csv")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("tags.csv:3:4: type: unknown variant `float`"),
            "{e}"
        );

        let bad_column = "device,name,address,type,colour\nboiler,a,40001,u16,red\n";
        let e = import_tags(bad_column.as_bytes(), "tags.csv")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("tags.csv:2:5: colour: unknown field `colour`"),
            "{e}"
        );

        // Every bad row is reported, not only the first.
        let two_bad = "device,name,address,type,bit\nboiler,a,40001,float,\nboiler,b,40002,u16,x\n";
        let e = import_tags(two_bad.as_bytes(), "tags.csv").unwrap_err();
        assert_eq!(e.keys(), ["type", "bit"], "{e}");
        let places: Vec<_> = e
            .problems()
            .iter()
            .map(|p| (p.file.as_deref(), p.position.map(|p| (p.line, p.column))))
            .collect();
        assert_eq!(
            places,
            [
                (Some("tags.csv"), Some((2, 4))),
                (Some("tags.csv"), Some((3, 5)))
            ]
        );

        let bad_value =
            "device,name,address,type,access\nboiler,a,40001,u16,\nboiler,b,30001,u16,read_write\n";
        let rows = import_tags(bad_value.as_bytes(), "tags.csv").unwrap();
        let mut config = ModbusConfig::from_toml(TOML, "t.toml").unwrap();
        config.attach_rows(rows).unwrap();
        let e = config.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("tags.csv:3:5: access: a input_register cannot be written"),
            "{e}"
        );

        // Spreadsheets end lines with CRLF: the lines are the same.
        let crlf = "device,name,address,type\r\nboiler,a,40001,u16\r\nboiler,b,40002,u16\r\nboiler,c,40003,float\r\n";
        let e = import_tags(crlf.as_bytes(), "tags.csv")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tags.csv:4:4: type: unknown variant"), "{e}");

        let unknown_device = "device,name,address,type\npump,a,40001,u16\n";
        let rows = import_tags(unknown_device.as_bytes(), "tags.csv").unwrap();
        let mut config = ModbusConfig::from_toml(TOML, "t.toml").unwrap();
        let e = config.attach_rows(rows).unwrap_err().to_string();
        assert!(
            e.starts_with("tags.csv:2:1: device: no device `pump`"),
            "{e}"
        );
    }
}
