//! Elections: ticks and timeouts, check-quorum, pre-vote and vote (both sides), becoming
//! follower, candidate or leader, leadership transfer, and the driver's news of a lost peer
//! (see the state diagram in the module doc of `mod.rs`).

use super::{quorum, Body, HardState, Message, NodeId, Progress, Raft, RaftLog, Role, Term};
use std::collections::BTreeSet;

impl<L: RaftLog> Raft<L> {
    fn reset_timeout(&mut self) {
        self.elapsed = 0;
        self.timeout = self.config.election_ticks + self.rng.below(u64::from(self.config.election_ticks)) as u32;
    }

    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.hard.term {
            self.hard = HardState { term, voted_for: None, ..self.hard };
            self.hard_dirty = true;
        }
        self.role = Role::Follower;
        self.leader = leader;
        if leader.is_some() && !self.hard.knew_leader {
            self.hard.knew_leader = true;
            self.hard_dirty = true;
        }
        self.votes.clear();
        self.progress.clear();
        self.transfer_to = None;
        self.reset_timeout();
    }

    /// One unit of time passes (nothing happens in a quiet group).
    pub fn tick(&mut self) {
        if self.quiesced {
            return;
        }
        self.tick_awake();
        self.check_invariants();
    }

    fn tick_awake(&mut self) {
        self.elapsed += 1;
        // What no follower will be sent again soon: below every follower's match on a leader,
        // below the commit point elsewhere.
        let sent_to_all = match self.role {
            Role::Leader => self.progress.values().map(|p| p.match_end).min().unwrap_or(self.committed),
            _ => self.committed,
        };
        self.log.release_before(sent_to_all.min(self.committed));
        match self.role {
            Role::Leader => {
                for p in self.progress.values_mut() {
                    p.silent_ticks = p.silent_ticks.saturating_add(1);
                }
                self.heartbeat_elapsed += 1;
                if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
                    self.heartbeat_elapsed = 0;
                    self.broadcast_heartbeat();
                }
                if crate::buggify!(2) {
                    // A leadership handed over for no reason (simulation only).
                    if let Some(to) = self.others().into_iter().next() {
                        self.transfer_leadership(to);
                    }
                }
                if self.elapsed >= self.config.election_ticks {
                    self.elapsed = 0;
                    self.transfer_to = None;
                    self.check_quorum();
                }
            }
            _ => {
                // A node outside the configuration follows, but never stands.
                // An election timeout may also end early (simulation only). A rejoining
                // node asks too but never stands (`rejoin.rs`): its asking wakes quiet
                // followers still trusting it as their leader from before its restart.
                if (self.elapsed >= self.timeout || crate::buggify!(5)) && self.is_voter() {
                    self.start_pre_vote();
                }
            }
        }
    }

    fn check_quorum(&mut self) {
        let heard = 1 + self.progress.values().filter(|p| p.recent).count();
        for p in self.progress.values_mut() {
            p.recent = false;
        }
        let heard = if self.is_voter() { heard } else { heard - 1 };
        if heard < quorum(self.voters.len()) {
            let term = self.hard.term;
            self.become_follower(term, None);
        }
    }

    fn start_pre_vote(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes = BTreeSet::from([self.config.id]);
        self.reset_timeout();
        let (last_end, last_term) = self.last_position();
        let (term, knew_leader) = (self.hard.term + 1, self.hard.knew_leader);
        for to in self.others() {
            let body = Body::PreVote { last_end, last_term, knew_leader };
            self.outbox.push(Message { from: self.config.id, to, term, body });
        }
        self.maybe_win_pre_vote();
    }

    /// Votes (or pre-votes) from a majority of the voters in effect.
    fn won(&self) -> bool {
        self.votes.iter().filter(|v| self.voters.contains(v)).count() >= quorum(self.voters.len())
    }

    fn maybe_win_pre_vote(&mut self) {
        if self.role == Role::PreCandidate && self.won() && self.may_vote() {
            self.campaign_now();
        }
    }

    pub(super) fn campaign_now(&mut self) {
        self.campaign_with(false);
    }

    fn campaign_with(&mut self, transfer: bool) {
        self.role = Role::Candidate;
        self.hard = HardState { term: self.hard.term + 1, voted_for: Some(self.config.id), ..self.hard };
        self.hard_dirty = true;
        self.leader = None;
        self.votes = BTreeSet::from([self.config.id]);
        self.reset_timeout();
        let (last_end, last_term) = self.last_position();
        for to in self.others() {
            self.send(to, Body::Vote { last_end, last_term, knew_leader: self.hard.knew_leader, transfer });
        }
        self.maybe_win_vote();
    }

    fn maybe_win_vote(&mut self) {
        if self.role == Role::Candidate && self.won() {
            self.become_leader();
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.hard.knew_leader = true;
        self.hard_dirty = true;
        // Elected: what it holds is what the group holds (`rejoin.rs`).
        self.fresh = false;
        self.leader = Some(self.config.id);
        self.elapsed = 0;
        self.heartbeat_elapsed = 0;
        let (last_end, _) = self.log.last();
        self.progress = self.others().into_iter().map(|id| (id, Progress::probing(last_end))).collect();
        // An entry of the new term, so entries of earlier terms can commit under it (an empty
        // log has none: everything before its start is committed).
        self.term_start = last_end;
        if last_end > self.log.start() {
            self.check_append_term(self.hard.term);
            let marker = self.log.leader_marker(self.hard.term);
            match self.log.append_new(&marker, self.hard.term) {
                Ok(end) => self.term_start = end,
                Err(_) => {
                    let term = self.hard.term;
                    self.become_follower(term, None);
                    return;
                }
            }
        }
        for id in self.others() {
            self.send_append(id);
        }
        self.maybe_commit();
    }

    /// Waits `ticks` longer than usual before this node's next election (a new group's other
    /// replicas, so that its preferred leader, retrying, wins: leaders spread as placed).
    pub fn defer_election(&mut self, ticks: u32) {
        self.timeout = self.timeout.saturating_add(ticks);
        self.check_invariants();
    }

    /// Hands leadership to voter `to` (leader only): once `to` holds every entry, it is told to
    /// stand at once, and its votes are granted despite leases. Abandoned if it has not
    /// happened within an election timeout. Returns false if it cannot start.
    pub fn transfer_leadership(&mut self, to: NodeId) -> bool {
        if self.role != Role::Leader || to == self.config.id || !self.voters.contains(&to) {
            return false;
        }
        self.wake();
        self.transfer_to = Some(to);
        self.maybe_send_timeout_now();
        self.check_invariants();
        true
    }

    pub(super) fn maybe_send_timeout_now(&mut self) {
        let Some(to) = self.transfer_to else { return };
        let last = self.log.last().0;
        if self.progress.get(&to).is_some_and(|p| p.match_end == last) {
            self.transfer_to = None;
            self.send(to, Body::TimeoutNow);
        }
    }

    /// The driver saw the connection from `id` close (a process that dies closes its sockets).
    /// A follower whose leader that is stops trusting it: its lease ends, so it grants the
    /// others' pre-votes, and it stands after a short random wait (under half an election
    /// timeout, so the followers that saw it too seldom split the vote) instead of a whole
    /// election timeout. Only liveness rests on this: a leader a majority still hears refuses
    /// the pre-votes, and its next heartbeat brings the follower back.
    ///
    /// The peer counts as unreachable until [`Raft::peer_back`]: a quiet group whose leader or
    /// voter it is wakes, and a leader goes quiet again without waiting for it.
    pub fn peer_lost(&mut self, id: NodeId) {
        self.peer_lost_inner(id);
        self.check_invariants();
    }

    fn peer_lost_inner(&mut self, id: NodeId) {
        self.unreachable.insert(id);
        if self.voters.contains(&id) && (self.role == Role::Leader || self.leader == Some(id)) {
            self.wake();
        }
        if self.role != Role::Follower || self.leader != Some(id) {
            return;
        }
        self.leader = None;
        let wait = 1 + self.rng.below(u64::from(self.config.election_ticks / 2).max(1)) as u32;
        self.timeout = self.elapsed.saturating_add(wait).min(self.timeout);
    }

    /// Starts an election now instead of at the next timeout (a new group's preferred leader).
    pub fn campaign(&mut self) {
        if self.role != Role::Leader && self.is_voter() && self.may_vote() {
            self.wake();
            self.start_pre_vote();
            self.check_invariants();
        }
    }

    /// The log's last entry position and term. An empty log that was reset knows the term at
    /// its start from the change recorded with the reset (a log knows no term at its start).
    fn last_position(&self) -> (i64, Term) {
        let (end, term) = self.log.last();
        match self.reset_term().filter(|_| end == self.log.start()) {
            Some(reset) => (end, reset.max(term)),
            None => (end, term),
        }
    }

    /// The term a reset recorded for this log's start (see [`Body::Reset`]), if one did.
    pub(super) fn reset_term(&self) -> Option<Term> {
        let start = self.log.start();
        self.changes.iter().find(|c| c.end == start).map(|c| c.term)
    }

    fn up_to_date(&self, last_end: i64, last_term: Term) -> bool {
        let (our_end, our_term) = self.last_position();
        last_term > our_term || last_term == our_term && last_end >= our_end
    }

    pub(super) fn in_lease(&self) -> bool {
        self.leader.is_some() && self.elapsed < self.config.election_ticks
    }

    /// A pre-vote request: would this node vote for `msg.from` at `msg.term`? Answered without
    /// changing this node's term or vote.
    pub(super) fn handle_pre_vote(&mut self, msg: &Message, (last_end, last_term): (i64, Term), knew_leader: bool) {
        if self.leader == Some(msg.from) && self.role == Role::Follower && msg.term > self.hard.term {
            // Our leader stands for election: it no longer leads (it lost its
            // quorum), so its lease is over here too.
            self.leader = None;
        }
        self.saw_candidate(last_end, knew_leader);
        let granted =
            msg.term > self.hard.term && !self.in_lease() && self.may_vote() && self.up_to_date(last_end, last_term);
        // Granted: echo the proposed term. Refused: our term, so a requester behind us
        // learns it.
        let term = if granted { msg.term } else { self.hard.term };
        // Two pre-candidates of the same round would both win and split the real vote
        // (followers told at once that their leader is gone stand within the same few
        // ticks): the lower id stands down for the higher.
        if granted
            && self.role == Role::PreCandidate
            && msg.term == self.hard.term + 1
            && msg.from > self.config.id
            && self.voters.contains(&msg.from)
        {
            self.role = Role::Follower;
            self.votes.clear();
        }
        let body = Body::PreVoteReply { granted, knew_leader: self.hard.knew_leader };
        self.outbox.push(Message { from: self.config.id, to: msg.from, term, body });
    }

    /// A reply to this node's pre-vote request.
    pub(super) fn handle_pre_vote_reply(&mut self, msg: &Message, granted: bool, knew_leader: bool) {
        if !self.counts_reply(knew_leader) {
            return;
        }
        if self.role == Role::PreCandidate && msg.term == self.hard.term + 1 && granted {
            self.votes.insert(msg.from);
            self.maybe_win_pre_vote();
        } else if !granted && msg.term > self.hard.term {
            self.become_follower(msg.term, None);
        }
    }

    /// A vote request, once the term rules of [`Raft::step`] are applied (so in this node's term).
    pub(super) fn handle_vote(&mut self, from: NodeId, (last_end, last_term): (i64, Term), knew_leader: bool) {
        self.saw_candidate(last_end, knew_leader);
        let can_vote = self.hard.voted_for.is_none_or(|v| v == from) && self.leader.is_none() && self.may_vote();
        let granted = can_vote && self.up_to_date(last_end, last_term);
        if granted {
            self.hard.voted_for = Some(from);
            self.hard_dirty = true;
            self.reset_timeout();
        }
        self.send(from, Body::VoteReply { granted, knew_leader: self.hard.knew_leader });
    }

    /// A reply to this node's vote request, in its term.
    pub(super) fn handle_vote_reply(&mut self, from: NodeId, granted: bool, knew_leader: bool) {
        if !self.counts_reply(knew_leader) {
            return;
        }
        if self.role == Role::Candidate && granted {
            self.votes.insert(from);
            self.maybe_win_vote();
        }
    }

    /// The leader hands leadership to this node (see [`Raft::transfer_leadership`]).
    pub(super) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.leader == Some(from) && self.is_voter() && self.may_vote() && self.role == Role::Follower {
            self.campaign_with(true);
        }
    }
}
