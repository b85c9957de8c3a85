//! One segment: a file of consecutive batches, named by its base offset, with its two indexes.
//!
//! ```text
//!  <dir>/00000000000000001234.log        batches, back to back, as received (stamped)
//!  <dir>/00000000000000001234.index      offset index (sealed segments only)
//!  <dir>/00000000000000001234.timeindex  time index   (sealed segments only)
//! ```
//! Owned by the [`super::Log`] of one partition, on one shard.

use super::batch::{self, BatchError, BatchHeader, BATCH_HEADER_BYTES};
use super::index::{OffsetIndex, TimeIndex};
use crate::io::{FileKind, Storage, StorageFile};
use std::io;
use std::path::{Path, PathBuf};

pub const LOG_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";

pub fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// Parses `00000000000000001234.log` into 1234.
pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(LOG_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where a corrupt or torn batch was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub segment: PathBuf,
    pub position: u64,
    pub reason: String,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}: {}", self.segment.display(), self.position, self.reason)
    }
}

/// A batch found by a scan: its header and byte position.
#[derive(Debug, Clone, Copy)]
pub struct Located {
    pub header: BatchHeader,
    pub position: u64,
}

pub struct Segment<F> {
    pub base_offset: i64,
    pub file: F,
    pub path: PathBuf,
    /// Logical bytes of whole batches (may be below the file's length under O_DIRECT padding),
    /// including batches appended but not yet written to the file.
    pub size: u64,
    /// Bytes written to the file and so visible to readers: `size` once sealed.
    pub readable_size: u64,
    /// One past the last offset stored; `base_offset` when empty.
    pub next_offset: i64,
    /// Largest batch max timestamp; -1 when empty.
    pub max_timestamp: i64,
    /// The first batch's max timestamp (what `segment.ms` counts from, as Kafka's
    /// rollingBasedTimestamp); None when empty or not read yet (a recovered segment).
    pub first_timestamp: Option<i64>,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    pub bytes_since_index_entry: u64,
}

impl<F: StorageFile> Segment<F> {
    pub fn relative(&self, offset: i64) -> u32 {
        u32::try_from(offset - self.base_offset).expect("offset within u32 of segment base")
    }

