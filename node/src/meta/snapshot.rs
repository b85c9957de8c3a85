//! The metadata snapshot every shard holds: Kafka's metadata as the tree has it, rebuilt only
//! where the tree changed.
//!
//! Applying a transaction notes which of Kafka's paths it touched ([`SnapshotDirty::note`]):
//! a topic's definition (`/brokers/topics/<t>`, `/config/topics/<t>`), one partition's
//! leader (`.../partitions/<p>/state`), or the cluster (brokers, controller, cluster id). The
//! next round's snapshot is the last one with just those parts read again from the tree, so a
//! round that elects a thousand leaders of a ten-thousand-partition topic parses a thousand
//! small state nodes, not the whole topic or every topic.

use super::{config_path, state_path, topic_path, MetaStore};
use crate::config::Endpoint;
use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// What every shard needs to know about topics: an immutable snapshot, replaced whole. A new
/// one shares every topic that did not change with the one before it (`Arc`s), so a change
/// costs what it touches, not what the cluster holds.
#[derive(Debug, Clone, Default)]
pub struct MetaSnapshot {
    pub cluster_id: String,
    pub node_id: i32,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// Topic names by topic id (to route raft messages).
    pub names: HashMap<u128, String>,
    /// Registered brokers: id → the advertised endpoint of each of its Kafka listeners.
    pub brokers: BTreeMap<i32, Vec<Endpoint>>,
    /// The node named in /controller.
    pub controller: Option<i32>,
    /// (leader, leader epoch) of each partition of each topic, as its leader last wrote it to
    /// the tree; (-1, -1) where none has yet.
    pub leaders: HashMap<String, Arc<Vec<(i32, i32)>>>,
    /// zxid of the last transaction the snapshot reflects.
    pub zxid: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: uuid::Uuid,
    /// Replica node ids, per partition.
    pub partitions: Vec<Vec<i32>>,
    /// Config overrides (names and values as Kafka has them).
    pub configs: BTreeMap<String, String>,
    /// Partitions being moved to other nodes, by partition.
    pub reassigning: BTreeMap<i32, Reassignment>,
}

/// A partition on its way to another replica set, as Kafka writes it in the topic's znode:
/// `replicas` is then the target followed by the original replicas that are not in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reassignment {
    /// Replicas of the target that were not in the original set.
    pub adding: Vec<i32>,
    /// Original replicas that are not in the target.
    pub removing: Vec<i32>,
}

impl TopicMeta {
    /// The replica set partition `p` is moving to (its replicas if it is not moving).
    pub fn target(&self, p: i32) -> Vec<i32> {
        let replicas = self.partitions.get(p as usize).cloned().unwrap_or_default();
        match self.reassigning.get(&p) {
            Some(r) => replicas.into_iter().filter(|n| !r.removing.contains(n)).collect(),
            None => replicas,
        }
    }

    /// The replica set partition `p` had before its move began: the voters a replica that
    /// opens during the move starts from (the leader's log brings it the changes since).
    pub fn original(&self, p: i32) -> Vec<i32> {
        let replicas = self.partitions.get(p as usize).cloned().unwrap_or_default();
        match self.reassigning.get(&p) {
            Some(r) => replicas.into_iter().filter(|n| !r.adding.contains(n)).collect(),
            None => replicas,
        }
    }

    /// Starts moving partition `p` to `target` (to its original replicas: cancels a move).
    /// Kafka's layout: replicas = the target, then the current replicas not in it.
    pub fn reassign(&mut self, p: i32, target: Vec<i32>) {
        let original = self.original(p);
        let current = std::mem::take(&mut self.partitions[p as usize]);
        let mut replicas = target.clone();
        replicas.extend(current.iter().filter(|n| !target.contains(n)));
        let adding: Vec<i32> = target.iter().copied().filter(|n| !original.contains(n)).collect();
        let removing: Vec<i32> = current.into_iter().filter(|n| !target.contains(n)).collect();
        self.partitions[p as usize] = replicas;
        if adding.is_empty() && removing.is_empty() {
            self.reassigning.remove(&p);
        } else {
            self.reassigning.insert(p, Reassignment { adding, removing });
        }
    }

    /// Ends partition `p`'s move: its replicas are the target.
    pub fn finish_reassignment(&mut self, p: i32) {
        self.partitions[p as usize] = self.target(p);
        self.reassigning.remove(&p);
    }
}

impl MetaSnapshot {
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name).map(Arc::as_ref)
    }

    /// The leader and leader epoch partition `p` of `topic` last wrote to the tree, if any.
    pub fn tree_leader(&self, topic: &str, p: i32) -> Option<(i32, i32)> {
        let (leader, epoch) = *self.leaders.get(topic)?.get(usize::try_from(p).ok()?)?;
        (leader >= 0).then_some((leader, epoch))
    }
}

/// Node ids in a JSON array (an absent or malformed one reads as empty).
fn ids(value: &serde_json::Value) -> Vec<i32> {
    value.as_array().map_or_else(Vec::new, |a| a.iter().filter_map(|r| r.as_i64().map(|r| r as i32)).collect())
}

pub(super) fn parse_topic(topic_bytes: &[u8], config_bytes: Option<&[u8]>) -> anyhow::Result<TopicMeta> {
    let topic: serde_json::Value = serde_json::from_slice(topic_bytes)?;
    let id = topic["topic_id"].as_str().context("topic_id")?.parse()?;
    let map = topic["partitions"].as_object().context("partitions")?;
    let mut partitions = vec![Vec::new(); map.len()];
    for (index, replicas) in map {
        let index: usize = index.parse()?;
        let slot = partitions.get_mut(index).context("partition numbers are dense")?;
        *slot = ids(replicas);
    }
    let mut reassigning = BTreeMap::new();
    for key in ["adding_replicas", "removing_replicas"] {
        for (index, nodes) in topic[key].as_object().into_iter().flatten() {
            let p: i32 = index.parse()?;
            let entry: &mut Reassignment = reassigning.entry(p).or_default();
            *(if key == "adding_replicas" { &mut entry.adding } else { &mut entry.removing }) = ids(nodes);
        }
    }
    // Only partitions the topic has: the rest of the code indexes `partitions` by these keys.
    reassigning.retain(|p: &i32, r: &mut Reassignment| {
        (0..partitions.len() as i32).contains(p) && (!r.adding.is_empty() || !r.removing.is_empty())
    });
    let mut configs = BTreeMap::new();
    if let Some(bytes) = config_bytes {
        let config: serde_json::Value = serde_json::from_slice(bytes)?;
        if let Some(map) = config["config"].as_object() {
            for (k, v) in map {
                configs.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
            }
        }
    }
    Ok(TopicMeta { id, partitions, configs, reassigning })
}

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
        } else if super::is_kafka_path(path) {
            self.cluster = true;
        }
    }
}

impl MetaStore {
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
