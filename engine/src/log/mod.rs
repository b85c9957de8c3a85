//! The partition log: segments of Kafka RecordBatch v2 bytes, sparse indexes, crash recovery,
//! truncation, retention and group commit.
//!
//! ```text
//!   segments[0] ... segments[n-2]     sealed: size fixed, indexes on disk (mapped)
//!   segments[n-1]                     active: appends land in `tail`, an aligned buffer holding
//!                                     the file's bytes from `tail_position` to `size`
//!
//!   log_start_offset <= durable_offset <= written_offset <= log_end_offset
//!        first kept      fdatasync'd       in the file       appended (maybe only in memory)
//! ```
//! Readers see up to `written_offset`; callers that need durability (acks, raft) wait for
//! `durable_offset`, which moves only in [`Log::flush`]: one write plus one fdatasync for every
//! append since the previous flush (group commit), or in [`Log::end_sync`], for a caller that
//! ran the fdatasync on another thread meanwhile ([`Log::begin_sync`]).
//!
//! A `Log` lives on one shard and is driven by that shard's thread only. After an I/O failure in
//! a write, sync or truncation it is poisoned (every call fails) until reopened, whose recovery
//! keeps exactly the durable batches: nothing acknowledged is lost and nothing half-written is
//! served.

pub mod batch;
mod durability;
mod epochs;
pub mod index;
mod memory;
mod recent;
pub mod segment;

pub use batch::{BatchError, BatchHeader};
pub use durability::DurabilityWaiters;
pub use epochs::EpochSpan;
pub use memory::LogMemory;
pub use segment::Corruption;

use crate::io::{AlignedBuf, FileKind, Storage, StorageFile};
use bytes::Bytes;
use index::{OffsetIndex, TimeIndex};
use segment::{file_name, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A sync to run off the log's thread: see [`Log::begin_sync`].
#[derive(Debug)]
pub struct SyncTicket {
    file: std::sync::Arc<std::fs::File>,
    path: PathBuf,
    target: i64,
    epoch: u64,
}

impl SyncTicket {
    /// The fdatasync itself; blocks, so call it where blocking is fine.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The fdatasync as a closure of its own, to send to another thread.
    pub fn syncer(&self) -> impl FnOnce() -> io::Result<()> + Send + 'static {
        let file = std::sync::Arc::clone(&self.file);
        move || file.sync_data()
    }

    /// The log end offset this sync makes durable.
    pub fn target(&self) -> i64 {
        self.target
    }
}

/// A flush in progress: see [`Log::begin_flush`].
#[derive(Debug)]
pub struct FlushTicket {
    target: i64,
    /// The active segment's size at the ticket: readable once the writes end.
    size: u64,
    /// Write-behinds (by count) that must end before the sync starts.
    behind: u64,
    epoch: u64,
    sync: Option<u64>,
}

impl FlushTicket {
    /// The log end offset this flush makes durable.
    pub fn target(&self) -> i64 {
        self.target
    }
}

/// Epochs are unique across every log of the process, so a ticket of a log that was since
/// reopened (a new `Log` in its place) never matches.
fn next_sync_epoch() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Kafka's `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

/// Positions of the last appended batches kept in memory ([`Log`]'s term lookups).
const POSITIONS_KEPT: usize = 1024;

/// Per-log settings (the topic configs of the same names).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `segment.bytes`: a segment is rolled before it would grow past this.
    pub segment_bytes: u64,
    /// `index.interval.bytes`: bytes of batches between two offset index entries.
    pub index_interval_bytes: u64,
    /// `retention.bytes` (-1 = no limit): whole oldest segments go while the log stays above it.
    pub retention_bytes: i64,
    /// `retention.ms` (-1 = forever): segments whose newest timestamp is older go.
    pub retention_ms: i64,
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long compaction keeps a key's tombstone (its delete marker)
    /// after the records it deleted are gone.
    pub delete_retention_ms: i64,
    /// Largest batch accepted, header included.
    pub max_batch_bytes: usize,
    /// Appended bytes held in memory before they are handed to the device as a write-behind
    /// (written while appends go on; made durable by the next flush).
    pub write_buffer_bytes: usize,
    /// A buffered log writes zeros this far ahead of its data (0: never), within the blocks
    /// reserved for it. An fdatasync after appends into reserved blocks also writes the inode
    /// (the extents turn from unwritten to written, the size grows); into blocks written before,
    /// it writes the data alone. For the metadata log's small appends, one sync per round, that
    /// is about half the sync's time (decision 0006, item 10).
    pub zero_ahead_bytes: u64,
}

