//! Replication: proposals, appends and heartbeats from a leader to each follower (its
//! [`Progress`](super::Progress): probing or pipelining, match and next positions, stalls),
//! a follower's handling of appends, heartbeats and resets, the leader's handling of their
//! replies, and the commit point's advance once a majority holds entries durably.

use super::{log, quiesce, quorum, Body, ConfigChange, Mode, NodeId, ProposeError, Raft, RaftLog, Role, Term};
use super::{APPEND_MAX_BYTES, INFLIGHT_MAX, STALL_HEARTBEATS};
use bytes::Bytes;

impl<L: RaftLog> Raft<L> {
    /// Appends a new entry (leader only); it commits once a majority holds it durably.
    pub fn propose(&mut self, entry: &[u8]) -> Result<i64, ProposeError> {
        Ok(self.propose_all(&[entry])?[0].1)
    }

    /// Appends several entries at once (leader only), all or none: the log checks every one
    /// before appending any. Returns each entry's (base, end) offsets.
    pub fn propose_all(&mut self, entries: &[&[u8]]) -> Result<Vec<(i64, i64)>, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        let result = self.propose_all_as_leader(entries);
        self.check_invariants();
        result
    }

    fn propose_all_as_leader(&mut self, entries: &[&[u8]]) -> Result<Vec<(i64, i64)>, ProposeError> {
        self.wake();
        self.idle_heartbeats = 0;
        self.check_append_term(self.hard.term);
        let positions = self.log.append_new_all(entries, self.hard.term).map_err(ProposeError::Log)?;
        for (entry, &(_, end)) in entries.iter().zip(&positions) {
            self.on_appended(entry, end, self.hard.term);
        }
        for id in self.others() {
            if self.progress.get(&id).is_some_and(|p| p.mode == Mode::Replicate) {
                self.send_append(id);
            }
        }
        self.maybe_commit();
        Ok(positions)
    }

    /// Proposes `entry` if this node leads, else forwards it to the leader it knows (false if it
    /// knows none). A forwarded entry may be lost; the caller checks for its effect.
    pub fn propose_or_forward(&mut self, entry: &[u8]) -> bool {
        match self.role {
            Role::Leader => self.propose(entry).is_ok(),
            _ => match self.leader {
                Some(leader) => {
                    self.send(leader, Body::Forward { entry: Bytes::copy_from_slice(entry) });
                    true
                }
                None => false,
            },
        }
    }

    /// The driver made the log durable up to `log().durable_end()`.
    pub fn on_persisted(&mut self) {
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.check_invariants();
    }

    pub(super) fn send_append(&mut self, to: NodeId) {
        let Some(p) = self.progress.get(&to).cloned() else { return };
        let (last_end, _) = self.log.last();
        if p.mode == Mode::Probe && p.inflight > 0 || p.mode == Mode::Replicate && p.inflight >= INFLIGHT_MAX {
            return;
        }
        let prev_end = p.next_end;
        if prev_end < self.log.start() || p.reset_needed && prev_end == self.log.start() {
            let start = self.log.start();
            self.progress.get_mut(&to).expect("progress").inflight += 1;
            let voters = self.voters_at(start);
            let start_term = self.start_term_bound();
            self.send(to, Body::Reset { start, start_term, voters });
            return;
        }
        let Some(prev_term) = self.log.term_at(prev_end) else {
            // Not a boundary of ours (a follower's hint: its log's entries differ from ours
            // there): back up to the nearest one below, and probe there.
            let back = self.log.boundary_at_or_below(prev_end).filter(|&b| b < prev_end).unwrap_or(self.log.start());
            let p = self.progress.get_mut(&to).expect("progress");
            p.next_end = back.max(p.match_end);
            if p.next_end != prev_end {
                self.send_append(to);
            }
            return;
        };
        let mut entries =
            if prev_end < last_end { self.log.entries_from(prev_end, APPEND_MAX_BYTES) } else { Vec::new() };
        if crate::buggify!(100) {
            // A shorter append than the limit allows (simulation only).
            entries.truncate(1);
        }
        let sent_end = entries.last().and_then(|e| log::entry_position(e)).map_or(prev_end, |(_, end, _)| end);
        let commit = self.committed.min(sent_end);
        let p = self.progress.get_mut(&to).expect("progress");
        p.told_commit = p.told_commit.max(commit);
        p.inflight += 1;
        if p.mode == Mode::Replicate {
            p.next_end = sent_end;
        }
        self.send(to, Body::Append { prev_end, prev_term, entries, commit });
    }

    pub(super) fn broadcast_heartbeat(&mut self) {
        if self.idle_heartbeats() >= quiesce::IDLE_HEARTBEATS {
            self.quiesce_followers();
            return;
        }
        for id in self.others() {
            let (last_end, _) = self.log.last();
            let p = self.progress.get_mut(&id).expect("progress");
            let still = p.mode == Mode::Replicate
                && p.inflight > 0
                && p.match_end == p.match_at_heartbeat
                && p.match_end < last_end;
            p.stalled_heartbeats = if still { p.stalled_heartbeats + 1 } else { 0 };
            if p.stalled_heartbeats >= STALL_HEARTBEATS {
                p.stalled_heartbeats = 0;
                p.mode = Mode::Probe;
                p.next_end = probe_point(p.match_end, self.log.start(), last_end);
            }
            p.match_at_heartbeat = p.match_end;
            let p = p.clone();
            if p.mode == Mode::Probe || p.match_end < last_end && p.inflight == 0 {
                // A probe lost on the way is sent again on the next heartbeat.
                self.progress.get_mut(&id).expect("progress").inflight = 0;
                self.send_append(id);
            } else {
                let commit = self.committed.min(p.match_end);
                let told = &mut self.progress.get_mut(&id).expect("progress").told_commit;
                *told = (*told).max(commit);
                self.send(id, Body::Heartbeat { commit, sent_end: p.next_end, quiesce: false });
            }
        }
    }

    pub(super) fn maybe_commit(&mut self) {
        let mut ends: Vec<i64> = self.progress.values().map(|p| p.match_end).collect();
        // A leader removed by an uncommitted change still leads, but does not count itself.
        if self.is_voter() {
            ends.push(self.log.durable_end().min(self.log.last().0));
        }
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&candidate) = ends.get(quorum(self.voters.len()) - 1) else { return };
        if candidate > self.committed && self.log.term_at(candidate) == Some(self.hard.term) {
            self.committed = candidate;
            if self.config.eager_commit {
                for id in self.others() {
                    self.tell_commit(id);
                }
            }
        }
        if !self.is_voter() && self.changes.last().is_some_and(|c| c.end <= self.committed) {
            // Its own removal committed: hand over (a voter times out and is elected).
            let term = self.hard.term;
            self.become_follower(term, None);
        }
    }

    /// Sends follower `id` the commit point if it holds entries it was not told committed
    /// (groups with [`Config::eager_commit`](super::Config::eager_commit)).
    fn tell_commit(&mut self, id: NodeId) {
        let Some(p) = self.progress.get_mut(&id) else { return };
        let commit = self.committed.min(p.match_end);
        if commit > p.told_commit {
            p.told_commit = commit;
            let sent_end = p.next_end;
            self.send(id, Body::Heartbeat { commit, sent_end, quiesce: false });
        }
    }

    /// The term of the entry ending at this log's start, or an upper bound of it: the term of
    /// the first entry still held (terms never fall along a log), else the current term.
    fn start_term_bound(&self) -> Term {
        if let Some(term) = self.reset_term() {
            return term;
        }
        self.log
            .entries_from(self.log.start(), 1)
            .first()
            .and_then(|e| log::entry_position(e))
            .map_or(self.hard.term, |(_, _, term)| term)
    }

    pub(super) fn handle_append(
        &mut self,
        leader: NodeId,
        prev_end: i64,
        prev_term: Term,
        entries: Vec<Bytes>,
        commit: i64,
    ) {
        if prev_end < self.committed {
            // Already committed here: the entries up to our commit match by definition.
            let end = self.committed;
            self.send(leader, Body::AppendReply { accepted: true, end });
            return;
        }
        // At our commit point the logs match by definition (the leader may no longer know the
        // term there, if it deleted that prefix); past it the terms must agree.
        if prev_end > self.committed && self.log.term_at(prev_end) != Some(prev_term) {
            let end = self.log.last().0.min(prev_end);
            self.send(leader, Body::AppendReply { accepted: false, end });
            return;
        }
        let mut matched = prev_end;
        for entry in &entries {
            let Some((base, end, term)) = log::entry_position(entry) else { break };
            if base != matched {
                // Not contiguous: a malformed message; what matched so far stands.
                break;
            }
            if self.log.term_at(end) == Some(term) && self.log.last().0 >= end {
                matched = end;
                continue;
            }
            if self.log.last().0 > base {
                assert!(base >= self.committed, "never truncate committed entries ({base} < {})", self.committed);
                if self.log.truncate(base).is_err() {
                    break;
                }
                self.on_truncated(base);
            }
            self.check_append_term(term);
            if self.log.append_copy(entry).is_err() {
                break;
            }
            self.on_appended(entry, end, term);
            matched = end;
        }
        let new_commit = commit.min(matched);
        if new_commit > self.committed {
            self.committed = new_commit;
        }
        self.send(leader, Body::AppendReply { accepted: true, end: matched });
    }

    /// A heartbeat from the leader of `term`: the commit point, and perhaps to go quiet.
    pub(super) fn handle_heartbeat(&mut self, from: NodeId, term: Term, commit: i64, sent_end: i64, quiesce: bool) {
        self.become_follower(term, Some(from));
        if commit > self.committed && commit <= self.log.last().0 && self.log.term_at(commit).is_some() {
            self.committed = commit;
        }
        let end = self.log.last().0;
        if quiesce {
            self.follow_into_quiet(commit, sent_end);
        }
        self.send(from, Body::HeartbeatReply { end, sent_end });
    }

    /// The leader of `term` resets this follower's log to start at `start` (see [`Body::Reset`]).
    pub(super) fn handle_reset(&mut self, from: NodeId, term: Term, start: i64, start_term: Term, voters: Vec<NodeId>) {
        self.become_follower(term, Some(from));
        // Our entries up to `start` can only be trusted if we know them committed; an
        // uncommitted suffix reaching past `start` may differ from what the leader
        // deleted, so anything short of our commit point is dropped, not kept. Where logs are
        // deleted only below what every member held, an entry of ours ending at `start` is
        // the committed one: the prefix stays, what follows it goes.
        let holds_start = self.config.prefix_held_by_all
            && start > self.committed
            && start > self.log.start()
            && start <= self.log.last().0
            && self.log.term_at(start).is_some();
        if holds_start {
            if self.log.last().0 > start {
                if self.log.truncate(start).is_err() {
                    return;
                }
                self.on_truncated(start);
            }
            self.committed = start;
        } else if start > self.committed {
            if self.log.reset(start).is_err() {
                return;
            }
            self.committed = start;
            // Configuration entries before `start` are gone: the leader's voters as
            // of `start` are the base now, kept as a change ending at `start` so the
            // term there is known (and persisted) for votes.
            self.changes = vec![ConfigChange { end: start, term: start_term, voters: voters.clone() }];
            self.base_voters = voters.clone();
            self.config_dirty = true;
            self.set_voters(voters);
        }
        self.send(from, Body::AppendReply { accepted: true, end: start });
    }

    /// A follower's reply to a heartbeat: appends lost on the way are sent again, and what it
    /// lacks is sent if nothing is in flight.
    pub(super) fn handle_heartbeat_reply(&mut self, from: NodeId, end: i64, sent_end: i64) {
        if let Some(p) = self.progress.get_mut(&from) {
            p.recent = true;
            p.silent_ticks = 0;
            if end < p.match_end {
                // The follower no longer holds what it acknowledged (its disk was replaced):
                // that no longer counts, and it is probed from its log's end (`rejoin.rs`).
                p.match_end = end;
                p.mode = Mode::Probe;
                p.next_end = end;
                p.inflight = 0;
            } else if p.mode == Mode::Replicate && p.inflight > 0 && end < sent_end && sent_end <= p.next_end {
                // Appends sent before the heartbeat never reached the follower's log.
                p.mode = Mode::Probe;
                p.next_end = probe_point(p.match_end, self.log.start(), self.log.last().0);
                p.inflight = 0;
            }
            let lagging = p.match_end < self.log.last().0;
            if lagging && p.inflight == 0 {
                self.send_append(from);
            }
        }
    }

    pub(super) fn handle_append_reply(&mut self, from: NodeId, accepted: bool, end: i64) {
        if self.role != Role::Leader {
            return;
        }
        let Some(p) = self.progress.get_mut(&from) else { return };
        p.recent = true;
        p.silent_ticks = 0;
        p.inflight = p.inflight.saturating_sub(1);
        if accepted {
            p.reset_needed = false;
            if end > p.match_end {
                p.match_end = end;
            }
            if p.mode == Mode::Probe {
                p.mode = Mode::Replicate;
                p.next_end = p.match_end;
                p.inflight = 0;
            } else if p.next_end < p.match_end {
                p.next_end = p.match_end;
            }
            self.maybe_commit();
            if self.config.eager_commit {
                self.tell_commit(from);
            }
            let last = self.log.last().0;
            if self.progress.get(&from).is_some_and(|p| p.next_end < last) {
                self.send_append(from);
            }
            if self.transfer_to == Some(from) {
                self.maybe_send_timeout_now();
            }
        } else {
            if end < p.match_end {
                // The follower no longer holds what it acknowledged (its disk was replaced):
                // that no longer counts (`rejoin.rs`).
                p.match_end = end;
            }
            // Back up: to the follower's log end if shorter, else one entry before the probe.
            let back = self.log.boundary_before(p.next_end).unwrap_or(self.log.start());
            let start = self.log.start();
            let p = self.progress.get_mut(&from).expect("progress");
            p.next_end = end.min(back).max(p.match_end);
            p.mode = Mode::Probe;
            p.inflight = 0;
            // Refused at our log start: the term we send there (0) proves nothing, and the
            // follower's entry ending there may differ from the committed one we deleted.
            p.reset_needed = start > 0 && p.next_end <= start;
            self.send_append(from);
        }
    }
}

/// Where a leader probes a follower again: where it last matched, if that is still in the log;
/// else, not knowing, at its own log end, and the follower's refusal (with its log end) walks it
/// back. Never at the log start for want of knowing: the term there is unknown (0), so a refusal
/// there calls for a reset, which would throw away a follower's log that matches further on
/// (and with it what a metadata follower had yet to apply).
pub(super) fn probe_point(match_end: i64, start: i64, last_end: i64) -> i64 {
    if match_end >= start {
        match_end
    } else {
        last_end
    }
}
