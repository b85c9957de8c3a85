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
//!
//! The code, by responsibility (each file beside this one an `impl Raft` block):
//! - this file: the types, the [`Raft`] state, its construction ([`Raft::new`],
//!   [`Raft::restore`]), its accessors and the driver's side of a round (hard state, messages);
//! - `step.rs`: a message in ([`Raft::step`]): waking a quiet group, the term rules every
//!   message obeys, and the dispatch to the handlers below;
//! - `election.rs`: ticks and timeouts, check-quorum, pre-vote and vote, becoming follower,
//!   candidate or leader, leadership transfer and the driver's news of a lost peer;
//! - `replication.rs`: proposals, appends and heartbeats out and in (a follower's side, reset
//!   included), the leader's view of each follower's progress, and commit advance;
//! - `membership.rs`: the voters, single-step configuration changes and their record;
//! - `quiesce.rs`: idle groups going quiet and waking;
//! - `log.rs`, `wire.rs`, `hard_state.rs`, `config_file.rs`, `journal.rs`: the log the core
//!   needs, the message encoding, and what is persisted beside the log.

pub mod config_file;
mod election;
pub mod hard_state;
mod invariants;
pub mod journal;
pub mod log;
mod membership;
mod quiesce;
mod rejoin;
mod replication;
mod step;
pub mod wire;

pub use log::{RaftLog, Term};

use crate::log::LogError;
use crate::rng::SimRng;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

pub use crate::ids::NodeId;

/// Bytes of entries per append message, at most (at least one entry is always sent).
pub const APPEND_MAX_BYTES: u64 = 1 << 20;
/// Append messages a leader keeps in flight to one follower when replicating.
pub const INFLIGHT_MAX: usize = 8;
/// Heartbeats in a row without a follower's progress, appends in flight, before they are
/// taken for lost and the follower is probed again (a follower busy persisting a large
/// backlog is slow, not lost; heartbeat replies report real losses at once).
pub const STALL_HEARTBEATS: u32 = 5;
const _: () = assert!(INFLIGHT_MAX >= 1 && STALL_HEARTBEATS > quiesce::IDLE_HEARTBEATS);

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
    /// The driver deletes the log only below what every member held (the metadata group:
    /// `Txn::Truncatable`, from [`Raft::held_by_all`]), so a member whose own log has an entry
    /// ending at the leader's log start holds the committed prefix there: a reset keeps it
    /// (it may not have applied it yet) and drops only what follows. Partitions delete by
    /// retention, each replica on its own: a reset there starts the log over.
    pub prefix_held_by_all: bool,
    /// This node's data directory may have been replaced (it started empty, or the node found
    /// out it had): a group here with no hard state and an empty log may have held entries
    /// before, and rejoins before it votes (`rejoin.rs`). False: such a group is new here.
    pub replaced_disk: bool,
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
    /// The replica lost what it held and has not caught up yet: it neither votes nor stands
    /// (`rejoin.rs`).
    pub rejoining: bool,
    /// The replica has heard from a leader of the group (or led it): the group may have a
    /// history (`rejoin.rs`).
    pub knew_leader: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Would you vote for me at `term` (the message's)? My log ends at `last_end` in `last_term`;
    /// `knew_leader`: I have heard from a leader of this group (a replica whose disk was
    /// replaced votes for no such candidate before it caught up, `rejoin.rs`).
    PreVote {
        last_end: i64,
        last_term: Term,
        knew_leader: bool,
    },
    /// `knew_leader`: the voter has heard from a leader of the group (a fresh candidate counts
    /// no such grant, `rejoin.rs`).
    PreVoteReply {
        granted: bool,
        knew_leader: bool,
    },
    Vote {
        last_end: i64,
        last_term: Term,
        knew_leader: bool,
        /// Asked for by the leader handing over ([`Body::TimeoutNow`]): granted even by nodes
        /// that heard from that leader within the election timeout.
        transfer: bool,
    },
    VoteReply {
        granted: bool,
        knew_leader: bool,
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
    /// A piece of the state machine's snapshot, from a leader to a member whose log it reset
    /// past what that member had applied (the metadata group's tree): `transfer` names the
    /// snapshot, `data` its bytes from `offset` of `total`. Not raft's: the driver handles it.
    SnapshotChunk {
        transfer: u64,
        offset: u64,
        total: u64,
        data: Bytes,
    },
    /// The member has the snapshot's bytes up to `next` (the driver's, as `SnapshotChunk`).
    SnapshotAck {
        transfer: u64,
        next: u64,
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
    /// The state as of the last invariant check (`invariants.rs`).
    watermarks: invariants::Watermarks,
    /// Started with no hard state ever stored and an empty log, and not told yet whether the
    /// group has a history (`rejoin.rs`).
    fresh: bool,
    /// While rejoining: the commit point to reach (the leader's, when first heard).
    rejoin_target: Option<i64>,
    /// Started fresh and found the group had a history (`rejoin.rs`).
    found_history: bool,
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
        let mut rng = SimRng::new(config.seed ^ config.id.wire().rotate_left(17));
        let timeout = config.election_ticks + rng.below(u64::from(config.election_ticks)) as u32;
        let committed = log.start();
        let fresh = config.replaced_disk && hard == HardState::default() && log.last().0 == 0;
        // Entries come only from leaders (hard states written before `knew_leader` existed).
        let hard = HardState { knew_leader: hard.knew_leader || log.last().0 > 0, ..hard };
        let mut raft = Raft {
            fresh,
            rejoin_target: None,
            found_history: false,
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
            watermarks: invariants::Watermarks { committed, hard },
        };
        if raft.voters == [raft.config.id] {
            raft.campaign_now();
        }
        raft.check_invariants();
        raft
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
    /// The voter a leadership transfer under way goes to, if one is.
    pub fn transferring_to(&self) -> Option<NodeId> {
        self.transfer_to
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

    fn others(&self) -> Vec<NodeId> {
        self.voters.iter().copied().filter(|&v| v != self.config.id).collect()
    }
}
