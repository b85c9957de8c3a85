//! The batches appended last, kept in memory for replication: a leader sends followers their
//! appends from here (shared, reference-counted buffers) instead of reading them back from the
//! segment, and terms of recent positions are looked up here instead of in segment headers.
//!
//! The batches are contiguous and end at the log end; the oldest are dropped beyond the log's
//! byte budget, and none is kept past the shard's replication cache (`MemoryBudget`): a batch
//! that does not fit empties this log's cache instead, and followers read from the segment. A
//! follower keeps the very buffers its leader's messages arrived in.

use bytes::Bytes;
use std::collections::VecDeque;

use super::batch::BatchHeader;
use crate::io::MemoryBudget;

/// One batch: its offsets, term (partitionLeaderEpoch) and stamped bytes.
#[derive(Debug, Clone)]
struct Entry {
    base: i64,
    end: i64,
    epoch: i32,
    bytes: Bytes,
}

#[derive(Debug, Default)]
pub struct Recent {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_bytes: usize,
    /// The shard's replication cache, which `bytes` counts against.
    shard: MemoryBudget,
}

impl Recent {
    /// Kept batches count against `shard`'s replication cache.
    pub fn new(shard: MemoryBudget) -> Self {
        Recent { entries: VecDeque::new(), bytes: 0, max_bytes: 0, shard }
    }

    /// Bytes of batches kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let e = self.entries.pop_front()?;
        self.forget(&e);
        Some(e)
    }

    fn pop_back(&mut self) -> Option<Entry> {
        let e = self.entries.pop_back()?;
        self.forget(&e);
        Some(e)
    }

    fn forget(&mut self, e: &Entry) {
        self.bytes -= e.bytes.len();
        self.shard.release_cache(e.bytes.len());
    }

    /// Keeps up to `max_bytes` of batches (0: none).
    pub fn set_budget(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
        self.trim();
    }

    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// A stamped batch just appended at the log end.
    pub fn push(&mut self, header: &BatchHeader, bytes: Bytes) {
        if self.max_bytes == 0 {
            return;
        }
        if self.entries.back().is_some_and(|e| e.end != header.base_offset) {
            // Not contiguous (cannot happen after truncate/clear are reported): start over.
            self.clear();
        }
        // Room under this log's budget first, then in the shard's cache; a batch the shard
        // cannot hold ends this log's run of kept batches (they must stay contiguous).
        while self.bytes + bytes.len() > self.max_bytes && self.pop_front().is_some() {}
        if bytes.len() > self.max_bytes || !self.shard.reserve_cache(bytes.len()) {
            self.clear();
            return;
        }
        self.bytes += bytes.len();
        let entry =
            Entry { base: header.base_offset, end: header.next_offset(), epoch: header.partition_leader_epoch, bytes };
        self.entries.push_back(entry);
    }

    fn trim(&mut self) {
        while self.bytes > self.max_bytes && self.pop_front().is_some() {}
    }

    /// Drops the batches ending at or before `end`.
    pub fn release_before(&mut self, end: i64) {
        while self.entries.front().is_some_and(|e| e.end <= end) {
            self.pop_front();
        }
    }

    /// The log lost every batch ending after `end`.
    pub fn truncate(&mut self, end: i64) {
        while self.entries.back().is_some_and(|e| e.end > end) {
            self.pop_back();
        }
    }

    pub fn clear(&mut self) {
        while self.pop_front().is_some() {}
        self.entries.shrink_to_fit();
    }

    fn index_of_base(&self, base: i64) -> Option<usize> {
        let i = self.entries.partition_point(|e| e.base < base);
        (self.entries.get(i)?.base == base).then_some(i)
    }

    fn index_of_end(&self, end: i64) -> Option<usize> {
        let i = self.entries.partition_point(|e| e.end < end);
        (self.entries.get(i)?.end == end).then_some(i)
    }

    /// Whole batches from the one starting at `from`, about `max_bytes` of them (at least one);
    /// None unless a batch here starts exactly at `from`.
    pub fn from(&self, from: i64, max_bytes: u64) -> Option<Vec<Bytes>> {
        let first = self.index_of_base(from)?;
        let mut out = Vec::new();
        let mut total = 0u64;
        for e in self.entries.range(first..) {
            if !out.is_empty() && total + e.bytes.len() as u64 > max_bytes {
                break;
            }
            total += e.bytes.len() as u64;
            out.push(e.bytes.clone());
        }
        Some(out)
    }

    /// Base offset and leader epoch of the batch ending exactly at `end`, if it is here.
    pub fn batch_ending_at(&self, end: i64) -> Option<(i64, i32)> {
        self.index_of_end(end).map(|i| (self.entries[i].base, self.entries[i].epoch))
    }
}

