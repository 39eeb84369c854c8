//! What the node knows about its devices' tags in Sparkplug terms: aliases, datatypes,
//! last values and online state; and the device payloads built from them (DBIRTH,
//! DDATA, DDEATH). Pure: no I/O, callers pass the time.
//!
//! Node metrics use aliases `1..FIRST_TAG_ALIAS`; tags have the aliases the node's
//! alias map gave them ([`crate::store::AliasMap`]): unique across the node, and the
//! same for the same (device, tag) in every birth, whatever the tag list becomes.

use infra::clock::millis;
use sparkplug::{DataType, Metric, MetricValue, Payload, PropertySet, Quality};
use std::sync::Arc;

use crate::modbus::{self, Event, Report, Site, Tag, TagId};
pub use crate::store::FIRST_TAG_ALIAS;
use crate::store::TagAliases;

/// The Sparkplug datatype a tag is born with (scaled tags are Double, bits Boolean).
pub fn tag_datatype(tag: &Tag) -> DataType {
    if tag.bit.is_some() {
        return DataType::Boolean;
    }
    match tag.value_type() {
        modbus::DataType::Bool => DataType::Boolean,
        modbus::DataType::I16 => DataType::Int16,
        modbus::DataType::U16 => DataType::UInt16,
        modbus::DataType::I32 => DataType::Int32,
        modbus::DataType::U32 => DataType::UInt32,
        modbus::DataType::I64 => DataType::Int64,
        modbus::DataType::U64 => DataType::UInt64,
        modbus::DataType::F32 => DataType::Float,
        modbus::DataType::F64 => DataType::Double,
        modbus::DataType::String => DataType::String,
    }
}

/// The narrowest datatype of a tag (`economy.narrow_types`): a scaled 16-bit register is
/// Float, whose 24-bit mantissa holds its 65,536 steps exactly; wider registers keep Double.
pub fn narrow_datatype(tag: &Tag) -> DataType {
    let sixteen_bits = matches!(tag.data_type, modbus::DataType::I16 | modbus::DataType::U16);
    match tag_datatype(tag) {
        DataType::Double if tag.scaling.is_some() && sixteen_bits => DataType::Float,
        other => other,
    }
}

/// A Sparkplug value in the datatype its tag was born with (a scaled Double born Float).
pub fn fit(value: sparkplug::Value, datatype: DataType) -> sparkplug::Value {
    match (value, datatype) {
        (sparkplug::Value::Double(v), DataType::Float) => sparkplug::Value::Float(v as f32),
        (v, _) => v,
    }
}

/// A Modbus value as the Sparkplug value of the same type.
pub fn to_sparkplug(value: &modbus::Value) -> sparkplug::Value {
    use sparkplug::Value as S;
    match value {
        modbus::Value::Bool(v) => S::Boolean(*v),
        modbus::Value::I16(v) => S::Int16(*v),
        modbus::Value::U16(v) => S::UInt16(*v),
        modbus::Value::I32(v) => S::Int32(*v),
        modbus::Value::U32(v) => S::UInt32(*v),
        modbus::Value::I64(v) => S::Int64(*v),
        modbus::Value::U64(v) => S::UInt64(*v),
        modbus::Value::F32(v) => S::Float(*v),
        modbus::Value::F64(v) => S::Double(*v),
        modbus::Value::String(v) => S::String(v.clone()),
    }
}

/// A Sparkplug value written by a host, as a Modbus value; `None` for types no tag has.
pub fn from_sparkplug(value: &sparkplug::Value) -> Option<modbus::Value> {
    use sparkplug::Value as S;
    Some(match value {
        S::Boolean(v) => modbus::Value::Bool(*v),
        S::Int16(v) => modbus::Value::I16(*v),
        S::UInt16(v) => modbus::Value::U16(*v),
        S::Int32(v) => modbus::Value::I32(*v),
        S::UInt32(v) => modbus::Value::U32(*v),
        S::Int64(v) => modbus::Value::I64(*v),
        S::UInt64(v) => modbus::Value::U64(*v),
        S::Float(v) => modbus::Value::F32(*v),
        S::Double(v) => modbus::Value::F64(*v),
        S::String(v) | S::Text(v) => modbus::Value::String(v.clone()),
        _ => return None,
    })
}

fn quality(q: modbus::Quality) -> Quality {
    match q {
        modbus::Quality::Good => Quality::Good,
        modbus::Quality::Bad => Quality::Bad,
        modbus::Quality::Stale => Quality::Stale,
    }
}

#[derive(Debug, Clone)]
struct Last {
    value: modbus::Value,
    quality: modbus::Quality,
    timestamp: u64,
}

