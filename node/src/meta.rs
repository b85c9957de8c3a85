//! The metadata store: the coordination tree applied from the metadata log (group 0).
//!
//! Lives on shard 0. Every change is a tree transaction appended to the metadata log as one
//! record of one batch, made durable (fdatasync) and only then applied; on start the log is
//! replayed into the tree, so what was acknowledged survives restarts. zxid = log offset + 1.
//!
//! Kafka's metadata sits at the paths Kafka used with ZooKeeper, as the same JSON:
//! ```text
//! /cluster/id                 {"version":"1","id":"<cluster id>"}
//! /controller                 {"version":1,"brokerid":1,"timestamp":"..."}
//! /brokers/ids/<id>           {"version":5,"host":..,"port":..,"endpoints":["PLAINTEXT://h:p"],...}
//! /brokers/topics/<topic>     {"version":3,"topic_id":"..","partitions":{"0":[1],...},...}
//! /config/topics/<topic>      {"version":1,"config":{"retention.ms":"1000",...}}
//! ```
//! With one node and no sessions yet, /brokers/ids/<id> and /controller are rewritten at every
//! start rather than being ephemeral.

use anyhow::Context;
use braid_engine::io::UringStorage;
use braid_engine::log::batch::{build_batch, records};
use braid_engine::log::{Log, LogConfig};
use braid_engine::tree::{DataTree, Txn, TxnError};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// What every shard needs to know about topics: an immutable snapshot, replaced whole.
#[derive(Debug, Clone, Default)]
pub struct MetaSnapshot {
    pub cluster_id: String,
    pub node_id: i32,
    pub kafka_addr: Option<SocketAddr>,
    pub topics: BTreeMap<String, TopicMeta>,
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
}

impl MetaSnapshot {
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }
}

pub struct MetaStore {
    log: Log<UringStorage>,
    tree: DataTree,
    node_id: i32,
    kafka_addr: SocketAddr,
}

fn topic_path(name: &str) -> String {
    format!("/brokers/topics/{name}")
}
fn config_path(name: &str) -> String {
    format!("/config/topics/{name}")
}

fn topic_json(meta: &TopicMeta) -> Vec<u8> {
    let partitions: serde_json::Map<String, serde_json::Value> =
        meta.partitions.iter().enumerate().map(|(i, r)| (i.to_string(), serde_json::json!(r))).collect();
    serde_json::json!({
        "version": 3,
        "topic_id": meta.id.to_string(),
        "partitions": partitions,
        "adding_replicas": {},
        "removing_replicas": {},
    })
    .to_string()
    .into_bytes()
}

fn config_json(configs: &BTreeMap<String, String>) -> Vec<u8> {
    serde_json::json!({"version": 1, "config": configs}).to_string().into_bytes()
}

fn parse_topic(topic_bytes: &[u8], config_bytes: Option<&[u8]>) -> anyhow::Result<TopicMeta> {
    let topic: serde_json::Value = serde_json::from_slice(topic_bytes)?;
    let id = topic["topic_id"].as_str().context("topic_id")?.parse()?;
    let map = topic["partitions"].as_object().context("partitions")?;
    let mut partitions = vec![Vec::new(); map.len()];
    for (index, replicas) in map {
        let index: usize = index.parse()?;
        let slot = partitions.get_mut(index).context("partition numbers are dense")?;
        *slot = replicas.as_array().context("replicas")?.iter().filter_map(|r| r.as_i64().map(|r| r as i32)).collect();
    }
    let mut configs = BTreeMap::new();
    if let Some(bytes) = config_bytes {
        let config: serde_json::Value = serde_json::from_slice(bytes)?;
        if let Some(map) = config["config"].as_object() {
            for (k, v) in map {
                configs.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
            }
        }
    }
    Ok(TopicMeta { id, partitions, configs })
}

