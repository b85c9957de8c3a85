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
//!
//! `Log`'s methods live in the files of what they do: `open.rs` (opening, recovery, segment
//! files), `append.rs` (appends, write-behinds, reserved blocks), `flush.rs` (writes and group
//! commit), `read.rs` (reads and lookups), `truncate.rs` (truncation, reset, roll, retention),
//! `compact.rs`, `epochs.rs` and `memory.rs`; this file keeps the types and the accessors.

mod append;
pub mod batch;
mod compact;
mod durability;
mod epochs;
mod flush;
pub mod index;
mod invariants;
mod memory;
mod open;
mod read;
mod recent;
pub mod segment;
mod truncate;
pub mod txn;

pub use batch::{BatchError, BatchHeader};
pub use durability::DurabilityWaiters;
pub use epochs::EpochSpan;
pub use flush::{FlushTicket, SyncTicket};
pub use memory::LogMemory;
pub use segment::Corruption;

use crate::io::{AlignedBuf, Storage, StorageFile};
use segment::Segment;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

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
    /// `segment.ms`: a segment is rolled before a batch whose timestamp is more than this past
    /// the segment's first batch's (Kafka's rule: by record time, not the broker's clock).
    pub segment_ms: i64,
    /// `segment.jitter.ms`: each segment rolls up to this much before `segment_ms`, by an
    /// amount drawn from its base offset (deterministic), so that many partitions created
    /// together do not all roll at once.
    pub segment_jitter_ms: i64,
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
    /// `min.compaction.lag.ms`: compaction leaves every segment holding a record younger than
    /// this (by record time, against the `now_ms` it is given).
    pub min_compaction_lag_ms: i64,
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
// Preallocation grows a segment by whole direct-I/O blocks, the first step never past the later ones.
const _: () = assert!(
    PREALLOCATE_FIRST_BYTES <= PREALLOCATE_STEP_BYTES
        && PREALLOCATE_FIRST_BYTES.is_multiple_of(crate::io::DIRECT_IO_ALIGNMENT as u64)
        && PREALLOCATE_STEP_BYTES.is_multiple_of(crate::io::DIRECT_IO_ALIGNMENT as u64)
);

/// Finished write-behind buffers a log keeps for reuse while it is busy (none once idle, and
/// none while its shard's write buffers are over their limit).
pub const SPARE_BUFFERS_MAX: usize = 4;

/// Kafka's default `segment.bytes` (1 GiB).
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Kafka's default `delete.retention.ms` (1 day).
pub const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;
/// Kafka's default `segment.ms` (7 days).
pub const SEGMENT_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's default `retention.ms` (7 days).
pub const RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            segment_jitter_ms: 0,
            index_interval_bytes: 4096,
            retention_bytes: -1,
            retention_ms: RETENTION_MS_DEFAULT,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
            min_compaction_lag_ms: 0,
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
    /// The offsets as of the last invariant check (`invariants.rs`).
    watermarks: invariants::Watermarks,
    /// The truncation count and target of the last flush or sync ticket issued: targets never
    /// fall between truncations.
    ticket_target: (u64, i64),
    /// The log's transactions, once asked for (`txn.rs`).
    txns: Option<txn::Transactions>,
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

    fn segment_index_for(&self, offset: i64) -> usize {
        self.segments.partition_point(|s| s.base_offset <= offset).saturating_sub(1)
    }

    /// Where a given segment's base offsets lie (tests and tooling).
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(|s| s.base_offset).collect()
    }
}
