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

use crate::config::{Endpoint, NodeConfig};
use crate::msg::{MetaReply, ProducerIdReply};
use crate::replica::{PendingPersist, Persist, Replica};
use crate::zk::server::{AppliedTxn, ZkMsg, ZkServer, ZkSettings};
use anyhow::Context;
use braid_engine::io::UringStorage;
use braid_engine::log::batch::{build_batch, build_keyed_batch, records, CONTROL_ATTRIBUTE};
use braid_engine::log::LogConfig;
use braid_engine::raft::wire::GroupId;
use braid_engine::raft::{Message, NodeId, ProposeError};
use braid_engine::tree::{DataTree, Txn, TxnError};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::oneshot;

mod snapshot;

use crate::metadata::parse_topic;
pub use crate::metadata::{MetaSnapshot, Reassignment, SharedSnapshot, TopicMeta};
use snapshot::SnapshotDirty;

pub struct MetaStore {
    replica: Replica,
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
    snapshot_started: Option<std::time::Instant>,
    /// A tree snapshot its thread is writing.
    snapshot_writing: Option<SnapshotWriting>,
    /// When the log last failed and was reopened ([`MetaStore::recover_log`]).
    log_failed_at_ms: i64,
    /// A snapshot of Kafka's metadata went to the shards once.
    published: bool,
    /// Partition leaders reported by this node's shards since the last round: (leader, leader
    /// epoch, replicas) by partition, the latest report of each.
    leader_reports: BTreeMap<(String, i32), (i32, i32, Vec<i32>)>,
}

/// The tree's snapshot, beside the metadata log.
const TREE_SNAPSHOT: &str = "tree.snap";
/// What a round serializes of a running tree snapshot, at most: nodes (about 0.3 us each) or
/// bytes, so a round holds shard 0 for about a millisecond whatever the tree (the whole of a
/// million-node tree took 0.3 s).
const SNAPSHOT_SLICE_NODES: usize = 2048;
const SNAPSHOT_SLICE_BYTES: usize = 1 << 20;