/// What a device event means for the Sparkplug side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The device came online: publish its DBIRTH.
    Born(usize),
    /// New values: publish a DDATA.
    Data(usize),
    /// The device went offline: publish its DDEATH.
    Died(usize),
}

/// Every device's tags with their aliases and last values.
#[derive(Debug, Clone)]
pub struct Catalog {
    site: Arc<Site>,
    aliases: TagAliases,
    datatypes: Vec<DataType>,
    last: Vec<Option<Last>>,
    online: Vec<bool>,
}

impl Catalog {
    /// The catalog of `site`, its tags under `aliases` (assigned to this site).
    pub fn new(site: Arc<Site>, aliases: TagAliases) -> Catalog {
        Catalog {
            aliases,
            datatypes: site.tags.iter().map(tag_datatype).collect(),
            last: vec![None; site.tags.len()],
            online: vec![false; site.devices.len()],
            site,
        }
    }

    /// The catalog of `site` as the levers say (narrowest datatypes or not).
    pub fn with_levers(
        site: Arc<Site>,
        aliases: TagAliases,
        levers: &super::economy::Levers,
    ) -> Catalog {
        let catalog = Catalog::new(site, aliases);
        if levers.narrow_types {
            catalog.narrowed()
        } else {
            catalog
        }
    }

    /// Births from now on declare the narrowest datatypes, or not (values and states kept).
    pub fn set_narrow_types(&mut self, narrow: bool) {
        let of = if narrow {
            narrow_datatype
        } else {
            tag_datatype
        };
        self.datatypes = self.site.tags.iter().map(of).collect();
    }

