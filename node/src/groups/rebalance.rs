//! A rebalance: the join phase a group goes through when its membership changes, the protocol
//! its members vote for, and the SyncGroup by which the leader hands out the assignments.

use super::membership::{metadata_for, Group, State};
use super::timers::INITIAL_REBALANCE_DELAY_MS;
use super::{Coordinator, JoinOutcome, SyncOutcome};
use braid_engine::hash::HashMap;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

impl Group {
    pub(super) fn prepare_rebalance(&mut self, now_ms: i64) {
        let timeout = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
        self.initial_deadline_ms = if self.state == State::Empty { now_ms + INITIAL_REBALANCE_DELAY_MS } else { 0 };
        self.storing = None;
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

    /// A record of this group committed: if it is the generation being stored, the group is
    /// Stable and the members waiting in SyncGroup get their assignments.
    pub(super) fn stored_committed(&mut self, generation: i32) {
        if self.storing != Some(generation) || self.state != State::CompletingRebalance {
            return;
        }
        self.storing = None;
        self.state = State::Stable;
        let (protocol_type, protocol) = (self.protocol_type.clone(), self.protocol.clone());
        for m in self.members.values_mut() {
            if let Some(sync) = m.sync.take() {
                let answer = SyncOutcome {
                    error: 0,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol.clone(),
                    assignment: m.assignment.clone(),
                };
                let _ = sync.send(answer);
            }
        }
    }

    /// Completes the join phase if every member has rejoined (or, `forced`, at the deadline:
    /// members that did not rejoin are dropped).
    pub(super) fn maybe_complete_join(&mut self, now_ms: i64, forced: bool) {
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
        let everyone = self.member_metadata();
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
    /// Every member's id, instance id and metadata for the group's protocol: what the leader
    /// is given to assign.
    pub(super) fn member_metadata(&self) -> Vec<(String, Option<String>, Bytes)> {
        self.members
            .iter()
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), metadata_for(m, &self.protocol)))
            .collect()
    }

    pub(super) fn joined(&self, member_id: &str, members: Vec<(String, Option<String>, Bytes)>) -> JoinOutcome {
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
        let mut votes: HashMap<&String, usize> = HashMap::default();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        candidates.iter().max_by_key(|c| votes.get(*c).copied().unwrap_or(0)).map(|c| (*c).clone()).unwrap_or_default()
    }
}

impl Coordinator {
    pub fn sync(
        &mut self,
        group: &str,
        generation: i32,
        member: (&str, Option<&str>),
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
        reply: oneshot::Sender<SyncOutcome>,
    ) {
        self.restore(group, now_ms);
        let Some(g) = self.groups.get_mut(group) else {
            let _ = reply.send(SyncOutcome::error(ResponseError::UnknownMemberId));
            return;
        };
        if let Err(e) = g.check_member(member, generation) {
            let _ = reply.send(SyncOutcome::error(e));
            return;
        }
        let member_id = member.0;
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
                if member_id == g.leader && g.storing.is_none() {
                    for m in g.members.values_mut() {
                        m.assignment = Bytes::new();
                    }
                    for (id, assignment) in assignments {
                        if let Some(m) = g.members.get_mut(&id) {
                            m.assignment = assignment;
                        }
                    }
                    // Written with the next writes; the members are answered, and the group
                    // is Stable, once the record commits (`Coordinator::apply`).
                    g.persist = true;
                    g.storing = Some(g.generation);
                }
            }
        }
    }
}
