//! The metadata store: the coordination tree applied from the metadata log (group 0).
//!
//! Lives on shard 0. Group 0 is a raft group of every node of the cluster. A change is a tree
//! transaction, proposed by the group-0 leader (the controller) as one record of one batch;
//! every node applies committed transactions to its own tree, in log order, once they are
//! also durable locally. zxid = offset + 1. A restarted node starts with an empty tree and
//! rebuilds it by applying its log as the group commits it.
//!
//! Kafka's metadata sits at the paths Kafka used with ZooKeeper, as the same JSON:
//! ```text
//! /cluster/id                 {"version":"1","id":"<cluster id>"}
//! /controller                 {"version":1,"brokerid":1,"timestamp":"..."}
//! /brokers/ids/<id>           {"version":5,"host":..,"port":..,"endpoints":["PLAINTEXT://h:p",..],...}
//! /brokers/topics/<topic>     {"version":3,"topic_id":"..","partitions":{"0":[1,2,3],...},...}
//! /brokers/topics/<topic>/partitions/<p>/state
//!                             {"version":1,"leader":2,"leader_epoch":7,"isr":[2,3,1],...}
//! /config/topics/<topic>      {"version":1,"config":{"retention.ms":"1000",...}}
//! ```
//! A partition's leader writes its own state node when it is elected (through the controller),
//! so every node can point clients to it, including nodes that hold no replica of it.
//! Duties: the controller creates the fixed paths and the cluster id, and names itself in
//! /controller; every node registers itself at /brokers/ids/<id> (through the controller, by
//! forwarding). Without sessions yet, registrations are persistent, not ephemeral.
//!
//! The store's code is split by responsibility, each file an `impl MetaStore` block beside
//! this one, which holds the store's state, its opening, the ZooKeeper server's traffic, the
//! tick and the raft plumbing:
//! - `paths.rs`: Kafka's znode paths and their JSON, and what a transaction's outcome means
//!   to a Kafka client;
//! - `controller.rs`: proposing and forwarding, the duties (bootstrap, registration), admin
//!   changes to topics, partition leaders' reports;
//! - `producer_ids.rs`: blocks of producer ids claimed through the log;
//! - `round.rs`: the group-commit round (persist, apply what committed, answer, publish);
//! - `snapshot.rs`: the snapshot of Kafka's metadata every shard holds, rebuilt where the
//!   tree changed;
//! - `tree_snapshot.rs`: the tree's snapshot on disk and the log below it going.

use crate::config::{Endpoint, NodeConfig};
use crate::env::SharedEnv;
use crate::msg::{MetaReply, ProducerIdReply};
use crate::replica::Replica;
use crate::storage::NodeStorage;
use crate::zk::server::{ZkMsg, ZkServer, ZkSettings};
use anyhow::Context;
use braid_engine::io::UringStorage;
use braid_engine::log::batch::build_keyed_batch;
use braid_engine::log::LogConfig;
use braid_engine::raft::wire::GroupId;
use braid_engine::raft::{Message, NodeId};
use braid_engine::tree::DataTree;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::oneshot;

mod controller;
mod paths;
mod producer_ids;
mod round;
mod snapshot;
mod snapshot_install;
mod tree_snapshot;

pub use crate::metadata::{MetaSnapshot, Reassignment, SharedSnapshot, TopicMeta};
pub use paths::reply_for;
use producer_ids::PRODUCER_BLOCK_RETRY_TICKS;
pub use producer_ids::{PRODUCER_ID_BLOCK, PRODUCER_ID_BLOCK_PATH};
pub use round::{MetaRound, RoundStart};
use snapshot::SnapshotDirty;
use tree_snapshot::{SnapshotWriting, TREE_SNAPSHOT};

