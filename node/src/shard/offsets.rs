//! A partition leader's answers about offsets and leader epochs (ListOffsets, OffsetForLeaderEpoch)
//! and Kafka's check of the leader epoch a client believes current (KIP-320), which Fetch uses
//! too. Runs on the shard owning the partition.
//!
//! A partition's leader epoch is its raft term: the term stamped into every batch it appends
//! (partitionLeaderEpoch) and the epoch Metadata reports for its leader.

use super::{Partition, ShardState};
use crate::msg::{EpochEndOutcome, OffsetOutcome};
use crate::storage::NodeStorage;
use braid_engine::log::batch;
use braid_engine::log::Log;
use kafka_protocol::ResponseError;

/// Kafka's check of the leader epoch a client sent (from its metadata) against this replica's:
/// older is FENCED_LEADER_EPOCH (the client refreshes its metadata), newer UNKNOWN_LEADER_EPOCH
/// (this replica has not heard of that leader yet); -1 asks for no check.
pub fn leader_epoch_error<S: NodeStorage>(p: &Partition<S>, current_leader_epoch: i32) -> Option<ResponseError> {
    if current_leader_epoch < 0 {
        return None;
    }
    let epoch = braid_engine::ids::leader_epoch(p.replica.raft.term());
    match current_leader_epoch.cmp(&epoch) {
        std::cmp::Ordering::Less => Some(ResponseError::FencedLeaderEpoch),
        std::cmp::Ordering::Greater => Some(ResponseError::UnknownLeaderEpoch),
        std::cmp::Ordering::Equal => None,
    }
}

impl<S: NodeStorage> ShardState<S> {
    /// The partition if this node leads it and the client's epoch matches; else the error for
    /// the client, in Kafka's order (the epoch first, then leadership).
    pub(super) fn leading(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<&Partition<S>, ResponseError> {
        let key = (topic.to_owned(), partition);
        let Some(p) = self.partitions.get(&key) else {
            // Being opened here (a topic just created): not led yet, as far as clients go.
            return Err(if self.is_opening(&key) {
                ResponseError::NotLeaderOrFollower
            } else {
                ResponseError::UnknownTopicOrPartition
            });
        };
        if let Some(error) = leader_epoch_error(p, current_leader_epoch) {
            return Err(error);
        }
        if !p.replica.is_leader() {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        Ok(p)
    }

    /// ListOffsets: earliest (-2), latest (-1: the high watermark), or the first record at or
    /// after a timestamp, each with its leader epoch.
    pub(super) fn list_offsets(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        (current_leader_epoch, committed_only): (i32, bool),
    ) -> OffsetOutcome {
        if let Err(error) = self.leading(topic, partition, current_leader_epoch) {
            return OffsetOutcome::failed(error);
        }
        let Some(p) = self.partitions.get_mut(&(topic.to_owned(), partition)) else {
            return OffsetOutcome::failed(ResponseError::UnknownTopicOrPartition);
        };
        // read_committed: the latest offset is the last stable one.
        let high_watermark = p.replica.raft.committed();
        let latest = match committed_only {
            true => match super::txn::txn_index(p) {
                Ok(index) => index.last_stable(high_watermark),
                Err(e) => {
                    tracing::error!(topic, partition, error = %e, "reading the log's transactions failed");
                    return OffsetOutcome::failed(ResponseError::KafkaStorageError);
                }
            },
            false => high_watermark,
        };
        let log = p.replica.raft.log();
        let epoch_of = |offset: i64| match log.batch_holding(offset) {
            Ok(span) => span.map_or(-1, |s| s.epoch),
            Err(e) => {
                tracing::warn!(topic, partition, offset, error = %e, "leader epoch lookup failed");
                -1
            }
        };
        let found =
            |offset: i64, timestamp: i64| OffsetOutcome { error: 0, offset, timestamp, leader_epoch: epoch_of(offset) };
        match timestamp {
            -2 => found(p.log_start(), -1),
            -1 => OffsetOutcome {
                error: 0,
                offset: latest,
                timestamp: -1,
                leader_epoch: braid_engine::ids::leader_epoch(p.replica.raft.term()),
            },
            t if t < 0 => OffsetOutcome::failed(ResponseError::InvalidRequest),
            t => match log.offset_for_timestamp(t) {
                Ok(Some((base, max_timestamp))) => {
                    let (offset, timestamp) = refine_by_record(log, base, t).unwrap_or((base, max_timestamp));
                    // Never below where DeleteRecords moved the start.
                    found(offset.max(p.log_start()), timestamp)
                }
                Ok(None) => OffsetOutcome { error: 0, offset: -1, timestamp: -1, leader_epoch: -1 },
                Err(e) => {
                    tracing::error!(topic, partition, error = %e, "timestamp lookup failed");
                    OffsetOutcome::failed(ResponseError::KafkaStorageError)
                }
            },
        }
    }

    /// OffsetForLeaderEpoch: where `leader_epoch` ends in the leader's log (a consumer checks
    /// that its position is not past it, i.e. that the log was not cut under it).
    pub(super) fn end_offset_for_epoch(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
        leader_epoch: i32,
    ) -> EpochEndOutcome {
        let p = match self.leading(topic, partition, current_leader_epoch) {
            Ok(p) => p,
            Err(error) => return EpochEndOutcome::failed(error),
        };
        // This node leads: its term is the epoch appends get, whether or not a batch holds it.
        let appending_epoch = braid_engine::ids::leader_epoch(p.replica.raft.term());
        match p.replica.raft.log().end_offset_for_epoch(leader_epoch, appending_epoch) {
            Ok(Some((leader_epoch, end_offset))) => EpochEndOutcome { error: 0, leader_epoch, end_offset },
            Ok(None) => EpochEndOutcome { error: 0, leader_epoch: -1, end_offset: -1 },
            Err(e) => {
                tracing::error!(topic, partition, leader_epoch, error = %e, "leader epoch lookup failed");
                EpochEndOutcome::failed(ResponseError::KafkaStorageError)
            }
        }
    }
}

/// For an uncompressed batch, the first record at or after `timestamp` (Kafka's answer is
/// record-precise); compressed batches answer with the batch's base offset.
fn refine_by_record<S: NodeStorage>(log: &Log<S>, base_offset: i64, timestamp: i64) -> Option<(i64, i64)> {
    let bytes = log.batch_at(base_offset).ok()??;
    let records = batch::records(&bytes).ok()?;
    records.iter().find(|r| r.timestamp >= timestamp).map(|r| (r.offset, r.timestamp))
}
