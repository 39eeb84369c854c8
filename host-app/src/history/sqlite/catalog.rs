//! The metric catalog: every registered metric, in memory. Registration answers from it at
//! once, so a birth never waits for a sample commit that holds the writer; new and changed
//! rows are written by the next sample commit, in its transaction and before its samples
//! (a sample is never stored without its metric), or when the store closes.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use crate::history::types::{MetricId, MetricInfo, MetricKey, MetricMeta};

/// A changed row keeps its id; the key is unique in the table and in the catalog alike.
const UPSERT: &str = "INSERT INTO metrics (id, group_id, edge_node_id, device_id, name, datatype, units) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (id) DO UPDATE SET datatype = excluded.datatype, units = excluded.units";

/// Every registered metric, and the rows the database does not have yet.
#[derive(Debug, Default)]
pub(super) struct Catalog {
    by_key: HashMap<MetricKey, (MetricId, MetricMeta)>,
    next_id: i64,
    /// Registrations not yet written, oldest first.
    pending: Vec<MetricInfo>,
}

impl Catalog {
    /// Every metric the database holds.
    pub(super) fn load(conn: &Connection) -> rusqlite::Result<Catalog> {
        let mut stmt = conn.prepare(
            "SELECT id, group_id, edge_node_id, device_id, name, datatype, units FROM metrics",
        )?;
        let rows = stmt.query_map([], |row| {
            let device_id: String = row.get(3)?;
            Ok((
                MetricKey {
                    group_id: row.get(1)?,
                    edge_node_id: row.get(2)?,
                    device_id: (!device_id.is_empty()).then_some(device_id),
                    name: row.get(4)?,
                },
                (
                    MetricId(row.get(0)?),
                    MetricMeta {
                        datatype: row.get(5)?,
                        units: row.get(6)?,
                    },
                ),
            ))
        })?;
        let by_key = rows.collect::<rusqlite::Result<HashMap<_, _>>>()?;
        let next_id = by_key.values().map(|(id, _)| id.0).max().unwrap_or(0) + 1;
        Ok(Catalog {
            by_key,
            next_id,
            pending: Vec::new(),
        })
    }

    /// The id of `key`, new or kept; a change of metadata is queued for writing.
    pub(super) fn register(&mut self, key: &MetricKey, meta: &MetricMeta) -> MetricId {
        let id = match self.by_key.get_mut(key) {
            Some((id, known)) if known == meta => return *id,
            Some((id, known)) => {
                *known = meta.clone();
                *id
            }
            None => {
                let id = MetricId(self.next_id);
                self.next_id += 1;
                self.by_key.insert(key.clone(), (id, meta.clone()));
                id
            }
        };
        self.pending.push(MetricInfo {
            id,
            key: key.clone(),
            meta: meta.clone(),
        });
        id
    }

    pub(super) fn resolve(&self, key: &MetricKey) -> Option<MetricId> {
        self.by_key.get(key).map(|(id, _)| *id)
    }

    /// Every metric, by id.
    pub(super) fn list(&self) -> Vec<MetricInfo> {
        let mut all: Vec<MetricInfo> = self
            .by_key
            .iter()
            .map(|(key, (id, meta))| MetricInfo {
                id: *id,
                key: key.clone(),
                meta: meta.clone(),
            })
            .collect();
        all.sort_by_key(|m| m.id);
        all
    }

    /// The rows to write with the next commit.
    pub(super) fn pending(&self) -> Vec<MetricInfo> {
        self.pending.clone()
    }

    /// The first `count` pending rows were committed.
    pub(super) fn written(&mut self, count: usize) {
        self.pending.drain(..count.min(self.pending.len()));
    }
}

/// Writes catalog rows (inside the caller's transaction).
pub(super) fn write(conn: &Connection, rows: &[MetricInfo]) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut upsert = conn.prepare_cached(UPSERT)?;
    for row in rows {
        upsert.execute(params![
            row.id.0,
            row.key.group_id,
            row.key.edge_node_id,
            row.key.device_id.as_deref().unwrap_or(""),
            row.key.name,
            row.meta.datatype,
            row.meta.units
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(datatype: &str) -> MetricMeta {
        MetricMeta {
            datatype: datatype.into(),
            units: None,
        }
    }

    #[test]
    fn ids_are_handed_out_at_once_and_changes_queued_in_order() {
        let mut c = Catalog {
            next_id: 1,
            ..Catalog::default()
        };
        let a = MetricKey::node("G", "E", "a");
        let b = MetricKey::device("G", "E", "D", "a");
        assert_eq!(c.register(&a, &meta("Double")), MetricId(1));
        assert_eq!(c.register(&b, &meta("Double")), MetricId(2));
        assert_eq!(
            c.register(&a, &meta("Double")),
            MetricId(1),
            "unchanged: nothing queued"
        );
        assert_eq!(c.pending().len(), 2);
        c.written(1);
        assert_eq!(c.register(&a, &meta("Float")), MetricId(1));
        let pending = c.pending();
        assert_eq!(
            pending.iter().map(|m| m.id).collect::<Vec<_>>(),
            [MetricId(2), MetricId(1)]
        );
        assert_eq!(pending[1].meta, meta("Float"));
        assert_eq!(c.resolve(&b), Some(MetricId(2)));
        assert_eq!(c.list()[0].meta, meta("Float"));
    }
}
