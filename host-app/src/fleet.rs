//! The fleet: which Sparkplug groups this host instance owns (`[sparkplug] groups`), which
//! peer instance owns the others (`[sparkplug] peers`), and the MQTT subscriptions that
//! follow from both.
//!
//! An instance that owns every group (no `groups` key) subscribes to `spBv1.0/#` as a lone
//! Primary Host does. A partitioned instance subscribes, without overlap (an overlapping
//! pair would deliver a message twice and break the `seq` check):
//! - `spBv1.0/+/NBIRTH/+`, `spBv1.0/+/NDEATH/+`, `spBv1.0/+/DBIRTH/+/+`,
//!   `spBv1.0/+/DDEATH/+/+`: births and deaths of every group, for its own groups and for
//!   the read-only fleet view of the others;
//! - `spBv1.0/<group>/NDATA/+` and `spBv1.0/<group>/DDATA/+/+` per owned group name, or
//!   `spBv1.0/+/NDATA/+` and `spBv1.0/+/DDATA/+/+` once any owned entry is a pattern (MQTT
//!   filters have no `Pipeline-*`): then every group's data reaches this instance and the
//!   data of groups it does not own is dropped here, unread (a cost in bandwidth and
//!   decoding-free dispatch, see README);
//! - `spBv1.0/STATE/+`: its own STATE (to answer a stranger's) and the peers'.

use serde::Deserialize;
use sparkplug::topic::{IdPart, validate_id};

/// A group name, or a pattern where `*` stands for any run of characters (`Pipeline-*`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct GroupPattern(String);

