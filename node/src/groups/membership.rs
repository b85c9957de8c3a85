//! A group's members: the generation they belong to, their ids (a static member keeps its place
//! under its instance id), and the JoinGroup, Heartbeat and LeaveGroup that change or keep them.

use super::records::{StoredGroup, StoredMember};
use super::{code, Coordinator, JoinOutcome, JoinRequest, SyncOutcome};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use tokio::sync::oneshot;

/// Session timeouts a member may ask for (Kafka's group.min/max.session.timeout.ms).
pub const MIN_SESSION_TIMEOUT_MS: i32 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;

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

pub(super) struct Member {
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout_ms: i64,
    pub(super) rebalance_timeout_ms: i64,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) last_heard_ms: i64,
    pub(super) join: Option<oneshot::Sender<JoinOutcome>>,
    pub(super) sync: Option<oneshot::Sender<SyncOutcome>>,
}

pub struct Group {
    pub state: State,
    pub(super) generation: i32,
    pub(super) protocol_type: String,
    pub(super) protocol: String,
    pub(super) leader: String,
    pub(super) members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not joined yet.
    pub(super) pending: Vec<(String, i64)>,
    /// When the rebalance in progress completes without the members still missing.
    pub(super) rebalance_deadline_ms: i64,
    /// A new group's first rebalance waits for more members until then.
    pub(super) initial_deadline_ms: i64,
    /// A rebalance completed or the group emptied since it was last written.
    pub(super) persist: bool,
    /// The generation whose assignment is being stored: the members' SyncGroup answers wait
    /// until its record commits (Kafka's storeGroup callback), so that a new coordinator never
    /// hands out a generation older than one a member was told.
    pub(super) storing: Option<i32>,
}