impl MetaStore {
    /// Opens the metadata log under `data_dir/meta`, replays it, and registers this node.
    pub fn open(
        storage: UringStorage,
        data_dir: &Path,
        node_id: i32,
        kafka_addr: SocketAddr,
        now_ms: i64,
    ) -> anyhow::Result<Self> {
        let dir = data_dir.join("meta").join("group-0");
        let (log, report) = Log::open(storage, &dir, LogConfig { retention_ms: -1, ..LogConfig::default() })
            .with_context(|| format!("opening the metadata log in {}", dir.display()))?;
        if let Some(corruption) = &report.corruption {
            tracing::warn!(%corruption, "metadata log: cut at a torn or corrupt batch");
        }
        let mut store = MetaStore { log, tree: DataTree::new(), node_id, kafka_addr };
        store.replay()?;
        store.bootstrap(now_ms)?;
        Ok(store)
    }

    fn replay(&mut self) -> anyhow::Result<()> {
        let mut offset = self.log.log_start_offset();
        while let Some(slice) = self.log.read(offset, 1 << 20, None)? {
            let bytes = self.log.read_bytes(&slice)?;
            let mut at = 0;
            while at < bytes.len() {
                let header = braid_engine::log::BatchHeader::parse(&bytes[at..])?;
                let batch = &bytes[at..at + header.total_bytes()];
                for record in records(batch)? {
                    let value = record.value.context("metadata record without a value")?;
                    let txn =
                        Txn::decode(value).with_context(|| format!("metadata record at offset {}", record.offset))?;
                    // A transaction that failed when first applied fails the same way again.
                    let _ = self.tree.apply(record.offset + 1, record.timestamp, &txn);
                }
                at += header.total_bytes();
            }
            offset = slice.next_offset;
        }
        tracing::info!(zxid = self.tree.last_zxid(), nodes = self.tree.node_count(), "metadata tree replayed");
        Ok(())
    }

    /// Creates the fixed paths, the cluster id, and this node's registration.
    fn bootstrap(&mut self, now_ms: i64) -> anyhow::Result<()> {
        let mut ops = Vec::new();
        for path in ["/brokers", "/brokers/ids", "/brokers/topics", "/config", "/config/topics", "/admin", "/cluster"] {
            if self.tree.get(path).is_none() {
                ops.push(Txn::Create { path: path.into(), data: Vec::new(), ephemeral_owner: 0 });
            }
        }
        if self.tree.get("/cluster/id").is_none() {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let data = serde_json::json!({"version": "1", "id": id}).to_string().into_bytes();
            ops.push(Txn::Create { path: "/cluster/id".into(), data, ephemeral_owner: 0 });
        }
        let host = self.kafka_addr.ip().to_string();
        let port = self.kafka_addr.port();
        let broker = serde_json::json!({
            "version": 5, "host": host, "port": port, "jmx_port": -1, "timestamp": now_ms.to_string(),
            "endpoints": [format!("PLAINTEXT://{host}:{port}")],
            "listener_security_protocol_map": {"PLAINTEXT": "PLAINTEXT"}, "rack": null,
        })
        .to_string()
        .into_bytes();
        let controller = serde_json::json!({"version": 1, "brokerid": self.node_id, "timestamp": now_ms.to_string()})
            .to_string()
            .into_bytes();
        for (path, data) in [(format!("/brokers/ids/{}", self.node_id), broker), ("/controller".to_owned(), controller)]
        {
            if self.tree.get(&path).is_some()
                || ops.iter().any(|op| matches!(op, Txn::Create { path: p, .. } if *p == path))
            {
                ops.push(Txn::SetData { path, data, version: -1 });
            } else {
                ops.push(Txn::Create { path, data, ephemeral_owner: 0 });
            }
        }
        self.commit(Txn::Multi(ops), now_ms)?.map_err(|e| anyhow::anyhow!("bootstrapping the tree: {e}"))
    }

