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
            committed_only: false,
            reply,
        },
        OffsetOutcome::failed,
    )
    .await;
    let mut response = DeleteRecordsResponse::default();
    for ((name, asked), (_, answers)) in topics.iter().zip(watermarks) {
        // Each partition's checked offset, or its error.
        let checked: Vec<(i32, Result<i64, i16>)> = asked
            .iter()
            .zip(answers)
            .map(|(p, (index, outcome))| {
                let offset = if p.offset == -1 { outcome.offset } else { p.offset };
                let result = match outcome.error {
                    0 if offset < 0 || offset > outcome.offset => Err(ResponseError::OffsetOutOfRange.code()),
                    0 => Ok(offset),
                    error => Err(error),
                };
                (index, result)
            })
            .collect();
        // One metadata write for the topic's partitions that passed.
        let starts: Vec<(i32, i64)> = checked.iter().filter_map(|(p, r)| r.ok().map(|o| (*p, o))).collect();
        let written = match starts.is_empty() {
            true => Ok(()),
            false => {
                meta_op(&ctx, MetaOp::DeleteRecords { name: name.clone(), starts }).await.map_err(|(code, _)| code)
            }
        };
        let snapshot = ctx.snapshot.borrow().clone();
        let start_of = |p: i32| snapshot.topic(name).and_then(|t| t.log_start.get(&p).copied()).unwrap_or(0);
        let mut topic = DeleteRecordsTopicResult::default();
        topic.name = TopicName(str_bytes(name.clone()));
        for (index, result) in checked {
            let mut r = DeleteRecordsPartitionResult::default();
            r.partition_index = index;
            r.low_watermark = -1;
            match (result, written) {
                (Ok(offset), Ok(())) => r.low_watermark = start_of(index).max(offset),
                (Ok(_), Err(code)) | (Err(code), _) => r.error_code = code,
            }
            topic.partitions.push(r);
        }
        response.topics.push(topic);
    }
    response
}
