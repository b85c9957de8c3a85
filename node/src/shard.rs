//! A shard: one pinned thread, one io_uring, and the partitions that hash to it.
//!
//! Everything a shard owns (`ShardState`: logs, waiters) is touched by its thread only; other
//! shards reach it through its bounded queue of [`ShardMsg`], and answers go back over oneshot
//! channels. Shard 0 also owns the metadata store.

use crate::meta::{MetaStore, SharedSnapshot, TopicMeta};
use crate::metrics::PartitionStats;
use crate::runtime::Shared;
use crate::topic_config;
use braid_engine::io::UringStorage;
use braid_engine::log::batch::{self, BatchHeader};
use braid_engine::log::{DurabilityWaiters, Log, LogError};
use braid_engine::tree::TxnError;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};

/// Depth of a shard's request queue: senders wait (back-pressure) when it is full.
pub const SHARD_QUEUE_DEPTH: usize = 4096;

pub type Code = i16;

#[derive(Debug)]
pub struct ProduceOutcome {
    pub error: Code,
    pub message: Option<String>,
    pub base_offset: i64,
    pub log_start_offset: i64,
}

impl ProduceOutcome {
    pub fn failed(error: Code, message: Option<String>) -> Self {
        ProduceOutcome { error, message, base_offset: -1, log_start_offset: -1 }
    }
}

/// Splits a produce request's records into whole batches, checking each one's framing and size
/// against `max.message.bytes` (the CRCs are checked by the log, for all batches before any is
/// appended).
fn split_batches(
    records: &[u8],
    max_message_bytes: i64,
) -> Result<Vec<std::ops::Range<usize>>, (ResponseError, String)> {
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
        if header.total_bytes() as i64 > max_message_bytes {
            let message =
                format!("batch of {} bytes exceeds max.message.bytes {max_message_bytes}", header.total_bytes());
            return Err((ResponseError::MessageTooLarge, message));
        }
        batches.push(at..at + header.total_bytes());
        at += header.total_bytes();
    }
    Ok(batches)
}

/// Record bytes to send from a segment file (a duplicate descriptor: it stays valid even if the
/// segment is deleted meanwhile).
#[derive(Debug)]
pub struct RecordsChunk {
    pub file: Arc<File>,
    pub position: u64,
    pub len: u64,
}

#[derive(Debug)]
pub struct FetchOutcome {
    pub error: Code,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: Option<RecordsChunk>,
}

#[derive(Debug)]
pub struct OffsetOutcome {
    pub error: Code,
    pub offset: i64,
    pub timestamp: i64,
}

/// Changes to topics; applied by shard 0's metadata store.
#[derive(Debug, Clone)]
pub enum MetaOp {
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
        validate_only: bool,
    },
    /// Replaces the topic's overrides whole (AlterConfigs) or edits them (IncrementalAlterConfigs).
    SetConfigs {
        name: String,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
}

pub type MetaReply = Result<(), (Code, String)>;

pub enum ShardMsg {
    Produce {
        topic: String,
        partition: i32,
        records: Option<Bytes>,
        acks: i16,
        reply: oneshot::Sender<ProduceOutcome>,
    },
    Fetch {
        topic: String,
        partition: i32,
        offset: i64,
        max_bytes: u64,
        reply: oneshot::Sender<FetchOutcome>,
    },
    ListOffsets {
        topic: String,
        partition: i32,
        timestamp: i64,
        reply: oneshot::Sender<OffsetOutcome>,
    },
    /// A new metadata snapshot; the shard opens and closes partitions to match, then acks.
    Snapshot {
        snapshot: SharedSnapshot,
        ack: oneshot::Sender<()>,
    },
    /// For shard 0 only.
    Meta {
        op: MetaOp,
        now_ms: i64,
        reply: oneshot::Sender<MetaReply>,
    },
    Stats {
        reply: oneshot::Sender<Vec<PartitionStats>>,
    },
    /// Flush everything and stop.
    Shutdown {
        ack: oneshot::Sender<()>,
    },
}

