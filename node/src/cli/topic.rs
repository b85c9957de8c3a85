//! `braid topic create|list|describe|delete|reassign|reassignments`.

use crate::client::Client;
use anyhow::Context;
use clap::Subcommand;
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    ListPartitionReassignmentsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions [default: the node's default].
        #[arg(long, default_value_t = -1)]
        partitions: i32,
        /// Replication factor [default: the node's default].
        #[arg(long, default_value_t = -1)]
        replication_factor: i16,
        /// A topic config, as name=value (repeatable), e.g. retention.ms=60000.
        #[arg(long = "config")]
        configs: Vec<String>,
    },
    /// List topic names.
    List,
    /// Show a topic's partitions and configs.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Move a partition to other nodes (the first is its preferred leader); or cancel a move.
    Reassign {
        name: String,
        partition: i32,
        /// The new replicas, as node ids, e.g. 3,1,2.
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
        replicas: Vec<i32>,
        /// Cancel the partition's move: back to the replicas it had.
        #[arg(long, conflicts_with = "replicas")]
        cancel: bool,
    },
    /// List partitions being moved, with the nodes they gain and lose.
    Reassignments,
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn fail(code: i16, message: Option<&StrBytes>) -> anyhow::Error {
    let known = kafka_protocol::ResponseError::try_from_code(code);
    anyhow::anyhow!(
        "{} (error {code}{})",
        message.map(|m| m.to_string()).unwrap_or_default(),
        known.map(|k| format!(", {k:?}")).unwrap_or_default()
    )
}

pub fn run(bootstrap: &str, command: TopicCommand) -> anyhow::Result<()> {
    // Changes go to the controller (`Client::call_controller`); reads may go to any node.
    match command {
        TopicCommand::Create { name: topic, partitions, replication_factor, configs } => {
            create(bootstrap, &topic, partitions, replication_factor, configs)
        }
        TopicCommand::List => list(bootstrap),
        TopicCommand::Describe { name: topic } => describe(bootstrap, &topic),
        TopicCommand::Delete { name: topic } => delete(bootstrap, &topic),
        TopicCommand::Reassign { name: topic, partition, replicas, cancel } => {
            reassign(bootstrap, &topic, partition, replicas, cancel)
        }
        TopicCommand::Reassignments => reassignments(bootstrap),
    }
}

/// Creates a topic through the controller.
fn create(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: Vec<String>,
) -> anyhow::Result<()> {
    let mut creatable = CreatableTopic::default();
    creatable.name = name(topic);
    creatable.num_partitions = partitions;
    creatable.replication_factor = replication_factor;
    for config in configs {
        let (k, v) = config.split_once('=').with_context(|| format!("--config {config:?} is not name=value"))?;
        let mut c = CreatableTopicConfig::default();
        c.name = StrBytes::from_string(k.to_owned());
        c.value = Some(StrBytes::from_string(v.to_owned()));
        creatable.configs.push(c);
    }
    let (code, message) = Client::call_controller(bootstrap, |client| {
        let mut request = CreateTopicsRequest::default();
        request.topics = vec![creatable.clone()];
        request.timeout_ms = 30_000;
        let response = client.call(request)?;
        let result = response.topics.into_iter().next().context("empty CreateTopics response")?;
        Ok((result.error_code, result.error_message))
    })?;
    if code != 0 {
        return Err(fail(code, message.as_ref()));
    }
    println!("created topic {topic}");
    Ok(())
}

/// Prints every topic name, sorted.
fn list(bootstrap: &str) -> anyhow::Result<()> {
    let mut client = Client::connect(bootstrap)?;
    let mut request = MetadataRequest::default();
    request.topics = None; // every topic
    let response = client.call(request)?;
    let mut names: Vec<String> =
        response.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect();
    names.sort();
    for n in names {
        println!("{n}");
    }
    Ok(())
}

/// Prints a topic's partitions and configs.
fn describe(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let mut client = Client::connect(bootstrap)?;
    let mut request = MetadataRequest::default();
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(name(topic));
    request.topics = Some(vec![wanted]);
    let response = client.call(request)?;
    let meta = response.topics.first().context("empty Metadata response")?;
    if meta.error_code != 0 {
        return Err(fail(meta.error_code, None));
    }
    println!("topic {topic} id {} partitions {}", meta.topic_id, meta.partitions.len());
    for p in &meta.partitions {
        let replicas: Vec<i32> = p.replica_nodes.iter().map(|r| r.0).collect();
        println!("  partition {} leader {} replicas {:?}", p.partition_index, p.leader_id.0, replicas);
    }
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_string(topic.to_owned());
    resource.configuration_keys = None;
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    let response = client.call(request)?;
    for result in response.results {
        for c in result.configs {
            println!("  config {}={}", c.name, c.value.map(|v| v.to_string()).unwrap_or_default());
        }
    }
    Ok(())
}

/// Deletes a topic through the controller.
fn delete(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let (code, message) = Client::call_controller(bootstrap, |client| {
        let mut request = DeleteTopicsRequest::default();
        let version = client.version_for::<DeleteTopicsRequest>()?;
        if version >= 6 {
            let mut state = DeleteTopicState::default();
            state.name = Some(name(topic));
            request.topics = vec![state];
        } else {
            request.topic_names = vec![name(topic)];
        }
        request.timeout_ms = 30_000;
        let response = client.call_version(request, version)?;
        let result = response.responses.into_iter().next().context("empty DeleteTopics response")?;
        Ok((result.error_code, result.error_message))
    })?;
    if code != 0 {
        return Err(fail(code, message.as_ref()));
    }
    println!("deleted topic {topic}");
    Ok(())
}

/// Moves a partition, or cancels its move, through the controller.
fn reassign(bootstrap: &str, topic: &str, partition: i32, replicas: Vec<i32>, cancel: bool) -> anyhow::Result<()> {
    let mut wanted = ReassignablePartition::default();
    wanted.partition_index = partition;
    wanted.replicas = (!cancel).then(|| replicas.iter().map(|&r| BrokerId(r)).collect());
    let mut moved = ReassignableTopic::default();
    moved.name = name(topic);
    moved.partitions = vec![wanted];
    let (code, message) = Client::call_controller(bootstrap, |client| {
        let mut request = AlterPartitionReassignmentsRequest::default();
        request.timeout_ms = 30_000;
        request.topics = vec![moved.clone()];
        let response = client.call(request)?;
        let result = response
            .responses
            .into_iter()
            .next()
            .and_then(|t| t.partitions.into_iter().next())
            .context("empty AlterPartitionReassignments response")?;
        Ok((result.error_code, result.error_message))
    })?;
    if code != 0 {
        return Err(fail(code, message.as_ref()));
    }
    match cancel {
        true => println!("cancelling the move of {topic}-{partition}"),
        false => println!("moving {topic}-{partition} to {replicas:?}"),
    }
    Ok(())
}

/// Prints the partitions being moved.
fn reassignments(bootstrap: &str) -> anyhow::Result<()> {
    let mut client = Client::connect(bootstrap)?;
    let mut request = ListPartitionReassignmentsRequest::default();
    request.timeout_ms = 30_000;
    request.topics = None;
    let response = client.call(request)?;
    if response.error_code != 0 {
        return Err(fail(response.error_code, response.error_message.as_ref()));
    }
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",");
    for topic in &response.topics {
        for p in &topic.partitions {
            println!(
                "partition {}-{} replicas {} adding {} removing {}",
                topic.name.0,
                p.partition_index,
                ids(&p.replicas),
                ids(&p.adding_replicas),
                ids(&p.removing_replicas)
            );
        }
    }
    Ok(())
}
