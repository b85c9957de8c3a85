//! Produce: batches go, in arrival order, to the shard owning each partition; acks=0 gets no
//! response, acks=1 an answer once the batch is in the log, acks=all once a majority has it
//! durably, or REQUEST_TIMED_OUT if that takes longer than the request's `timeout_ms` (the
//! batch may still commit later, as with Kafka).

use super::{ask_owner, str_bytes};
use crate::msg::{ProduceOutcome, ShardMsg};
use crate::shared::ShardCtx;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::ResponseError;
use std::future::Future;
use std::rc::Rc;
use tokio::sync::oneshot;

fn stopping() -> ProduceOutcome {
    ProduceOutcome {
        error: ResponseError::UnknownServerError.code(),
        message: Some("the node is stopping".into()),
        base_offset: -1,
        log_start_offset: -1,
    }
}

enum Answer {
    Now(i16, Option<String>),
    Later(oneshot::Receiver<ProduceOutcome>),
}

/// Hands every partition's records to its shard (awaiting only the queue), and returns the
/// future of the response, or None for acks=0.
pub async fn start(
    ctx: &Rc<ShardCtx>,
    version: i16,
    request: ProduceRequest,
) -> Option<impl Future<Output = ProduceResponse> + 'static> {
    let acks = request.acks;
    let timeout_ms = request.timeout_ms.max(0);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms as u64);
    let valid_acks = matches!(acks, -1..=1);
    let transactional_id = request.transactional_id.as_ref().map(|id| id.to_string());
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let answer = if !valid_acks {
                Answer::Now(ResponseError::InvalidRequiredAcks.code(), None)
            } else if !ctx.has_partition(&name, data.index) {
                Answer::Now(ResponseError::UnknownTopicOrPartition.code(), None)
            } else {
                let records = data.records;
                let index = data.index;
                let topic_name = name.clone();
                match ask_owner(ctx, &name, index, |reply| ShardMsg::Produce {
                    topic: topic_name,
                    partition: index,
                    records,
                    acks,
                    transactional_id: transactional_id.clone(),
                    reply,
                })
                .await
                {
                    Some(rx) => Answer::Later(rx),
                    None => Answer::Now(ResponseError::UnknownServerError.code(), None),
                }
            };
            partitions.push((data.index, answer));
        }
        topics.push((name, partitions));
    }
    if acks == 0 {
        return None;
    }
    Some(async move {
        let mut response = ProduceResponse::default();
        for (name, partitions) in topics {
            let mut topic = TopicProduceResponse::default();
            topic.name = TopicName(str_bytes(name));
            for (index, answer) in partitions {
                let outcome = match answer {
                    Answer::Now(error, message) => {
                        ProduceOutcome { error, message, base_offset: -1, log_start_offset: -1 }
                    }
                    // acks=1 is answered at the leader's append, at once; acks=all waits for
                    // a majority, at most until the request's deadline.
                    Answer::Later(rx) if acks == -1 => match tokio::time::timeout_at(deadline, rx).await {
                        Ok(outcome) => outcome.unwrap_or_else(|_| stopping()),
                        Err(_) => ProduceOutcome {
                            error: ResponseError::RequestTimedOut.code(),
                            message: Some(format!("not replicated to a majority within {timeout_ms} ms")),
                            base_offset: -1,
                            log_start_offset: -1,
                        },
                    },
                    Answer::Later(rx) => rx.await.unwrap_or_else(|_| stopping()),
                };
                let mut p = PartitionProduceResponse::default();
                p.index = index;
                p.error_code = outcome.error;
                p.base_offset = outcome.base_offset;
                if version >= 5 {
                    p.log_start_offset = outcome.log_start_offset;
                }
                if version >= 8 {
                    p.error_message = outcome.message.map(str_bytes);
                }
                topic.partition_responses.push(p);
            }
            response.responses.push(topic);
        }
        response
    })
}
