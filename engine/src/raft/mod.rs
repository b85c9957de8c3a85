//! Raft as a pure state machine, one instance per group (a partition, or group 0).
//!
//! Inputs: [`Raft::tick`], [`Raft::step`] (a message), [`Raft::propose`]. Outputs: messages
//! ([`Raft::take_messages`]), the log itself (appends and truncations go to the [`RaftLog`],
//! which buffers them until the driver flushes it), the hard state to persist
//! ([`Raft::hard_state`]) and the commit position ([`Raft::committed`]).
//!
//! The driver's contract, in each round: persist the hard state if it changed and flush the
//! log, then call [`Raft::on_persisted`], then send the messages. So a vote or an append
//! acknowledgement never leaves before what it promises is on disk. A leader's own appends may
//! leave earlier ([`Raft::take_leader_messages`]).
//!
//! ```text
//!            timeout              pre-vote majority          vote majority
//!  Follower ─────────► PreCandidate ─────────────► Candidate ─────────────► Leader
//!     ▲                    │ higher term / leader      │                      │ higher term,
//!     └────────────────────┴───────────────────────────┴──────────────────────┘ lost quorum
//! ```
//! Pre-vote keeps a partitioned node from disrupting a healthy leader; check-quorum makes a
//! leader that cannot hear a majority step down; a node that heard from a leader within the
//! election timeout ignores (pre-)votes (leader lease).
//!
//! Positions are entry end offsets (see [`log`]): an append carries the entries after
//! `prev_end` and the term of the entry ending there; the follower accepts if its own entry
//! ending at `prev_end` has that term, and truncates its first conflicting entry and after.

pub mod config_file;
pub mod hard_state;
pub mod journal;
pub mod log;
mod quiesce;
pub mod wire;

pub use log::{RaftLog, Term};

use crate::log::LogError;
use crate::rng::SimRng;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

pub type NodeId = u64;

/// Bytes of entries per append message, at most (at least one entry is always sent).
pub const APPEND_MAX_BYTES: u64 = 1 << 20;
/// Append messages a leader keeps in flight to one follower when replicating.
pub const INFLIGHT_MAX: usize = 8;
/// Heartbeats in a row without a follower's progress, appends in flight, before they are
/// taken for lost and the follower is probed again (a follower busy persisting a large
/// backlog is slow, not lost; heartbeat replies report real losses at once).
pub const STALL_HEARTBEATS: u32 = 5;

#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    pub voters: Vec<NodeId>,
    /// Base election timeout, in ticks; the actual one is drawn from [base, 2 * base).
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    /// Seed of this node's timeout draws (deterministic in simulation).
    pub seed: u64,
    /// Tell followers of a new commit point at once (a heartbeat), not with the next append
    /// or heartbeat: for groups whose followers serve reads of what committed (the
    /// metadata group's tree), at the cost of a message per commit.
    pub eager_commit: bool,
    /// Let the group go quiet when idle ([`Raft::quiesced`]): no ticks, no heartbeats, until a
    /// proposal, a message or news of a peer's liveness wakes it. For the many partitions of a
    /// node, whose idle heartbeats would otherwise cost CPU in proportion to their count; the
    /// driver must then tell it of peers lost and back ([`Raft::peer_lost`], [`Raft::peer_back`]).
    pub quiesce: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// What must be durable before any message of a round is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Would you vote for me at `term` (the message's)? My log ends at `last_end` in `last_term`.
    PreVote {
        last_end: i64,
        last_term: Term,
    },
    PreVoteReply {
        granted: bool,
    },
    Vote {
        last_end: i64,
        last_term: Term,
        /// Asked for by the leader handing over ([`Body::TimeoutNow`]): granted even by nodes
        /// that heard from that leader within the election timeout.
        transfer: bool,
    },
    VoteReply {
        granted: bool,
    },
    Append {
        prev_end: i64,
        prev_term: Term,
        entries: Vec<Bytes>,
        commit: i64,
    },
    /// `accepted`: the follower's log matches up to `end`. Rejected: `end` is a hint, the
    /// follower's log end.
    AppendReply {
        accepted: bool,
        end: i64,
    },
    /// `sent_end`: where the appends sent to this follower before the heartbeat end.
    /// `quiesce`: the leader goes quiet (every follower it can reach holds every entry and
    /// knows it committed); a follower whose log ends at `sent_end` goes quiet too.
    Heartbeat {
        commit: i64,
        sent_end: i64,
        quiesce: bool,
    },
    /// `end`: the follower's log end once it had handled everything sent before the
    /// heartbeat; `sent_end`: the heartbeat's, echoed. Messages between two nodes arrive in
    /// order, so `end < sent_end` means appends were lost on the way.
    HeartbeatReply {
        end: i64,
        sent_end: i64,
    },
    /// The leader's log now starts at `start`, past the follower's position: the follower
    /// drops its log and starts again there (everything before `start` is committed).
    Reset {
        start: i64,
        /// The term of the entry ending at `start`, or a term no lower (the leader may no
        /// longer hold that entry): the follower's log, empty at `start`, votes as one ending
        /// in this term, never as one that knows no term at all.
        start_term: Term,
        /// The group's voters as of `start` (configuration entries before it may be gone).
        voters: Vec<NodeId>,
    },
    /// The leader hands leadership to this follower, which has all its entries: stand now.
    TimeoutNow,
    /// An entry proposed on a follower, for the leader to propose (dropped by a non-leader;
    /// the proposer retries if it does not see the entry applied).
    Forward {
        entry: Bytes,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One append at a time, resent on heartbeats, until the follower's position is known.
    Probe,
    /// Appends pipelined up to INFLIGHT_MAX.
    Replicate,
}

