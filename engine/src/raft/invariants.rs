//! The invariants of a [`Raft`], checked after every public call that changes it (a violated
//! one is a bug: the node stops with the invariant named and the values that broke it).
//!
//! Always (O(1), or O(voters)):
//! - the hard state only moves forward: the term never falls, and within a term a vote once
//!   cast stays (one vote per term); the commit point never falls;
//! - log start <= commit point <= log end;
//! - roles: a leader is its own leader and voted for itself, a candidate voted for itself, a
//!   (pre-)candidate knows no leader and counts its own vote, a follower never names itself
//!   leader and holds no votes; only a leader tracks followers or hands leadership over, and it
//!   tracks exactly the other voters; a quiet group is a leader or a follower;
//! - a leader's first entry of its term ends within its log;
//! - a leader that is not a voter was removed by a change that has not committed yet;
//! - the voters in effect are the last configuration change's, else the base voters; the last
//!   change ends within the log, after the one before it;
//! - each follower's progress: -1 <= match <= next <= the leader's log end, the commit point
//!   told it never past ours, at most one append in flight while probing and at most
//!   [`INFLIGHT_MAX`] while pipelining.
//!
//! At each append (always): terms never fall along the log, and no entry is of a term above the
//! node's.
//!
//! In debug builds and in simulations ([`crate::buggify::expensive_checks`]): configuration changes sorted by end, each one
//! still in the log ending where recorded with its term; a leader's first entry of its term in
//! its term.

use super::{HardState, Mode, Raft, RaftLog, Role, Term, INFLIGHT_MAX};

/// What the invariants compare the state with: its values after the previous check.
#[derive(Debug, Clone, Copy)]
pub(super) struct Watermarks {
    pub(super) committed: i64,
    pub(super) hard: HardState,
}

impl<L: RaftLog> Raft<L> {
    /// Checks the invariants (see the module docs); called at the end of each public call that
    /// changes the state.
    pub(super) fn check_invariants(&mut self) {
        let usable = self.log.usable();
        self.check_progress(usable.then(|| self.log.end()));
        self.check_roles();
        if usable {
            self.check_against_log();
            if crate::buggify::expensive_checks() {
                self.check_expensive();
            }
        }
        self.watermarks = Watermarks { committed: self.committed, hard: self.hard };
    }

    /// Before an entry of `term` joins the log: terms never fall along the log, and none is above
    /// the node's own.
    pub(super) fn check_append_term(&self, term: Term) {
        let (end, last_term) = self.log.last();
        assert!(
            last_term <= term && term <= self.hard.term,
            "raft invariant (terms never fall along the log, none above the node's): node {} appends an \
             entry of term {term} after the entry ending at {end} of term {last_term}, in term {}",
            self.config.id,
            self.hard.term
        );
    }

    fn check_roles(&self) {
        let id = self.config.id;
        let before = self.watermarks;
        let what = || format!("node {} in term {}: {:?}, leader {:?}", id, self.hard.term, self.role, self.leader);
        assert!(
            self.hard.term >= before.hard.term
                && (self.hard.term > before.hard.term
                    || before.hard.voted_for.is_none()
                    || self.hard.voted_for == before.hard.voted_for),
            "raft invariant (the hard state only moves forward: one vote per term): node {id} went from {:?} to {:?}",
            before.hard,
            self.hard
        );
        assert!(
            self.committed >= before.committed,
            "raft invariant (the commit point never falls): node {id} went from {} to {}",
            before.committed,
            self.committed
        );
        match self.role {
            Role::Leader => assert!(
                self.leader == Some(id) && self.hard.voted_for == Some(id),
                "raft invariant (a leader leads and voted for itself): {}, vote {:?}",
                what(),
                self.hard.voted_for
            ),
            Role::Candidate => assert!(
                self.leader.is_none() && self.hard.voted_for == Some(id) && self.votes.contains(&id),
                "raft invariant (a candidate knows no leader and voted for itself): {}, vote {:?}, votes {:?}",
                what(),
                self.hard.voted_for,
                self.votes
            ),
            Role::PreCandidate => assert!(
                self.leader.is_none() && self.votes.contains(&id),
                "raft invariant (a pre-candidate knows no leader and counts itself): {}, votes {:?}",
                what(),
                self.votes
            ),
            Role::Follower => assert!(
                self.leader != Some(id) && self.votes.is_empty(),
                "raft invariant (a follower does not lead and holds no votes): {}, votes {:?}",
                what(),
                self.votes
            ),
        }
        if self.role != Role::Leader {
            assert!(
                self.progress.is_empty() && self.transfer_to.is_none(),
                "raft invariant (only a leader tracks followers and hands over): {}, progress of {:?}, transfer to {:?}",
                what(),
                self.progress.keys().collect::<Vec<_>>(),
                self.transfer_to
            );
        }
        assert!(
            !self.quiesced || matches!(self.role, Role::Leader | Role::Follower),
            "raft invariant (a quiet group has a leader or a follower): {} is quiet",
            what()
        );
        assert!(
            self.transfer_to != Some(id),
            "raft invariant (a leader never hands over to itself): {}, transfer to itself",
            what()
        );
        self.check_voters();
    }