struct Partition {
    log: Log<UringStorage>,
    dir: PathBuf,
    topic_id: uuid::Uuid,
    /// acks=all producers waiting for durability, with the base offset each one's batch got.
    waiters: DurabilityWaiters<(oneshot::Sender<ProduceOutcome>, i64)>,
    max_message_bytes: i64,
}

pub struct ShardState {
    pub id: usize,
    shared: Arc<Shared>,
    storage: UringStorage,
    partitions: HashMap<(String, i32), Partition>,
    dirty: HashSet<(String, i32)>,
    flush_needed: Rc<Notify>,
    snapshot: SharedSnapshot,
    meta: Option<MetaStore>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
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
    pub fn new(id: usize, shared: Arc<Shared>, storage: UringStorage, meta: Option<MetaStore>) -> Self {
        Self {
            id,
            shared,
            storage,
            partitions: HashMap::new(),
            dirty: HashSet::new(),
            flush_needed: Rc::new(Notify::new()),
            snapshot: Arc::default(),
            meta,
        }
    }

    pub fn flush_needed(&self) -> Rc<Notify> {
        Rc::clone(&self.flush_needed)
    }

    pub fn meta_snapshot(&self) -> Option<SharedSnapshot> {
        self.meta.as_ref().map(|m| Arc::new(m.snapshot()))
    }