    /// Reads the header at `position`, or None at the logical end.
    pub fn header_at(&self, position: u64) -> io::Result<Option<BatchHeader>> {
        if position >= self.readable_size {
            return Ok(None);
        }
        let mut buf = [0u8; BATCH_HEADER_BYTES];
        self.file.read_exact_at(position, &mut buf)?;
        BatchHeader::parse(&buf).map(Some).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{} at byte {position}: {e}", self.path.display()))
        })
    }

    /// Records a batch just appended at `position` in the indexes.
    pub fn index_batch(&mut self, header: &BatchHeader, position: u64, index_interval_bytes: u64) {
        let relative_last = self.relative(header.last_offset());
        if self.bytes_since_index_entry >= index_interval_bytes {
            self.offset_index.append(relative_last, position as u32);
            self.time_index.maybe_append(self.max_timestamp.max(header.max_timestamp), relative_last);
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += header.total_bytes() as u64;
        if position == 0 {
            self.first_timestamp = Some(header.max_timestamp);
        }
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.next_offset = header.next_offset();
    }

    /// Position of the first batch whose last offset is >= `offset`, with its header; None if
    /// every batch ends before it.
    pub fn find_offset(&self, offset: i64) -> io::Result<Option<Located>> {
        let start = if offset <= self.base_offset { 0 } else { self.offset_index.lookup(self.relative(offset)) };
        let mut position = u64::from(start);
        while let Some(header) = self.header_at(position)? {
            if header.last_offset() >= offset {
                return Ok(Some(Located { header, position }));
            }
            position += header.total_bytes() as u64;
        }
        Ok(None)
    }

    /// First batch whose max timestamp is >= `timestamp`.
    pub fn find_timestamp(&self, timestamp: i64) -> io::Result<Option<Located>> {
        let mut position = match self.time_index.lookup(timestamp) {
            Some(relative) => u64::from(self.offset_index.lookup(relative)),
            None => 0,
        };
        while let Some(header) = self.header_at(position)? {
            if header.max_timestamp >= timestamp {
                return Ok(Some(Located { header, position }));
            }
            position += header.total_bytes() as u64;
        }
        Ok(None)
    }

    /// Writes both indexes to their files and syncs them (called when the segment is sealed).
    pub fn persist_indexes<S: Storage<File = F>>(&mut self, storage: &S, dir: &Path) -> io::Result<()> {
        if let Some((last_ts, _)) = self.time_index.last() {
            if self.max_timestamp > last_ts && self.next_offset > self.base_offset {
                self.time_index.maybe_append(self.max_timestamp, self.relative(self.next_offset - 1));
            }
        } else if self.next_offset > self.base_offset && self.max_timestamp >= 0 {
            self.time_index.maybe_append(self.max_timestamp, self.relative(self.next_offset - 1));
        }
        for (suffix, bytes) in [(INDEX_SUFFIX, self.offset_index.bytes()), (TIME_INDEX_SUFFIX, self.time_index.bytes())]
        {
            let mut file = storage.open(&dir.join(file_name(self.base_offset, suffix)), FileKind::Index)?;
            file.set_len(0)?;
            file.write_at(0, bytes)?;
            file.sync_data()?;
        }
        Ok(())
    }

    /// Scans batches from position 0, checking structure, CRC and offset order, rebuilding the
    /// indexes. Stops at the first bad batch and returns where it is; the segment then describes
    /// only the good prefix. Zero bytes where a header should be are the end (O_DIRECT padding).
    pub fn recover(&mut self, index_interval_bytes: u64, max_batch_bytes: usize) -> io::Result<Option<Corruption>> {
        let file_len = self.file.len()?;
        self.size = file_len;
        self.readable_size = file_len;
        self.offset_index = OffsetIndex::new();
        self.time_index = TimeIndex::new();
        self.bytes_since_index_entry = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.first_timestamp = None;
        let mut position = 0u64;
        let mut header_bytes = [0u8; BATCH_HEADER_BYTES];
        let mut corruption = None;
        while position < file_len {
            let available = (file_len - position) as usize;
            let header_len = available.min(BATCH_HEADER_BYTES);
            self.file.read_exact_at(position, &mut header_bytes[..header_len])?;
            if header_bytes[..header_len].iter().all(|&b| b == 0) {
                break; // padding past the last write, not data
            }
            let problem = match BatchHeader::parse(&header_bytes[..header_len]) {
                Err(e) => Some(e.to_string()),
                Ok(h) if h.total_bytes() > max_batch_bytes => Some(BatchError::BadLength(h.batch_length).to_string()),
                Ok(h) if h.total_bytes() > available => {
                    Some(BatchError::Truncated { needed: h.total_bytes(), available }.to_string())
                }
                Ok(h) if h.base_offset < self.next_offset => {
                    Some(format!("base offset {} goes back (expected at least {})", h.base_offset, self.next_offset))
                }
                Ok(h) if h.last_offset() - self.base_offset > i64::from(u32::MAX) => {
                    Some(format!("offset {} too far from segment base {}", h.last_offset(), self.base_offset))
                }
                Ok(h) => {
                    let mut whole = vec![0u8; h.total_bytes()];
                    self.file.read_exact_at(position, &mut whole)?;
                    match batch::check_crc(&whole, &h) {
                        Err(e) => Some(e.to_string()),
                        Ok(()) => {
                            self.index_batch(&h, position, index_interval_bytes);
                            position += h.total_bytes() as u64;
                            None
                        }
                    }
                }
            };
            if let Some(reason) = problem {
                corruption = Some(Corruption { segment: self.path.clone(), position, reason });
                break;
            }
        }
        self.size = position;
        self.readable_size = position;
        Ok(corruption)
    }
}
