//! The invariants of a [`Log`], checked after every public call that changes it (a violated one
//! is a bug: the log stops with the invariant named and the values that broke it). A poisoned
//! log is not checked: it refuses every call until reopened, and what it holds is recovery's
//! business then.
//!
//! Always (O(1)):
//! - `log_start_offset <= active segment's base <= durable_offset <= written_offset <=
//!   log_end_offset` (the module docs' diagram; a roll syncs what it seals);
//! - the offsets only move forward between truncations (a truncation or reset may cut them back);
//! - the segment before the active one ends where the active one starts;
//! - the active segment: readable bytes within its size, and the tail buffer holds its bytes from
//!   `tail_position` (a block boundary) to its size; a block held back lies before the tail; a
//!   flush's partial write is among the write-behinds submitted;
//! - the positions of the last batches end at or before the log end, and whatever is appended
//!   but not written is among them (the lookups of terms past the written offset rely on it);
//! - the recent batches end at or before the log end, within their byte budget;
//! - flush and sync tickets target offsets that never fall between truncations (checked as they
//!   are issued, in `flush.rs`).
//!
//! In debug builds and in simulations ([`crate::buggify::expensive_checks`]), O(log): every segment's offsets contiguous with
//! the next one's, sealed segments non-empty and wholly readable; the active segment's indexes
//! strictly increasing and within it; the positions in order, within their segments, their epochs
//! never falling, contiguous past the written offset; the recent batches contiguous and their
//! byte count exact.

use super::Log;
use crate::io::{Storage, StorageFile};

/// The offsets as of the last invariant check.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Watermarks {
    truncations: u64,
    start: i64,
    durable: i64,
    written: i64,
    end: i64,
}

impl<S: Storage> Log<S> {
    /// Checks the invariants (see the module docs); called at the end of each public call that
    /// changes the log.
    pub(super) fn check_invariants(&mut self) {
        if self.poisoned.is_some() {
            return;
        }
        self.check_offsets();
        self.check_tail();
        self.check_positions();
        self.recent.check_invariants(self.log_end_offset());
        if crate::buggify::expensive_checks() {
            self.check_expensive();
        }
        self.watermarks = self.current_watermarks();
    }

    /// [`Log::check_invariants`] on the way out of a call, whatever its outcome.
    pub(super) fn checked<T, E>(&mut self, result: Result<T, E>) -> Result<T, E> {
        self.check_invariants();
        result
    }

    fn current_watermarks(&self) -> Watermarks {
        Watermarks {
            truncations: self.truncations,
            start: self.log_start_offset(),
            durable: self.durable_offset,
            written: self.written_offset,
            end: self.log_end_offset(),
        }
    }

    fn check_offsets(&self) {
        let now = self.current_watermarks();
        let base = self.active().base_offset;
        assert!(
            now.start <= base && base <= now.durable && now.durable <= now.written && now.written <= now.end,
            "log invariant (start <= active base <= durable <= written <= end): {}: start {}, active base {base}, \
             durable {}, written {}, end {}",
            self.dir.display(),
            now.start,
            now.durable,
            now.written,
            now.end
        );
        let before = self.watermarks;
        assert!(
            now.truncations != before.truncations
                || now.start >= before.start
                    && now.durable >= before.durable
                    && now.written >= before.written
                    && now.end >= before.end,
            "log invariant (offsets never fall but by a truncation): {}: {before:?} then {now:?}",
            self.dir.display()
        );
        if let [.., sealed, active] = &self.segments[..] {
            assert!(
                sealed.next_offset == active.base_offset,
                "log invariant (segments contiguous): {}: the segment at {} ends at {}, the active one starts at {}",
                self.dir.display(),
                sealed.base_offset,
                sealed.next_offset,
                active.base_offset
            );
        }
    }

