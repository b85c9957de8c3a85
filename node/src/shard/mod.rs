//! A shard: one pinned thread, one io_uring, and the partitions that hash to it.
//!
//! Everything a shard owns (`ShardState`: logs, waiters) is touched by its thread only; other
//! shards reach it through its bounded queue of [`ShardMsg`], and answers go back over oneshot
//! channels. Shard 0 also owns the metadata store.
//!
//! Every partition is a raft group over its log ([`Replica`]): the leader appends produced
//! batches and answers acks=all once the batch commits (a majority persisted it); consumers
//! read up to the commit point (the high watermark); followers refuse produce and fetch with
//! NOT_LEADER_OR_FOLLOWER. Raft inputs (produce, messages from peers, ticks) mark a partition
//! dirty; the flusher's round then persists, sends the messages and releases the waiters.

mod admin;
mod fetch;
mod group_requests;
mod offsets;
mod produce;
mod replicas;
mod retention;
mod round;
mod ticks;
mod txn;

pub use retention::remove_orphan_dirs;

use group_requests::apply_offsets;
use produce::{not_leader, reopen};
use ticks::announce_leader;
use txn::{apply_txn_records, for_each_committed};

use crate::groups::{self, Coordinator, JoinOutcome, Records, SyncOutcome, OFFSETS_TOPIC};
use crate::meta::{MetaRound, MetaStore, RoundStart, SharedSnapshot, TopicMeta};
use crate::metrics::{PartitionStats, ShardStats};
use crate::msg::{
    Code, FetchOutcome, GroupRequest, MetaOp, MetaReply, ProduceOutcome, Publication, RecordsChunk, ShardMsg,
};
use crate::producers::{Producers, Verdict};
use crate::replica::{PendingFlush, PendingPersist, Persist, Replica};
use crate::shared::Shared;
use crate::storage::NodeStorage;
use crate::topic_config;
use braid_engine::hash::{HashMap, HashSet};
use braid_engine::io::UringStorage;
use braid_engine::log::batch::{self, BatchHeader};
use braid_engine::log::{DurabilityWaiters, Log, LogError};
use braid_engine::raft::journal::{self, HardStateJournal};
use braid_engine::raft::wire::GroupId;
use braid_engine::raft::{HardState, Message, NodeId, ProposeError, Term};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};

/// A produce held for its transaction's verification: records, acks, and who waits.
type HeldProduce = (Option<Bytes>, i16, oneshot::Sender<ProduceOutcome>);

/// Why a produce request's records are refused: the error code and a message.
type ProduceRefusal = (ResponseError, String);

/// Who waits for a produce's outcome.
pub(super) enum ProduceReply {
    /// A Kafka producer.
    Producer(oneshot::Sender<ProduceOutcome>),
    /// A group's deletion (its records' tombstones): answered with the group API's code.
    GroupDeletion(oneshot::Sender<Code>),
    /// One waiting for the error code alone (a transaction coordinator's request, a marker).
    Code(oneshot::Sender<Code>),
    /// Nobody (a coordinator's own records: the next write retries what failed).
    Nobody,
}

impl ProduceReply {
    /// Answers with `outcome`; Err if the one waiting is gone.
    fn send(self, outcome: ProduceOutcome) -> Result<(), ()> {
        match self {
            ProduceReply::Producer(reply) => reply.send(outcome).map_err(drop),
            ProduceReply::GroupDeletion(reply) => {
                let code = match outcome.error {
                    e if e == ResponseError::NotLeaderOrFollower.code() => ResponseError::NotCoordinator.code(),
                    e => e,
                };
                reply.send(code).map_err(drop)
            }
            ProduceReply::Code(reply) => reply.send(outcome.error).map_err(drop),
            ProduceReply::Nobody => Ok(()),
        }
    }
}

struct Partition<S: NodeStorage> {
    replica: Replica<S>,
    dir: PathBuf,
    topic_id: uuid::Uuid,
    voters: Vec<NodeId>,
    /// acks=all producers waiting for their batch to commit, with the base offset it got and
    /// the leader term it was appended in.
    waiters: DurabilityWaiters<(ProduceReply, i64, Term)>,
    max_message_bytes: i64,
    /// How the leader stores the batches it is sent: compression and timestamps (topic configs).
    batch_policy: topic_config::BatchPolicy,
    /// Idempotent producers' last batches, valid for the leader term they were built in.
    producers: Option<(Term, Producers)>,
    /// On partitions of `__consumer_offsets`: the group coordinator and its applied offsets.
    coordinator: Option<Coordinator>,
    /// On partitions of `__transaction_state`: the transaction coordinator.
    txn_coordinator: Option<crate::txn::TxnCoordinator>,
    /// The leader's index of open and aborted transactions, valid for the term it was built in.
    /// Log size after the last compaction (compacted topics).
    compacted_size: u64,
    /// The commit point the last compaction ran to: the first record written since.
    compacted_to: i64,
    /// Where DeleteRecords moved the partition's start (from the topic's metadata; 0: never).
    records_start: i64,
}

