//! Kafka's metadata as every shard sees it: an immutable snapshot of the topics (their
//! partitions' replicas, configs, moves), partition leaders, brokers and the controller, built
//! by shard 0's metadata store from the tree (meta/snapshot.rs) and sent to every shard whole.
//! Plain data, low in the node: shards, front ends and the admin endpoint read it.

use crate::config::Endpoint;
use anyhow::Context;
use braid_engine::hash::HashMap;
use std::collections::BTreeMap;
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
    /// The last preferred-leader election asked for (ElectLeaders, written to
    /// /admin/preferred_replica_election as Kafka's tools did): the zxid that wrote it, and its
    /// partitions. The replicas leading them hand leadership to the preferred replica.
    pub preferred_election: (i64, Vec<(String, i32)>),
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
    /// Where DeleteRecords moved a partition's log start offset (Kafka's logStartOffset), by
    /// partition: the records below are gone for clients, and every replica deletes the whole
    /// segments below it. Kept in the topic's znode (`braid_log_start_offsets`) so that every
    /// replica, and every later leader, holds the same start.
    pub log_start: BTreeMap<i32, i64>,
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

pub fn parse_topic(topic_bytes: &[u8], config_bytes: Option<&[u8]>) -> anyhow::Result<TopicMeta> {
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
    let mut log_start = BTreeMap::new();
    for (index, offset) in topic["braid_log_start_offsets"].as_object().into_iter().flatten() {
        if let (Ok(p), Some(offset)) = (index.parse::<i32>(), offset.as_i64()) {
            if (0..partitions.len() as i32).contains(&p) && offset > 0 {
                log_start.insert(p, offset);
            }
        }
    }
    Ok(TopicMeta { id, partitions, configs, reassigning, log_start })
}

/// A snapshot shared with every shard.
pub type SharedSnapshot = Arc<MetaSnapshot>;
