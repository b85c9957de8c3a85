//! Kafka clients in the simulator, and what their histories must show.
//!
//! A producer writes acks=all batches, each with a value of its own, to the partitions of a
//! replicated topic, at whichever node the nodes say leads each partition; two consumers of
//! one group join, sync, heartbeat and commit offsets at the partition's coordinator. One of
//! them now and then stops heartbeating past its session timeout (a long pause), then commits
//! with the generation it had.
//!
//! Checked as replies arrive:
//! - no two acknowledged batches of a partition got the same offset;
//! - a commit is refused when its generation is older than one whose SyncGroup already
//!   succeeded (the group moved on without that member);
//! - an OffsetFetch returns an offset some commit asked for (or none). A coordinator cut off
//!   from the others may answer from what it had until it learns it was deposed, as Kafka's
//!   does, so a fetch during faults may be behind the last acknowledged commit.
//!
//! Checked at the end ([`KafkaWorkload::check_final`]): every acknowledged batch is in its
//! partition's log at its offset, with its value; the coordinator's offsets are at least the
//! last acknowledged commit of each partition (no acknowledged commit lost).

use super::node::SimNode;
use braid_engine::log::batch;
use braid_engine::rng::SimRng;
use braid_node::groups::{partition_for, Committed, JoinOutcome, JoinRequest, OffsetsOf, SyncOutcome, OFFSETS_TOPIC};
use braid_node::msg::{FetchOutcome, GroupRequest, MetaOp, MetaReply, ProduceOutcome, RecordsChunk, ShardMsg};
use braid_node::shared::owner_shard;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use tokio::sync::oneshot;

const TOPIC: &str = "sim";
const PARTITIONS: i32 = 3;
const GROUP: &str = "sim-group";
const SESSION_TIMEOUT_MS: i32 = 1_000;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;

struct Produce {
    partition: i32,
    value: String,
    reply: oneshot::Receiver<ProduceOutcome>,
}

enum MemberState {
    Idle,
    Joining(oneshot::Receiver<JoinOutcome>),
    /// Joined: its SyncGroup goes out next.
    Joined(JoinOutcome),
    Syncing {
        generation: i32,
        reply: oneshot::Receiver<SyncOutcome>,
    },
    Stable {
        generation: i32,
    },
}

struct Member {
    id: String,
    state: MemberState,
    last_heartbeat: u64,
    /// A pause: no heartbeats until then (the coordinator drops the member meanwhile).
    paused_until: u64,
    heartbeat: Option<oneshot::Receiver<i16>>,
    commit: Option<PendingCommit>,
    fetch: Option<PendingFetch>,
}

/// An OffsetCommit on its way: its generation, offsets, and the highest generation that had
/// synced when it was sent.
struct PendingCommit {
    generation: i32,
    offsets: Vec<(i32, i64)>,
    synced_at_send: i32,
    reply: oneshot::Receiver<i16>,
}

/// An OffsetFetch on its way.
struct PendingFetch {
    reply: oneshot::Receiver<Result<OffsetsOf, i16>>,
}

#[derive(Default)]
pub struct KafkaWorkload {
    topics_asked: u64,
    ready: bool,
    next_value: u64,
    in_flight: Vec<Produce>,
    /// Acknowledged batches: partition → offset → value.
    acked_batches: BTreeMap<i32, BTreeMap<i64, String>>,
    members: Vec<Member>,
    /// The highest generation whose SyncGroup succeeded for some member, and when.
    synced_generation: i32,
    /// Acknowledged commits: partition → the highest offset.
    committed: BTreeMap<i32, i64>,
    /// Every (partition, offset) a commit asked for.
    asked: std::collections::BTreeSet<(i32, i64)>,
    topic_requests: VecDeque<oneshot::Receiver<MetaReply>>,
    pub acked: u64,
    pub commits: u64,
}

impl KafkaWorkload {
    pub fn new() -> Self {
        let member = |_| Member {
            id: String::new(),
            state: MemberState::Idle,
            last_heartbeat: 0,
            paused_until: 0,
            heartbeat: None,
            commit: None,
            fetch: None,
        };
        KafkaWorkload { members: (0..2).map(member).collect(), ..Default::default() }
    }

    pub fn generations(&self) -> i32 {
        self.synced_generation
    }

    pub fn step(&mut self, now: u64, nodes: &BTreeMap<i32, SimNode>, rng: &mut SimRng, ops: u64) -> Result<(), String> {
        self.replies()?;
        if !self.ready {
            self.create_topics(now, nodes);
            return Ok(());
        }
        if ops > 0 && self.in_flight.len() < PARTITIONS as usize && rng.chance(ops, 1000) {
            self.produce(now, nodes, rng);
        }
        for index in 0..self.members.len() {
            self.member_step(index, now, nodes, rng, ops > 0)?;
        }
        Ok(())
    }

