//! Fetch: reads from each partition's owner, long-polls until `min_bytes` are there or
//! `max_wait_ms` passes, and answers with record bytes sent straight from the segment files.

use super::ask_owners;
use crate::kafka::fetch_response::{encode_fetch_response, FetchPartitionResult, FetchTopicResult};
use crate::kafka::{record_latency, Pending};
use crate::msg::{FetchOutcome, ShardMsg};
use crate::shared::ShardCtx;
use kafka_protocol::messages::{ApiKey, FetchRequest};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// Longest long-poll honoured, whatever the client asks.
pub const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// A topic and its partitions as asked: partition, fetch offset, max bytes, and the leader epoch
/// the client believes current.
type Wanted = (String, Vec<(i32, i64, u64, i32)>);

async fn read_all(ctx: &ShardCtx, wanted: &[Wanted], committed_only: bool) -> Vec<FetchTopicResult> {
    let answers = ask_owners(
        ctx,
        wanted,
        |p| p.0,
        |topic, &(partition, offset, max_bytes, current_leader_epoch), reply| ShardMsg::Fetch {
            topic,
            partition,
            offset,
            max_bytes,
            current_leader_epoch,
            committed_only,
            reply,
        },
        FetchOutcome::failed,
    )
    .await;
    answers
        .into_iter()
        .map(|(topic, partitions)| FetchTopicResult {
            topic,
            partitions: partitions
                .into_iter()
                .map(|(partition, outcome)| FetchPartitionResult { partition, outcome })
                .collect(),
        })
        .collect()
}

/// Keeps whole-record results within the request's `max_bytes`, except that the first
/// non-empty one always goes (so a batch larger than the limit can still be consumed).
fn cap_total(results: &mut [FetchTopicResult], max_bytes: u64) -> u64 {
    let mut total = 0u64;
    for topic in results.iter_mut() {
        for p in topic.partitions.iter_mut() {
            let len = p.outcome.records.as_ref().map_or(0, |r| r.len());
            if len == 0 {
                continue;
            }
            if total > 0 && total + len > max_bytes {
                p.outcome.records = None;
            } else {
                total += len;
            }
        }
    }
    total
}

pub fn start(
    ctx: &Rc<ShardCtx>,
    version: i16,
    correlation_id: i32,
    started: Instant,
    permit: OwnedSemaphorePermit,
    request: FetchRequest,
) -> Pending {
    let ctx = Rc::clone(ctx);
    let min_bytes = request.min_bytes.max(0) as u64;
    let max_bytes = request.max_bytes.max(0) as u64;
    let committed_only = request.isolation_level == 1;
    // No partition reads past the request's own limit either (Kafka reads each partition to
    // the smaller of the two): with the total then capped, an answer exceeds `max_bytes` only
    // by a first batch that alone is larger (KIP-74).
    let wanted: Vec<Wanted> = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let limit = (p.partition_max_bytes.max(0) as u64).min(max_bytes);
                    (p.partition, p.fetch_offset, limit, p.current_leader_epoch)
                })
                .collect();
            (t.topic.0.to_string(), partitions)
        })
        .collect();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    Box::pin(async move {
        drop(permit);
        let results = loop {
            // Registered before reading, so an append between the read and the wait still wakes.
            let appended = ctx.shared.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let mut results = read_all(&ctx, &wanted, committed_only).await;
            let total = cap_total(&mut results, max_bytes);
            let any_error = results.iter().flat_map(|t| &t.partitions).any(|p| p.outcome.error != 0);
            if total >= min_bytes || any_error || tokio::time::Instant::now() >= deadline {
                break results;
            }
            tokio::select! {
                _ = appended => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        };
        record_latency(&ctx, ApiKey::Fetch as i16, started);
        Some(encode_fetch_response(version, correlation_id, 0, results))
    })
}
