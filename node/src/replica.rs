//! One raft group on this node (a partition's, or the metadata log's): the engine's pure
//! [`Raft`] over the group's [`Log`], plus what the driver adds — the hard state file, and the
//! persist-then-send round.
//!
//! A round ([`Replica::persist`]): write the hard state if it changed (fdatasync), flush the log
//! (one write and one fdatasync for every append since the last round), tell raft, then hand
//! out the messages raft queued meanwhile. So no vote and no append acknowledgement leaves the
//! node before what it promises is on disk.

use braid_engine::io::UringStorage;
use braid_engine::log::{Log, LogConfig, LogError};
use braid_engine::raft::wire::GroupId;
use braid_engine::raft::{hard_state, Config, Message, NodeId, Raft, Role, Term};
use std::path::{Path, PathBuf};

/// Heartbeat every 2 ticks; an election after 10 to 20 ticks without a leader.
pub const HEARTBEAT_TICKS: u32 = 2;
pub const ELECTION_TICKS: u32 = 10;
/// File of the hard state, beside the group's segments.
pub const HARD_STATE_FILE: &str = "raft-state";

pub struct Replica {
    pub raft: Raft<Log<UringStorage>>,
    pub group: GroupId,
    storage: UringStorage,
    dir: PathBuf,
    hard_seq: u64,
    /// Leader and term as last reported by [`Replica::leader_changed`].
    seen_leader: (Option<NodeId>, Term),
}

impl Replica {
    /// Opens (recovers) the group's log in `dir` and its hard state.
    pub fn open(
        storage: UringStorage,
        dir: &Path,
        config: LogConfig,
        group: GroupId,
        id: NodeId,
        voters: Vec<NodeId>,
    ) -> Result<(Self, braid_engine::log::RecoveryReport), LogError> {
        let (log, report) = Log::open(storage.clone(), dir, config)?;
        let (hard_seq, hard) = hard_state::load(&storage, &dir.join(HARD_STATE_FILE));
        let seed = uuid::Uuid::new_v4().as_u128() as u64;
        let config = Config { id, voters, election_ticks: ELECTION_TICKS, heartbeat_ticks: HEARTBEAT_TICKS, seed };
        let raft = Raft::new(config, log, hard);
        let replica = Replica { raft, group, storage, dir: dir.to_path_buf(), hard_seq, seen_leader: (None, 0) };
        Ok((replica, report))
    }

    pub fn is_leader(&self) -> bool {
        self.raft.role() == Role::Leader
    }

    /// The persist round: hard state, then the log, then raft learns what is durable. Returns
    /// the messages that may now be sent; on an I/O failure, none (raft resends later), and the
    /// error.
    pub fn persist(&mut self) -> Result<Vec<Message>, String> {
        if self.raft.take_hard_state_dirty() {
            self.hard_seq += 1;
            let path = self.dir.join(HARD_STATE_FILE);
            if let Err(e) = hard_state::store(&self.storage, &path, self.hard_seq, self.raft.hard_state()) {
                // The vote or term is not durable: nothing may leave, and it is written again
                // on the next change.
                let _ = self.raft.take_messages();
                return Err(format!("writing {}: {e}", path.display()));
            }
        }
        if let Err(e) = self.raft.log_mut().flush() {
            let _ = self.raft.take_messages();
            return Err(e.to_string());
        }
        self.raft.on_persisted();
        Ok(self.raft.take_messages())
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
