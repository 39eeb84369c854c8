//! The node's alias map: which Sparkplug alias each (device name, tag name) has. An alias
//! is assigned once and never given to another tag: a tag that leaves the configuration
//! retires its alias (it comes back, if ever, under a fresh one), and new tags get
//! aliases above the highest ever assigned. Node metrics keep their fixed aliases below
//! [`FIRST_TAG_ALIAS`].
//!
//! Stored samples carry their alias, so they keep naming the same metric whatever the
//! tag list becomes: replay finds their tag (and its device's index now) through the map,
//! and samples of retired aliases have no tag to go out under.
//!
//! The store keeps the map in its SQLite file (table `aliases`, one row per alias ever
//! assigned, retired ones flagged). A file written before the map existed (schema
//! versions 1 and 2) has an empty map, and its samples were stored under positional
//! aliases (`FIRST_TAG_ALIAS` + the tag's index in the site); an empty map assigns
//! exactly those to the configuration of the first open, so the samples keep their
//! metrics as long as the configuration was not edited in the same upgrade.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use crate::modbus::{DeviceId, Site, TagId};

/// Aliases below this belong to node metrics.
pub const FIRST_TAG_ALIAS: u64 = 64;

/// (device name, tag name): a tag as the configuration names it.
type Key = (String, String);

/// Every alias ever assigned; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasMap {
    /// Aliases of tags in the configuration now (or at the last assignment).
    live: HashMap<Key, u64>,
    /// Aliases retired with their tag, and whom they were given to.
    retired: Vec<(u64, Key)>,
    /// The lowest alias never assigned.
    next: u64,
    /// Changed since it was last saved.
    unsaved: bool,
}

impl AliasMap {
    /// An empty map: its first assignment is positional.
    pub fn new() -> AliasMap {
        AliasMap {
            live: HashMap::new(),
            retired: Vec::new(),
            next: FIRST_TAG_ALIAS,
            unsaved: false,
        }
    }

    /// The aliases of `site`'s tags: kept for tags already known, fresh for new ones (in
    /// site order), and those of tags no longer in the site retired for good.
    pub fn assign(&mut self, site: &Site) -> TagAliases {
        let mut live = HashMap::with_capacity(site.tags.len());
        let mut by_tag = Vec::with_capacity(site.tags.len());
        for tag in &site.tags {
            let device = site.devices.get(tag.device).map_or("", |d| d.name.as_str());
            let key = (device.to_owned(), tag.name.clone());
            let alias = match live.get(&key) {
                // Names are unique per device once checked; a duplicate shares the alias.
                Some(&alias) => alias,
                None => match self.live.remove(&key) {
                    Some(alias) => alias,
                    None => {
                        let alias = self.next;
                        self.next += 1;
                        self.unsaved = true;
                        alias
                    }
                },
            };
            live.insert(key, alias);
            by_tag.push(alias);
        }
        let gone = std::mem::replace(&mut self.live, live);
        if !gone.is_empty() {
            self.unsaved = true;
            let mut gone: Vec<(u64, Key)> = gone.into_iter().map(|(k, a)| (a, k)).collect();
            gone.sort();
            self.retired.extend(gone);
        }
        TagAliases::new(site, by_tag)
    }

    /// The alias `device`'s tag `tag` has now, if it is in the map.
    pub fn alias(&self, device: &str, tag: &str) -> Option<u64> {
        self.live.get(&(device.to_owned(), tag.to_owned())).copied()
    }

    /// Retired aliases, oldest first.
    pub fn retired(&self) -> impl Iterator<Item = u64> + '_ {
        self.retired.iter().map(|(a, _)| *a)
    }

    /// The highest alias ever assigned, if any.
    pub fn highest(&self) -> Option<u64> {
        (self.next > FIRST_TAG_ALIAS).then(|| self.next - 1)
    }

    /// Reads the map from the store's table.
    pub(crate) fn load(conn: &Connection) -> rusqlite::Result<AliasMap> {
        let mut map = AliasMap::new();
        let mut stmt =
            conn.prepare("SELECT alias, device, tag, retired FROM aliases ORDER BY alias")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let alias = row.get::<_, i64>(0)? as u64;
            let key = (row.get(1)?, row.get(2)?);
            if row.get::<_, bool>(3)? {
                map.retired.push((alias, key));
            } else {
                map.live.insert(key, alias);
            }
            map.next = map.next.max(alias + 1);
        }
        Ok(map)
    }

    /// Writes the map to the store's table in one transaction, if it changed since it
    /// was loaded or last saved.
    pub(crate) fn save(&mut self, conn: &mut Connection) -> rusqlite::Result<()> {
        if !self.unsaved {
            return Ok(());
        }
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM aliases", [])?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO aliases (alias, device, tag, retired) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for ((device, tag), alias) in &self.live {
                insert.execute(params![*alias as i64, device, tag, false])?;
            }
            for (alias, (device, tag)) in &self.retired {
                insert.execute(params![*alias as i64, device, tag, true])?;
            }
        }
        tx.commit()?;
        self.unsaved = false;
        Ok(())
    }
}

impl Default for AliasMap {
    fn default() -> AliasMap {
        AliasMap::new()
    }
}

