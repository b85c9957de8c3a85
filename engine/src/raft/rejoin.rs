//! A replica that lost what it held (its disk replaced: an empty data directory under the same
//! node id) must neither vote nor stand until it holds again what the group had committed: its
//! old votes and acknowledgements are gone with its disk, and an empty log grants any
//! candidate a vote (one missing entries committed with this replica's lost acknowledgement
//! could win with it).
//!
//! A replica is *fresh* when it starts with no hard state ever stored and an empty log on a node
//! whose data directory may have been replaced (`Config::replaced_disk`: the node started
//! empty, or found out its disk was replaced): a new group, or one whose entries were lost.
//! It learns which from the others: a vote request from a
//! candidate whose log is not empty, or a leader that has committed something, says the group
//! has a history; so does a candidate that has heard from a leader (its log may be empty: it
//! was away while the first entries committed). It then *rejoins*: it votes for no one and never stands (persisted in its
//! hard state, so a restart midway keeps it so) until its commit point reaches the leader's as
//! of the first leader message it got, then it is an ordinary voter again. A new group's
//! replicas see empty logs and nothing committed, and vote as ever.
//!
//! A leader, for its part, stops counting what a follower acknowledged before it lost it: a
//! follower that reports a log shorter than its match point gets that point lowered.
//!
//! The one case this cannot tell from a new group: every replica that holds the committed
//! entries is down, and the only others are this one and replicas that never heard a leader.

use super::{Raft, RaftLog};

impl<L: RaftLog> Raft<L> {
    /// True while this replica rejoins (see the module's comment): it votes for no one and never
    /// stands.
    pub fn rejoining(&self) -> bool {
        self.hard.rejoining
    }

    /// True once this replica, started fresh, found its group had a history (it rejoined, or
    /// rejoins): its node's data directory was replaced. Stays true for the process.
    pub fn found_history(&self) -> bool {
        self.found_history
    }

    /// True if this replica may vote and stand.
    pub(super) fn may_vote(&self) -> bool {
        !self.hard.rejoining
    }

    /// A vote or pre-vote request from a candidate whose log ends at `last_end`, which has or
    /// has not heard from a leader.
    pub(super) fn saw_candidate(&mut self, last_end: i64, knew_leader: bool) {
        if self.fresh && (last_end > 0 || knew_leader) {
            self.start_rejoining(None);
        }
    }

    /// A reply to this replica's (pre-)vote request from a voter that has or has not heard from
    /// a leader: false if it must not count. A fresh replica counts only voters that never
    /// heard one (a new group's); one that did says the group has a history, and this replica
    /// rejoins instead of standing.
    pub(super) fn counts_reply(&mut self, knew_leader: bool) -> bool {
        if self.fresh && knew_leader {
            self.start_rejoining(None);
            self.role = super::Role::Follower;
            self.votes.clear();
            return false;
        }
        true
    }

    /// A message from the leader, whose commit point is `commit` (None: a reset, which says
    /// the group has a history but not how far it committed: the next message does).
    pub(super) fn heard_leader(&mut self, commit: Option<i64>) {
        if std::mem::take(&mut self.fresh) {
            match commit {
                Some(0) => {}
                Some(commit) => self.start_rejoining(Some(commit)),
                None => self.start_rejoining(None),
            }
        } else if self.hard.rejoining && self.rejoin_target.is_none() {
            self.rejoin_target = commit;
        }
        if self.hard.rejoining && self.rejoin_target.is_some_and(|target| self.committed >= target) {
            self.hard.rejoining = false;
            self.hard_dirty = true;
            self.rejoin_target = None;
        }
    }

    fn start_rejoining(&mut self, target: Option<i64>) {
        self.fresh = false;
        self.found_history = true;
        if !self.hard.rejoining {
            self.hard.rejoining = true;
            self.hard_dirty = true;
        }
        if self.rejoin_target.is_none() {
            self.rejoin_target = target;
        }
    }
}