pub struct MetaStore<S: NodeStorage = UringStorage> {
    replica: Replica<S>,
    /// The log's storage, which also holds the tree's snapshot.
    storage: S,
    /// Time, randomness and the snapshot writer's thread.
    env: SharedEnv,
    tree: DataTree,
    node_id: i32,
    /// What this node registers at /brokers/ids/<id>: its listeners' advertised endpoints.
    endpoints: Vec<Endpoint>,
    /// End offset of the last applied entry.
    applied: i64,
    /// Log end when the store opened: once applied this far, the tree holds at least what this
    /// node knew before it stopped.
    caught_up_at: i64,
    caught_up: bool,
    /// Clients waiting for their transaction to apply, by zxid.
    pending: BTreeMap<i64, oneshot::Sender<MetaReply>>,
    /// Ticks until the duties run again.
    duty_wait: u32,
    /// Ticks in a row without a known leader.
    leaderless_ticks: u32,
    /// Producer ids this node hands out (InitProducerId): the next one and the last of its block.
    producer_ids: Option<(i64, i64)>,
    /// InitProducerId requests waiting for a block.
    producer_id_waiters: Vec<oneshot::Sender<ProducerIdReply>>,
    /// This node's request for a block in flight: its nonce, and ticks since it was proposed.
    producer_block_request: Option<(u64, u32)>,
    /// The ZooKeeper server: connections, sessions connected here, watches.
    zk: ZkServer,
    tick_ms: i64,
    standalone: bool,
    /// Transactions applied since the last round changed Kafka's metadata (or answered a
    /// Kafka client): the snapshot every shard holds is built again, where `dirty` says.
    kafka_changed: bool,
    dirty: SnapshotDirty,
    /// The snapshot last built.
    current: SharedSnapshot,
    /// Where the tree's snapshot is kept, the zxid of the last one written (the log below it
    /// may go), and the zxid from which the next one is due.
    snapshot_path: std::path::PathBuf,
    /// `<data>/replaced-disk`: this node's data directory was replaced, so partition replicas
    /// it opens with no hard state rejoin before they vote ([`MetaStore::note_replaced_disk`]).
    replaced_marker: std::path::PathBuf,
    replaced_disk: bool,
    snapshot_zxid: i64,
    snapshot_due: i64,
    /// Transactions between snapshots.
    snap_count: i64,
    /// The log below this offset is held by every member (from a Truncatable transaction).
    truncatable: i64,
    /// The last point this node (as leader) proposed as truncatable.
    truncation_proposed: i64,
    /// The metadata leader and term last seen.
    known_leader: (Option<NodeId>, braid_engine::raft::Term),
    /// When the tree's snapshot being serialized, a slice a round, began.
    /// When the running tree snapshot began (ms, the environment's clock).
    snapshot_started: Option<i64>,
    /// A tree snapshot its thread is writing.
    snapshot_writing: Option<SnapshotWriting>,
    /// When the log last failed and was reopened ([`MetaStore::recover_log`]).
    log_failed_at_ms: i64,
    /// A snapshot of Kafka's metadata went to the shards once.
    published: bool,
    /// Partition leaders reported by this node's shards since the last round: (leader, leader
    /// epoch, replicas) by partition, the latest report of each.
    leader_reports: BTreeMap<(String, i32), (i32, i32, Vec<i32>)>,
    /// The log starts past the tree (said once when found): nothing applies, the node does not
    /// serve.
    tree_stranded: bool,
    /// Bytes of the last tree snapshot written or read (the `dirs` four-letter word).
    snapshot_bytes: u64,
    /// Tree snapshots on their way to members the log was reset past, and from the leader to
    /// this member (`snapshot_install.rs`), and their messages for the next round.
    sending: braid_engine::hash::HashMap<NodeId, snapshot_install::Sending>,
    receiving: Option<snapshot_install::Receiving>,
    snapshot_out: Vec<Message>,
}

/// Ticks without a metadata-group leader after which a node counts itself cut off: an election
/// timeout (a node starts counting only once its own timeout has passed, so this is 1 to 1.5
/// election timeouts after it last heard from a leader).
pub const CUT_OFF_TICKS: u32 = crate::replica::ELECTION_TICKS;

/// The file under the data directory that says its disk was replaced.
pub const REPLACED_DISK_MARKER: &str = "replaced-disk";

