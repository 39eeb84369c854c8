//! NCMD and DCMD payloads turned into what the node should do. Anything malformed,
//! unknown, of the wrong datatype or out of range becomes a [`Refused`] entry with the
//! reason, never a panic.

use std::ops::RangeInclusive;

use sparkplug::{DataType, Payload, Value, names};

use super::catalog::{Catalog, command_value, from_sparkplug};
use super::metrics;
use crate::modbus::{self, TagId};

/// What an NCMD asks of the node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeCommand {
    Rebirth,
    NextServer,
    Reboot,
    ScanRate(i64),
}

/// A command metric the node will not act on, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The metric's name, or `alias N`.
    pub metric: String,
    pub reason: String,
}

fn label(m: &sparkplug::Metric) -> String {
    match (&m.name, m.alias) {
        (Some(n), _) => n.clone(),
        (None, Some(a)) => format!("alias {a}"),
        (None, None) => "<no name or alias>".into(),
    }
}

/// Decodes an NCMD payload; a Scan Rate outside `scan_rate_ms` is refused.
pub fn node_commands(
    bytes: &[u8],
    scan_rate_ms: RangeInclusive<i64>,
) -> Result<(Vec<NodeCommand>, Vec<Refused>), String> {
    let payload = Payload::decode(bytes).map_err(|e| e.to_string())?;
    let mut commands = Vec::new();
    let mut refused = Vec::new();
    for m in &payload.metrics {
        let name = m
            .name
            .as_deref()
            .or_else(|| m.alias.and_then(metrics::name_of));
        let expected = match name {
            Some(
                names::NODE_CONTROL_REBIRTH
                | names::NODE_CONTROL_NEXT_SERVER
                | names::NODE_CONTROL_REBOOT,
            ) => DataType::Boolean,
            Some(names::NODE_CONTROL_SCAN_RATE) => DataType::Int64,
            _ => {
                refused.push(Refused {
                    metric: label(m),
                    reason: "not a writable node metric".into(),
                });
                continue;
            }
        };
        let value = match command_value(m, expected) {
            Ok(v) => v,
            Err(reason) => {
                refused.push(Refused {
                    metric: label(m),
                    reason,
                });
                continue;
            }
        };
        match (name, value) {
            (_, Value::Boolean(false)) => {}
            (Some(names::NODE_CONTROL_REBIRTH), _) => commands.push(NodeCommand::Rebirth),
            (Some(names::NODE_CONTROL_NEXT_SERVER), _) => commands.push(NodeCommand::NextServer),
            (Some(names::NODE_CONTROL_REBOOT), _) => commands.push(NodeCommand::Reboot),
            (_, Value::Int64(ms)) if scan_rate_ms.contains(&ms) => {
                commands.push(NodeCommand::ScanRate(ms))
            }
            (_, v) => refused.push(Refused {
                metric: label(m),
                reason: format!(
                    "{v:?} is not a scan rate of {} to {} ms",
                    scan_rate_ms.start(),
                    scan_rate_ms.end()
                ),
            }),
        }
    }
    Ok((commands, refused))
}

/// Tag writes to make, and metrics refused.
pub type DeviceWrites = (Vec<(TagId, modbus::Value)>, Vec<Refused>);

