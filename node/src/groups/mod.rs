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
//!
//! Here: the coordinator, the records it applies and writes, and what ListGroups and
//! DescribeGroups see. A group's members and their JoinGroup, Heartbeat and LeaveGroup are in
//! `membership`, the rebalance and SyncGroup in `rebalance`, the timeouts in `timers`,
//! committed offsets in `offsets`, and the records' encoding in `records`.

mod membership;
mod offsets;
mod rebalance;
mod records;
mod timers;

pub use membership::{Group, State};
pub use membership::{MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS};
pub use offsets::{Committed, OffsetsOf};
pub use records::{
    decode_group, decode_offset, group_key, group_value, offset_key, offset_value, StoredGroup, StoredMember,
};
pub use timers::INITIAL_REBALANCE_DELAY_MS;

use braid_engine::hash::HashMap;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use membership::metadata_for;
pub(crate) use records::{get_string, put_string};
use std::collections::BTreeMap;

/// The internal topic holding committed offsets, and its partitions (Kafka's
/// `offsets.topic.num.partitions` defaults to 50; fewer raft groups suit small clusters).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
pub const OFFSETS_PARTITIONS: i32 = 16;

/// The offsets partition a group's coordinator is.
pub fn partition_for(group: &str) -> i32 {
    (crc32c::crc32c(group.as_bytes()) % OFFSETS_PARTITIONS as u32) as i32
}

fn code(e: ResponseError) -> i16 {
    e.code()
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
/// Records to append: (key, value; None deletes).
pub type Records = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The coordinator of one offsets partition on this node.
#[derive(Default)]
pub struct Coordinator {
    /// Groups, on the partition's leader (emptied when leadership is lost).
    groups: HashMap<String, Group>,
    /// Committed offsets by group, applied from the partition's committed records.
    offsets: HashMap<String, BTreeMap<(String, i32), Committed>>,
    /// Groups as last stored, applied from the partition's committed records.
    stored: HashMap<String, StoredGroup>,
    /// Offset records of open transactions, by producer id (applied when they commit).
    txn_offsets: HashMap<i64, Records>,
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
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.stored_committed(stored.generation);
                    }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    // `join` is shared with the tests of membership and timers.
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

    pub(super) fn join(
        c: &mut Coordinator,
        member_id: &str,
        protocols: &[&str],
        now: i64,
    ) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        c.join("g", join_request(member_id, protocols), now, uuid::Uuid::new_v4(), tx);
        rx
    }

    #[test]
    fn a_new_coordinator_takes_the_group_over_from_its_stored_record() {
        let mut c = Coordinator::default();
        let a = join(&mut c, "", &["range"], 0).try_recv().unwrap().member_id;
        let mut ja = join(&mut c, &a, &["range"], 0);
        c.tick(INITIAL_REBALANCE_DELAY_MS + 1);
        assert_eq!(ja.try_recv().unwrap().generation, 1);
        let (ta, mut sa) = oneshot::channel();
        c.sync("g", 1, (&a, None), vec![(a.clone(), Bytes::from("A"))], 400, ta);
        let writes = c.take_writes(400);
        assert_eq!(writes.len(), 1, "a completed rebalance is written");
        assert!(c.take_writes(401).is_empty());
        assert!(sa.try_recv().is_err(), "SyncGroup waits for the record to commit");
        for (k, v) in &writes {
            c.apply(k, v.as_deref());
        }
        assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from("A"));
        // Another replica applies the record, then leads.
        let mut next = Coordinator::default();
        for (k, v) in &writes {
            next.apply(k, v.as_deref());
        }
        assert_eq!(next.heartbeat("g", 1, (&a, None), 1_000), 0, "the member goes on, no rebalance");
        assert_eq!(next.check_commit("g", 1, (&a, None), 1_000), Ok(()));
        assert_eq!(next.describe("g", 1_000).0, "Stable");
        let (ta, mut sa) = oneshot::channel();
        next.sync("g", 1, (&a, None), vec![], 1_000, ta);
        assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from("A"), "its assignment is kept");
        // Silent past its session timeout, it is dropped there too; the empty group is written.
        next.tick(12_000);
        assert_eq!(next.take_writes(12_000).len(), 1);
        assert_eq!(next.heartbeat("g", 1, (&a, None), 12_001), ResponseError::UnknownMemberId.code());
    }
}