impl<S: NodeStorage> MetaStore<S> {
    /// Opens the metadata log under `data_dir/meta/group-0` as a member of group 0.
    pub fn open(storage: S, config: &NodeConfig, env: SharedEnv) -> anyhow::Result<Self> {
        let dir = config.data_dir.join("meta").join("group-0");
        let voters = config.raft_members();
        // Segments of 16 MiB: the log below a tree snapshot goes a segment at a time. Zeros 1 MiB
        // ahead of the data: a round's fdatasync then writes the data alone (decision 0006,
        // item 10).
        let segment_bytes = config.meta_segment_bytes;
        let log_config =
            LogConfig { retention_ms: -1, segment_bytes, zero_ahead_bytes: 1 << 20, ..LogConfig::default() };
        // The metadata group is fresh only where the directory started empty: then it learns from
        // the others whether the cluster has a history (raft's rejoin.rs).
        let (replica, report) = Replica::open(
            (env.random(), true),
            storage.clone(),
            &dir,
            log_config,
            GroupId::METADATA,
            config.raft_id(),
            voters,
            None,
            None,
        )
        .with_context(|| format!("opening the metadata log in {}", dir.display()))?;
        if let Some(corruption) = &report.corruption {
            tracing::warn!(%corruption, "metadata log: cut at a torn or corrupt batch");
        }
        let replaced_marker = config.data_dir.join(REPLACED_DISK_MARKER);
        // The marker holds for this run; once the metadata group has rejoined, the next run goes
        // without it (the replicas opened meanwhile persisted their own rejoining state).
        let replaced_disk = storage.exists(&replaced_marker);
        if replaced_disk && !replica.raft.rejoining() {
            let removed = storage.remove(&replaced_marker);
            tracing::info!(?removed, "this node's replaced data directory has caught up: marker removed");
        }
        let caught_up_at = replica.raft.log().log_end_offset();
        let log_start = replica.raft.log().log_start_offset();
        // The tree starts from its last snapshot, if any, and applies the log after it.
        let snapshot_path = dir.join(TREE_SNAPSHOT);
        let read = storage.read_whole(&snapshot_path);
        let snapshot_bytes = read.as_ref().ok().and_then(Option::as_ref).map_or(0, |b| b.len() as u64);
        let tree = match read {
            Ok(None) => None,
            Ok(Some(bytes)) => match DataTree::from_snapshot(&bytes) {
                Ok(tree) => {
                    tracing::info!(zxid = tree.last_zxid(), nodes = tree.node_count(), "tree loaded from its snapshot");
                    Some(tree)
                }
                Err(e) => {
                    tracing::error!(path = %snapshot_path.display(), error = %e, "tree snapshot unreadable; rebuilding from the log");
                    None
                }
            },
            Err(e) => anyhow::bail!("reading {}: {e}", snapshot_path.display()),
        };
        // A tree behind the log's start cannot catch up from it: it stays as it is, and the
        // node does not serve (see the round's message for what the operator does).
        let tree = tree.unwrap_or_default();
        let applied = tree.last_zxid();
        let snapshot_zxid = tree.last_zxid();
        tracing::info!(
            log_start,
            log_end = caught_up_at,
            tree_zxid = snapshot_zxid,
            term = replica.raft.term(),
            "metadata group opened"
        );
        Ok(MetaStore {
            replica,
            storage,
            tree,
            node_id: config.node_id,
            endpoints: config.endpoints(),
            applied,
            caught_up_at,
            caught_up: false,
            pending: BTreeMap::new(),
            duty_wait: 0,
            leaderless_ticks: 0,
            producer_ids: None,
            producer_id_waiters: Vec::new(),
            producer_block_request: None,
            zk: ZkServer::new(ZkSettings {
                node_id: config.node_id,
                min_timeout_ms: 2 * config.zk_tick_ms as i32,
                max_timeout_ms: 20 * config.zk_tick_ms as i32,
                max_data_bytes: config.zk_max_data_bytes,
                tick_ms: config.zk_tick_ms,
                client_addr: config.zk_addr,
                data_dir: config.data_dir.display().to_string(),
                reaper_ms: config.zk_reaper_ms as i64,
                env: Arc::clone(&env),
            }),
            tick_ms: config.raft_tick_ms as i64,
            standalone: config.peers.is_empty(),
            kafka_changed: true,
            dirty: SnapshotDirty { all: true, ..SnapshotDirty::default() },
            current: SharedSnapshot::default(),
            snapshot_path,
            replaced_marker,
            replaced_disk,
            snapshot_zxid,
            snapshot_due: snapshot_zxid + config.zk_snap_count as i64,
            snap_count: config.zk_snap_count as i64,
            truncatable: 0,
            truncation_proposed: 0,
            log_failed_at_ms: i64::MIN / 2,
            known_leader: (None, 0),
            snapshot_started: None,
            env,
            snapshot_writing: None,
            published: false,
            leader_reports: BTreeMap::new(),
            tree_stranded: false,
            snapshot_bytes,
            sending: Default::default(),
            receiving: None,
            snapshot_out: Vec::new(),
        })
    }

