//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (broker configs are
//! described, read-only).

use super::{meta_op, str_bytes};
use crate::msg::MetaOp;
use crate::shared::ShardCtx;
use crate::topic_config::{self, TOPIC_CONFIGS};
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::rc::Rc;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs configSource values.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn entry(
    name: &str,
    value: String,
    read_only: bool,
    source: i8,
    config_type: i8,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(name);
    e.value = Some(str_bytes(value));
    e.read_only = read_only;
    e.config_source = source;
    if version >= 3 {
        e.config_type = config_type;
    }
    e
}

pub async fn describe(ctx: Rc<ShardCtx>, version: i16, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let snapshot = ctx.snapshot.borrow().clone();
    let config = &ctx.shared.config;
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        // Null asks for every config; so does an empty list.
        let keys: Option<Vec<String>> =
            resource.configuration_keys.filter(|k| !k.is_empty()).map(|k| k.iter().map(|s| s.to_string()).collect());
        let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|w| w == name));
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let name = resource.resource_name.to_string();
        match resource.resource_type {
            RESOURCE_TOPIC => match snapshot.topic(&name) {
                Some(meta) => {
                    for (key, default, kind) in TOPIC_CONFIGS.iter().filter(|(k, _, _)| wanted(k)) {
                        let (value, source) = match meta.configs.get(*key) {
                            Some(v) => (v.clone(), SOURCE_DYNAMIC_TOPIC),
                            None => ((*default).to_owned(), SOURCE_DEFAULT),
                        };
                        result.configs.push(entry(key, value, false, source, kind.wire_type(), version));
                    }
                }
                None => {
                    result.error_code = ResponseError::UnknownTopicOrPartition.code();
                    result.error_message = Some(str_bytes(format!("Topic '{name}' does not exist.")));
                }
            },
            RESOURCE_BROKER if name.is_empty() || name == config.node_id.to_string() => {
                let broker = [
                    ("broker.id", config.node_id.to_string(), 3),
                    ("num.partitions", config.default_partitions.to_string(), 3),
                    ("auto.create.topics.enable", config.auto_create_topics.to_string(), 1),
                    ("socket.request.max.bytes", config.max_request_bytes.to_string(), 3),
                    ("log.dirs", config.data_dir.display().to_string(), 2),
                    ("log.retention.check.interval.ms", config.retention_check_ms.to_string(), 5),
                ];
                for (key, value, kind) in broker.into_iter().filter(|(k, _, _)| wanted(k)) {
                    result.configs.push(entry(key, value, true, SOURCE_STATIC_BROKER, kind, version));
                }
            }
            RESOURCE_BROKER => {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message = Some(str_bytes(format!("this is node {}, not {name}", config.node_id)));
            }
            other => {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message = Some(str_bytes(format!("unsupported resource type {other}")));
            }
        }
        response.results.push(result);
    }
    response
}

/// Applies a full set of topic overrides; the error for one resource, if any.
async fn set_configs(
    ctx: &Rc<ShardCtx>,
    resource_type: i8,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    match resource_type {
        RESOURCE_TOPIC => meta_op(ctx, MetaOp::SetConfigs { name: name.to_owned(), configs, validate_only }).await,
        RESOURCE_BROKER => {
            Err((ResponseError::InvalidRequest.code(), "broker configs are read-only in this build".into()))
        }
        other => Err((ResponseError::InvalidRequest.code(), format!("unsupported resource type {other}"))),
    }
}

pub async fn alter(ctx: Rc<ShardCtx>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let configs = resource
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let name = resource.resource_name.to_string();
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        if let Err((code, message)) =
            set_configs(&ctx, resource.resource_type, &name, configs, request.validate_only).await
        {
            result.error_code = code;
            result.error_message = Some(str_bytes(message));
        }
        response.responses.push(result);
    }
    response
}

/// IncrementalAlterConfigs operations: SET 0, DELETE 1, APPEND 2, SUBTRACT 3 (list configs).
fn edit(
    current: &mut BTreeMap<String, String>,
    name: &str,
    operation: i8,
    value: Option<&str>,
) -> Result<(), (i16, String)> {
    let invalid = |m: String| (ResponseError::InvalidConfig.code(), m);
    if topic_config::default_of(name).is_none() {
        return Err(invalid(format!("Unknown topic config name: {name}")));
    }
    match (operation, value) {
        (0, Some(v)) => {
            current.insert(name.to_owned(), v.to_owned());
        }
        (1, _) => {
            current.remove(name);
        }
        (2 | 3, Some(v)) if name == "cleanup.policy" => {
            let base = current
                .get(name)
                .cloned()
                .unwrap_or_else(|| topic_config::default_of(name).unwrap_or_default().to_owned());
            let mut items: Vec<String> =
                base.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if operation == 2 && !items.iter().any(|i| i == item) {
                    items.push(item.to_owned());
                } else if operation == 3 {
                    items.retain(|i| i != item);
                }
            }
            current.insert(name.to_owned(), items.join(","));
        }
        (2 | 3, _) => return Err(invalid(format!("{name} is not a list config"))),
        (op, _) => return Err(invalid(format!("operation {op} on {name} needs a value or is unknown"))),
    }
    Ok(())
}

pub async fn incremental_alter(
    ctx: Rc<ShardCtx>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let mut result = IncrementalResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let current = ctx.snapshot.borrow().topic(&name).map(|t| t.configs.clone());
        let outcome = match (resource.resource_type, current) {
            (RESOURCE_TOPIC, None) => {
                Err((ResponseError::UnknownTopicOrPartition.code(), format!("Topic '{name}' does not exist.")))
            }
            (RESOURCE_TOPIC, Some(mut configs)) => {
                let edits: Result<(), _> = resource
                    .configs
                    .iter()
                    .try_for_each(|c| edit(&mut configs, c.name.as_str(), c.config_operation, c.value.as_deref()));
                match edits {
                    Ok(()) => set_configs(&ctx, RESOURCE_TOPIC, &name, configs, request.validate_only).await,
                    Err(e) => Err(e),
                }
            }
            (other, _) => set_configs(&ctx, other, &name, BTreeMap::new(), true).await,
        };
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(str_bytes(message));
        }
        response.responses.push(result);
    }
    response
}
