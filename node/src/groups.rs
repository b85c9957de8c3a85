//! The group coordinator of one `__consumer_offsets` partition: Kafka's classic consumer-group
//! protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup; static members) for the groups that
//! hash to the partition, and their committed offsets.
//!
//! Committed offsets and group membership are records of the partition, in Kafka's own layout:
//! offsets under key version 1 (group, topic, partition; value version 3: offset, leader epoch,
//! metadata, commit time), a group under key version 2 (value version 3: protocol, generation,
//! leader, members with their subscriptions and assignments), written whenever a rebalance
//! completes or the group empties; a null value deletes. Every replica applies them as they
//! commit, so whichever node leads next knows the offsets, and the members of the last
//! generation go on heartbeating and committing there without a rebalance.
//!
//! Time comes in from the shard (`now_ms`); replies are one-shot channels answered when the
//! protocol says (a JoinGroup waits until the rebalance completes).

use bytes::{Buf, BufMut, Bytes};
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::oneshot;

/// The internal topic holding committed offsets, and its partitions (Kafka's
/// `offsets.topic.num.partitions` defaults to 50; fewer raft groups suit small clusters).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
pub const OFFSETS_PARTITIONS: i32 = 16;
/// How long a new group waits for more members before its first rebalance completes
/// (Kafka's `group.initial.rebalance.delay.ms` is 3000).
pub const INITIAL_REBALANCE_DELAY_MS: i64 = 300;
/// Session timeouts a member may ask for (Kafka's group.min/max.session.timeout.ms).
pub const MIN_SESSION_TIMEOUT_MS: i32 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;

/// The offsets partition a group's coordinator is.
pub fn partition_for(group: &str) -> i32 {
    (crc32c::crc32c(group.as_bytes()) % OFFSETS_PARTITIONS as u32) as i32
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// Key of an offset record (Kafka's version 1).
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(1);
    put_string(&mut out, group);
    put_string(&mut out, topic);
    out.put_i32(partition);
    out
}

/// Value of an offset record (Kafka's version 3).
pub fn offset_value(c: &Committed, now_ms: i64) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(3);
    out.put_i64(c.offset);
    out.put_i32(c.leader_epoch);
    put_string(&mut out, &c.metadata);
    out.put_i64(now_ms);
    out
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn get_string(b: &mut &[u8]) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let len = b.get_i16();
    let len = usize::try_from(len).ok()?;
    if b.remaining() < len {
        return None;
    }
    let s = String::from_utf8(b[..len].to_vec()).ok()?;
    b.advance(len);
    Some(s)
}

fn put_nullable(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, s),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

fn get_nullable(b: &mut &[u8]) -> Option<Option<String>> {
    if b.remaining() >= 2 && i16::from_be_bytes([b[0], b[1]]) == -1 {
        b.advance(2);
        return Some(None);
    }
    get_string(b).map(Some)
}

fn get_bytes(b: &mut &[u8]) -> Option<Bytes> {
    if b.remaining() < 4 {
        return None;
    }
    let len = usize::try_from(b.get_i32()).ok()?;
    if b.remaining() < len {
        return None;
    }
    let out = Bytes::copy_from_slice(&b[..len]);
    b.advance(len);
    Some(out)
}

/// Key of a group record (Kafka's version 2).
pub fn group_key(group: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(2);
    put_string(&mut out, group);
    out
}

/// A group as stored: what a new coordinator needs to go on with the same generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: String,
    pub leader: String,
    /// member id, instance id, client id, client host, rebalance and session timeouts,
    /// subscription (the chosen protocol's metadata), assignment.
    pub members: Vec<StoredMember>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Value of a group record (Kafka's version 3).
pub fn group_value(g: &StoredGroup, now_ms: i64) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(3);
    put_string(&mut out, &g.protocol_type);
    out.put_i32(g.generation);
    put_nullable(&mut out, (!g.protocol.is_empty()).then_some(g.protocol.as_str()));
    put_nullable(&mut out, (!g.leader.is_empty()).then_some(g.leader.as_str()));
    out.put_i64(now_ms);
    out.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_string(&mut out, &m.member_id);
        put_nullable(&mut out, m.instance_id.as_deref());
        put_string(&mut out, &m.client_id);
        put_string(&mut out, &m.client_host);
        out.put_i32(m.rebalance_timeout_ms);
        out.put_i32(m.session_timeout_ms);
        put_bytes(&mut out, &m.subscription);
        put_bytes(&mut out, &m.assignment);
    }
    out
}