    /// A ZooKeeper client's connect, request or close.
    pub fn zk(&mut self, msg: ZkMsg, now_ms: i64) {
        match msg {
            msg @ ZkMsg::Connect { .. } => {
                let cut_off = self.cut_off();
                self.zk.connect(&self.tree, now_ms, msg, cut_off)
            }
            ZkMsg::Request { conn, request } => self.zk.request(&self.tree, now_ms, conn, request),
            ZkMsg::Refused { conn, xid, code } => self.zk.refused(&self.tree, now_ms, conn, xid, code),
            ZkMsg::Closed { conn } => self.zk.closed(conn),
            ZkMsg::FourLetter { word, peer, reply } => {
                tracing::debug!(%peer, word, "ZooKeeper four-letter word");
                let mode = if self.standalone {
                    "standalone"
                } else if self.is_leader() {
                    "leader"
                } else {
                    "follower"
                };
                let facts = crate::zk::four_letter::ServerFacts {
                    mode,
                    serving: !self.cut_off(),
                    data_dir_bytes: self.snapshot_bytes,
                    log_dir_bytes: self.replica.raft.log().size_bytes(),
                };
                let _ = reply.send(self.zk.four_letter(&word, &self.tree, &facts));
            }
        }
        self.propose_zk(now_ms);
    }

    /// Proposes (or forwards) what the ZooKeeper server asked for, as one batch.
    fn propose_zk(&mut self, now_ms: i64) {
        let proposals = self.zk.take_proposals();
        if proposals.is_empty() {
            return;
        }
        let values: Vec<Vec<u8>> = proposals.iter().map(|(_, txn)| txn.encode()).collect();
        let records: Vec<_> =
            proposals.iter().zip(&values).map(|((key, _), v)| (Some(key.as_slice()), Some(v.as_slice()))).collect();
        let batch = build_keyed_batch(now_ms, &records);
        if !self.replica.raft.propose_or_forward(&batch) {
            for (key, _) in &proposals {
                self.zk.unsent(key);
            }
        }
    }

    pub fn is_leader(&self) -> bool {
        self.replica.is_leader()
    }

    pub fn leader(&self) -> Option<i32> {
        self.replica.raft.leader().map(NodeId::get)
    }

    /// The metadata group's voters.
    pub fn voters(&self) -> Vec<NodeId> {
        self.replica.raft.voters().to_vec()
    }

    /// Hands the metadata group's leadership to `to` (a graceful stop).
    pub fn transfer_leadership(&mut self, to: NodeId) -> bool {
        self.replica.raft.transferring_to().is_some() || self.replica.raft.transfer_leadership(to)
    }

    /// True if this node's data directory was replaced: marked at start, or the metadata group,
    /// started empty, found the cluster had a history (it rejoins). Then the marker is written,
    /// so a restart before the replicas caught up still knows.
    pub fn note_replaced_disk(&mut self) -> bool {
        if !self.replaced_disk && (self.replica.raft.found_history() || self.replica.raft.rejoining()) {
            self.replaced_disk = true;
            tracing::warn!(
                "this node started with an empty data directory in a cluster with a history (a replaced \
                 disk): its replicas rejoin, voting for no one until they hold what their groups committed"
            );
            let path = &self.replaced_marker;
            let dir = path.parent().unwrap_or(path);
            let written = self.storage.create_dir_all(dir).and_then(|()| {
                self.storage.open(path, braid_engine::io::FileKind::Index).and_then(|mut f| {
                    use braid_engine::io::StorageFile;
                    f.write_at(0, b"replaced\n")?;
                    f.sync_data()
                })
            });
            let synced = written.and_then(|()| self.storage.sync_dir(dir));
            if let Err(e) = synced {
                tracing::error!(path = %path.display(), error = %e, "cannot write the replaced-disk marker");
            }
        }
        self.replaced_disk
    }

    /// Where the metadata log starts (0 until a snapshot let the log below it go).
    pub fn log_start(&self) -> i64 {
        self.replica.raft.log().log_start_offset()
    }

    /// The metadata group's raft state in one line (diagnostics).
    pub fn raft_summary(&self) -> String {
        let raft = &self.replica.raft;
        let log = raft.log();
        format!(
            "{:?} in term {}, leader {:?}, log {}..{} (durable {}), committed {}, tree at zxid {}",
            raft.role(),
            raft.term(),
            raft.leader(),
            log.log_start_offset(),
            log.log_end_offset(),
            log.durable_offset(),
            raft.committed(),
            self.tree.last_zxid()
        )
    }

