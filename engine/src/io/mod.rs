//! The storage trait the log is written against, and its implementations.
//!
//! ```text
//!   Storage ──open──► StorageFile   (read_at / write_at / sync_data / set_len / map)
//!      │
//!      ├── UringStorage  real files; writes and fdatasync go through the shard's own io_uring,
//!      │                 optionally O_DIRECT (then every write is block aligned)
//!      └── SimStorage    in memory, seeded: tears writes, loses unsynced writes on crash,
//!                        flips bits, reports a full disk
//! ```
//!
//! A storage value and its files live on one shard: they are `!Send` by construction
//! (`Rc` inside), and only that shard's thread may call them.

mod aligned;
mod memory;
mod sim;
mod uring;

pub use aligned::{AlignedBuf, DIRECT_IO_ALIGNMENT};
pub use memory::{MemoryBudget, MemoryFigures, TAIL_FIRST_BYTES};
pub use sim::{SimFaults, SimStorage};
pub use uring::{UringStorage, WRITE_CHUNK_BYTES};

use std::io;
use std::ops::Deref;
use std::path::Path;

/// Raw OS error for "no space left on device"; the simulator reports a full disk with it too.
pub const ENOSPC: i32 = libc::ENOSPC;

/// A whole file mapped (or, in the simulator, copied) read-only.
pub enum Mapped {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Mapped::Mmap(m) => m,
            Mapped::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapped({} bytes)", self.len())
    }
}

/// A directory of files. Paths are absolute or relative to the process's working directory.
pub trait Storage {
    type File: StorageFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File names (not paths) in `dir`, sorted.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for reading and writing, creating it empty if it does not exist.
    /// `kind` says what the file holds: segment data may be written with O_DIRECT, indexes never.
    fn open(&self, path: &Path, kind: FileKind) -> io::Result<Self::File>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Replaces `to` with `from` atomically (durable once the directory is synced).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// Makes creations and removals of files in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The memory budget of the logs opened on this storage (one per shard).
    fn memory(&self) -> &MemoryBudget;
}

/// What a file holds, which decides how it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Segment data: large sequential appends, O_DIRECT where the storage is configured so.
    SegmentData,
    /// Small files written whole and mapped for reading (indexes).
    Index,
}

/// One open file. Reads may be served from any point; writes follow [`StorageFile::write_alignment`].
pub trait StorageFile {
    /// Every write must start at, and be a length of, a multiple of this many bytes
    /// (the logical block size under O_DIRECT, 1 for buffered files). Memory alignment of the
    /// data is the implementation's business.
    fn write_alignment(&self) -> usize;
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `position`; fails with `UnexpectedEof` past the end of the file.
    fn read_exact_at(&self, position: u64, buf: &mut [u8]) -> io::Result<()>;
    fn write_at(&mut self, position: u64, data: &[u8]) -> io::Result<()>;
    /// fdatasync: every write before this call is durable once it returns Ok.
    fn sync_data(&mut self) -> io::Result<()>;
    /// One write followed by one fdatasync (on io_uring: two linked entries, one submission).
    fn write_and_sync(&mut self, position: u64, data: &[u8]) -> io::Result<()> {
        self.write_at(position, data)?;
        self.sync_data()
    }
    /// Starts writing `buf` at `position` and returns without waiting; the file holds the buffer
    /// until the write ends. Such writes must not overlap one another or any later write.
    /// [`StorageFile::sync_data`], a synchronous write and [`StorageFile::set_len`] first wait for
    /// them; so does [`StorageFile::wait_writes`], which hands the buffers back for reuse.
    fn write_behind(&mut self, position: u64, buf: AlignedBuf) -> io::Result<()>;
    /// Write-behinds not yet waited for.
    fn write_behind_pending(&self) -> usize;
    /// The file will not be written for a while (an idle log, a sealed segment): whatever it
    /// holds only for writing (a second descriptor) may go, if no write-behind is in flight.
    /// The next write takes it again.
    fn release_writer(&mut self) {}
    /// Waits for the oldest write-behinds until at most `keep_pending` remain; returns their
    /// buffers.
    fn wait_writes(&mut self, keep_pending: usize) -> io::Result<Vec<AlignedBuf>>;
    /// Reaps the oldest write-behinds that ended, without waiting ([`StorageFile::write_behind_pending`]
    /// then counts the rest). Hands back their buffers like [`StorageFile::wait_writes`]; a
    /// failed one is an error (as from `wait_writes`).
    fn poll_writes(&mut self) -> io::Result<Vec<AlignedBuf>>;
    /// Starts an fdatasync without waiting for it; it makes durable the writes that ended
    /// before it (so poll the write-behinds to their end first). [`StorageFile::poll_sync`]
    /// says when it ends.
    fn start_sync(&mut self) -> io::Result<u64>;
    /// The outcome of the sync `id` from [`StorageFile::start_sync`] once it ended (reported
    /// once), or `None` while it runs.
    fn poll_sync(&mut self, id: u64) -> io::Result<Option<io::Result<()>>>;
    /// Blocks until the sync `id` ended, leaving its outcome for [`StorageFile::poll_sync`].
    fn wait_sync(&mut self, id: u64) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Reserves disk blocks for `[offset, offset + len)` without changing the file's length
    /// (fallocate with KEEP_SIZE), so later appends do not allocate as they go. Fails with
    /// `Unsupported` where the file system cannot.
    fn preallocate(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// The whole file, read-only, as of now.
    fn map(&self) -> io::Result<Mapped>;
    /// The OS file descriptor, for sendfile/splice; `None` in the simulator.
    fn raw_fd(&self) -> Option<std::os::fd::RawFd>;
}

/// True if `err` means the disk is full.
pub fn is_disk_full(err: &io::Error) -> bool {
    err.raw_os_error() == Some(ENOSPC) || err.kind() == io::ErrorKind::StorageFull
}
