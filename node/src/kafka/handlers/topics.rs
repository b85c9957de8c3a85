//! CreateTopics, DeleteTopics, CreatePartitions: changes applied by the metadata store.

use super::{meta_op, str_bytes};
use crate::msg::MetaOp;
use crate::shared::ShardCtx;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, TopicName,
};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::rc::Rc;

/// A CreateTopics topic's manual assignment (its partitions' replicas, in partition order), as
/// Kafka checks the request: partitions numbered 0.. without a gap, and numPartitions and
/// replicationFactor left at -1 beside it.
fn manual_assignment(
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<Option<Vec<Vec<i32>>>, (i16, String)> {
    if topic.assignments.is_empty() {
        return Ok(None);
    }
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        let message = "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.";
        return Err((ResponseError::InvalidRequest.code(), message.to_owned()));
    }
    let mut by_partition: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for a in &topic.assignments {
        by_partition.insert(a.partition_index, a.broker_ids.iter().map(|b| b.0).collect());
    }
    if by_partition.keys().copied().ne(0..by_partition.len() as i32) || by_partition.len() != topic.assignments.len() {
        let message = "partitions should be a consecutive 0-based integer sequence";
        return Err((ResponseError::InvalidReplicaAssignment.code(), message.to_owned()));
    }
    Ok(Some(by_partition.into_values().collect()))
}

pub async fn create(ctx: Rc<ShardCtx>, version: i16, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        let (partitions, replication_factor) = (topic.num_partitions, topic.replication_factor);
        let outcome = manual_assignment(&topic);
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let outcome = match outcome {
            Ok(assignment) => {
                let op = MetaOp::CreateTopic {
                    name: name.clone(),
                    partitions,
                    replication_factor,
                    configs,
                    validate_only: request.validate_only,
                    forward: false,
                    assignment,
                };
                meta_op(&ctx, op).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                let snapshot = ctx.snapshot.borrow().clone();
                let meta = snapshot.topic(&name);
                if version >= 5 {
                    result.num_partitions = meta.map_or(
                        if partitions == -1 { ctx.shared.config.default_partitions } else { partitions },
                        |m| m.partitions.len() as i32,
                    );
                    result.replication_factor = meta.and_then(|m| m.partitions.first()).map_or(
                        if replication_factor == -1 {
                            ctx.shared.config.default_replication_factor
                        } else {
                            replication_factor
                        },
                        |replicas| replicas.len() as i16,
                    );
                    result.configs = Some(Vec::new());
                }
                if version >= 7 {
                    if let Some(meta) = meta {
                        result.topic_id = meta.id;
                    }
                }
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(message));
                if version >= 5 {
                    result.num_partitions = -1;
                    result.replication_factor = -1;
                }
            }
        }
        response.topics.push(result);
    }
    response
}

pub async fn delete(ctx: Rc<ShardCtx>, version: i16, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    // v6 names topics by name or id; earlier versions by name only.
    let mut targets: Vec<(Option<String>, uuid::Uuid)> =
        request.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect();
    targets.extend(request.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)));
    let mut response = DeleteTopicsResponse::default();
    for (name, id) in targets {
        let snapshot = ctx.snapshot.borrow().clone();
        let resolved = match &name {
            Some(name) => Some(name.clone()),
            None => snapshot.topics.iter().find(|(_, meta)| meta.id == id).map(|(n, _)| n.clone()),
        };
        let mut result = DeletableTopicResult::default();
        result.name = resolved.clone().map(|n| TopicName(str_bytes(n)));
        if version >= 6 {
            result.topic_id = resolved.as_ref().and_then(|n| snapshot.topic(n)).map_or(id, |m| m.id);
        }
        let outcome = match resolved {
            Some(name) => meta_op(&ctx, MetaOp::DeleteTopic { name }).await,
            None => Err((ResponseError::UnknownTopicId.code(), format!("no topic with id {id}"))),
        };
        if let Err((code, message)) = outcome {
            result.error_code = code;
            if version >= 5 {
                result.error_message = Some(str_bytes(message));
            }
        }
        response.responses.push(result);
    }
    response
}

pub async fn create_partitions(ctx: Rc<ShardCtx>, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        let assignment =
            topic.assignments.as_ref().map(|a| a.iter().map(|p| p.broker_ids.iter().map(|b| b.0).collect()).collect());
        let op = MetaOp::CreatePartitions {
            name: topic.name.0.to_string(),
            count: topic.count,
            validate_only: request.validate_only,
            assignment,
        };
        if let Err((code, message)) = meta_op(&ctx, op).await {
            result.error_code = code;
            result.error_message = Some(str_bytes(message));
        }
        response.results.push(result);
    }
    response
}
