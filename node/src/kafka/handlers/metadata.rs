//! Metadata: brokers (this node), topics and their partitions, creating requested topics when
//! `auto.create.topics.enable` is on and the client allows it.

use super::{meta_op, str_bytes};
use crate::meta::MetaSnapshot;
use crate::runtime::ShardCtx;
use crate::shard::MetaOp;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::rc::Rc;

pub async fn handle(ctx: Rc<ShardCtx>, version: i16, request: MetadataRequest) -> MetadataResponse {
    // v0: an empty list means every topic; v1+: null means every topic.
    let requested: Option<Vec<String>> = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => {
            Some(topics.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect())
        }
        _ => None,
    };
    let allow_create = ctx.shared.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut creation_errors: BTreeMap<String, i16> = BTreeMap::new();
    if let (Some(names), true) = (&requested, allow_create) {
        let missing: Vec<String> = names.iter().filter(|n| ctx.snapshot.borrow().topic(n).is_none()).cloned().collect();
        for name in missing {
            let op = MetaOp::CreateTopic {
                name: name.clone(),
                partitions: -1,
                replication_factor: -1,
                configs: BTreeMap::new(),
                validate_only: false,
            };
            match meta_op(&ctx, op).await {
                Ok(()) => tracing::info!(topic = %name, "topic created by a Metadata request"),
                Err((code, _)) if code == ResponseError::TopicAlreadyExists.code() => {}
                Err((code, message)) => {
                    tracing::debug!(topic = %name, message, "auto-creation refused");
                    creation_errors.insert(name, code);
                }
            }
        }
    }
    let snapshot = ctx.snapshot.borrow().clone();
    let names: Vec<String> = requested.unwrap_or_else(|| snapshot.topics.keys().cloned().collect());
    let mut response = MetadataResponse::default();
    let config = &ctx.shared.config;
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(config.node_id);
    broker.host = str_bytes(config.kafka_addr.ip().to_string());
    broker.port = i32::from(config.kafka_addr.port());
    response.brokers = vec![broker];
    if version >= 2 {
        response.cluster_id = Some(str_bytes(snapshot.cluster_id.clone()));
    }
    if version >= 1 {
        response.controller_id = BrokerId(config.node_id);
    }
    response.topics =
        names.iter().map(|name| topic_entry(&snapshot, name, version, creation_errors.get(name).copied())).collect();
    response
}

fn topic_entry(
    snapshot: &MetaSnapshot,
    name: &str,
    version: i16,
    creation_error: Option<i16>,
) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(TopicName(str_bytes(name)));
    let Some(meta) = snapshot.topic(name) else {
        topic.error_code = creation_error.unwrap_or(ResponseError::UnknownTopicOrPartition.code());
        return topic;
    };
    if version >= 10 {
        topic.topic_id = meta.id;
    }
    topic.partitions = meta
        .partitions
        .iter()
        .enumerate()
        .map(|(index, replicas)| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = index as i32;
            p.leader_id = BrokerId(replicas.first().copied().unwrap_or(-1));
            if version >= 7 {
                p.leader_epoch = 0;
            }
            p.replica_nodes = replicas.iter().map(|&r| BrokerId(r)).collect();
            p.isr_nodes = p.replica_nodes.clone();
            p
        })
        .collect();
    topic
}
