//! Reading: whole batches as a slice of one segment file (to send as they are), batch headers,
//! the first batch at or after a timestamp, the recent batches a leader sends to followers from
//! memory, the start and term of the batch ending at an offset (from memory for the last ones),
//! and a scrub of every batch's CRC.

use super::{batch, io_context, BatchHeader, Corruption, Log, LogError, Position, ReadSlice};
use crate::io::{Storage, StorageFile};
use bytes::Bytes;

impl<S: Storage> Log<S> {
    /// [`Log::read`] of batches the active segment got lately, from `positions` alone: no header
    /// is read from the file. `None` if they do not hold the batch at `start_offset` (older, or
    /// in a sealed segment, which compaction may have rewritten).
    fn read_from_positions(&self, start_offset: i64, max_bytes: u64, limit: i64) -> Option<Option<ReadSlice>> {
        let segment = self.active().base_offset;
        let i = self.positions.partition_point(|p| p.end <= start_offset);
        let first = self.positions.get(i).filter(|p| p.segment == segment && p.base <= start_offset)?;
        if first.end > limit {
            return Some(None);
        }
        let mut slice = ReadSlice {
            segment_base_offset: segment,
            position: first.position,
            len: u64::from(first.len),
            first_offset: first.base,
            next_offset: first.end,
            records: i64::from(first.records),
        };
        for p in self.positions.range(i + 1..) {
            if p.end > limit || slice.len + u64::from(p.len) > max_bytes {
                break;
            }
            slice.len += u64::from(p.len);
            slice.next_offset = p.end;
            slice.records += i64::from(p.records);
        }
        Some(Some(slice))
    }

