//! The controller's work (the metadata group's leader) and how changes reach it: proposing a
//! transaction or forwarding it to the controller, the duties (the controller's bootstrap of
//! the fixed paths, the cluster id and /controller; every node's registration at
//! `/brokers/ids/<id>`), admin changes to topics (create, delete, update, a partition's move
//! finishing) refused as retriable while a new controller is starting, and partition leaders'
//! reports, proposed in batches.

use super::paths::{
    config_json, config_path, partition_state_txn, partitions_path, state_json, topic_json, topic_path,
};
use super::producer_ids::PRODUCER_ID_BLOCK_PATH;
use super::MetaStore;
use crate::config::Endpoint;
use crate::metadata::{parse_topic, TopicMeta};
use crate::msg::MetaReply;
use crate::storage::NodeStorage;
use braid_engine::log::batch::build_batch;
use braid_engine::raft::ProposeError;
use braid_engine::tree::Txn;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

/// Bytes of partition leader reports proposed in one batch at most (a few thousand reports).
const LEADER_REPORT_BATCH_BYTES: usize = 512 << 10;

impl<S: NodeStorage> MetaStore<S> {
    /// Proposes a transaction (controller only); `reply` is answered once it has applied.
    pub fn propose(&mut self, txn: &Txn, now_ms: i64, reply: oneshot::Sender<MetaReply>) {
        let batch = build_batch(now_ms, &[&txn.encode()]);
        match self.replica.raft.propose(&batch) {
            Ok(end) => {
                self.pending.insert(end, reply);
            }
            Err(ProposeError::NotLeader { leader }) => {
                let message = match leader {
                    Some(id) => format!("node {id} is the controller"),
                    None => "no controller is elected right now".to_owned(),
                };
                let _ = reply.send(Err((ResponseError::NotController.code(), message)));
            }
            Err(ProposeError::Log(e)) => {
                tracing::error!(error = %e, "metadata log append failed");
                let _ = reply.send(Err((ResponseError::KafkaStorageError.code(), e.to_string())));
            }
            Err(ProposeError::ConfigChange(e)) => {
                let _ = reply.send(Err((ResponseError::InvalidRequest.code(), e)));
            }
        }
    }

    /// Proposes a transaction here if this node is the controller, else forwards it to the
    /// controller; nobody waits for it (the caller looks for its effect in the tree).
    pub fn propose_or_forward(&mut self, txn: &Txn, now_ms: i64) -> bool {
        let batch = build_batch(now_ms, &[&txn.encode()]);
        self.replica.raft.propose_or_forward(&batch)
    }

    /// Registration (every node) and bootstrap (the controller).
    pub(super) fn duties(&mut self, now_ms: i64) {
        if self.replica.is_leader() {
            let mut ops = Vec::new();
            for path in [
                "/brokers",
                "/brokers/ids",
                "/brokers/topics",
                "/config",
                "/config/topics",
                "/admin",
                "/cluster",
                PRODUCER_ID_BLOCK_PATH,
            ] {
                if self.tree.get(path).is_none() {
                    ops.push(Txn::create(path, Vec::new()));
                }
            }
            if self.tree.get("/cluster/id").is_none() {
                let id = self.env.uuid().simple().to_string();
                let data = serde_json::json!({"version": "1", "id": id}).to_string().into_bytes();
                ops.push(Txn::create("/cluster/id", data));
            }
            if self.controller_id() != Some(self.node_id) {
                let data = serde_json::json!({"version": 1, "brokerid": self.node_id, "timestamp": now_ms.to_string()})
                    .to_string()
                    .into_bytes();
                ops.push(if self.tree.get("/controller").is_some() {
                    Txn::SetData { path: "/controller".into(), data, version: -1 }
                } else {
                    Txn::create("/controller", data)
                });
            }
            if !ops.is_empty() {
                let (reply, _) = oneshot::channel();
                self.propose(&Txn::Multi(ops), now_ms, reply);
            }
        }
        if self.tree.get("/brokers/ids").is_some()
            && self.broker_endpoints(self.node_id).as_ref() != Some(&self.endpoints)
            && !self.endpoints.is_empty()
        {
            let path = format!("/brokers/ids/{}", self.node_id);
            // Kafka's layout: host and port of the first PLAINTEXT endpoint (every listener is
            // PLAINTEXT until TLS and SASL come), then every endpoint and its protocol.
            let first = &self.endpoints[0].addr;
            let endpoints: Vec<String> = self.endpoints.iter().map(Endpoint::to_string).collect();
            let protocols: serde_json::Map<String, serde_json::Value> =
                self.endpoints.iter().map(|e| (e.listener.clone(), "PLAINTEXT".into())).collect();
            let data = serde_json::json!({
                "version": 5, "host": first.host, "port": first.port, "jmx_port": -1, "timestamp": now_ms.to_string(),
                "endpoints": endpoints, "listener_security_protocol_map": protocols, "rack": null,
            })
            .to_string()
            .into_bytes();
            let txn = if self.tree.get(&path).is_some() {
                Txn::SetData { path, data, version: -1 }
            } else {
                Txn::create(path, data)
            };
            self.propose_or_forward(&txn, now_ms);
        }
    }