/// The aliases of one site's tags, both ways, and the device each alias belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagAliases {
    by_tag: Vec<u64>,
    tags: HashMap<u64, TagId>,
    devices: HashMap<u64, DeviceId>,
}

impl TagAliases {
    fn new(site: &Site, by_tag: Vec<u64>) -> TagAliases {
        let mut tags = HashMap::with_capacity(by_tag.len());
        let mut devices = HashMap::with_capacity(by_tag.len());
        for (i, (&alias, tag)) in by_tag.iter().zip(&site.tags).enumerate() {
            tags.entry(alias).or_insert(TagId(i as u32));
            devices.entry(alias).or_insert(DeviceId(tag.device as u32));
        }
        TagAliases {
            by_tag,
            tags,
            devices,
        }
    }

    /// The aliases a fresh map gives `site` (`FIRST_TAG_ALIAS` + the tag's index).
    pub fn positional(site: &Site) -> TagAliases {
        AliasMap::new().assign(site)
    }

    /// The alias of a tag of the site; `None` for an index beyond it.
    pub fn alias(&self, tag: TagId) -> Option<u64> {
        self.by_tag.get(tag.index()).copied()
    }

    /// The tag with this alias.
    pub fn tag(&self, alias: u64) -> Option<TagId> {
        self.tags.get(&alias).copied()
    }

    /// The device (its index in the site) whose tag has this alias.
    pub fn device(&self, alias: u64) -> Option<DeviceId> {
        self.devices.get(&alias).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_site;

    fn aliases_of(aliases: &TagAliases, site: &Site) -> Vec<u64> {
        (0..site.tags.len())
            .map(|i| aliases.alias(TagId(i as u32)).unwrap())
            .collect()
    }

    #[test]
    fn a_fresh_map_is_positional() {
        let site = test_site(&[("a", &["x", "y"]), ("b", &["z"])]);
        let mut map = AliasMap::new();
        let aliases = map.assign(&site);
        assert_eq!(aliases_of(&aliases, &site), [64, 65, 66]);
        assert_eq!(aliases, TagAliases::positional(&site));
        assert_eq!(aliases.tag(66), Some(TagId(2)));
        assert_eq!(aliases.device(66), Some(DeviceId(1)));
        assert_eq!(aliases.tag(FIRST_TAG_ALIAS - 1), None);
        assert_eq!(map.highest(), Some(66));
    }

    #[test]
    fn known_tags_keep_their_alias_wherever_they_move_and_new_ones_get_fresh_ones() {
        let mut map = AliasMap::new();
        map.assign(&test_site(&[("a", &["x", "y"]), ("b", &["z"])]));
        // A device inserted first, a tag inserted before the others, y removed.
        let site = test_site(&[("c", &["w"]), ("a", &["new", "x"]), ("b", &["z"])]);
        let aliases = map.assign(&site);
        assert_eq!(aliases_of(&aliases, &site), [67, 68, 64, 66]);
        assert_eq!(aliases.device(66), Some(DeviceId(2)), "b is third now");
        assert_eq!(aliases.tag(65), None, "y's alias is retired");
        assert_eq!(map.retired().collect::<Vec<_>>(), [65]);
        assert_eq!(map.alias("a", "x"), Some(64));
    }

    #[test]
    fn a_retired_alias_is_never_given_again_not_even_to_its_old_tag() {
        let mut map = AliasMap::new();
        map.assign(&test_site(&[("a", &["x", "y"])]));
        map.assign(&test_site(&[("a", &["x"])]));
        let site = test_site(&[("a", &["x", "y", "q"])]);
        let aliases = map.assign(&site);
        assert_eq!(aliases_of(&aliases, &site), [64, 66, 67]);
        // Removing everything and starting over still climbs.
        map.assign(&test_site(&[]));
        let site = test_site(&[("a", &["x"])]);
        assert_eq!(aliases_of(&map.assign(&site), &site), [68]);
        assert_eq!(map.retired().collect::<Vec<_>>(), [65, 64, 66, 67]);
    }

    #[test]
    fn the_map_survives_a_reopen_of_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::store::StoreConfig {
            path: dir.path().join("q.sqlite"),
            ..Default::default()
        };
        let first = test_site(&[("a", &["x", "y", "z"])]);
        let second = test_site(&[("a", &["new", "x", "z"])]);
        {
            let mut store = crate::store::Store::open(&config).unwrap();
            store.assign_aliases(&first);
            store.save_aliases().unwrap();
            store.assign_aliases(&second);
            store.save_aliases().unwrap();
        }
        let mut store = crate::store::Store::open(&config).unwrap();
        assert_eq!(store.alias_map().alias("a", "new"), Some(67));
        assert_eq!(store.alias_map().retired().collect::<Vec<_>>(), [65]);
        // The same list again changes nothing; another new tag climbs past all of them.
        let third = test_site(&[("a", &["new", "x", "z", "later"])]);
        let aliases = store.assign_aliases(&third);
        assert_eq!(aliases_of(&aliases, &third), [67, 64, 66, 68]);
        store.save_aliases().unwrap();
        drop(store);
        let store = crate::store::Store::open(&config).unwrap();
        assert_eq!(store.alias_map().highest(), Some(68));
        assert_eq!(store.alias_map().alias("a", "later"), Some(68));
    }
}
