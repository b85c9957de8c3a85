//! Cutting the log: truncation at an offset (a follower dropping entries its leader does not
//! have), a reset to an empty log at any offset, the roll that seals the active segment, and
//! retention (whole oldest segments by age or size, or every segment below a snapshot).

use super::segment::{file_name, INDEX_SUFFIX, TIME_INDEX_SUFFIX};
use super::txn::TXN_INDEX_SUFFIX;
use super::{io_context, next_sync_epoch, Log, LogError, RetentionOutcome};
use crate::io::{AlignedBuf, Storage, StorageFile};

impl<S: Storage> Log<S> {
    /// Removes every batch holding an offset >= `offset` (a batch straddling it goes whole) and
    /// makes the cut durable. Returns the new log end offset. Below the log start, the log is
    /// emptied and restarts at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64, LogError> {
        self.check_usable()?;
        let result = self.truncate_inner(offset);
        if let Ok(end) = result {
            self.recent.truncate(end);
            while self.positions.back().is_some_and(|p| p.end > end) {
                self.positions.pop_back();
            }
        } else {
            self.recent.clear();
            self.positions.clear();
        }
        let result = self.poison_on_error(result);
        self.checked(result)
    }

    fn truncate_inner(&mut self, offset: i64) -> Result<i64, LogError> {
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        self.write_tail_before_cut(false)?;
        // Rebuilt when next asked for, from the files of the segments left whole.
        self.txns = None;
        let restart = offset <= self.log_start_offset();
        let keep = if restart { 0 } else { self.segment_index_for(offset) };
        while self.segments.len() > keep + 1 {
            let segment = self.segments.pop().expect("more than one segment");
            self.remove_segment_files(segment.base_offset)?;
        }
        if restart {
            let segment = self.segments.pop().expect("one segment");
            self.remove_segment_files(segment.base_offset)?;
            self.storage.sync_dir(&self.dir).map_err(io_context(|| format!("syncing {}", self.dir.display())))?;
            let fresh = self.create_segment(offset)?;
            self.segments.push(fresh);
        } else {
            self.storage.sync_dir(&self.dir).map_err(io_context(|| format!("syncing {}", self.dir.display())))?;
            let interval = self.config.index_interval_bytes;
            let max_batch_bytes = self.config.max_batch_bytes;
            let base = self.segments[keep].base_offset;
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX] {
                let path = self.dir.join(file_name(base, suffix));
                if self.storage.exists(&path) {
                    self.storage.remove(&path).map_err(io_context(|| format!("removing {}", path.display())))?;
                }
            }
            let segment = &mut self.segments[keep];
            let path = segment.path.clone();
            let cut = segment.find_offset(offset).map_err(io_context(|| format!("reading {}", path.display())))?;
            let new_size = cut.map_or(segment.size, |located| located.position);
            segment.file.set_len(new_size).map_err(io_context(|| format!("truncating {}", path.display())))?;
            segment.file.sync_data().map_err(io_context(|| format!("syncing {}", path.display())))?;
            segment
                .recover(interval, max_batch_bytes)
                .map_err(io_context(|| format!("rescanning {}", path.display())))?;
        }
        self.reload_tail()?;
        let end = self.log_end_offset();
        self.written_offset = end;
        self.durable_offset = self.durable_offset.min(end);
        self.sync_epoch = next_sync_epoch();
        self.truncations += 1;
        Ok(end)
    }

    /// Empties the log and starts it again at `offset`, which may lie past the log end (a
    /// follower catching up with a leader whose log now starts beyond it).
    pub fn reset_to(&mut self, offset: i64) -> Result<(), LogError> {
        self.check_usable()?;
        self.recent.clear();
        self.positions.clear();
        let result = self.reset_inner(offset);
        let result = self.poison_on_error(result);
        self.checked(result)
    }

    fn reset_inner(&mut self, offset: i64) -> Result<(), LogError> {
        self.write_tail_before_cut(false)?;
        self.txns = None;
        while let Some(segment) = self.segments.pop() {
            self.remove_segment_files(segment.base_offset)?;
        }
        self.storage.sync_dir(&self.dir).map_err(io_context(|| format!("syncing {}", self.dir.display())))?;
        let fresh = self.create_segment(offset)?;
        self.segments.push(fresh);
        self.reload_tail()?;
        self.written_offset = offset;
        self.durable_offset = offset;
        self.sync_epoch = next_sync_epoch();
        self.truncations += 1;
        Ok(())
    }

    /// Writes the tail before the active segment is cut or removed (a roll, a truncation, a
    /// reset): no zeros ahead, the cut would take them straight away. The cut's own
    /// `reload_tail` or the roll resets `zeroed_to`.
    fn write_tail_before_cut(&mut self, sync: bool) -> Result<(), LogError> {
        self.zeroed_to = u64::MAX;
        self.write_tail(sync)
    }

    /// Seals the active segment (data synced and cut to its logical size, indexes written) and
    /// starts a new one at the log end offset.
    pub(super) fn roll(&mut self) -> Result<(), LogError> {
        self.write_tail_before_cut(true)?;
        self.sync_epoch = next_sync_epoch();
        let next_offset = self.log_end_offset();
        let active = self.segments.last_mut().expect("a log always has a segment");
        let path = active.path.clone();
        // Cuts O_DIRECT padding and gives back blocks reserved past the end.
        active.file.set_len(active.size).map_err(io_context(|| format!("cutting {} to size", path.display())))?;
        active.file.sync_data().map_err(io_context(|| format!("syncing {}", path.display())))?;
        // Sealed: read from now on, never written (compaction writes a new file).
        active.file.release_writer();
        active
            .persist_indexes(&self.storage, &self.dir)
            .map_err(io_context(|| format!("writing indexes of {}", path.display())))?;
        let base = active.base_offset;
        let (offset_index, time_index) =
            self.map_indexes(base).map_err(io_context(|| format!("mapping indexes of {}", path.display())))?;
        let active = self.segments.last_mut().expect("a log always has a segment");
        active.offset_index = offset_index;
        active.time_index = time_index;
        let segment = self.create_segment(next_offset)?;
        self.segments.push(segment);
        self.seal_transactions()?;
        let old = std::mem::replace(&mut self.tail, AlignedBuf::with_capacity(0));
        self.keep_spares(vec![old]);
        self.tail = self.take_buffer(crate::io::TAIL_FIRST_BYTES);
        self.preallocated_to = 0;
        self.zeroed_to = 0;
        self.tail_position = 0;
        Ok(())
    }

    /// Deletes whole oldest segments past `retention.ms` (against `now_ms`, given by the caller)
    /// or while the log exceeds `retention.bytes`. The active segment is never deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome, LogError> {
        self.apply_retention_below(now_ms, i64::MAX)
    }

    /// Retention that keeps every segment holding an offset at or past `limit_offset` (raft
    /// passes its commit point: uncommitted entries are never deleted).
    pub fn apply_retention_below(&mut self, now_ms: i64, limit_offset: i64) -> Result<RetentionOutcome, LogError> {
        self.delete_segments(now_ms, limit_offset, false)
    }

    /// Deletes every whole segment below `limit_offset`, whatever the retention settings (a
    /// state machine that snapshotted its state up to there no longer needs them).
    pub fn delete_below(&mut self, limit_offset: i64) -> Result<RetentionOutcome, LogError> {
        self.delete_segments(0, limit_offset, true)
    }

    fn delete_segments(&mut self, now_ms: i64, limit_offset: i64, all: bool) -> Result<RetentionOutcome, LogError> {
        self.check_usable()?;
        let result = self.delete_segments_inner(now_ms, limit_offset, all);
        self.checked(result)
    }

    fn delete_segments_inner(
        &mut self,
        now_ms: i64,
        limit_offset: i64,
        all: bool,
    ) -> Result<RetentionOutcome, LogError> {
        let mut outcome = RetentionOutcome::default();
        if !all && !self.config.cleanup_policy.deletes() {
            return Ok(outcome);
        }
        // The last segment holding entries stays: a log never empties by retention, so its
        // last entry (and that entry's term) stays known.
        while self.segments.len() > 1
            && self.segments[0].next_offset <= limit_offset
            && self.segments[1..].iter().any(|s| s.next_offset > s.base_offset)
        {
            let oldest = &self.segments[0];
            let expired = all
                || self.config.retention_ms >= 0
                    && oldest.max_timestamp >= 0
                    && oldest.max_timestamp < now_ms.saturating_sub(self.config.retention_ms);
            let oversized = self.config.retention_bytes >= 0
                && self.size_bytes() - oldest.size >= self.config.retention_bytes as u64;
            if !expired && !oversized {
                break;
            }
            let segment = self.segments.remove(0);
            outcome.deleted_segments += 1;
            outcome.deleted_bytes += segment.size;
            let result = self.remove_segment_files(segment.base_offset);
            self.poison_on_error(result)?;
        }
        if outcome.deleted_segments > 0 {
            self.trim_transactions();
            let result =
                self.storage.sync_dir(&self.dir).map_err(io_context(|| format!("syncing {}", self.dir.display())));
            self.poison_on_error(result)?;
        }
        Ok(outcome)
    }
}