    /// Why this node, though it leads the metadata group, cannot take an admin change yet:
    /// a new leader's tree lacks what earlier leaders committed until it has applied an entry
    /// of its own term, and lacks Kafka's paths until its bootstrap has applied. Checked
    /// against that tree, a change would get a wrong answer (a delete of a topic not applied
    /// yet: UNKNOWN_TOPIC_OR_PARTITION; a creation under missing parents: the same), which
    /// clients do not retry. They do retry NOT_CONTROLLER, the answer given meanwhile.
    pub fn starting(&self) -> Option<&'static str> {
        let raft = &self.replica.raft;
        if !self.is_leader() {
            return None;
        }
        if !raft.leader_ready() || self.applied < raft.term_start() {
            return Some("the controller was just elected and has not applied its log yet; try again");
        }
        if self.tree.get("/brokers/topics").is_none() || self.tree.get("/config/topics").is_none() {
            return Some("the controller is starting (its metadata tree is not bootstrapped yet); try again");
        }
        None
    }

    /// Proposes an admin change (see [`Self::starting`]).
    fn propose_admin(&mut self, txn: &Txn, now_ms: i64, reply: oneshot::Sender<MetaReply>) {
        match self.starting() {
            Some(why) => {
                let _ = reply.send(Err((ResponseError::NotController.code(), why.into())));
            }
            None => self.propose(txn, now_ms, reply),
        }
    }

    pub fn create_topic(&mut self, name: &str, meta: &TopicMeta, now_ms: i64, reply: oneshot::Sender<MetaReply>) {
        let mut ops = vec![Txn::create(topic_path(name), topic_json(meta))];
        ops.push(Txn::create(partitions_path(name), Vec::new()));
        let config = config_path(name);
        if self.tree.get(&config).is_some() {
            ops.push(Txn::SetData { path: config, data: config_json(&meta.configs), version: -1 });
        } else {
            ops.push(Txn::create(config, config_json(&meta.configs)));
        }
        self.propose_admin(&Txn::Multi(ops), now_ms, reply)
    }

    /// A topic creation from a node that is not the controller (a Metadata request's
    /// auto-creation): forwarded, nobody waits.
    pub fn forward_create_topic(&mut self, name: &str, meta: &TopicMeta, now_ms: i64) -> bool {
        let mut ops = vec![Txn::create(topic_path(name), topic_json(meta))];
        ops.push(Txn::create(partitions_path(name), Vec::new()));
        ops.push(Txn::create(config_path(name), config_json(&meta.configs)));
        self.propose_or_forward(&Txn::Multi(ops), now_ms)
    }

    /// Asks the leaders of `partitions` to hand leadership to their preferred replicas: the
    /// request is written where Kafka's tools wrote it, and every node's shards act on it.
    pub fn request_preferred_election(
        &mut self,
        partitions: &[(String, i32)],
        now_ms: i64,
        reply: oneshot::Sender<MetaReply>,
    ) {
        let list: Vec<serde_json::Value> =
            partitions.iter().map(|(t, p)| serde_json::json!({"topic": t, "partition": p})).collect();
        let data = serde_json::json!({"version": 1, "partitions": list}).to_string().into_bytes();
        let path = super::paths::PREFERRED_ELECTION.to_owned();
        let mut ops = Vec::new();
        if self.tree.get("/admin").is_none() {
            ops.push(Txn::create("/admin", Vec::new()));
        }
        if self.tree.get(&path).is_some() {
            ops.push(Txn::SetData { path, data, version: -1 });
        } else {
            ops.push(Txn::create(path, data));
        }
        self.propose_admin(&Txn::Multi(ops), now_ms, reply)
    }

    pub fn delete_topic(&mut self, name: &str, now_ms: i64, reply: oneshot::Sender<MetaReply>) {
        // Children first: a znode with children cannot be deleted.
        let mut ops = Vec::new();
        let partitions = partitions_path(name);
        for p in self.tree.children(&partitions).unwrap_or_default() {
            let dir = format!("{partitions}/{p}");
            for child in self.tree.children(&dir).unwrap_or_default() {
                ops.push(Txn::Delete { path: format!("{dir}/{child}"), version: -1 });
            }
            ops.push(Txn::Delete { path: dir, version: -1 });
        }
        if self.tree.get(&partitions).is_some() {
            ops.push(Txn::Delete { path: partitions, version: -1 });
        }
        ops.push(Txn::Delete { path: topic_path(name), version: -1 });
        if self.tree.get(&config_path(name)).is_some() {
            ops.push(Txn::Delete { path: config_path(name), version: -1 });
        }
        self.propose_admin(&Txn::Multi(ops), now_ms, reply)
    }

    /// Rewrites a topic's metadata; `meta` was read from this tree, and the write is refused
    /// (BadVersion) if another change to the topic lands first.
    pub fn update_topic(&mut self, name: &str, meta: &TopicMeta, now_ms: i64, reply: oneshot::Sender<MetaReply>) {
        let path = topic_path(name);
        let version = self.tree.get(&path).map_or(-1, |n| n.stat.version);
        let ops = vec![
            Txn::SetData { path, data: topic_json(meta), version },
            Txn::SetData { path: config_path(name), data: config_json(&meta.configs), version: -1 },
        ];
        self.propose_admin(&Txn::Multi(ops), now_ms, reply)
    }

    /// A partition's leader reports that its voters are the target of the partition's move:
    /// the topic's replicas become the target (proposed here, or forwarded to the
    /// controller; if the topic changed meanwhile, the write is refused and the leader
    /// reports again).
    pub fn finish_reassignment(&mut self, name: &str, partition: i32, voters: &[i32]) {
        let path = topic_path(name);
        let Some(node) = self.tree.get(&path) else { return };
        let config = self.tree.get(&config_path(name)).map(|n| n.data.as_slice());
        let Ok(mut meta) = parse_topic(&node.data, config) else { return };
        let mut target = meta.target(partition);
        let mut voters = voters.to_vec();
        target.sort_unstable();
        voters.sort_unstable();
        if !meta.reassigning.contains_key(&partition) || target != voters {
            return;
        }
        meta.finish_reassignment(partition);
        let txn = Txn::SetData { path, data: topic_json(&meta), version: node.stat.version };
        tracing::info!(topic = name, partition, replicas = ?meta.partitions[partition as usize], "partition moved");
        self.propose_or_forward(&txn, self.env.now_ms());
    }

    /// A partition leader announces itself: written with the others of this round, in one
    /// batch ([`MetaStore::propose_leader_reports`]).
    pub fn set_partition_leader(&mut self, name: &str, partition: i32, leader: i32, epoch: i32, replicas: &[i32]) {
        if partition >= 0 {
            self.leader_reports.insert((name.to_owned(), partition), (leader, epoch, replicas.to_vec()));
        }
    }

    /// Proposes (or forwards) the leaders reported since the last round: one transaction each
    /// (one partition's failure, its topic deleted meanwhile, fails no other), in batches of at
    /// most [`LEADER_REPORT_BATCH_BYTES`]. An election of thousands of partitions is then a few
    /// entries of the metadata log. A report lost on the way is made again by the leader's
    /// periodic check.
    pub(super) fn propose_leader_reports(&mut self, now_ms: i64) {
        if self.leader_reports.is_empty() {
            return;
        }
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        for ((name, partition), (leader, epoch, replicas)) in std::mem::take(&mut self.leader_reports) {
            let data = state_json(leader, epoch, &replicas);
            let Some(txn) = partition_state_txn(&self.tree, &name, partition as usize, epoch, data) else { continue };
            let value = txn.encode();
            if bytes + value.len() > LEADER_REPORT_BATCH_BYTES && !values.is_empty() {
                self.propose_or_forward_all(&values, now_ms);
                values.clear();
                bytes = 0;
            }
            bytes += value.len();
            values.push(value);
        }
        if !values.is_empty() {
            self.propose_or_forward_all(&values, now_ms);
        }
    }

    /// Proposes encoded transactions as one batch here if this node is the controller, else
    /// forwards them to the controller; nobody waits (the callers look for their effect).
    fn propose_or_forward_all(&mut self, values: &[Vec<u8>], now_ms: i64) -> bool {
        let records: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let batch = build_batch(now_ms, &records);
        self.replica.raft.propose_or_forward(&batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use braid_engine::io::UringStorage;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn config(dir: &Path) -> NodeConfig {
        let args = crate::config::StartArgs { data_dir: Some(dir.to_path_buf()), ..Default::default() };
        NodeConfig::resolve(args).unwrap()
    }

    /// Runs rounds until nothing is left to do, answering the clients as the node does.
    fn settle(store: &mut MetaStore, now: i64) {
        for _ in 0..4 {
            let round = store.round(now);
            assert!(round.messages.is_empty(), "a cluster of one sends nothing");
            for (reply, result) in round.replies {
                let _ = reply.send(result);
            }
        }
    }

    #[test]
    fn topics_survive_reopen_and_sit_at_kafkas_paths() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let meta = TopicMeta {
            id: uuid::Uuid::new_v4(),
            partitions: vec![vec![1], vec![1]],
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            reassigning: BTreeMap::new(),
            log_start: BTreeMap::new(),
        };
        let cluster_id = {
            let mut store =
                MetaStore::open(UringStorage::new(false).unwrap(), &config, std::sync::Arc::new(crate::env::SystemEnv))
                    .unwrap();
            assert!(store.is_leader(), "a cluster of one leads at once");
            settle(&mut store, 1);
            let (reply, _) = oneshot::channel();
            store.create_topic("orders", &meta, 2, reply);
            let (reply, mut again) = oneshot::channel();
            store.create_topic("orders", &meta, 3, reply);
            settle(&mut store, 3);
            assert_eq!(again.try_recv().unwrap().unwrap_err().0, ResponseError::TopicAlreadyExists.code());
            store.snapshot().cluster_id.clone()
        };
        let mut store =
            MetaStore::open(UringStorage::new(false).unwrap(), &config, std::sync::Arc::new(crate::env::SystemEnv))
                .unwrap();
        settle(&mut store, 4);
        let snapshot = store.snapshot();
        assert!(!cluster_id.is_empty());
        assert_eq!(snapshot.cluster_id, cluster_id, "the cluster id is kept");
        assert_eq!(snapshot.topic("orders"), Some(&meta));
        let json: serde_json::Value =
            serde_json::from_slice(&store.tree().get("/brokers/topics/orders").unwrap().data).unwrap();
        assert_eq!(json["partitions"]["1"], serde_json::json!([1]));
        assert_eq!(snapshot.brokers.get(&1), Some(&config.endpoints()));
        assert_eq!(snapshot.controller, Some(1));
    }

    #[test]
    fn a_topic_created_before_the_tree_is_bootstrapped_is_refused_as_retriable() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = MetaStore::open(
            UringStorage::new(false).unwrap(),
            &config(dir.path()),
            std::sync::Arc::new(crate::env::SystemEnv),
        )
        .unwrap();
        let meta = TopicMeta {
            id: uuid::Uuid::new_v4(),
            partitions: vec![vec![1]],
            configs: BTreeMap::new(),
            reassigning: BTreeMap::new(),
            log_start: BTreeMap::new(),
        };
        // Elected at once, but no round has run: the bootstrap znodes are not there yet.
        let (reply, mut early) = oneshot::channel();
        store.create_topic("early", &meta, 1, reply);
        settle(&mut store, 1);
        assert_eq!(early.try_recv().unwrap().unwrap_err().0, ResponseError::NotController.code());
        let (reply, mut later) = oneshot::channel();
        store.create_topic("early", &meta, 2, reply);
        settle(&mut store, 2);
        assert_eq!(later.try_recv().unwrap(), Ok(()));
        assert!(store.snapshot().topic("early").is_some());
    }
}