impl<S: NodeStorage> Partition<S> {
    /// The log start offset clients see (Kafka's logStartOffset): the log's first offset, or
    /// past it where DeleteRecords moved it.
    fn log_start(&self) -> i64 {
        self.replica.raft.log().log_start_offset().max(self.records_start)
    }
}

pub struct ShardState<S: NodeStorage = UringStorage> {
    pub id: usize,
    shared: Arc<Shared>,
    storage: S,
    partitions: HashMap<(String, i32), Partition<S>>,
    groups: HashMap<GroupId, (String, i32)>,
    dirty: HashSet<(String, i32)>,
    flush_needed: Rc<Notify>,
    snapshot: SharedSnapshot,
    meta: Option<MetaStore<S>>,
    meta_dirty: bool,
    /// The metadata group's fdatasync is running off the thread ([`ShardState::flush_dirty`]).
    meta_syncing: bool,
    /// Partition logs flush on the ring without blocking the shard (its runtime waits on the
    /// ring's completion eventfd); false where that could not be set up.
    flush_on_ring: bool,
    /// Partitions whose flush runs, with their commit point when it began.
    flushing: HashMap<(String, i32), (i64, PendingFlush)>,
    publish: mpsc::UnboundedSender<Publication>,
    ticks: u64,
    /// Peers lost as this shard last brought its groups in line, and the version of
    /// [`Shared::lost_peers`] that was.
    lost_peers: std::collections::BTreeSet<NodeId>,
    liveness_version: u64,
    /// The hard states (term, vote) of this shard's partitions: one write and one fdatasync
    /// per round for all the groups whose hard state changed (an election of thousands).
    journal: HardStateJournal<S>,
    /// Every journal's hard states as the node started (a partition may have moved here from
    /// another shard's journal when `--cores` changed).
    journaled_at_start: HashMap<GroupId, HardState>,
    /// Partitions whose group is not quiet (or was not when last looked at): only these tick.
    awake: HashSet<(String, i32)>,
    /// The shard's transaction worker: markers the coordinators led here must write, and
    /// verifications of transactional batches (none in the simulator: no transaction runs there).
    markers: Option<mpsc::UnboundedSender<crate::msg::TxnWork>>,
    /// Transactional produces waiting for their coordinator's verification, by partition and
    /// producer id, in arrival order.
    verifying: HashMap<(String, i32, i64), Vec<HeldProduce>>,
    /// Partitions of `__consumer_offsets` and `__transaction_state` here, whose coordinators'
    /// timers run every tick.
    coordinators: HashSet<(String, i32)>,
    /// Partitions here being moved, and the replicas each moves to (from the snapshot).
    moving: Vec<((String, i32), Vec<i32>)>,
    /// Replicas the snapshot gave this shard that are not open yet: opened a batch at a time,
    /// so that ten thousand new ones do not hold the shard (and its peers' heartbeats) for
    /// seconds. Produce and fetch answer them NOT_LEADER_OR_FOLLOWER meanwhile.
    opening: std::collections::VecDeque<(String, i32)>,
    opening_keys: HashMap<(String, i32), GroupId>,
    opening_groups: HashMap<GroupId, (String, i32)>,
}

/// The error code for a failed log operation (a full disk is logged as such).
fn storage_error(e: &LogError) -> Code {
    if e.is_disk_full() {
        tracing::error!(error = %e, "disk full: produce refused until space is freed");
    }
    ResponseError::KafkaStorageError.code()
}

/// The leader's idempotent producers, rebuilt from the log first if this leader term has none
/// yet.
fn producers_of<S: NodeStorage>(p: &mut Partition<S>) -> Result<&Producers, LogError> {
    let term = p.replica.raft.term();
    if p.producers.as_ref().is_none_or(|(t, _)| *t != term) {
        let log = p.replica.raft.log();
        let from = (log.log_end_offset() - crate::producers::SCAN_OFFSETS).max(log.log_start_offset());
        p.producers = Some((term, Producers::from_headers(&log.batch_headers(from)?)));
    }
    Ok(&p.producers.as_ref().expect("built above").1)
}

/// Where the shards' hard-state journals are, under the data directory.
pub const JOURNAL_DIR: &str = "raft";

