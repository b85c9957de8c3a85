//! What a shard's logs hold in memory, counted against the shard's budgets.
//!
//! ```text
//!   MemoryBudget (one per shard, shared by every log its storage opens)
//!     write buffers      tails, write-behinds in flight, spares    counted by AlignedBuf
//!     replication cache  recent batches kept for followers          counted by the logs
//! ```
//! Nothing here is sized per partition: a log takes buffers as its appends need them and gives
//! them back when it goes idle (`Log::release_idle_memory`), so an idle partition holds a few
//! KiB, not megabytes. Past the write-buffer limit a log hands its tail to the device before
//! growing it and keeps no spare buffers; past the replication-cache limit a log keeps no more
//! recent batches (its followers read them from the segment). Both limits are strict for what
//! can wait; a batch larger than a whole buffer still goes through.
//!
//! Lives on one shard (`Rc` inside), like the storage that carries it.

use std::cell::Cell;
use std::rc::Rc;

/// Bytes a fresh tail buffer holds before it grows (doubling, as appends need), and what an
/// idle log's tail shrinks back to: one block, the partial one an idle log keeps.
pub const TAIL_FIRST_BYTES: usize = super::DIRECT_IO_ALIGNMENT;

#[derive(Debug, Default)]
struct Inner {
    write_buffers: Cell<usize>,
    write_buffers_peak: Cell<usize>,
    write_buffers_limit: Cell<usize>,
    replication_cache: Cell<usize>,
    replication_cache_limit: Cell<usize>,
    /// Times a log handed its tail off early, or kept no spare, because of the limit.
    write_buffer_refusals: Cell<u64>,
    /// Recent batches not kept because the replication cache was full.
    replication_cache_refusals: Cell<u64>,
}

/// A shard's memory budgets (cheap to clone: every clone counts against the same figures).
#[derive(Debug, Clone)]
pub struct MemoryBudget(Rc<Inner>);

/// The figures of a [`MemoryBudget`], for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryFigures {
    pub write_buffers_bytes: usize,
    pub write_buffers_peak_bytes: usize,
    pub write_buffers_limit_bytes: usize,
    pub write_buffer_refusals: u64,
    pub replication_cache_bytes: usize,
    pub replication_cache_limit_bytes: usize,
    pub replication_cache_refusals: u64,
}

impl Default for MemoryBudget {
    /// No limits (tools and tests that open a log alone).
    fn default() -> Self {
        MemoryBudget::new(usize::MAX, usize::MAX)
    }
}

impl MemoryBudget {
    pub fn new(write_buffers_limit: usize, replication_cache_limit: usize) -> Self {
        let inner = Inner::default();
        inner.write_buffers_limit.set(write_buffers_limit);
        inner.replication_cache_limit.set(replication_cache_limit);
        MemoryBudget(Rc::new(inner))
    }

    pub fn figures(&self) -> MemoryFigures {
        let i = &self.0;
        MemoryFigures {
            write_buffers_bytes: i.write_buffers.get(),
            write_buffers_peak_bytes: i.write_buffers_peak.get(),
            write_buffers_limit_bytes: i.write_buffers_limit.get(),
            write_buffer_refusals: i.write_buffer_refusals.get(),
            replication_cache_bytes: i.replication_cache.get(),
            replication_cache_limit_bytes: i.replication_cache_limit.get(),
            replication_cache_refusals: i.replication_cache_refusals.get(),
        }
    }

    /// An aligned buffer was allocated or grown (`AlignedBuf`).
    pub(super) fn add_write_buffer(&self, bytes: usize) {
        let now = self.0.write_buffers.get() + bytes;
        self.0.write_buffers.set(now);
        self.0.write_buffers_peak.set(self.0.write_buffers_peak.get().max(now));
    }

    /// An aligned buffer was freed.
    pub(super) fn remove_write_buffer(&self, bytes: usize) {
        let before = self.0.write_buffers.get();
        assert!(before >= bytes, "write buffers freed ({bytes}) beyond those counted ({before})");
        self.0.write_buffers.set(before - bytes);
    }

    /// True if `more` bytes of write buffers would pass the limit (counted as a refusal: the
    /// caller then does without).
    pub fn write_buffers_refuse(&self, more: usize) -> bool {
        let over = self.0.write_buffers.get().saturating_add(more) > self.0.write_buffers_limit.get();
        if over {
            self.0.write_buffer_refusals.set(self.0.write_buffer_refusals.get() + 1);
        }
        over
    }

    /// Takes `bytes` of the replication cache if they fit under the limit.
    pub fn reserve_cache(&self, bytes: usize) -> bool {
        let now = self.0.replication_cache.get() + bytes;
        if now > self.0.replication_cache_limit.get() {
            self.0.replication_cache_refusals.set(self.0.replication_cache_refusals.get() + 1);
            return false;
        }
        self.0.replication_cache.set(now);
        true
    }

    /// Gives back `bytes` of the replication cache.
    pub fn release_cache(&self, bytes: usize) {
        let before = self.0.replication_cache.get();
        assert!(before >= bytes, "replication cache released ({bytes}) beyond what was taken ({before})");
        self.0.replication_cache.set(before - bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::AlignedBuf;

    #[test]
    fn buffers_are_counted_while_they_live_and_the_limits_refuse_past_them() {
        let budget = MemoryBudget::new(64 << 10, 1000);
        let mut buf = AlignedBuf::counted(TAIL_FIRST_BYTES, &budget);
        assert_eq!(budget.figures().write_buffers_bytes, TAIL_FIRST_BYTES);
        buf.extend_from_slice(&[7; 20_000]);
        assert_eq!(budget.figures().write_buffers_bytes, buf.capacity(), "growth is counted");
        assert!(!budget.write_buffers_refuse(8192));
        assert!(budget.write_buffers_refuse(64 << 10));
        let peak = budget.figures().write_buffers_peak_bytes;
        drop(buf);
        assert_eq!(budget.figures().write_buffers_bytes, 0);
        assert!(peak >= 20_000);
        assert!(budget.reserve_cache(600));
        assert!(!budget.reserve_cache(600), "past the cache limit");
        budget.release_cache(600);
        assert!(budget.reserve_cache(1000));
        let figures = budget.figures();
        assert_eq!((figures.write_buffer_refusals, figures.replication_cache_refusals), (1, 1));
    }
}