impl Recent {
    /// The invariants of the recent batches in a log ending at `log_end` (see `invariants.rs`):
    /// within their budget and the log, always; contiguous and counted exactly, in debug builds.
    pub(super) fn check_invariants(&self, log_end: i64) {
        let last = self.entries.back().map(|e| (e.base, e.end));
        assert!(
            self.bytes <= self.max_bytes && last.is_none_or(|(_, end)| end <= log_end),
            "log invariant (recent batches within their budget and the log): {} bytes of {}, last batch {last:?}, \
             log end {log_end}",
            self.bytes,
            self.max_bytes
        );
        if crate::buggify::expensive_checks() {
            let counted: usize = self.entries.iter().map(|e| e.bytes.len()).sum();
            assert!(
                counted == self.bytes,
                "log invariant (recent bytes counted exactly): {} counted, {counted} held",
                self.bytes
            );
            for (a, b) in self.entries.iter().zip(self.entries.iter().skip(1)) {
                assert!(
                    a.base < a.end && a.end == b.base && a.epoch <= b.epoch,
                    "log invariant (recent batches contiguous, epochs never falling): [{}, {}) of epoch {} then \
                     [{}, {}) of epoch {}",
                    a.base,
                    a.end,
                    a.epoch,
                    b.base,
                    b.end,
                    b.epoch
                );
            }
        }
    }
}

impl Drop for Recent {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{build_batch, stamp};

    fn batch(base: i64, records: usize, epoch: i32) -> (BatchHeader, Bytes) {
        let values: Vec<&[u8]> = (0..records).map(|_| &b"v"[..]).collect();
        let mut b = build_batch(0, &values);
        stamp(&mut b, base, epoch);
        (BatchHeader::parse(&b).unwrap(), Bytes::from(b))
    }

    #[test]
    fn keeps_the_last_batches_within_budget_and_follows_truncation() {
        let mut recent = Recent::default();
        let (h, b) = batch(0, 2, 1);
        recent.push(&h, b.clone());
        assert!(recent.from(0, 1).is_none(), "disabled: keeps nothing");
        let one = b.len();
        recent.set_budget(3 * one);
        for i in 0..5 {
            let (h, b) = batch(2 * i, 2, 1 + i as i32 / 3);
            recent.push(&h, b);
        }
        // Batches [4,6) [6,8) [8,10) are left.
        assert!(recent.from(2, u64::MAX).is_none());
        assert_eq!(recent.from(4, u64::MAX).unwrap().len(), 3);
        assert_eq!(recent.from(6, 1).unwrap().len(), 1, "at least one");
        assert!(recent.from(5, u64::MAX).is_none(), "not a batch start");
        assert_eq!(recent.batch_ending_at(8).map(|(_, epoch)| epoch), Some(2));
        assert_eq!(recent.batch_ending_at(10).map(|(base, _)| base), Some(8));
        assert_eq!(recent.batch_ending_at(9), None);
        recent.truncate(6);
        assert!(recent.from(6, u64::MAX).is_none());
        assert_eq!(recent.batch_ending_at(6).map(|(_, epoch)| epoch), Some(1));
        let (h, b) = batch(6, 1, 3);
        recent.push(&h, b);
        assert_eq!(recent.batch_ending_at(7).map(|(_, epoch)| epoch), Some(3));
        // A batch that does not follow: the cache starts over.
        let (h, b) = batch(20, 1, 3);
        recent.push(&h, b);
        assert!(recent.from(4, u64::MAX).is_none());
        assert_eq!(recent.from(20, u64::MAX).unwrap().len(), 1);
        recent.release_before(21);
        assert!(recent.from(20, u64::MAX).is_none(), "released");
    }

    #[test]
    fn logs_share_the_shards_cache_and_none_keeps_past_it() {
        let (h0, b0) = batch(0, 2, 1);
        let one = b0.len();
        let shard = MemoryBudget::new(usize::MAX, 3 * one);
        let (mut a, mut b) = (Recent::new(shard.clone()), Recent::new(shard.clone()));
        a.set_budget(10 * one);
        b.set_budget(10 * one);
        a.push(&h0, b0.clone());
        a.push(&batch(2, 2, 1).0, batch(2, 2, 1).1);
        b.push(&h0, b0);
        assert_eq!(shard.figures().replication_cache_bytes, 3 * one);
        // The cache is full: `b` keeps nothing more (and drops its run), `a` keeps its own.
        b.push(&batch(2, 2, 1).0, batch(2, 2, 1).1);
        assert!(b.from(0, u64::MAX).is_none() && b.from(2, u64::MAX).is_none());
        assert_eq!(shard.figures().replication_cache_bytes, 2 * one);
        assert_eq!(a.from(0, u64::MAX).unwrap().len(), 2);
        a.release_before(4);
        drop(b);
        assert_eq!(shard.figures().replication_cache_bytes, 0, "every release is given back");
        assert_eq!(shard.figures().replication_cache_refusals, 1);
    }
}
