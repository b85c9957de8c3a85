//! A log's memory: what it holds, and giving it back when idle.
//!
//! ```text
//!   tail            the active segment's bytes past the last written block, in a buffer that
//!                   starts at TAIL_FIRST_BYTES and grows by doubling as appends need
//!   spare buffers   finished write-behind buffers kept for reuse (busy logs only)
//!   held block      a block held back behind a flush's write (decision 0001)
//!   recent batches  the replication cache (counted against the shard's limit)
//!   positions       where the last appended batches are (up to POSITIONS_KEPT)
//!   index           the active segment's index entries (sealed ones are mapped files)
//! ```
//! The write buffers count against the storage's `MemoryBudget` (the shard's): past its limit a
//! log hands its tail to the device before growing it ([`Log::make_room`]).

use super::{Log, LogError, POSITIONS_KEPT};
use crate::io::{AlignedBuf, Storage, StorageFile, TAIL_FIRST_BYTES};

/// Positions an idle log keeps: its last batches' terms are what raft asks for.
const POSITIONS_KEPT_IDLE: usize = 16;

/// What one log holds in memory, in bytes, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogMemory {
    pub tail: usize,
    pub spare_buffers: usize,
    pub recent: usize,
    pub positions: usize,
    pub index: usize,
}

impl LogMemory {
    pub fn total(&self) -> usize {
        self.tail + self.spare_buffers + self.recent + self.positions + self.index
    }
}

impl<S: Storage> Log<S> {
    /// What this log holds in memory now.
    pub fn memory(&self) -> LogMemory {
        let held = self.held_block.as_ref().map_or(0, |(_, b)| b.capacity());
        LogMemory {
            tail: self.tail.capacity() + held,
            spare_buffers: self.spare_buffers.iter().map(AlignedBuf::capacity).sum(),
            recent: self.recent.bytes(),
            positions: self.positions.capacity() * std::mem::size_of::<super::Position>(),
            index: self.active().offset_index.memory_bytes() + self.active().time_index.memory_bytes(),
        }
    }

    /// Gives back what an idle log does not need: spare buffers, a grown tail buffer (its
    /// partial last block moves to a small one), the recent batches (every follower has them),
    /// positions beyond the last few, the active segment's write descriptor. The tail and the
    /// descriptor only once everything appended is written and no write-behind is in flight;
    /// otherwise they are left for a later call. Returns the bytes given back.
    pub fn release_idle_memory(&mut self) -> Result<usize, LogError> {
        self.check_usable()?;
        let before = self.memory().total();
        self.spare_buffers.clear();
        self.spare_buffers.shrink_to_fit();
        self.recent.clear();
        let written = self.written_offset == self.log_end_offset();
        let in_flight = self.active().file.write_behind_pending() > 0 || self.held_block.is_some();
        if written && !in_flight && self.tail.capacity() > TAIL_FIRST_BYTES && self.tail.len() <= TAIL_FIRST_BYTES {
            let mut small = AlignedBuf::counted(TAIL_FIRST_BYTES, self.storage.memory());
            small.extend_from_slice(self.tail.as_slice());
            self.tail = small;
        }
        if !in_flight {
            self.segments.last_mut().expect("a log always has a segment").file.release_writer();
        }
        if written {
            while self.positions.len() > POSITIONS_KEPT_IDLE {
                self.positions.pop_front();
            }
            self.positions.shrink_to_fit();
        }
        self.check_invariants();
        Ok(before.saturating_sub(self.memory().total()))
    }

    /// Before `bytes` more are appended to the tail: if the tail would grow while the shard's
    /// write buffers are over their limit, its whole blocks go to the device first (a
    /// write-behind), so the append lands in a buffer that needs no growth, or a small one.
    pub(super) fn make_room(&mut self, bytes: usize) -> Result<(), LogError> {
        let needed = self.tail.len() + bytes;
        let alignment = self.active().file.write_alignment();
        if needed <= self.tail.capacity()
            || self.tail.len() < alignment
            || !self.storage.memory().write_buffers_refuse(needed - self.tail.capacity())
        {
            return Ok(());
        }
        let result = self.hand_off();
        self.poison_on_error(result)
    }
}

// Positions beyond the kept bound cannot build up: appends drop the oldest first.
const _: () = assert!(POSITIONS_KEPT_IDLE < POSITIONS_KEPT);
