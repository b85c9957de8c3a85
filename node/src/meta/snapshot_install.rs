//! A member the leader reset past what it had applied (its tree behind the log's start: it
//! lacked what the others had deleted below a tree snapshot, e.g. a replaced disk) gets the
//! leader's tree snapshot, in chunks, one in flight at a time (Raft's InstallSnapshot, pulled):
//! while stranded it asks the leader every few ticks (`SnapshotAck` with nothing received),
//! the leader answers each ask with the chunk from where the member is, and the member, once it
//! has every byte, checks the tree, puts it in place of its own (written durably as its
//! `tree.snap`) and applies the log from there. A lost chunk or ask is asked again; a leader
//! change starts over. The member serves no client meanwhile (it is not ready), so no client
//! sees its tree go back or jump.

use super::tree_snapshot::SnapshotWriting;
use super::MetaStore;
use crate::storage::NodeStorage;
use braid_engine::raft::{Body, Message, NodeId};
use braid_engine::tree::DataTree;
use bytes::Bytes;

/// Bytes of one chunk.
const CHUNK_BYTES: usize = 1 << 20;
/// Ticks between a stranded member's asks (or since its last chunk).
const ASK_TICKS: u32 = 10;

/// A snapshot on its way to a member (the leader's side).
pub(super) struct Sending {
    transfer: u64,
    bytes: Bytes,
}

/// A snapshot arriving (the member's side).
#[derive(Default)]
pub(super) struct Receiving {
    transfer: u64,
    bytes: Vec<u8>,
    /// Ticks since the last chunk or ask.
    quiet_ticks: u32,
}

impl<S: NodeStorage> MetaStore<S> {
    /// True while the tree is behind the log's start: nothing can apply until a snapshot is
    /// installed.
    pub(super) fn stranded(&self) -> bool {
        self.applied < self.replica.raft.log().log_start_offset()
    }

    /// Messages of snapshot transfers, for the round to send.
    pub fn take_snapshot_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.snapshot_out)
    }

    fn snapshot_message(&mut self, to: NodeId, body: Body) {
        let (from, term) = (self.replica.raft.id(), self.replica.raft.term());
        self.snapshot_out.push(Message { from, to, term, body });
    }

    /// Every tick: a stranded member asks the leader (again) for its snapshot.
    pub(super) fn snapshot_tick(&mut self) {
        if !self.stranded() {
            self.receiving = None;
            return;
        }
        let Some(leader) = self.replica.raft.leader().filter(|l| *l != self.replica.raft.id()) else { return };
        // At once the first time, then after ASK_TICKS without a chunk (each ask of nothing
        // makes the leader read its snapshot again).
        let first = || Receiving { quiet_ticks: ASK_TICKS, ..Receiving::default() };
        let receiving = self.receiving.get_or_insert_with(first);
        if receiving.quiet_ticks < ASK_TICKS {
            receiving.quiet_ticks += 1;
            return;
        }
        receiving.quiet_ticks = 0;
        let (transfer, next) = (receiving.transfer, receiving.bytes.len() as u64);
        self.snapshot_message(leader, Body::SnapshotAck { transfer, next });
    }

    /// The leader: a member has `next` bytes of `transfer` (0: it wants a snapshot).
    pub(super) fn snapshot_ack(&mut self, from: NodeId, transfer: u64, next: u64) {
        if !self.replica.is_leader() {
            return;
        }
        let current =
            self.sending.get(&from).filter(|s| s.transfer == transfer && transfer != 0).map(|s| s.bytes.clone());
        let ongoing = current.is_some();
        let (transfer, bytes) = match current {
            Some(bytes) => (transfer, bytes),
            None => {
                let bytes = match self.storage.read_whole(&self.snapshot_path) {
                    Ok(Some(bytes)) => Bytes::from(bytes),
                    Ok(None) => return,
                    Err(e) => {
                        tracing::error!(path = %self.snapshot_path.display(), error = %e, "reading the tree snapshot for a member failed");
                        return;
                    }
                };
                let transfer = self.env.random().max(1);
                tracing::info!(member = %from, bytes = bytes.len(), "sending the tree snapshot to a member the log was reset past");
                self.sending.insert(from, Sending { transfer, bytes: bytes.clone() });
                (transfer, bytes)
            }
        };
        let total = bytes.len() as u64;
        if next >= total && ongoing {
            self.sending.remove(&from);
            return;
        }
        let offset = if ongoing { next } else { 0 };
        let end = (offset as usize + CHUNK_BYTES).min(bytes.len());
        let data = bytes.slice(offset as usize..end);
        self.snapshot_message(from, Body::SnapshotChunk { transfer, offset, total, data });
    }

    /// A member: a chunk of the leader's snapshot.
    pub(super) fn snapshot_chunk(&mut self, from: NodeId, transfer: u64, offset: u64, total: u64, data: &[u8]) {
        if !self.stranded() {
            return;
        }
        let receiving = self.receiving.get_or_insert_with(Receiving::default);
        if receiving.transfer != transfer {
            if offset != 0 {
                // A chunk of a transfer this member does not hold the start of: ask again.
                self.snapshot_message(from, Body::SnapshotAck { transfer: 0, next: 0 });
                return;
            }
            // Grown as chunks come, not sized by what the message claims.
            *receiving = Receiving { transfer, ..Receiving::default() };
        }
        receiving.quiet_ticks = 0;
        if offset == receiving.bytes.len() as u64 && offset + data.len() as u64 <= total {
            receiving.bytes.extend_from_slice(data);
        }
        let next = receiving.bytes.len() as u64;
        if next < total {
            self.snapshot_message(from, Body::SnapshotAck { transfer, next });
            return;
        }
        let bytes = self.receiving.take().map(|r| r.bytes).unwrap_or_default();
        self.install_snapshot(bytes);
        // The leader forgets the transfer.
        self.snapshot_message(from, Body::SnapshotAck { transfer, next });
    }

    /// Puts the tree of a received snapshot in place of this member's, if it reaches the log.
    fn install_snapshot(&mut self, bytes: Vec<u8>) {
        let log_start = self.replica.raft.log().log_start_offset();
        let tree = match DataTree::from_snapshot(&bytes) {
            Ok(tree) if tree.last_zxid() >= log_start => tree,
            Ok(tree) => {
                tracing::warn!(
                    zxid = tree.last_zxid(),
                    log_start,
                    "a received tree snapshot is behind the log; asking again"
                );
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "a received tree snapshot does not read; asking again");
                return;
            }
        };
        let zxid = tree.last_zxid();
        tracing::info!(zxid, nodes = tree.node_count(), log_start, "tree installed from the leader's snapshot");
        self.tree = tree;
        self.applied = zxid;
        self.tree_stranded = false;
        self.dirty.all = true;
        self.kafka_changed = true;
        // Written as this member's own snapshot (the log below it may go once it is durable).
        let now = self.env.now_ms();
        let (done, outcome) = std::sync::mpsc::channel();
        let path = self.snapshot_path.clone();
        match self.storage.write_durably(&*self.env, "tree-snapshot", path, bytes, done) {
            Ok(_) => self.snapshot_writing = Some(SnapshotWriting::new(zxid, now, outcome)),
            Err(e) => tracing::error!(error = %e, "cannot write the installed tree snapshot; it stays in memory"),
        }
    }
}