/// Paths of the tree whose changes every shard must see (the rest is ZooKeeper clients' own).
fn is_kafka_path(path: &str) -> bool {
    // The root too: creating or deleting one of these changes its children.
    path == "/"
        || ["/brokers", "/config", "/cluster", "/controller", "/admin"]
            .iter()
            .any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// Where nodes claim blocks of producer ids (Kafka's path for the same purpose).
pub const PRODUCER_ID_BLOCK_PATH: &str = "/latest_producer_id_block";
/// Producer ids per block: a block is the committed zxid of its claim times this, so no two
/// claims (by any nodes) ever get overlapping blocks.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// Ticks before an unanswered claim is made again (it may have been lost on the way).
const PRODUCER_BLOCK_RETRY_TICKS: u32 = 40;

/// Ticks without a metadata-group leader after which a node counts itself cut off: an election
/// timeout (a node starts counting only once its own timeout has passed, so this is 1 to 1.5
/// election timeouts after it last heard from a leader).
pub const CUT_OFF_TICKS: u32 = crate::replica::ELECTION_TICKS;

/// Ticks between runs of the duties (registration, bootstrap) while they have work left.
const DUTY_EVERY_TICKS: u32 = 20;

/// Bytes of partition leader reports proposed in one batch at most (a few thousand reports).
const LEADER_REPORT_BATCH_BYTES: usize = 512 << 10;

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

fn topic_path(name: &str) -> String {
    format!("/brokers/topics/{name}")
}
fn partitions_path(name: &str) -> String {
    format!("/brokers/topics/{name}/partitions")
}
fn state_path(name: &str, partition: usize) -> String {
    format!("/brokers/topics/{name}/partitions/{partition}/state")
}
fn state_json(leader: i32, epoch: i32, replicas: &[i32]) -> Vec<u8> {
    serde_json::json!({"controller_epoch": 1, "leader": leader, "version": 1, "leader_epoch": epoch, "isr": replicas})
        .to_string()
        .into_bytes()
}

/// A partition's state node, as its leader reports itself: set if the tree has it, else created
/// (with the partition's own node if that is missing too). A topic's creation writes no
/// per-partition node: each appears when its first leader is elected, as Kafka's controller
/// writes it after the election, so creating ten thousand partitions is one small transaction.
fn partition_state_txn(tree: &DataTree, name: &str, partition: usize, data: Vec<u8>) -> Option<Txn> {
    let path = state_path(name, partition);
    if tree.get(&path).is_some() {
        return Some(Txn::SetData { path, data, version: -1 });
    }
    let dir = format!("{}/{partition}", partitions_path(name));
    if tree.get(&dir).is_some() {
        return Some(Txn::create(path, data));
    }
    // The topic's partitions node is the parent of both: without it the topic is gone.
    tree.get(&partitions_path(name))?;
    Some(Txn::Multi(vec![Txn::create(dir, Vec::new()), Txn::create(path, data)]))
}

fn config_path(name: &str) -> String {
    format!("/config/topics/{name}")
}

fn topic_json(meta: &TopicMeta) -> Vec<u8> {
    let partitions: serde_json::Map<String, serde_json::Value> =
        meta.partitions.iter().enumerate().map(|(i, r)| (i.to_string(), serde_json::json!(r))).collect();
    let (mut adding, mut removing) = (serde_json::Map::new(), serde_json::Map::new());
    for (p, r) in &meta.reassigning {
        adding.insert(p.to_string(), serde_json::json!(r.adding));
        removing.insert(p.to_string(), serde_json::json!(r.removing));
    }
    serde_json::json!({
        "version": 3,
        "topic_id": meta.id.to_string(),
        "partitions": partitions,
        "adding_replicas": adding,
        "removing_replicas": removing,
    })
    .to_string()
    .into_bytes()
}

fn config_json(configs: &BTreeMap<String, String>) -> Vec<u8> {
    serde_json::json!({"version": 1, "config": configs}).to_string().into_bytes()
}

/// How [`MetaStore::begin_round`] left a round.
pub enum RoundStart {
    /// The log's fdatasync must run (off the shard's thread) before the round can end; what
    /// the round could do meanwhile (apply what was durable already).
    Syncing(PendingPersist, MetaRound),
    /// Nothing was left to sync (or persisting failed): the round is done.
    Done(MetaRound),
}

/// What a round of the metadata group produced.
#[derive(Default)]
pub struct MetaRound {
    /// Messages for peers (persisted first).
    pub messages: Vec<Message>,
    /// The tree changed: the new snapshot, and the clients whose transactions it holds.
    pub snapshot: Option<SharedSnapshot>,
    pub replies: Vec<(oneshot::Sender<MetaReply>, MetaReply)>,
    /// The tree just caught up with what this node had before it stopped (once per start).
    pub caught_up: bool,
}

/// A tree snapshot on its way to disk ([`MetaStore::start_snapshot`]).
struct SnapshotWriting {
    /// The zxid the snapshot holds.
    zxid: i64,
    started: std::time::Instant,
    serialized_ms: u64,
    /// The writing thread's answer: the bytes written, or what failed.
    outcome: std::sync::mpsc::Receiver<Result<usize, String>>,
}

impl MetaStore {
    /// Opens the metadata log under `data_dir/meta/group-0` as a member of group 0.
    pub fn open(storage: UringStorage, config: &NodeConfig) -> anyhow::Result<Self> {
        let dir = config.data_dir.join("meta").join("group-0");
        let voters = config.members().into_iter().map(|id| id as NodeId).collect();
        // Segments of 16 MiB: the log below a tree snapshot goes a segment at a time. Zeros 1 MiB
        // ahead of the data: a round's fdatasync then writes the data alone (decision 0006,
        // item 10).
        let log_config =
            LogConfig { retention_ms: -1, segment_bytes: 16 << 20, zero_ahead_bytes: 1 << 20, ..LogConfig::default() };
        let (replica, report) =
            Replica::open(storage, &dir, log_config, GroupId::METADATA, config.node_id as NodeId, voters, None, None)
                .with_context(|| format!("opening the metadata log in {}", dir.display()))?;
        if let Some(corruption) = &report.corruption {
            tracing::warn!(%corruption, "metadata log: cut at a torn or corrupt batch");
        }
        let caught_up_at = replica.raft.log().log_end_offset();
        let log_start = replica.raft.log().log_start_offset();
        // The tree starts from its last snapshot, if any, and applies the log after it.
        let snapshot_path = dir.join(TREE_SNAPSHOT);
        let tree = match std::fs::read(&snapshot_path) {
            Ok(bytes) => match DataTree::from_snapshot(&bytes) {
                Ok(tree) => {
                    tracing::info!(zxid = tree.last_zxid(), nodes = tree.node_count(), "tree loaded from its snapshot");
                    Some(tree)
                }
                Err(e) => {
                    tracing::error!(path = %snapshot_path.display(), error = %e, "tree snapshot unreadable; rebuilding from the log");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => anyhow::bail!("reading {}: {e}", snapshot_path.display()),
        };
        let tree = tree.filter(|t| t.last_zxid() >= log_start).unwrap_or_default();
        if tree.last_zxid() < log_start {
            tracing::error!(
                log_start,
                "the metadata log starts past the tree's snapshot: the tree lacks what came before"
            );
        }
        let applied = tree.last_zxid().max(log_start);
        let snapshot_zxid = tree.last_zxid();
        Ok(MetaStore {
            replica,
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
            }),
            tick_ms: config.raft_tick_ms as i64,
            standalone: config.peers.is_empty(),
            kafka_changed: true,
            dirty: SnapshotDirty { all: true, ..SnapshotDirty::default() },
            current: SharedSnapshot::default(),
            snapshot_path,
            snapshot_zxid,
            snapshot_due: snapshot_zxid + config.zk_snap_count as i64,
            snap_count: config.zk_snap_count as i64,
            truncatable: 0,
            truncation_proposed: 0,
            log_failed_at_ms: i64::MIN / 2,
            known_leader: (None, 0),
            snapshot_started: None,
            snapshot_writing: None,
            published: false,
            leader_reports: BTreeMap::new(),
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
                let _ = reply.send(self.zk.four_letter(&word, &self.tree, mode, !self.cut_off()));
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
        self.replica.raft.leader().map(|id| id as i32)
    }

    pub fn tick(&mut self) {
        self.replica.raft.tick();
        let now = crate::process::now_ms();
        let raft = &self.replica.raft;
        let tick_ms = self.tick_ms;
        self.zk.tick(&self.tree, now, self.replica.is_leader(), |node| {
            raft.silent_ticks(node as NodeId).map(|t| i64::from(t) * tick_ms)
        });
        if self.cut_off() {
            // As a ZooKeeper server that lost its quorum: no stale reads; clients go elsewhere.
            self.zk.close_all("no metadata-group leader reachable");
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
                self.claim_producer_block(crate::process::now_ms());
            }
        }
    }

    /// A new producer id (InitProducerId): from this node's block, or once a new block is
    /// claimed through the metadata log.
    pub fn producer_id(&mut self, now_ms: i64, reply: oneshot::Sender<ProducerIdReply>) {
        if let Some((next, last)) = self.producer_ids.as_mut().filter(|(next, last)| next <= last) {
            let id = *next;
            *next += 1;
            if *next > *last {
                self.producer_ids = None;
            }
            let _ = reply.send(Ok(id));
            return;
        }
        self.producer_id_waiters.push(reply);
        if self.producer_block_request.is_none() {
            self.claim_producer_block(now_ms);
        }
    }

    /// Claims a block: a write naming this node and a fresh nonce; the zxid it commits at
    /// fixes the block (see [`PRODUCER_ID_BLOCK`]).
    fn claim_producer_block(&mut self, now_ms: i64) {
        let nonce = uuid::Uuid::new_v4().as_u128() as u64;
        let data = serde_json::json!({"version": 1, "broker": self.node_id, "nonce": nonce.to_string()})
            .to_string()
            .into_bytes();
        self.producer_block_request = Some((nonce, 0));
        self.propose_or_forward(&Txn::SetData { path: PRODUCER_ID_BLOCK_PATH.into(), data, version: -1 }, now_ms);
    }

    /// A transaction applied at `zxid`: if it is this node's block claim, the block is ours.
    fn on_applied(&mut self, zxid: i64, txn: &Txn) {
        let Some((nonce, _)) = self.producer_block_request else { return };
        let Txn::SetData { path, data, .. } = txn else { return };
        if path != PRODUCER_ID_BLOCK_PATH {
            return;
        }
        let claim: Option<serde_json::Value> = serde_json::from_slice(data).ok();
        if claim.as_ref().and_then(|c| c["nonce"].as_str()) != Some(nonce.to_string().as_str()) {
            return;
        }
        self.producer_block_request = None;
        let first = zxid * PRODUCER_ID_BLOCK;
        let mut next = first;
        for waiter in std::mem::take(&mut self.producer_id_waiters) {
            if waiter.send(Ok(next)).is_ok() {
                next += 1;
            }
        }
        self.producer_ids = Some((next, first + PRODUCER_ID_BLOCK - 1));
        tracing::debug!(first, "claimed a block of producer ids");
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
        if let braid_engine::raft::Body::Forward { entry } = &mut message.body {
            if self.replica.is_leader() {
                // The tree's times (ctime, mtime, TTLs) come from the leader's clock, whichever
                // node a client wrote through.
                let mut bytes = entry.to_vec();
                braid_engine::log::batch::restamp_time(&mut bytes, crate::process::now_ms());
                *entry = bytes::Bytes::from(bytes);
            }
        }
        self.replica.raft.step(message);
    }

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

    /// Makes everything appended durable, nothing else (a shard stopping).
    pub fn flush_log(&mut self) -> Result<(), String> {
        self.replica.raft.log_mut().flush().map(|_| ()).map_err(|e| e.to_string())
    }

    /// Persists, applies what is newly committed, runs the duties (all on this thread).
    pub fn round(&mut self, now_ms: i64) -> MetaRound {
        let persisted = self.replica.persist();
        self.finish_round(persisted, now_ms)
    }

    /// Starts a round whose fdatasync may run off this thread: a [`RoundStart::Syncing`] goes
    /// to [`MetaStore::end_round`] with the sync's outcome.
    pub fn begin_round(&mut self, now_ms: i64) -> RoundStart {
        match self.replica.persist_begin() {
            Ok(Persist::Syncing(pending, early)) => {
                let mut round = self.advance_round(now_ms);
                round.messages.splice(0..0, early);
                RoundStart::Syncing(pending, round)
            }
            Ok(Persist::Done(messages)) => RoundStart::Done(self.finish_round(Ok(messages), now_ms)),
            Err(e) => RoundStart::Done(self.finish_round(Err(e), now_ms)),
        }
    }

    /// Ends a round from [`MetaStore::begin_round`] once its sync is done.
    pub fn end_round(&mut self, pending: PendingPersist, synced: std::io::Result<()>, now_ms: i64) -> MetaRound {
        let persisted = self.replica.persist_end(pending, synced);
        self.finish_round(persisted, now_ms)
    }

    /// The rest of a round once the log is persisted (or failed to be): applies what is newly
    /// committed, runs the duties.
    fn finish_round(&mut self, persisted: Result<Vec<Message>, String>, now_ms: i64) -> MetaRound {
        let messages = match persisted {
            Ok(messages) => messages,
            Err(e) => {
                self.recover_log(&e, now_ms);
                Vec::new()
            }
        };
        let mut round = self.advance(now_ms);
        round.messages = messages;
        round
    }

    /// A round without persisting, while a sync runs off the thread: applies what committed and
    /// is durable here (a commit the leader told of meanwhile), answers its clients, runs the
    /// duties. It sends nothing of raft's but a leader's own messages.
    pub fn advance_round(&mut self, now_ms: i64) -> MetaRound {
        let mut round = self.advance(now_ms);
        round.messages = self.replica.raft.take_leader_messages();
        round
    }

    /// What every round does once persisting is settled.
    fn advance(&mut self, now_ms: i64) -> MetaRound {
        let mut round = MetaRound::default();
        if !self.replica.is_leader() && !self.pending.is_empty() {
            for (_, reply) in std::mem::take(&mut self.pending) {
                let _ = reply.send(Err((ResponseError::NotController.code(), "the controller changed".into())));
            }
        }
        let applied_before = self.applied;
        if let Err(e) = self.apply_committed(&mut round) {
            tracing::error!(error = %format!("{e:#}"), "metadata log: applying failed");
        }
        // The first round publishes whatever it has (a tree loaded from its snapshot may have
        // nothing to apply).
        let first = !std::mem::replace(&mut self.published, true);
        if (self.applied != applied_before || first) && std::mem::take(&mut self.kafka_changed) {
            self.current = Arc::new(self.refresh_snapshot());
            round.snapshot = Some(self.snapshot());
            // The tree moved: the duties look at it again now.
            self.duty_wait = 0;
        }
        if !self.caught_up && self.applied >= self.caught_up_at {
            self.caught_up = true;
            round.caught_up = true;
        }
        if let Some(now) = self.replica.leader_changed() {
            self.duty_wait = 0;
            // A leader this node knew is gone (or was re-elected in a new term): whatever was
            // forwarded to it and has not applied may be lost.
            if std::mem::replace(&mut self.known_leader, now).0.is_some() {
                self.zk.leader_changed();
            }
        }
        self.propose_leader_reports(now_ms);
        // Work proposed now goes out with the next round. The duties look again after
        // DUTY_EVERY_TICKS, or as soon as the tree's Kafka paths or the leader change (a new
        // leader bootstraps the tree in the round it learns it leads): not on every round, where
        // their lookups and JSON parsing cost a tenth of a busy shard 0.
        if self.duty_wait == 0 && self.applied == self.replica.raft.committed() {
            self.duties(now_ms);
            self.duty_wait = DUTY_EVERY_TICKS;
        }
        round
    }

    /// After a failed persist (a full disk, an I/O error) the log refuses writes until reopened.
    /// Reopening keeps what is durable (the tree never applied past it); this node starts over
    /// as a follower, and the leader sends again what was not durable. Logged and retried at
    /// most once a second, so a disk that stays full does not flood the log.
    fn recover_log(&mut self, error: &str, now_ms: i64) {
        if now_ms - self.log_failed_at_ms < 1000 {
            return;
        }
        self.log_failed_at_ms = now_ms;
        tracing::error!(%error, "metadata log: persisting failed; reopening it");
        let voters = self.replica.raft.voters().to_vec();
        match self.replica.reopen(voters, None) {
            Ok(report) => {
                tracing::warn!(?report.corruption, "metadata log reopened after an I/O failure");
                // Their entries were not durable and are gone; new ones may take their offsets.
                for (_, reply) in std::mem::take(&mut self.pending) {
                    let _ = reply.send(Err((
                        ResponseError::NotController.code(),
                        "the metadata log failed and was reopened; try again".into(),
                    )));
                }
            }
            Err(e) => tracing::error!(error = %e, "metadata log: reopening failed; trying again in a second"),
        }
    }

    fn apply_committed(&mut self, round: &mut MetaRound) -> anyhow::Result<()> {
        let log = self.replica.raft.log();
        let limit = self.replica.raft.committed().min(log.durable_offset());
        let mut claims = Vec::new();
        let now = crate::process::now_ms();
        while self.applied < limit {
            let Some(slice) = log.read(self.applied, 1 << 20, Some(limit))? else { break };
            let bytes = log.read_bytes(&slice)?;
            let mut at = 0;
            while at < bytes.len() {
                let header = braid_engine::log::BatchHeader::parse(&bytes[at..])?;
                let batch = &bytes[at..at + header.total_bytes()];
                if header.attributes & CONTROL_ATTRIBUTE == 0 {
                    for record in records(batch)? {
                        let value = record.value.context("metadata record without a value")?;
                        let zxid = record.offset + 1;
                        let txn = match Txn::decode(value) {
                            Ok(txn) => txn,
                            Err(e) => {
                                tracing::error!(offset = record.offset, error = %e, "skipping an undecodable metadata record");
                                continue;
                            }
                        };
                        if zxid <= self.tree.last_zxid() {
                            // Already in the tree (it started from a snapshot).
                            continue;
                        }
                        if let Txn::Truncatable { below } = txn {
                            self.truncatable = self.truncatable.max(below);
                        }
                        let result = self.tree.apply(zxid, record.timestamp, &txn);
                        let events = self.tree.take_events();
                        for (_, path) in &events {
                            if is_kafka_path(path) {
                                self.kafka_changed = true;
                                self.dirty.note(path);
                            }
                        }
                        if result.is_ok() && matches!(&txn, Txn::SetData { path, .. } if path == PRODUCER_ID_BLOCK_PATH)
                        {
                            claims.push((zxid, txn.clone()));
                        }
                        self.zk.applied(
                            &self.tree,
                            now,
                            AppliedTxn { zxid, key: record.key, txn: &txn, result: &result, events: &events },
                        );
                        if let Some(reply) = self.pending.remove(&(header.next_offset())) {
                            self.kafka_changed = true;
                            round.replies.push((reply, reply_for(result.map(|_| ()))));
                        }
                    }
                }
                if let Some(reply) = self.pending.remove(&header.next_offset()) {
                    // Its transaction could not be applied (logged above): the client hears so.
                    let message = "the change was committed but could not be applied; see the node's log".to_owned();
                    round.replies.push((reply, Err((ResponseError::UnknownServerError.code(), message))));
                }
                at += header.total_bytes();
                self.applied = header.next_offset();
            }
        }
        for (zxid, txn) in claims {
            self.on_applied(zxid, &txn);
        }
        // Requests that waited for these transactions may have proposed more.
        self.propose_zk(now);
        self.finish_snapshot();
        let idle = self.snapshot_writing.is_none() && self.tree.snapshot_running().is_none();
        if idle && self.tree.last_zxid() >= self.snapshot_due {
            self.tree.begin_snapshot();
            self.snapshot_started = Some(std::time::Instant::now());
        }
        self.snapshot_slice();
        self.truncate_log();
        Ok(())
    }

    /// Serializes the next slice of the tree's running snapshot here; once the last is done,
    /// a thread of its own writes the bytes (a new file synced, then renamed over the old one):
    /// shard 0 serves clients meanwhile, and no round waits for more than one slice, whatever
    /// the tree's size. [`MetaStore::finish_snapshot`] collects the outcome.
    fn snapshot_slice(&mut self) {
        let Some(zxid) = self.tree.snapshot_running() else { return };
        let Some(bytes) = self.tree.snapshot_step(SNAPSHOT_SLICE_NODES, SNAPSHOT_SLICE_BYTES) else { return };
        let started = self.snapshot_started.take().unwrap_or_else(std::time::Instant::now);
        let serialized_ms = started.elapsed().as_millis() as u64;
        let path = self.snapshot_path.clone();
        let (done, outcome) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("tree-snapshot".into()).spawn(move || {
            let tmp = path.with_extension("snap.tmp");
            let written = (|| -> std::io::Result<()> {
                use std::io::Write;
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            })();
            let _ = done.send(written.map(|()| bytes.len()).map_err(|e| format!("writing {}: {e}", tmp.display())));
        });
        match spawned {
            Ok(_) => self.snapshot_writing = Some(SnapshotWriting { zxid, started, serialized_ms, outcome }),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the tree snapshot's thread; trying again later");
                self.snapshot_due = zxid + self.snap_count / 2;
            }
        }
    }

    /// Takes the outcome of a snapshot being written, if it is there.
    fn finish_snapshot(&mut self) {
        let Some(writing) = &self.snapshot_writing else { return };
        let outcome = match writing.outcome.try_recv() {
            Ok(outcome) => outcome,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err("the snapshot thread ended without an answer".into())
            }
        };
        let writing = self.snapshot_writing.take().expect("checked above");
        match outcome {
            Ok(bytes) => {
                // Only now may the log below it go.
                self.snapshot_zxid = writing.zxid;
                self.snapshot_due = writing.zxid + self.snap_count;
                tracing::info!(
                    zxid = writing.zxid,
                    bytes,
                    serialize_ms = writing.serialized_ms,
                    ms = writing.started.elapsed().as_millis() as u64,
                    "tree snapshot written"
                );
            }
            Err(error) => {
                // The log keeps everything past the last snapshot written; tried again later.
                tracing::error!(%error, "writing the tree snapshot failed");
                self.snapshot_due = self.tree.last_zxid() + self.snap_count / 2;
            }
        }
    }

    /// Deletes the metadata log below what both the snapshot and every member hold; the
    /// leader tells the members how far they all hold it.
    fn truncate_log(&mut self) {
        let below = self.truncatable.min(self.snapshot_zxid).min(self.applied);
        if below > self.replica.raft.log().log_start_offset() {
            match self.replica.raft.log_mut().delete_below(below) {
                Ok(outcome) if outcome.deleted_segments > 0 => {
                    tracing::info!(
                        below,
                        segments = outcome.deleted_segments,
                        "metadata log truncated below the tree snapshot"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "truncating the metadata log failed"),
            }
        }
        if let Some(held) = self.replica.raft.held_by_all() {
            let point = held.min(self.replica.raft.committed());
            if point - self.truncation_proposed >= self.snap_count && point > self.truncatable {
                self.truncation_proposed = point;
                let (reply, _) = oneshot::channel();
                self.propose(&Txn::Truncatable { below: point }, crate::process::now_ms(), reply);
            }
        }
    }

    /// Registration (every node) and bootstrap (the controller).
    fn duties(&mut self, now_ms: i64) {
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
                let id = uuid::Uuid::new_v4().simple().to_string();
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
        self.propose_or_forward(&txn, crate::process::now_ms());
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
    fn propose_leader_reports(&mut self, now_ms: i64) {
        if self.leader_reports.is_empty() {
            return;
        }
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        for ((name, partition), (leader, epoch, replicas)) in std::mem::take(&mut self.leader_reports) {
            let data = state_json(leader, epoch, &replicas);
            let Some(txn) = partition_state_txn(&self.tree, &name, partition as usize, data) else { continue };
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
        };
        let cluster_id = {
            let mut store = MetaStore::open(UringStorage::new(false).unwrap(), &config).unwrap();
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
        let mut store = MetaStore::open(UringStorage::new(false).unwrap(), &config).unwrap();
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
        let mut store = MetaStore::open(UringStorage::new(false).unwrap(), &config(dir.path())).unwrap();
        let meta = TopicMeta {
            id: uuid::Uuid::new_v4(),
            partitions: vec![vec![1]],
            configs: BTreeMap::new(),
            reassigning: BTreeMap::new(),
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

    #[test]
    fn a_move_is_written_as_kafka_writes_it_and_cancels_back_to_the_original_replicas() {
        let mut meta = TopicMeta {
            id: uuid::Uuid::new_v4(),
            partitions: vec![vec![1, 2, 3], vec![2, 3, 1]],
            configs: BTreeMap::new(),
            reassigning: BTreeMap::new(),
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