    /// Appends a transaction to the metadata log, makes it durable, then applies it.
    /// The outer error is the log failing; the inner one the transaction not applying.
    pub fn commit(&mut self, txn: Txn, now_ms: i64) -> anyhow::Result<Result<(), TxnError>> {
        let bytes = txn.encode();
        let batch = build_batch(now_ms, &[&bytes]);
        let info = self.log.append(&batch, 0).context("appending to the metadata log")?;
        self.log.flush().context("syncing the metadata log")?;
        Ok(self.tree.apply(info.base_offset + 1, now_ms, &txn))
    }

    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    pub fn snapshot(&self) -> MetaSnapshot {
        let mut topics = BTreeMap::new();
        for name in self.tree.children("/brokers/topics").unwrap_or_default() {
            let Some(node) = self.tree.get(&topic_path(&name)) else { continue };
            let config = self.tree.get(&config_path(&name)).map(|n| n.data.as_slice());
            match parse_topic(&node.data, config) {
                Ok(meta) => {
                    topics.insert(name, meta);
                }
                Err(e) => tracing::warn!(topic = %name, error = %e, "unreadable topic metadata in the tree"),
            }
        }
        let cluster_id = self
            .tree
            .get("/cluster/id")
            .and_then(|n| serde_json::from_slice::<serde_json::Value>(&n.data).ok())
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        MetaSnapshot {
            cluster_id,
            node_id: self.node_id,
            kafka_addr: Some(self.kafka_addr),
            topics,
            zxid: self.tree.last_zxid(),
        }
    }

    pub fn create_topic(&mut self, name: &str, meta: &TopicMeta, now_ms: i64) -> anyhow::Result<Result<(), TxnError>> {
        let mut ops = vec![Txn::Create { path: topic_path(name), data: topic_json(meta), ephemeral_owner: 0 }];
        let config = config_path(name);
        if self.tree.get(&config).is_some() {
            ops.push(Txn::SetData { path: config, data: config_json(&meta.configs), version: -1 });
        } else {
            ops.push(Txn::Create { path: config, data: config_json(&meta.configs), ephemeral_owner: 0 });
        }
        self.commit(Txn::Multi(ops), now_ms)
    }

    pub fn delete_topic(&mut self, name: &str, now_ms: i64) -> anyhow::Result<Result<(), TxnError>> {
        let mut ops = vec![Txn::Delete { path: topic_path(name), version: -1 }];
        if self.tree.get(&config_path(name)).is_some() {
            ops.push(Txn::Delete { path: config_path(name), version: -1 });
        }
        self.commit(Txn::Multi(ops), now_ms)
    }

    pub fn update_topic(&mut self, name: &str, meta: &TopicMeta, now_ms: i64) -> anyhow::Result<Result<(), TxnError>> {
        let ops = vec![
            Txn::SetData { path: topic_path(name), data: topic_json(meta), version: -1 },
            Txn::SetData { path: config_path(name), data: config_json(&meta.configs), version: -1 },
        ];
        self.commit(Txn::Multi(ops), now_ms)
    }
}

/// A snapshot shared with every shard.
pub type SharedSnapshot = Arc<MetaSnapshot>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_survive_reopen_and_sit_at_kafkas_paths() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:9092".parse().unwrap();
        let meta = TopicMeta {
            id: uuid::Uuid::new_v4(),
            partitions: vec![vec![1], vec![1]],
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        };
        let cluster_id = {
            let mut store = MetaStore::open(UringStorage::new(false).unwrap(), dir.path(), 1, addr, 1).unwrap();
            store.create_topic("orders", &meta, 2).unwrap().unwrap();
            assert_eq!(
                store.create_topic("orders", &meta, 3).unwrap(),
                Err(TxnError::NodeExists("/brokers/topics/orders".into()))
            );
            store.snapshot().cluster_id
        };
        let store = MetaStore::open(UringStorage::new(false).unwrap(), dir.path(), 1, addr, 4).unwrap();
        let snapshot = store.snapshot();
        assert_eq!(snapshot.cluster_id, cluster_id, "the cluster id is kept");
        assert_eq!(snapshot.topic("orders"), Some(&meta));
        let json: serde_json::Value =
            serde_json::from_slice(&store.tree().get("/brokers/topics/orders").unwrap().data).unwrap();
        assert_eq!(json["partitions"]["1"], serde_json::json!([1]));
        assert!(store.tree().get("/brokers/ids/1").is_some());
        assert!(store.tree().get("/controller").is_some());
    }
}
