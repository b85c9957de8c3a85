//! Membership: the voters in effect, single-step configuration changes (proposed by a leader,
//! in effect on each node once their entry is appended, undone if it is truncated) and the
//! record of them that is persisted for [`Raft::restore`].

use super::{ConfigChange, NodeId, Progress, ProposeError, Raft, RaftLog, Role, Term};

impl<L: RaftLog> Raft<L> {
    /// The voters in effect.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// True when a configuration change may be proposed: this node leads, has committed an
    /// entry of its term, and no earlier change is uncommitted.
    pub fn config_settled(&self) -> bool {
        self.role == Role::Leader
            && self.committed >= self.term_start
            && self.changes.last().is_none_or(|c| c.end <= self.committed)
    }

    pub(super) fn is_voter(&self) -> bool {
        self.voters.contains(&self.config.id)
    }

    /// What to persist for [`Raft::restore`]: the base voters and the changes after them.
    pub fn config_state(&self) -> (Vec<NodeId>, Vec<ConfigChange>) {
        (self.base_voters.clone(), self.changes.clone())
    }

    /// True once since the last call if the configuration changed and must be persisted
    /// (before the log is flushed: a restart drops changes whose entry did not survive).
    pub fn take_config_dirty(&mut self) -> bool {
        std::mem::take(&mut self.config_dirty)
    }

    /// The voters in effect at log position `end`.
    pub(super) fn voters_at(&self, end: i64) -> Vec<NodeId> {
        self.changes.iter().rev().find(|c| c.end <= end).map_or_else(|| self.base_voters.clone(), |c| c.voters.clone())
    }

    pub(super) fn set_voters(&mut self, voters: Vec<NodeId>) {
        if voters == self.voters {
            return;
        }
        self.voters = voters;
        self.config_dirty = true;
        if self.role == Role::Leader {
            let others = self.others();
            self.progress.retain(|id, _| others.contains(id));
            let last_end = self.log.last().0;
            for id in others {
                self.progress.entry(id).or_insert(Progress::probing(last_end));
            }
        }
    }

    /// An entry ending at `end` joined the log: a configuration entry takes effect at once.
    pub(super) fn on_appended(&mut self, entry: &[u8], end: i64, term: Term) {
        if let Some(voters) = self.log.entry_voters(entry) {
            self.changes.push(ConfigChange { end, term, voters: voters.clone() });
            self.config_dirty = true;
            self.set_voters(voters);
        }
    }

    /// The log was cut after `end`: configuration entries past it are undone.
    pub(super) fn on_truncated(&mut self, end: i64) {
        if self.changes.last().is_some_and(|c| c.end > end) {
            self.changes.retain(|c| c.end <= end);
            self.config_dirty = true;
            let voters = self.changes.last().map_or_else(|| self.base_voters.clone(), |c| c.voters.clone());
            self.set_voters(voters);
        }
    }

    /// Proposes a single-step configuration change (leader only): `voters` adds or removes
    /// exactly one node. Refused while an earlier change is uncommitted, and until the leader
    /// has committed an entry of its own term (so no change of a previous leader can still be
    /// pending unseen). The change takes effect on each node when its entry is appended; a
    /// leader that removes itself steps down once the change commits.
    pub fn propose_config(&mut self, voters: Vec<NodeId>) -> Result<i64, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        let mut voters = voters;
        voters.sort_unstable();
        voters.dedup();
        let mut current = self.voters.clone();
        current.sort_unstable();
        let added = voters.iter().filter(|v| !current.contains(v)).count();
        let removed = current.iter().filter(|v| !voters.contains(v)).count();
        if added + removed != 1 || voters.is_empty() {
            return Err(ProposeError::ConfigChange(format!(
                "a change adds or removes exactly one voter: {current:?} -> {voters:?}"
            )));
        }
        if self.changes.last().is_some_and(|c| c.end > self.committed) {
            return Err(ProposeError::ConfigChange("an earlier change is not committed yet".into()));
        }
        if self.committed < self.term_start {
            return Err(ProposeError::ConfigChange("the leader has not committed an entry of its term yet".into()));
        }
        self.wake();
        let result = self.append_config(&voters);
        self.check_invariants();
        result
    }

    /// A leader's configuration entry making `voters` the group's voters, appended and sent.
    fn append_config(&mut self, voters: &[NodeId]) -> Result<i64, ProposeError> {
        self.check_append_term(self.hard.term);
        let entry = self.log.config_entry(self.hard.term, voters);
        let end = self.log.append_new(&entry, self.hard.term).map_err(ProposeError::Log)?;
        self.on_appended(&entry, end, self.hard.term);
        for id in self.others() {
            self.send_append(id);
        }
        self.maybe_commit();
        Ok(end)
    }
}
