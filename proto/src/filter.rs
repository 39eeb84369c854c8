//! The MQTT topic filters Sparkplug subscribers use: the whole namespace (a host, a spy),
//! one group, the commands of one edge node and its devices, one host's STATE.
//!
//! Ids are checked as in [`Topic`](crate::Topic): a filter built here matches exactly the
//! topics its ids can produce, never more (an id holding `+` or `#` is refused).

use crate::topic::{IdPart, MessageType, NAMESPACE, StateTopic, TopicError, validate_id};

/// Every Sparkplug B message: edge node and device messages and host STATE.
pub const NAMESPACE_ALL: &str = "spBv1.0/#";

/// Every message of one group: `spBv1.0/<group_id>/#`.
pub fn group(group_id: &str) -> Result<String, TopicError> {
    validate_id(IdPart::GroupId, group_id)?;
    Ok(format!("{NAMESPACE}/{group_id}/#"))
}

/// The NCMD topic of one edge node: `spBv1.0/<group_id>/NCMD/<edge_node_id>`.
pub fn node_commands(group_id: &str, edge_node_id: &str) -> Result<String, TopicError> {
    node_level(group_id, MessageType::NCmd, edge_node_id)
}

/// The DCMD topics of every device of one edge node:
/// `spBv1.0/<group_id>/DCMD/<edge_node_id>/+`.
pub fn device_commands(group_id: &str, edge_node_id: &str) -> Result<String, TopicError> {
    let mut filter = node_level(group_id, MessageType::DCmd, edge_node_id)?;
    filter.push_str("/+");
    Ok(filter)
}

/// One host's STATE topic: `spBv1.0/STATE/<host_id>`.
pub fn state(host_id: &str) -> Result<String, TopicError> {
    Ok(StateTopic::new(host_id)?.to_string())
}

fn node_level(
    group_id: &str,
    message_type: MessageType,
    edge_node_id: &str,
) -> Result<String, TopicError> {
    validate_id(IdPart::GroupId, group_id)?;
    validate_id(IdPart::EdgeNodeId, edge_node_id)?;
    Ok(format!(
        "{NAMESPACE}/{group_id}/{message_type}/{edge_node_id}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Topic;

    #[test]
    fn filters_are_spelled_as_the_spec_does() {
        assert_eq!(NAMESPACE_ALL, format!("{NAMESPACE}/#"));
        assert_eq!(group("Plant1").unwrap(), "spBv1.0/Plant1/#");
        assert_eq!(
            node_commands("Plant1", "Edge1").unwrap(),
            "spBv1.0/Plant1/NCMD/Edge1"
        );
        assert_eq!(
            device_commands("Plant1", "Edge1").unwrap(),
            "spBv1.0/Plant1/DCMD/Edge1/+"
        );
        assert_eq!(state("scada").unwrap(), "spBv1.0/STATE/scada");
    }

    #[test]
    fn the_node_command_filter_is_the_node_command_topic() {
        let topic = Topic::new("g", MessageType::NCmd, "n", None).unwrap();
        assert_eq!(node_commands("g", "n").unwrap(), topic.to_string());
        let dcmd = Topic::new("g", MessageType::DCmd, "n", Some("pump")).unwrap();
        let filter = device_commands("g", "n").unwrap();
        assert_eq!(
            filter.strip_suffix('+'),
            dcmd.to_string().strip_suffix("pump")
        );
    }

    #[test]
    fn ids_with_wildcards_or_separators_are_refused() {
        assert_eq!(
            group("a/b"),
            Err(TopicError::ReservedChar {
                part: IdPart::GroupId,
                found: '/'
            })
        );
        assert_eq!(
            node_commands("g", "+"),
            Err(TopicError::ReservedChar {
                part: IdPart::EdgeNodeId,
                found: '+'
            })
        );
        assert_eq!(
            device_commands("#", "n"),
            Err(TopicError::ReservedChar {
                part: IdPart::GroupId,
                found: '#'
            })
        );
        assert_eq!(
            device_commands("g", ""),
            Err(TopicError::EmptyId(IdPart::EdgeNodeId))
        );
        assert_eq!(state(""), Err(TopicError::EmptyId(IdPart::HostId)));
    }
}
