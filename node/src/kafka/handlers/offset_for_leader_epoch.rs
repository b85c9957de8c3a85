//! OffsetForLeaderEpoch (KIP-320): where a leader epoch ends in a partition's log. Consumers
//! ask after a leader change, with the epoch of the last record they read, to check that their
//! position is not past the end of that epoch on the new leader (that the log was not cut under
//! them). Braid's consumers read committed batches only, which raft never cuts, so the check
//! always passes; clients that make it (kafka-python 3, librdkafka, the Java client) stop
//! fetching a partition until it does.

use super::{ask_owner, str_bytes};
use crate::runtime::ShardCtx;
use crate::shard::{EpochEndOutcome, ShardMsg};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub async fn handle(ctx: Rc<ShardCtx>, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut pending = Vec::new();
    for topic in request.topics {
        let name = topic.topic.0.to_string();
        let mut partitions = Vec::new();
        for p in topic.partitions {
            let (partition, current_leader_epoch, leader_epoch) = (p.partition, p.current_leader_epoch, p.leader_epoch);
            let rx = if ctx.has_partition(&name, partition) {
                let topic = name.clone();
                ask_owner(&ctx, &name, partition, |reply| ShardMsg::EpochEnd {
                    topic,
                    partition,
                    current_leader_epoch,
                    leader_epoch,
                    reply,
                })
                .await
            } else {
                None
            };
            partitions.push((partition, rx));
        }
        pending.push((name, partitions));
    }
    let mut response = OffsetForLeaderEpochResponse::default();
    for (name, partitions) in pending {
        let mut topic = OffsetForLeaderTopicResult::default();
        topic.topic = TopicName(str_bytes(name));
        for (partition, rx) in partitions {
            let outcome = match rx {
                Some(rx) => rx.await.unwrap_or_else(|_| EpochEndOutcome::failed(ResponseError::UnknownServerError)),
                None => EpochEndOutcome::failed(ResponseError::UnknownTopicOrPartition),
            };
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