#[derive(Debug, Clone)]
struct Progress {
    match_end: i64,
    next_end: i64,
    mode: Mode,
    inflight: usize,
    /// Heard from since the last check-quorum round.
    recent: bool,
    /// Leader ticks since the follower last answered.
    silent_ticks: u32,
    /// The highest commit point sent to the follower.
    told_commit: i64,
    /// `match_end` at the previous heartbeat, and heartbeats in a row since without movement
    /// while appends were in flight: past [`STALL_HEARTBEATS`] the follower is probed again
    /// (the backstop; heartbeat replies tell of lost appends sooner).
    match_at_heartbeat: i64,
    stalled_heartbeats: u32,
    /// The follower disagreed at our log start, where we no longer know the term: only a
    /// reset can bring it in line.
    reset_needed: bool,
}

impl Progress {
    /// A follower whose position is unknown: probed from `next_end` (the leader's log end).
    fn probing(next_end: i64) -> Self {
        Progress {
            match_end: -1,
            next_end,
            mode: Mode::Probe,
            inflight: 0,
            recent: true,
            silent_ticks: 0,
            told_commit: -1,
            match_at_heartbeat: -1,
            stalled_heartbeats: 0,
            reset_needed: false,
        }
    }
}

#[derive(Debug)]
pub enum ProposeError {
    NotLeader {
        leader: Option<NodeId>,
    },
    Log(LogError),
    /// A configuration change that cannot start now (see [`Raft::propose_config`]).
    ConfigChange(String),
}

/// A configuration entry in the log: from `end` on, the group's voters are `voters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub end: i64,
    pub term: Term,
    pub voters: Vec<NodeId>,
}

pub struct Raft<L: RaftLog> {
    config: Config,
    log: L,
    role: Role,
    hard: HardState,
    hard_dirty: bool,
    leader: Option<NodeId>,
    committed: i64,
    votes: BTreeSet<NodeId>,
    progress: BTreeMap<NodeId, Progress>,
    elapsed: u32,
    heartbeat_elapsed: u32,
    timeout: u32,
    rng: SimRng,
    outbox: Vec<Message>,
    /// The voters in effect: those of the last configuration entry in the log, committed or
    /// not (single-step changes: each differs from the one before by one node).
    voters: Vec<NodeId>,
    /// The voters before the first entry of `changes`.
    base_voters: Vec<NodeId>,
    changes: Vec<ConfigChange>,
    config_dirty: bool,
    /// A leader's first entry of its term ends here; no configuration change until it commits.
    term_start: i64,
    /// A leadership transfer under way (leader only), abandoned after an election timeout.
    transfer_to: Option<NodeId>,
    /// The group is quiet: ticks do nothing until something wakes it (`quiesce.rs`).
    quiesced: bool,
    /// Heartbeats in a row at which a leader could have gone quiet, with no proposal since.
    idle_heartbeats: u32,
    /// Peers the driver reported lost and not back since ([`Raft::peer_lost`]).
    unreachable: BTreeSet<NodeId>,
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

impl<L: RaftLog> Raft<L> {
    /// A node restarting from its persisted hard state and log, with `config.voters` as the
    /// group's voters (a new group's, or the base of no configuration changes).
    pub fn new(config: Config, log: L, hard: HardState) -> Self {
        Self::restore(config, log, hard, Vec::new())
    }

