//! Metric names the specification gives a meaning to.

/// The birth/death sequence metric of NBIRTH and NDEATH (0..=255, datatype
/// [`BdSeq::DATATYPE`](crate::BdSeq::DATATYPE)).
pub const BD_SEQ: &str = "bdSeq";

/// Boolean metric every NBIRTH carries with value false; a host writes true in
/// an NCMD to ask for a new NBIRTH and DBIRTHs.
pub const NODE_CONTROL_REBIRTH: &str = "Node Control/Rebirth";

/// Boolean NCMD metric asking the edge node to reboot (optional).
pub const NODE_CONTROL_REBOOT: &str = "Node Control/Reboot";

/// Boolean NCMD metric asking the edge node to move to its next MQTT server (optional).
pub const NODE_CONTROL_NEXT_SERVER: &str = "Node Control/Next Server";

/// Int64 metric with the edge node's scan rate in milliseconds (optional).
pub const NODE_CONTROL_SCAN_RATE: &str = "Node Control/Scan Rate";
