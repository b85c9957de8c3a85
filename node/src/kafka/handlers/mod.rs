//! One file per Kafka API (a few close relatives share one).

pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod delete_records;
pub mod elect_leaders;
pub mod fetch;
pub mod groups;
pub mod list_offsets;
pub mod log_dirs;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod producer_id;
pub mod reassignments;
pub mod topics;
pub mod txn;

use crate::msg::{MetaOp, MetaReply, ShardMsg};
use crate::shared::{owner_shard, ShardCtx};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::rc::Rc;
use tokio::sync::oneshot;

/// Sends a message to the shard owning a partition; the message is built around the reply
/// channel. Returns the receiver, or None if the shard is gone (the node is stopping).
pub async fn ask_owner<T>(
    ctx: &ShardCtx,
    topic: &str,
    partition: i32,
    build: impl FnOnce(oneshot::Sender<T>) -> ShardMsg,
) -> Option<oneshot::Receiver<T>> {
    let shard = owner_shard(topic, partition, ctx.shared.senders.len());
    let (reply, answer) = oneshot::channel();
    ctx.shared.senders[shard].send(build(reply)).await.ok()?;
    Some(answer)
}

/// Asks the shard owning each partition of `topics` (all asked before any answer is awaited, so
/// the shards work on them together) and returns the answers by topic, in the request's order,
/// with each partition's index. A partition this node does not know is answered
/// `failed(UNKNOWN_TOPIC_OR_PARTITION)`, and one whose shard is gone (the node is stopping)
/// `failed(UNKNOWN_SERVER_ERROR)`.
pub async fn ask_owners<P, T>(
    ctx: &ShardCtx,
    topics: &[(String, Vec<P>)],
    partition_of: impl Fn(&P) -> i32,
    build: impl Fn(String, &P, oneshot::Sender<T>) -> ShardMsg,
    failed: impl Fn(ResponseError) -> T,
) -> Vec<(String, Vec<(i32, T)>)> {
    let mut pending = Vec::new();
    for (name, partitions) in topics {
        let mut asked = Vec::new();
        for p in partitions {
            let partition = partition_of(p);
            let rx = if ctx.has_partition(name, partition) {
                ask_owner(ctx, name, partition, |reply| build(name.clone(), p, reply)).await
            } else {
                None
            };
            asked.push((partition, rx));
        }
        pending.push((name.clone(), asked));
    }
    let mut answers = Vec::new();
    for (name, asked) in pending {
        let mut answered = Vec::new();
        for (partition, rx) in asked {
            let answer = match rx {
                Some(rx) => rx.await.unwrap_or_else(|_| failed(ResponseError::UnknownServerError)),
                None => failed(ResponseError::UnknownTopicOrPartition),
            };
            answered.push((partition, answer));
        }
        answers.push((name, answered));
    }
    answers
}

/// Runs a topic change on shard 0 (the metadata store) and waits until every shard has the
/// resulting snapshot.
pub async fn meta_op(ctx: &Rc<ShardCtx>, op: MetaOp) -> MetaReply {
    let (reply, answer) = oneshot::channel();
    let msg = ShardMsg::Meta { op, now_ms: crate::process::now_ms(), reply };
    if ctx.shared.senders[0].send(msg).await.is_err() {
        return Err((ResponseError::UnknownServerError.code(), "the node is stopping".into()));
    }
    answer.await.unwrap_or_else(|_| Err((ResponseError::UnknownServerError.code(), "the node is stopping".into())))
}

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// How long a request waits for a block of producer ids (no controller reachable: the client
/// retries).
const PRODUCER_ID_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A producer id no other producer of the cluster has.
pub async fn new_producer_id(ctx: &ShardCtx) -> Result<i64, i16> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    if ctx.shared.senders[0].send(ShardMsg::ProducerId { reply }).await.is_err() {
        return Err(ResponseError::CoordinatorNotAvailable.code());
    }
    match tokio::time::timeout(PRODUCER_ID_WAIT, answer).await {
        Ok(Ok(Ok(id))) => Ok(id),
        Ok(Ok(Err((code, message)))) => {
            tracing::warn!(code, %message, "no producer id");
            Err(code)
        }
        _ => Err(ResponseError::CoordinatorNotAvailable.code()),
    }
}