    /// A node restarting with the configuration changes it persisted ([`Raft::config_state`]):
    /// `config.voters` is the base they apply to. Changes whose entry is no longer in the log
    /// (lost in a crash) are dropped; those before the log start (deleted by retention, so
    /// committed) become the base.
    pub fn restore(config: Config, log: L, hard: HardState, changes: Vec<ConfigChange>) -> Self {
        assert!(config.heartbeat_ticks >= 1 && config.election_ticks > config.heartbeat_ticks);
        let mut base_voters = config.voters.clone();
        let mut kept = Vec::new();
        for change in changes {
            if change.end == log.start() && log.last().0 == log.start() {
                // A reset's record: the term at the start of a log that holds no entry yet.
                base_voters = change.voters.clone();
                kept.push(change);
            } else if change.end <= log.start() {
                base_voters = change.voters;
            } else if change.end <= log.last().0 && log.term_at(change.end) == Some(change.term) {
                kept.push(change);
            } else {
                break;
            }
        }
        let voters = kept.last().map_or_else(|| base_voters.clone(), |c| c.voters.clone());
        let mut rng = SimRng::new(config.seed ^ config.id.rotate_left(17));
        let timeout = config.election_ticks + rng.below(u64::from(config.election_ticks)) as u32;
        let committed = log.start();
        let mut raft = Raft {
            config,
            log,
            role: Role::Follower,
            hard,
            hard_dirty: false,
            leader: None,
            committed,
            votes: BTreeSet::new(),
            progress: BTreeMap::new(),
            elapsed: 0,
            heartbeat_elapsed: 0,
            timeout,
            rng,
            outbox: Vec::new(),
            voters,
            base_voters,
            changes: kept,
            config_dirty: false,
            term_start: i64::MAX,
            transfer_to: None,
            quiesced: false,
            idle_heartbeats: 0,
            unreachable: BTreeSet::new(),
        };
        if raft.voters == [raft.config.id] {
            raft.campaign_now();
        }
        raft
    }

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

    /// True when this node leads and has committed an entry of its own term: every entry of
    /// earlier leaders it holds is committed, so a state machine applied to the commit point
    /// is complete.
    pub fn leader_ready(&self) -> bool {
        self.role == Role::Leader && self.committed >= self.term_start
    }

    /// Leader only: where its own first entry of the term ends; everything before it came from
    /// earlier leaders.
    pub fn term_start(&self) -> i64 {
        self.term_start
    }

    /// Leader only: true if voter `id` holds every committed entry (this node: always).
    pub fn caught_up(&self, id: NodeId) -> bool {
        id == self.config.id || self.progress.get(&id).is_some_and(|p| p.match_end >= self.committed)
    }