    /// The topics exist once some serving node's snapshot has both.
    fn create_topics(&mut self, now: u64, nodes: &BTreeMap<i32, SimNode>) {
        let exists = nodes.values().filter(|n| n.serving()).any(|n| {
            let snapshot = n.shared.published.read().unwrap_or_else(|e| e.into_inner()).clone();
            snapshot.topic(TOPIC).is_some() && snapshot.topic(OFFSETS_TOPIC).is_some()
        });
        if exists {
            self.ready = true;
            return;
        }
        while let Some(mut reply) = self.topic_requests.pop_front() {
            if reply.try_recv().is_err() {
                self.topic_requests.push_front(reply);
                break;
            }
        }
        if !now.is_multiple_of(200) || !self.topic_requests.is_empty() {
            return;
        }
        self.topics_asked += 1;
        let Some(node) = nodes.values().filter(|n| n.serving()).nth(self.topics_asked as usize % nodes.len().max(1))
        else {
            return;
        };
        for (name, partitions, configs) in [
            (TOPIC, PARTITIONS, BTreeMap::new()),
            (
                OFFSETS_TOPIC,
                braid_node::groups::OFFSETS_PARTITIONS,
                BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
            ),
        ] {
            let (reply, answer) = oneshot::channel();
            let op = MetaOp::CreateTopic {
                name: name.into(),
                partitions,
                replication_factor: 3,
                configs,
                validate_only: false,
                forward: true,
                assignment: None,
            };
            if node.send(0, ShardMsg::Meta { op, now_ms: now as i64, reply }) {
                self.topic_requests.push_back(answer);
            }
        }
    }

