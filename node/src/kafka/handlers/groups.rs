//! Consumer groups: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete. Each request goes to
//! the shard owning the group's `__consumer_offsets` partition (groups.rs holds the protocol);
//! a node that does not lead that partition answers NOT_COORDINATOR, and clients ask
//! FindCoordinator again. The offsets topic is created on the first FindCoordinator.

use super::metadata::leader_of;
use super::{meta_op, str_bytes};
use crate::groups::{
    partition_for, Committed, JoinOutcome, JoinRequest, SyncOutcome, OFFSETS_PARTITIONS, OFFSETS_TOPIC,
};
use crate::msg::{GroupRequest, MetaOp, ShardMsg};
use crate::shared::{owner_shard, ShardCtx};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::rc::Rc;
use tokio::sync::oneshot;

/// Sends a request to the coordinator shard of `group`, built around its reply channel.
pub(super) async fn ask<T>(
    ctx: &ShardCtx,
    group: &str,
    build: impl FnOnce(oneshot::Sender<T>) -> GroupRequest,
) -> Option<T> {
    let partition = partition_for(group);
    let shard = owner_shard(OFFSETS_TOPIC, partition, ctx.shared.senders.len());
    let (reply, answer) = oneshot::channel();
    ctx.shared.senders[shard].send(ShardMsg::Group { partition, request: build(reply) }).await.ok()?;
    answer.await.ok()
}

fn not_available() -> i16 {
    ResponseError::CoordinatorNotAvailable.code()
}

/// The coordinator of `key` (key type 0, a group id: the leader of its partition of the
/// offsets topic; 1, a transactional id: of `__transaction_state`), at its address for
/// `listener` (the client's). The internal topic is created on the first request.
pub(super) async fn coordinator(
    ctx: &Rc<ShardCtx>,
    listener: usize,
    key_type: i8,
    key: &str,
) -> Result<(i32, crate::config::HostPort), (i16, String)> {
    let (topic, partitions, partition) = match key_type {
        0 => (OFFSETS_TOPIC, OFFSETS_PARTITIONS, partition_for(key)),
        1 => (crate::txn::TXN_TOPIC, crate::txn::TXN_PARTITIONS, crate::txn::partition_for(key)),
        _ => return Err((ResponseError::InvalidRequest.code(), format!("unknown coordinator key type {key_type}"))),
    };
    if ctx.snapshot.borrow().topic(topic).is_none() {
        let configs = BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]);
        let op = MetaOp::CreateTopic {
            name: topic.into(),
            partitions,
            replication_factor: -1,
            configs,
            validate_only: false,
            forward: true,
            assignment: None,
        };
        let _ = meta_op(ctx, op).await;
        return Err((not_available(), format!("{topic} is being created")));
    }
    leader_of(ctx, listener, topic, partition)
        .ok_or_else(|| (not_available(), format!("partition {partition} of {topic} has no leader right now")))
}

pub async fn find_coordinator(
    ctx: Rc<ShardCtx>,
    listener: usize,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let mut response = FindCoordinatorResponse::default();
    let keys: Vec<String> = if version >= 4 {
        request.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![request.key.to_string()]
    };
    for key in keys {
        let mut c = Coordinator::default();
        c.key = str_bytes(key.clone());
        c.node_id = BrokerId(-1);
        c.port = -1;
        let found = coordinator(&ctx, listener, request.key_type, &key).await;
        match found {
            Ok((id, addr)) => {
                c.node_id = BrokerId(id);
                c.host = str_bytes(addr.host);
                c.port = i32::from(addr.port);
            }
            Err((code, message)) => {
                c.error_code = code;
                if version >= 1 {
                    c.error_message = Some(str_bytes(message));
                }
            }
        }
        response.coordinators.push(c);
    }
    if version < 4 {
        let c = response.coordinators.pop().unwrap_or_default();
        response.error_code = c.error_code;
        response.error_message = c.error_message;
        response.node_id = c.node_id;
        response.host = c.host;
        response.port = c.port;
    }
    response
}