/// Decodes a DCMD payload for `device` into tag writes.
pub fn device_writes(
    catalog: &Catalog,
    device: usize,
    bytes: &[u8],
) -> Result<DeviceWrites, String> {
    let payload = Payload::decode(bytes).map_err(|e| e.to_string())?;
    let mut writes = Vec::new();
    let mut refused = Vec::new();
    for m in &payload.metrics {
        let Some(tag) = catalog.find_tag(device, m.alias, m.name.as_deref()) else {
            refused.push(Refused {
                metric: label(m),
                reason: format!("no such tag on device `{}`", catalog.device_name(device)),
            });
            continue;
        };
        let outcome = command_value(m, catalog.datatype(tag)).and_then(|v| {
            if catalog.tag(tag).access != modbus::Access::ReadWrite {
                return Err("tag is read-only".into());
            }
            from_sparkplug(&v).ok_or_else(|| format!("{v:?} cannot be written to Modbus"))
        });
        match outcome {
            Ok(v) => writes.push((tag, v)),
            Err(reason) => refused.push(Refused {
                metric: catalog.tag(tag).name.clone(),
                reason,
            }),
        }
    }
    Ok((writes, refused))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparkplug::Metric;

    fn encode(p: Payload) -> Vec<u8> {
        p.encode_to_vec().unwrap()
    }

    #[test]
    fn rebirth_and_friends_are_recognised() {
        let bytes = encode(
            Payload::new(1)
                .with_metric(Metric::new(names::NODE_CONTROL_REBIRTH, true))
                .with_metric(Metric::aliased(
                    metrics::alias_of(names::NODE_CONTROL_SCAN_RATE).unwrap(),
                    500i64,
                ))
                .with_metric(Metric::new(names::NODE_CONTROL_REBOOT, false))
                .with_metric(Metric::new(names::NODE_CONTROL_NEXT_SERVER, 1i32))
                .with_metric(Metric::new("Bogus", true)),
        );
        let (commands, refused) = node_commands(&bytes, RANGE).unwrap();
        assert_eq!(commands, [NodeCommand::Rebirth, NodeCommand::ScanRate(500)]);
        assert_eq!(refused.len(), 2);
        assert_eq!(refused[0].metric, names::NODE_CONTROL_NEXT_SERVER);
        assert_eq!(refused[1].metric, "Bogus");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(node_commands(&[0xff, 0xff, 0xff], RANGE).is_err());
    }

    const RANGE: RangeInclusive<i64> = 100..=3_600_000;

    #[test]
    fn scan_rate_out_of_range_or_of_the_wrong_type_is_refused() {
        let scan_rate = |v: sparkplug::Value| {
            let mut m = Metric::new(names::NODE_CONTROL_SCAN_RATE, 0i64);
            m.datatype = Some(v.datatype());
            m.value = sparkplug::MetricValue::Value(v);
            encode(Payload::new(1).with_metric(m))
        };
        for refused_value in [
            Value::Int64(0),
            Value::Int64(-500),
            Value::Int64(99),
            Value::Int64(3_600_001),
            Value::Int64(i64::MAX),
            Value::Int64(i64::MIN),
            Value::Double(500.0),
            Value::String("500".into()),
            Value::Boolean(true),
        ] {
            let (commands, refused) =
                node_commands(&scan_rate(refused_value.clone()), RANGE).unwrap();
            assert!(commands.is_empty(), "{refused_value:?} accepted");
            assert_eq!(refused.len(), 1, "{refused_value:?}");
            assert_eq!(refused[0].metric, names::NODE_CONTROL_SCAN_RATE);
        }
        for accepted in [100, 1000, 3_600_000] {
            let (commands, refused) =
                node_commands(&scan_rate(Value::Int64(accepted)), RANGE).unwrap();
            assert_eq!(commands, [NodeCommand::ScanRate(accepted)]);
            assert!(refused.is_empty());
        }
    }

    #[test]
    fn booleans_of_the_wrong_type_are_refused() {
        for name in [
            names::NODE_CONTROL_REBIRTH,
            names::NODE_CONTROL_REBOOT,
            names::NODE_CONTROL_NEXT_SERVER,
        ] {
            for v in [
                Value::Int64(1),
                Value::String("true".into()),
                Value::Double(1.0),
            ] {
                let mut m = Metric::new(name, true);
                m.datatype = Some(v.datatype());
                m.value = sparkplug::MetricValue::Value(v.clone());
                let bytes = encode(Payload::new(1).with_metric(m));
                let (commands, refused) = node_commands(&bytes, RANGE).unwrap();
                assert!(commands.is_empty(), "{name} = {v:?} accepted");
                assert_eq!(refused.len(), 1, "{name} = {v:?}");
            }
        }
    }
}
