//! `braid group list|describe|reset-offsets`: consumer groups as their coordinators know them.

use crate::client::Client;
use anyhow::{bail, Context};
use bytes::{Buf, Bytes};
use clap::Subcommand;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, ListGroupsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Every consumer group, with its state.
    List,
    /// A group's state and members, and for each partition its committed offset, end and lag.
    Describe { group: String },
    /// Sets a group's committed offsets for a topic (the group must have no members). Without
    /// --execute it only prints what it would set.
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// To each partition's first offset.
        #[arg(long, conflicts_with_all = ["to_latest", "to_offset"])]
        to_earliest: bool,
        /// To each partition's end.
        #[arg(long, conflicts_with = "to_offset")]
        to_latest: bool,
        /// To this offset in every partition (clamped to what the partition holds).
        #[arg(long)]
        to_offset: Option<i64>,
        /// Commit the new offsets (else a dry run).
        #[arg(long)]
        execute: bool,
    },
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Topic -> partitions of the consumer protocol's assignment (version, topics, user data).
fn decode_assignment(bytes: &Bytes) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    let mut b = bytes.clone();
    if b.remaining() < 6 {
        return out;
    }
    b.get_i16();
    let topics = b.get_i32();
    for _ in 0..topics.max(0) {
        if b.remaining() < 2 {
            break;
        }
        let len = b.get_i16().max(0) as usize;
        if b.remaining() < len + 4 {
            break;
        }
        let topic = String::from_utf8_lossy(&b.split_to(len)).into_owned();
        let count = b.get_i32().max(0) as usize;
        if b.remaining() < count * 4 {
            break;
        }
        out.insert(topic, (0..count).map(|_| b.get_i32()).collect());
    }
    out
}