/// Write-behinds in flight per log before an append waits for them (the device queue depth the
/// log offers; with 1 MiB buffers, 8 MiB in flight).
pub const WRITE_BEHIND_MAX: usize = 8;

/// Blocks are reserved ahead of the active segment's writes in steps of up to this size: appends
/// into reserved blocks skip block allocation on the write path (measured in decision 0001).
pub const PREALLOCATE_STEP_BYTES: u64 = 64 << 20;
/// The first reservation of a segment; steps double with the segment's size up to
/// `PREALLOCATE_STEP_BYTES`, so a quiet partition holds little disk it does not use.
pub const PREALLOCATE_FIRST_BYTES: u64 = 1 << 20;

/// Finished write-behind buffers a log keeps for reuse while it is busy (none once idle, and
/// none while its shard's write buffers are over their limit).
pub const SPARE_BUFFERS_MAX: usize = 4;

/// Kafka's default `segment.bytes` (1 GiB).
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Kafka's default `delete.retention.ms` (1 day).
pub const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;
/// Kafka's default `retention.ms` (7 days).
pub const RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            index_interval_bytes: 4096,
            retention_bytes: -1,
            retention_ms: RETENTION_MS_DEFAULT,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
            max_batch_bytes: 16 << 20,
            zero_ahead_bytes: 0,
            write_buffer_bytes: 1 << 20,
        }
    }
}

#[derive(Debug)]
pub enum LogError {
    InvalidBatch(BatchError),
    OffsetOutOfRange {
        requested: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    Io {
        context: String,
        source: io::Error,
    },
    /// An earlier I/O failure left the log unusable until it is reopened.
    Poisoned(String),
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::InvalidBatch(e) => write!(f, "invalid batch: {e}"),
            LogError::OffsetOutOfRange { requested, log_start_offset, log_end_offset } => {
                write!(f, "offset {requested} out of range [{log_start_offset}, {log_end_offset}]")
            }
            LogError::Io { context, source } => write!(f, "{context}: {source}"),
            LogError::Poisoned(why) => write!(f, "log unusable after an earlier I/O failure ({why}); reopen it"),
        }
    }
}

impl std::error::Error for LogError {}

impl LogError {
    pub fn is_disk_full(&self) -> bool {
        matches!(self, LogError::Io { source, .. } if crate::io::is_disk_full(source))
    }
}

/// Calls `f` with every whole batch of a sealed (or written) segment, in order.
fn for_each_batch<F: StorageFile>(segment: &Segment<F>, mut f: impl FnMut(&[u8], &BatchHeader)) -> io::Result<()> {
    let mut position = 0u64;
    while let Some(header) = segment.header_at(position)? {
        let mut bytes = vec![0u8; header.total_bytes()];
        segment.file.read_exact_at(position, &mut bytes)?;
        f(&bytes, &header);
        position += header.total_bytes() as u64;
    }
    Ok(())
}

/// An I/O error with what was being done and where, formatted only if there is an error (this
/// sits on every append, read and flush).
fn io_context(context: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> LogError {
    move |source| LogError::Io { context: context(), source }
}

/// Where an appended batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// A run of whole batches in one segment file, to send as it is (sendfile from `fd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSlice {
    pub segment_base_offset: i64,
    pub position: u64,
    pub len: u64,
    /// Base offset of the first batch.
    pub first_offset: i64,
    /// One past the last offset of the last batch.
    pub next_offset: i64,
    /// Records in the slice's batches (0: only batches compaction emptied).
    pub records: i64,
}

/// What opening the log found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The first torn or corrupt batch; the log was cut there.
    pub corruption: Option<Corruption>,
    /// Bytes dropped at the cut (including later segments' bytes).
    pub truncated_bytes: u64,
    /// Base offsets of sealed segments whose indexes were missing or damaged and were rebuilt.
    pub rebuilt_indexes: Vec<i64>,
}

/// What a compaction pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Segments rewritten.
    pub segments: usize,
    /// Records dropped: older values of their keys, and expired tombstones.
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Suffix of a segment being rewritten by compaction (removed on open if a crash left it).
pub const CLEANED_SUFFIX: &str = ".log.cleaned";

/// What a retention pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
}

