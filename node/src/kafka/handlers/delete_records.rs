//! DeleteRecords: moves partitions' log start offsets up, as Kafka Streams does to purge its
//! repartition topics. Each partition's leader checks the offset against its high watermark
//! (-1: the high watermark itself); the controller then records the new start in the topic's
//! znode, which every replica applies: clients see the start move (ListOffsets earliest, Fetch
//! below it OFFSET_OUT_OF_RANGE), and whole segments below it are deleted by retention.

use super::{ask_owners, meta_op, str_bytes};
use crate::msg::{MetaOp, OffsetOutcome, ShardMsg};
use crate::shared::ShardCtx;
use kafka_protocol::messages::delete_records_request::DeleteRecordsPartition;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, TopicName};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub async fn handle(ctx: Rc<ShardCtx>, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics: Vec<_> = request.topics.into_iter().map(|t| (t.name.0.to_string(), t.partitions)).collect();
    // Each leader's high watermark (ListOffsets latest), with its errors: not the leader, no
    // such partition.
    let watermarks = ask_owners(
        &ctx,
        &topics,
        |p: &DeleteRecordsPartition| p.partition_index,
        |topic, p, reply| ShardMsg::ListOffsets {
            topic,
            partition: p.partition_index,
            timestamp: -1,
            current_leader_epoch: -1,
            reply,
        },
        OffsetOutcome::failed,
    )
    .await;
    let mut response = DeleteRecordsResponse::default();
    for ((name, asked), (_, answers)) in topics.iter().zip(watermarks) {
        let mut topic = DeleteRecordsTopicResult::default();
        topic.name = TopicName(str_bytes(name.clone()));
        for (p, (index, outcome)) in asked.iter().zip(answers) {
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = index;
            result.low_watermark = -1;
            let high_watermark = outcome.offset;
            let offset = if p.offset == -1 { high_watermark } else { p.offset };
            result.error_code = if outcome.error != 0 {
                outcome.error
            } else if offset < 0 || offset > high_watermark {
                ResponseError::OffsetOutOfRange.code()
            } else {
                let op = MetaOp::DeleteRecords { name: name.clone(), partition: index, offset };
                match meta_op(&ctx, op).await {
                    Ok(()) => {
                        let start = ctx.snapshot.borrow().topic(name).and_then(|t| t.log_start.get(&index).copied());
                        result.low_watermark = start.unwrap_or(0).max(offset);
                        0
                    }
                    Err((code, _)) => code,
                }
            };
            topic.partitions.push(result);
        }
        response.topics.push(topic);
    }
    response
}
