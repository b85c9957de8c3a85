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

mod offsets;
mod replicas;

use crate::groups::{self, Coordinator, JoinOutcome, Records, SyncOutcome, OFFSETS_TOPIC};
use crate::meta::{MetaRound, MetaStore, RoundStart, SharedSnapshot, TopicMeta};
use crate::metrics::{PartitionStats, ShardStats};
use crate::msg::{
    Code, FetchOutcome, GroupRequest, MetaOp, MetaReply, ProduceOutcome, Publication, RecordsChunk, ShardMsg,
};
use crate::process::now_ms;
use crate::producers::{Producers, Verdict};
use crate::replica::{PendingFlush, PendingPersist, Persist, Replica};
use crate::shared::Shared;
use crate::topic_config;
use braid_engine::io::UringStorage;
use braid_engine::log::batch::{self, BatchHeader};
use braid_engine::log::{DurabilityWaiters, Log, LogError};
use braid_engine::raft::journal::{self, HardStateJournal};
use braid_engine::raft::wire::GroupId;
use braid_engine::raft::{HardState, Message, NodeId, ProposeError, Term};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};

/// Why a produce request's records are refused: the error code and a message.
type ProduceRefusal = (ResponseError, String);

/// Splits a produce request's records into whole batches (with their headers), checking each one's framing and size
/// against `max.message.bytes` (the CRCs are checked by the log, for all batches before any is
/// appended).
fn split_batches(
    records: &[u8],
    max_message_bytes: i64,
) -> Result<Vec<(std::ops::Range<usize>, BatchHeader)>, ProduceRefusal> {
    if records.is_empty() {
        return Err((ResponseError::InvalidRecord, "no records".into()));
    }
    let mut batches = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let rest = &records[at..];
        let header = BatchHeader::parse(rest)
            .map_err(|e| (ResponseError::CorruptMessage, format!("batch at byte {at}: {e}")))?;
        if header.total_bytes() > rest.len() {
            let message = format!("batch of {} bytes truncated to {}", header.total_bytes(), rest.len());
            return Err((ResponseError::CorruptMessage, message));
        }
        if header.attributes & batch::CONTROL_ATTRIBUTE != 0 {
            // Control batches are the node's own (leader markers, configuration entries):
            // a client's would be taken for one.
            return Err((ResponseError::InvalidRecord, format!("batch at byte {at} is a control batch")));
        }
        if header.total_bytes() as i64 > max_message_bytes {
            let message =
                format!("batch of {} bytes exceeds max.message.bytes {max_message_bytes}", header.total_bytes());
            return Err((ResponseError::MessageTooLarge, message));
        }
        batches.push((at..at + header.total_bytes(), header));
        at += header.total_bytes();
    }
    Ok(batches)
}

struct Partition {
    replica: Replica,
    dir: PathBuf,
    topic_id: uuid::Uuid,
    voters: Vec<NodeId>,
    /// acks=all producers waiting for their batch to commit, with the base offset it got.
    waiters: DurabilityWaiters<(oneshot::Sender<ProduceOutcome>, i64)>,
    max_message_bytes: i64,
    /// Idempotent producers' last batches, valid for the leader term they were built in.
    producers: Option<(Term, Producers)>,
    /// On partitions of `__consumer_offsets`: the group coordinator and its applied offsets.
    coordinator: Option<Coordinator>,
    /// Log size after the last compaction (compacted topics).
    compacted_size: u64,
}

