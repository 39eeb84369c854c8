//! Looking at Sparkplug payloads the way a technician does: raw bytes in, JSON out.

use std::collections::HashMap;

use serde_json::Value as Json;
use sparkplug::{DataType, DecodeError, DecodeLimits, MetricValue, Payload, ValueError};

/// Why a payload could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The payload bytes are not a Sparkplug B payload.
    #[error("payload: {0}")]
    Payload(#[source] DecodeError),
    /// The birth given to resolve aliases is not a Sparkplug B payload.
    #[error("birth: {0}")]
    Birth(#[source] DecodeError),
    /// A metric's value does not fit the datatype its birth declares.
    #[error("metrics[{index}] (alias {alias:?}): {source}")]
    Resolve {
        index: usize,
        alias: Option<u64>,
        #[source]
        source: ValueError,
    },
}

/// Decodes one payload (compressed or not) to its JSON view. With a birth, metrics
/// sent by alias alone get their names, and metrics sent without a datatype get the
/// birth's, as a host sees them.
pub fn decode(bytes: &[u8], birth: Option<&[u8]>) -> Result<Json, InspectError> {
    let limits = DecodeLimits::default();
    let mut payload = Payload::decode_with(bytes, &limits).map_err(InspectError::Payload)?;
    if let Some(birth) = birth {
        let birth = Payload::decode_with(birth, &limits).map_err(InspectError::Birth)?;
        resolve(&mut payload, &birth)?;
    }
    Ok(crate::json::payload(&payload))
}

/// Completes metrics from a birth: by alias or by name, whichever the birth gave.
pub fn resolve(payload: &mut Payload, birth: &Payload) -> Result<(), InspectError> {
    let mut by_alias: HashMap<u64, (&str, Option<DataType>)> = HashMap::new();
    let mut by_name: HashMap<&str, Option<DataType>> = HashMap::new();
    for m in &birth.metrics {
        let Some(name) = m.name.as_deref() else {
            continue;
        };
        if let Some(alias) = m.alias {
            by_alias.insert(alias, (name, m.datatype));
        }
        by_name.insert(name, m.datatype);
    }
    for (index, metric) in payload.metrics.iter_mut().enumerate() {
        let born = match (&metric.name, metric.alias) {
            (Some(name), _) => by_name.get(name.as_str()).copied().flatten(),
            (None, Some(alias)) => by_alias.get(&alias).and_then(|(name, datatype)| {
                metric.name = Some((*name).to_owned());
                *datatype
            }),
            (None, None) => None,
        };
        if let (Some(datatype), MetricValue::Untyped(_)) = (born, &metric.value) {
            metric
                .resolve(datatype)
                .map_err(|source| InspectError::Resolve {
                    index,
                    alias: metric.alias,
                    source,
                })?;
        }
    }
    Ok(())
}
