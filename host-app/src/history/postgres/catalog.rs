//! Metric ids shared by every host instance on one database, without asking it.
//!
//! A metric's id is derived from its key (the first 63 bits of a SHA-256 of the key's
//! parts), so every instance maps the same (group, node, device, metric) to the same id
//! and registration answers from memory: it runs under the host's tracker lock on a
//! runtime worker, where a round trip to the server must not happen. The `metrics` table
//! keeps each id with its key (both unique); the rows registered since the last commit are
//! written with the next sample batch, and a write that finds another key under the same
//! id (a hash collision, about 1 in 10^7 at a million metrics) is refused, naming both.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::history::types::{MetricId, MetricInfo, MetricKey, MetricMeta};

/// The id of `key` in every instance.
pub(super) fn id_of(key: &MetricKey) -> MetricId {
    let mut hash = Sha256::new();
    for part in [
        key.group_id.as_str(),
        key.edge_node_id.as_str(),
        key.device_id.as_deref().unwrap_or(""),
        key.name.as_str(),
    ] {
        // Length-prefixed, so no two keys hash the same parts.
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    MetricId((u64::from_le_bytes(first) >> 1) as i64)
}

/// The metrics this instance registered, and which of them the database lacks.
#[derive(Default)]
pub(super) struct Catalog {
    by_key: HashMap<MetricKey, (MetricId, MetricMeta)>,
    pending: HashMap<MetricId, MetricInfo>,
}

impl Catalog {
    pub(super) fn register(&mut self, key: &MetricKey, meta: &MetricMeta) -> MetricId {
        if let Some((id, known)) = self.by_key.get(key)
            && known == meta
        {
            return *id;
        }
        let id = id_of(key);
        self.by_key.insert(key.clone(), (id, meta.clone()));
        self.pending.insert(
            id,
            MetricInfo {
                id,
                key: key.clone(),
                meta: meta.clone(),
            },
        );
        id
    }

    pub(super) fn resolve(&self, key: &MetricKey) -> Option<MetricId> {
        self.by_key.get(key).map(|(id, _)| *id)
    }

    /// Known from the database (at open, or read back): no write needed.
    pub(super) fn learn(&mut self, info: MetricInfo) {
        self.by_key.entry(info.key).or_insert((info.id, info.meta));
    }

    /// The rows to write with the next commit.
    pub(super) fn pending(&self) -> Vec<MetricInfo> {
        self.pending.values().cloned().collect()
    }

    /// `written` reached the database; a registration changed since stays pending.
    pub(super) fn written(&mut self, written: &[MetricInfo]) {
        for info in written {
            if self.pending.get(&info.id) == Some(info) {
                self.pending.remove(&info.id);
            }
        }
    }

    pub(super) fn pending_infos(&self) -> impl Iterator<Item = &MetricInfo> {
        self.pending.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_positive_and_tell_node_from_device_metrics() {
        let node = MetricKey::node("G", "E", "M");
        let device = MetricKey::device("G", "E", "", "M");
        assert_eq!(id_of(&node), id_of(&node.clone()));
        assert!(id_of(&node).0 >= 0);
        // An empty device id is how the tables spell "no device": the same metric.
        assert_eq!(id_of(&node), id_of(&device));
        assert_ne!(id_of(&node), id_of(&MetricKey::device("G", "E", "D", "M")));
        assert_ne!(
            id_of(&MetricKey::node("GE", "", "M")),
            id_of(&MetricKey::node("G", "E", "M"))
        );
    }
}