    /// Handles one message; returns false on shutdown.
    pub fn handle(
        &mut self,
        msg: ShardMsg,
        snapshot_tx: &mpsc::UnboundedSender<(SharedSnapshot, oneshot::Sender<MetaReply>, MetaReply)>,
    ) -> bool {
        match msg {
            ShardMsg::Produce { topic, partition, records, acks, reply } => {
                self.produce(topic, partition, records, acks, reply)
            }
            ShardMsg::Fetch { topic, partition, offset, max_bytes, reply } => {
                let _ = reply.send(self.fetch(&topic, partition, offset, max_bytes));
            }
            ShardMsg::ListOffsets { topic, partition, timestamp, reply } => {
                let _ = reply.send(self.list_offsets(&topic, partition, timestamp));
            }
            ShardMsg::Snapshot { snapshot, ack } => {
                if snapshot.zxid >= self.snapshot.zxid {
                    self.apply_snapshot(snapshot);
                }
                let _ = ack.send(());
            }
            ShardMsg::Meta { op, now_ms, reply } => {
                let result = self.meta_op(op, now_ms);
                match (result, self.meta_snapshot()) {
                    (Ok(true), Some(snapshot)) => {
                        let _ = snapshot_tx.send((snapshot, reply, Ok(())));
                    }
                    (Ok(_), _) => {
                        let _ = reply.send(Ok(()));
                    }
                    (Err(e), _) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            ShardMsg::Stats { reply } => {
                let _ = reply.send(self.stats());
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
            let _ = reply.send(ProduceOutcome::failed(ResponseError::UnknownTopicOrPartition.code(), None));
            return;
        };
        if p.log.is_poisoned() {
            match Log::open(self.storage.clone(), &p.dir, p.log.config().clone()) {
                Ok((log, report)) => {
                    tracing::warn!(topic = %key.0, partition = key.1, ?report.corruption, "partition log reopened after an I/O failure");
                    p.log = log;
                }
                Err(e) => {
                    let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
                    return;
                }
            }
        }
        let records = records.unwrap_or_default();
        let batches = match split_batches(&records, p.max_message_bytes) {
            Ok(batches) => batches,
            Err((error, message)) => {
                let _ = reply.send(ProduceOutcome::failed(error.code(), Some(message)));
                return;
            }
        };
        let slices: Vec<&[u8]> = batches.into_iter().map(|range| &records[range]).collect();
        let base_offset = match p.log.append_all(&slices, 0) {
            Ok(infos) => infos.first().map_or(-1, |info| info.base_offset),
            Err(LogError::InvalidBatch(e)) => {
                let _ = reply.send(ProduceOutcome::failed(ResponseError::CorruptMessage.code(), Some(e.to_string())));
                return;
            }
            Err(e) => {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "append failed");
                let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
                return;
            }
        };
        let log_start_offset = p.log.log_start_offset();
        if acks == -1 {
            p.waiters.wait(p.log.log_end_offset(), (reply, base_offset));
            self.dirty.insert(key);
            self.flush_needed.notify_one();
            return;
        }
        if let Err(e) = p.log.write() {
            tracing::error!(topic = %key.0, partition = key.1, error = %e, "write failed");
            let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
            return;
        }
        // acks=1 answers once the batch is in the file (readable); the flusher makes it durable.
        self.dirty.insert(key);
        self.flush_needed.notify_one();
        self.shared.appended.notify_waiters();
        let _ = reply.send(ProduceOutcome { error: 0, message: None, base_offset, log_start_offset });
    }

    /// Flushes every partition with pending appends: one fdatasync each, releasing all the
    /// acks=all waiters it made durable (group commit).
    pub fn flush_dirty(&mut self) {
        let dirty: Vec<(String, i32)> = self.dirty.drain().collect();
        for key in dirty {
            let Some(p) = self.partitions.get_mut(&key) else { continue };
            match p.log.flush() {
                Ok(durable) => {
                    let log_start_offset = p.log.log_start_offset();
                    for (waiter, base_offset) in p.waiters.release(durable) {
                        let _ = waiter.send(ProduceOutcome { error: 0, message: None, base_offset, log_start_offset });
                    }
                }
                Err(e) => {
                    tracing::error!(topic = %key.0, partition = key.1, error = %e, "flush failed; the log will be reopened");
                    let code = storage_error(&e);
                    for (waiter, _) in p.waiters.fail_all() {
                        let _ = waiter.send(ProduceOutcome::failed(code, Some(e.to_string())));
                    }
                }
            }
        }
        self.shared.appended.notify_waiters();
    }

    fn flush_all(&mut self) {
        self.dirty.extend(self.partitions.keys().cloned());
        self.flush_dirty();
    }

    fn fetch(&mut self, topic: &str, partition: i32, offset: i64, max_bytes: u64) -> FetchOutcome {
        let empty = |error: ResponseError| FetchOutcome {
            error: error.code(),
            high_watermark: -1,
            log_start_offset: -1,
            records: None,
        };
        let Some(p) = self.partitions.get(&(topic.to_owned(), partition)) else {
            return empty(ResponseError::UnknownTopicOrPartition);
        };
        let high_watermark = p.log.written_offset();
        let log_start_offset = p.log.log_start_offset();
        let out_of_range = FetchOutcome {
            error: ResponseError::OffsetOutOfRange.code(),
            high_watermark,
            log_start_offset,
            records: None,
        };
        if offset < log_start_offset || offset > p.log.log_end_offset() {
            return out_of_range;
        }
        match p.log.read(offset, max_bytes.max(1), Some(high_watermark)) {
            Ok(None) => FetchOutcome { error: 0, high_watermark, log_start_offset, records: None },
            Ok(Some(slice)) => {
                let fd = p.log.segment_file(slice.segment_base_offset).and_then(|f| {
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

    fn list_offsets(&mut self, topic: &str, partition: i32, timestamp: i64) -> OffsetOutcome {
        let Some(p) = self.partitions.get(&(topic.to_owned(), partition)) else {
            return OffsetOutcome { error: ResponseError::UnknownTopicOrPartition.code(), offset: -1, timestamp: -1 };
        };
        match timestamp {
            -2 => OffsetOutcome { error: 0, offset: p.log.log_start_offset(), timestamp: -1 },
            -1 => OffsetOutcome { error: 0, offset: p.log.written_offset(), timestamp: -1 },
            t if t < 0 => OffsetOutcome { error: ResponseError::InvalidRequest.code(), offset: -1, timestamp: -1 },
            t => match p.log.offset_for_timestamp(t) {
                Ok(Some((base, max_timestamp))) => refine_by_record(&p.log, base, t)
                    .map_or(OffsetOutcome { error: 0, offset: base, timestamp: max_timestamp }, |(offset, ts)| {
                        OffsetOutcome { error: 0, offset, timestamp: ts }
                    }),
                Ok(None) => OffsetOutcome { error: 0, offset: -1, timestamp: -1 },
                Err(e) => {
                    tracing::error!(topic, partition, error = %e, "timestamp lookup failed");
                    OffsetOutcome { error: ResponseError::KafkaStorageError.code(), offset: -1, timestamp: -1 }
                }
            },
        }
    }

    fn apply_snapshot(&mut self, snapshot: SharedSnapshot) {
        let shards = self.shared.senders.len();
        let mut wanted: HashMap<(String, i32), &TopicMeta> = HashMap::new();
        for (name, meta) in &snapshot.topics {
            for partition in 0..meta.partitions.len() as i32 {
                if crate::runtime::owner_shard(name, partition, shards) == self.id {
                    wanted.insert((name.clone(), partition), meta);
                }
            }
        }
        let gone: Vec<(String, i32)> = self
            .partitions
            .iter()
            .filter(|(key, p)| wanted.get(*key).is_none_or(|meta| meta.id != p.topic_id))
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            if let Some(p) = self.partitions.remove(&key) {
                let mut p = p;
                for (waiter, _) in p.waiters.fail_all() {
                    let _ = waiter.send(ProduceOutcome::failed(ResponseError::UnknownTopicOrPartition.code(), None));
                }
                drop(p.log);
                if let Err(e) = std::fs::remove_dir_all(&p.dir) {
                    tracing::warn!(dir = %p.dir.display(), error = %e, "could not remove a deleted partition's directory");
                }
                tracing::info!(topic = %key.0, partition = key.1, "partition removed");
            }
            self.dirty.remove(&key);
        }
        for (key, meta) in wanted {
            let config = topic_config::log_config(&meta.configs);
            let max_message_bytes = topic_config::max_message_bytes(&meta.configs);
            if let Some(p) = self.partitions.get_mut(&key) {
                p.log.set_config(config);
                p.max_message_bytes = max_message_bytes;
                continue;
            }
            let dir = partition_dir(&self.shared.config.data_dir, &key.0, key.1, meta.id);
            match Log::open(self.storage.clone(), &dir, config) {
                Ok((log, report)) => {
                    if let Some(corruption) = &report.corruption {
                        tracing::warn!(topic = %key.0, partition = key.1, %corruption, "recovery cut the log at a torn or corrupt batch");
                    }
                    self.partitions.insert(
                        key,
                        Partition { log, dir, topic_id: meta.id, waiters: DurabilityWaiters::new(), max_message_bytes },
                    );
                }
                Err(e) => tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot open partition log"),
            }
        }
        self.snapshot = snapshot;
    }

    /// Runs retention on every partition, with the wall clock (the engine never reads it).
    pub fn apply_retention(&mut self) {
        let now = now_ms();
        for ((topic, partition), p) in &mut self.partitions {
            match p.log.apply_retention(now) {
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

    fn stats(&self) -> Vec<PartitionStats> {
        self.partitions
            .iter()
            .map(|((topic, partition), p)| PartitionStats {
                topic: topic.clone(),
                partition: *partition,
                shard: self.id,
                log_start_offset: p.log.log_start_offset(),
                log_end_offset: p.log.log_end_offset(),
                high_watermark: p.log.written_offset(),
                size_bytes: p.log.size_bytes(),
                segments: p.log.segment_count(),
            })
            .collect()
    }

    /// Applies a topic change on shard 0. Ok(true) when the metadata changed.
    fn meta_op(&mut self, op: MetaOp, now: i64) -> Result<bool, (Code, String)> {
        let node_id = self.shared.config.node_id;
        let default_partitions = self.shared.config.default_partitions;
        let Some(meta) = self.meta.as_mut() else {
            return Err((ResponseError::NotController.code(), "metadata changes go to shard 0".into()));
        };
        let snapshot = meta.snapshot();
        let committed = |r: anyhow::Result<Result<(), TxnError>>| -> Result<bool, (Code, String)> {
            match r {
                Ok(Ok(())) => Ok(true),
                Ok(Err(TxnError::NodeExists(p))) => {
                    Err((ResponseError::TopicAlreadyExists.code(), format!("{p} exists")))
                }
                Ok(Err(TxnError::NoNode(p))) => {
                    Err((ResponseError::UnknownTopicOrPartition.code(), format!("{p} does not exist")))
                }
                Ok(Err(e)) => Err((ResponseError::InvalidRequest.code(), e.to_string())),
                Err(e) => {
                    tracing::error!(error = %e, "metadata log write failed");
                    Err((ResponseError::KafkaStorageError.code(), format!("{e:#}")))
                }
            }
        };
        match op {
            MetaOp::CreateTopic { name, partitions, replication_factor, configs, validate_only } => {
                topic_config::validate_topic_name(&name)
                    .map_err(|m| (ResponseError::InvalidTopicException.code(), m))?;
                let partitions = if partitions == -1 { default_partitions } else { partitions };
                if !(1..=100_000).contains(&partitions) {
                    return Err((
                        ResponseError::InvalidPartitions.code(),
                        format!("Number of partitions must be 1..100000, not {partitions}"),
                    ));
                }
                if replication_factor != -1 && replication_factor != 1 {
                    return Err((
                        ResponseError::InvalidReplicationFactor.code(),
                        format!("Replication factor: {replication_factor} larger than available brokers: 1."),
                    ));
                }
                for (k, v) in &configs {
                    topic_config::validate(k, v).map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
                }
                if snapshot.topics.contains_key(&name) {
                    return Err((ResponseError::TopicAlreadyExists.code(), format!("Topic '{name}' already exists.")));
                }
                if validate_only {
                    return Ok(false);
                }
                let topic = TopicMeta {
                    id: uuid::Uuid::new_v4(),
                    partitions: vec![vec![node_id]; partitions as usize],
                    configs,
                };
                committed(meta.create_topic(&name, &topic, now))
            }
            MetaOp::DeleteTopic { name } => {
                if !snapshot.topics.contains_key(&name) {
                    return Err((
                        ResponseError::UnknownTopicOrPartition.code(),
                        format!("Topic '{name}' does not exist."),
                    ));
                }
                committed(meta.delete_topic(&name, now))
            }
            MetaOp::CreatePartitions { name, count, validate_only } => {
                let Some(topic) = snapshot.topics.get(&name) else {
                    return Err((
                        ResponseError::UnknownTopicOrPartition.code(),
                        format!("Topic '{name}' does not exist."),
                    ));
                };
                let current = topic.partitions.len() as i32;
                if count <= current || count > 100_000 {
                    return Err((
                        ResponseError::InvalidPartitions.code(),
                        format!("Topic currently has {current} partitions, which is higher than or equal to the requested {count}."),
                    ));
                }
                if validate_only {
                    return Ok(false);
                }
                let mut topic = topic.clone();
                topic.partitions.resize(count as usize, vec![node_id]);
                committed(meta.update_topic(&name, &topic, now))
            }
            MetaOp::SetConfigs { name, configs, validate_only } => {
                let Some(topic) = snapshot.topics.get(&name) else {
                    return Err((
                        ResponseError::UnknownTopicOrPartition.code(),
                        format!("Topic '{name}' does not exist."),
                    ));
                };
                for (k, v) in &configs {
                    topic_config::validate(k, v).map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
                }
                if validate_only {
                    return Ok(false);
                }
                let mut topic = topic.clone();
                topic.configs = configs;
                committed(meta.update_topic(&name, &topic, now))
            }
        }
    }
}

/// For an uncompressed batch, the first record at or after `timestamp` (Kafka's answer is
/// record-precise); compressed batches answer with the batch's base offset.
fn refine_by_record(log: &Log<UringStorage>, base_offset: i64, timestamp: i64) -> Option<(i64, i64)> {
    let slice = log.read(base_offset, 1, None).ok()??;
    let bytes = log.read_bytes(&slice).ok()?;
    let header = BatchHeader::parse(&bytes).ok()?;
    let records = batch::records(&bytes[..header.total_bytes().min(bytes.len())]).ok()?;
    records.iter().find(|r| r.timestamp >= timestamp).map(|r| (r.offset, r.timestamp))
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
