//! ListOffsets: earliest (-2), latest (-1, the high watermark) and by timestamp, each with the
//! leader epoch of the offset found (v4+).

use super::{ask_owner, str_bytes};
use crate::runtime::ShardCtx;
use crate::shard::{OffsetOutcome, ShardMsg};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, TopicName};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub async fn handle(ctx: Rc<ShardCtx>, version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut pending = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::new();
        for p in topic.partitions {
            let index = p.partition_index;
            let timestamp = p.timestamp;
            let current_leader_epoch = p.current_leader_epoch;
            let rx = if ctx.has_partition(&name, index) {
                let topic_name = name.clone();
                ask_owner(&ctx, &name, index, |reply| ShardMsg::ListOffsets {
                    topic: topic_name,
                    partition: index,
                    timestamp,
                    current_leader_epoch,
                    reply,
                })
                .await
            } else {
                None
            };
            partitions.push((index, rx));
        }
        pending.push((name, partitions));
    }
    let mut response = ListOffsetsResponse::default();
    for (name, partitions) in pending {
        let mut topic = ListOffsetsTopicResponse::default();
        topic.name = TopicName(str_bytes(name));
        for (index, rx) in partitions {
            let outcome = match rx {
                Some(rx) => rx.await.unwrap_or_else(|_| OffsetOutcome::failed(ResponseError::UnknownServerError)),
                None => OffsetOutcome::failed(ResponseError::UnknownTopicOrPartition),
            };
            let mut p = ListOffsetsPartitionResponse::default();
            p.partition_index = index;
            p.error_code = outcome.error;
            p.offset = outcome.offset;
            p.timestamp = outcome.timestamp;
            if version >= 4 {
                p.leader_epoch = outcome.leader_epoch;
            }
            topic.partitions.push(p);
        }
        response.topics.push(topic);
    }
    response
}