impl GroupPattern {
    pub fn new(text: &str) -> GroupPattern {
        GroupPattern(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this entry is a pattern rather than one group's name.
    pub fn is_pattern(&self) -> bool {
        self.0.contains('*')
    }

    /// What is wrong with it as a group name or pattern, if anything.
    pub fn problem(&self) -> Option<String> {
        validate_id(IdPart::GroupId, &self.0)
            .err()
            .map(|e| format!("{:?}: {e} (a group name, or a pattern with `*`)", self.0))
    }

    /// Whether `group` is this name, or matches this pattern.
    pub fn matches(&self, group: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = group.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty(); // no `*`: the whole name
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// `[[sparkplug.peers]]`: another host instance of the fleet and the groups it owns, so
/// this instance can name the owner of a node it only observes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub host_id: String,
    pub groups: Vec<GroupPattern>,
}

/// Which groups this instance owns and who owns the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    host_id: String,
    /// `None`: every group.
    groups: Option<Vec<GroupPattern>>,
    peers: Vec<PeerConfig>,
}

/// Filters of births and deaths of every group.
const LIFECYCLE_FILTERS: [&str; 4] = [
    "spBv1.0/+/NBIRTH/+",
    "spBv1.0/+/NDEATH/+",
    "spBv1.0/+/DBIRTH/+/+",
    "spBv1.0/+/DDEATH/+/+",
];
/// Every host's STATE.
const STATE_FILTER: &str = "spBv1.0/STATE/+";

impl Ownership {
    /// An instance that owns every group (the lone Primary Host).
    pub fn all(host_id: &str) -> Ownership {
        Ownership {
            host_id: host_id.to_owned(),
            groups: None,
            peers: Vec::new(),
        }
    }

    /// An instance owning `groups` (`None`: every group), with its known peers.
    pub fn new(
        host_id: &str,
        groups: Option<Vec<GroupPattern>>,
        peers: Vec<PeerConfig>,
    ) -> Ownership {
        Ownership {
            host_id: host_id.to_owned(),
            groups,
            peers,
        }
    }

    /// This instance's host id.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// The configured peers' host ids, in order.
    pub fn peer_ids(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().map(|p| p.host_id.as_str())
    }

    /// Whether this instance owns only some groups.
    pub fn is_partitioned(&self) -> bool {
        self.groups.is_some()
    }

    /// Whether this instance owns `group`: ingests it, checks its `seq`, sends it
    /// Rebirths and commands.
    pub fn owns(&self, group: &str) -> bool {
        match &self.groups {
            None => true,
            Some(groups) => groups.iter().any(|g| g.matches(group)),
        }
    }

    /// The host id of the instance that owns `group`: this one's, else the first peer
    /// whose groups match; `None` when no configured instance owns it.
    pub fn owner(&self, group: &str) -> Option<&str> {
        if self.owns(group) {
            return Some(&self.host_id);
        }
        self.peers
            .iter()
            .find(|p| p.groups.iter().any(|g| g.matches(group)))
            .map(|p| p.host_id.as_str())
    }

    /// The topic filters of the host's session; `own_state` is its own STATE topic.
    pub fn filters(&self, own_state: &str) -> Vec<String> {
        let Some(groups) = &self.groups else {
            return vec![
                sparkplug::filter::NAMESPACE_ALL.to_owned(),
                own_state.to_owned(),
            ];
        };
        let mut filters: Vec<String> = LIFECYCLE_FILTERS.iter().map(|f| f.to_string()).collect();
        if groups.iter().any(GroupPattern::is_pattern) {
            filters.push("spBv1.0/+/NDATA/+".to_owned());
            filters.push("spBv1.0/+/DDATA/+/+".to_owned());
        } else {
            for g in groups {
                filters.push(format!("spBv1.0/{}/NDATA/+", g.as_str()));
                filters.push(format!("spBv1.0/{}/DDATA/+/+", g.as_str()));
            }
        }
        filters.push(STATE_FILTER.to_owned());
        filters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> GroupPattern {
        GroupPattern::new(text)
    }

    #[test]
    fn names_match_themselves_and_patterns_match_runs() {
        assert!(pattern("Plant1").matches("Plant1"));
        assert!(!pattern("Plant1").matches("Plant10"));
        assert!(!pattern("Plant1").matches("Plant"));
        assert!(pattern("Pipeline-*").matches("Pipeline-"));
        assert!(pattern("Pipeline-*").matches("Pipeline-North"));
        assert!(!pattern("Pipeline-*").matches("Pipeline"));
        assert!(pattern("*").matches("anything"));
        assert!(pattern("*-east").matches("zone-east"));
        assert!(!pattern("*-east").matches("zone-west"));
        assert!(pattern("a*b*c").matches("a-b-c"));
        assert!(pattern("a*b*c").matches("abc"));
        assert!(!pattern("a*b*c").matches("acb"));
        assert!(
            !pattern("ab*ba").matches("aba"),
            "prefix and suffix must not overlap"
        );
    }

    #[test]
    fn owner_is_this_instance_then_the_first_matching_peer() {
        let o = Ownership::new(
            "HostA",
            Some(vec![pattern("Plant1")]),
            vec![PeerConfig {
                host_id: "HostB".into(),
                groups: vec![pattern("Plant2"), pattern("Pipe-*")],
            }],
        );
        assert!(o.owns("Plant1") && !o.owns("Plant2"));
        assert_eq!(o.owner("Plant1"), Some("HostA"));
        assert_eq!(o.owner("Plant2"), Some("HostB"));
        assert_eq!(o.owner("Pipe-7"), Some("HostB"));
        assert_eq!(o.owner("Plant3"), None);
        assert_eq!(Ownership::all("HostA").owner("x"), Some("HostA"));
    }

    #[test]
    fn filters_never_overlap_and_widen_only_for_patterns() {
        let all = Ownership::all("H").filters("spBv1.0/STATE/H");
        assert_eq!(all, ["spBv1.0/#", "spBv1.0/STATE/H"]);
        let named = Ownership::new("H", Some(vec![pattern("P1"), pattern("P2")]), vec![])
            .filters("spBv1.0/STATE/H");
        assert!(named.contains(&"spBv1.0/P1/NDATA/+".to_owned()));
        assert!(named.contains(&"spBv1.0/P2/DDATA/+/+".to_owned()));
        assert!(!named.iter().any(|f| f.ends_with('#')), "{named:?}");
        let wide = Ownership::new("H", Some(vec![pattern("P*")]), vec![]).filters("x");
        assert!(wide.contains(&"spBv1.0/+/NDATA/+".to_owned()), "{wide:?}");
        assert_eq!(wide.len(), 7, "{wide:?}");
    }

    #[test]
    fn names_with_topic_characters_are_problems() {
        assert!(pattern("Plant1").problem().is_none());
        assert!(pattern("Pipe-*").problem().is_none());
        for bad in ["", "a/b", "a+", "#"] {
            assert!(pattern(bad).problem().is_some(), "{bad:?}");
        }
    }
}