/// Partition count of a topic, and (earliest, latest) of each partition, asked of its leader.
fn bounds(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<(i64, i64)>> {
    let mut client = Client::connect(bootstrap)?;
    let mut request = MetadataRequest::default();
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(TopicName(str(topic)));
    request.topics = Some(vec![wanted]);
    let metadata = client.call(request)?;
    let partitions = metadata.topics.first().map_or(0, |t| t.partitions.len()) as i32;
    if partitions == 0 {
        bail!("no topic {topic}");
    }
    (0..partitions)
        .map(|p| {
            let mut leader = Client::connect_to_leader(bootstrap, topic, p)?;
            Ok((leader.list_offset(topic, p, -2)?, leader.list_offset(topic, p, -1)?))
        })
        .collect()
}

/// Committed offsets of a group: (topic, partition) -> offset.
fn committed(client: &mut Client, group: &str) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let version = client.version_for::<OffsetFetchRequest>()?;
    let mut request = OffsetFetchRequest::default();
    if version >= 8 {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = GroupId(str(group));
        g.topics = None;
        request.groups = vec![g];
    } else {
        request.group_id = GroupId(str(group));
        request.topics = None;
    }
    let response = client.call_version(request, version)?;
    let mut out = BTreeMap::new();
    if version >= 8 {
        for g in &response.groups {
            if g.error_code != 0 {
                bail!("OffsetFetch: error {}", g.error_code);
            }
            for t in &g.topics {
                for p in &t.partitions {
                    out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
    } else {
        for t in &response.topics {
            for p in &t.partitions {
                out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// Error codes that mean "ask the group's coordinator again, shortly".
fn coordinator_moved(code: i16) -> bool {
    use kafka_protocol::ResponseError::{CoordinatorLoadInProgress, CoordinatorNotAvailable, NotCoordinator};
    [NotCoordinator.code(), CoordinatorNotAvailable.code(), CoordinatorLoadInProgress.code()].contains(&code)
}

/// Runs `call` against the group's coordinator, finding it again (for up to 15 s) while the
/// answer's error code says it moved; other errors fail.
fn with_coordinator<T>(
    bootstrap: &str,
    group: &str,
    mut call: impl FnMut(&mut Client) -> anyhow::Result<(i16, T)>,
) -> anyhow::Result<(Client, T)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let mut client = Client::connect_to_coordinator(bootstrap, 0, group)?;
        let (code, value) = call(&mut client)?;
        match code {
            0 => return Ok((client, value)),
            c if coordinator_moved(c) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            c => {
                bail!("error {c} {:?} from the coordinator of {group}", kafka_protocol::ResponseError::try_from_code(c))
            }
        }
    }
}

pub fn run(bootstrap: &str, command: GroupCommand) -> anyhow::Result<()> {
    match command {
        GroupCommand::List => {
            // Each node lists the groups it coordinates.
            let mut groups = BTreeMap::new();
            for (_, addr) in Client::brokers(bootstrap)? {
                let mut client = Client::connect(&addr)?;
                let response = client.call(ListGroupsRequest::default())?;
                for g in response.groups {
                    groups.insert(g.group_id.0.to_string(), g.group_state.to_string());
                }
            }
            for (group, state) in groups {
                println!("{group} {}", if state.is_empty() { "-" } else { &state });
            }
        }
        GroupCommand::Describe { group } => {
            // The coordinator may move (a failover, or leadership going back to its preferred
            // node): ask again where it is.
            let (mut client, response) = with_coordinator(bootstrap, &group, |client| {
                let mut request = DescribeGroupsRequest::default();
                request.groups = vec![GroupId(str(&group))];
                let response = client.call(request)?;
                let code = response.groups.first().context("empty DescribeGroups response")?.error_code;
                Ok((code, response))
            })?;
            let described = response.groups.first().context("empty DescribeGroups response")?;
            println!(
                "group {group} state {} protocol {} {}",
                described.group_state, described.protocol_type, described.protocol_data
            );
            let mut owner = BTreeMap::new();
            for m in &described.members {
                let assigned = decode_assignment(&m.member_assignment);
                let list: Vec<String> = assigned
                    .iter()
                    .map(|(t, ps)| format!("{t}:{}", ps.iter().map(i32::to_string).collect::<Vec<_>>().join(",")))
                    .collect();
                println!("member {} client {} assigned {}", m.member_id, m.client_id, list.join(" "));
                for (t, ps) in assigned {
                    for p in ps {
                        owner.insert((t.clone(), p), m.member_id.to_string());
                    }
                }
            }
            let offsets = committed(&mut client, &group)?;
            let mut ends: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
            for ((topic, partition), offset) in &offsets {
                if !ends.contains_key(topic) {
                    ends.insert(topic.clone(), bounds(bootstrap, topic).unwrap_or_default());
                }
                let end = ends[topic].get(*partition as usize).map_or(-1, |b| b.1);
                let lag = if *offset >= 0 && end >= 0 { (end - offset).to_string() } else { "-".into() };
                let member = owner.get(&(topic.clone(), *partition)).map_or("-", String::as_str);
                println!("partition {topic}-{partition} committed {offset} end {end} lag {lag} member {member}");
            }
        }
        GroupCommand::ResetOffsets { group, topic, to_earliest, to_latest, to_offset, execute } => {
            if !(to_earliest || to_latest || to_offset.is_some()) {
                bail!("say where to: --to-earliest, --to-latest or --to-offset N");
            }
            let bounds = bounds(bootstrap, &topic)?;
            let targets: Vec<(i32, i64)> = bounds
                .iter()
                .enumerate()
                .map(|(p, &(first, end))| {
                    let target = match to_offset {
                        Some(o) => o.clamp(first, end),
                        None if to_earliest => first,
                        None => end,
                    };
                    (p as i32, target)
                })
                .collect();
            for (p, target) in &targets {
                println!("partition {topic}-{p} new offset {target}");
            }
            if !execute {
                println!("dry run: add --execute to commit these offsets");
                return Ok(());
            }
            let mut t = OffsetCommitRequestTopic::default();
            t.name = TopicName(str(&topic));
            t.partitions = targets
                .iter()
                .map(|&(p, offset)| {
                    let mut part = OffsetCommitRequestPartition::default();
                    part.partition_index = p;
                    part.committed_offset = offset;
                    part
                })
                .collect();
            let mut request = OffsetCommitRequest::default();
            request.group_id = GroupId(str(&group));
            request.generation_id_or_member_epoch = -1;
            request.topics = vec![t];
            let result = with_coordinator(bootstrap, &group, |client| {
                let response = client.call(request.clone())?;
                let error =
                    response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).find(|&e| e != 0);
                Ok((error.unwrap_or(0), ()))
            });
            if let Err(e) = result {
                bail!("OffsetCommit refused: {e:#} (a group with members cannot be reset)");
            }
            println!("committed new offsets for group {group}");
        }
    }
    Ok(())
}
