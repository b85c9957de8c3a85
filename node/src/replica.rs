//! One raft group on this node (a partition's, or the metadata log's): the engine's pure
//! [`Raft`] over the group's [`Log`], plus what the driver adds — the hard state file, and the
//! persist-then-send round.
//!
//! A round ([`Replica::persist`]): write the hard state and the configuration if they changed
//! (fdatasync), flush the log
//! (one write and one fdatasync for every append since the last round), tell raft, then hand
//! out the messages raft queued meanwhile. So no vote and no append acknowledgement leaves the
//! node before what it promises is on disk. [`Replica::persist_begin`] and
//! [`Replica::persist_end`] split the round around an fdatasync run on another thread (the
//! metadata group's): the messages queued before the write leave when the sync ends, and those
//! queued during it wait for the next round, except a leader's, which may leave before its own
//! log is durable (`Raft::take_leader_messages`).

use crate::storage::NodeStorage;
use braid_engine::io::UringStorage;
use braid_engine::log::{FlushTicket, Log, LogConfig, LogError, SyncTicket};
use braid_engine::raft::wire::GroupId;
use braid_engine::raft::{config_file, hard_state, journal, Config, HardState, Message, NodeId, Raft, Role, Term};
use std::path::{Path, PathBuf};

/// Heartbeat every 2 ticks; an election after 10 to 20 ticks without a leader.
pub const HEARTBEAT_TICKS: u32 = 2;
pub const ELECTION_TICKS: u32 = 10;
// A follower hears several heartbeats within its shortest election timeout.
const _: () = assert!(HEARTBEAT_TICKS * 3 <= ELECTION_TICKS);
/// File of the hard state, beside the group's segments.
pub const HARD_STATE_FILE: &str = "raft-state";
/// Files (.0 and .1) of the configuration changes, beside the group's segments.
pub const CONFIG_FILE: &str = "raft-config";
/// Bytes of the last appended batches a replicated group keeps in memory at most, within its
/// shard's replication cache (`--replication-cache-bytes`): followers get their appends from
/// there (no segment read, no copy) unless they are further behind, or the cache was full.
pub const RECENT_BYTES: usize = 16 << 20;

/// How [`Replica::persist_begin`] (P = [`PendingPersist`]) or [`Replica::flush_begin`]
/// (P = [`PendingFlush`]) left the round.
pub enum Persist<P> {
    /// Nothing was left to sync: these messages may leave.
    Done(Vec<Message>),
    /// The log's writes or fdatasync must end first; the messages may leave now (a leader's:
    /// held back, they would reach followers after its later appends, out of order).
    Syncing(P, Vec<Message>),
}

/// A persist round waiting for its log's sync: `T` is a [`SyncTicket`] (the fdatasync runs on
/// another thread, [`Replica::persist_begin`]) or a [`FlushTicket`] (writes and fdatasync on the
/// shard's ring, [`Replica::flush_begin`]).
pub struct Pending<T> {
    ticket: T,
    /// What raft queued before the round's write: it leaves once the sync is done.
    messages: Vec<Message>,
    /// The log's truncation count when the round began.
    truncations: u64,
}

pub type PendingPersist = Pending<SyncTicket>;
pub type PendingFlush = Pending<FlushTicket>;

impl PendingPersist {
    /// The fdatasync; blocks (run it on a thread that may).
    pub fn sync(&self) -> std::io::Result<()> {
        self.ticket.sync()
    }

    /// The fdatasync as a closure, to run on another thread.
    pub fn syncer(&self) -> impl FnOnce() -> std::io::Result<()> + Send + 'static {
        self.ticket.syncer()
    }
}

pub struct Replica<S: NodeStorage = UringStorage> {
    pub raft: Raft<Log<S>>,
    pub group: GroupId,
    storage: S,
    dir: PathBuf,
    hard_seq: u64,
    config_seq: u64,
    /// Leader and term as last reported by [`Replica::leader_changed`].
    seen_leader: (Option<NodeId>, Term),
    /// What the log keeps of its recent batches now (none without followers).
    recent_budget: usize,
    /// The seed of raft's election timeouts (from the node's environment).
    seed: u64,
    /// The node's data directory may have been replaced (`Config::replaced_disk`).
    replaced_disk: bool,
}

