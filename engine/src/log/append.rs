//! Appending: a batch is checked, stamped with its offsets and leader epoch in the tail buffer,
//! and indexed; once the buffer holds `write_buffer_bytes`, its whole blocks go to the device as
//! a write-behind while appends go on. Write-behinds never overlap in flight: the partial last
//! block a flush wrote padded is written again only once that write ended (the blocks after it
//! may go first, the block itself held back meanwhile). Blocks are reserved ahead of the writes,
//! and a buffered log may write zeros ahead of its data (`zero_ahead_bytes`).

use super::{
    batch, io_context, AppendInfo, BatchHeader, Log, LogError, Position, POSITIONS_KEPT, PREALLOCATE_FIRST_BYTES,
    PREALLOCATE_STEP_BYTES, SPARE_BUFFERS_MAX, WRITE_BEHIND_MAX,
};
use crate::io::{AlignedBuf, Storage, StorageFile};
use bytes::Bytes;
use std::io;

impl<S: Storage> Log<S> {
    /// Appends one RecordBatch v2, assigning its base offset and leader epoch. The batch's CRC
    /// is checked first. The batch is readable after the next [`Log::write`] or [`Log::flush`],
    /// durable after the next flush.
    pub fn append(&mut self, batch: &[u8], partition_leader_epoch: i32) -> Result<AppendInfo, LogError> {
        self.check_usable()?;
        let header = batch::validate(batch, self.config.max_batch_bytes).map_err(LogError::InvalidBatch)?;
        let result = self.append_validated(batch, header, partition_leader_epoch, None);
        self.checked(result)
    }

