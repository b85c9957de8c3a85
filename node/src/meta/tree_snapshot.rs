//! The tree's snapshot on disk, and the log below it going: a round starts a snapshot once
//! enough transactions have applied since the last, serializes a slice of it per round, and a
//! thread of its own writes the bytes; once one is written, the metadata log below what both
//! the snapshot and every member hold is deleted. (The snapshot of Kafka's metadata that the
//! shards hold is `snapshot.rs`'s.)

use super::MetaStore;
use crate::storage::NodeStorage;
use braid_engine::tree::Txn;
use tokio::sync::oneshot;

/// The tree's snapshot, beside the metadata log.
pub(super) const TREE_SNAPSHOT: &str = "tree.snap";
/// What a round serializes of a running tree snapshot, at most: nodes (about 0.3 us each) or
/// bytes, so a round holds shard 0 for about a millisecond whatever the tree (the whole of a
/// million-node tree took 0.3 s).
const SNAPSHOT_SLICE_NODES: usize = 2048;
const SNAPSHOT_SLICE_BYTES: usize = 1 << 20;

/// A tree snapshot on its way to disk ([`MetaStore::start_snapshot`]).
pub(super) struct SnapshotWriting {
    /// The zxid the snapshot holds.
    zxid: i64,
    /// When the snapshot began (ms).
    started: i64,
    serialized_ms: u64,
    /// The writing thread's answer: the bytes written, or what failed.
    outcome: std::sync::mpsc::Receiver<Result<usize, String>>,
}

impl SnapshotWriting {
    /// A snapshot of `zxid` that a thread writes (from `started`, in ms), its outcome to come on
    /// `outcome`.
    pub(super) fn new(zxid: i64, started: i64, outcome: std::sync::mpsc::Receiver<Result<usize, String>>) -> Self {
        SnapshotWriting { zxid, started, serialized_ms: 0, outcome }
    }
}

impl<S: NodeStorage> MetaStore<S> {
    /// Serializes the next slice of the tree's running snapshot here; once the last is done,
    /// the storage writes the bytes off this thread (a new file synced, renamed over the old one:
    /// [`NodeStorage::write_durably`]): shard 0 serves clients meanwhile, and no round waits for more than one slice, whatever
    /// the tree's size. [`MetaStore::finish_snapshot`] collects the outcome.
    pub(super) fn snapshot_slice(&mut self) {
        let Some(zxid) = self.tree.snapshot_running() else { return };
        let Some(bytes) = self.tree.snapshot_step(SNAPSHOT_SLICE_NODES, SNAPSHOT_SLICE_BYTES) else { return };
        let now = self.env.now_ms();
        let started = self.snapshot_started.take().unwrap_or(now);
        let serialized_ms = (now - started).max(0) as u64;
        let path = self.snapshot_path.clone();
        let (done, outcome) = std::sync::mpsc::channel();
        let spawned = self.storage.write_durably(&*self.env, "tree-snapshot", path, bytes, done);
        match spawned {
            Ok(_) => self.snapshot_writing = Some(SnapshotWriting { zxid, started, serialized_ms, outcome }),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the tree snapshot's thread; trying again later");
                self.snapshot_due = zxid + self.snap_count / 2;
            }
        }
    }

    /// Takes the outcome of a snapshot being written, if it is there.
    pub(super) fn finish_snapshot(&mut self) {
        let Some(writing) = &self.snapshot_writing else { return };
        let outcome = match writing.outcome.try_recv() {
            Ok(outcome) => outcome,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err("the snapshot thread ended without an answer".into())
            }
        };
        let writing = self.snapshot_writing.take().expect("checked above");
        match outcome {
            Ok(bytes) => {
                self.snapshot_bytes = bytes as u64;
                // Only now may the log below it go.
                self.snapshot_zxid = writing.zxid;
                self.snapshot_due = writing.zxid + self.snap_count;
                tracing::info!(
                    zxid = writing.zxid,
                    bytes,
                    serialize_ms = writing.serialized_ms,
                    ms = (self.env.now_ms() - writing.started).max(0) as u64,
                    "tree snapshot written"
                );
            }
            Err(error) => {
                // The log keeps everything past the last snapshot written; tried again later.
                tracing::error!(%error, "writing the tree snapshot failed");
                self.snapshot_due = self.tree.last_zxid() + self.snap_count / 2;
            }
        }
    }

    /// Deletes the metadata log below what both the snapshot and every member hold; the
    /// leader tells the members how far they all hold it.
    pub(super) fn truncate_log(&mut self) {
        let below = self.truncatable.min(self.snapshot_zxid).min(self.applied);
        if below > self.replica.raft.log().log_start_offset() {
            match self.replica.raft.log_mut().delete_below(below) {
                Ok(outcome) if outcome.deleted_segments > 0 => {
                    tracing::info!(
                        below,
                        segments = outcome.deleted_segments,
                        "metadata log truncated below the tree snapshot"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "truncating the metadata log failed"),
            }
        }
        if let Some(held) = self.replica.raft.held_by_all() {
            let point = held.min(self.replica.raft.committed());
            if point - self.truncation_proposed >= self.snap_count && point > self.truncatable {
                self.truncation_proposed = point;
                let (reply, _) = oneshot::channel();
                self.propose(&Txn::Truncatable { below: point }, self.env.now_ms(), reply);
            }
        }
    }
}