    /// Tags born in their narrowest datatype (`economy.narrow_types`).
    pub fn narrowed(mut self) -> Catalog {
        self.datatypes = self.site.tags.iter().map(narrow_datatype).collect();
        self
    }

    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Devices currently online (they have been born, or will be at the next birth).
    pub fn online_devices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.online.len()).filter(|&d| self.online[d])
    }

    /// The device is online (born, once the node has births on a link).
    pub fn is_online(&self, device: usize) -> bool {
        self.online.get(device).copied().unwrap_or(false)
    }

    pub fn device_name(&self, device: usize) -> &str {
        &self.site.devices[device].name
    }

    pub fn device_index(&self, name: &str) -> Option<usize> {
        self.site.devices.iter().position(|d| d.name == name)
    }

    /// The alias of a tag of the site (0, no alias, for an index beyond it).
    pub fn alias(&self, tag: TagId) -> u64 {
        self.aliases.alias(tag).unwrap_or(0)
    }

    /// The site's aliases.
    pub fn aliases(&self) -> &TagAliases {
        &self.aliases
    }

    /// The tag of `device` with this alias or name.
    pub fn find_tag(&self, device: usize, alias: Option<u64>, name: Option<&str>) -> Option<TagId> {
        let index = match (alias, name) {
            (Some(a), _) => self.aliases.tag(a)?.index(),
            (None, Some(n)) => self
                .site
                .tags
                .iter()
                .position(|t| t.device == device && t.name == n)?,
            (None, None) => return None,
        };
        let tag = self.site.tags.get(index)?;
        (tag.device == device).then_some(TagId(index as u32))
    }

    pub fn datatype(&self, tag: TagId) -> DataType {
        self.datatypes[tag.index()]
    }

    pub fn tag(&self, tag: TagId) -> &Tag {
        &self.site.tags[tag.index()]
    }

    /// Records an engine event; says what to publish.
    pub fn apply(&mut self, event: &Event) -> Change {
        let device = event.device().index();
        let report = match event {
            Event::Online(r) | Event::Data(r) | Event::Offline { report: r, .. } => r,
        };
        self.record(report);
        match event {
            Event::Online(_) => {
                self.online[device] = true;
                Change::Born(device)
            }
            Event::Data(_) => Change::Data(device),
            Event::Offline { .. } => {
                self.online[device] = false;
                Change::Died(device)
            }
        }
    }

    fn record(&mut self, report: &Report) {
        for s in &report.samples {
            if let Some(slot) = self.last.get_mut(s.tag.index()) {
                *slot = Some(Last {
                    value: s.value.clone(),
                    quality: s.quality,
                    timestamp: millis(s.timestamp),
                });
            }
        }
    }

    /// `device`'s tags take their last values from `old` (matched by device and tag
    /// name), timestamps included: a Rebirth then restates the samples already sent, which
    /// the host already has, instead of making new ones at the birth's time.
    pub fn carry_last(&mut self, old: &Catalog, device: usize) {
        let Some(old_device) = old.device_index(self.device_name(device)) else {
            return;
        };
        let old_tags: std::collections::HashMap<&str, usize> = old
            .site
            .tags
            .iter()
            .enumerate()
            .filter(|(_, t)| t.device == old_device)
            .map(|(j, t)| (t.name.as_str(), j))
            .collect();
        for (i, tag) in self.site.tags.iter().enumerate() {
            if tag.device != device {
                continue;
            }
            if let Some(last) = old_tags
                .get(tag.name.as_str())
                .and_then(|&j| old.last[j].as_ref())
            {
                self.last[i] = Some(last.clone());
            }
        }
    }

    /// Every device is offline (the engine restarted); births follow its Online events.
    pub fn forget_devices(&mut self) {
        self.online.iter_mut().for_each(|o| *o = false);
    }

    /// A DBIRTH: every tag of the device with name, alias, datatype, last value (null
    /// before the first read), timestamp, and engineering unit, range, writable and Quality
    /// properties.
    pub fn dbirth(&self, device: usize, now: u64) -> Payload {
        let mut payload = Payload::new(now);
        for (i, tag) in self.site.tags.iter().enumerate() {
            if tag.device != device {
                continue;
            }
            let id = TagId(i as u32);
            let mut properties = PropertySet::new();
            if let Some(unit) = &tag.units {
                properties = properties.with_eng_unit(unit.clone());
            }
            if let Some((low, high)) = tag.eng_range {
                properties = properties.with_eng_range(low, high);
            }
            if tag.access == modbus::Access::ReadWrite {
                properties = properties.with_writable(true);
            }
            let metric = match &self.last[i] {
                Some(last) => {
                    if last.quality != modbus::Quality::Good {
                        properties = properties.with_quality(quality(last.quality));
                    }
                    let value = fit(to_sparkplug(&last.value), self.datatypes[i]);
                    Metric::new(tag.name.clone(), value).with_timestamp(last.timestamp)
                }
                None => Metric::null(tag.name.clone(), self.datatypes[i]).with_timestamp(now),
            };
            let mut metric = metric.with_alias(self.alias(id));
            // A value's own type may differ from the birth type only by scaling.
            metric.datatype = Some(self.datatypes[i]);
            if !properties.is_empty() {
                metric = metric.with_properties(properties);
            }
            payload.metrics.push(metric);
        }
        payload
    }

    /// A DDATA with the report's samples: alias only, no datatype, own timestamp,
    /// Quality when not GOOD.
    pub fn ddata(&self, report: &Report, now: u64) -> Payload {
        let mut payload = Payload::new(now);
        payload.metrics.reserve(report.samples.len());
        for s in &report.samples {
            payload.metrics.push(data_metric(
                self.alias(s.tag),
                &s.value,
                s.quality,
                millis(s.timestamp),
            ));
        }
        payload
    }

    /// [`Catalog::ddata`] with each value in its tag's birth datatype.
    pub fn ddata_fitted(&self, report: &Report, now: u64) -> Payload {
        let mut payload = Payload::new(now);
        payload.metrics.reserve(report.samples.len());
        for s in &report.samples {
            payload.metrics.push(self.data_metric_fitted(
                self.alias(s.tag),
                &s.value,
                s.quality,
                millis(s.timestamp),
            ));
        }
        payload
    }

    /// [`data_metric`] with the value in the birth datatype of the tag with this alias.
    pub fn data_metric_fitted(
        &self,
        alias: u64,
        value: &modbus::Value,
        q: modbus::Quality,
        timestamp: u64,
    ) -> Metric {
        let mut metric = data_metric(alias, value, q, timestamp);
        let datatype = self
            .aliases
            .tag(alias)
            .and_then(|t| self.datatypes.get(t.index()));
        if let (Some(&datatype), MetricValue::Value(v)) = (datatype, &mut metric.value) {
            *v = fit(v.clone(), datatype);
        }
        metric
    }

    /// A DDEATH: a timestamp (the publisher adds seq).
    pub fn ddeath(now: u64) -> Payload {
        Payload::new(now)
    }
}

/// One DATA metric: alias, timestamp, value without datatype, Quality when not GOOD.
pub fn data_metric(
    alias: u64,
    value: &modbus::Value,
    q: modbus::Quality,
    timestamp: u64,
) -> Metric {
    let mut metric = Metric::aliased(alias, to_sparkplug(value))
        .without_datatype()
        .with_timestamp(timestamp);
    if q != modbus::Quality::Good {
        metric = metric.with_properties(PropertySet::new().with_quality(quality(q)));
    }
    metric
}