    pub fn tick(&mut self) {
        self.replica.raft.tick();
        self.snapshot_tick();
        let now = self.env.now_ms();
        let raft = &self.replica.raft;
        let tick_ms = self.tick_ms;
        self.zk.tick(&self.tree, now, self.replica.is_leader(), |node| {
            NodeId::new(node).and_then(|node| raft.silent_ticks(node)).map(|t| i64::from(t) * tick_ms)
        });
        if self.cut_off() {
            // As a ZooKeeper server that lost its quorum: clients go elsewhere, or, if they
            // allow it, come back read-only (ZooKeeper's read-only mode).
            self.zk.close_all(false, "no metadata-group leader reachable");
        } else {
            // The quorum is back: read-only clients reconnect and find a read-write server.
            self.zk.close_all(true, "the metadata group has a leader again: ending read-only sessions");
        }
        self.propose_zk(now);
        self.duty_wait = self.duty_wait.saturating_sub(1);
        self.leaderless_ticks = match self.replica.raft.leader() {
            Some(_) => 0,
            None => self.leaderless_ticks.saturating_add(1),
        };
        if let Some((_, age)) = self.producer_block_request.as_mut() {
            *age += 1;
            if *age >= PRODUCER_BLOCK_RETRY_TICKS {
                self.claim_producer_block(self.env.now_ms());
            }
        }
    }

    /// True when this node has known no metadata-group leader for [`CUT_OFF_TICKS`]: it cannot
    /// reach a majority (or an election is unusually long).
    pub fn cut_off(&self) -> bool {
        // A leader heard of since the last tick counts at once.
        self.leaderless_ticks >= CUT_OFF_TICKS && self.replica.raft.leader().is_none()
    }

    /// True when this node can answer clients from a tree as current as the cluster's: it
    /// knows the metadata leader, has applied everything it knows committed (and at least what
    /// it held before it stopped), and the tree names the controller and holds this node's own
    /// registration, so a Metadata answer has brokers and a controller.
    pub fn ready(&self) -> bool {
        !self.cut_off()
            && self.replica.raft.leader().is_some()
            && self.caught_up
            && self.applied >= self.replica.raft.committed()
            && self.controller_id().is_some()
            && self.broker_endpoints(self.node_id).is_some()
    }

    /// The transport lost a peer (see [`braid_engine::raft::Raft::peer_lost`]).
    pub fn peer_lost(&mut self, peer: NodeId) {
        self.replica.raft.peer_lost(peer);
    }

    /// The transport hears from a lost peer again (see [`braid_engine::raft::Raft::peer_back`]).
    pub fn peer_back(&mut self, peer: NodeId) {
        self.replica.raft.peer_back(peer);
    }

    /// The messages the leader may send before its log is durable (see
    /// [`braid_engine::raft::Raft::take_leader_messages`]).
    pub fn leader_messages(&mut self) -> Vec<Message> {
        self.replica.raft.take_leader_messages()
    }

    pub fn step(&mut self, mut message: Message) {
        match &message.body {
            braid_engine::raft::Body::SnapshotChunk { transfer, offset, total, data } => {
                let data = data.clone();
                return self.snapshot_chunk(message.from, *transfer, *offset, *total, &data);
            }
            braid_engine::raft::Body::SnapshotAck { transfer, next } => {
                return self.snapshot_ack(message.from, *transfer, *next);
            }
            _ => {}
        }
        if let braid_engine::raft::Body::Forward { entry } = &mut message.body {
            if self.replica.is_leader() {
                // The tree's times (ctime, mtime, TTLs) come from the leader's clock, whichever
                // node a client wrote through.
                let mut bytes = entry.to_vec();
                braid_engine::log::batch::restamp_time(&mut bytes, self.env.now_ms());
                *entry = bytes::Bytes::from(bytes);
            }
        }
        self.replica.raft.step(message);
    }

    /// Makes everything appended durable, nothing else (a shard stopping).
    pub fn flush_log(&mut self) -> Result<(), String> {
        self.replica.raft.log_mut().flush().map(|_| ()).map_err(|e| e.to_string())
    }

    /// A znode's data as JSON (None if absent or not JSON).
    fn json_at(&self, path: &str) -> Option<serde_json::Value> {
        self.tree.get(path).and_then(|n| serde_json::from_slice(&n.data).ok())
    }

    /// The node /controller names.
    fn controller_id(&self) -> Option<i32> {
        self.json_at("/controller").and_then(|v| v["brokerid"].as_i64()).map(|id| id as i32)
    }

    /// The Kafka endpoints broker `id` registered at /brokers/ids/<id>, in its order (None if
    /// it registered none that parse).
    fn broker_endpoints(&self, id: i32) -> Option<Vec<Endpoint>> {
        let json = self.json_at(&format!("/brokers/ids/{id}"))?;
        let endpoints: Vec<Endpoint> =
            json["endpoints"].as_array()?.iter().filter_map(|e| e.as_str()?.parse().ok()).collect();
        (!endpoints.is_empty()).then_some(endpoints)
    }

    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    /// Kafka's metadata as last built from the tree (what the shards have, or are being sent).
    pub fn snapshot(&self) -> SharedSnapshot {
        Arc::clone(&self.current)
    }
}