    /// The voters against the configuration changes, and a leader's followers against the voters.
    fn check_voters(&self) {
        let id = self.config.id;
        let expected = self.changes.last().map_or(&self.base_voters, |c| &c.voters);
        assert!(
            &self.voters == expected,
            "raft invariant (the voters are the last configuration change's, else the base): node {id} has \
             {:?}, last change {:?}, base {:?}",
            self.voters,
            self.changes.last(),
            self.base_voters
        );
        if let [.., before, last] = &self.changes[..] {
            assert!(
                before.end < last.end,
                "raft invariant (configuration changes sorted by end): node {id}: {before:?} then {last:?}"
            );
        }
        if self.role != Role::Leader {
            return;
        }
        let others = self.voters.iter().filter(|&&v| v != id).count();
        assert!(
            self.progress.len() == others && self.voters.iter().all(|v| *v == id || self.progress.contains_key(v)),
            "raft invariant (a leader tracks exactly the other voters): node {id} tracks {:?}, voters {:?}",
            self.progress.keys().collect::<Vec<_>>(),
            self.voters
        );
        assert!(
            self.is_voter() || self.changes.last().is_some_and(|c| c.end > self.committed),
            "raft invariant (a leader outside the voters was removed by an uncommitted change): node {id}, \
             voters {:?}, last change {:?}, committed {}",
            self.voters,
            self.changes.last(),
            self.committed
        );
    }

    /// Each follower's progress, on a leader (O(voters)); against the log's end unless the log
    /// failed (`end` None).
    fn check_progress(&self, end: Option<i64>) {
        for (follower, p) in &self.progress {
            assert!(
                -1 <= p.match_end && p.match_end <= p.next_end && end.is_none_or(|end| p.next_end <= end),
                "raft invariant (-1 <= match <= next <= log end): leader {} of term {}, follower {follower}: \
                 match {}, next {}, log end {end:?}",
                self.config.id,
                self.hard.term,
                p.match_end,
                p.next_end
            );
            let inflight_max = if p.mode == Mode::Probe { 1 } else { INFLIGHT_MAX };
            assert!(
                p.inflight <= inflight_max,
                "raft invariant (appends in flight: one while probing, INFLIGHT_MAX pipelined): leader {}, \
                 follower {follower} in {:?} has {} in flight",
                self.config.id,
                p.mode,
                p.inflight
            );
            assert!(
                p.told_commit <= self.committed,
                "raft invariant (no follower told of a commit point past ours): leader {}, follower {follower} \
                 told {}, committed {}",
                self.config.id,
                p.told_commit,
                self.committed
            );
        }
    }

    /// The commit point, a leader's term start and the last change against the log's bounds.
    fn check_against_log(&self) {
        let (start, end) = (self.log.start(), self.log.end());
        assert!(
            start <= self.committed && self.committed <= end,
            "raft invariant (log start <= committed <= log end): node {} in term {}: start {start}, committed {}, \
             end {end}",
            self.config.id,
            self.hard.term,
            self.committed
        );
        if self.role == Role::Leader {
            assert!(
                self.term_start <= end,
                "raft invariant (a leader's first entry of its term is in its log): leader {} of term {}: term \
                 start {}, log end {end}",
                self.config.id,
                self.hard.term,
                self.term_start
            );
        }
        if let Some(last) = self.changes.last() {
            assert!(
                last.end <= end,
                "raft invariant (the configuration changes are in the log): node {}: last change {last:?}, log \
                 end {end}",
                self.config.id
            );
        }
    }

    /// What costs a walk of the changes or term lookups in the log: debug builds only.
    fn check_expensive(&self) {
        let id = self.config.id;
        let start = self.log.start();
        for pair in self.changes.windows(2) {
            assert!(
                pair[0].end < pair[1].end,
                "raft invariant (configuration changes sorted by end): node {id}: {:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
        for change in self.changes.iter().filter(|c| c.end > start) {
            let term = self.log.term_at(change.end);
            assert!(
                term == Some(change.term),
                "raft invariant (each configuration change is the log's entry ending there): node {id}: \
                 {change:?}, the log's entry ending there has term {term:?}"
            );
        }
        if self.role == Role::Leader && self.term_start > start {
            let term = self.log.term_at(self.term_start);
            assert!(
                term == Some(self.hard.term),
                "raft invariant (a leader's first entry of its term is of its term): leader {id} of term {}: the \
                 entry ending at {} has term {term:?}",
                self.hard.term,
                self.term_start
            );
        }
    }
}