pub struct Log<S: Storage> {
    storage: S,
    dir: PathBuf,
    config: LogConfig,
    /// Ordered by base offset; never empty; the last is the active segment.
    segments: Vec<Segment<S::File>>,
    tail: AlignedBuf,
    tail_position: u64,
    /// Buffers back from finished write-behinds, for reuse.
    spare_buffers: Vec<AlignedBuf>,
    /// End of the blocks reserved ahead of the active segment's writes (0: none, or the file
    /// system cannot); see [`PREALLOCATE_STEP_BYTES`].
    preallocated_to: u64,
    preallocate_supported: bool,
    /// The active segment is written (zeros past the data) up to here (`zero_ahead_bytes`).
    zeroed_to: u64,
    written_offset: i64,
    durable_offset: i64,
    /// Changes at every truncation, reset and roll, so a sync started before one of them
    /// ([`Log::begin_sync`]) does not vouch for what was written after it.
    sync_epoch: u64,
    /// Write-behinds handed to the segments' files, counted from the open: a flush
    /// ([`Log::begin_flush`]) waits for the ones up to its own ([`Log::behind_ended`]).
    behind_submitted: u64,
    /// Truncations and resets since the open ([`Log::truncations`]).
    truncations: u64,
    /// The write-behind (by its count) that wrote the tail's partial last block, padded, for a
    /// flush: the next write of that block waits for it (writes never overlap in flight).
    partial_behind: Option<u64>,
    /// That block, completed by later appends, held back at a hand-off while the flush's write
    /// of it was still in flight: the blocks after it went to the device at once, and it follows
    /// as a write-behind of its own once that write ended (before any flush or synchronous
    /// write). Its position and bytes.
    held_block: Option<(u64, AlignedBuf)>,
    poisoned: Option<String>,
    /// The last batches appended, for replication ([`Log::keep_recent`]).
    recent: recent::Recent,
    /// Where the last batches appended are, whatever the recent budget: raft looks up the term
    /// of its last entries on every proposal (a read from an O_DIRECT segment for each one cost
    /// a disk read per write), and a read of recent batches finds them here instead of reading
    /// their headers from the file one by one.
    positions: std::collections::VecDeque<Position>,
}