pub async fn join(ctx: Rc<ShardCtx>, version: i16, request: JoinGroupRequest, client_id: String) -> JoinGroupResponse {
    let group = request.group_id.0.to_string();
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|i| i.to_string()),
        client_id,
        client_host: String::new(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 { request.rebalance_timeout_ms } else { request.session_timeout_ms },
        protocol_type: request.protocol_type.to_string(),
        protocols: request.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = join.member_id.clone();
    let outcome = ask(&ctx, &group, |reply| GroupRequest::Join { group: group.clone(), request: join, reply })
        .await
        .unwrap_or(JoinOutcome { error: not_available(), generation: -1, member_id, ..Default::default() });
    let mut response = JoinGroupResponse::default();
    response.error_code = outcome.error;
    response.generation_id = outcome.generation;
    if version >= 7 {
        response.protocol_type = Some(str_bytes(outcome.protocol_type));
    }
    response.protocol_name = Some(str_bytes(outcome.protocol_name));
    response.leader = str_bytes(outcome.leader);
    response.member_id = str_bytes(outcome.member_id);
    response.members = outcome
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = str_bytes(id);
            m.group_instance_id = instance.filter(|_| version >= 5).map(str_bytes);
            m.metadata = metadata;
            m
        })
        .collect();
    response
}

pub async fn sync(ctx: Rc<ShardCtx>, version: i16, request: SyncGroupRequest) -> SyncGroupResponse {
    let group = request.group_id.0.to_string();
    let assignments = request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let (generation, member_id) = (request.generation_id, request.member_id.to_string());
    let instance_id = request.group_instance_id.as_ref().map(|i| i.to_string());
    let outcome = ask(&ctx, &group, |reply| GroupRequest::Sync {
        group: group.clone(),
        generation,
        member_id,
        instance_id,
        assignments,
        reply,
    })
    .await
    .unwrap_or(SyncOutcome { error: not_available(), ..Default::default() });
    let mut response = SyncGroupResponse::default();
    response.error_code = outcome.error;
    if version >= 5 {
        response.protocol_type = Some(str_bytes(outcome.protocol_type));
        response.protocol_name = Some(str_bytes(outcome.protocol_name));
    }
    response.assignment = outcome.assignment;
    response
}

pub async fn heartbeat(ctx: Rc<ShardCtx>, request: HeartbeatRequest) -> HeartbeatResponse {
    let group = request.group_id.0.to_string();
    let (generation, member_id) = (request.generation_id, request.member_id.to_string());
    let instance_id = request.group_instance_id.as_ref().map(|i| i.to_string());
    let mut response = HeartbeatResponse::default();
    response.error_code = ask(&ctx, &group, |reply| GroupRequest::Heartbeat {
        group: group.clone(),
        generation,
        member_id,
        instance_id,
        reply,
    })
    .await
    .unwrap_or_else(not_available);
    response
}

pub async fn leave(ctx: Rc<ShardCtx>, version: i16, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let group = request.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string())))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let asked = members.clone();
    let mut response = LeaveGroupResponse::default();
    match ask(&ctx, &group, |reply| GroupRequest::Leave { group: group.clone(), members, reply }).await {
        Some(Ok(codes)) => {
            if version < 3 {
                response.error_code = codes.first().copied().unwrap_or(0);
                return response;
            }
            response.members = asked
                .into_iter()
                .zip(codes)
                .map(|((id, instance), code)| {
                    let mut m = MemberResponse::default();
                    m.member_id = str_bytes(id);
                    m.group_instance_id = instance.map(str_bytes);
                    m.error_code = code;
                    m
                })
                .collect();
        }
        Some(Err(code)) => response.error_code = code,
        None => response.error_code = not_available(),
    }
    response
}

/// OffsetCommit: a partition this cluster does not have is answered UNKNOWN_TOPIC_OR_PARTITION
/// and not stored; the others go to the coordinator (if none is known, it is not asked), as
/// Kafka's broker does.
pub async fn commit(ctx: Rc<ShardCtx>, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        for p in topic.partitions.iter().filter(|p| ctx.has_partition(&name, p.partition_index)) {
            let committed = Committed {
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            };
            offsets.push((name.clone(), p.partition_index, Some(committed)));
        }
    }
    let (generation, member_id) = (request.generation_id_or_member_epoch, request.member_id.to_string());
    let instance_id = request.group_instance_id.as_ref().map(|i| i.to_string());
    let code = if offsets.is_empty() {
        0
    } else {
        ask(&ctx, &group, |reply| GroupRequest::Commit {
            group: group.clone(),
            generation,
            member_id,
            instance_id,
            offsets,
            producer: None,
            reply,
        })
        .await
        .unwrap_or_else(not_available)
    };
    let mut response = OffsetCommitResponse::default();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut t = OffsetCommitResponseTopic::default();
        t.partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let mut r = OffsetCommitResponsePartition::default();
                r.partition_index = p.partition_index;
                r.error_code = match ctx.has_partition(&name, p.partition_index) {
                    true => code,
                    false => ResponseError::UnknownTopicOrPartition.code(),
                };
                r
            })
            .collect();
        t.name = topic.name;
        response.topics.push(t);
    }
    response
}

