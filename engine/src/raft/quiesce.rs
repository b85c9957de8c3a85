//! Quiescence: an idle group goes quiet, so that thousands of idle partitions on a node cost
//! (almost) no CPU: no ticks, no heartbeats, no messages.
//!
//! ```text
//!  leader, at IDLE_HEARTBEATS heartbeats in a row with no proposal: every follower it can reach
//!          holds every entry, all committed ──► Heartbeat { quiesce } to each; the leader is quiet
//!  follower: its log ends where the leader's does, all committed ──► quiet
//!  quiet ──► awake: a proposal, a configuration change, a transfer, a campaign; any message
//!          but those that keep it quiet (below); a peer lost or back (the driver's liveness)
//! ```
//! A quiet follower keeps trusting its leader (its election timer stands still): what tells it
//! that the leader is gone is the driver's node-to-node liveness, one heartbeat per pair of
//! nodes for all their groups ([`Raft::peer_lost`], then the usual short wait and election), so
//! leadership is still found lost within an election timeout. A follower that woke on its own
//! (a quiescing heartbeat lost on the way) stands after its timeout; its pre-vote wakes the
//! leader, whose next heartbeat quiets both again.
//!
//! Only liveness depends on this: votes, terms and commits follow the same rules, awake or not.

use super::{Body, Message, Mode, NodeId, Raft, RaftLog, Role};

/// Heartbeats in a row a leader must find nothing to do (and no proposal between them) before it
/// goes quiet: a group under load is caught up at some heartbeats too, and going quiet there
/// would give back its buffers only to take them again at once.
pub(super) const IDLE_HEARTBEATS: u32 = 3;

impl<L: RaftLog> Raft<L> {
    /// True while the group is quiet: ticks do nothing, and no message is due.
    pub fn quiesced(&self) -> bool {
        self.quiesced
    }

    /// Wakes a quiet group: it ticks again from a fresh election timeout (a follower) or a
    /// fresh check-quorum round (a leader, which heartbeats at its next tick: its followers
    /// learn it is awake, or all go quiet again if nothing is left to do).
    pub fn wake(&mut self) {
        if self.quiesced {
            self.wake_quiet();
            self.check_invariants();
        }
    }

    fn wake_quiet(&mut self) {
        self.quiesced = false;
        self.elapsed = 0;
        self.heartbeat_elapsed = self.config.heartbeat_ticks.saturating_sub(1);
        self.idle_heartbeats = 0;
        if self.role == Role::Leader {
            for p in self.progress.values_mut() {
                p.recent = false;
                p.silent_ticks = 0;
            }
        }
    }

    /// The driver hears from peer `id` again after [`Raft::peer_lost`]: a quiet group it is a
    /// voter of wakes, and a leader probes it at its next heartbeat (whatever was in flight to
    /// it meanwhile was lost), brings it up to date, then all go quiet again.
    pub fn peer_back(&mut self, id: NodeId) {
        if !self.unreachable.remove(&id) || !self.voters.contains(&id) || id == self.config.id {
            return;
        }
        self.wake();
        if let Some(p) = self.progress.get_mut(&id) {
            p.mode = Mode::Probe;
            p.next_end = super::replication::probe_point(p.match_end, self.log.start(), self.log.last().0);
            p.inflight = 0;
        }
        self.check_invariants();
    }

    /// Counts this heartbeat toward going quiet if the leader could ([`IDLE_HEARTBEATS`] in a
    /// row), else starts over; returns the count.
    pub(super) fn idle_heartbeats(&mut self) -> u32 {
        self.idle_heartbeats = if self.can_quiesce() { self.idle_heartbeats + 1 } else { 0 };
        self.idle_heartbeats
    }

    /// Whether a leader may go quiet: it leads with everything committed and durable, no
    /// transfer or configuration change under way, and each follower it can reach (a majority
    /// with itself) holds every entry with nothing in flight.
    pub(super) fn can_quiesce(&self) -> bool {
        let last = self.log.last().0;
        let settled = self.config.quiesce
            && self.role == Role::Leader
            && self.is_voter()
            && self.transfer_to.is_none()
            && self.committed == last
            && self.committed >= self.term_start
            && self.log.durable_end() >= last
            && self.changes.last().is_none_or(|c| c.end <= self.committed);
        if !settled {
            return false;
        }
        let mut reachable = 1;
        for (id, p) in &self.progress {
            if self.unreachable.contains(id) {
                continue;
            }
            if p.match_end != last || p.inflight > 0 || p.mode != Mode::Replicate {
                return false;
            }
            reachable += 1;
        }
        reachable >= super::quorum(self.voters.len())
    }

    /// The leader goes quiet: each follower it can reach is told the commit point, which is
    /// the end of the log, and to go quiet too.
    pub(super) fn quiesce_followers(&mut self) {
        let last = self.log.last().0;
        for id in self.others() {
            if self.unreachable.contains(&id) {
                continue;
            }
            if let Some(p) = self.progress.get_mut(&id) {
                p.told_commit = self.committed;
                p.match_at_heartbeat = p.match_end;
                p.stalled_heartbeats = 0;
            }
            self.send(id, Body::Heartbeat { commit: self.committed, sent_end: last, quiesce: true });
        }
        self.quiesced = true;
    }

    /// A follower told by its leader to go quiet does if its log ends where the leader's does
    /// and all of it is committed (else its reply tells the leader, which wakes).
    pub(super) fn follow_into_quiet(&mut self, commit: i64, sent_end: i64) {
        if self.config.quiesce
            && self.role == Role::Follower
            && self.log.last().0 == sent_end
            && self.committed == commit
        {
            self.quiesced = true;
        }
    }

    /// Whether a message leaves a quiet group quiet: for a leader, a heartbeat reply of a
    /// follower holding every entry; for a follower, its leader's quiescing heartbeat again,
    /// the (pre-)votes of others, which it refuses while it trusts its leader, and stale
    /// replies. Its own leader standing for election means that leader gave up: it wakes.
    pub(super) fn keeps_quiet(&self, msg: &Message) -> bool {
        let current = msg.term == self.hard.term;
        let from_leader = self.leader == Some(msg.from);
        match (&msg.body, self.role) {
            (Body::HeartbeatReply { end, .. }, Role::Leader) => current && *end >= self.log.last().0,
            (_, Role::Leader) => false,
            (Body::Heartbeat { quiesce: true, .. }, _) => current && from_leader,
            (Body::PreVote { .. } | Body::Vote { transfer: false, .. }, _) => {
                !from_leader || msg.term <= self.hard.term
            }
            (Body::PreVoteReply { .. } | Body::VoteReply { .. } | Body::AppendReply { .. }, _) => true,
            (Body::HeartbeatReply { .. } | Body::Forward { .. }, _) => true,
            _ => false,
        }
    }
}
