//! The messages shards exchange, and what they answer: the one vocabulary the Kafka and
//! ZooKeeper front ends, the admin endpoint and the shards share. It sits at the bottom of the
//! node: it names the payloads of other modules (groups, the metadata snapshot, the ZooKeeper
//! server's messages, metrics) but no module's logic, so nothing here imports a shard or the
//! runtime.

use crate::groups::{Committed, Described, JoinOutcome, JoinRequest, OffsetsOf, SyncOutcome};
use crate::metadata::SharedSnapshot;
use crate::metrics::{PartitionStats, ShardStats};
use crate::txn::{AbortedTxn, MarkerPlan, TxnMeta};
use braid_engine::raft::wire::GroupId;
use braid_engine::raft::Message;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;
use tokio::sync::oneshot;

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

/// Record bytes to send.
#[derive(Debug)]
pub enum RecordsChunk {
    /// A range of a segment file, sent with sendfile (a duplicate descriptor: it stays valid
    /// even if the segment is deleted meanwhile).
    File { file: Arc<File>, position: u64, len: u64 },
    /// The bytes themselves, read from a storage whose files have no descriptor (the
    /// simulator's).
    Bytes(Bytes),
}

impl RecordsChunk {
    pub fn len(&self) -> u64 {
        match self {
            RecordsChunk::File { len, .. } => *len,
            RecordsChunk::Bytes(bytes) => bytes.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
pub struct FetchOutcome {
    pub error: Code,
    pub high_watermark: i64,
    /// The last stable offset (transactions open before it: none), -1 if unknown.
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records: Option<RecordsChunk>,
    /// For read_committed: the aborted transactions with records in what is returned.
    pub aborted: Option<Vec<AbortedTxn>>,
}

impl FetchOutcome {
    /// A partition that cannot be read: the error and nothing else.
    pub fn failed(error: ResponseError) -> Self {
        FetchOutcome {
            error: error.code(),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            records: None,
            aborted: None,
        }
    }
}

/// What a transaction coordinator answers an InitProducerId.
pub enum TxnInit {
    /// A new producer id is needed: ask again with one.
    NeedProducerId,
    /// The answer, once the record (if any) commits: its outcome comes on the receiver.
    Answer(Result<(i64, i16), Code>, Option<oneshot::Receiver<Code>>),
}

/// Requests to the transaction coordinator of a `__transaction_state` partition
/// (NOT_COORDINATOR if this node does not lead it).
pub enum TxnRequest {
    Init {
        id: String,
        timeout_ms: i32,
        /// The producer id and epoch a producer recovering from an error gives (KIP-360).
        expected: Option<(i64, i16)>,
        new_id: Option<i64>,
        /// The client connection's number in the node's accept order (None: not a client's).
        conn: Option<u64>,
        reply: oneshot::Sender<TxnInit>,
    },
    /// AddPartitionsToTxn, AddOffsetsToTxn (the group's offsets partition): answered once
    /// recorded.
    AddPartitions {
        id: String,
        producer: (i64, i16),
        partitions: Vec<(String, i32)>,
        conn: Option<u64>,
        reply: oneshot::Sender<Code>,
    },
    /// A partition leader asks whether a producer's transaction holds a partition (KIP-890).
    Verify { id: String, producer: (i64, i16), partition: (String, i32), reply: oneshot::Sender<Code> },
    /// EndTxn: answered once the markers are written and the transaction completed.
    End { id: String, producer: (i64, i16), commit: bool, conn: Option<u64>, reply: oneshot::Sender<Code> },
    /// The markers of a transaction are written.
    Complete { plan: MarkerPlan },
    /// Transactional ids coordinated here (ListTransactions, DescribeTransactions).
    List { reply: oneshot::Sender<Result<Vec<(String, TxnMeta)>, Code>> },
}

/// A producer as DescribeProducers shows it: id, epoch, last sequence and timestamp; the first
/// offset of its open transaction (-1: none); its last marker's coordinator epoch (-1: none).
pub type DescribedProducer = (crate::producers::ActiveProducer, i64, i32);

/// A transaction marker for a partition (WriteTxnMarkers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// What a shard hands its transaction worker (the async side of transactions).
#[derive(Debug)]
pub enum TxnWork {
    /// Markers a coordinator's leader must write: its `__transaction_state` partition and
    /// epoch, and the transaction.
    Markers(i32, i32, MarkerPlan),
    /// A partition leader asks the coordinator of transactional id `id` whether the producer's
    /// transaction holds `partition` (KIP-890), answered with [`ShardMsg::Verified`].
    Verify { id: String, producer: (i64, i16), partition: (String, i32) },
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
        /// A Metadata request's auto-creation: on a node that is not the controller it is
        /// forwarded to the controller, and answered LEADER_NOT_AVAILABLE (retry shortly).
        forward: bool,
        /// Replicas chosen by the client, partition by partition (CreateTopics' assignments);
        /// None: the controller places them.
        assignment: Option<Vec<Vec<i32>>>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
        validate_only: bool,
        /// The new partitions' replicas, chosen by the client (CreatePartitions' assignments);
        /// None: the controller places them.
        assignment: Option<Vec<Vec<i32>>>,
    },
    /// Replaces the topic's overrides whole (AlterConfigs) or edits them (IncrementalAlterConfigs).
    SetConfigs {
        name: String,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
    /// Moves a partition to other replicas (AlterPartitionReassignments); None cancels a move.
    Reassign {
        name: String,
        partition: i32,
        replicas: Option<Vec<i32>>,
    },
    /// Asks the leaders of these partitions to hand leadership to their preferred replicas
    /// (ElectLeaders).
    ElectPreferred {
        partitions: Vec<(String, i32)>,
    },
    /// Moves partitions' log start offsets up: (partition, offset) of one topic
    /// (DeleteRecords; each checked against the partition's high watermark by its leader
    /// first). One metadata write for them all.
    DeleteRecords {
        name: String,
        starts: Vec<(i32, i64)>,
    },
}

pub type MetaReply = Result<(), (Code, String)>;

/// A producer id (InitProducerId), or why there is none.
pub type ProducerIdReply = Result<i64, (i16, String)>;

/// Consumer-group requests, answered by a partition's [`Coordinator`] (NOT_COORDINATOR if this
/// node does not lead the partition).
pub enum GroupRequest {
    Join {
        group: String,
        request: JoinRequest,
        reply: oneshot::Sender<JoinOutcome>,
    },
    Sync {
        group: String,
        generation: i32,
        member_id: String,
        /// The member's group.instance.id (static membership), if it has one.
        instance_id: Option<String>,
        assignments: Vec<(String, Bytes)>,
        reply: oneshot::Sender<SyncOutcome>,
    },
    Heartbeat {
        group: String,
        generation: i32,
        member_id: String,
        instance_id: Option<String>,
        reply: oneshot::Sender<Code>,
    },
    Leave {
        group: String,
        members: Vec<(String, Option<String>)>,
        reply: oneshot::Sender<Result<Vec<Code>, Code>>,
    },
    /// Offsets to write (a null offset deletes); answered once committed.
    Commit {
        group: String,
        generation: i32,
        member_id: String,
        instance_id: Option<String>,
        offsets: Vec<(String, i32, Option<Committed>)>,
        /// TxnOffsetCommit: the transactional producer whose transaction holds the offsets.
        producer: Option<(i64, i16)>,
        reply: oneshot::Sender<Code>,
    },
    Fetch {
        group: String,
        partitions: Option<Vec<(String, i32)>>,
        /// OffsetFetch's require_stable: UNSTABLE_OFFSET_COMMIT while a transaction holds one.
        require_stable: bool,
        reply: oneshot::Sender<Result<OffsetsOf, Code>>,
    },
    Describe {
        group: String,
        reply: oneshot::Sender<Result<Described, Code>>,
    },
    List {
        reply: oneshot::Sender<Vec<(String, String, &'static str)>>,
    },
    /// Deletes an empty group's offsets (and the group).
    Delete {
        group: String,
        reply: oneshot::Sender<Code>,
    },
}

pub enum ShardMsg {
    Produce {
        topic: String,
        partition: i32,
        records: Option<Bytes>,
        acks: i16,
        /// The transactional id a transactional producer sends with its records.
        transactional_id: Option<String>,
        reply: oneshot::Sender<ProduceOutcome>,
    },
    Fetch {
        topic: String,
        partition: i32,
        offset: i64,
        max_bytes: u64,
        /// The leader epoch the client believes current (-1: no check).
        current_leader_epoch: i32,
        /// read_committed: up to the last stable offset, with the aborted transactions.
        committed_only: bool,
        reply: oneshot::Sender<FetchOutcome>,
    },
    ListOffsets {
        topic: String,
        partition: i32,
        timestamp: i64,
        current_leader_epoch: i32,
        /// read_committed: the latest offset is the last stable offset.
        committed_only: bool,
        reply: oneshot::Sender<OffsetOutcome>,
    },
    /// Where a leader epoch ends in the partition's log (OffsetForLeaderEpoch).
    EpochEnd {
        topic: String,
        partition: i32,
        current_leader_epoch: i32,
        leader_epoch: i32,
        reply: oneshot::Sender<EpochEndOutcome>,
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
        reply: oneshot::Sender<(Vec<PartitionStats>, ShardStats)>,
    },
    /// Raft messages from a peer (of one frame), for groups this shard owns.
    Raft {
        messages: Vec<(GroupId, Message)>,
    },
    /// The raft transport reported a peer lost or back (in [`Shared::lost_peers`]): groups it
    /// leads here look for a new leader soon, quiet groups it belongs to wake
    /// ([`ShardState::sync_liveness`]).
    Liveness,
    /// For shard 0: a partition's leader asks to be written to the tree.
    PartitionLeader {
        topic: String,
        partition: i32,
        leader: i32,
        epoch: i32,
        replicas: Vec<i32>,
    },
    /// A consumer-group request, for the coordinator of `__consumer_offsets` partition
    /// `partition` (on the shard owning it).
    Group {
        partition: i32,
        request: GroupRequest,
    },
    /// A transaction coordinator request, for `__transaction_state` partition `partition`.
    Txn {
        partition: i32,
        request: TxnRequest,
    },
    /// A transaction marker to write on a partition this node leads; answered once committed.
    TxnMarker {
        topic: String,
        partition: i32,
        marker: Marker,
        reply: oneshot::Sender<Code>,
    },
    /// A transactional producer's transaction holds this partition (0) or why not: its batches
    /// waiting for the answer are appended or refused.
    Verified {
        topic: String,
        partition: i32,
        producer_id: i64,
        error: Code,
    },
    /// The producers a partition's leader knows (DescribeProducers): each with the first
    /// offset of its open transaction (-1: none) and its last marker's coordinator epoch.
    DescribeProducers {
        topic: String,
        partition: i32,
        reply: oneshot::Sender<Result<Vec<DescribedProducer>, Code>>,
    },
    /// For shard 0: a new producer id (InitProducerId).
    ProducerId {
        reply: oneshot::Sender<ProducerIdReply>,
    },
    /// For shard 0: a partition's voters are the target of its move.
    Reassigned {
        topic: String,
        partition: i32,
        voters: Vec<i32>,
    },
    /// For shard 0: a ZooKeeper client's connect, request or close.
    Zk(crate::zk::server::ZkMsg),
    /// A graceful stop begins: hand the leadership of every replicated group this shard leads
    /// to another voter, and say how many it still leads (asked again until none).
    HandOver {
        reply: oneshot::Sender<usize>,
    },
    /// Flush everything and stop.
    Shutdown {
        ack: oneshot::Sender<()>,
    },
}

/// Snapshots to send to every shard, and the clients to answer once all have applied it.
pub type Publication = (SharedSnapshot, Vec<(oneshot::Sender<MetaReply>, MetaReply)>);

#[derive(Debug)]
pub struct OffsetOutcome {
    pub error: Code,
    pub offset: i64,
    pub timestamp: i64,
    /// The leader epoch of the batch holding `offset` (for the latest offset, the leader's
    /// current epoch); -1 if unknown.
    pub leader_epoch: i32,
}

impl OffsetOutcome {
    pub fn failed(error: ResponseError) -> Self {
        OffsetOutcome { error: error.code(), offset: -1, timestamp: -1, leader_epoch: -1 }
    }
}

/// Where a leader epoch ends (OffsetForLeaderEpoch): Kafka's undefined answer is -1 and -1.
#[derive(Debug)]
pub struct EpochEndOutcome {
    pub error: Code,
    pub leader_epoch: i32,
    pub end_offset: i64,
}

impl EpochEndOutcome {
    pub fn failed(error: ResponseError) -> Self {
        EpochEndOutcome { error: error.code(), leader_epoch: -1, end_offset: -1 }
    }
}