    /// The node that leads a partition, as the nodes that are up know it.
    fn leader<'a>(nodes: &'a BTreeMap<i32, SimNode>, topic: &str, partition: i32) -> Option<&'a SimNode> {
        let leader = nodes.values().find_map(|n| {
            let leaders = n.shared.leaders.read().unwrap_or_else(|e| e.into_inner());
            leaders.get(&(topic.to_owned(), partition)).map(|(leader, _)| *leader).filter(|&l| l >= 0)
        })?;
        nodes.get(&leader)
    }

    fn produce(&mut self, now: u64, nodes: &BTreeMap<i32, SimNode>, rng: &mut SimRng) {
        let partition = rng.below(PARTITIONS as u64) as i32;
        if self.in_flight.iter().any(|p| p.partition == partition) {
            return;
        }
        let Some(node) = Self::leader(nodes, TOPIC, partition) else { return };
        self.next_value += 1;
        let value = format!("v{}", self.next_value);
        let batch = batch::build_keyed_batch(1_700_000_000_000 + now as i64, &[(None, Some(value.as_bytes()))]);
        let (reply, answer) = oneshot::channel();
        let shard = owner_shard(TOPIC, partition, node.shared.senders.len());
        let msg = ShardMsg::Produce {
            topic: TOPIC.into(),
            partition,
            records: Some(Bytes::from(batch)),
            acks: -1,
            transactional_id: None,
            reply,
        };
        if node.send(shard, msg) {
            super::trace(now, format_args!("partition {partition}: {value} to node {}", node.id));
            self.in_flight.push(Produce { partition, value, reply: answer });
        }
    }

    fn replies(&mut self) -> Result<(), String> {
        let mut still = Vec::new();
        for mut p in std::mem::take(&mut self.in_flight) {
            match p.reply.try_recv() {
                Ok(outcome) if outcome.error == 0 => {
                    self.acked += 1;
                    super::trace(
                        0,
                        format_args!("partition {} acked {} at {}", p.partition, p.value, outcome.base_offset),
                    );
                    let batches = self.acked_batches.entry(p.partition).or_default();
                    if let Some(other) = batches.insert(outcome.base_offset, p.value.clone()) {
                        return Err(format!(
                            "partition {} acknowledged two batches at offset {}: {other} and {}",
                            p.partition, outcome.base_offset, p.value
                        ));
                    }
                }
                Ok(_) | Err(oneshot::error::TryRecvError::Closed) => {}
                Err(oneshot::error::TryRecvError::Empty) => still.push(p),
            }
        }
        self.in_flight = still;
        Ok(())
    }

    fn coordinator(nodes: &BTreeMap<i32, SimNode>) -> Option<(&SimNode, i32, usize)> {
        let partition = partition_for(GROUP);
        let node = Self::leader(nodes, OFFSETS_TOPIC, partition)?;
        Some((node, partition, owner_shard(OFFSETS_TOPIC, partition, node.shared.senders.len())))
    }

    fn member_step(
        &mut self,
        index: usize,
        now: u64,
        nodes: &BTreeMap<i32, SimNode>,
        rng: &mut SimRng,
        load: bool,
    ) -> Result<(), String> {
        self.member_replies(index, now)?;
        let Some((node, partition, shard)) = Self::coordinator(nodes) else { return Ok(()) };
        let synced = self.synced_generation;
        let committed = self.committed.clone();
        let highest: BTreeMap<i32, i64> = self
            .acked_batches
            .iter()
            .filter_map(|(p, batches)| batches.keys().next_back().map(|o| (*p, *o + 1)))
            .collect();
        let m = &mut self.members[index];
        if now < m.paused_until {
            return Ok(());
        }
        let send = |request: GroupRequest| node.send(shard, ShardMsg::Group { partition, request });
        match &m.state {
            MemberState::Idle if load || index == 0 => {
                let (reply, answer) = oneshot::channel();
                let request = JoinRequest {
                    member_id: m.id.clone(),
                    instance_id: None,
                    client_id: format!("sim-consumer-{index}"),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: SESSION_TIMEOUT_MS,
                    rebalance_timeout_ms: SESSION_TIMEOUT_MS,
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), Bytes::from_static(b"sim"))],
                    require_known_member_id: false,
                };
                if send(GroupRequest::Join { group: GROUP.into(), request, reply }) {
                    m.state = MemberState::Joining(answer);
                }
            }
            MemberState::Joined(outcome) => {
                let assignments = round_robin(&outcome.members);
                let generation = outcome.generation;
                let (reply, answer) = oneshot::channel();
                let request = GroupRequest::Sync {
                    group: GROUP.into(),
                    generation,
                    member_id: m.id.clone(),
                    instance_id: None,
                    assignments,
                    reply,
                };
                m.state =
                    if send(request) { MemberState::Syncing { generation, reply: answer } } else { MemberState::Idle };
            }
            MemberState::Stable { generation } => {
                let generation = *generation;
                if m.heartbeat.is_none() && now.saturating_sub(m.last_heartbeat) >= 100 {
                    let (reply, answer) = oneshot::channel();
                    let request = GroupRequest::Heartbeat {
                        group: GROUP.into(),
                        generation,
                        member_id: m.id.clone(),
                        instance_id: None,
                        reply,
                    };
                    if send(request) {
                        m.heartbeat = Some(answer);
                        m.last_heartbeat = now;
                    }
                }
                if load && m.commit.is_none() && rng.chance(20, 1000) {
                    // Commits only move forward: each partition's next offset past what is
                    // acknowledged, never below what was committed.
                    let offsets: Vec<(i32, i64)> =
                        highest.iter().map(|(&p, &o)| (p, o.max(committed.get(&p).copied().unwrap_or(0)))).collect();
                    let (reply, answer) = oneshot::channel();
                    let request = commit_request(generation, &m.id, &offsets, reply);
                    if send(request) {
                        self.asked.extend(offsets.iter().copied());
                        m.commit = Some(PendingCommit { generation, offsets, synced_at_send: synced, reply: answer });
                    }
                }
                if m.fetch.is_none() && rng.chance(10, 1000) {
                    let (reply, answer) = oneshot::channel();
                    let request =
                        GroupRequest::Fetch { group: GROUP.into(), partitions: None, require_stable: false, reply };
                    if send(request) {
                        m.fetch = Some(PendingFetch { reply: answer });
                    }
                }
                // A long pause (a stop-the-world collection, a stalled host): the member's
                // session times out while it sleeps; it commits with its old generation after.
                if load && index == 1 && rng.chance(1, 1000) {
                    super::trace(now, format_args!("member {index} pauses"));
                    m.paused_until = now + 2 * SESSION_TIMEOUT_MS as u64;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn member_replies(&mut self, index: usize, now: u64) -> Result<(), String> {
        let synced = self.synced_generation;
        let m = &mut self.members[index];
        let mut rejoin = false;
        match &mut m.state {
            MemberState::Joining(answer) => match answer.try_recv() {
                Ok(outcome) if outcome.error == 0 => {
                    super::trace(
                        now,
                        format_args!(
                            "member {index} joined generation {} as {}",
                            outcome.generation, outcome.member_id
                        ),
                    );
                    m.id = outcome.member_id.clone();
                    m.state = MemberState::Joined(outcome);
                    return Ok(());
                }
                Ok(outcome) => {
                    if outcome.error == UNKNOWN_MEMBER_ID {
                        m.id.clear();
                    }
                    rejoin = true;
                }
                Err(oneshot::error::TryRecvError::Closed) => rejoin = true,
                Err(oneshot::error::TryRecvError::Empty) => {}
            },
            MemberState::Syncing { generation, reply } => match reply.try_recv() {
                Ok(outcome) if outcome.error == 0 => {
                    let generation = *generation;
                    super::trace(now, format_args!("member {index} synced generation {generation}"));
                    self.synced_generation = synced.max(generation);
                    m.state = MemberState::Stable { generation };
                    m.last_heartbeat = now;
                }
                Ok(_) | Err(oneshot::error::TryRecvError::Closed) => rejoin = true,
                Err(oneshot::error::TryRecvError::Empty) => {}
            },
            _ => {}
        }
        if let Some(answer) = m.heartbeat.as_mut() {
            match answer.try_recv() {
                Ok(0) => m.heartbeat = None,
                Ok(_) | Err(oneshot::error::TryRecvError::Closed) => {
                    m.heartbeat = None;
                    rejoin = true;
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
        if let Some(PendingCommit { generation, offsets, synced_at_send, reply }) = m.commit.as_mut() {
            match reply.try_recv() {
                Ok(0) => {
                    super::trace(now, format_args!("member {index} committed with generation {generation}"));
                    if *generation < *synced_at_send {
                        return Err(format!(
                            "a commit with generation {generation} was accepted after generation {synced_at_send} had synced"
                        ));
                    }
                    self.commits += 1;
                    for &(p, o) in offsets.iter() {
                        let c = self.committed.entry(p).or_insert(o);
                        *c = (*c).max(o);
                    }
                    m.commit = None;
                }
                Ok(code) => {
                    super::trace(now, format_args!("member {index} commit with generation {generation}: error {code}"));
                    m.commit = None;
                    rejoin |= matches!(code, ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID | REBALANCE_IN_PROGRESS);
                }
                Err(oneshot::error::TryRecvError::Closed) => m.commit = None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
        if let Some(PendingFetch { reply }) = m.fetch.as_mut() {
            match reply.try_recv() {
                Ok(Ok(offsets)) => {
                    for ((topic, p), c) in offsets.iter().filter(|((t, _), _)| t == TOPIC) {
                        let Some(got) = c.as_ref().map(|c| c.offset) else { continue };
                        if !self.asked.contains(&(*p, got)) {
                            return Err(format!("group offsets of {topic}-{p} hold {got}, which no commit asked for"));
                        }
                    }
                    m.fetch = None;
                }
                Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => m.fetch = None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
        if rejoin {
            let m = &mut self.members[index];
            m.state = MemberState::Idle;
            m.heartbeat = None;
        }
        Ok(())
    }

    /// Every acknowledged batch is in its partition's log, read from the partition's leader;
    /// the group's offsets hold every acknowledged commit.
    pub fn check_final(&self, nodes: &mut BTreeMap<i32, SimNode>) -> Result<(), String> {
        self.check_final_offsets(nodes)?;
        for (&partition, batches) in &self.acked_batches {
            let Some(leader) = Self::leader(nodes, TOPIC, partition).map(|n| n.id) else {
                return Err(format!("partition {partition} has no leader after settling"));
            };
            let log = read_partition(nodes.get_mut(&leader).expect("up"), TOPIC, partition, false)?;
            if std::env::var_os("BRAID_SIM_TRACE").is_some() {
                eprintln!("partition {partition} leader {leader}: log {log:?}");
                eprintln!("partition {partition} acked {batches:?}");
            }
            for (offset, value) in batches {
                match log.get(offset) {
                    Some(found) if found == value => {}
                    Some(found) => {
                        return Err(format!(
                            "partition {partition} offset {offset} holds {found}, not the acknowledged {value}"
                        ))
                    }
                    None => {
                        return Err(format!("partition {partition} lost the acknowledged {value} at offset {offset}"))
                    }
                }
            }
        }
        Ok(())
    }
}

impl KafkaWorkload {
    fn check_final_offsets(&self, nodes: &mut BTreeMap<i32, SimNode>) -> Result<(), String> {
        if self.committed.is_empty() {
            return Ok(());
        }
        let Some((node, partition, shard)) = Self::coordinator(nodes).map(|(n, p, s)| (n.id, p, s)) else {
            return Err("the group has no coordinator after settling".into());
        };
        let (reply, mut answer) = oneshot::channel();
        let request = GroupRequest::Fetch { group: GROUP.into(), partitions: None, require_stable: false, reply };
        nodes.get_mut(&node).expect("up").handle(shard, ShardMsg::Group { partition, request });
        let offsets = match answer.try_recv() {
            Ok(Ok(offsets)) => offsets,
            other => return Err(format!("the settled coordinator did not answer an OffsetFetch: {other:?}")),
        };
        for (&p, &acked) in &self.committed {
            let got = offsets
                .iter()
                .find(|((t, q), _)| t == TOPIC && *q == p)
                .and_then(|(_, c)| c.as_ref().map(|c| c.offset))
                .unwrap_or(-1);
            if got < acked {
                return Err(format!(
                    "the group's offset of {TOPIC}-{p} is {got}, below the acknowledged commit of {acked}"
                ));
            }
        }
        Ok(())
    }
}

/// One fetch of `topic`/`partition` from `offset` at this node (`committed_only`:
/// read_committed).
pub(super) fn fetch_at(
    node: &mut SimNode,
    (topic, partition): (&str, i32),
    offset: i64,
    committed_only: bool,
) -> Result<FetchOutcome, String> {
    let shard = owner_shard(topic, partition, node.shared.senders.len());
    let (reply, answer) = oneshot::channel();
    let fetch = ShardMsg::Fetch {
        topic: topic.into(),
        partition,
        offset,
        max_bytes: 1 << 20,
        current_leader_epoch: -1,
        committed_only,
        reply,
    };
    node.handle(shard, fetch);
    answer.blocking_recv().map_err(|_| "the leader did not answer a fetch".into())
}

/// A partition's records (offset → value), fetched from its leader a batch at a time
/// (`committed_only`: read_committed, its aborted transactions' records left out).
pub(super) fn read_partition(
    node: &mut SimNode,
    topic: &str,
    partition: i32,
    committed_only: bool,
) -> Result<BTreeMap<i64, String>, String> {
    let mut records = BTreeMap::new();
    let mut offset = 0;
    loop {
        let outcome = fetch_at(node, (topic, partition), offset, committed_only)?;
        if outcome.error != 0 {
            return Err(format!("fetching partition {partition} at {offset}: error {}", outcome.error));
        }
        let bytes = match outcome.records {
            None => break,
            Some(RecordsChunk::Bytes(bytes)) => bytes,
            Some(RecordsChunk::File { .. }) => return Err("a simulated log answered with a file".into()),
        };
        let mut at = 0;
        while at < bytes.len() {
            let header = batch::BatchHeader::parse(&bytes[at..]).map_err(|e| format!("batch at {offset}: {e:?}"))?;
            let end = at + header.total_bytes();
            let control = header.attributes & batch::CONTROL_ATTRIBUTE != 0;
            let aborted = outcome.aborted.iter().flatten().any(|a| {
                a.producer_id == header.producer_id && (a.first_offset..a.last_offset).contains(&header.base_offset)
            });
            let kept = if control || aborted {
                Vec::new()
            } else {
                batch::records(&bytes[at..end]).map_err(|e| format!("records: {e:?}"))?
            };
            for record in kept {
                let value = record.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
                records.insert(record.offset, value);
            }
            offset = header.base_offset + i64::from(header.last_offset_delta) + 1;
            at = end;
        }
        let end = if committed_only { outcome.last_stable_offset } else { outcome.high_watermark };
        if offset >= end {
            break;
        }
    }
    Ok(records)
}

/// The leader's assignment: the partitions round-robin over the members (the others send
/// nothing).
fn round_robin(members: &[(String, Option<String>, Bytes)]) -> Vec<(String, Bytes)> {
    members
        .iter()
        .enumerate()
        .map(|(i, (member, _, _))| {
            let mine: Vec<String> =
                (0..PARTITIONS).filter(|p| *p as usize % members.len() == i).map(|p| p.to_string()).collect();
            (member.clone(), Bytes::from(mine.join(",")))
        })
        .collect()
}

/// An OffsetCommit of `offsets` (partition, next offset) in `generation`.
fn commit_request(
    generation: i32,
    member_id: &str,
    offsets: &[(i32, i64)],
    reply: oneshot::Sender<i16>,
) -> GroupRequest {
    GroupRequest::Commit {
        group: GROUP.into(),
        generation,
        member_id: member_id.to_owned(),
        instance_id: None,
        offsets: offsets
            .iter()
            .map(|&(p, o)| {
                (TOPIC.to_owned(), p, Some(Committed { offset: o, leader_epoch: -1, metadata: String::new() }))
            })
            .collect(),
        producer: None,
        reply,
    }
}