impl Group {
    pub(super) fn new() -> Self {
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
            storing: None,
        }
    }

    /// The group a new coordinator takes over: the last generation, its members given a
    /// session timeout from `now_ms` to be heard from.
    pub(super) fn restore(stored: &StoredGroup, now_ms: i64) -> Self {
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

    pub(super) fn stored(&self) -> StoredGroup {
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

    pub(super) fn remove_member(&mut self, id: &str, now_ms: i64) {
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

    /// A request's member is this generation's, and not a static member's old incarnation:
    /// FENCED_INSTANCE_ID if its instance id now belongs to another member id (Kafka's
    /// isStaticMemberFenced), else UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION.
    pub(super) fn check_member(
        &self,
        (member_id, instance_id): (&str, Option<&str>),
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            let holder = self.members.iter().find(|(_, m)| m.instance_id.as_deref() == Some(instance));
            if holder.is_some_and(|(id, _)| id != member_id) {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }
}

pub(super) fn metadata_for(m: &Member, protocol: &str) -> Bytes {
    m.protocols.iter().find(|(n, _)| n == protocol).map(|(_, b)| b.clone()).unwrap_or_default()
}

impl Group {
    /// The member id a join goes on under: its own, a new one (`fresh_id`) for a member
    /// without one, or a static member's new one; Err (the error and the id to answer with)
    /// when the join is refused.
    fn member_id_for(
        &mut self,
        r: &JoinRequest,
        now_ms: i64,
        fresh_id: uuid::Uuid,
    ) -> Result<String, (ResponseError, String)> {
        // A static member (group.instance.id) keeps its place under a new member id.
        let mut member_id = r.member_id.clone();
        if let Some(instance) = &r.instance_id {
            let existing =
                self.members.iter().find(|(_, m)| m.instance_id.as_ref() == Some(instance)).map(|(id, _)| id.clone());
            match existing {
                Some(old) if member_id.is_empty() || member_id == old => {
                    if let Some(mut m) = self.members.remove(&old) {
                        if let Some(join) = m.join.take() {
                            let _ = join.send(JoinOutcome::error(ResponseError::FencedInstanceId, &old));
                        }
                        member_id = format!("{instance}-{}", fresh_id);
                        if self.leader == old {
                            self.leader = member_id.clone();
                        }
                        self.members.insert(member_id.clone(), m);
                    }
                }
                Some(_) => {
                    return Err((ResponseError::FencedInstanceId, member_id));
                }
                None if member_id.is_empty() => member_id = format!("{instance}-{}", fresh_id),
                None => {}
            }
        } else if member_id.is_empty() {
            member_id = format!("{}-{}", r.client_id, fresh_id);
            if r.require_known_member_id {
                // Forgotten if it does not come back within its session timeout.
                self.pending.push((member_id.clone(), now_ms + i64::from(r.session_timeout_ms)));
                return Err((ResponseError::MemberIdRequired, member_id));
            }
        }
        let known = self.members.contains_key(&member_id) || r.instance_id.is_some();
        if !known {
            match self.pending.iter().position(|(p, _)| *p == member_id) {
                Some(i) => {
                    self.pending.swap_remove(i);
                }
                None if !r.member_id.is_empty() => {
                    return Err((ResponseError::UnknownMemberId, member_id));
                }
                None => {}
            }
        }
        Ok(member_id)
    }
}

impl Coordinator {
    /// A member joins (or rejoins) `group`; `fresh_id` makes its member id if it needs a new
    /// one (the environment's randomness: the coordinator draws none itself).
    pub fn join(
        &mut self,
        group: &str,
        r: JoinRequest,
        now_ms: i64,
        fresh_id: uuid::Uuid,
        reply: oneshot::Sender<JoinOutcome>,
    ) {
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
        let member_id = match g.member_id_for(&r, now_ms, fresh_id) {
            Ok(member_id) => member_id,
            Err((error, member_id)) => {
                let _ = reply.send(JoinOutcome::error(error, &member_id));
                return;
            }
        };
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
        // A static member restarted: the same instance id under a new member id.
        let static_restart = r.instance_id.is_some() && member_id != r.member_id;
        match g.state {
            State::Empty | State::CompletingRebalance => g.prepare_rebalance(now_ms),
            // A new member, a changed subscription, or the leader rejoining (it must see every
            // member's metadata to assign again): a rebalance. A static member coming back
            // under a new id is not new, and not even as the leader (Kafka's
            // updateStaticMemberAndRebalance: the group's protocol stays, so no rebalance).
            State::Stable
                if changed
                    || (member_id != r.member_id && r.instance_id.is_none())
                    || (member_id == g.leader && !static_restart) =>
            {
                g.prepare_rebalance(now_ms)
            }
            State::Stable => {
                // A known follower rejoining with nothing new, or a static member restarted:
                // it gets the current generation, and its assignment with its SyncGroup (the
                // group being Stable, what a restarted leader assigns is not taken). The
                // leader is given every member, as at a rebalance.
                let members = if member_id == g.leader { g.member_metadata() } else { Vec::new() };
                let outcome = g.joined(&member_id, members);
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

    /// `member`: the member id and the static member's instance id, if any.
    pub fn heartbeat(&mut self, group: &str, generation: i32, member: (&str, Option<&str>), now_ms: i64) -> i16 {
        self.restore(group, now_ms);
        let member_id = member.0;
        let Some(g) = self.groups.get_mut(group) else { return code(ResponseError::UnknownMemberId) };
        if let Err(e) = g.check_member(member, generation) {
            // A member of the generation being formed hears of the rebalance, not an error.
            if e != ResponseError::FencedInstanceId
                && g.state == State::PreparingRebalance
                && g.members.contains_key(member_id)
            {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::tests::join;
    use crate::groups::INITIAL_REBALANCE_DELAY_MS;

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
        c.sync("g", 1, (&b, None), vec![], 20, tb);
        assert!(sb.try_recv().is_err(), "followers wait for the leader");
        let (ta, mut sa) = oneshot::channel();
        c.sync("g", 1, (&a, None), vec![(a.clone(), Bytes::from("A")), (b.clone(), Bytes::from("B"))], 20, ta);
        assert!(sa.try_recv().is_err(), "answered once the group's record commits");
        let writes = c.take_writes(20);
        assert_eq!(writes.len(), 1, "the assignment is written");
        for (k, v) in &writes {
            c.apply(k, v.as_deref());
        }
        assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from("A"));
        assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from("B"));
        assert_eq!(c.heartbeat("g", 1, (&a, None), 30), 0);
        assert_eq!(c.heartbeat("g", 0, (&a, None), 30), ResponseError::IllegalGeneration.code());
        assert_eq!(c.check_commit("g", 1, (&b, None), 20), Ok(()));
        // b goes silent: its session expires, a is told to rejoin and does, alone.
        c.tick(30 + 5_000);
        assert_eq!(c.heartbeat("g", 1, (&a, None), 5_030), 0);
        c.tick(10_031);
        assert_eq!(c.heartbeat("g", 1, (&a, None), 10_032), ResponseError::RebalanceInProgress.code());
        assert_eq!(c.check_commit("g", 1, (&a, None), 10_032), Ok(()), "the old generation commits before rejoining");
        let mut ja = join(&mut c, &a, &["range", "roundrobin"], 10_040);
        let ra = ja.try_recv().unwrap();
        assert_eq!((ra.error, ra.generation, ra.members.len()), (0, 2, 1));
        // Leaving empties the group.
        assert_eq!(c.leave("g", &[(a.clone(), None)], 10_050), vec![0]);
        assert!(c.is_empty("g"));
        assert_eq!(c.heartbeat("g", 2, (&a, None), 10_060), ResponseError::UnknownMemberId.code());
    }
}