/// A partition's committed offset: (partition, offset, leader epoch, metadata, error).
type FetchedPartition = (i32, i64, i32, Option<String>, i16);
/// One group's committed offsets by topic.
type Fetched = Result<Vec<(String, Vec<FetchedPartition>)>, i16>;

/// A group's committed offsets (`require_stable`: UNSTABLE_OFFSET_COMMIT, on each partition
/// asked for, while a transaction holds an offset of one).
async fn fetch_group(
    ctx: &ShardCtx,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Fetched {
    let wanted: Option<Vec<(String, i32)>> =
        topics.map(|ts| ts.into_iter().flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p))).collect());
    let asked = wanted.clone();
    let found = ask(ctx, group, |reply| GroupRequest::Fetch {
        group: group.to_owned(),
        partitions: wanted,
        require_stable,
        reply,
    })
    .await
    .unwrap_or(Err(not_available()));
    let unstable = ResponseError::UnstableOffsetCommit.code();
    let (found, error) = match (found, asked) {
        (Err(code), Some(asked)) if code == unstable => (asked.into_iter().map(|k| (k, None)).collect(), unstable),
        (found, _) => (found?, 0),
    };
    let mut by_topic: BTreeMap<String, Vec<FetchedPartition>> = BTreeMap::new();
    for ((topic, partition), committed) in found {
        let entry = match committed {
            Some(c) => (partition, c.offset, c.leader_epoch, Some(c.metadata), 0),
            None => (partition, -1, -1, Some(String::new()), error),
        };
        by_topic.entry(topic).or_default().push(entry);
    }
    Ok(by_topic.into_iter().collect())
}

pub async fn fetch(ctx: Rc<ShardCtx>, version: i16, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for g in request.groups {
            let topics =
                g.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
            let mut out = OffsetFetchResponseGroup::default();
            out.group_id = g.group_id.clone();
            match fetch_group(&ctx, &g.group_id.0, topics, request.require_stable).await {
                Ok(found) => {
                    for (topic, partitions) in found {
                        let mut t = OffsetFetchResponseTopics::default();
                        t.name = TopicName(str_bytes(topic));
                        t.partitions = partitions
                            .into_iter()
                            .map(|(index, offset, epoch, metadata, error)| {
                                let mut p = OffsetFetchResponsePartitions::default();
                                p.partition_index = index;
                                p.error_code = error;
                                p.committed_offset = offset;
                                p.committed_leader_epoch = epoch;
                                p.metadata = metadata.map(str_bytes);
                                p
                            })
                            .collect();
                        out.topics.push(t);
                    }
                }
                Err(code) => out.error_code = code,
            }
            response.groups.push(out);
        }
        return response;
    }
    let topics = request.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    match fetch_group(&ctx, &request.group_id.0, topics, request.require_stable).await {
        Ok(found) => {
            for (topic, partitions) in found {
                let mut t = OffsetFetchResponseTopic::default();
                t.name = TopicName(str_bytes(topic));
                t.partitions = partitions
                    .into_iter()
                    .map(|(index, offset, epoch, metadata, error)| {
                        let mut p = OffsetFetchResponsePartition::default();
                        p.partition_index = index;
                        p.error_code = error;
                        p.committed_offset = offset;
                        if version >= 5 {
                            p.committed_leader_epoch = epoch;
                        }
                        p.metadata = metadata.map(str_bytes);
                        p
                    })
                    .collect();
                response.topics.push(t);
            }
        }
        Err(code) if version >= 2 => response.error_code = code,
        Err(_) => {
            // Before v2 there is no group-level error: the client sees no offsets and asks
            // FindCoordinator again on its next commit.
        }
    }
    response
}

