//! Operator commands: a value for one metric of an edge node or device, checked against
//! the metric's birth datatype, published as NCMD/DCMD (by alias alone when the birth
//! gave one, else by name); and Rebirth requests. Each is recorded in the audit log,
//! under the logged-in user, whatever the outcome.

use infra::clock::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sparkplug::{DataType, Metric, Value};

use crate::history::{AuditEntry, CommandOutcome, MetricKey};
use crate::session::Publisher;
use crate::shared::HostShared;
use crate::tracker::{Liveness, NodeId};

/// Longest id accepted from a request.
const MAX_ID_LEN: usize = 256;

/// A write as the panel asks for it. Who asks is the logged-in caller, never a field:
/// an unknown field (such as `user`) is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    pub group: String,
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    pub metric: String,
    pub value: Json,
}

/// Why a write was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The request itself is wrong (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// No such node, device or metric (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The target cannot take a command now, or another host instance owns its group
    /// (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// Publishing or auditing failed (HTTP 500).
    #[error("{0}")]
    Failed(String),
}

/// A write that was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReceipt {
    pub audit_id: i64,
    pub topic_type: &'static str,
}

/// Checks, publishes and audits one write by `user`.
pub async fn write(
    shared: &HostShared,
    publisher: &Publisher,
    request: &WriteRequest,
    user: &str,
) -> Result<WriteReceipt, WriteError> {
    check_ids(&[
        ("group", Some(&request.group)),
        ("node", Some(&request.node)),
        ("device", request.device.as_ref()),
        ("metric", Some(&request.metric)),
    ])?;
    let key = match &request.device {
        Some(device) => MetricKey::device(&request.group, &request.node, device, &request.metric),
        None => MetricKey::node(&request.group, &request.node, &request.metric),
    };
    let checked = check_target(shared, request);
    let (metric, outcome) = match checked {
        Ok(metric) => {
            let node = NodeId::new(&request.group, &request.node);
            published(
                publisher
                    .command(&node, request.device.as_deref(), vec![metric])
                    .await,
            )
        }
        Err(e) => (Err(e), CommandOutcome::Rejected),
    };
    let entry = AuditEntry {
        ts: now_ms(),
        user: user.to_owned(),
        metric: key,
        value: request.value.to_string(),
        outcome,
        detail: metric.as_ref().err().map(ToString::to_string),
    };
    let audit_id = audit(shared, entry).await?;
    metric.map(|()| WriteReceipt {
        audit_id,
        topic_type: if request.device.is_some() {
            "DCMD"
        } else {
            "NCMD"
        },
    })
}

/// Asks edge node `group`/`node` for its births again (an NCMD of `Node Control/Rebirth`),
/// audited under `user`; the audit entry's id.
pub async fn rebirth(
    shared: &HostShared,
    publisher: &Publisher,
    group: &str,
    node: &str,
    user: &str,
) -> Result<i64, WriteError> {
    check_ids(&[
        ("group", Some(&group.to_owned())),
        ("node", Some(&node.to_owned())),
    ])?;
    let node_id = NodeId::new(group, node);
    let checked = if let Err(e) = check_owned(shared, &node_id) {
        Err(e)
    } else if !shared.is_connected() {
        Err(WriteError::Conflict(
            "the host is not connected to the MQTT broker".into(),
        ))
    } else if shared.tracker().node(&node_id).is_none() {
        Err(WriteError::NotFound(format!(
            "edge node {node_id} is unknown"
        )))
    } else {
        Ok(())
    };
    let (result, outcome) = match checked {
        Ok(()) => published(publisher.rebirth(&node_id).await),
        Err(e) => (Err(e), CommandOutcome::Rejected),
    };
    let entry = AuditEntry {
        ts: now_ms(),
        user: user.to_owned(),
        metric: MetricKey::node(group, node, sparkplug::names::NODE_CONTROL_REBIRTH),
        value: "true".to_owned(),
        outcome,
        detail: result.as_ref().err().map(ToString::to_string),
    };
    let audit_id = audit(shared, entry).await?;
    result.map(|()| audit_id)
}

