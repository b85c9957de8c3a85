//! The metadata snapshot every shard holds: Kafka's metadata as the tree has it, rebuilt only
//! where the tree changed.
//!
//! Applying a transaction notes which of Kafka's paths it touched ([`SnapshotDirty::note`]):
//! a topic's definition (`/brokers/topics/<t>`, `/config/topics/<t>`), one partition's
//! leader (`.../partitions/<p>/state`), or the cluster (brokers, controller, cluster id). The
//! next round's snapshot is the last one with just those parts read again from the tree, so a
//! round that elects a thousand leaders of a ten-thousand-partition topic parses a thousand
//! small state nodes, not the whole topic or every topic.

use super::paths::{config_path, is_kafka_path, state_path, topic_path};
use super::MetaStore;
use crate::metadata::{parse_topic, MetaSnapshot};
use crate::storage::NodeStorage;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What changed in the tree since the last snapshot.
#[derive(Debug, Default)]
pub struct SnapshotDirty {
    /// Everything (the first snapshot of a start, or after the tree was replaced).
    pub all: bool,
    /// Brokers, the controller or the cluster id.
    pub cluster: bool,
    /// Topics whose definition or configuration changed (created, deleted, moved, grown).
    pub topics: BTreeSet<String>,
    /// Partitions whose leader state changed.
    pub states: BTreeSet<(String, i32)>,
}

impl SnapshotDirty {
    /// Notes a changed path of the tree (those outside Kafka's paths change nothing here).
    pub fn note(&mut self, path: &str) {
        if let Some(rest) = path.strip_prefix("/brokers/topics/") {
            let mut parts = rest.split('/');
            let topic = parts.next().unwrap_or_default();
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (None, ..) => {
                    self.topics.insert(topic.to_owned());
                }
                (Some("partitions"), Some(p), Some("state"), None) => {
                    if let Ok(p) = p.parse::<i32>() {
                        self.states.insert((topic.to_owned(), p));
                    }
                }
                // The partitions/ and partitions/<p> nodes themselves carry nothing.
                _ => {}
            }
        } else if let Some(topic) = path.strip_prefix("/config/topics/") {
            if !topic.contains('/') {
                self.topics.insert(topic.to_owned());
            }
        } else if is_kafka_path(path) {
            self.cluster = true;
        }
    }
}

impl<S: NodeStorage> MetaStore<S> {
    /// The snapshot as of the tree now: the last one with what changed since read again.
    pub(super) fn refresh_snapshot(&mut self) -> MetaSnapshot {
        let dirty = std::mem::take(&mut self.dirty);
        let mut snapshot = if dirty.all {
            MetaSnapshot { node_id: self.node_id, ..MetaSnapshot::default() }
        } else {
            (*self.current).clone()
        };
        if dirty.all || dirty.cluster {
            snapshot.cluster_id =
                self.json_at("/cluster/id").and_then(|v| v["id"].as_str().map(str::to_owned)).unwrap_or_default();
            snapshot.brokers = self
                .tree
                .children("/brokers/ids")
                .unwrap_or_default()
                .iter()
                .filter_map(|id| id.parse::<i32>().ok())
                .filter_map(|id| self.broker_endpoints(id).map(|endpoints| (id, endpoints)))
                .collect();
            snapshot.controller = self.controller_id();
            snapshot.preferred_election = self.preferred_election();
        }
        let topics = if dirty.all {
            self.tree.children("/brokers/topics").unwrap_or_default().into_iter().collect()
        } else {
            dirty.topics
        };
        for name in &topics {
            self.refresh_topic(&mut snapshot, name);
        }
        for (name, p) in dirty.states.iter().filter(|(name, _)| !topics.contains(name)) {
            let Some(leaders) = snapshot.leaders.get_mut(name) else { continue };
            if let Some(slot) = usize::try_from(*p).ok().filter(|&i| i < leaders.len()) {
                Arc::make_mut(leaders)[slot] = self.state_of(name, slot);
            }
        }
        snapshot.zxid = self.tree.last_zxid();
        snapshot
    }

    /// The last preferred-leader election asked for: the zxid of its znode's last write and
    /// the partitions it names (Kafka's JSON: {"version":1,"partitions":[{"topic","partition"}]}).
    fn preferred_election(&self) -> (i64, Vec<(String, i32)>) {
        let Some(node) = self.tree.get(super::paths::PREFERRED_ELECTION) else { return (0, Vec::new()) };
        let json: serde_json::Value = serde_json::from_slice(&node.data).unwrap_or_default();
        let partitions = json["partitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["topic"].as_str()?.to_owned(), i32::try_from(p["partition"].as_i64()?).ok()?)))
            .collect();
        (node.stat.mzxid, partitions)
    }

    /// Reads topic `name` again (gone from the snapshot if gone from the tree).
    fn refresh_topic(&self, snapshot: &mut MetaSnapshot, name: &str) {
        if let Some(old) = snapshot.topics.remove(name) {
            snapshot.names.remove(&old.id.as_u128());
        }
        snapshot.leaders.remove(name);
        let Some(node) = self.tree.get(&topic_path(name)) else { return };
        let config = self.tree.get(&config_path(name)).map(|n| n.data.as_slice());
        match parse_topic(&node.data, config) {
            Ok(meta) => {
                let leaders = (0..meta.partitions.len()).map(|p| self.state_of(name, p)).collect();
                snapshot.names.insert(meta.id.as_u128(), name.to_owned());
                snapshot.leaders.insert(name.to_owned(), Arc::new(leaders));
                snapshot.topics.insert(name.to_owned(), Arc::new(meta));
            }
            Err(e) => tracing::warn!(topic = %name, error = %e, "unreadable topic metadata in the tree"),
        }
    }

    /// (leader, leader epoch) in partition `p`'s state node; (-1, -1) if it has none yet.
    fn state_of(&self, name: &str, p: usize) -> (i32, i32) {
        let Some(state) = self.json_at(&state_path(name, p)) else { return (-1, -1) };
        let leader = state["leader"].as_i64().unwrap_or(-1) as i32;
        let epoch = state["leader_epoch"].as_i64().unwrap_or(-1) as i32;
        (leader, epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::SnapshotDirty;

    #[test]
    fn changed_paths_mark_only_what_they_change() {
        let mut dirty = SnapshotDirty::default();
        for path in ["/zk/app", "/brokers/topics/t/partitions", "/brokers/topics/t/partitions/3"] {
            dirty.note(path);
        }
        assert!(dirty.topics.is_empty() && dirty.states.is_empty() && !dirty.cluster, "nothing a snapshot holds");
        dirty.note("/brokers/topics/t/partitions/3/state");
        dirty.note("/config/topics/u");
        dirty.note("/brokers/topics/v");
        assert_eq!(dirty.states.iter().collect::<Vec<_>>(), vec![&("t".to_owned(), 3)]);
        assert_eq!(dirty.topics.iter().collect::<Vec<_>>(), vec!["u", "v"]);
        assert!(!dirty.cluster);
        dirty.note("/brokers/ids/2");
        assert!(dirty.cluster);
    }
}