    /// Appends several batches as one: every batch is checked (structure and CRC) before any is
    /// appended, so a request with one bad batch leaves the log untouched.
    pub fn append_all(&mut self, batches: &[&[u8]], partition_leader_epoch: i32) -> Result<Vec<AppendInfo>, LogError> {
        self.check_usable()?;
        let headers = batches
            .iter()
            .map(|b| batch::validate(b, self.config.max_batch_bytes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(LogError::InvalidBatch)?;
        let result = batches
            .iter()
            .zip(headers)
            .map(|(b, h)| self.append_validated(b, h, partition_leader_epoch, None))
            .collect();
        self.checked(result)
    }

    /// `shared`: the batch's bytes, already stamped as they will be stored, for the recent
    /// batches (else they are copied there from the write buffer).
    fn append_validated(
        &mut self,
        batch: &[u8],
        header: BatchHeader,
        partition_leader_epoch: i32,
        shared: Option<&Bytes>,
    ) -> Result<AppendInfo, LogError> {
        let base_offset = self.log_end_offset();
        let active = self.active();
        let offset_span = base_offset + i64::from(header.last_offset_delta) - active.base_offset;
        if active.size > 0
            && (active.size + batch.len() as u64 > self.config.segment_bytes
                || offset_span > i64::from(i32::MAX)
                || self.segment_aged(header.max_timestamp)
                || crate::buggify!(20))
        {
            let result = self.roll();
            self.poison_on_error(result)?;
        }
        // Batches past the written offset are known only from `positions` (the file cannot say
        // yet): before the oldest of them would fall out, write the tail (rare: more than
        // POSITIONS_KEPT batches appended since the last write).
        if self.positions.len() == POSITIONS_KEPT && self.positions.front().is_some_and(|p| p.end > self.written_offset)
        {
            let result = self.write_tail(false);
            self.poison_on_error(result)?;
        }
        self.make_room(batch.len())?;
        let position = self.active().size;
        let at = (position - self.tail_position) as usize;
        self.tail.extend_from_slice(batch);
        batch::stamp(&mut self.tail.as_mut_slice()[at..at + batch.len()], base_offset, partition_leader_epoch);
        let stamped = BatchHeader { base_offset, partition_leader_epoch, ..header };
        let interval = self.config.index_interval_bytes;
        let active = self.segments.last_mut().expect("a log always has a segment");
        active.size += batch.len() as u64;
        active.index_batch(&stamped, position, interval);
        if self.positions.len() == POSITIONS_KEPT {
            self.positions.pop_front();
        }
        self.positions.push_back(Position {
            base: base_offset,
            end: stamped.next_offset(),
            epoch: partition_leader_epoch,
            records: stamped.record_count,
            segment: active.base_offset,
            position,
            len: batch.len() as u32,
        });
        self.take_transactional(&stamped, batch);
        if self.recent.enabled() {
            let bytes =
                shared.cloned().unwrap_or_else(|| Bytes::copy_from_slice(&self.tail.as_slice()[at..at + batch.len()]));
            self.recent.push(&stamped, bytes);
        }
        if self.tail.len() >= self.config.write_buffer_bytes {
            let result = self.hand_off();
            self.poison_on_error(result)?;
        }
        Ok(AppendInfo { base_offset, last_offset: stamped.last_offset(), max_timestamp: header.max_timestamp })
    }

    /// Appends a batch that already carries its offsets and leader epoch (a follower copying
    /// the leader's log): its base offset must be the log end offset. The CRC is checked.
    /// The recent batches keep `batch` itself (no copy).
    pub fn append_replicated(&mut self, batch: &Bytes) -> Result<AppendInfo, LogError> {
        self.check_usable()?;
        let header = batch::validate(batch, self.config.max_batch_bytes).map_err(LogError::InvalidBatch)?;
        if header.base_offset != self.log_end_offset() {
            return Err(LogError::OffsetOutOfRange {
                requested: header.base_offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: self.log_end_offset(),
            });
        }
        let result = self.append_validated(batch, header, header.partition_leader_epoch, Some(batch));
        self.checked(result)
    }

    /// Hands the whole blocks of the tail buffer to the device as a write-behind and keeps
    /// appending into a fresh buffer that starts with the partial last block (rewritten later, so
    /// write-behinds never overlap).
    pub(super) fn hand_off(&mut self) -> Result<(), LogError> {
        if !self.write_tail_behind(false)? {
            return Ok(());
        }
        if self.active().file.write_behind_pending() > WRITE_BEHIND_MAX {
            self.wait_behind(WRITE_BEHIND_MAX)?;
        }
        Ok(())
    }

    /// Waits until at most `keep` write-behinds of the active segment are in flight, and keeps
    /// the buffers of those that ended for reuse.
    pub(super) fn wait_behind(&mut self, keep: usize) -> Result<(), LogError> {
        let active = self.segments.last_mut().expect("a log always has a segment");
        let buffers =
            active.file.wait_writes(keep).map_err(io_context(|| format!("writing {}", active.path.display())))?;
        self.keep_spares(buffers);
        Ok(())
    }

    /// Hands the tail's whole blocks to the device as one write-behind, with the partial last
    /// block padded too if `with_partial` (a flush: it stays in the tail, to be written again
    /// once this write ended); appends go on into a fresh buffer starting with that partial
    /// block. False if there was nothing to write.
    pub(super) fn write_tail_behind(&mut self, with_partial: bool) -> Result<bool, LogError> {
        let alignment = self.active().file.write_alignment();
        if with_partial {
            // A flush: whatever it writes goes after the held block, which its sync must cover.
            // (The previous flush ended, so its partial write did too: this does not wait.)
            self.wait_partial()?;
        } else if self.held_block.is_some() {
            // The tail starts past the held block: no write of it is in flight. The held block
            // goes as soon as the write before it ended.
            self.partial_in_flight()?;
        } else if self.partial_in_flight()? && self.tail.len() >= 2 * alignment {
            // A hand-off right after a flush, whose padded write of the tail's first block is
            // still queued behind the others: waiting for it would leave the device idle until
            // the whole queue drained. The blocks after it go now; it follows once that write
            // ended.
            let mut block = self.take_buffer(alignment);
            block.extend_from_slice(&self.tail.as_slice()[..alignment]);
            self.held_block = Some((self.tail_position, block));
            self.tail.drain_front(alignment);
            self.tail_position += alignment as u64;
        } else {
            self.wait_partial()?;
        }
        self.ensure_preallocated(self.tail_position + self.tail.len() as u64)?;
        let whole = self.tail.len() / alignment * alignment;
        let partial = self.tail.len() > whole;
        if whole == 0 && !(with_partial && partial) {
            return Ok(false);
        }
        // A log handing off is busy: its next tail starts as large as this one grew (growing a
        // new one from a block would copy every hand-off's bytes once more).
        let mut next = self.take_buffer(self.tail.capacity());
        next.extend_from_slice(&self.tail.as_slice()[whole..]);
        let mut full = std::mem::replace(&mut self.tail, next);
        if with_partial {
            full.pad_to(alignment);
        } else {
            full.truncate(whole);
        }
        let active = self.segments.last_mut().expect("a log always has a segment");
        active
            .file
            .write_behind(self.tail_position, full)
            .map_err(io_context(|| format!("writing {} at byte {}", active.path.display(), self.tail_position)))?;
        self.behind_submitted += 1;
        self.tail_position += whole as u64;
        if with_partial && partial {
            self.partial_behind = Some(self.behind_submitted);
        }
        Ok(true)
    }

    /// True once the write-behind numbered `seq` (and every one before it) ended: the file
    /// holds fewer pending than were handed to it since (they end in order; a roll waited for
    /// all of the segment it sealed).
    pub(super) fn behind_ended(&self, seq: u64) -> bool {
        self.active().file.write_behind_pending() as u64 <= self.behind_submitted - seq
    }

    /// Waits for a flush's write of the tail's partial block if it is still in flight (the tail
    /// is about to be written from that block again), then sends the block held back meanwhile.
    pub(super) fn wait_partial(&mut self) -> Result<(), LogError> {
        if let Some(seq) = self.partial_behind.take() {
            if !self.behind_ended(seq) {
                self.wait_behind((self.behind_submitted - seq) as usize)?;
            }
        }
        if let Some((position, block)) = self.held_block.take() {
            let active = self.segments.last_mut().expect("a log always has a segment");
            active
                .file
                .write_behind(position, block)
                .map_err(io_context(|| format!("writing {} at byte {position}", active.path.display())))?;
            self.behind_submitted += 1;
        }
        Ok(())
    }

    /// Whether a flush's write of the tail's partial block is still in flight (write-behinds
    /// that ended are reaped first, without waiting). Once it ended, a block held back behind
    /// it goes to the device.
    fn partial_in_flight(&mut self) -> Result<bool, LogError> {
        let Some(seq) = self.partial_behind else { return Ok(false) };
        if !self.behind_ended(seq) {
            self.reap_behinds()?;
            if !self.behind_ended(seq) {
                return Ok(true);
            }
        }
        self.wait_partial()?;
        Ok(false)
    }

    /// Takes the write-behinds of the active segment that ended, without waiting, and keeps
    /// their buffers for reuse.
    pub(super) fn reap_behinds(&mut self) -> Result<(), LogError> {
        let active = self.segments.last_mut().expect("a log always has a segment");
        let buffers = active.file.poll_writes().map_err(io_context(|| format!("writing {}", active.path.display())))?;
        self.keep_spares(buffers);
        Ok(())
    }

    /// Reserves blocks of the active segment up to past `end` (never past `segment.bytes`). A disk
    /// that cannot give a whole step is asked for just the blocks up to `end`: reserving ahead is
    /// an optimisation and must not refuse a write that fits.
    pub(super) fn ensure_preallocated(&mut self, end: u64) -> Result<(), LogError> {
        if !self.preallocate_supported || end <= self.preallocated_to {
            return Ok(());
        }
        let step = end.next_power_of_two().clamp(PREALLOCATE_FIRST_BYTES, PREALLOCATE_STEP_BYTES);
        let from = self.preallocated_to.max(end / step * step);
        let to = (end / step * step + step).min(self.config.segment_bytes.max(end));
        if to <= from {
            // Nothing to reserve past what is reserved (end sits on a step's boundary).
            self.preallocated_to = self.preallocated_to.max(to);
            return Ok(());
        }
        let active = self.segments.last_mut().expect("a log always has a segment");
        let mut reserved = active.file.preallocate(from, to - from).map(|()| to);
        if matches!(&reserved, Err(e) if crate::io::is_disk_full(e)) && to > end {
            let from = self.preallocated_to;
            reserved = active.file.preallocate(from, end - from).map(|()| end);
        }
        match reserved {
            Ok(to) => self.preallocated_to = to,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => self.preallocate_supported = false,
            Err(e) => return Err(io_context(|| format!("reserving blocks of {}", active.path.display()))(e)),
        }
        Ok(())
    }

    /// Writes zeros past `end` (the data just written) up to the next `zero_ahead_bytes`
    /// boundary, within the reserved blocks, so the syncs of the appends that land there write
    /// data alone. Best effort: zeros past the data are what a reader finds there anyway (the
    /// end of the segment), so a failure costs only speed, and is not retried for this stretch.
    ///
    /// The zeros start at the block after `end`: the block holding the data's last bytes is
    /// written already, and rewriting it would put those (perhaps durable) bytes through one
    /// more write for nothing.
    pub(super) fn zero_ahead(&mut self, end: u64) {
        let step = self.config.zero_ahead_bytes;
        if step == 0 || end < self.zeroed_to || !self.preallocate_supported {
            return;
        }
        let from = end.next_multiple_of(crate::io::DIRECT_IO_ALIGNMENT as u64);
        let to = ((end / step + 1) * step).min(self.preallocated_to);
        if to > from {
            let active = self.segments.last_mut().expect("a log always has a segment");
            // A failure that matters (the device's) fails the next data write too, and is
            // reported there.
            let _ = active.file.write_at(from, &vec![0u8; (to - from) as usize]);
        }
        self.zeroed_to = to.max(end);
    }

    /// An empty tail buffer: a spare one (a busy log's, grown to its appends), else a new one of
    /// `capacity` bytes counted against the shard's write buffers (it grows as appends need).
    pub(super) fn take_buffer(&mut self, capacity: usize) -> AlignedBuf {
        let mut buffer =
            self.spare_buffers.pop().unwrap_or_else(|| AlignedBuf::counted(capacity, self.storage.memory()));
        buffer.truncate(0);
        buffer
    }

    /// Keeps a few returned buffers for reuse while the shard's write buffers are under their
    /// limit (at most [`SPARE_BUFFERS_MAX`]), dropping the rest.
    pub(super) fn keep_spares(&mut self, buffers: Vec<AlignedBuf>) {
        for buffer in buffers {
            if self.spare_buffers.len() < SPARE_BUFFERS_MAX && !self.storage.memory().write_buffers_refuse(0) {
                self.spare_buffers.push(buffer);
            }
        }
    }
}

impl<S: Storage> Log<S> {
    /// True if a batch of `timestamp` is more than `segment.ms` past the active segment's
    /// first batch (Kafka's time-based roll, by record time). A recovered segment's first
    /// timestamp is read from its first batch once.
    fn segment_aged(&mut self, timestamp: i64) -> bool {
        let active = self.segments.last_mut().expect("a log always has a segment");
        if active.size == 0 || timestamp < 0 {
            return false;
        }
        // The segment's own jitter, drawn from its base offset.
        let jitter = self.config.segment_jitter_ms.clamp(0, self.config.segment_ms);
        let own = if jitter > 0 { (crate::rng::mix(active.base_offset as u64) % jitter as u64) as i64 } else { 0 };
        let segment_ms = self.config.segment_ms - own;
        if active.first_timestamp.is_none() {
            active.first_timestamp = active.header_at(0).ok().flatten().map(|h| h.max_timestamp);
        }
        active.first_timestamp.is_some_and(|first| first >= 0 && timestamp.saturating_sub(first) > segment_ms)
    }
}
