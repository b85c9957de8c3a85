//! Opening a log and recovering what a crash left: every batch up to the first torn or corrupt
//! one is kept, and the log is cut there (later segments too); sealed segments keep their index
//! files if they look sound, else the indexes are rebuilt; the active segment's partial last
//! block is loaded into the tail buffer. Segment files are created and removed here as well
//! (truncation, reset and roll do both).

use super::index::{OffsetIndex, TimeIndex};
use super::segment::{self, file_name, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use super::txn::TXN_INDEX_SUFFIX;
use super::{
    io_context, next_sync_epoch, recent, Corruption, Log, LogConfig, LogError, RecoveryReport, CLEANED_SUFFIX,
};
use crate::io::{AlignedBuf, FileKind, Storage, StorageFile};
use std::io;
use std::path::Path;

impl<S: Storage> Log<S> {
    /// Opens (or creates) the log in `dir`, recovering from whatever a crash left.
    pub fn open(storage: S, dir: &Path, config: LogConfig) -> Result<(Self, RecoveryReport), LogError> {
        assert!(config.segment_bytes <= i32::MAX as u64, "segment.bytes must fit an i32 position");
        storage.create_dir_all(dir).map_err(io_context(|| format!("creating {}", dir.display())))?;
        let names = storage.list_dir(dir).map_err(io_context(|| format!("listing {}", dir.display())))?;
        // A compaction a crash interrupted before its rename: the segment itself is intact.
        for name in names.iter().filter(|n| n.ends_with(CLEANED_SUFFIX)) {
            let path = dir.join(name);
            storage.remove(&path).map_err(io_context(|| format!("removing {}", path.display())))?;
        }
        let mut bases: Vec<i64> = names.iter().filter_map(|n| segment::parse_log_file_name(n)).collect();
        bases.sort_unstable();
        if bases.is_empty() {
            bases.push(0);
        }
        let recent = recent::Recent::new(storage.memory().clone());
        let mut log = Log {
            storage,
            dir: dir.to_path_buf(),
            config,
            segments: Vec::with_capacity(bases.len()),
            tail: AlignedBuf::with_capacity(0),
            tail_position: 0,
            spare_buffers: Vec::new(),
            preallocated_to: 0,
            preallocate_supported: true,
            zeroed_to: 0,
            written_offset: 0,
            durable_offset: 0,
            sync_epoch: next_sync_epoch(),
            behind_submitted: 0,
            truncations: 0,
            partial_behind: None,
            held_block: None,
            poisoned: None,
            recent,
            positions: std::collections::VecDeque::new(),
            watermarks: Default::default(),
            ticket_target: (0, i64::MIN),
            txns: None,
        };
        let mut report = RecoveryReport::default();
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let (segment, corruption) = log.open_segment(base, next_base, &mut report)?;
            log.segments.push(segment);
            if let Some(corruption) = corruption {
                // Everything after the first bad batch goes: later segments too.
                for &later in &bases[i + 1..] {
                    let path = log.dir.join(file_name(later, LOG_SUFFIX));
                    report.truncated_bytes +=
                        log.storage.open(&path, FileKind::SegmentData).and_then(|f| f.len()).unwrap_or(0);
                    log.remove_segment_files(later)?;
                }
                report.corruption = Some(corruption);
                break;
            }
        }
        if report.corruption.is_some() {
            log.storage.sync_dir(&log.dir).map_err(io_context(|| format!("syncing {}", log.dir.display())))?;
        }
        log.reload_tail()?;
        // What recovery kept may still sit only in the page cache (the process died, the machine
        // did not): make it durable before calling it so.
        let active = log.segments.last_mut().expect("a log always has a segment");
        active.file.sync_data().map_err(io_context(|| format!("syncing {}", active.path.display())))?;
        let end = log.log_end_offset();
        log.written_offset = end;
        log.durable_offset = end;
        log.check_invariants();
        Ok((log, report))
    }

    /// Opens one segment. Sealed segments keep their indexes if they look sound; the last one
    /// (or any whose index is missing or damaged) is scanned batch by batch.
    pub(super) fn open_segment(
        &mut self,
        base: i64,
        next_base: Option<i64>,
        report: &mut RecoveryReport,
    ) -> Result<(Segment<S::File>, Option<Corruption>), LogError> {
        let path = self.dir.join(file_name(base, LOG_SUFFIX));
        let file = self
            .storage
            .open(&path, FileKind::SegmentData)
            .map_err(io_context(|| format!("opening {}", path.display())))?;
        let size = file.len().map_err(io_context(|| format!("reading the size of {}", path.display())))?;
        let mut segment = Segment {
            base_offset: base,
            file,
            path: path.clone(),
            size,
            readable_size: size,
            next_offset: next_base.unwrap_or(base),
            max_timestamp: -1,
            first_timestamp: None,
            offset_index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            bytes_since_index_entry: 0,
        };
        if let Some(next_base) = next_base {
            if self.load_sealed_indexes(&mut segment, next_base) {
                return Ok((segment, None));
            }
            report.rebuilt_indexes.push(base);
        }
        let corruption = segment
            .recover(self.config.index_interval_bytes, self.config.max_batch_bytes)
            .map_err(io_context(|| format!("recovering {}", path.display())))?;
        let file_len = segment.file.len().map_err(io_context(|| format!("reading the size of {}", path.display())))?;
        if file_len > segment.size {
            if corruption.is_some() {
                report.truncated_bytes += file_len - segment.size;
            }
            segment.file.set_len(segment.size).map_err(io_context(|| format!("truncating {}", path.display())))?;
            segment.file.sync_data().map_err(io_context(|| format!("syncing {}", path.display())))?;
        }
        if next_base.is_some() && corruption.is_none() {
            segment
                .persist_indexes(&self.storage, &self.dir)
                .map_err(io_context(|| format!("writing indexes of {}", path.display())))?;
            let (offset_index, time_index) =
                self.map_indexes(base).map_err(io_context(|| format!("mapping indexes of {}", path.display())))?;
            segment.offset_index = offset_index;
            segment.time_index = time_index;
        }
        Ok((segment, corruption))
    }

    pub(super) fn map_indexes(&self, base: i64) -> io::Result<(OffsetIndex, TimeIndex)> {
        let offset_map = self.storage.open(&self.dir.join(file_name(base, INDEX_SUFFIX)), FileKind::Index)?.map()?;
        let time_map = self.storage.open(&self.dir.join(file_name(base, TIME_INDEX_SUFFIX)), FileKind::Index)?.map()?;
        Ok((OffsetIndex::sealed(offset_map), TimeIndex::sealed(time_map)))
    }

    /// Maps a sealed segment's index files and checks them; false if they must be rebuilt.
    fn load_sealed_indexes(&self, segment: &mut Segment<S::File>, next_base: i64) -> bool {
        let base = segment.base_offset;
        let index_path = self.dir.join(file_name(base, INDEX_SUFFIX));
        let time_path = self.dir.join(file_name(base, TIME_INDEX_SUFFIX));
        if !self.storage.exists(&index_path) || !self.storage.exists(&time_path) {
            return false;
        }
        let Ok((offset_index, time_index)) = self.map_indexes(base) else { return false };
        let span = next_base - base;
        if !offset_index.is_sane(segment.size, span) || !time_index.is_sane(span) {
            return false;
        }
        segment.offset_index = offset_index;
        segment.time_index = time_index;
        segment.max_timestamp = segment.time_index.last().map_or(-1, |(t, _)| t);
        // The last indexed batch must be where the index says, and the segment must end on a
        // batch boundary after it.
        let mut position = match segment.offset_index.len().checked_sub(1) {
            Some(i) => {
                let (relative, position) = segment.offset_index.entry(i);
                match segment.header_at(u64::from(position)) {
                    Ok(Some(h)) if h.last_offset() == base + i64::from(relative) => u64::from(position),
                    _ => return false,
                }
            }
            None => 0,
        };
        while position < segment.size {
            match segment.header_at(position) {
                Ok(Some(h)) if h.next_offset() <= next_base => {
                    segment.max_timestamp = segment.max_timestamp.max(h.max_timestamp);
                    position += h.total_bytes() as u64;
                }
                _ => return false,
            }
        }
        position == segment.size
    }

    /// Loads the partial last block of the active segment into the tail buffer.
    pub(super) fn reload_tail(&mut self) -> Result<(), LogError> {
        let active = self.segments.last().expect("a log always has a segment");
        let alignment = active.file.write_alignment() as u64;
        self.tail_position = active.size / alignment * alignment;
        let partial = (active.size - self.tail_position) as usize;
        let mut bytes = vec![0u8; partial];
        active
            .file
            .read_exact_at(self.tail_position, &mut bytes)
            .map_err(io_context(|| format!("reading the tail of {}", active.path.display())))?;
        self.tail = self.take_buffer(crate::io::TAIL_FIRST_BYTES);
        self.tail.extend_from_slice(&bytes);
        self.preallocated_to = 0;
        self.zeroed_to = 0;
        Ok(())
    }

    pub(super) fn create_segment(&mut self, base: i64) -> Result<Segment<S::File>, LogError> {
        let path = self.dir.join(file_name(base, LOG_SUFFIX));
        let mut file = self
            .storage
            .open(&path, FileKind::SegmentData)
            .map_err(io_context(|| format!("creating {}", path.display())))?;
        file.set_len(0).map_err(io_context(|| format!("creating {}", path.display())))?;
        self.storage.sync_dir(&self.dir).map_err(io_context(|| format!("syncing {}", self.dir.display())))?;
        Ok(Segment {
            base_offset: base,
            file,
            path,
            size: 0,
            readable_size: 0,
            next_offset: base,
            max_timestamp: -1,
            first_timestamp: None,
            offset_index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            bytes_since_index_entry: 0,
        })
    }

    pub(super) fn remove_segment_files(&mut self, base: i64) -> Result<(), LogError> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX] {
            let path = self.dir.join(file_name(base, suffix));
            if self.storage.exists(&path) {
                self.storage.remove(&path).map_err(io_context(|| format!("removing {}", path.display())))?;
            }
        }
        Ok(())
    }
}