    fn is_voter(&self) -> bool {
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
    fn voters_at(&self, end: i64) -> Vec<NodeId> {
        self.changes.iter().rev().find(|c| c.end <= end).map_or_else(|| self.base_voters.clone(), |c| c.voters.clone())
    }

    fn set_voters(&mut self, voters: Vec<NodeId>) {
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
    fn on_appended(&mut self, entry: &[u8], end: i64, term: Term) {
        if let Some(voters) = self.log.entry_voters(entry) {
            self.changes.push(ConfigChange { end, term, voters: voters.clone() });
            self.config_dirty = true;
            self.set_voters(voters);
        }
    }

    /// The log was cut after `end`: configuration entries past it are undone.
    fn on_truncated(&mut self, end: i64) {
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
        let entry = self.log.config_entry(self.hard.term, &voters);
        let end = self.log.append_new(&entry, self.hard.term).map_err(ProposeError::Log)?;
        self.on_appended(&entry, end, self.hard.term);
        for id in self.others() {
            self.send_append(id);
        }
        self.maybe_commit();
        Ok(end)
    }

    /// On a leader: the log end every voter holds (the lowest match, its own durable end
    /// included). None elsewhere.
    pub fn held_by_all(&self) -> Option<i64> {
        if self.role != Role::Leader {
            return None;
        }
        let own = self.log.durable_end().min(self.log.last().0);
        Some(self.progress.values().map(|p| p.match_end).fold(own, i64::min))
    }

    /// On a leader: ticks since follower `id` last answered (counted from when this node became
    /// leader). None elsewhere, or for a node outside the group.
    pub fn silent_ticks(&self, id: NodeId) -> Option<u32> {
        (self.role == Role::Leader).then(|| self.progress.get(&id).map(|p| p.silent_ticks)).flatten()
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.hard.term
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    /// End offset of the committed prefix (the high watermark).
    pub fn committed(&self) -> i64 {
        self.committed
    }
    pub fn hard_state(&self) -> HardState {
        self.hard
    }
    /// True once since the last call if the hard state changed and must be persisted.
    pub fn take_hard_state_dirty(&mut self) -> bool {
        std::mem::take(&mut self.hard_dirty)
    }

    /// The driver could not write the hard state and/or the configuration it took as dirty
    /// ([`Raft::take_hard_state_dirty`], [`Raft::take_config_dirty`]): they stay dirty, so the
    /// next round writes them again and no leader message leaves before they are on disk.
    pub fn persist_failed(&mut self, hard_state: bool, config: bool) {
        self.hard_dirty |= hard_state;
        self.config_dirty |= config;
    }

    /// The messages a leader may send before its own log is durable: all of a leader's, as long
    /// as its term and vote are on disk (a leader counts itself toward a commit only once its
    /// log is durable, so its appends may reach followers first: they persist in parallel).
    /// Empty for any other role, whose messages wait for the persist round.
    pub fn take_leader_messages(&mut self) -> Vec<Message> {
        if self.role == Role::Leader && !self.hard_dirty && !self.config_dirty {
            self.take_messages()
        } else {
            Vec::new()
        }
    }
    pub fn log(&self) -> &L {
        &self.log
    }
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.outbox)
    }

    fn send(&mut self, to: NodeId, body: Body) {
        self.outbox.push(Message { from: self.config.id, to, term: self.hard.term, body });
    }

    fn reset_timeout(&mut self) {
        self.elapsed = 0;
        self.timeout = self.config.election_ticks + self.rng.below(u64::from(self.config.election_ticks)) as u32;
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.hard.term {
            self.hard = HardState { term, voted_for: None };
            self.hard_dirty = true;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.progress.clear();
        self.transfer_to = None;
        self.reset_timeout();
    }

    fn others(&self) -> Vec<NodeId> {
        self.voters.iter().copied().filter(|&v| v != self.config.id).collect()
    }

    /// One unit of time passes (nothing happens in a quiet group).
    pub fn tick(&mut self) {
        if self.quiesced {
            return;
        }
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
                if self.elapsed >= self.config.election_ticks {
                    self.elapsed = 0;
                    self.transfer_to = None;
                    self.check_quorum();
                }
            }
            _ => {
                // A node outside the configuration follows, but never stands.
                if self.elapsed >= self.timeout && self.is_voter() {
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
        let term = self.hard.term + 1;
        for to in self.others() {
            self.outbox.push(Message { from: self.config.id, to, term, body: Body::PreVote { last_end, last_term } });
        }
        self.maybe_win_pre_vote();
    }

    /// Votes (or pre-votes) from a majority of the voters in effect.
    fn won(&self) -> bool {
        self.votes.iter().filter(|v| self.voters.contains(v)).count() >= quorum(self.voters.len())
    }

    fn maybe_win_pre_vote(&mut self) {
        if self.role == Role::PreCandidate && self.won() {
            self.campaign_now();
        }
    }

    fn campaign_now(&mut self) {
        self.campaign_with(false);
    }

    fn campaign_with(&mut self, transfer: bool) {
        self.role = Role::Candidate;
        self.hard = HardState { term: self.hard.term + 1, voted_for: Some(self.config.id) };
        self.hard_dirty = true;
        self.leader = None;
        self.votes = BTreeSet::from([self.config.id]);
        self.reset_timeout();
        let (last_end, last_term) = self.last_position();
        for to in self.others() {
            self.send(to, Body::Vote { last_end, last_term, transfer });
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
        self.leader = Some(self.config.id);
        self.elapsed = 0;
        self.heartbeat_elapsed = 0;
        let (last_end, _) = self.log.last();
        self.progress = self.others().into_iter().map(|id| (id, Progress::probing(last_end))).collect();
        // An entry of the new term, so entries of earlier terms can commit under it (an empty
        // log has none: everything before its start is committed).
        self.term_start = last_end;
        if last_end > self.log.start() {
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
        self.wake();
        self.idle_heartbeats = 0;
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

    /// Waits `ticks` longer than usual before this node's next election (a new group's other
    /// replicas, so that its preferred leader, retrying, wins: leaders spread as placed).
    pub fn defer_election(&mut self, ticks: u32) {
        self.timeout = self.timeout.saturating_add(ticks);
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
        true
    }

    fn maybe_send_timeout_now(&mut self) {
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
        if self.role != Role::Leader && self.is_voter() {
            self.wake();
            self.start_pre_vote();
        }
    }

    /// The driver made the log durable up to `log().durable_end()`.
    pub fn on_persisted(&mut self) {
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    fn send_append(&mut self, to: NodeId) {
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
            // Not a boundary of ours (a stale hint): back up to one that is.
            let back = self.log.boundary_before(prev_end).unwrap_or(self.log.start());
            let p = self.progress.get_mut(&to).expect("progress");
            p.next_end = back.max(p.match_end);
            if p.next_end != prev_end {
                self.send_append(to);
            }
            return;
        };
        let entries = if prev_end < last_end { self.log.entries_from(prev_end, APPEND_MAX_BYTES) } else { Vec::new() };
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

    fn broadcast_heartbeat(&mut self) {
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
                p.next_end = p.match_end;
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

    fn maybe_commit(&mut self) {
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
    /// (groups with [`Config::eager_commit`]).
    fn tell_commit(&mut self, id: NodeId) {
        let Some(p) = self.progress.get_mut(&id) else { return };
        let commit = self.committed.min(p.match_end);
        if commit > p.told_commit {
            p.told_commit = commit;
            let sent_end = p.next_end;
            self.send(id, Body::Heartbeat { commit, sent_end, quiesce: false });
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
    fn reset_term(&self) -> Option<Term> {
        let start = self.log.start();
        self.changes.iter().find(|c| c.end == start).map(|c| c.term)
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

    fn up_to_date(&self, last_end: i64, last_term: Term) -> bool {
        let (our_end, our_term) = self.last_position();
        last_term > our_term || last_term == our_term && last_end >= our_end
    }

    fn in_lease(&self) -> bool {
        self.leader.is_some() && self.elapsed < self.config.election_ticks
    }

    /// Handles one message (a quiet group wakes for anything but what keeps it quiet).
    pub fn step(&mut self, msg: Message) {
        if !self.quiesced {
            return self.step_awake(msg);
        }
        if !self.keeps_quiet(&msg) {
            self.wake();
            return self.step_awake(msg);
        }
        let before = (self.hard.term, self.leader, self.role);
        self.step_awake(msg);
        if (self.hard.term, self.leader, self.role) != before {
            self.wake();
        }
    }

    fn step_awake(&mut self, msg: Message) {
        match &msg.body {
            Body::Forward { entry } => {
                if self.role == Role::Leader {
                    let _ = self.propose(entry);
                }
                return;
            }
            Body::PreVote { last_end, last_term } => {
                if self.leader == Some(msg.from) && self.role == Role::Follower && msg.term > self.hard.term {
                    // Our leader stands for election: it no longer leads (it lost its
                    // quorum), so its lease is over here too.
                    self.leader = None;
                }
                let granted = msg.term > self.hard.term && !self.in_lease() && self.up_to_date(*last_end, *last_term);
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
                self.outbox.push(Message {
                    from: self.config.id,
                    to: msg.from,
                    term,
                    body: Body::PreVoteReply { granted },
                });
                return;
            }
            Body::PreVoteReply { granted } => {
                if self.role == Role::PreCandidate && msg.term == self.hard.term + 1 && *granted {
                    self.votes.insert(msg.from);
                    self.maybe_win_pre_vote();
                } else if !granted && msg.term > self.hard.term {
                    self.become_follower(msg.term, None);
                }
                return;
            }
            Body::Vote { transfer: false, .. } if msg.term > self.hard.term && self.in_lease() => return,
            _ => {}
        }
        if msg.term > self.hard.term {
            let leader = matches!(msg.body, Body::Append { .. } | Body::Heartbeat { .. } | Body::Reset { .. })
                .then_some(msg.from);
            self.become_follower(msg.term, leader);
        } else if msg.term < self.hard.term {
            if matches!(msg.body, Body::Append { .. } | Body::Heartbeat { .. } | Body::Reset { .. }) {
                // Tell a deposed leader about the newer term.
                let end = self.log.last().0;
                self.send(msg.from, Body::AppendReply { accepted: false, end });
            }
            return;
        }
        match msg.body {
            Body::Vote { last_end, last_term, .. } => {
                let can_vote = self.hard.voted_for.is_none_or(|v| v == msg.from) && self.leader.is_none();
                let granted = can_vote && self.up_to_date(last_end, last_term);
                if granted {
                    self.hard.voted_for = Some(msg.from);
                    self.hard_dirty = true;
                    self.reset_timeout();
                }
                self.send(msg.from, Body::VoteReply { granted });
            }
            Body::VoteReply { granted } => {
                if self.role == Role::Candidate && granted {
                    self.votes.insert(msg.from);
                    self.maybe_win_vote();
                }
            }
            Body::Append { prev_end, prev_term, entries, commit } => {
                self.become_follower(msg.term, Some(msg.from));
                self.handle_append(msg.from, prev_end, prev_term, entries, commit);
            }
            Body::Heartbeat { commit, sent_end, quiesce } => {
                self.become_follower(msg.term, Some(msg.from));
                if commit > self.committed && commit <= self.log.last().0 && self.log.term_at(commit).is_some() {
                    self.committed = commit;
                }
                let end = self.log.last().0;
                if quiesce {
                    self.follow_into_quiet(commit, sent_end);
                }
                self.send(msg.from, Body::HeartbeatReply { end, sent_end });
            }
            Body::Reset { start, start_term, voters } => {
                self.become_follower(msg.term, Some(msg.from));
                // Our entries up to `start` can only be trusted if we know them committed; an
                // uncommitted suffix reaching past `start` may differ from what the leader
                // deleted, so anything short of our commit point is dropped, not kept.
                if start > self.committed {
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
                self.send(msg.from, Body::AppendReply { accepted: true, end: start });
            }
            Body::AppendReply { accepted, end } => self.handle_append_reply(msg.from, accepted, end),
            Body::TimeoutNow => {
                if self.leader == Some(msg.from) && self.is_voter() && self.role == Role::Follower {
                    self.campaign_with(true);
                }
            }
            Body::HeartbeatReply { end, sent_end } => {
                if let Some(p) = self.progress.get_mut(&msg.from) {
                    p.recent = true;
                    p.silent_ticks = 0;
                    if p.mode == Mode::Replicate && p.inflight > 0 && end < sent_end && sent_end <= p.next_end {
                        // Appends sent before the heartbeat never reached the follower's log.
                        p.mode = Mode::Probe;
                        p.next_end = p.match_end;
                        p.inflight = 0;
                    }
                    let lagging = p.match_end < self.log.last().0;
                    if lagging && p.inflight == 0 {
                        self.send_append(msg.from);
                    }
                }
            }
            Body::PreVote { .. } | Body::PreVoteReply { .. } | Body::Forward { .. } => {
                unreachable!("handled above")
            }
        }
    }

    fn handle_append(&mut self, leader: NodeId, prev_end: i64, prev_term: Term, entries: Vec<Bytes>, commit: i64) {
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

    fn handle_append_reply(&mut self, from: NodeId, accepted: bool, end: i64) {
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
