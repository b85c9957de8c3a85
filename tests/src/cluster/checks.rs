//! The raft simulator's safety checks: election safety, acknowledged entries kept, leader
//! completeness, state-machine safety and linearizable reads.

use super::*;

impl Sim {
    pub(super) fn check_election_safety(&mut self) -> Result<(), String> {
        // Election safety.
        for (id, node) in &self.nodes {
            let Some(raft) = &node.raft else { continue };
            self.outcome.max_term = self.outcome.max_term.max(raft.term());
            if raft.role() == Role::Leader {
                let first = *self.leaders_by_term.entry(raft.term()).or_insert(*id);
                if first != *id {
                    return Err(format!("two leaders in term {}: {first} and {id}", raft.term()));
                }
            }
        }
        self.outcome.leaders = self.leaders_by_term.len();
        Ok(())
    }

    pub(super) fn check_acknowledgements(&mut self) -> Result<(), String> {
        // Acknowledgements: a proposal is acked when its leader has committed it.
        let mut still = Vec::new();
        for p in std::mem::take(&mut self.proposals) {
            match self.nodes.get(&p.node).and_then(|n| n.raft.as_ref()) {
                Some(raft) if raft.term() == p.term && raft.role() == Role::Leader => {
                    if raft.committed() >= p.end {
                        if !holds(raft.log(), &Acked { end: p.end, term: p.term }) {
                            return Err(format!(
                                "leader {} committed past {} but holds another entry there",
                                p.node, p.end
                            ));
                        }
                        self.acked.push(Acked { end: p.end, term: p.term });
                        self.completed.push(Completed { invoked_at: p.invoked_at, acked_at: self.now, end: p.end });
                    } else {
                        still.push(p);
                    }
                }
                _ => {} // leader gone: the client saw no ack
            }
        }
        self.proposals = still;
        self.outcome.acked = self.acked.len();
        Ok(())
    }

    pub(super) fn check_leader_completeness(&self) -> Result<(), String> {
        // Leader completeness: every leader holds every acknowledged entry of its term or an
        // earlier one. (A deposed leader that has not heard of the next term yet may still
        // think it leads while its successor commits; it cannot commit anything itself.)
        for (id, node) in &self.nodes {
            let Some(raft) = &node.raft else { continue };
            if raft.role() != Role::Leader {
                continue;
            }
            for a in self.acked.iter().filter(|a| a.term <= raft.term()) {
                if !holds(raft.log(), a) {
                    return Err(format!(
                        "leader {id} (term {}) lacks acknowledged entry ending at {} of term {} (log start {}, last {:?})",
                        raft.term(),
                        a.end,
                        a.term,
                        raft.log().start(),
                        raft.log().last(),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_state_machine_safety(&mut self) -> Result<(), String> {
        // State machine safety: committed prefixes agree with the canonical committed log.
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let Some(raft) = self.nodes[&id].raft.as_ref() else { continue };
            let committed = raft.committed();
            let mut from = self.nodes[&id].checked_to.max(raft.log().start());
            let mut verified = Vec::new();
            while from < committed {
                let entries = raft.log().entries_from(from, 1 << 20);
                if entries.is_empty() {
                    return Err(format!("node {id} committed to {committed} but cannot read its log at {from}"));
                }
                for e in entries {
                    let (start, end, term) = entry_position(&e).ok_or("unreadable entry")?;
                    if end > committed {
                        return Err(format!("node {id} committed to {committed}, inside the entry ending at {end}"));
                    }
                    verified.push((start, end, term, crc32c::crc32c(&e)));
                    from = end;
                    if from == committed {
                        break;
                    }
                }
            }
            for (start, end, term, crc) in verified {
                // A node that was reset past part of the log verifies from its new start, so
                // entries may arrive out of order: each must match the one recorded at its end,
                // or fill a gap without straddling a recorded boundary.
                if let Some(&(s0, t0, c0)) = self.canonical.get(&end) {
                    if (s0, t0, c0) != (start, term, crc) {
                        return Err(format!(
                            "node {id} committed the entry {start}..{end} (term {term}), others committed {s0}..{end} (term {t0})"
                        ));
                    }
                    continue;
                }
                let before = self.canonical.range(..end).next_back().map(|(&e, _)| e);
                let after = self.canonical.range(end..).next().map(|(_, &(s, _, _))| s);
                if before.is_some_and(|e| e > start) || after.is_some_and(|s| s < end) {
                    return Err(format!(
                        "node {id} committed the entry {start}..{end} across an entry others committed (ending before: {before:?}, starting after: {after:?})"
                    ));
                }
                self.canonical.insert(end, (start, term, crc));
            }
            let node = self.nodes.get_mut(&id).expect("node");
            node.checked_to = node.checked_to.max(from);
            self.outcome.committed_end = self.outcome.committed_end.max(from);
        }
        Ok(())
    }

    /// Linearizability of the read history against the write history: a read sees at least
    /// every write acknowledged before it was invoked, reads ordered in real time see trees in
    /// the same order, and each value read is the one the log's order gives at that zxid.
    pub(super) fn check_reads(&self) -> Result<(), String> {
        let mut acks: Vec<(u64, i64)> = self.completed.iter().map(|c| (c.acked_at, c.end)).collect();
        acks.sort_unstable();
        let mut reads: Vec<&CompletedRead> = self.completed_reads.iter().collect();
        reads.sort_by_key(|r| r.invoked_at);
        let mut by_completion: Vec<&CompletedRead> = self.completed_reads.iter().collect();
        by_completion.sort_by_key(|r| r.completed_at);
        let (mut i, mut j) = (0, 0);
        let (mut acked_before, mut read_before) = (i64::MIN, i64::MIN);
        for r in reads {
            while i < acks.len() && acks[i].0 < r.invoked_at {
                acked_before = acked_before.max(acks[i].1);
                i += 1;
            }
            while j < by_completion.len() && by_completion[j].completed_at < r.invoked_at {
                read_before = read_before.max(by_completion[j].zxid);
                j += 1;
            }
            if r.zxid < acked_before {
                return Err(format!(
                    "read invoked at step {} saw zxid {} but a write acknowledged before it ends at {acked_before}",
                    r.invoked_at, r.zxid
                ));
            }
            if r.zxid < read_before {
                return Err(format!(
                    "read invoked at step {} saw zxid {}, older than a read completed before it ({read_before})",
                    r.invoked_at, r.zxid
                ));
            }
            match self.values.get(&(r.key.clone(), r.zxid)) {
                Some(expected) if *expected == r.value => {}
                Some(expected) => {
                    return Err(format!(
                        "read of {} at zxid {} returned {:?}; the log gives {expected:?}",
                        r.key, r.zxid, r.value
                    ))
                }
                None => return Err(format!("read at zxid {} of {} has no reference value", r.zxid, r.key)),
            }
        }
        Ok(())
    }
}