    fn check_tail(&self) {
        let active = self.active();
        let alignment = active.file.write_alignment() as u64;
        let tail_end = self.tail_position + self.tail.len() as u64;
        assert!(
            active.readable_size <= active.size
                && tail_end == active.size
                && self.tail_position.is_multiple_of(alignment),
            "log invariant (the tail holds the active segment's bytes from a block boundary to its size): {}: \
             readable {}, size {}, tail at {} of {} bytes (blocks of {alignment})",
            self.dir.display(),
            active.readable_size,
            active.size,
            self.tail_position,
            self.tail.len()
        );
        if let Some((position, _)) = &self.held_block {
            assert!(
                *position < self.tail_position && position.is_multiple_of(alignment),
                "log invariant (a held block lies before the tail): {}: held at {position}, tail at {}",
                self.dir.display(),
                self.tail_position
            );
        }
        if let Some(seq) = self.partial_behind {
            assert!(
                seq <= self.behind_submitted,
                "log invariant (a partial write is among those submitted): {}: write {seq}, submitted {}",
                self.dir.display(),
                self.behind_submitted
            );
        }
    }

    fn check_positions(&self) {
        let (written, end) = (self.written_offset, self.log_end_offset());
        let last = self.positions.back().map(|p| (p.base, p.end));
        assert!(
            last.is_none_or(|(_, last_end)| last_end <= end),
            "log invariant (positions within the log): {}: last position {last:?}, end {end}",
            self.dir.display()
        );
        if written < end {
            let first = self.positions.front().map(|p| (p.base, p.end));
            assert!(
                first.is_some_and(|(base, _)| base <= written) && last.is_some_and(|(_, last_end)| last_end == end),
                "log invariant (every batch not yet written has its position): {}: written {written}, end {end}, \
                 positions from {first:?} to {last:?}",
                self.dir.display()
            );
        }
    }

    /// What walks the segments, the active index, the positions and the recent batches: debug
    /// builds only.
    fn check_expensive(&self) {
        let dir = self.dir.display();
        let n = self.segments.len();
        for (i, segment) in self.segments.iter().enumerate() {
            let sealed = i + 1 < n;
            assert!(
                segment.base_offset <= segment.next_offset
                    && (!sealed
                        || segment.base_offset < segment.next_offset
                            && segment.readable_size == segment.size
                            && segment.next_offset == self.segments[i + 1].base_offset),
                "log invariant (segments contiguous, sealed ones non-empty and readable): {dir}: segment {i} of {n} \
                 at {} ends at {} (readable {} of {} bytes), next starts at {:?}",
                segment.base_offset,
                segment.next_offset,
                segment.readable_size,
                segment.size,
                self.segments.get(i + 1).map(|s| s.base_offset)
            );
        }
        let active = self.active();
        let span = active.next_offset - active.base_offset;
        assert!(
            active.offset_index.is_sane(active.size, span) && active.time_index.is_sane(span),
            "log invariant (index entries strictly increasing, within the segment): {dir}: the active segment at \
             {} ({} bytes, {span} offsets) has {} offset and {} time entries",
            active.base_offset,
            active.size,
            active.offset_index.len(),
            active.time_index.len()
        );
        self.check_positions_in_order();
    }

    /// Positions in order, each within its segment, their epochs never falling, contiguous past
    /// the written offset up to the log end.
    fn check_positions_in_order(&self) {
        let dir = self.dir.display();
        let start = self.log_start_offset();
        let mut previous: Option<&super::Position> = None;
        for p in &self.positions {
            // Positions of batches that retention or a truncation below the start took may name
            // segments gone; they are never looked up again (lookups begin at the start).
            let segment = self.segments.iter().find(|s| s.base_offset == p.segment);
            assert!(
                p.base < p.end
                    && (p.end <= start
                        || segment.is_some_and(|s| {
                            s.base_offset <= p.base && p.end <= s.next_offset && p.position + u64::from(p.len) <= s.size
                        })),
                "log invariant (a position lies within its segment): {dir}: {p:?}, segment {:?}",
                segment.map(|s| (s.base_offset, s.next_offset, s.size))
            );
            if let Some(q) = previous {
                assert!(
                    q.end <= p.base && q.epoch <= p.epoch && (q.end == p.base || p.base <= self.written_offset),
                    "log invariant (positions in order, epochs never falling, contiguous past the written offset \
                     {}): {dir}: {q:?} then {p:?}",
                    self.written_offset
                );
            }
            previous = Some(p);
        }
    }
}