/// Groups coordinated by this node (every offsets partition it leads).
pub async fn list(ctx: Rc<ShardCtx>, version: i16, _request: ListGroupsRequest) -> ListGroupsResponse {
    let mut response = ListGroupsResponse::default();
    for partition in 0..OFFSETS_PARTITIONS {
        let shard = owner_shard(OFFSETS_TOPIC, partition, ctx.shared.senders.len());
        let (reply, answer) = oneshot::channel();
        let msg = ShardMsg::Group { partition, request: GroupRequest::List { reply } };
        if ctx.shared.senders[shard].send(msg).await.is_err() {
            continue;
        }
        for (id, protocol_type, state) in answer.await.unwrap_or_default() {
            let mut g = ListedGroup::default();
            g.group_id = GroupId(str_bytes(id));
            g.protocol_type = str_bytes(protocol_type);
            if version >= 4 {
                g.group_state = str_bytes(state);
            }
            if version >= 5 {
                g.group_type = str_bytes("classic");
            }
            response.groups.push(g);
        }
    }
    response
}

pub async fn describe(ctx: Rc<ShardCtx>, version: i16, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    for group_id in request.groups {
        let group = group_id.0.to_string();
        let mut d = DescribedGroup::default();
        d.group_id = group_id;
        match ask(&ctx, &group, |reply| GroupRequest::Describe { group: group.clone(), reply }).await {
            Some(Ok((state, protocol_type, protocol, members))) => {
                d.group_state = str_bytes(state);
                d.protocol_type = str_bytes(protocol_type);
                d.protocol_data = str_bytes(protocol);
                d.members = members
                    .into_iter()
                    .map(|(id, instance, client_id, host, metadata, assignment)| {
                        let mut m = DescribedGroupMember::default();
                        m.member_id = str_bytes(id);
                        m.group_instance_id = instance.filter(|_| version >= 4).map(str_bytes);
                        m.client_id = str_bytes(client_id);
                        m.client_host = str_bytes(host);
                        m.member_metadata = metadata;
                        m.member_assignment = assignment;
                        m
                    })
                    .collect();
            }
            Some(Err(code)) => d.error_code = code,
            None => d.error_code = not_available(),
        }
        response.groups.push(d);
    }
    response
}

pub async fn delete(ctx: Rc<ShardCtx>, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for group_id in request.groups_names {
        let group = group_id.0.to_string();
        let mut r = DeletableGroupResult::default();
        r.group_id = group_id;
        r.error_code = ask(&ctx, &group, |reply| GroupRequest::Delete { group: group.clone(), reply })
            .await
            .unwrap_or_else(not_available);
        response.results.push(r);
    }
    response
}

/// Deletes committed offsets of partitions (tombstones), unless the group is active.
pub async fn offset_delete(ctx: Rc<ShardCtx>, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = request.group_id.0.to_string();
    let mut response = OffsetDeleteResponse::default();
    let described = ask(&ctx, &group, |reply| GroupRequest::Describe { group: group.clone(), reply }).await;
    let code = match described {
        Some(Ok(("Dead", ..))) => ResponseError::GroupIdNotFound.code(),
        Some(Ok((state, ..))) if state != "Empty" => ResponseError::GroupSubscribedToTopic.code(),
        Some(Ok(_)) => {
            let offsets: Vec<(String, i32, Option<Committed>)> = request
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index, None)))
                .collect();
            ask(&ctx, &group, |reply| GroupRequest::Commit {
                group: group.clone(),
                generation: -1,
                member_id: String::new(),
                instance_id: None,
                offsets,
                producer: None,
                reply,
            })
            .await
            .unwrap_or_else(not_available)
        }
        Some(Err(code)) => code,
        None => not_available(),
    };
    if code != 0 && request.topics.is_empty() {
        response.error_code = code;
    }
    for topic in request.topics {
        let mut t = OffsetDeleteResponseTopic::default();
        t.name = topic.name;
        t.partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let mut r = OffsetDeleteResponsePartition::default();
                r.partition_index = p.partition_index;
                r.error_code = code;
                r
            })
            .collect();
        response.topics.push(t);
    }
    if code == ResponseError::GroupIdNotFound.code() || code == ResponseError::NotCoordinator.code() {
        response.error_code = code;
    }
    response
}
