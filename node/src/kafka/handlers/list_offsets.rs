//! ListOffsets: earliest (-2), latest (-1, the high watermark) and by timestamp, each with the
//! leader epoch of the offset found (v4+).

use super::{ask_owners, str_bytes};
use crate::msg::{OffsetOutcome, ShardMsg};
use crate::shared::ShardCtx;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, TopicName};
use std::rc::Rc;

pub async fn handle(ctx: Rc<ShardCtx>, version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let isolation_level = request.isolation_level;
    let topics: Vec<_> = request.topics.into_iter().map(|t| (t.name.0.to_string(), t.partitions)).collect();
    let answers = ask_owners(
        &ctx,
        &topics,
        |p: &ListOffsetsPartition| p.partition_index,
        |topic, p, reply| ShardMsg::ListOffsets {
            topic,
            partition: p.partition_index,
            timestamp: p.timestamp,
            current_leader_epoch: p.current_leader_epoch,
            committed_only: isolation_level == 1,
            reply,
        },
        OffsetOutcome::failed,
    )
    .await;
    let mut response = ListOffsetsResponse::default();
    for (name, partitions) in answers {
        let mut topic = ListOffsetsTopicResponse::default();
        topic.name = TopicName(str_bytes(name));
        for (index, outcome) in partitions {
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