    /// Whole batches from the one containing `start_offset`, at most `max_bytes` of them but
    /// always at least one, none reaching `max_offset` or beyond (the high watermark) if given.
    /// `Ok(None)` when there is nothing to read yet.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: u64,
        max_offset: Option<i64>,
    ) -> Result<Option<ReadSlice>, LogError> {
        self.check_usable()?;
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if start_offset < start || start_offset > end {
            return Err(LogError::OffsetOutOfRange {
                requested: start_offset,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        let limit = max_offset.unwrap_or(i64::MAX).min(self.written_offset);
        if let Some(found) = self.read_from_positions(start_offset, max_bytes, limit) {
            return Ok(found);
        }
        for segment in &self.segments[self.segment_index_for(start_offset)..] {
            let found = segment
                .find_offset(start_offset)
                .map_err(io_context(|| format!("reading {}", segment.path.display())))?;
            let Some(first) = found else { continue };
            if first.header.next_offset() > limit {
                return Ok(None);
            }
            let mut slice = ReadSlice {
                segment_base_offset: segment.base_offset,
                position: first.position,
                len: first.header.total_bytes() as u64,
                first_offset: first.header.base_offset,
                next_offset: first.header.next_offset(),
                records: i64::from(first.header.record_count),
            };
            while let Some(h) = segment
                .header_at(slice.position + slice.len)
                .map_err(io_context(|| format!("reading {}", segment.path.display())))?
            {
                if h.next_offset() > limit || slice.len + h.total_bytes() as u64 > max_bytes {
                    break;
                }
                slice.len += h.total_bytes() as u64;
                slice.next_offset = h.next_offset();
                slice.records += i64::from(h.record_count);
            }
            return Ok(Some(slice));
        }
        Ok(None)
    }

    /// Headers of the written batches from the one holding `from` to the log end (only their
    /// 61 header bytes are read): what a leader needs to rebuild its producers' sequences.
    pub fn batch_headers(&self, from: i64) -> Result<Vec<BatchHeader>, LogError> {
        self.check_usable()?;
        let from = from.max(self.log_start_offset());
        let mut out = Vec::new();
        for segment in &self.segments[self.segment_index_for(from)..] {
            let context = || io_context(|| format!("reading {}", segment.path.display()));
            let Some(first) = segment.find_offset(from).map_err(context())? else { continue };
            let mut position = first.position;
            let mut next = Some(first.header);
            while let Some(header) = next {
                if header.next_offset() > self.written_offset {
                    return Ok(out);
                }
                position += header.total_bytes() as u64;
                out.push(header);
                next = segment.header_at(position).map_err(context())?;
            }
        }
        Ok(out)
    }

    /// Copies a slice's bytes out (tests, tools, and paths that cannot use sendfile).
    pub fn read_bytes(&self, slice: &ReadSlice) -> Result<Vec<u8>, LogError> {
        let file = self.segment_file(slice.segment_base_offset).ok_or(LogError::OffsetOutOfRange {
            requested: slice.first_offset,
            log_start_offset: self.log_start_offset(),
            log_end_offset: self.log_end_offset(),
        })?;
        let mut bytes = vec![0u8; slice.len as usize];
        file.read_exact_at(slice.position, &mut bytes).map_err(io_context(|| "reading a slice".to_string()))?;
        Ok(bytes)
    }

    /// The bytes of the batch at `offset` (the first one a read from there returns), whole.
    pub fn batch_at(&self, offset: i64) -> Result<Option<Vec<u8>>, LogError> {
        let Some(slice) = self.read(offset, 1, None)? else { return Ok(None) };
        let mut bytes = self.read_bytes(&slice)?;
        let Ok(header) = BatchHeader::parse(&bytes) else { return Ok(None) };
        bytes.truncate(header.total_bytes());
        Ok(Some(bytes))
    }

    /// The first readable batch whose max timestamp is >= `timestamp`: its base offset and max
    /// timestamp (Kafka's ListOffsets by time, to batch precision).
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        self.check_usable()?;
        for segment in self.segments.iter().filter(|s| s.max_timestamp >= timestamp) {
            let found = segment
                .find_timestamp(timestamp)
                .map_err(io_context(|| format!("reading {}", segment.path.display())))?;
            if let Some(located) = found {
                return Ok(Some((located.header.base_offset, located.header.max_timestamp)));
            }
        }
        Ok(None)
    }

    /// Keeps the last `max_bytes` of appended batches in memory (0: none), for
    /// [`Log::recent_from`]: a replicated log's leader sends them to followers from there.
    pub fn keep_recent(&mut self, max_bytes: usize) {
        self.recent.set_budget(max_bytes);
        self.recent.check_invariants(self.log_end_offset());
    }

    /// Whole batches from the one starting at `from`, about `max_bytes` of them (at least one),
    /// as shared buffers, if the recent batches still hold them (written to the file or not: a
    /// leader may send what it has not written yet).
    pub fn recent_from(&self, from: i64, max_bytes: u64) -> Option<Vec<Bytes>> {
        let batches = self.recent.from(from, max_bytes)?;
        (!batches.is_empty()).then_some(batches)
    }

    /// Lets the recent batches ending at or before `end_offset` go (followers have them).
    pub fn release_recent_before(&mut self, end_offset: i64) {
        self.recent.release_before(end_offset);
        self.recent.check_invariants(self.log_end_offset());
    }

    fn position_ending_at(&self, end_offset: i64) -> Option<&Position> {
        let i = self.positions.binary_search_by_key(&end_offset, |p| p.end).ok()?;
        self.positions.get(i)
    }

    /// Start offset of the batch ending exactly at `end_offset`, if one does.
    pub fn base_of_batch_ending_at(&self, end_offset: i64) -> Result<Option<i64>, LogError> {
        Ok(self.batch_ending_at(end_offset)?.map(|(base, _)| base))
    }

    /// The leader epoch (raft term) of the batch that ends right before `end_offset`, if a batch
    /// ends exactly there; `Ok(None)` if `end_offset` is not a batch boundary of this log.
    pub fn epoch_of_batch_ending_at(&self, end_offset: i64) -> Result<Option<i32>, LogError> {
        Ok(self.batch_ending_at(end_offset)?.map(|(_, epoch)| epoch))
    }

    /// Base offset and leader epoch of the batch ending exactly at `end_offset`: from the
    /// positions of the last batches, the recent batches, else one read of the segment.
    fn batch_ending_at(&self, end_offset: i64) -> Result<Option<(i64, i32)>, LogError> {
        if end_offset <= self.log_start_offset() || end_offset > self.log_end_offset() {
            return Ok(None);
        }
        if let Some(p) = self.position_ending_at(end_offset) {
            return Ok(Some((p.base, p.epoch)));
        }
        if let Some(found) = self.recent.batch_ending_at(end_offset) {
            return Ok(Some(found));
        }
        // Not written yet: `positions` holds every such batch, so this is no boundary.
        if end_offset > self.written_offset {
            return Ok(None);
        }
        match self.read(end_offset - 1, 1, None)? {
            Some(slice) if slice.next_offset == end_offset => {
                let bytes = self.read_bytes(&ReadSlice { len: batch::BATCH_HEADER_BYTES as u64, ..slice })?;
                let header = BatchHeader::parse(&bytes).map_err(LogError::InvalidBatch)?;
                Ok(Some((slice.first_offset, header.partition_leader_epoch)))
            }
            _ => Ok(None),
        }
    }

    /// Reads every readable batch and checks its CRC (a scrub). Returns the first bad batch of
    /// each segment, with the segment's path and the byte position.
    pub fn verify(&self) -> Result<Vec<Corruption>, LogError> {
        let mut found = Vec::new();
        for segment in &self.segments {
            let mut position = 0;
            loop {
                let header = match segment.header_at(position) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(e) => {
                        found.push(Corruption { segment: segment.path.clone(), position, reason: e.to_string() });
                        break;
                    }
                };
                let mut whole = vec![0u8; header.total_bytes()];
                segment
                    .file
                    .read_exact_at(position, &mut whole)
                    .map_err(io_context(|| format!("reading {}", segment.path.display())))?;
                if let Err(e) = batch::check_crc(&whole, &header) {
                    found.push(Corruption { segment: segment.path.clone(), position, reason: e.to_string() });
                    break;
                }
                position += header.total_bytes() as u64;
            }
        }
        Ok(found)
    }
}