fn group_of(topic_id: uuid::Uuid, partition: i32) -> GroupId {
    GroupId { topic_id: topic_id.as_u128(), partition }
}

/// Directory of a partition's log: `<data>/kafka/<topic>-<partition>.<topic id>` (the id keeps a
/// re-created topic from meeting the old one's data).
pub fn partition_dir(data_dir: &std::path::Path, topic: &str, partition: i32, id: uuid::Uuid) -> PathBuf {
    data_dir.join("kafka").join(format!("{topic}-{partition}.{}", id.simple()))
}

impl<S: NodeStorage> ShardState<S> {
    /// A shard over `storage`, with its hard-state journal (opened here: a failure to open it
    /// keeps the shard from starting).
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        storage: S,
        meta: Option<MetaStore<S>>,
        publish: mpsc::UnboundedSender<Publication>,
    ) -> std::io::Result<Self> {
        let dir = shared.config.data_dir.join(JOURNAL_DIR);
        let journaled_at_start = journal::load_all(&storage, &dir)?;
        let journal = HardStateJournal::open(storage.clone(), &dir, id)?;
        let flush_needed = Rc::new(Notify::new());
        // The metadata group's first round: a cluster of one commits and applies at once.
        flush_needed.notify_one();
        Ok(Self {
            id,
            shared,
            storage,
            partitions: HashMap::default(),
            groups: HashMap::default(),
            dirty: HashSet::default(),
            flush_needed,
            snapshot: Arc::default(),
            meta_dirty: meta.is_some(),
            meta_syncing: false,
            flush_on_ring: false,
            flushing: HashMap::default(),
            meta,
            publish,
            ticks: 0,
            lost_peers: Default::default(),
            liveness_version: 0,
            journal,
            journaled_at_start,
            awake: HashSet::default(),
            coordinators: HashSet::default(),
            markers: None,
            verifying: HashMap::default(),
            moving: Vec::new(),
            opening: Default::default(),
            opening_keys: HashMap::default(),
            opening_groups: HashMap::default(),
        })
    }

    /// A partition replica's raft state, for the simulator's trace: role, term, leader, log
    /// end, durable end, commit point.
    pub fn raft_status(&self, topic: &str, partition: i32) -> Option<String> {
        let p = self.partitions.get(&(topic.to_owned(), partition))?;
        let raft = &p.replica.raft;
        Some(format!(
            "{:?} t{} leader {:?} end {} durable {} commit {}",
            raft.role(),
            raft.term(),
            raft.leader(),
            raft.log().log_end_offset(),
            raft.log().durable_offset(),
            raft.committed()
        ))
    }

    /// Where the shard hands the work of transactions done off its thread.
    pub fn set_txn_worker(&mut self, markers: mpsc::UnboundedSender<crate::msg::TxnWork>) {
        self.markers = Some(markers);
    }

    /// The metadata store (shard 0's).
    pub fn meta(&self) -> Option<&MetaStore<S>> {
        self.meta.as_ref()
    }

    pub fn meta_snapshot(&self) -> Option<SharedSnapshot> {
        self.meta.as_ref().map(MetaStore::snapshot)
    }

    /// Handles one message; returns false on shutdown.
    pub fn handle(&mut self, msg: ShardMsg) -> bool {
        match msg {
            ShardMsg::Produce { topic, partition, records, acks, transactional_id, reply } => {
                self.produce_verified(topic, partition, records, acks, transactional_id, reply)
            }
            ShardMsg::DescribeProducers { topic, partition, reply } => {
                let _ = reply.send(self.describe_producers(&topic, partition));
            }
            ShardMsg::Verified { topic, partition, producer_id, error } => {
                self.verified((topic, partition), producer_id, error)
            }
            ShardMsg::Fetch { topic, partition, offset, max_bytes, current_leader_epoch, committed_only, reply } => {
                let check = (current_leader_epoch, committed_only);
                let _ = reply.send(self.fetch(&topic, partition, offset, max_bytes, check));
            }
            ShardMsg::ListOffsets { topic, partition, timestamp, current_leader_epoch, committed_only, reply } => {
                let check = (current_leader_epoch, committed_only);
                let _ = reply.send(self.list_offsets(&topic, partition, timestamp, check));
            }
            ShardMsg::EpochEnd { topic, partition, current_leader_epoch, leader_epoch, reply } => {
                let _ = reply.send(self.end_offset_for_epoch(&topic, partition, current_leader_epoch, leader_epoch));
            }
            ShardMsg::Snapshot { snapshot, ack } => {
                if snapshot.zxid >= self.snapshot.zxid {
                    self.apply_snapshot(snapshot);
                }
                let _ = ack.send(());
            }
            ShardMsg::Meta { op, now_ms, reply } => {
                // Answered now if refused or only validated, else once the change has applied.
                if let Some(reply) = self.meta_op(op, now_ms, reply) {
                    let _ = reply.send(Ok(()));
                }
                self.meta_dirty = true;
                self.flush_needed.notify_one();
            }
            ShardMsg::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            ShardMsg::PartitionLeader { topic, partition, leader, epoch, replicas } => {
                if let Some(meta) = self.meta.as_mut() {
                    meta.set_partition_leader(&topic, partition, leader, epoch, &replicas);
                    self.meta_dirty = true;
                    self.flush_needed.notify_one();
                }
            }
            ShardMsg::Group { partition, request } => self.group_request(partition, request),
            ShardMsg::Txn { partition, request } => self.txn_request(partition, request),
            ShardMsg::TxnMarker { topic, partition, marker, reply } => {
                self.write_marker((topic, partition), marker, reply)
            }
            ShardMsg::ProducerId { reply } => match self.meta.as_mut() {
                Some(meta) => {
                    meta.producer_id(self.shared.env.now_ms(), reply);
                    self.meta_dirty = true;
                    self.flush_needed.notify_one();
                }
                None => {
                    let _ = reply
                        .send(Err((ResponseError::NotCoordinator.code(), "producer ids come from shard 0".into())));
                }
            },
            ShardMsg::Reassigned { topic, partition, voters } => {
                if let Some(meta) = self.meta.as_mut() {
                    meta.finish_reassignment(&topic, partition, &voters);
                    self.meta_dirty = true;
                    self.flush_needed.notify_one();
                }
            }
            ShardMsg::Raft { messages } => {
                for (group, message) in messages {
                    self.step(group, message);
                }
                self.flush_needed.notify_one();
            }
            ShardMsg::Liveness => self.sync_liveness(),
            ShardMsg::Zk(msg) => {
                if let Some(meta) = self.meta.as_mut() {
                    meta.zk(msg, self.shared.env.now_ms());
                    self.meta_dirty = true;
                    self.flush_needed.notify_one();
                }
            }
            ShardMsg::HandOver { reply } => {
                let _ = reply.send(self.hand_over());
            }
            ShardMsg::Shutdown { ack } => {
                self.flush_all();
                let _ = ack.send(());
                return false;
            }
        }
        true
    }

    /// Every partition's figures, and the shard's own.
    fn stats(&self) -> (Vec<PartitionStats>, ShardStats) {
        let memory = braid_engine::io::Storage::memory(&self.storage).figures();
        let mut shard = ShardStats {
            shard: self.id,
            partitions: self.partitions.len(),
            opening_partitions: self.opening.len(),
            memory,
            ..ShardStats::default()
        };
        let partitions = self
            .partitions
            .iter()
            .map(|((topic, partition), p)| {
                let log = p.replica.raft.log();
                let held = log.memory();
                // The replica's own structures (log, raft, waiters) besides its buffers.
                let state = std::mem::size_of::<Partition<S>>() + p.replica.raft.voters().len() * 64;
                let memory_bytes = held.total() + state;
                let quiet = p.replica.raft.quiesced();
                shard.quiet_partitions += usize::from(quiet);
                shard.log_tail_bytes += held.tail;
                shard.log_spare_buffers_bytes += held.spare_buffers;
                shard.log_positions_bytes += held.positions;
                shard.log_index_bytes += held.index;
                shard.partition_state_bytes += state;
                shard.partition_max_bytes = shard.partition_max_bytes.max(memory_bytes);
                PartitionStats {
                    topic: topic.clone(),
                    partition: *partition,
                    shard: self.id,
                    leader: p.replica.raft.leader().map_or(-1, NodeId::get),
                    log_start_offset: p.log_start(),
                    log_end_offset: log.log_end_offset(),
                    durable_offset: log.durable_offset(),
                    high_watermark: p.replica.raft.committed(),
                    size_bytes: log.size_bytes(),
                    segments: log.segment_count(),
                    memory_bytes,
                    quiet,
                    open_transactions: log.transactions_if_built().map_or(0, |t| t.open().len()),
                    last_stable_lag: log.transactions_if_built().map_or(0, |t| {
                        let high_watermark = p.replica.raft.committed();
                        high_watermark - t.last_stable(high_watermark)
                    }),
                    rejoining: p.replica.raft.rejoining(),
                }
            })
            .collect();
        (partitions, shard)
    }
}

/// Hands raft messages to the transport (a cluster of one has none).
fn send(shared: &Shared, group: GroupId, messages: Vec<Message>) {
    if let Some(net) = &shared.net {
        for message in messages {
            net.send(group, message);
        }
    }
}