impl<S: NodeStorage> Replica<S> {
    /// Opens (recovers) the group's log in `dir`, its hard state (its own file's, or
    /// `journaled`, the shard journal's, whichever is later) and its configuration (`voters`
    /// for a new group; what the group changed them to, if it did); the log is cut back to
    /// `cut` first if it reaches past it. `seed` seeds raft's randomized election timeouts;
    /// `replaced_disk` as raft's `Config::replaced_disk`.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        (seed, replaced_disk): (u64, bool),
        storage: S,
        dir: &Path,
        config: LogConfig,
        group: GroupId,
        id: NodeId,
        voters: Vec<NodeId>,
        cut: Option<i64>,
        journaled: Option<HardState>,
    ) -> Result<(Self, braid_engine::log::RecoveryReport), LogError> {
        let (mut log, report) = Log::open(storage.clone(), dir, config)?;
        if let Some(cut) = cut.filter(|&cut| log.log_end_offset() > cut) {
            log.truncate_to(cut)?;
        }
        let (hard_seq, hard) = hard_state::load(&storage, &dir.join(HARD_STATE_FILE));
        let hard = journaled.map_or(hard, |j| journal::newer(hard, j));
        let (config_seq, voters, changes) =
            config_file::load(&storage, &dir.join(CONFIG_FILE)).unwrap_or((0, voters, Vec::new()));
        // The metadata group's followers serve reads of what committed: they learn each commit at
        // once, and the group never goes quiet (it is one group, and it carries ZooKeeper
        // sessions' heartbeats). Partitions go quiet when idle: thousands of them cost no CPU.
        let metadata = group == GroupId::METADATA;
        let config = Config {
            id,
            voters,
            election_ticks: ELECTION_TICKS,
            heartbeat_ticks: HEARTBEAT_TICKS,
            seed,
            eager_commit: metadata,
            prefix_held_by_all: metadata,
            quiesce: !metadata,
            replaced_disk,
        };
        let mut raft = Raft::restore(config, log, hard, changes);
        let recent_budget = if raft.voters().len() > 1 { RECENT_BYTES } else { 0 };
        raft.log_mut().keep_recent(recent_budget);
        let replica = Replica {
            raft,
            group,
            storage,
            dir: dir.to_path_buf(),
            hard_seq,
            config_seq,
            seen_leader: (None, 0),
            recent_budget,
            seed,
            replaced_disk,
        };
        Ok((replica, report))
    }

    /// Opens the group's log again from disk, after an I/O failure poisoned it: what was durable
    /// is kept, raft starts over from its persisted hard state and configuration, and the
    /// leader sends again whatever was not durable. What was written past the last durable point
    /// is cut even if the files still show it: after a failed fdatasync the page cache may hold
    /// pages the disk never got (and a new descriptor's fdatasync would not say so).
    /// `voters` as for [`Replica::open`].
    /// `journaled`: the group's hard state in its shard's journal, if it has one there.
    pub fn reopen(
        &mut self,
        voters: Vec<NodeId>,
        journaled: Option<HardState>,
    ) -> Result<braid_engine::log::RecoveryReport, LogError> {
        let config = self.raft.log().config().clone();
        let dir = self.dir.clone();
        let durable = self.raft.log().durable_offset();
        self.raft.log_mut().quiesce();
        // A seed of its own, from the one before (LCG step): a reopened group does not
        // repeat the timeouts it had.
        let seed = self.seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let (replica, report) = Replica::open(
            (seed, self.replaced_disk),
            self.storage.clone(),
            &dir,
            config,
            self.group,
            self.raft.id(),
            voters,
            Some(durable),
            journaled,
        )?;
        *self = replica;
        Ok(report)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.role() == Role::Leader
    }

    /// The persist round: hard state, then the log, then raft learns what is durable. Returns
    /// the messages that may now be sent; on an I/O failure, none (raft resends later), and the
    /// error.
    pub fn persist(&mut self) -> Result<Vec<Message>, String> {
        self.persist_state()?;
        if let Err(e) = self.raft.log_mut().flush() {
            return Err(self.failed(e.to_string()));
        }
        self.raft.on_persisted();
        Ok(self.raft.take_messages())
    }

    /// A persist round failed: nothing raft queued may leave (it sends again later).
    fn failed(&mut self, error: String) -> String {
        let _ = self.raft.take_messages();
        error
    }

    /// The persist round with the log's fdatasync off this thread: the hard state and the
    /// configuration as in [`Replica::persist`], then the log is written; if that left anything
    /// to sync, the messages queued so far wait with the sync ([`Persist::Syncing`]) for
    /// [`Replica::persist_end`], and raft takes more appends and messages meanwhile.
    pub fn persist_begin(&mut self) -> Result<Persist<PendingPersist>, String> {
        self.persist_state()?;
        let begun = self.raft.log_mut().begin_sync();
        self.begin_round(begun)
    }

    /// The round once its log's sync began (or had nothing to do, or failed).
    fn begin_round<T>(&mut self, begun: Result<Option<T>, LogError>) -> Result<Persist<Pending<T>>, String> {
        match begun {
            Ok(Some(ticket)) => {
                let early = match crate::mutation::active(crate::mutation::Mutation::AckBeforeSync) {
                    true => self.raft.take_messages(),
                    false => self.raft.take_leader_messages(),
                };
                let pending =
                    Pending { ticket, messages: self.raft.take_messages(), truncations: self.raft.log().truncations() };
                Ok(Persist::Syncing(pending, early))
            }
            Ok(None) => {
                self.raft.on_persisted();
                Ok(Persist::Done(self.raft.take_messages()))
            }
            Err(e) => Err(self.failed(e.to_string())),
        }
    }

    /// Ends a round from [`Replica::persist_begin`] with its sync's outcome. Returns what may
    /// leave now: the messages queued before the sync, and a leader's later ones (which may
    /// leave before its own log is durable). Anything else raft queued during the sync may
    /// promise appends the sync did not cover: it waits for the next round.
    pub fn persist_end(
        &mut self,
        pending: PendingPersist,
        synced: std::io::Result<()>,
    ) -> Result<Vec<Message>, String> {
        let Pending { ticket, messages, truncations } = pending;
        let target = ticket.target();
        let ended = self.raft.log_mut().end_sync(ticket, synced).map(|_| ());
        self.end_round(ended, messages, target, truncations)
    }

    /// The end of a held round, its sync done (or failed): what leaves now is the messages
    /// queued before it, if the log is durable to `target` and was not cut meanwhile (a
    /// truncation voids the sync, and a follower's ack of entries it no longer holds must not
    /// leave: raft sends again), and a leader's messages queued since.
    fn end_round(
        &mut self,
        ended: Result<(), LogError>,
        mut messages: Vec<Message>,
        target: i64,
        truncations: u64,
    ) -> Result<Vec<Message>, String> {
        if let Err(e) = ended {
            return Err(self.failed(e.to_string()));
        }
        self.raft.on_persisted();
        let log = self.raft.log();
        if log.durable_offset() < target || log.truncations() != truncations {
            messages.clear();
        }
        messages.extend(self.raft.take_leader_messages());
        Ok(messages)
    }

    /// The persist round with the log's writes and fdatasync left running on the shard's ring
    /// (the shard goes on serving): as [`Replica::persist_begin`], ended by
    /// [`Replica::flush_poll`] once the device is done.
    pub fn flush_begin(&mut self) -> Result<Persist<PendingFlush>, String> {
        self.persist_state()?;
        let begun = self.raft.log_mut().begin_flush();
        self.begin_round(begun)
    }

    /// Moves a flush from [`Replica::flush_begin`] on; once it ended, what may leave (as
    /// [`Replica::persist_end`]) or the failure. `None` while the device works.
    pub fn flush_poll(&mut self, pending: &mut PendingFlush) -> Option<Result<Vec<Message>, String>> {
        let ended = match self.raft.log_mut().poll_flush(&mut pending.ticket) {
            Ok(false) => return None,
            Ok(true) => Ok(()),
            Err(e) => Err(e),
        };
        let messages = std::mem::take(&mut pending.messages);
        Some(self.end_round(ended, messages, pending.ticket.target(), pending.truncations))
    }

    /// Ends a flush from [`Replica::flush_begin`], waiting for the device (a shard stopping).
    pub fn flush_finish(&mut self, mut pending: PendingFlush) -> Result<Vec<Message>, String> {
        loop {
            if let Some(result) = self.flush_poll(&mut pending) {
                return result;
            }
            if let Err(e) = self.raft.log_mut().wait_flush(&pending.ticket) {
                return Err(self.failed(e.to_string()));
            }
        }
    }

    /// The hard state and the configuration if they changed (each written and synced), and the
    /// recent-batch budget.
    fn persist_state(&mut self) -> Result<(), String> {
        if self.raft.take_hard_state_dirty() {
            self.hard_seq += 1;
            let path = self.dir.join(HARD_STATE_FILE);
            if let Err(e) = hard_state::store(&self.storage, &path, self.hard_seq, self.raft.hard_state()) {
                // The vote or term is not durable: nothing may leave, and it is written again
                // next round.
                self.raft.persist_failed(true, false);
                return Err(self.failed(format!("writing {}: {e}", path.display())));
            }
        }
        // The configuration before the log: on restart, changes whose entry the log lost are
        // dropped, but an entry the log kept is never missing from the configuration.
        if self.raft.take_config_dirty() {
            self.config_seq += 1;
            let path = self.dir.join(CONFIG_FILE);
            let (base, changes) = self.raft.config_state();
            if let Err(e) = config_file::store(&self.storage, &path, self.config_seq, &base, &changes) {
                self.raft.persist_failed(false, true);
                return Err(self.failed(format!("writing {}: {e}", path.display())));
            }
        }
        // Only a group with followers needs its recent batches.
        let recent = if self.raft.voters().len() > 1 { RECENT_BYTES } else { 0 };
        if recent != self.recent_budget {
            self.recent_budget = recent;
            self.raft.log_mut().keep_recent(recent);
        }
        Ok(())
    }

    /// The leader and term if they changed since the last call.
    pub fn leader_changed(&mut self) -> Option<(Option<NodeId>, Term)> {
        let now = (self.raft.leader(), self.raft.term());
        (now != self.seen_leader).then(|| {
            self.seen_leader = now;
            now
        })
    }
}