/// A command's publish, as its caller and its audit row see it.
fn published<E: std::fmt::Display>(
    result: Result<(), E>,
) -> (Result<(), WriteError>, CommandOutcome) {
    match result {
        Ok(()) => (Ok(()), CommandOutcome::Sent),
        Err(e) => (
            Err(WriteError::Failed(format!("not published: {e}"))),
            CommandOutcome::Failed,
        ),
    }
}

/// Appends `entry` to the audit log off the async workers; its id.
async fn audit(shared: &HostShared, entry: AuditEntry) -> Result<i64, WriteError> {
    let store = std::sync::Arc::clone(&shared.store);
    tokio::task::spawn_blocking(move || store.audit_append(&entry))
        .await
        .map_err(|e| WriteError::Failed(format!("audit log: {e}")))?
        .map_err(|e| WriteError::Failed(format!("audit log: {e}")))
}

fn check_ids(fields: &[(&str, Option<&String>)]) -> Result<(), WriteError> {
    for &(field, value) in fields {
        let Some(value) = value else { continue };
        if value.trim().is_empty() {
            return Err(WriteError::BadRequest(format!("`{field}` is empty")));
        }
        if value.len() > MAX_ID_LEN {
            return Err(WriteError::BadRequest(format!(
                "`{field}` is longer than {MAX_ID_LEN} bytes"
            )));
        }
    }
    Ok(())
}

/// Commands go only to nodes of groups this instance owns: another instance is their
/// Primary Host. The refusal names the owner when the configuration knows it.
fn check_owned(shared: &HostShared, node: &NodeId) -> Result<(), WriteError> {
    if shared.ownership.owns(&node.group_id) {
        return Ok(());
    }
    Err(WriteError::Conflict(
        match shared.ownership.owner(&node.group_id) {
            Some(owner) => format!(
                "edge node {node} is in group {:?}, owned by host {owner:?}: send the command there",
                node.group_id
            ),
            None => format!(
                "edge node {node} is in group {:?}, not owned by this host (sparkplug.groups) nor by a known peer",
                node.group_id
            ),
        },
    ))
}

/// The metric to publish, when the target is known, online and the value fits.
fn check_target(shared: &HostShared, request: &WriteRequest) -> Result<Metric, WriteError> {
    check_owned(shared, &NodeId::new(&request.group, &request.node))?;
    if !shared.is_connected() {
        return Err(WriteError::Conflict(
            "the host is not connected to the MQTT broker".into(),
        ));
    }
    let tracker = shared.tracker();
    let node_id = NodeId::new(&request.group, &request.node);
    let node = tracker
        .node(&node_id)
        .ok_or_else(|| WriteError::NotFound(format!("edge node {node_id} is unknown")))?;
    if node.state != Liveness::Online {
        return Err(WriteError::Conflict(format!(
            "edge node {node_id} is offline"
        )));
    }
    let metrics = match &request.device {
        Some(device) => {
            let d = node.device(device).ok_or_else(|| {
                WriteError::NotFound(format!("device {node_id}/{device} is unknown"))
            })?;
            if d.state != Liveness::Online {
                return Err(WriteError::Conflict(format!(
                    "device {node_id}/{device} is offline"
                )));
            }
            &d.metrics
        }
        None => &node.metrics,
    };
    let m = metrics.get(&request.metric).ok_or_else(|| {
        WriteError::NotFound(format!("metric {:?} is not in the birth", request.metric))
    })?;
    let datatype = m.datatype.ok_or_else(|| {
        WriteError::Conflict(format!("metric {:?} has no datatype", request.metric))
    })?;
    let value = json_to_value(&request.value, datatype)
        .map_err(|reason| WriteError::BadRequest(format!("`value`: {reason}")))?;
    Ok(command_metric(&m.name, m.alias, value).with_timestamp(now_ms()))
}

/// An NCMD/DCMD metric: by alias only when the birth gave one (no name, no datatype:
/// tck-id-payloads-alias-data-cmd-requirement, tck-id-payloads-metric-datatype-not-req),
/// else by name with its datatype.
pub fn command_metric(name: &str, alias: Option<u64>, value: Value) -> Metric {
    match alias {
        Some(alias) => Metric::aliased(alias, value).without_datatype(),
        None => Metric::new(name, value),
    }
}

