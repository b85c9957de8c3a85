//! Metadata: brokers (registered in the tree) at their addresses for the listener the client
//! connected through, the controller, topics and their partitions with the leaders the
//! replicas here know, creating requested topics when `auto.create.topics.enable` is on and
//! the client allows it.

use super::{meta_op, str_bytes};
use crate::config::{HostPort, NodeConfig};
use crate::meta::MetaSnapshot;
use crate::msg::MetaOp;
use crate::shared::ShardCtx;
use braid_engine::hash::HashMap;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::rc::Rc;

/// `listener`: the index (in the node's Kafka listeners) of the one the request came through.
pub async fn handle(ctx: Rc<ShardCtx>, listener: usize, version: i16, request: MetadataRequest) -> MetadataResponse {
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
                forward: true,
                assignment: None,
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
    response.brokers = brokers(&snapshot, &ctx.shared.config, listener)
        .map(|(id, host, port)| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(id);
            broker.host = host;
            broker.port = port;
            broker
        })
        .collect();
    if version >= 2 {
        response.cluster_id = Some(str_bytes(snapshot.cluster_id.clone()));
    }
    if version >= 1 {
        response.controller_id = BrokerId(snapshot.controller.unwrap_or(-1));
    }
    // Read under the lock (nothing awaits here) rather than copying the whole map per request.
    let leaders = ctx.shared.leaders.read().unwrap_or_else(|e| e.into_inner());
    response.topics = names
        .iter()
        .map(|name| topic_entry(&snapshot, &leaders, name, version, creation_errors.get(name).copied()))
        .collect();
    drop(leaders);
    response
}

/// The registered brokers as (id, host, port) at their endpoint for `listener` (an index in
/// this node's listeners), this node among them even before its registration has committed.
/// A broker without that listener is left out, as Kafka leaves it out.
pub fn brokers<'a>(
    snapshot: &'a MetaSnapshot,
    config: &'a NodeConfig,
    listener: usize,
) -> impl Iterator<Item = (i32, kafka_protocol::protocol::StrBytes, i32)> + 'a {
    let me = (!snapshot.brokers.contains_key(&config.node_id)).then_some(config.node_id);
    snapshot
        .brokers
        .keys()
        .copied()
        .chain(me)
        .filter_map(move |id| broker_addr(snapshot, config, listener, id).map(|addr| (id, addr)))
        .map(|(id, addr)| (id, str_bytes(addr.host.clone()), i32::from(addr.port)))
}

/// Broker `id`'s advertised address for `listener` (an index in this node's listeners): its
/// registered endpoint of that name, or this node's own listener.
fn broker_addr<'a>(
    snapshot: &'a MetaSnapshot,
    config: &'a NodeConfig,
    listener: usize,
    id: i32,
) -> Option<&'a HostPort> {
    let own = config.kafka_listeners.get(listener)?;
    if id == config.node_id {
        return Some(&own.advertised);
    }
    snapshot.brokers.get(&id)?.iter().find(|e| e.listener == own.name).map(|e| &e.addr)
}

/// The leader of a partition as this node knows it (its replica's view or the tree's), and its
/// Kafka address for `listener`.
pub fn leader_of(ctx: &ShardCtx, listener: usize, topic: &str, partition: i32) -> Option<(i32, HostPort)> {
    let leader = leader_id(ctx, topic, partition)?;
    let addr = broker_addr(&ctx.snapshot.borrow(), &ctx.shared.config, listener, leader)?.clone();
    Some((leader, addr))
}

/// The leader of a partition as this node knows it (as [`leader_of`] has it, without address).
pub fn leader_id(ctx: &ShardCtx, topic: &str, partition: i32) -> Option<i32> {
    let snapshot = ctx.snapshot.borrow();
    let key = (topic.to_owned(), partition);
    let local = ctx.shared.leaders.read().unwrap_or_else(|e| e.into_inner()).get(&key).copied();
    newest_leader(local, snapshot.tree_leader(topic, partition), snapshot.node_id).map(|(leader, _)| leader)
}

/// The leader to tell clients about, from a local replica's view (leader or -1, term) and the
/// tree's (leader, epoch): the newer term wins. At the same term a local "no leader" defers to
/// the tree, unless the tree names this very node, which knows it no longer leads (a leader cut
/// off from the others steps down, but the tree it sees still names it).
fn newest_leader(local: Option<(i32, i32)>, tree: Option<(i32, i32)>, me: i32) -> Option<(i32, i32)> {
    let known = match (local, tree) {
        (Some(l), Some(t)) if l.1 > t.1 => l,
        (Some(l), Some(t)) if l.1 == t.1 => {
            if l.0 >= 0 || t.0 == me {
                l
            } else {
                t
            }
        }
        (_, Some(t)) => t,
        (Some(l), None) => l,
        (None, None) => return None,
    };
    (known.0 >= 0).then_some(known)
}

fn topic_entry(
    snapshot: &MetaSnapshot,
    leaders: &HashMap<(String, i32), (i32, i32)>,
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
            // What a replica here knows, or what the leader wrote to the tree: the newer.
            let key = (name.to_owned(), index as i32);
            let local = leaders.get(&key).copied();
            let tree = snapshot.tree_leader(name, index as i32);
            let known = newest_leader(local, tree, snapshot.node_id);
            match known {
                Some((leader, epoch)) => {
                    p.leader_id = BrokerId(leader);
                    if version >= 7 {
                        p.leader_epoch = epoch;
                    }
                }
                None => {
                    // No leader known yet (an election is on).
                    p.error_code = ResponseError::LeaderNotAvailable.code();
                    p.leader_id = BrokerId(-1);
                    if version >= 7 {
                        p.leader_epoch = -1;
                    }
                }
            }
            p.replica_nodes = replicas.iter().map(|&r| BrokerId(r)).collect();
            p.isr_nodes = p.replica_nodes.clone();
            p
        })
        .collect();
    topic
}

#[cfg(test)]
mod tests {
    use super::newest_leader;

    #[test]
    fn the_newer_view_of_a_leader_wins() {
        assert_eq!(newest_leader(Some((2, 5)), Some((1, 4)), 3), Some((2, 5)));
        assert_eq!(newest_leader(Some((2, 4)), Some((1, 5)), 3), Some((1, 5)));
        assert_eq!(newest_leader(Some((-1, 5)), Some((1, 5)), 3), Some((1, 5)), "not heard yet: the tree");
        assert_eq!(newest_leader(Some((-1, 5)), Some((3, 5)), 3), None, "the tree names us, stale");
        assert_eq!(newest_leader(Some((-1, 6)), Some((1, 5)), 3), None, "an election is on");
        assert_eq!(newest_leader(None, Some((1, 5)), 3), Some((1, 5)), "no replica here");
        assert_eq!(newest_leader(None, None, 3), None);
    }
}