/// The value of a command metric, typed with the datatype the birth gave it.
pub fn command_value(metric: &Metric, datatype: DataType) -> Result<sparkplug::Value, String> {
    if let Some(sent) = metric.datatype
        && sent != datatype
    {
        return Err(format!("datatype {sent} where the birth says {datatype}"));
    }
    let mut typed = metric.clone();
    typed
        .resolve(datatype)
        .map_err(|e| format!("value does not fit {datatype}: {e}"))?;
    match typed.value {
        MetricValue::Value(v) if v.datatype() == datatype => Ok(v),
        MetricValue::Value(v) => Err(format!(
            "value of type {} where the birth says {datatype}",
            v.datatype()
        )),
        MetricValue::Null => Err("null value".into()),
        MetricValue::Untyped(_) => Err("untyped value".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_values_must_match_the_birth_type() {
        let ok = Metric::aliased(70, 5i32);
        assert_eq!(
            command_value(&ok, DataType::Int32),
            Ok(sparkplug::Value::Int32(5))
        );
        let wrong = Metric::aliased(70, true);
        assert!(
            command_value(&wrong, DataType::Int32)
                .unwrap_err()
                .contains("Boolean")
        );
        let mut null = Metric::aliased(70, 1i32);
        null.value = MetricValue::Null;
        assert!(command_value(&null, DataType::Int32).is_err());
    }

    #[test]
    fn data_metrics_carry_quality_only_when_not_good() {
        let good = data_metric(70, &modbus::Value::U16(1), modbus::Quality::Good, 5);
        assert_eq!(good.properties, None);
        assert_eq!(good.datatype, None);
        assert_eq!(good.name, None);
        let bad = data_metric(70, &modbus::Value::U16(1), modbus::Quality::Bad, 5);
        let props = bad.properties.unwrap();
        assert_eq!(props.quality(), Ok(Some(Quality::Bad)));
        assert_eq!(
            props.get("Quality"),
            Some(&sparkplug::PropertyValue::Value(
                sparkplug::BasicValue::Int32(0)
            ))
        );
        let stale = data_metric(70, &modbus::Value::U16(1), modbus::Quality::Stale, 5);
        assert_eq!(
            stale.properties.unwrap().quality(),
            Ok(Some(Quality::Stale))
        );
    }

    #[test]
    fn values_round_trip_between_modbus_and_sparkplug() {
        for v in [
            modbus::Value::Bool(true),
            modbus::Value::I16(-3),
            modbus::Value::U32(7),
            modbus::Value::F64(2.5),
            modbus::Value::String("x".into()),
        ] {
            assert_eq!(from_sparkplug(&to_sparkplug(&v)), Some(v));
        }
    }

    fn report(device: u32, samples: &[(u32, u16, u64)]) -> Report {
        Report {
            device: modbus::DeviceId(device),
            scan_class: Some(0),
            samples: samples
                .iter()
                .map(|&(tag, v, ms)| modbus::Sample {
                    tag: TagId(tag),
                    value: modbus::Value::U16(v),
                    quality: modbus::Quality::Good,
                    timestamp: std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                })
                .collect(),
        }
    }

    #[test]
    fn a_rebirth_restates_the_last_samples_sent_at_their_own_time() {
        let site = Arc::new(crate::store::test_site(&[
            ("a", &["x"]),
            ("b", &["y", "z"]),
        ]));
        let mut old = Catalog::new(Arc::clone(&site), TagAliases::positional(&site));
        old.apply(&Event::Data(report(1, &[(1, 7, 1_000), (2, 8, 1_000)])));
        // Devices swapped, a tag inserted before y; the line's snapshot is newer.
        let site = Arc::new(crate::store::test_site(&[
            ("b", &["w", "y", "z"]),
            ("a", &["x"]),
        ]));
        let mut new = Catalog::new(Arc::clone(&site), TagAliases::positional(&site));
        new.apply(&Event::Online(report(
            0,
            &[(0, 1, 5_000), (1, 7, 5_000), (2, 8, 5_000)],
        )));
        new.carry_last(&old, 0);
        let birth = new.dbirth(0, 6_000);
        let at = |name: &str| {
            let m = birth.metric(name).unwrap();
            (m.timestamp, m.value.clone())
        };
        let u16_at = |ms: u64, v: u16| (Some(ms), MetricValue::Value(sparkplug::Value::UInt16(v)));
        assert_eq!(at("y"), u16_at(1_000, 7));
        assert_eq!(at("z"), u16_at(1_000, 8));
        assert_eq!(
            at("w"),
            u16_at(5_000, 1),
            "new to the catalog: the snapshot's"
        );
    }
}