/// A JSON value as a Sparkplug value of `datatype`, refused when it does not fit.
pub fn json_to_value(json: &Json, datatype: DataType) -> Result<Value, String> {
    fn int<T: TryFrom<i64> + TryFrom<u64>>(json: &Json, datatype: DataType) -> Result<T, String> {
        let out_of_range = || format!("{json} does not fit {datatype}");
        if let Some(v) = json.as_u64() {
            T::try_from(v).map_err(|_| out_of_range())
        } else if let Some(v) = json.as_i64() {
            T::try_from(v).map_err(|_| out_of_range())
        } else {
            Err(format!("{datatype} needs an integer, got {json}"))
        }
    }
    let float = || {
        json.as_f64()
            .ok_or_else(|| format!("{datatype} needs a number, got {json}"))
    };
    let text = || {
        json.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{datatype} needs a string, got {json}"))
    };
    Ok(match datatype {
        DataType::Int8 => Value::Int8(int(json, datatype)?),
        DataType::Int16 => Value::Int16(int(json, datatype)?),
        DataType::Int32 => Value::Int32(int(json, datatype)?),
        DataType::Int64 => Value::Int64(int(json, datatype)?),
        DataType::UInt8 => Value::UInt8(int(json, datatype)?),
        DataType::UInt16 => Value::UInt16(int(json, datatype)?),
        DataType::UInt32 => Value::UInt32(int(json, datatype)?),
        DataType::UInt64 => Value::UInt64(int(json, datatype)?),
        DataType::DateTime => Value::DateTime(int(json, datatype)?),
        DataType::Float => {
            let v = float()?;
            let f = v as f32;
            if f.is_infinite() {
                return Err(format!("{json} does not fit Float"));
            }
            Value::Float(f)
        }
        DataType::Double => Value::Double(float()?),
        DataType::Boolean => Value::Boolean(
            json.as_bool()
                .ok_or_else(|| format!("Boolean needs true or false, got {json}"))?,
        ),
        DataType::String => Value::String(text()?),
        DataType::Text => Value::Text(text()?),
        DataType::Uuid => Value::Uuid(text()?),
        other => return Err(format!("writing {other} metrics is not supported")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_checked_against_the_datatype() {
        assert_eq!(
            json_to_value(&json!(7), DataType::Int16),
            Ok(Value::Int16(7))
        );
        assert_eq!(
            json_to_value(&json!(-1), DataType::UInt8),
            Err("-1 does not fit UInt8".into())
        );
        assert_eq!(
            json_to_value(&json!(300), DataType::UInt8),
            Err("300 does not fit UInt8".into())
        );
        assert!(json_to_value(&json!(1.5), DataType::Int32).is_err());
        assert_eq!(
            json_to_value(&json!(1.5), DataType::Double),
            Ok(Value::Double(1.5))
        );
        assert_eq!(
            json_to_value(&json!(true), DataType::Boolean),
            Ok(Value::Boolean(true))
        );
        assert!(json_to_value(&json!("true"), DataType::Boolean).is_err());
        assert!(json_to_value(&json!(1e300), DataType::Float).is_err());
        assert_eq!(
            json_to_value(&json!(u64::MAX), DataType::UInt64),
            Ok(Value::UInt64(u64::MAX))
        );
        assert!(json_to_value(&json!([1]), DataType::Int32Array).is_err());
    }

    #[test]
    fn an_aliased_command_metric_carries_the_alias_alone() {
        let m = command_metric("Setpoint", Some(2), Value::UInt16(75));
        assert_eq!(
            (m.name.as_deref(), m.alias, m.datatype),
            (None, Some(2), None)
        );
        let m = command_metric("Setpoint", None, Value::UInt16(75));
        assert_eq!(
            (m.name.as_deref(), m.alias, m.datatype),
            (Some("Setpoint"), None, Some(DataType::UInt16))
        );
    }
}
