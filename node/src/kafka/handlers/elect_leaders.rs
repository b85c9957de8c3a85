//! ElectLeaders: preferred-leader elections on demand (kafka-leader-election.sh, AdminClient
//! electLeaders). The preferred replica is a partition's first; the request is written where
//! Kafka's tools wrote it (/admin/preferred_replica_election), every node's shards hand the
//! leadership of the partitions they lead to it, and the answer waits (up to the request's
//! timeout) until this node knows the preferred replica leads (as Metadata would answer). An unclean election has no
//! meaning under Raft (a leader always holds every committed record): a partition with a
//! leader needs none, one without cannot have one chosen by force.

use super::{meta_op, str_bytes};
use crate::msg::MetaOp;
use crate::shared::ShardCtx;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// Longest wait for the elections, whatever the request asks.
const WAIT_CAP: Duration = Duration::from_secs(30);

/// A partition's answer: error code and message.
type Outcome = (i16, Option<String>);

pub async fn handle(ctx: Rc<ShardCtx>, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let snapshot = ctx.snapshot.borrow().clone();
    let asked: Vec<(String, i32)> = match &request.topic_partitions {
        Some(topics) => {
            topics.iter().flat_map(|t| t.partitions.iter().map(move |&p| (t.topic.0.to_string(), p))).collect()
        }
        None => snapshot
            .topics
            .iter()
            .flat_map(|(name, meta)| (0..meta.partitions.len() as i32).map(move |p| (name.clone(), p)))
            .collect(),
    };
    let preferred = |(topic, p): &(String, i32)| {
        snapshot.topic(topic).and_then(|m| m.partitions.get(usize::try_from(*p).ok()?)).and_then(|r| r.first().copied())
    };
    let mut outcomes: BTreeMap<(String, i32), Outcome> = BTreeMap::new();
    let mut needed = Vec::new();
    for key in &asked {
        let leader = super::metadata::leader_id(&ctx, &key.0, key.1).filter(|&l| l >= 0);
        let outcome = match (preferred(key), request.election_type) {
            (None, _) => (ResponseError::UnknownTopicOrPartition.code(), None),
            (Some(_), 1) if leader.is_some() => (ResponseError::ElectionNotNeeded.code(), None),
            (Some(_), 1) => (
                ResponseError::EligibleLeadersNotAvailable.code(),
                Some(
                    "an unclean election cannot choose a leader under Raft; a majority of replicas must return".into(),
                ),
            ),
            (Some(_), t) if t != 0 => (ResponseError::InvalidRequest.code(), Some(format!("election type {t}"))),
            (Some(p), _) if leader == Some(p) => (ResponseError::ElectionNotNeeded.code(), None),
            (Some(_), _) => {
                needed.push(key.clone());
                continue;
            }
        };
        outcomes.insert(key.clone(), outcome);
    }
    if !needed.is_empty() {
        let elected = elect(&ctx, &needed, request.timeout_ms, &preferred).await;
        outcomes.extend(elected);
    }
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for key in asked {
        let (code, message) = outcomes.remove(&key).unwrap_or((ResponseError::UnknownServerError.code(), None));
        let mut result = PartitionResult::default();
        result.partition_id = key.1;
        result.error_code = code;
        result.error_message = message.map(str_bytes);
        by_topic.entry(key.0).or_default().push(result);
    }
    let mut response = ElectLeadersResponse::default();
    for (topic, partition_result) in by_topic {
        let mut r = ReplicaElectionResult::default();
        r.topic = TopicName(str_bytes(topic));
        r.partition_result = partition_result;
        response.replica_election_results.push(r);
    }
    response
}

/// Asks for the preferred leaders of `needed` and waits until they lead (or the
/// timeout passes: PREFERRED_LEADER_NOT_AVAILABLE, the replica is down or behind).
async fn elect(
    ctx: &Rc<ShardCtx>,
    needed: &[(String, i32)],
    timeout_ms: i32,
    preferred: &dyn Fn(&(String, i32)) -> Option<i32>,
) -> Vec<((String, i32), Outcome)> {
    if let Err((code, message)) = meta_op(ctx, MetaOp::ElectPreferred { partitions: needed.to_vec() }).await {
        return needed.iter().map(|k| (k.clone(), (code, Some(message.clone())))).collect();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64).min(WAIT_CAP);
    loop {
        let done = |k: &(String, i32)| super::metadata::leader_id(ctx, &k.0, k.1) == preferred(k);
        if needed.iter().all(done) || tokio::time::Instant::now() >= deadline {
            return needed
                .iter()
                .map(|k| {
                    let outcome = match done(k) {
                        true => (0, None),
                        false => (
                            ResponseError::PreferredLeaderNotAvailable.code(),
                            Some("the preferred replica did not take the leadership in time (down or behind)".into()),
                        ),
                    };
                    (k.clone(), outcome)
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
