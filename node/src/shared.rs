//! What every shard of a node shares, and the context each shard hands its connections: the
//! settings, the senders of every shard's queue, counters, the metadata snapshot last
//! published, and the node's own state a shard may read (leaders, liveness, serving). Low in
//! the node: the front ends, the admin endpoint and the shards use it; it uses none of them.

use crate::config::NodeConfig;
use crate::metadata::SharedSnapshot;
use crate::metrics::Metrics;
use crate::msg::ShardMsg;
use crate::raft_net::RaftNet;
use braid_engine::hash::HashMap;
use braid_engine::raft::NodeId;
use std::cell::RefCell;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, Notify, Semaphore};

/// What all shards share: settings, the senders of every shard's queue, counters, and the
/// signal that new records are readable (for long-polling fetches).
pub struct Shared {
    pub config: NodeConfig,
    /// Time, randomness and threads for the state machines.
    pub env: crate::env::SharedEnv,
    pub senders: Vec<mpsc::Sender<ShardMsg>>,
    pub metrics: Metrics,
    /// New records committed somewhere: long-polling fetches look again.
    pub appended: Notify,
    /// The raft transport's sending side (None for a cluster of one).
    pub net: Option<RaftNet>,
    /// Partition leaders (node id or -1 for none, term) as the replicas on this node know
    /// them; written by the owning shard when leadership changes, read by Metadata.
    pub leaders: RwLock<HashMap<(String, i32), (i32, i32)>>,
    /// The metadata snapshot every shard has applied last (for the admin endpoint).
    pub published: RwLock<SharedSnapshot>,
    /// This node has known no metadata-group leader for a while: it is cut off from a majority
    /// of the cluster, and sends Kafka clients away (set by shard 0).
    pub cut_off: std::sync::atomic::AtomicBool,
    /// Kafka connections accepted so far: each connection's number in that order (the
    /// transaction coordinator tells a client's newest connection from one it left).
    pub connections_accepted: std::sync::atomic::AtomicU64,
    /// This node's data directory was replaced (it started empty and found the cluster had a
    /// history, or a marker says so): partition replicas it opens with no hard state rejoin
    /// before they vote (raft's `Config::replaced_disk`).
    pub replaced_disk: std::sync::atomic::AtomicBool,
    /// Peers the raft transport reports lost (closed connection, or silent for an election
    /// timeout), and how many times that set changed: every shard brings its groups in line
    /// (`ShardState::sync_liveness`) when told, and at each tick in case the
    /// telling was dropped.
    pub lost_peers: RwLock<(u64, std::collections::BTreeSet<NodeId>)>,
    /// True once this node first caught up with the cluster's metadata (set by shard 0): until
    /// then its Kafka and ZooKeeper listeners accept nothing, and clients' connections wait in
    /// the kernel's backlog, to be answered from a current tree.
    pub serving: tokio::sync::watch::Sender<bool>,
}

/// The shard that owns a partition: the same across restarts (for the same number of shards).
pub fn owner_shard(topic: &str, partition: i32, shards: usize) -> usize {
    // Consecutive partitions of a topic go to consecutive shards (from a place the topic's name
    // picks), so a topic with as many partitions as shards uses every core; a hash per
    // partition left some shards with two partitions and others with none.
    (crc32c::crc32c(topic.as_bytes()) as usize).wrapping_add(partition.max(0) as usize) % shards
}

/// Per-shard, per-thread context handed to connections.
pub struct ShardCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    /// The metadata snapshot as this shard last applied it.
    pub snapshot: RefCell<SharedSnapshot>,
    /// Request bytes this shard may hold at once (permits of 1 KiB).
    pub request_memory: Arc<Semaphore>,
}

impl ShardCtx {
    /// True if the topic exists in this shard's snapshot and has this partition.
    pub fn has_partition(&self, topic: &str, partition: i32) -> bool {
        self.snapshot.borrow().topic(topic).is_some_and(|t| (0..t.partitions.len() as i32).contains(&partition))
    }
}
