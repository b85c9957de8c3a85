//! AlterPartitionReassignments and ListPartitionReassignments: moving partitions between
//! nodes. The controller records a move in the topic's znode (Kafka's `adding_replicas` and
//! `removing_replicas`); the partition's leader then changes its raft voters one node at a
//! time and, once they are the target, the controller makes the target the replica set.

use super::{meta_op, str_bytes};
use crate::msg::MetaOp;
use crate::shared::ShardCtx;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub async fn alter(
    ctx: Rc<ShardCtx>,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut response = AlterPartitionReassignmentsResponse::default();
    response.allow_replication_factor_change = request.allow_replication_factor_change;
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = ReassignableTopicResponse::default();
        result.name = topic.name;
        for partition in topic.partitions {
            let mut answer = ReassignablePartitionResponse::default();
            answer.partition_index = partition.partition_index;
            let replicas: Option<Vec<i32>> = partition.replicas.map(|r| r.into_iter().map(|b| b.0).collect());
            let factor = ctx.snapshot.borrow().topic(&name).map(|t| t.original(partition.partition_index).len());
            let outcome = match (&replicas, factor) {
                (Some(target), Some(factor)) if !request.allow_replication_factor_change && target.len() != factor => {
                    let message =
                        format!("the move would change the replication factor from {factor} to {}", target.len());
                    Err((ResponseError::InvalidReplicationFactor.code(), message))
                }
                _ => {
                    let op = MetaOp::Reassign { name: name.clone(), partition: partition.partition_index, replicas };
                    meta_op(&ctx, op).await
                }
            };
            if let Err((code, message)) = outcome {
                if code == ResponseError::NotController.code() {
                    // The whole request goes to the controller: clients retry it there.
                    response.error_code = code;
                    response.error_message = Some(str_bytes(message.clone()));
                }
                answer.error_code = code;
                answer.error_message = Some(str_bytes(message));
            }
            result.partitions.push(answer);
        }
        response.responses.push(result);
    }
    response
}

pub async fn list(ctx: Rc<ShardCtx>, request: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    let snapshot = ctx.snapshot.borrow().clone();
    let wanted: Vec<(String, Option<Vec<i32>>)> = match request.topics {
        Some(topics) => topics.into_iter().map(|t| (t.name.0.to_string(), Some(t.partition_indexes))).collect(),
        None => snapshot.topics.keys().map(|name| (name.clone(), None)).collect(),
    };
    let mut response = ListPartitionReassignmentsResponse::default();
    for (name, partitions) in wanted {
        let Some(topic) = snapshot.topic(&name) else { continue };
        let mut ongoing = OngoingTopicReassignment::default();
        ongoing.name = TopicName(str_bytes(name.clone()));
        for (&p, moving) in &topic.reassigning {
            if partitions.as_ref().is_some_and(|wanted| !wanted.contains(&p)) {
                continue;
            }
            let ids = |v: &[i32]| v.iter().map(|&b| BrokerId(b)).collect();
            let mut partition = OngoingPartitionReassignment::default();
            partition.partition_index = p;
            partition.replicas = ids(&topic.partitions[p as usize]);
            partition.adding_replicas = ids(&moving.adding);
            partition.removing_replicas = ids(&moving.removing);
            ongoing.partitions.push(partition);
        }
        if !ongoing.partitions.is_empty() {
            response.topics.push(ongoing);
        }
    }
    response
}
