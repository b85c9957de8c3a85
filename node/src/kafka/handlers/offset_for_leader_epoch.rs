//! OffsetForLeaderEpoch (KIP-320): where a leader epoch ends in a partition's log. Consumers
//! ask after a leader change, with the epoch of the last record they read, to check that their
//! position is not past the end of that epoch on the new leader (that the log was not cut under
//! them). Braid's consumers read committed batches only, which raft never cuts, so the check
//! always passes; clients that make it (kafka-python 3, librdkafka, the Java client) stop
//! fetching a partition until it does.

use super::{ask_owners, str_bytes};
use crate::msg::{EpochEndOutcome, ShardMsg};
use crate::shared::ShardCtx;
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName};
use std::rc::Rc;

pub async fn handle(ctx: Rc<ShardCtx>, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics: Vec<_> = request.topics.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect();
    let answers = ask_owners(
        &ctx,
        &topics,
        |p: &OffsetForLeaderPartition| p.partition,
        |topic, p, reply| ShardMsg::EpochEnd {
            topic,
            partition: p.partition,
            current_leader_epoch: p.current_leader_epoch,
            leader_epoch: p.leader_epoch,
            reply,
        },
        EpochEndOutcome::failed,
    )
    .await;
    let mut response = OffsetForLeaderEpochResponse::default();
    for (name, partitions) in answers {
        let mut topic = OffsetForLeaderTopicResult::default();
        topic.topic = TopicName(str_bytes(name));
        for (partition, outcome) in partitions {
            topic.partitions.push(
                EpochEndOffset::default()
                    .with_partition(partition)
                    .with_error_code(outcome.error)
                    .with_leader_epoch(outcome.leader_epoch)
                    .with_end_offset(outcome.end_offset),
            );
        }
        response.topics.push(topic);
    }
    response
}