pub struct ShardState {
    pub id: usize,
    shared: Arc<Shared>,
    storage: UringStorage,
    partitions: HashMap<(String, i32), Partition>,
    groups: HashMap<GroupId, (String, i32)>,
    dirty: HashSet<(String, i32)>,
    flush_needed: Rc<Notify>,
    snapshot: SharedSnapshot,
    meta: Option<MetaStore>,
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
    journal: HardStateJournal<UringStorage>,
    /// Every journal's hard states as the node started (a partition may have moved here from
    /// another shard's journal when `--cores` changed).
    journaled_at_start: HashMap<GroupId, HardState>,
    /// Partitions whose group is not quiet (or was not when last looked at): only these tick.
    awake: HashSet<(String, i32)>,
    /// Partitions of `__consumer_offsets` here, whose coordinators' timers run every tick.
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

/// Where the shards' hard-state journals are, under the data directory.
pub const JOURNAL_DIR: &str = "raft";

/// Ticks between checks that the tree names this node as leader of the partitions it leads.
const ANNOUNCE_EVERY_TICKS: u64 = 20;
/// Ticks between hand-overs of leadership back to preferred replicas (10 s at 50 ms ticks):
/// after a failover, leaders drift back to where placement spread them, unhurried.
const REBALANCE_EVERY_TICKS: u64 = 200;

fn group_of(topic_id: uuid::Uuid, partition: i32) -> GroupId {
    GroupId { topic_id: topic_id.as_u128(), partition }
}

fn not_leader(replica: &Replica) -> ProduceOutcome {
    let message = match replica.raft.leader() {
        Some(id) => format!("node {id} leads this partition"),
        None => "this partition has no leader right now".to_owned(),
    };
    ProduceOutcome::failed(ResponseError::NotLeaderOrFollower.code(), Some(message))
}

fn storage_error(e: &LogError) -> Code {
    if e.is_disk_full() {
        tracing::error!(error = %e, "disk full: produce refused until space is freed");
    }
    ResponseError::KafkaStorageError.code()
}

/// Directory of a partition's log: `<data>/kafka/<topic>-<partition>.<topic id>` (the id keeps a
/// re-created topic from meeting the old one's data).
pub fn partition_dir(data_dir: &std::path::Path, topic: &str, partition: i32, id: uuid::Uuid) -> PathBuf {
    data_dir.join("kafka").join(format!("{topic}-{partition}.{}", id.simple()))
}

impl ShardState {
    /// A shard over `storage`, with its hard-state journal (opened here: a failure to open it
    /// keeps the shard from starting).
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        storage: UringStorage,
        meta: Option<MetaStore>,
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
            partitions: HashMap::new(),
            groups: HashMap::new(),
            dirty: HashSet::new(),
            flush_needed,
            snapshot: Arc::default(),
            meta_dirty: meta.is_some(),
            meta_syncing: false,
            flush_on_ring: false,
            flushing: HashMap::new(),
            meta,
            publish,
            ticks: 0,
            lost_peers: Default::default(),
            liveness_version: 0,
            journal,
            journaled_at_start,
            awake: HashSet::new(),
            coordinators: HashSet::new(),
            moving: Vec::new(),
            opening: Default::default(),
            opening_keys: HashMap::new(),
            opening_groups: HashMap::new(),
        })
    }

    /// A partition group's hard state in the journals, if it is there.
    fn journaled(&self, group: GroupId) -> Option<HardState> {
        match (self.journal.get(group), self.journaled_at_start.get(&group)) {
            (Some(a), Some(&b)) => Some(journal::newer(a, b)),
            (a, b) => a.or(b.copied()),
        }
    }

    /// Writes the hard state of every dirty group whose term or vote changed, in one journal
    /// write and one fdatasync; before any of their messages leaves (their rounds follow).
    /// If the journal fails, the groups keep their hard state dirty and each round writes it
    /// to the group's own file instead.
    fn persist_hard_states(&mut self) {
        let mut states = Vec::new();
        for key in &self.dirty {
            let Some(p) = self.partitions.get_mut(key) else { continue };
            if p.replica.raft.take_hard_state_dirty() {
                states.push((p.replica.group, p.replica.raft.hard_state()));
            }
        }
        if let Err(e) = self.journal.append(&states) {
            tracing::error!(error = %e, groups = states.len(), "writing the hard-state journal failed; each group writes its own file");
            for (group, _) in &states {
                let Some(key) = self.groups.get(group) else { continue };
                if let Some(p) = self.partitions.get_mut(key) {
                    p.replica.raft.persist_failed(true, false);
                }
            }
        }
    }

    pub fn flush_needed(&self) -> Rc<Notify> {
        Rc::clone(&self.flush_needed)
    }

    /// The shard's ring's completion eventfd, duplicated for the caller to own and wait on:
    /// readable whenever the ring completes something.
    pub fn ring_completion_fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        let raw = self.storage.completion_fd()?;
        // SAFETY: the ring owns `raw` for as long as this shard's storage lives; the duplicate
        // is the caller's.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) }.try_clone_to_owned()
    }

    /// From now on partition flushes run on the ring: the caller's flusher must then also wake
    /// on [`ShardState::ring_completion_fd`] and call [`ShardState::poll_flushes`].
    pub fn flush_partitions_on_ring(&mut self) {
        self.flush_on_ring = true;
    }

    /// True while a partition's flush runs on the ring.
    pub fn flushes_running(&self) -> bool {
        !self.flushing.is_empty()
    }

    /// Moves the running partition flushes on and ends those the device finished.
    pub fn poll_flushes(&mut self) {
        if self.flushing.is_empty() {
            return;
        }
        let mut ended = Vec::new();
        for (key, (_, pending)) in self.flushing.iter_mut() {
            let Some(p) = self.partitions.get_mut(key) else { continue };
            if let Some(result) = p.replica.flush_poll(pending) {
                ended.push((key.clone(), result));
            }
        }
        let mut committed_any = false;
        for (key, result) in ended {
            let Some((before, _)) = self.flushing.remove(&key) else { continue };
            committed_any |= self.after_persist(key, before, result);
        }
        if committed_any {
            self.shared.appended.notify_waiters();
        }
    }

    pub fn meta_snapshot(&self) -> Option<SharedSnapshot> {
        self.meta.as_ref().map(MetaStore::snapshot)
    }

    /// Handles one message; returns false on shutdown.
    pub fn handle(&mut self, msg: ShardMsg) -> bool {
        match msg {
            ShardMsg::Produce { topic, partition, records, acks, reply } => {
                self.produce(topic, partition, records, acks, reply)
            }
            ShardMsg::Fetch { topic, partition, offset, max_bytes, current_leader_epoch, reply } => {
                let _ = reply.send(self.fetch(&topic, partition, offset, max_bytes, current_leader_epoch));
            }
            ShardMsg::ListOffsets { topic, partition, timestamp, current_leader_epoch, reply } => {
                let _ = reply.send(self.list_offsets(&topic, partition, timestamp, current_leader_epoch));
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
            ShardMsg::ProducerId { reply } => match self.meta.as_mut() {
                Some(meta) => {
                    meta.producer_id(now_ms(), reply);
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
                    meta.zk(msg, now_ms());
                    self.meta_dirty = true;
                    self.flush_needed.notify_one();
                }
            }
            ShardMsg::Shutdown { ack } => {
                self.flush_all();
                let _ = ack.send(());
                return false;
            }
        }
        true
    }

    fn produce(
        &mut self,
        topic: String,
        partition: i32,
        records: Option<Bytes>,
        acks: i16,
        reply: oneshot::Sender<ProduceOutcome>,
    ) {
        let key = (topic, partition);
        let Some(p) = self.partitions.get_mut(&key) else {
            let error = if self.opening_keys.contains_key(&key) {
                // Being opened here (a topic just created): not led yet; clients retry.
                ResponseError::NotLeaderOrFollower
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            let _ = reply.send(ProduceOutcome::failed(error.code(), None));
            return;
        };
        if p.replica.raft.log().is_poisoned() {
            let journaled = self.journal.get(p.replica.group);
            let why = "the partition log failed and was reopened; the batch may not be stored";
            if let Err(e) = reopen(&key, p, why, journaled) {
                let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
                return;
            }
        }
        if !p.replica.is_leader() {
            let _ = reply.send(not_leader(&p.replica));
            return;
        }
        let records = records.unwrap_or_default();
        let batches = match split_batches(&records, p.max_message_bytes) {
            Ok(batches) => batches,
            Err((error, message)) => {
                let _ = reply.send(ProduceOutcome::failed(error.code(), Some(message)));
                return;
            }
        };
        let (slices, headers): (Vec<&[u8]>, Vec<BatchHeader>) =
            batches.into_iter().map(|(range, header)| (&records[range], header)).unzip();
        let idempotent = headers.iter().any(|h| h.producer_id >= 0);
        if idempotent {
            match check_producers(p, &headers) {
                Ok(Verdict::Append) => {}
                Ok(Verdict::Duplicate { base_offset, last_offset }) => {
                    // A retry of a stored batch: answered as the original is (once committed).
                    tracing::debug!(topic = %key.0, partition = key.1, base_offset, "a retried batch is stored already");
                    let end = last_offset + 1;
                    if acks == -1 && end > p.replica.raft.committed() {
                        p.waiters.wait(end, (reply, base_offset));
                    } else {
                        let log_start_offset = p.replica.raft.log().log_start_offset();
                        let _ = reply.send(ProduceOutcome { error: 0, message: None, base_offset, log_start_offset });
                    }
                    return;
                }
                Ok(Verdict::Refuse(error, message)) => {
                    let _ = reply.send(ProduceOutcome::failed(error.code(), Some(message)));
                    return;
                }
                Err(e) => {
                    let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
                    return;
                }
            }
        }
        let (base_offset, end) = match p.replica.raft.propose_all(&slices) {
            Ok(positions) => (positions.first().map_or(-1, |p| p.0), positions.last().map_or(-1, |p| p.1)),
            Err(ProposeError::NotLeader { .. }) => {
                let _ = reply.send(not_leader(&p.replica));
                return;
            }
            Err(ProposeError::Log(LogError::InvalidBatch(e))) => {
                let _ = reply.send(ProduceOutcome::failed(ResponseError::CorruptMessage.code(), Some(e.to_string())));
                return;
            }
            Err(ProposeError::ConfigChange(e)) => {
                let _ = reply.send(ProduceOutcome::failed(ResponseError::InvalidRecord.code(), Some(e)));
                return;
            }
            Err(ProposeError::Log(e)) => {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "append failed");
                let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
                return;
            }
        };
        if idempotent {
            if let Some((_, producers)) = p.producers.as_mut() {
                let mut at = base_offset;
                for h in &headers {
                    producers.record(&BatchHeader { base_offset: at, ..*h });
                    at += i64::from(h.last_offset_delta) + 1;
                }
            }
        }
        // Followers persist while the leader does.
        send(&self.shared, p.replica.group, p.replica.raft.take_leader_messages());
        if acks == -1 {
            p.waiters.wait(end, (reply, base_offset));
        } else {
            // acks=1 answers once the batch is in the leader's log file (a process that dies
            // after the answer keeps it); the round replicates it and makes it durable.
            if let Err(e) = p.replica.raft.log_mut().write() {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "writing an appended batch failed");
                let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
                self.dirty.insert(key);
                self.flush_needed.notify_one();
                return;
            }
            let log_start_offset = p.replica.raft.log().log_start_offset();
            let _ = reply.send(ProduceOutcome { error: 0, message: None, base_offset, log_start_offset });
        }
        self.dirty.insert(key);
        self.flush_needed.notify_one();
    }

    /// A raft message from a peer for a group of this shard (opened now if it was waiting to
    /// be; dropped if the group is unknown here).
    fn step(&mut self, group: GroupId, message: Message) {
        if group == GroupId::METADATA {
            if let Some(meta) = self.meta.as_mut() {
                meta.step(message);
                self.meta_dirty = true;
            }
            return;
        }
        let Some(key) = self.groups.get(&group).cloned().or_else(|| self.open_for_message(group)) else { return };
        if let Some(p) = self.partitions.get_mut(&key) {
            p.replica.raft.step(message);
            // A leader's next appends (after a follower's reply) leave at once.
            send(&self.shared, p.replica.group, p.replica.raft.take_leader_messages());
            self.dirty.insert(key);
        }
    }

    /// One raft round for every dirty group: persist (one fdatasync per log with appends:
    /// group commit), send what raft queued, release the producers whose batches committed.
    /// The metadata group's round leaves its fdatasync to the caller, to run off this thread
    /// while the shard serves clients and peers: the caller ends it with
    /// [`ShardState::end_meta_round`]. Until then the metadata group starts no other round.
    pub fn flush_dirty(&mut self) -> Option<PendingPersist> {
        self.open_pending();
        self.persist_hard_states();
        let mut committed_any = false;
        let dirty: Vec<(String, i32)> = self.dirty.drain().collect();
        for key in dirty {
            // Whatever made it dirty may have woken it: it ticks until it is quiet again.
            if self.partitions.get(&key).is_some_and(|p| !p.replica.raft.quiesced()) {
                self.awake.insert(key.clone());
            }
            if self.flushing.contains_key(&key) {
                // One flush at a time per log: the next round takes what came meanwhile.
                self.dirty.insert(key);
                continue;
            }
            let Some(p) = self.partitions.get_mut(&key) else { continue };
            let before = p.replica.raft.committed();
            let persisted = if self.flush_on_ring {
                match p.replica.flush_begin() {
                    Ok(Persist::Syncing(pending, early)) => {
                        send(&self.shared, p.replica.group, early);
                        self.flushing.insert(key, (before, pending));
                        continue;
                    }
                    Ok(Persist::Done(messages)) => Ok(messages),
                    Err(e) => Err(e),
                }
            } else {
                p.replica.persist()
            };
            committed_any |= self.after_persist(key, before, persisted);
        }
        if committed_any {
            self.shared.appended.notify_waiters();
        }
        if self.meta_dirty && !self.meta_syncing {
            self.meta_dirty = false;
            return self.meta_round();
        }
        if self.meta_dirty {
            // A sync runs: what committed meanwhile applies now, and the next round persists
            // what arrived (meta_dirty stays set).
            if let Some(meta) = self.meta.as_mut() {
                let round = meta.advance_round(now_ms());
                self.publish_meta_round(round);
            }
        }
        None
    }

    /// The rest of a partition's persist round once its log is durable (or failed to be): the
    /// messages leave, the producers whose batches committed are answered, leader changes are
    /// published. True if the commit point moved.
    fn after_persist(&mut self, key: (String, i32), before: i64, persisted: Result<Vec<Message>, String>) -> bool {
        let Some(p) = self.partitions.get_mut(&key) else { return false };
        match persisted {
            Ok(messages) => send(&self.shared, p.replica.group, messages),
            Err(e) => {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "persisting failed; the log will be reopened");
                let journaled = self.journal.get(p.replica.group);
                if let Err(e) = reopen(&key, p, &e, journaled) {
                    tracing::error!(topic = %key.0, partition = key.1, error = %e, "reopening failed");
                }
                return false;
            }
        }
        let committed = p.replica.raft.committed();
        if let Some(coordinator) = p.coordinator.as_mut() {
            apply_offsets(coordinator, p.replica.raft.log(), committed);
        }
        let log_start_offset = p.replica.raft.log().log_start_offset();
        for (waiter, base_offset) in p.waiters.release(committed) {
            let _ = waiter.send(ProduceOutcome { error: 0, message: None, base_offset, log_start_offset });
        }
        if let Some((leader, term)) = p.replica.leader_changed() {
            tracing::info!(topic = %key.0, partition = key.1, ?leader, term, "partition leader");
            let known = (leader.map_or(-1, |l| l as i32), term as i32);
            self.shared.leaders.write().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), known);
            if p.replica.is_leader() {
                announce_leader(&self.shared, &key, (self.shared.config.node_id, term as i32), &p.voters);
            }
            if !p.replica.is_leader() {
                if let Some(coordinator) = p.coordinator.as_mut() {
                    coordinator.lose_leadership();
                }
                // These batches are in the log but not committed: the next leader may keep
                // them or not. REQUEST_TIMED_OUT says "possibly stored" (clients count a
                // retry, and an idempotent producer deduplicates it); NOT_LEADER_OR_FOLLOWER
                // would tell them it was not stored, and they would resend a duplicate.
                let message = format!(
                    "leadership moved before the batch committed; it may be stored ({})",
                    not_leader(&p.replica).message.unwrap_or_default()
                );
                for (waiter, _) in p.waiters.fail_all() {
                    let _ = waiter
                        .send(ProduceOutcome::failed(ResponseError::RequestTimedOut.code(), Some(message.clone())));
                }
            }
        }
        committed > before
    }

    /// Sends what the metadata group's leader may send before its log is durable (its appends
    /// to followers); true if anything left.
    pub fn send_meta_leader_messages(&mut self) -> bool {
        let Some(meta) = self.meta.as_mut() else { return false };
        let messages = meta.leader_messages();
        let any = !messages.is_empty();
        send(&self.shared, GroupId::METADATA, messages);
        any
    }

    fn meta_round(&mut self) -> Option<PendingPersist> {
        let meta = self.meta.as_mut()?;
        match meta.begin_round(now_ms()) {
            RoundStart::Syncing(pending, round) => {
                self.meta_syncing = true;
                self.publish_meta_round(round);
                Some(pending)
            }
            RoundStart::Done(round) => {
                self.publish_meta_round(round);
                None
            }
        }
    }

    /// Ends the metadata round whose sync [`ShardState::flush_dirty`] handed out.
    pub fn end_meta_round(&mut self, pending: PendingPersist, synced: std::io::Result<()>) {
        self.meta_syncing = false;
        let Some(meta) = self.meta.as_mut() else { return };
        let round = meta.end_round(pending, synced, now_ms());
        self.publish_meta_round(round);
        if self.meta_dirty {
            // What arrived during the sync goes in the next round.
            self.flush_needed.notify_one();
        }
    }

    fn publish_meta_round(&mut self, round: MetaRound) {
        send(&self.shared, GroupId::METADATA, round.messages);
        if let Some(snapshot) = round.snapshot {
            if round.caught_up {
                remove_orphan_dirs(&self.shared.config.data_dir, &snapshot);
            }
            let _ = self.publish.send((snapshot, round.replies));
        }
    }

    /// Brings every group in line with the peers the transport reports lost or back since the
    /// last call: lost ones are [`braid_engine::raft::Raft::peer_lost`] to each group, those
    /// back [`braid_engine::raft::Raft::peer_back`]; groups that woke tick again.
    pub fn sync_liveness(&mut self) {
        let (version, lost) = {
            let shared = self.shared.lost_peers.read().unwrap_or_else(|e| e.into_inner());
            if shared.0 == self.liveness_version {
                return;
            }
            shared.clone()
        };
        self.liveness_version = version;
        let newly_lost: Vec<NodeId> = lost.difference(&self.lost_peers).copied().collect();
        let back: Vec<NodeId> = self.lost_peers.difference(&lost).copied().collect();
        self.lost_peers = lost;
        if let Some(meta) = self.meta.as_mut() {
            for &peer in &newly_lost {
                meta.peer_lost(peer);
            }
            for &peer in &back {
                meta.peer_back(peer);
            }
        }
        for (key, p) in self.partitions.iter_mut() {
            let raft = &mut p.replica.raft;
            for &peer in &newly_lost {
                raft.peer_lost(peer);
            }
            for &peer in &back {
                raft.peer_back(peer);
            }
            if !raft.quiesced() {
                self.dirty.insert(key.clone());
            }
        }
        self.flush_needed.notify_one();
    }

    /// One raft tick for every group this shard holds that is not quiet; coordinator timers;
    /// now and then a pass over every partition (leaders announced, leadership handed back to
    /// preferred replicas); a step of every move under way.
    pub fn tick(&mut self) {
        self.sync_liveness();
        self.ticks += 1;
        let announce = self.ticks.is_multiple_of(ANNOUNCE_EVERY_TICKS);
        let rebalance = self.ticks.is_multiple_of(REBALANCE_EVERY_TICKS);
        let me = self.shared.config.node_id as NodeId;
        let now = now_ms();
        // Only awake groups tick: ten thousand quiet ones cost nothing here. One that went quiet
        // (every follower has every entry) gives back what its log held for appends and
        // replication, once its last flush ended.
        let awake: Vec<(String, i32)> = self.awake.iter().cloned().collect();
        for key in awake {
            let Some(p) = self.partitions.get_mut(&key) else {
                self.awake.remove(&key);
                continue;
            };
            if !p.replica.raft.quiesced() {
                p.replica.raft.tick();
                self.dirty.insert(key);
            } else if !self.flushing.contains_key(&key) {
                self.awake.remove(&key);
                if let Err(e) = p.replica.raft.log_mut().release_idle_memory() {
                    tracing::debug!(topic = %key.0, partition = key.1, error = %e, "idle memory not released");
                }
            }
        }
        let mut group_writes = Vec::new();
        for key in &self.coordinators {
            let Some(p) = self.partitions.get_mut(key) else { continue };
            if let Some(coordinator) = p.coordinator.as_mut().filter(|_| p.replica.is_leader()) {
                coordinator.tick(now);
                let writes = coordinator.take_writes(now);
                if !writes.is_empty() {
                    group_writes.push((key.1, writes));
                }
            }
        }
        if announce || rebalance {
            for (key, p) in self.partitions.iter_mut().filter(|(_, p)| p.replica.is_leader()) {
                // The preferred replica (placement's first) leads when it is up and caught up.
                if let Some(preferred) = p.voters.first().copied().filter(|&r| rebalance && r != me) {
                    p.replica.raft.transfer_leadership(preferred);
                }
                let mine = (self.shared.config.node_id, p.replica.raft.term() as i32);
                if announce && self.snapshot.tree_leader(&key.0, key.1) != Some(mine) {
                    announce_leader(&self.shared, key, mine, p.replica.raft.voters());
                }
            }
        }
        for (key, target) in &self.moving {
            if let Some(p) = self.partitions.get_mut(key) {
                step_reassignment(&self.shared, key, p, target, announce);
            }
        }
        for (partition, writes) in group_writes {
            drop(self.write_group_records(partition, writes, now));
        }
        if let Some(meta) = self.meta.as_mut() {
            meta.tick();
            self.meta_dirty = true;
        }
        self.update_serving();
        self.flush_needed.notify_one();
    }

    /// Shard 0: whether this node serves clients. It starts serving (its listeners accept) once
    /// ready ([`MetaStore::ready`]) and every shard has the snapshot of that tree; it turns them
    /// away while cut off from the metadata leader, and until ready again after.
    fn update_serving(&mut self) {
        let Some(meta) = self.meta.as_ref() else { return };
        let published = self.shared.published.read().unwrap_or_else(|e| e.into_inner()).zxid;
        let ready = meta.ready() && published >= meta.snapshot().zxid;
        if !*self.shared.serving.borrow() {
            // Starting: the listeners accept nothing yet; being cut off means nothing until
            // the node has served once.
            if ready {
                tracing::info!(zxid = published, "caught up with the metadata leader: serving clients");
                self.shared.serving.send_replace(true);
            }
            return;
        }
        let was_cut_off = self.shared.cut_off.load(std::sync::atomic::Ordering::Relaxed);
        let cut_off = meta.cut_off() || (was_cut_off && !ready);
        if was_cut_off != cut_off {
            self.shared.cut_off.store(cut_off, std::sync::atomic::Ordering::Relaxed);
            if cut_off {
                tracing::warn!("no metadata-group leader reachable: cut off from the cluster; turning clients away");
            } else {
                tracing::info!("caught up with the metadata leader again: serving clients");
            }
        }
    }

    /// A consumer-group request for the coordinator of offsets partition `partition`.
    fn group_request(&mut self, partition: i32, request: GroupRequest) {
        let key = (OFFSETS_TOPIC.to_owned(), partition);
        let now = now_ms();
        let not_coordinator = ResponseError::NotCoordinator.code();
        // A new leader answers only once everything its predecessors committed is applied
        // (Kafka's coordinator load): else it could hand out a stale generation or offsets.
        let loading = self.partitions.get(&key).is_some_and(|p| {
            p.replica.is_leader()
                && (!p.replica.raft.leader_ready()
                    || p.coordinator.as_ref().is_some_and(|c| c.applied < p.replica.raft.term_start()))
        });
        let not_coordinator = if loading { ResponseError::CoordinatorLoadInProgress.code() } else { not_coordinator };
        let Some(p) = self.partitions.get_mut(&key).filter(|p| p.replica.is_leader() && !loading) else {
            match request {
                GroupRequest::Join { reply, request, .. } => {
                    let mut outcome = JoinOutcome { error: not_coordinator, generation: -1, ..Default::default() };
                    outcome.member_id = request.member_id;
                    let _ = reply.send(outcome);
                }
                GroupRequest::Sync { reply, .. } => {
                    let _ = reply.send(SyncOutcome { error: not_coordinator, ..Default::default() });
                }
                GroupRequest::Heartbeat { reply, .. }
                | GroupRequest::Commit { reply, .. }
                | GroupRequest::Delete { reply, .. } => {
                    let _ = reply.send(not_coordinator);
                }
                GroupRequest::Leave { reply, .. } => {
                    let _ = reply.send(Err(not_coordinator));
                }
                GroupRequest::Fetch { reply, .. } => {
                    let _ = reply.send(Err(not_coordinator));
                }
                GroupRequest::Describe { reply, .. } => {
                    let _ = reply.send(Err(not_coordinator));
                }
                GroupRequest::List { reply } => {
                    let _ = reply.send(Vec::new());
                }
            }
            return;
        };
        let Some(c) = p.coordinator.as_mut() else { return };
        let mut to_write: Option<(Records, oneshot::Sender<Code>)> = None;
        match request {
            GroupRequest::Join { group, request, reply } => c.join(&group, request, now, reply),
            GroupRequest::Sync { group, generation, member_id, assignments, reply } => {
                c.sync(&group, generation, &member_id, assignments, now, reply)
            }
            GroupRequest::Heartbeat { group, generation, member_id, reply } => {
                let _ = reply.send(c.heartbeat(&group, generation, &member_id, now));
            }
            GroupRequest::Leave { group, members, reply } => {
                let _ = reply.send(Ok(c.leave(&group, &members, now)));
            }
            GroupRequest::Commit { group, generation, member_id, offsets, reply } => {
                match c.check_commit(&group, generation, &member_id, now) {
                    Ok(()) => {
                        let records = offsets
                            .iter()
                            .map(|(topic, partition, committed)| {
                                let value = committed.as_ref().map(|c| groups::offset_value(c, now));
                                (groups::offset_key(&group, topic, *partition), value)
                            })
                            .collect();
                        to_write = Some((records, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(e.code());
                    }
                }
            }
            GroupRequest::Fetch { group, partitions, reply } => {
                let _ = reply.send(Ok(c.offsets(&group, partitions.as_deref())));
            }
            GroupRequest::Describe { group, reply } => {
                let _ = reply.send(Ok(c.describe(&group, now)));
            }
            GroupRequest::List { reply } => {
                let _ = reply.send(c.list(now));
            }
            GroupRequest::Delete { group, reply } => {
                if !c.is_empty(&group) {
                    let _ = reply.send(ResponseError::NonEmptyGroup.code());
                } else if !c.has_offsets(&group) {
                    c.forget(&group);
                    let code =
                        if c.describe(&group, now).0 == "Dead" { ResponseError::GroupIdNotFound.code() } else { 0 };
                    let _ = reply.send(code);
                } else {
                    let mut records: Records = c
                        .offsets(&group, None)
                        .into_iter()
                        .map(|((topic, partition), _)| (groups::offset_key(&group, &topic, partition), None))
                        .collect();
                    records.push((groups::group_key(&group), None));
                    c.forget(&group);
                    to_write = Some((records, reply));
                }
            }
        }
        let group_writes = c.take_writes(now);
        self.write_group_records(partition, group_writes, now);
        if let Some((records, reply)) = to_write {
            // Offsets are records of the partition, written like an acks=all produce; the map
            // changes when they commit (apply_offsets), before the answer.
            let rx = self.write_group_records(partition, records, now);
            tokio::task::spawn_local(async move {
                let code = match rx.await {
                    Ok(outcome) if outcome.error == ResponseError::NotLeaderOrFollower.code() => {
                        ResponseError::NotCoordinator.code()
                    }
                    Ok(outcome) => outcome.error,
                    Err(_) => ResponseError::UnknownServerError.code(),
                };
                let _ = reply.send(code);
            });
        }
    }

    /// Appends records to offsets partition `partition` (as an acks=all produce); the answer
    /// comes once they commit.
    fn write_group_records(&mut self, partition: i32, records: Records, now: i64) -> oneshot::Receiver<ProduceOutcome> {
        let (tx, rx) = oneshot::channel();
        if records.is_empty() {
            let _ = tx.send(ProduceOutcome { error: 0, message: None, base_offset: -1, log_start_offset: -1 });
            return rx;
        }
        let entries: Vec<batch::KeyValue<'_>> =
            records.iter().map(|(k, v)| (Some(k.as_slice()), v.as_deref())).collect();
        let batch = Bytes::from(batch::build_keyed_batch(now, &entries));
        self.produce(OFFSETS_TOPIC.to_owned(), partition, Some(batch), -1, tx);
        rx
    }

    fn flush_all(&mut self) {
        // Running flushes end here, waiting for the device: a shard stopping makes everything
        // durable (and a running sync's error is not lost).
        for (key, (before, pending)) in std::mem::take(&mut self.flushing) {
            let Some(p) = self.partitions.get_mut(&key) else { continue };
            let result = p.replica.flush_finish(pending);
            self.after_persist(key, before, result);
        }
        self.flush_on_ring = false;
        self.dirty.extend(self.partitions.keys().cloned());
        if let Some(pending) = self.flush_dirty() {
            let synced = pending.sync();
            self.end_meta_round(pending, synced);
        }
        if let Some(meta) = self.meta.as_mut() {
            // A round whose sync was still running when the shard stopped.
            if let Err(e) = meta.flush_log() {
                tracing::error!(error = %e, "metadata log: the last flush failed");
            }
        }
    }

    fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: u64,
        current_leader_epoch: i32,
    ) -> FetchOutcome {
        let empty = |error: ResponseError| FetchOutcome {
            error: error.code(),
            high_watermark: -1,
            log_start_offset: -1,
            records: None,
        };
        let p = match self.leading(topic, partition, current_leader_epoch) {
            Ok(p) => p,
            Err(error) => return empty(error),
        };
        let log = p.replica.raft.log();
        let high_watermark = p.replica.raft.committed();
        let log_start_offset = log.log_start_offset();
        let out_of_range = FetchOutcome {
            error: ResponseError::OffsetOutOfRange.code(),
            high_watermark,
            log_start_offset,
            records: None,
        };
        if offset < log_start_offset || offset > log.log_end_offset() {
            return out_of_range;
        }
        // Batches that compaction left without a record are skipped: a response of nothing but
        // such batches stalls clients (librdkafka reports the "message" as too large), while a
        // response starting past the fetch offset is what they expect of a compacted topic.
        let mut read = log.read(offset, max_bytes.max(1), Some(high_watermark));
        while let Ok(Some(slice)) = &read {
            if slice.records > 0 || slice.next_offset >= high_watermark {
                break;
            }
            read = log.read(slice.next_offset, max_bytes.max(1), Some(high_watermark));
        }
        match read {
            Ok(None) => FetchOutcome { error: 0, high_watermark, log_start_offset, records: None },
            Ok(Some(slice)) => {
                let fd = log.segment_file(slice.segment_base_offset).and_then(|f| {
                    use braid_engine::io::StorageFile;
                    f.raw_fd()
                });
                // SAFETY: the descriptor belongs to an open segment file of this shard's log; it is
                // only borrowed for the duration of the dup.
                let file =
                    fd.and_then(|fd| unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().ok()).map(File::from);
                match file {
                    Some(file) => FetchOutcome {
                        error: 0,
                        high_watermark,
                        log_start_offset,
                        records: Some(RecordsChunk { file: Arc::new(file), position: slice.position, len: slice.len }),
                    },
                    None => empty(ResponseError::KafkaStorageError),
                }
            }
            Err(LogError::OffsetOutOfRange { .. }) => out_of_range,
            Err(e) => {
                tracing::error!(topic, partition, error = %e, "read failed");
                empty(ResponseError::KafkaStorageError)
            }
        }
    }

    /// Runs retention on every partition, with the wall clock (the engine never reads it).
    /// Only committed data is deleted: a follower may still need what is past the commit point.
    pub fn apply_retention(&mut self) {
        self.compact();
        let now = now_ms();
        for ((topic, partition), p) in &mut self.partitions {
            let committed = p.replica.raft.committed();
            match p.replica.raft.log_mut().apply_retention_below(now, committed) {
                Ok(outcome) if outcome.deleted_segments > 0 => {
                    tracing::info!(
                        topic,
                        partition,
                        segments = outcome.deleted_segments,
                        bytes = outcome.deleted_bytes,
                        "retention deleted segments"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(topic, partition, error = %e, "retention failed"),
            }
        }
    }

    /// Compacts the partitions whose topic says cleanup.policy=compact, below the commit point
    /// (every replica on its own: they hold the same batches, and compaction keeps offsets).
    fn compact(&mut self) {
        let now = now_ms();
        for ((topic, partition), p) in &mut self.partitions {
            let committed = p.replica.raft.committed();
            let log = p.replica.raft.log_mut();
            // Only once the log has doubled since it was last compacted (Kafka's
            // min.cleanable.dirty.ratio of 0.5, by size): each pass reads the whole log.
            if log.config().cleanup_policy == braid_engine::log::CleanupPolicy::Delete
                || log.segment_count() < 2
                || log.size_bytes() < 2 * p.compacted_size
            {
                continue;
            }
            let result = log.compact(now, committed);
            p.compacted_size = log.size_bytes();
            match result {
                Ok(outcome) if outcome.segments > 0 => tracing::info!(
                    topic,
                    partition,
                    segments = outcome.segments,
                    records_removed = outcome.records_removed,
                    bytes_before = outcome.bytes_before,
                    bytes_after = outcome.bytes_after,
                    "compacted"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(topic, partition, error = %e, "compaction failed"),
            }
        }
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
                let state = std::mem::size_of::<Partition>() + p.replica.raft.voters().len() * 64;
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
                    leader: p.replica.raft.leader().map_or(-1, |l| l as i32),
                    log_start_offset: log.log_start_offset(),
                    log_end_offset: log.log_end_offset(),
                    durable_offset: log.durable_offset(),
                    high_watermark: p.replica.raft.committed(),
                    size_bytes: log.size_bytes(),
                    segments: log.segment_count(),
                    memory_bytes,
                    quiet,
                }
            })
            .collect();
        (partitions, shard)
    }

    /// Replica sets for partitions `from..to` of a topic: `replication_factor` consecutive
    /// members, starting at a place that moves with the topic and the partition, so replicas
    /// and first replicas (preferred leaders) spread over the nodes.
    fn place(&self, name: &str, from: i32, to: i32, replication_factor: usize) -> Vec<Vec<i32>> {
        let members = self.shared.config.members();
        let offset = crc32c::crc32c(name.as_bytes()) as usize;
        (from..to)
            .map(|p| {
                let start = offset.wrapping_add(p as usize);
                (0..replication_factor).map(|i| members[(start + i) % members.len()]).collect()
            })
            .collect()
    }

    /// Handles a topic change on shard 0: refused or validated at once (the reply is handed
    /// back, or answered with an error), else proposed, and answered once it has applied.
    fn meta_op(
        &mut self,
        op: MetaOp,
        now: i64,
        reply: oneshot::Sender<MetaReply>,
    ) -> Option<oneshot::Sender<MetaReply>> {
        let result = self.meta_op_inner(op, now, reply);
        match result {
            Ok(reply) => reply,
            Err((reply, error)) => {
                let _ = reply.send(Err(error));
                None
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn meta_op_inner(
        &mut self,
        op: MetaOp,
        now: i64,
        reply: oneshot::Sender<MetaReply>,
    ) -> Result<Option<oneshot::Sender<MetaReply>>, (oneshot::Sender<MetaReply>, (Code, String))> {
        let default_partitions = self.shared.config.default_partitions;
        let members = self.shared.config.members().len();
        let Some(meta) = self.meta.as_ref() else {
            return Err((reply, (ResponseError::NotController.code(), "metadata changes go to shard 0".into())));
        };
        if let Some(why) = meta.starting() {
            // Its tree may not hold what earlier controllers committed: nothing is checked
            // against it yet.
            return Err((reply, (ResponseError::NotController.code(), why.into())));
        }
        let snapshot = meta.snapshot();
        let unknown =
            |name: &str| (ResponseError::UnknownTopicOrPartition.code(), format!("Topic '{name}' does not exist."));
        match op {
            MetaOp::CreateTopic { name, partitions, replication_factor, configs, validate_only, forward } => {
                if let Err(m) = topic_config::validate_topic_name(&name) {
                    return Err((reply, (ResponseError::InvalidTopicException.code(), m)));
                }
                let partitions = if partitions == -1 { default_partitions } else { partitions };
                if !(1..=100_000).contains(&partitions) {
                    let message = format!("Number of partitions must be 1..100000, not {partitions}");
                    return Err((reply, (ResponseError::InvalidPartitions.code(), message)));
                }
                let replication_factor = match replication_factor {
                    -1 => self.shared.config.default_replication_factor,
                    rf => rf,
                };
                if replication_factor < 1 || replication_factor as usize > members {
                    let message =
                        format!("Replication factor: {replication_factor} larger than available brokers: {members}.");
                    return Err((reply, (ResponseError::InvalidReplicationFactor.code(), message)));
                }
                if replication_factor == 2 && !validate_only {
                    // A raft group of two needs both: unlike Kafka's ISR, it cannot shrink to one.
                    tracing::warn!(topic = %name, "replication factor 2 survives no node failure (a majority of 2 is 2); use 3");
                }
                for (k, v) in &configs {
                    if let Err(m) = topic_config::validate(k, v) {
                        return Err((reply, (ResponseError::InvalidConfig.code(), m)));
                    }
                }
                if snapshot.topics.contains_key(&name) {
                    let message = format!("Topic '{name}' already exists.");
                    return Err((reply, (ResponseError::TopicAlreadyExists.code(), message)));
                }
                if validate_only {
                    return Ok(Some(reply));
                }
                let topic = TopicMeta {
                    id: uuid::Uuid::new_v4(),
                    partitions: self.place(&name, 0, partitions, replication_factor as usize),
                    configs,
                    reassigning: BTreeMap::new(),
                };
                let meta = self.meta.as_mut().expect("checked above");
                if forward && !meta.is_leader() {
                    meta.forward_create_topic(&name, &topic, now);
                    let message = format!("Topic '{name}' is being created.");
                    return Err((reply, (ResponseError::LeaderNotAvailable.code(), message)));
                }
                meta.create_topic(&name, &topic, now, reply);
                Ok(None)
            }
            MetaOp::DeleteTopic { name } => {
                if !snapshot.topics.contains_key(&name) {
                    return Err((reply, unknown(&name)));
                }
                self.meta.as_mut().expect("checked above").delete_topic(&name, now, reply);
                Ok(None)
            }
            MetaOp::CreatePartitions { name, count, validate_only } => {
                let Some(topic) = snapshot.topics.get(&name) else {
                    return Err((reply, unknown(&name)));
                };
                let current = topic.partitions.len() as i32;
                if count <= current || count > 100_000 {
                    let message = format!("Topic currently has {current} partitions, which is higher than or equal to the requested {count}.");
                    return Err((reply, (ResponseError::InvalidPartitions.code(), message)));
                }
                if validate_only {
                    return Ok(Some(reply));
                }
                let replication_factor = topic.partitions.first().map_or(1, Vec::len);
                let mut topic = TopicMeta::clone(topic);
                topic.partitions.extend(self.place(&name, current, count, replication_factor));
                self.meta.as_mut().expect("checked above").update_topic(&name, &topic, now, reply);
                Ok(None)
            }
            MetaOp::SetConfigs { name, configs, validate_only } => {
                let Some(topic) = snapshot.topics.get(&name) else {
                    return Err((reply, unknown(&name)));
                };
                for (k, v) in &configs {
                    if let Err(m) = topic_config::validate(k, v) {
                        return Err((reply, (ResponseError::InvalidConfig.code(), m)));
                    }
                }
                if validate_only {
                    return Ok(Some(reply));
                }
                let mut topic = TopicMeta::clone(topic);
                topic.configs = configs;
                self.meta.as_mut().expect("checked above").update_topic(&name, &topic, now, reply);
                Ok(None)
            }
            MetaOp::Reassign { name, partition, replicas } => {
                let Some(topic) =
                    snapshot.topics.get(&name).filter(|t| (0..t.partitions.len() as i32).contains(&partition))
                else {
                    return Err((reply, unknown(&name)));
                };
                let moving = topic.reassigning.contains_key(&partition);
                let target = match replicas {
                    None if !moving => {
                        let message = format!("no reassignment of {name}-{partition} is in progress");
                        return Err((reply, (ResponseError::NoReassignmentInProgress.code(), message)));
                    }
                    None => topic.original(partition),
                    Some(_) if moving => {
                        let message = format!("{name}-{partition} is being moved already; cancel that move first");
                        return Err((reply, (ResponseError::ReassignmentInProgress.code(), message)));
                    }
                    Some(target) => target,
                };
                let members = self.shared.config.members();
                let distinct: HashSet<i32> = target.iter().copied().collect();
                if target.is_empty() || distinct.len() != target.len() || target.iter().any(|r| !members.contains(r)) {
                    let message = format!("replicas {target:?} must be distinct members of the cluster {members:?}");
                    return Err((reply, (ResponseError::InvalidReplicaAssignment.code(), message)));
                }
                let mut topic = TopicMeta::clone(topic);
                topic.reassign(partition, target);
                self.meta.as_mut().expect("checked above").update_topic(&name, &topic, now, reply);
                Ok(None)
            }
        }
    }
}

/// Applies a coordinator's newly committed offset records (every replica does, so a new
/// leader has them all).
fn apply_offsets(c: &mut Coordinator, log: &Log<UringStorage>, committed: i64) {
    c.applied = c.applied.max(log.log_start_offset());
    while c.applied < committed {
        let Ok(Some(slice)) = log.read(c.applied, 1 << 20, Some(committed)) else { return };
        let Ok(bytes) = log.read_bytes(&slice) else { return };
        let mut at = 0;
        while at < bytes.len() {
            let Ok(header) = BatchHeader::parse(&bytes[at..]) else { return };
            let end = (at + header.total_bytes()).min(bytes.len());
            if header.attributes & batch::CONTROL_ATTRIBUTE == 0 {
                for record in batch::records(&bytes[at..end]).unwrap_or_default() {
                    if let Some(key) = record.key {
                        c.apply(key, record.value);
                    }
                }
            }
            c.applied = header.next_offset();
            at = end;
        }
    }
}

/// Asks shard 0 to write this node into the tree as the partition's leader (dropped if its
/// queue is full: the periodic check asks again).
fn announce_leader(shared: &Shared, key: &(String, i32), (leader, epoch): (i32, i32), voters: &[NodeId]) {
    let replicas = voters.iter().map(|&v| v as i32).collect();
    let msg = ShardMsg::PartitionLeader { topic: key.0.clone(), partition: key.1, leader, epoch, replicas };
    let _ = shared.senders[0].try_send(msg);
}

/// The verdict on a produce request's batches from idempotent producers, with the state
/// rebuilt from the log first if this leader term has none yet. A request holds one batch per
/// partition from such a producer (Kafka requires it); several are appended only if each
/// is next in its sequence.
fn check_producers(p: &mut Partition, headers: &[BatchHeader]) -> Result<Verdict, LogError> {
    let term = p.replica.raft.term();
    if p.producers.as_ref().is_none_or(|(t, _)| *t != term) {
        let log = p.replica.raft.log();
        let from = (log.log_end_offset() - crate::producers::SCAN_OFFSETS).max(log.log_start_offset());
        p.producers = Some((term, Producers::from_headers(&log.batch_headers(from)?)));
    }
    let (_, producers) = p.producers.as_ref().expect("built above");
    if let [only] = headers {
        return Ok(producers.check(only));
    }
    for h in headers {
        match producers.check(h) {
            Verdict::Append => {}
            _ => {
                let message = "batches of an idempotent producer come one per partition and request".to_owned();
                return Ok(Verdict::Refuse(ResponseError::InvalidRecord, message));
            }
        }
    }
    Ok(Verdict::Append)
}

/// One step of a partition's move, on its leader, once the previous change has committed:
/// - add one voter of the target (additions first: the group never shrinks below the
///   target's size, and a new voter catches up while the old majority goes on committing);
/// - once every voter of the target holds every committed entry, remove one that is not in
///   the target; the leader itself last, by first handing leadership to a target voter (no
///   election gap);
/// - when the voters are the target, report it (every `report` tick) so the controller ends
///   the move.
fn step_reassignment(shared: &Shared, key: &(String, i32), p: &mut Partition, target: &[i32], report: bool) {
    let raft = &mut p.replica.raft;
    if !raft.config_settled() {
        return;
    }
    let me = shared.config.node_id as NodeId;
    let target: Vec<NodeId> = target.iter().map(|&r| r as NodeId).collect();
    let voters = raft.voters().to_vec();
    let next = if let Some(add) = target.iter().find(|n| !voters.contains(n)) {
        [voters.clone(), vec![*add]].concat()
    } else if voters.iter().any(|n| !target.contains(n)) {
        if !target.iter().all(|&n| raft.caught_up(n)) {
            return;
        }
        match voters.iter().find(|&&n| !target.contains(&n) && n != me) {
            Some(&remove) => voters.iter().copied().filter(|&n| n != remove).collect(),
            None => {
                // Only this node is left to remove: a target voter takes over and removes it.
                if let Some(&to) = target.first() {
                    raft.transfer_leadership(to);
                }
                return;
            }
        }
    } else {
        if report {
            let voters = voters.iter().map(|&v| v as i32).collect();
            let _ = shared.senders[0].try_send(ShardMsg::Reassigned { topic: key.0.clone(), partition: key.1, voters });
        }
        return;
    };
    match raft.propose_config(next.clone()) {
        Ok(_) => {
            tracing::info!(topic = %key.0, partition = key.1, from = ?voters, to = ?next, "partition voters change")
        }
        Err(e) => tracing::debug!(topic = %key.0, partition = key.1, error = ?e, "voter change not proposed"),
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

/// Reopens a partition whose log failed (recovery runs again); raft starts over as a follower
/// from its persisted hard state. The log is cut back to what was durable, so the producers
/// waiting for offsets past it are answered first (`why`), with KAFKA_STORAGE_ERROR: the
/// offsets they wait for may go to other batches, which must never acknowledge them.
fn reopen(key: &(String, i32), p: &mut Partition, why: &str, journaled: Option<HardState>) -> Result<(), LogError> {
    let code = ResponseError::KafkaStorageError.code();
    for (waiter, _) in p.waiters.fail_all() {
        let _ = waiter.send(ProduceOutcome::failed(code, Some(why.to_owned())));
    }
    let report = p.replica.reopen(p.voters.clone(), journaled)?;
    tracing::warn!(topic = %key.0, partition = key.1, ?report.corruption, "partition log reopened after an I/O failure");
    Ok(())
}

/// Removes partition directories of topics that no longer exist (left by a crash between a
/// delete's commit and the directory's removal).
pub fn remove_orphan_dirs(data_dir: &std::path::Path, snapshot: &SharedSnapshot) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("kafka")) else { return };
    let live: HashSet<PathBuf> = snapshot
        .topics
        .iter()
        .flat_map(|(name, meta)| {
            (0..meta.partitions.len() as i32).map(move |p| partition_dir(data_dir, name, p, meta.id))
        })
        .collect();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !live.contains(&path) {
            tracing::info!(dir = %path.display(), "removing the directory of a deleted partition");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
