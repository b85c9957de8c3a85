//! Kafka's metadata at the paths Kafka used with ZooKeeper: the path of each znode, the JSON
//! written there (a topic's replicas and moves, its configuration, a partition's leader state),
//! which paths every shard must see ([`is_kafka_path`]), the transaction that writes a
//! partition's state node, and what a transaction's outcome means to a Kafka client
//! ([`reply_for`]).

use crate::metadata::TopicMeta;
use crate::msg::MetaReply;
use braid_engine::tree::{DataTree, Txn, TxnError};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

/// Paths of the tree whose changes every shard must see (the rest is ZooKeeper clients' own).
/// Where an ElectLeaders asks for preferred leaders (Kafka's znode for it).
pub(super) const PREFERRED_ELECTION: &str = "/admin/preferred_replica_election";

pub(super) fn is_kafka_path(path: &str) -> bool {
    // The root too: creating or deleting one of these changes its children.
    path == "/"
        || ["/brokers", "/config", "/cluster", "/controller", "/admin"]
            .iter()
            .any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// What a transaction's outcome means to a Kafka client.
pub fn reply_for(result: Result<(), TxnError>) -> MetaReply {
    match result.map_err(|e| e.root().clone()) {
        Ok(()) => Ok(()),
        Err(TxnError::NodeExists(p)) => Err((ResponseError::TopicAlreadyExists.code(), format!("{p} exists"))),
        Err(TxnError::NoNode(p)) => Err((ResponseError::UnknownTopicOrPartition.code(), format!("{p} does not exist"))),
        Err(TxnError::BadVersion(p)) => {
            Err((ResponseError::InvalidRequest.code(), format!("{p} changed meanwhile; try again")))
        }
        Err(e) => Err((ResponseError::InvalidRequest.code(), e.to_string())),
    }
}

pub(super) fn topic_path(name: &str) -> String {
    format!("/brokers/topics/{name}")
}
pub(super) fn partitions_path(name: &str) -> String {
    format!("/brokers/topics/{name}/partitions")
}
pub(super) fn state_path(name: &str, partition: usize) -> String {
    format!("/brokers/topics/{name}/partitions/{partition}/state")
}
pub(super) fn state_json(leader: i32, epoch: i32, replicas: &[i32]) -> Vec<u8> {
    serde_json::json!({"controller_epoch": 1, "leader": leader, "version": 1, "leader_epoch": epoch, "isr": replicas})
        .to_string()
        .into_bytes()
}

/// A partition's state node, as its leader (of leader epoch `epoch`) reports itself: set if the
/// tree has it, else created (with the partition's own node if that is missing too). A topic's
/// creation writes no per-partition node: each appears when its first leader is elected, as
/// Kafka's controller writes it after the election, so creating ten thousand partitions is one
/// small transaction.
///
/// None when the tree already holds a newer leader epoch: a deposed leader's report can arrive
/// after its successor's (forwarded, delayed), and must not replace it. The set is conditional
/// on the version seen here (Kafka's controller writes with the znode's version too): if the
/// node changed before the transaction applies, it fails, and the current leader's periodic
/// report writes it again.
pub(super) fn partition_state_txn(
    tree: &DataTree,
    name: &str,
    partition: usize,
    epoch: i32,
    data: Vec<u8>,
) -> Option<Txn> {
    let path = state_path(name, partition);
    if let Some(node) = tree.get(&path) {
        if crate::mutation::active(crate::mutation::Mutation::StaleLeaderReports) {
            return Some(Txn::SetData { path, data, version: -1 });
        }
        let stored: Option<i32> = serde_json::from_slice::<serde_json::Value>(&node.data)
            .ok()
            .and_then(|v| v.get("leader_epoch")?.as_i64())
            .map(|e| e as i32);
        if stored.is_some_and(|stored| stored > epoch) {
            return None;
        }
        return Some(Txn::SetData { path, data, version: node.stat.version });
    }
    let dir = format!("{}/{partition}", partitions_path(name));
    if tree.get(&dir).is_some() {
        return Some(Txn::create(path, data));
    }
    // The topic's partitions node is the parent of both: without it the topic is gone.
    tree.get(&partitions_path(name))?;
    Some(Txn::Multi(vec![Txn::create(dir, Vec::new()), Txn::create(path, data)]))
}

pub(super) fn config_path(name: &str) -> String {
    format!("/config/topics/{name}")
}

pub(super) fn topic_json(meta: &TopicMeta) -> Vec<u8> {
    let partitions: serde_json::Map<String, serde_json::Value> =
        meta.partitions.iter().enumerate().map(|(i, r)| (i.to_string(), serde_json::json!(r))).collect();
    let (mut adding, mut removing) = (serde_json::Map::new(), serde_json::Map::new());
    for (p, r) in &meta.reassigning {
        adding.insert(p.to_string(), serde_json::json!(r.adding));
        removing.insert(p.to_string(), serde_json::json!(r.removing));
    }
    let mut json = serde_json::json!({
        "version": 3,
        "topic_id": meta.id.to_string(),
        "partitions": partitions,
        "adding_replicas": adding,
        "removing_replicas": removing,
    });
    if !meta.log_start.is_empty() {
        let starts: serde_json::Map<String, serde_json::Value> =
            meta.log_start.iter().map(|(p, o)| (p.to_string(), serde_json::json!(o))).collect();
        json["braid_log_start_offsets"] = serde_json::Value::Object(starts);
    }
    json.to_string().into_bytes()
}

pub(super) fn config_json(configs: &BTreeMap<String, String>) -> Vec<u8> {
    serde_json::json!({"version": 1, "config": configs}).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{parse_topic, Reassignment};

    #[test]
    fn a_move_is_written_as_kafka_writes_it_and_cancels_back_to_the_original_replicas() {
        let mut meta = TopicMeta {
            id: uuid::Uuid::new_v4(),
            partitions: vec![vec![1, 2, 3], vec![2, 3, 1]],
            configs: BTreeMap::new(),
            reassigning: BTreeMap::new(),
            log_start: BTreeMap::new(),
        };
        meta.reassign(0, vec![4, 2, 3]);
        assert_eq!(meta.partitions[0], vec![4, 2, 3, 1], "the target, then the replicas leaving");
        assert_eq!(meta.reassigning[&0], Reassignment { adding: vec![4], removing: vec![1] });
        assert_eq!((meta.target(0), meta.original(0)), (vec![4, 2, 3], vec![2, 3, 1]));
        assert_eq!((meta.target(1), meta.original(1)), (vec![2, 3, 1], vec![2, 3, 1]), "partition 1 stays");

        // Kafka's JSON, read back the same.
        let json: serde_json::Value = serde_json::from_slice(&topic_json(&meta)).unwrap();
        assert_eq!(json["adding_replicas"], serde_json::json!({"0": [4]}));
        assert_eq!(json["removing_replicas"], serde_json::json!({"0": [1]}));
        assert_eq!(parse_topic(&topic_json(&meta), None).unwrap(), meta);

        // A move named for a partition the topic does not have is ignored, not trusted.
        let mut stray: serde_json::Value = serde_json::from_slice(&topic_json(&meta)).unwrap();
        stray["adding_replicas"]["7"] = serde_json::json!([5]);
        let parsed = parse_topic(stray.to_string().as_bytes(), None).unwrap();
        assert_eq!(parsed.reassigning.keys().copied().collect::<Vec<_>>(), vec![0]);

        // Cancelling moves towards the original replicas: 4 now leaves. As with Kafka, the
        // original order is not kept (replicas minus those being added).
        let mut cancelled = meta.clone();
        cancelled.reassign(0, cancelled.original(0));
        assert_eq!(cancelled.partitions[0], vec![2, 3, 1, 4]);
        assert_eq!(cancelled.reassigning[&0], Reassignment { adding: vec![], removing: vec![4] });
        cancelled.finish_reassignment(0);
        assert_eq!(cancelled.partitions[0], vec![2, 3, 1]);
        assert!(cancelled.reassigning.is_empty());

        // Finishing the move: the target is the replica set.
        meta.finish_reassignment(0);
        assert_eq!(meta.partitions[0], vec![4, 2, 3]);
        assert!(meta.reassigning.is_empty());
        let json: serde_json::Value = serde_json::from_slice(&topic_json(&meta)).unwrap();
        assert_eq!(json["adding_replicas"], serde_json::json!({}));

        // A new order of the same nodes is no move at all.
        meta.reassign(0, vec![3, 4, 2]);
        assert_eq!(meta.partitions[0], vec![3, 4, 2]);
        assert!(meta.reassigning.is_empty());
    }
}