/// One recently appended batch: its offsets, term, and place in its segment.
#[derive(Debug, Clone, Copy)]
struct Position {
    base: i64,
    end: i64,
    epoch: i32,
    records: i32,
    /// Base offset of the segment holding it.
    segment: i64,
    position: u64,
    len: u32,
}

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
        Ok((log, report))
    }

    /// Opens one segment. Sealed segments keep their indexes if they look sound; the last one
    /// (or any whose index is missing or damaged) is scanned batch by batch.
    fn open_segment(
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

    fn map_indexes(&self, base: i64) -> io::Result<(OffsetIndex, TimeIndex)> {
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
    fn reload_tail(&mut self) -> Result<(), LogError> {
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

    fn check_usable(&self) -> Result<(), LogError> {
        match &self.poisoned {
            Some(why) => Err(LogError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Runs an I/O step; a failure poisons the log.
    fn poison_on_error<T>(&mut self, result: Result<T, LogError>) -> Result<T, LogError> {
        if let Err(LogError::Io { context, source }) = &result {
            self.poisoned = Some(format!("{context}: {source}"));
        }
        result
    }

    fn active(&self) -> &Segment<S::File> {
        self.segments.last().expect("a log always has a segment")
    }

    pub fn log_start_offset(&self) -> i64 {
        self.segments[0].base_offset
    }

    /// One past the last appended offset (Kafka's log end offset).
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// One past the last offset written to the file (what readers can see).
    pub fn written_offset(&self) -> i64 {
        self.written_offset
    }

    /// One past the last offset made durable by an fdatasync.
    pub fn durable_offset(&self) -> i64 {
        self.durable_offset
    }

    /// How many times the log was cut back or reset since it was opened: a caller holding
    /// something that describes the log's end (an acknowledgement) can tell whether it still
    /// holds.
    pub fn truncations(&self) -> u64 {
        self.truncations
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the settings (a topic config change): sizes apply from the next roll, retention
    /// from the next [`Log::apply_retention`].
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Waits for the writes still in flight to the active segment, whatever their outcome: a
    /// failed log must be quiet before it is opened again (a late write could land past the
    /// end recovery settles on).
    pub fn quiesce(&mut self) {
        let active = self.segments.last_mut().expect("a log always has a segment");
        let _ = active.file.sync_data();
    }

    /// The file a [`ReadSlice`] refers to, for sendfile or a read.
    pub fn segment_file(&self, segment_base_offset: i64) -> Option<&S::File> {
        self.segments.iter().find(|s| s.base_offset == segment_base_offset).map(|s| &s.file)
    }

    /// Appends one RecordBatch v2, assigning its base offset and leader epoch. The batch's CRC
    /// is checked first. The batch is readable after the next [`Log::write`] or [`Log::flush`],
    /// durable after the next flush.
    pub fn append(&mut self, batch: &[u8], partition_leader_epoch: i32) -> Result<AppendInfo, LogError> {
        self.check_usable()?;
        let header = batch::validate(batch, self.config.max_batch_bytes).map_err(LogError::InvalidBatch)?;
        self.append_validated(batch, header, partition_leader_epoch, None)
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
        batches.iter().zip(headers).map(|(b, h)| self.append_validated(b, h, partition_leader_epoch, None)).collect()
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
            && (active.size + batch.len() as u64 > self.config.segment_bytes || offset_span > i64::from(i32::MAX))
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

    /// Hands the whole blocks of the tail buffer to the device as a write-behind and keeps
    /// appending into a fresh buffer that starts with the partial last block (rewritten later, so
    /// write-behinds never overlap).
    fn hand_off(&mut self) -> Result<(), LogError> {
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
    fn wait_behind(&mut self, keep: usize) -> Result<(), LogError> {
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
    fn write_tail_behind(&mut self, with_partial: bool) -> Result<bool, LogError> {
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
    fn behind_ended(&self, seq: u64) -> bool {
        self.active().file.write_behind_pending() as u64 <= self.behind_submitted - seq
    }

    /// Waits for a flush's write of the tail's partial block if it is still in flight (the tail
    /// is about to be written from that block again), then sends the block held back meanwhile.
    fn wait_partial(&mut self) -> Result<(), LogError> {
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
    fn reap_behinds(&mut self) -> Result<(), LogError> {
        let active = self.segments.last_mut().expect("a log always has a segment");
        let buffers = active.file.poll_writes().map_err(io_context(|| format!("writing {}", active.path.display())))?;
        self.keep_spares(buffers);
        Ok(())
    }

    /// Reserves blocks of the active segment up to past `end` (never past `segment.bytes`). A disk
    /// that cannot give a whole step is asked for just the blocks up to `end`: reserving ahead is
    /// an optimisation and must not refuse a write that fits.
    fn ensure_preallocated(&mut self, end: u64) -> Result<(), LogError> {
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
    fn zero_ahead(&mut self, end: u64) {
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

    /// Writes the tail before the active segment is cut or removed (a roll, a truncation, a
    /// reset): no zeros ahead, the cut would take them straight away. The cut's own
    /// `reload_tail` or the roll resets `zeroed_to`.
    fn write_tail_before_cut(&mut self, sync: bool) -> Result<(), LogError> {
        self.zeroed_to = u64::MAX;
        self.write_tail(sync)
    }

    /// An empty tail buffer: a spare one (a busy log's, grown to its appends), else a new one of
    /// `capacity` bytes counted against the shard's write buffers (it grows as appends need).
    fn take_buffer(&mut self, capacity: usize) -> AlignedBuf {
        let mut buffer =
            self.spare_buffers.pop().unwrap_or_else(|| AlignedBuf::counted(capacity, self.storage.memory()));
        buffer.truncate(0);
        buffer
    }

    /// Keeps a few returned buffers for reuse while the shard's write buffers are under their
    /// limit (at most [`SPARE_BUFFERS_MAX`]), dropping the rest.
    fn keep_spares(&mut self, buffers: Vec<AlignedBuf>) {
        for buffer in buffers {
            if self.spare_buffers.len() < SPARE_BUFFERS_MAX && !self.storage.memory().write_buffers_refuse(0) {
                self.spare_buffers.push(buffer);
            }
        }
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
        self.append_validated(batch, header, header.partition_leader_epoch, Some(batch))
    }

    /// Keeps the last `max_bytes` of appended batches in memory (0: none), for
    /// [`Log::recent_from`]: a replicated log's leader sends them to followers from there.
    pub fn keep_recent(&mut self, max_bytes: usize) {
        self.recent.set_budget(max_bytes);
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
    }

    fn position_ending_at(&self, end_offset: i64) -> Option<&Position> {
        let i = self.positions.binary_search_by_key(&end_offset, |p| p.end).ok()?;
        self.positions.get(i)
    }

    /// Start offset of the batch ending exactly at `end_offset`, if one does.
    pub fn base_of_batch_ending_at(&self, end_offset: i64) -> Result<Option<i64>, LogError> {
        if end_offset <= self.log_start_offset() || end_offset > self.log_end_offset() {
            return Ok(None);
        }
        if let Some(p) = self.position_ending_at(end_offset) {
            return Ok(Some(p.base));
        }
        if let Some(base) = self.recent.base_of_batch_ending_at(end_offset) {
            return Ok(Some(base));
        }
        // Not written yet: `positions` holds every such batch, so this is no boundary.
        if end_offset > self.written_offset {
            return Ok(None);
        }
        Ok(self.read(end_offset - 1, 1, None)?.filter(|s| s.next_offset == end_offset).map(|s| s.first_offset))
    }

    /// The leader epoch (raft term) of the batch that ends right before `end_offset`, if a batch
    /// ends exactly there; `Ok(None)` if `end_offset` is not a batch boundary of this log.
    pub fn epoch_of_batch_ending_at(&self, end_offset: i64) -> Result<Option<i32>, LogError> {
        if end_offset <= self.log_start_offset() || end_offset > self.log_end_offset() {
            return Ok(None);
        }
        if let Some(p) = self.position_ending_at(end_offset) {
            return Ok(Some(p.epoch));
        }
        if let Some(epoch) = self.recent.epoch_ending_at(end_offset) {
            return Ok(Some(epoch));
        }
        // Not written yet: `positions` holds every such batch, so this is no boundary.
        if end_offset > self.written_offset {
            return Ok(None);
        }
        match self.read(end_offset - 1, 1, None)? {
            Some(slice) if slice.next_offset == end_offset => {
                let bytes = self.read_bytes(&ReadSlice { len: batch::BATCH_HEADER_BYTES as u64, ..slice })?;
                let header = BatchHeader::parse(&bytes).map_err(LogError::InvalidBatch)?;
                Ok(Some(header.partition_leader_epoch))
            }
            _ => Ok(None),
        }
    }

    /// Writes appended batches to the file (no fdatasync): they become readable.
    pub fn write(&mut self) -> Result<(), LogError> {
        self.check_usable()?;
        let result = self.write_tail(false);
        self.poison_on_error(result)
    }

    /// Writes appended batches and fdatasyncs the active segment: one write and one sync for
    /// every append since the last flush. Returns the new durable offset.
    pub fn flush(&mut self) -> Result<i64, LogError> {
        self.check_usable()?;
        let result = self.write_tail(true);
        self.poison_on_error(result)?;
        Ok(self.durable_offset)
    }

    /// Group commit with the fdatasync off the caller's thread: writes what was appended (no
    /// sync) and returns what an fdatasync of the active segment makes durable, to be run
    /// anywhere ([`SyncTicket::sync`], on another thread) while this log takes more appends;
    /// [`Log::end_sync`] then moves the durable offset. `None` if everything written is durable
    /// already, or if the storage has no descriptor to sync from elsewhere (the simulator):
    /// then this was a whole [`Log::flush`].
    pub fn begin_sync(&mut self) -> Result<Option<SyncTicket>, LogError> {
        self.check_usable()?;
        let result = self.write_tail(false);
        self.poison_on_error(result)?;
        if self.durable_offset >= self.written_offset {
            return Ok(None);
        }
        let active = self.active();
        let Some(fd) = active.file.raw_fd() else {
            self.flush()?;
            return Ok(None);
        };
        // SAFETY: the descriptor belongs to the active segment's file, open for the duration of
        // this call; the clone is a descriptor of its own (dup), so the sync may outlive a roll.
        let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map(|fd| std::sync::Arc::new(std::fs::File::from(fd)))
            .map_err(io_context(|| format!("duplicating the descriptor of {}", active.path.display())));
        let file = self.poison_on_error(file)?;
        let path = self.active().path.clone();
        Ok(Some(SyncTicket { file, path, target: self.written_offset, epoch: self.sync_epoch }))
    }

    /// Ends a sync from [`Log::begin_sync`] with its outcome: the durable offset moves to the
    /// ticket's target unless the log was truncated, reset or rolled meanwhile (a roll synced
    /// everything itself; after a truncation the offsets below the target may hold batches the
    /// sync never saw, and the next sync covers them). A failed sync poisons the log. Returns the
    /// durable offset.
    pub fn end_sync(&mut self, ticket: SyncTicket, result: io::Result<()>) -> Result<i64, LogError> {
        self.check_usable()?;
        if let Err(source) = result {
            let failed = Err(LogError::Io { context: format!("syncing {}", ticket.path.display()), source });
            return self.poison_on_error(failed);
        }
        if ticket.epoch == self.sync_epoch {
            self.durable_offset = self.durable_offset.max(ticket.target.min(self.written_offset));
        }
        Ok(self.durable_offset)
    }

    /// Group commit without blocking the caller: hands everything appended to the device as
    /// one more write-behind (whole blocks, and the partial last block padded, which stays in
    /// the tail to be written again) and returns a ticket; [`Log::poll_flush`] then moves the
    /// ticket on as the writes end, starts the fdatasync, and reports its end. Appends go on
    /// meanwhile. `None` if everything written is durable already.
    pub fn begin_flush(&mut self) -> Result<Option<FlushTicket>, LogError> {
        self.check_usable()?;
        let result = self.begin_flush_inner();
        self.poison_on_error(result)
    }

    fn begin_flush_inner(&mut self) -> Result<Option<FlushTicket>, LogError> {
        let active = self.active();
        let pending = active.size > active.readable_size;
        if !pending && self.durable_offset >= self.written_offset {
            return Ok(None);
        }
        if pending {
            self.write_tail_behind(true)?;
        }
        let active = self.active();
        Ok(Some(FlushTicket {
            target: active.next_offset,
            size: active.size,
            behind: self.behind_submitted,
            epoch: self.sync_epoch,
            sync: None,
        }))
    }

    /// Moves a flush from [`Log::begin_flush`] on without blocking: true once it ended (the
    /// durable offset then covers the ticket), false while the device works. A truncation,
    /// reset or roll since the ticket voids it (true at once, nothing moved: the log was cut or
    /// synced meanwhile, and the next flush covers the rest). An I/O failure poisons the log.
    pub fn poll_flush(&mut self, ticket: &mut FlushTicket) -> Result<bool, LogError> {
        self.check_usable()?;
        if ticket.epoch != self.sync_epoch {
            // Void; but a started fdatasync's outcome still counts (the kernel reports a
            // writeback error once).
            let Some(id) = ticket.sync else { return Ok(true) };
            let ended = self.sync_ended(id);
            return self.poison_on_error(ended);
        }
        let result = self.poll_flush_inner(ticket);
        self.poison_on_error(result)
    }

    /// Blocks until [`Log::poll_flush`] can move `ticket` on (its writes or its sync ended).
    pub fn wait_flush(&mut self, ticket: &FlushTicket) -> Result<(), LogError> {
        self.check_usable()?;
        let result = match ticket.sync {
            Some(id) => {
                let active = self.segments.last_mut().expect("a log always has a segment");
                active.file.wait_sync(id).map_err(io_context(|| format!("syncing {}", active.path.display())))
            }
            None => self.wait_behind((self.behind_submitted - ticket.behind) as usize),
        };
        self.poison_on_error(result)
    }

    fn poll_flush_inner(&mut self, ticket: &mut FlushTicket) -> Result<bool, LogError> {
        let sync = match ticket.sync {
            Some(id) => id,
            None => {
                if !self.behind_ended(ticket.behind) {
                    self.reap_behinds()?;
                    if !self.behind_ended(ticket.behind) {
                        return Ok(false);
                    }
                }
                let active = self.segments.last_mut().expect("a log always has a segment");
                active.readable_size = active.readable_size.max(ticket.size);
                self.written_offset = self.written_offset.max(ticket.target);
                let id =
                    active.file.start_sync().map_err(io_context(|| format!("syncing {}", active.path.display())))?;
                ticket.sync = Some(id);
                id
            }
        };
        if !self.sync_ended(sync)? {
            return Ok(false);
        }
        self.durable_offset = self.durable_offset.max(ticket.target);
        Ok(true)
    }

    /// Whether the sync `id` ([`StorageFile::start_sync`]) ended; its failure as an error.
    fn sync_ended(&mut self, id: u64) -> Result<bool, LogError> {
        let active = self.segments.last_mut().expect("a log always has a segment");
        match active.file.poll_sync(id) {
            Ok(None) => Ok(false),
            Ok(Some(Ok(()))) => Ok(true),
            Ok(Some(Err(source))) | Err(source) => {
                Err(LogError::Io { context: format!("syncing {}", active.path.display()), source })
            }
        }
    }

    fn write_tail(&mut self, sync: bool) -> Result<(), LogError> {
        self.wait_partial()?;
        self.wait_behind(0)?;
        let end = self.tail_position + self.tail.len() as u64;
        self.ensure_preallocated(end)?;
        let active = self.segments.last_mut().expect("a log always has a segment");
        let pending = active.size > active.readable_size;
        if pending {
            let logical = self.tail.len();
            let alignment = active.file.write_alignment();
            self.tail.pad_to(alignment);
            let path = &active.path;
            let result = if sync {
                active.file.write_and_sync(self.tail_position, self.tail.as_slice())
            } else {
                active.file.write_at(self.tail_position, self.tail.as_slice())
            };
            let at = self.tail_position;
            result.map_err(io_context(|| format!("writing {} at byte {at}", path.display())))?;
            self.tail.truncate(logical);
            active.readable_size = active.size;
            self.written_offset = active.next_offset;
            let keep_from = active.size / alignment as u64 * alignment as u64;
            self.tail.drain_front((keep_from - self.tail_position) as usize);
            self.tail_position = keep_from;
            if alignment == 1 {
                self.zero_ahead(end);
            }
        } else if sync && self.durable_offset < self.written_offset {
            let path = &active.path;
            active.file.sync_data().map_err(io_context(|| format!("syncing {}", path.display())))?;
        }
        if sync {
            self.durable_offset = self.written_offset;
        }
        Ok(())
    }

    /// Seals the active segment (data synced and cut to its logical size, indexes written) and
    /// starts a new one at the log end offset.
    fn roll(&mut self) -> Result<(), LogError> {
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
        let old = std::mem::replace(&mut self.tail, AlignedBuf::with_capacity(0));
        self.keep_spares(vec![old]);
        self.tail = self.take_buffer(crate::io::TAIL_FIRST_BYTES);
        self.preallocated_to = 0;
        self.zeroed_to = 0;
        self.tail_position = 0;
        Ok(())
    }

    fn create_segment(&mut self, base: i64) -> Result<Segment<S::File>, LogError> {
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
            offset_index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            bytes_since_index_entry: 0,
        })
    }

    fn remove_segment_files(&mut self, base: i64) -> Result<(), LogError> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = self.dir.join(file_name(base, suffix));
            if self.storage.exists(&path) {
                self.storage.remove(&path).map_err(io_context(|| format!("removing {}", path.display())))?;
            }
        }
        Ok(())
    }

    fn segment_index_for(&self, offset: i64) -> usize {
        self.segments.partition_point(|s| s.base_offset <= offset).saturating_sub(1)
    }

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
        self.poison_on_error(result)
    }

    fn truncate_inner(&mut self, offset: i64) -> Result<i64, LogError> {
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        self.write_tail_before_cut(false)?;
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
            for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
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

    /// Deletes whole oldest segments past `retention.ms` (against `now_ms`, given by the caller)
    /// or while the log exceeds `retention.bytes`. The active segment is never deleted.
    /// Compaction (cleanup.policy=compact): in the sealed segments wholly below `limit_offset`
    /// (the commit point), keeps only the newest record of each key, as of everything below
    /// `limit_offset`, and drops tombstones (null values) older than `delete.retention.ms`.
    /// Offsets never change: a batch keeps its offset range even with no record left, so
    /// positions and terms stay where raft expects them. Compressed batches are kept whole
    /// (their records are not read here). A rewritten segment goes to a `.log.cleaned` file,
    /// synced, then renamed over the segment, whose indexes are rebuilt.
    pub fn compact(&mut self, now_ms: i64, limit_offset: i64) -> Result<CompactionOutcome, LogError> {
        self.check_usable()?;
        let mut outcome = CompactionOutcome::default();
        let limit = limit_offset.min(self.written_offset);
        // Sealed segments whose every offset lies below the limit.
        let cleanable = (0..self.segments.len().saturating_sub(1))
            .take_while(|&i| self.segments[i + 1].base_offset <= limit)
            .count();
        if cleanable == 0 {
            return Ok(outcome);
        }
        // The newest offset of every key below the limit.
        let mut latest: std::collections::HashMap<Vec<u8>, i64> = std::collections::HashMap::new();
        for segment in &self.segments {
            if segment.base_offset >= limit {
                break;
            }
            for_each_batch(segment, |bytes, header| {
                if header.next_offset() > limit || header.attributes & batch::CONTROL_ATTRIBUTE != 0 {
                    return;
                }
                for record in batch::records(bytes).unwrap_or_default() {
                    if let Some(key) = record.key {
                        latest.insert(key.to_vec(), record.offset);
                    }
                }
            })
            .map_err(io_context(|| format!("reading {}", segment.path.display())))?;
        }
        let tombstone_horizon = now_ms - self.config.delete_retention_ms;
        for i in 0..cleanable {
            let segment = &self.segments[i];
            let mut cleaned = Vec::with_capacity(segment.size as usize);
            let mut removed = 0u64;
            for_each_batch(segment, |bytes, header| {
                if header.attributes & batch::CONTROL_ATTRIBUTE != 0 || header.compression() != 0 {
                    cleaned.extend_from_slice(bytes);
                    return;
                }
                let Ok(records) = batch::records(bytes) else {
                    cleaned.extend_from_slice(bytes);
                    return;
                };
                let keep: Vec<std::ops::Range<usize>> = records
                    .iter()
                    .filter(|r| match r.key {
                        None => true,
                        Some(key) => {
                            latest.get(key) == Some(&r.offset) && (r.value.is_some() || r.timestamp > tombstone_horizon)
                        }
                    })
                    .map(|r| r.raw.clone())
                    .collect();
                if keep.len() == records.len() {
                    cleaned.extend_from_slice(bytes);
                } else {
                    removed += (records.len() - keep.len()) as u64;
                    cleaned.extend_from_slice(&batch::retain_records(bytes, &keep));
                }
            })
            .map_err(io_context(|| format!("reading {}", segment.path.display())))?;
            if removed == 0 {
                continue;
            }
            outcome.segments += 1;
            outcome.records_removed += removed;
            outcome.bytes_before += segment.size;
            outcome.bytes_after += cleaned.len() as u64;
            let result = self.replace_segment(i, &cleaned);
            self.poison_on_error(result)?;
        }
        Ok(outcome)
    }

    /// Puts `bytes` in place of sealed segment `i` (crash-safe: write, sync, rename), and
    /// reopens it with new indexes.
    fn replace_segment(&mut self, i: usize, bytes: &[u8]) -> Result<(), LogError> {
        let base = self.segments[i].base_offset;
        let next_base = self.segments[i + 1].base_offset;
        let path = self.segments[i].path.clone();
        let cleaned_path = self.dir.join(file_name(base, CLEANED_SUFFIX));
        let cleaned = &cleaned_path;
        let context = |what: &'static str| io_context(move || format!("{what} {}", cleaned.display()));
        {
            let mut file = self.storage.open(&cleaned_path, FileKind::Index).map_err(context("creating"))?;
            file.set_len(0).map_err(context("truncating"))?;
            file.write_at(0, bytes).map_err(context("writing"))?;
            file.sync_data().map_err(context("syncing"))?;
        }
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let index = self.dir.join(file_name(base, suffix));
            if self.storage.exists(&index) {
                self.storage.remove(&index).map_err(io_context(|| format!("removing {}", index.display())))?;
            }
        }
        self.storage.rename(&cleaned_path, &path).map_err(context("renaming"))?;
        self.storage.sync_dir(&self.dir).map_err(io_context(|| format!("syncing {}", self.dir.display())))?;
        let mut report = RecoveryReport::default();
        let (segment, corruption) = self.open_segment(base, Some(next_base), &mut report)?;
        if let Some(corruption) = corruption {
            return Err(LogError::Io {
                context: format!("compacted segment {} does not read back: {corruption}", path.display()),
                source: io::Error::other("compaction"),
            });
        }
        self.segments[i] = segment;
        // Its batches moved: what `positions` says of them must not be read again (were a
        // truncation to make this segment the active one).
        self.positions.retain(|p| p.segment != base);
        Ok(())
    }

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
            let result =
                self.storage.sync_dir(&self.dir).map_err(io_context(|| format!("syncing {}", self.dir.display())));
            self.poison_on_error(result)?;
        }
        Ok(outcome)
    }

    /// Empties the log and starts it again at `offset`, which may lie past the log end (a
    /// follower catching up with a leader whose log now starts beyond it).
    pub fn reset_to(&mut self, offset: i64) -> Result<(), LogError> {
        self.check_usable()?;
        self.recent.clear();
        self.positions.clear();
        let result = self.reset_inner(offset);
        self.poison_on_error(result)
    }

    fn reset_inner(&mut self, offset: i64) -> Result<(), LogError> {
        self.write_tail_before_cut(false)?;
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

    /// Where a given segment's base offsets lie (tests and tooling).
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(|s| s.base_offset).collect()
    }
}