/// Decodes a group record's value (versions 1 to 3).
pub fn decode_group(value: &[u8]) -> Option<StoredGroup> {
    let mut v = value;
    if v.remaining() < 2 {
        return None;
    }
    let version = v.get_i16();
    let protocol_type = get_string(&mut v)?;
    if v.remaining() < 4 {
        return None;
    }
    let generation = v.get_i32();
    let protocol = get_nullable(&mut v)?.unwrap_or_default();
    let leader = get_nullable(&mut v)?.unwrap_or_default();
    if version >= 2 {
        if v.remaining() < 8 {
            return None;
        }
        v.get_i64();
    }
    if v.remaining() < 4 {
        return None;
    }
    let count = usize::try_from(v.get_i32()).ok()?;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let member_id = get_string(&mut v)?;
        let instance_id = if version >= 3 { get_nullable(&mut v)? } else { None };
        let client_id = get_string(&mut v)?;
        let client_host = get_string(&mut v)?;
        if v.remaining() < 8 {
            return None;
        }
        let rebalance_timeout_ms = v.get_i32();
        let session_timeout_ms = v.get_i32();
        let subscription = get_bytes(&mut v)?;
        let assignment = get_bytes(&mut v)?;
        members.push(StoredMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(StoredGroup { protocol_type, generation, protocol, leader, members })
}

/// Decodes an offset record: (group, topic, partition) and the offset (None: deleted).
/// Records of other kinds (Kafka's group metadata, key version 2) are skipped.
pub fn decode_offset(key: &[u8], value: Option<&[u8]>) -> Option<((String, String, i32), Option<Committed>)> {
    let mut k = key;
    if k.remaining() < 2 || !matches!(k.get_i16(), 0 | 1) {
        return None;
    }
    let group = get_string(&mut k)?;
    let topic = get_string(&mut k)?;
    if k.remaining() < 4 {
        return None;
    }
    let partition = k.get_i32();
    let Some(mut v) = value else { return Some(((group, topic, partition), None)) };
    if v.remaining() < 10 {
        return None;
    }
    let version = v.get_i16();
    let offset = v.get_i64();
    let leader_epoch = if version >= 3 && v.remaining() >= 4 { v.get_i32() } else { -1 };
    let metadata = get_string(&mut v).unwrap_or_default();
    Some(((group, topic, partition), Some(Committed { offset, leader_epoch, metadata })))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    fn error(error: ResponseError, member_id: &str) -> Self {
        JoinOutcome { error: code(error), generation: -1, member_id: member_id.to_owned(), ..Default::default() }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: String,
    pub protocol_name: String,
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn error(error: ResponseError) -> Self {
        SyncOutcome { error: code(error), ..Default::default() }
    }
}

pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

/// A described member: id, instance id, client id, host, metadata, assignment.
pub type DescribedMember = (String, Option<String>, String, String, Bytes, Bytes);
/// A described group: state, protocol type, protocol, members.
pub type Described = (&'static str, String, String, Vec<DescribedMember>);
/// Committed offsets by (topic, partition); None where nothing is committed.
pub type OffsetsOf = Vec<((String, i32), Option<Committed>)>;
/// Records to append: (key, value; None deletes).
pub type Records = Vec<(Vec<u8>, Option<Vec<u8>>)>;

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i64,
    rebalance_timeout_ms: i64,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heard_ms: i64,
    join: Option<oneshot::Sender<JoinOutcome>>,
    sync: Option<oneshot::Sender<SyncOutcome>>,
}

pub struct Group {
    pub state: State,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: String,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not joined yet.
    pending: Vec<(String, i64)>,
    /// When the rebalance in progress completes without the members still missing.
    rebalance_deadline_ms: i64,
    /// A new group's first rebalance waits for more members until then.
    initial_deadline_ms: i64,
    /// A rebalance completed or the group emptied since it was last written.
    persist: bool,
}

impl Group {
    fn new() -> Self {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: BTreeMap::new(),
            pending: Vec::new(),
            rebalance_deadline_ms: 0,
            initial_deadline_ms: 0,
            persist: false,
        }
    }

    /// The group a new coordinator takes over: the last generation, its members given a
    /// session timeout from `now_ms` to be heard from.
    fn restore(stored: &StoredGroup, now_ms: i64) -> Self {
        let mut g = Group::new();
        g.protocol_type = stored.protocol_type.clone();
        g.generation = stored.generation;
        g.protocol = stored.protocol.clone();
        g.leader = stored.leader.clone();
        for m in &stored.members {
            let member = Member {
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: i64::from(m.session_timeout_ms),
                rebalance_timeout_ms: i64::from(m.rebalance_timeout_ms),
                protocols: vec![(stored.protocol.clone(), m.subscription.clone())],
                assignment: m.assignment.clone(),
                last_heard_ms: now_ms,
                join: None,
                sync: None,
            };
            g.members.insert(m.member_id.clone(), member);
        }
        g.state = if g.members.is_empty() { State::Empty } else { State::Stable };
        g
    }

    fn stored(&self) -> StoredGroup {
        StoredGroup {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| StoredMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms as i32,
                    session_timeout_ms: m.session_timeout_ms as i32,
                    subscription: metadata_for(m, &self.protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    fn prepare_rebalance(&mut self, now_ms: i64) {
        let timeout = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
        self.initial_deadline_ms = if self.state == State::Empty { now_ms + INITIAL_REBALANCE_DELAY_MS } else { 0 };
        if self.state == State::CompletingRebalance {
            // Members waiting for their assignment join again.
            for m in self.members.values_mut() {
                if let Some(sync) = m.sync.take() {
                    let _ = sync.send(SyncOutcome::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        self.state = State::PreparingRebalance;
        self.rebalance_deadline_ms = now_ms + timeout.max(INITIAL_REBALANCE_DELAY_MS);
    }

    /// Completes the join phase if every member has rejoined (or, `forced`, at the deadline:
    /// members that did not rejoin are dropped).
    fn maybe_complete_join(&mut self, now_ms: i64, forced: bool) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join.is_some());
        let initial_wait = now_ms < self.initial_deadline_ms;
        if !(forced || all_joined && !initial_wait) {
            return;
        }
        self.members.retain(|_, m| m.join.is_some());
        if self.members.is_empty() {
            self.state = State::Empty;
            self.generation += 1;
            self.persist = true;
            return;
        }
        self.generation += 1;
        self.protocol = self.choose_protocol();
        if !self.members.contains_key(&self.leader) {
            self.leader = self.members.keys().next().cloned().unwrap_or_default();
        }
        self.state = State::CompletingRebalance;
        let everyone: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), metadata_for(m, &self.protocol)))
            .collect();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let members = if id == self.leader { everyone.clone() } else { Vec::new() };
            let outcome = self.joined(&id, members);
            let m = self.members.get_mut(&id).expect("a member");
            m.last_heard_ms = now_ms;
            if let Some(join) = m.join.take() {
                let _ = join.send(outcome);
            }
        }
    }

    /// A JoinGroup's answer for `member_id` in the current generation (`members`: what the
    /// leader is given to assign, empty for the others).
    fn joined(&self, member_id: &str, members: Vec<(String, Option<String>, Bytes)>) -> JoinOutcome {
        JoinOutcome {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone(),
            member_id: member_id.to_owned(),
            members,
        }
    }

    /// The protocol every member supports that most members list first (Kafka's vote).
    fn choose_protocol(&self) -> String {
        let Some(first) = self.members.values().next() else { return String::new() };
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        candidates.iter().max_by_key(|c| votes.get(*c).copied().unwrap_or(0)).map(|c| (*c).clone()).unwrap_or_default()
    }

    fn remove_member(&mut self, id: &str, now_ms: i64) {
        let Some(mut m) = self.members.remove(id) else { return };
        if let Some(join) = m.join.take() {
            let _ = join.send(JoinOutcome::error(ResponseError::UnknownMemberId, id));
        }
        if let Some(sync) = m.sync.take() {
            let _ = sync.send(SyncOutcome::error(ResponseError::UnknownMemberId));
        }
        match self.state {
            State::Stable | State::CompletingRebalance => self.prepare_rebalance(now_ms),
            State::PreparingRebalance => {}
            State::Empty => {}
        }
        if self.members.is_empty() && self.state == State::PreparingRebalance {
            self.state = State::Empty;
            self.generation += 1;
            self.persist = true;
        }
        self.maybe_complete_join(now_ms, false);
    }

    fn check_member(&self, member_id: &str, generation: i32) -> Result<(), ResponseError> {
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }
}

fn metadata_for(m: &Member, protocol: &str) -> Bytes {
    m.protocols.iter().find(|(n, _)| n == protocol).map(|(_, b)| b.clone()).unwrap_or_default()
}

/// The coordinator of one offsets partition on this node.
#[derive(Default)]
pub struct Coordinator {
    /// Groups, on the partition's leader (emptied when leadership is lost).
    groups: HashMap<String, Group>,
    /// Committed offsets by group, applied from the partition's committed records.
    offsets: HashMap<String, BTreeMap<(String, i32), Committed>>,
    /// Groups as last stored, applied from the partition's committed records.
    stored: HashMap<String, StoredGroup>,
    /// End of the records applied to `offsets` and `stored`.
    pub applied: i64,
}

impl Coordinator {
    /// Applies a committed record (an offset or a group).
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        if key.len() >= 2 && i16::from_be_bytes([key[0], key[1]]) == 2 {
            let mut k = &key[2..];
            let Some(group) = get_string(&mut k) else { return };
            match value.and_then(decode_group) {
                Some(stored) => {
                    self.stored.insert(group, stored);
                }
                None => {
                    self.stored.remove(&group);
                }
            }
            return;
        }
        let Some(((group, topic, partition), committed)) = decode_offset(key, value) else { return };
        match committed {
            Some(c) => {
                self.offsets.entry(group).or_default().insert((topic, partition), c);
            }
            None => {
                if let Some(g) = self.offsets.get_mut(&group) {
                    g.remove(&(topic, partition));
                    if g.is_empty() {
                        self.offsets.remove(&group);
                    }
                }
            }
        }
    }

    /// Leadership of the partition is lost: every group's waiting members are told to look for
    /// the new coordinator, and membership is forgotten.
    pub fn lose_leadership(&mut self) {
        for (_, mut g) in self.groups.drain() {
            for m in g.members.values_mut() {
                if let Some(join) = m.join.take() {
                    let _ = join.send(JoinOutcome::error(ResponseError::NotCoordinator, ""));
                }
                if let Some(sync) = m.sync.take() {
                    let _ = sync.send(SyncOutcome::error(ResponseError::NotCoordinator));
                }
            }
        }
    }

    /// Group records to write (groups whose rebalance completed or that emptied).
    pub fn take_writes(&mut self, now_ms: i64) -> Records {
        let mut out = Vec::new();
        for (id, g) in self.groups.iter_mut().filter(|(_, g)| g.persist) {
            g.persist = false;
            out.push((group_key(id), Some(group_value(&g.stored(), now_ms))));
        }
        out
    }

    /// Takes over groups of a previous coordinator from their stored records.
    fn restore(&mut self, group: &str, now_ms: i64) {
        if !self.groups.contains_key(group) {
            if let Some(stored) = self.stored.get(group) {
                self.groups.insert(group.to_owned(), Group::restore(stored, now_ms));
            }
        }
    }

    pub fn join(&mut self, group: &str, r: JoinRequest, now_ms: i64, reply: oneshot::Sender<JoinOutcome>) {
        self.restore(group, now_ms);
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&r.session_timeout_ms) {
            let _ = reply.send(JoinOutcome::error(ResponseError::InvalidSessionTimeout, &r.member_id));
            return;
        }
        let g = self.groups.entry(group.to_owned()).or_insert_with(Group::new);
        if r.protocol_type.is_empty() || r.protocols.is_empty() {
            let _ = reply.send(JoinOutcome::error(ResponseError::InconsistentGroupProtocol, &r.member_id));
            return;
        }
        if !g.members.is_empty()
            && (g.protocol_type != r.protocol_type
                || !r
                    .protocols
                    .iter()
                    .any(|(n, _)| g.members.values().all(|m| m.protocols.iter().any(|(o, _)| o == n))))
        {
            let _ = reply.send(JoinOutcome::error(ResponseError::InconsistentGroupProtocol, &r.member_id));
            return;
        }
        // A static member (group.instance.id) keeps its place under a new member id.
        let mut member_id = r.member_id.clone();
        if let Some(instance) = &r.instance_id {
            let existing =
                g.members.iter().find(|(_, m)| m.instance_id.as_ref() == Some(instance)).map(|(id, _)| id.clone());
            match existing {
                Some(old) if member_id.is_empty() || member_id == old => {
                    if let Some(mut m) = g.members.remove(&old) {
                        if let Some(join) = m.join.take() {
                            let _ = join.send(JoinOutcome::error(ResponseError::FencedInstanceId, &old));
                        }
                        member_id = format!("{instance}-{}", uuid::Uuid::new_v4());
                        if g.leader == old {
                            g.leader = member_id.clone();
                        }
                        g.members.insert(member_id.clone(), m);
                    }
                }
                Some(_) => {
                    let _ = reply.send(JoinOutcome::error(ResponseError::FencedInstanceId, &member_id));
                    return;
                }
                None if member_id.is_empty() => member_id = format!("{instance}-{}", uuid::Uuid::new_v4()),
                None => {}
            }
        } else if member_id.is_empty() {
            member_id = format!("{}-{}", r.client_id, uuid::Uuid::new_v4());
            if r.require_known_member_id {
                // Forgotten if it does not come back within its session timeout.
                g.pending.push((member_id.clone(), now_ms + i64::from(r.session_timeout_ms)));
                let _ = reply.send(JoinOutcome::error(ResponseError::MemberIdRequired, &member_id));
                return;
            }
        }
        let known = g.members.contains_key(&member_id) || r.instance_id.is_some();
        if !known {
            match g.pending.iter().position(|(p, _)| *p == member_id) {
                Some(i) => {
                    g.pending.swap_remove(i);
                }
                None if !r.member_id.is_empty() => {
                    let _ = reply.send(JoinOutcome::error(ResponseError::UnknownMemberId, &member_id));
                    return;
                }
                None => {}
            }
        }
        g.protocol_type = r.protocol_type.clone();
        let member = g.members.entry(member_id.clone()).or_insert_with(|| Member {
            instance_id: r.instance_id.clone(),
            client_id: String::new(),
            client_host: String::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_heard_ms: now_ms,
            join: None,
            sync: None,
        });
        let changed = member.protocols != r.protocols;
        member.client_id = r.client_id;
        member.client_host = r.client_host;
        member.session_timeout_ms = i64::from(r.session_timeout_ms);
        member.rebalance_timeout_ms = i64::from(r.rebalance_timeout_ms.max(r.session_timeout_ms));
        member.protocols = r.protocols;
        member.last_heard_ms = now_ms;
        if let Some(old) = member.join.replace(reply) {
            let _ = old.send(JoinOutcome::error(ResponseError::RebalanceInProgress, &member_id));
        }
        if g.leader.is_empty() {
            g.leader = member_id.clone();
        }
        match g.state {
            State::Empty | State::CompletingRebalance => g.prepare_rebalance(now_ms),
            // A new member, a changed subscription, or the leader (which must see every
            // member's metadata to assign again): a rebalance. A static member coming back
            // under a new id is not new.
            State::Stable
                if changed || (member_id != r.member_id && r.instance_id.is_none()) || member_id == g.leader =>
            {
                g.prepare_rebalance(now_ms)
            }
            State::Stable => {
                // A known follower rejoining with nothing new (or a static one restarted): it
                // gets the current generation, and its assignment with its SyncGroup.
                let outcome = g.joined(&member_id, Vec::new());
                let m = g.members.get_mut(&member_id).expect("inserted");
                if let Some(join) = m.join.take() {
                    let _ = join.send(outcome);
                }
                return;
            }
            State::PreparingRebalance => {}
        }
        g.maybe_complete_join(now_ms, false);
    }

    pub fn sync(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
        reply: oneshot::Sender<SyncOutcome>,
    ) {
        self.restore(group, now_ms);
        let Some(g) = self.groups.get_mut(group) else {
            let _ = reply.send(SyncOutcome::error(ResponseError::UnknownMemberId));
            return;
        };
        if let Err(e) = g.check_member(member_id, generation) {
            let _ = reply.send(SyncOutcome::error(e));
            return;
        }
        let outcome = |g: &Group, id: &str| SyncOutcome {
            error: 0,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
            assignment: g.members.get(id).map(|m| m.assignment.clone()).unwrap_or_default(),
        };
        match g.state {
            State::PreparingRebalance | State::Empty => {
                let _ = reply.send(SyncOutcome::error(ResponseError::RebalanceInProgress));
            }
            State::Stable => {
                let _ = reply.send(outcome(g, member_id));
            }
            State::CompletingRebalance => {
                let m = g.members.get_mut(member_id).expect("checked");
                m.last_heard_ms = now_ms;
                m.sync = Some(reply);
                if member_id == g.leader {
                    for m in g.members.values_mut() {
                        m.assignment = Bytes::new();
                    }
                    for (id, assignment) in assignments {
                        if let Some(m) = g.members.get_mut(&id) {
                            m.assignment = assignment;
                        }
                    }
                    g.state = State::Stable;
                    g.persist = true;
                    let ids: Vec<String> = g.members.keys().cloned().collect();
                    for id in ids {
                        let answer = outcome(g, &id);
                        if let Some(sync) = g.members.get_mut(&id).and_then(|m| m.sync.take()) {
                            let _ = sync.send(answer);
                        }
                    }
                }
            }
        }
    }

    pub fn heartbeat(&mut self, group: &str, generation: i32, member_id: &str, now_ms: i64) -> i16 {
        self.restore(group, now_ms);
        let Some(g) = self.groups.get_mut(group) else { return code(ResponseError::UnknownMemberId) };
        if let Err(e) = g.check_member(member_id, generation) {
            // A member of the generation being formed hears of the rebalance, not an error.
            if g.state == State::PreparingRebalance && g.members.contains_key(member_id) {
                return code(ResponseError::RebalanceInProgress);
            }
            return code(e);
        }
        if let Some(m) = g.members.get_mut(member_id) {
            m.last_heard_ms = now_ms;
        }
        match g.state {
            State::PreparingRebalance => code(ResponseError::RebalanceInProgress),
            _ => 0,
        }
    }

    /// Removes members (by member id, or by instance id for static members).
    pub fn leave(&mut self, group: &str, members: &[(String, Option<String>)], now_ms: i64) -> Vec<i16> {
        self.restore(group, now_ms);
        let Some(g) = self.groups.get_mut(group) else {
            return vec![code(ResponseError::UnknownMemberId); members.len()];
        };
        members
            .iter()
            .map(|(member_id, instance)| {
                let id = match instance {
                    Some(instance) => g
                        .members
                        .iter()
                        .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                        .map(|(id, _)| id.clone()),
                    None => g.members.contains_key(member_id).then(|| member_id.clone()),
                };
                match id {
                    Some(id) if member_id.is_empty() || *member_id == id => {
                        g.remove_member(&id, now_ms);
                        0
                    }
                    Some(_) => code(ResponseError::FencedInstanceId),
                    None => code(ResponseError::UnknownMemberId),
                }
            })
            .collect()
    }

    /// Session timeouts and rebalance deadlines.
    pub fn tick(&mut self, now_ms: i64) {
        for g in self.groups.values_mut() {
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| m.join.is_none() && now_ms - m.last_heard_ms > m.session_timeout_ms)
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(member = %id, "group member's session expired");
                g.remove_member(&id, now_ms);
            }
            if g.state == State::PreparingRebalance {
                let forced = now_ms >= g.rebalance_deadline_ms;
                g.maybe_complete_join(now_ms, forced);
            }
        }
        for g in self.groups.values_mut() {
            g.pending.retain(|(_, deadline)| *deadline > now_ms);
        }
        self.groups.retain(|_, g| g.state != State::Empty || g.persist || !g.pending.is_empty());
    }

    /// Checks an offset commit: Ok if the records may be written.
    pub fn check_commit(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        self.restore(group, now_ms);
        match self.groups.get(group) {
            // A simple consumer (no group membership) commits with generation -1.
            None if generation < 0 => Ok(()),
            None => Err(ResponseError::IllegalGeneration),
            Some(g) if generation < 0 && g.state == State::Empty => Ok(()),
            Some(g) if generation < 0 => {
                let _ = g;
                Err(ResponseError::UnknownMemberId)
            }
            // While the generation is being replaced, its members still commit (what they
            // consumed before giving their partitions up); between join and sync they may not.
            Some(g) if g.state == State::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            Some(g) => g.check_member(member_id, generation),
        }
    }

    /// Committed offsets of a group: the partitions asked for, or all.
    pub fn offsets(&self, group: &str, wanted: Option<&[(String, i32)]>) -> OffsetsOf {
        let committed = self.offsets.get(group);
        match wanted {
            Some(wanted) => wanted.iter().map(|k| (k.clone(), committed.and_then(|c| c.get(k)).cloned())).collect(),
            None => committed.into_iter().flatten().map(|(k, c)| (k.clone(), Some(c.clone()))).collect(),
        }
    }

    /// Groups coordinated here, with their protocol type and state.
    pub fn list(&mut self, now_ms: i64) -> Vec<(String, String, &'static str)> {
        // Groups are restored from their stored records when first asked about; the list must
        // show them as describe would (a group only in the offsets is Empty).
        let stored: Vec<String> = self.stored.keys().cloned().collect();
        for group in stored {
            self.restore(&group, now_ms);
        }
        let mut out: Vec<(String, String, &'static str)> =
            self.groups.iter().map(|(id, g)| (id.clone(), g.protocol_type.clone(), g.state.name())).collect();
        for id in self.offsets.keys().filter(|id| !self.groups.contains_key(*id)) {
            out.push((id.clone(), "consumer".into(), State::Empty.name()));
        }
        out
    }

    /// State, protocol type, protocol and members of a group ("Dead" if unknown).
    pub fn describe(&mut self, group: &str, now_ms: i64) -> Described {
        self.restore(group, now_ms);
        match self.groups.get(group) {
            Some(g) => {
                let members = g
                    .members
                    .iter()
                    .map(|(id, m)| {
                        let metadata = metadata_for(m, &g.protocol);
                        (
                            id.clone(),
                            m.instance_id.clone(),
                            m.client_id.clone(),
                            m.client_host.clone(),
                            metadata,
                            m.assignment.clone(),
                        )
                    })
                    .collect();
                let protocol = if g.state == State::Stable { g.protocol.clone() } else { String::new() };
                (g.state.name(), g.protocol_type.clone(), protocol, members)
            }
            None if self.offsets.contains_key(group) => {
                (State::Empty.name(), "consumer".into(), String::new(), Vec::new())
            }
            None => ("Dead", String::new(), String::new(), Vec::new()),
        }
    }

    /// True if the group has no members (it may be deleted, its offsets removed).
    pub fn is_empty(&self, group: &str) -> bool {
        self.groups.get(group).is_none_or(|g| g.members.is_empty())
    }

    pub fn forget(&mut self, group: &str) {
        self.groups.remove(group);
        self.stored.remove(group);
    }

    pub fn has_offsets(&self, group: &str) -> bool {
        self.offsets.contains_key(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_request(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from(p.to_string()))).collect(),
            require_known_member_id: true,
        }
    }

    fn join(c: &mut Coordinator, member_id: &str, protocols: &[&str], now: i64) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        c.join("g", join_request(member_id, protocols), now, tx);
        rx
    }

    #[test]
    fn members_join_sync_and_rebalance_when_one_leaves_or_goes_silent() {
        let mut c = Coordinator::default();
        // v4+: a new member is given its id first.
        let first = join(&mut c, "", &["range", "roundrobin"], 0).try_recv().unwrap();
        assert_eq!(first.error, ResponseError::MemberIdRequired.code());
        let a = first.member_id;
        let mut ja = join(&mut c, &a, &["range", "roundrobin"], 0);
        let b = join(&mut c, "", &["roundrobin", "range"], 10).try_recv().unwrap().member_id;
        let mut jb = join(&mut c, &b, &["roundrobin", "range"], 10);
        assert!(ja.try_recv().is_err(), "the first rebalance waits for more members");
        c.tick(INITIAL_REBALANCE_DELAY_MS + 1);
        let (ra, rb) = (ja.try_recv().unwrap(), jb.try_recv().unwrap());
        assert_eq!((ra.error, rb.error), (0, 0));
        assert_eq!(ra.generation, 1);
        assert_eq!(ra.leader, a, "the first member leads");
        assert_eq!(ra.members.len(), 2, "the leader sees every member");
        assert!(rb.members.is_empty());
        assert!(["range", "roundrobin"].contains(&ra.protocol_name.as_str()));
        // The leader's SyncGroup hands out the assignments.
        let (tb, mut sb) = oneshot::channel();
        c.sync("g", 1, &b, vec![], 20, tb);
        assert!(sb.try_recv().is_err(), "followers wait for the leader");
        let (ta, mut sa) = oneshot::channel();
        c.sync("g", 1, &a, vec![(a.clone(), Bytes::from("A")), (b.clone(), Bytes::from("B"))], 20, ta);
        assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from("A"));
        assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from("B"));
        assert_eq!(c.heartbeat("g", 1, &a, 30), 0);
        assert_eq!(c.heartbeat("g", 0, &a, 30), ResponseError::IllegalGeneration.code());
        assert_eq!(c.check_commit("g", 1, &b, 20), Ok(()));
        // b goes silent: its session expires, a is told to rejoin and does, alone.
        c.tick(30 + 5_000);
        assert_eq!(c.heartbeat("g", 1, &a, 5_030), 0);
        c.tick(10_031);
        assert_eq!(c.heartbeat("g", 1, &a, 10_032), ResponseError::RebalanceInProgress.code());
        assert_eq!(c.check_commit("g", 1, &a, 10_032), Ok(()), "the old generation commits before rejoining");
        let mut ja = join(&mut c, &a, &["range", "roundrobin"], 10_040);
        let ra = ja.try_recv().unwrap();
        assert_eq!((ra.error, ra.generation, ra.members.len()), (0, 2, 1));
        // Leaving empties the group.
        assert_eq!(c.leave("g", &[(a.clone(), None)], 10_050), vec![0]);
        assert!(c.is_empty("g"));
        assert_eq!(c.heartbeat("g", 2, &a, 10_060), ResponseError::UnknownMemberId.code());
    }

    #[test]
    fn a_new_coordinator_takes_the_group_over_from_its_stored_record() {
        let mut c = Coordinator::default();
        let a = join(&mut c, "", &["range"], 0).try_recv().unwrap().member_id;
        let mut ja = join(&mut c, &a, &["range"], 0);
        c.tick(INITIAL_REBALANCE_DELAY_MS + 1);
        assert_eq!(ja.try_recv().unwrap().generation, 1);
        let (ta, mut sa) = oneshot::channel();
        c.sync("g", 1, &a, vec![(a.clone(), Bytes::from("A"))], 400, ta);
        assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from("A"));
        let writes = c.take_writes(400);
        assert_eq!(writes.len(), 1, "a completed rebalance is written");
        assert!(c.take_writes(401).is_empty());
        // Another replica applies the record, then leads.
        let mut next = Coordinator::default();
        for (k, v) in &writes {
            next.apply(k, v.as_deref());
        }
        assert_eq!(next.heartbeat("g", 1, &a, 1_000), 0, "the member goes on, no rebalance");
        assert_eq!(next.check_commit("g", 1, &a, 1_000), Ok(()));
        assert_eq!(next.describe("g", 1_000).0, "Stable");
        let (ta, mut sa) = oneshot::channel();
        next.sync("g", 1, &a, vec![], 1_000, ta);
        assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from("A"), "its assignment is kept");
        // Silent past its session timeout, it is dropped there too; the empty group is written.
        next.tick(12_000);
        assert_eq!(next.take_writes(12_000).len(), 1);
        assert_eq!(next.heartbeat("g", 1, &a, 12_001), ResponseError::UnknownMemberId.code());
    }

    #[test]
    fn a_member_id_handed_out_is_forgotten_if_it_never_joins() {
        let mut c = Coordinator::default();
        let id = join(&mut c, "", &["range"], 0).try_recv().unwrap().member_id;
        c.tick(10_001);
        let late = join(&mut c, &id, &["range"], 10_002).try_recv().unwrap();
        assert_eq!(late.error, ResponseError::UnknownMemberId.code());
        c.tick(10_003);
        assert!(c.list(0).is_empty(), "nothing is kept for it");
    }

    #[test]
    fn offsets_round_trip_through_kafkas_record_layout() {
        let mut c = Coordinator::default();
        let committed = Committed { offset: 42, leader_epoch: 3, metadata: "m".into() };
        c.apply(&offset_key("g", "t", 1), Some(&offset_value(&committed, 5)));
        c.apply(&offset_key("g", "t", 2), Some(&offset_value(&committed, 5)));
        c.apply(&offset_key("g", "t", 2), None);
        let all = c.offsets("g", None);
        assert_eq!(all, vec![(("t".into(), 1), Some(committed))]);
        assert_eq!(c.offsets("g", Some(&[("t".into(), 2)])), vec![(("t".into(), 2), None)]);
        assert!(decode_offset(b"\x00\x02junk", None).is_none(), "group metadata records are skipped");
    }
}
