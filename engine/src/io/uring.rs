//! Real files, with writes and fdatasync submitted to the shard's own io_uring.
//!
//! One `UringStorage` per shard: its [`Ring`] is shared (through `Rc`) by every file the shard
//! opens. A small flush is one `io_uring_enter`: the write and an fdatasync linked behind it; a
//! large one goes to the device as a queue of 1 MiB writes, then the fdatasync. Write-behind ([`StorageFile::write_behind`]) submits without
//! waiting, so the shard keeps appending while the device writes.
//! Segment data may be opened O_DIRECT; reads, maps and sendfile then use a second, buffered
//! descriptor of the same file (the kernel keeps the two coherent).

use super::aligned::{AlignedBuf, DIRECT_IO_ALIGNMENT};
use super::{FileKind, Mapped, MemoryBudget, Storage, StorageFile};
use io_uring::{opcode, squeue, types, IoUring};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::rc::Rc;

/// Submission queue depth of a shard's ring.
const RING_ENTRIES: u32 = 128;
/// Large writes are cut into chunks of this size and submitted together (a queue of them).
pub const WRITE_CHUNK_BYTES: usize = 1 << 20;
const _: () = assert!(WRITE_CHUNK_BYTES.is_multiple_of(super::DIRECT_IO_ALIGNMENT));

/// A shard's io_uring and the completions reaped for operations not yet claimed: several files
/// share the ring, so whoever waits collects every completion and leaves the others' behind.
pub struct Ring {
    uring: IoUring,
    next_id: u64,
    completed: HashMap<u64, i32>,
    /// Signalled on completions once registered ([`UringStorage::completion_fd`]).
    eventfd: Option<std::os::fd::OwnedFd>,
}

impl Ring {
    fn new() -> io::Result<Self> {
        let uring = IoUring::new(RING_ENTRIES).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!(
                    "io_uring is unavailable ({err}); Braid needs Linux 5.10+ with io_uring allowed: \
                     check /proc/sys/kernel/io_uring_disabled is 0 and, in a container, that the \
                     seccomp profile permits io_uring_setup/io_uring_enter (e.g. docker \
                     --security-opt seccomp=unconfined)"
                ),
            )
        })?;
        Ok(Self { uring, next_id: 0, completed: HashMap::new(), eventfd: None })
    }

    /// Queues one entry and returns its id.
    ///
    /// # Safety
    /// Memory the entry points at must stay valid until [`Ring::wait`] has returned its id.
    unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let entry = entry.user_data(id);
        // SAFETY: the caller keeps the entry's memory alive until completion.
        while unsafe { self.uring.submission().push(&entry) }.is_err() {
            self.uring.submit()?;
            self.reap();
        }
        Ok(id)
    }

    fn reap(&mut self) {
        for cqe in self.uring.completion() {
            self.completed.insert(cqe.user_data(), cqe.result());
        }
    }

    /// Submits what is queued without waiting.
    fn submit(&mut self) -> io::Result<()> {
        self.uring.submit()?;
        self.reap();
        Ok(())
    }

    /// The result of `id` if it ended (claimed: reported once), without waiting.
    fn poll(&mut self, id: u64) -> Option<i32> {
        self.reap();
        self.completed.remove(&id)
    }

    /// Waits until `id` ended, leaving its result to be claimed.
    fn wait_unclaimed(&mut self, id: u64) -> io::Result<()> {
        loop {
            self.reap();
            if self.completed.contains_key(&id) {
                return Ok(());
            }
            match self.uring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// An eventfd the kernel signals on every completion of this ring (registered once).
    fn completion_fd(&mut self) -> io::Result<std::os::fd::RawFd> {
        if let Some(fd) = &self.eventfd {
            return Ok(fd.as_raw_fd());
        }
        // SAFETY: eventfd takes no pointers; the descriptor it returns is owned right below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        self.uring.submitter().register_eventfd(raw)?;
        self.eventfd = Some(fd);
        Ok(raw)
    }

    /// Submits what is queued and waits for `ids`; returns their results (negative = -errno).
    fn wait(&mut self, ids: &[u64]) -> io::Result<Vec<i32>> {
        loop {
            self.reap();
            let missing = ids.iter().filter(|id| !self.completed.contains_key(id)).count();
            if missing == 0 {
                break;
            }
            match self.uring.submit_and_wait(missing) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ids.iter().map(|id| self.completed.remove(id).expect("reaped above")).collect())
    }
}

/// Files on the local file system, written through one io_uring. Clones share the ring (one
/// ring per shard, however many logs the shard holds).
#[derive(Clone)]
pub struct UringStorage {
    ring: Rc<RefCell<Ring>>,
    direct_io: bool,
    memory: MemoryBudget,
}

impl UringStorage {
    /// Sets up the ring. Fails with a message naming the fix where the kernel or a seccomp
    /// profile forbids io_uring.
    pub fn new(direct_io: bool) -> io::Result<Self> {
        Ok(Self { ring: Rc::new(RefCell::new(Ring::new()?)), direct_io, memory: MemoryBudget::default() })
    }

    /// The same ring, its logs counting their memory against `memory` (the shard's budget).
    pub fn with_memory(mut self, memory: MemoryBudget) -> Self {
        self.memory = memory;
        self
    }

    pub fn direct_io(&self) -> bool {
        self.direct_io
    }

    /// An eventfd that becomes readable whenever an operation of this storage's ring ends, for
    /// a shard's event loop to wait on asynchronous syncs ([`StorageFile::start_sync`]). Owned by
    /// the ring: valid while any clone of this storage lives.
    pub fn completion_fd(&self) -> io::Result<std::os::fd::RawFd> {
        self.ring.borrow_mut().completion_fd()
    }
}

impl Storage for UringStorage {
    type File = UringFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path, kind: FileKind) -> io::Result<UringFile> {
        let buffered = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let direct_io = self.direct_io && kind == FileKind::SegmentData;
        Ok(UringFile {
            ring: Rc::clone(&self.ring),
            buffered,
            direct_io,
            direct: None,
            path: direct_io.then(|| path.to_path_buf()),
            behind: Vec::new(),
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn memory(&self) -> &MemoryBudget {
        &self.memory
    }
}

/// A write started by [`StorageFile::write_behind`]: the buffer is the kernel's until it ends.
struct WriteBehind {
    ids: Vec<u64>,
    buf: AlignedBuf,
    position: u64,
}

/// A file of a [`UringStorage`]; lives on the shard that opened it.
pub struct UringFile {
    ring: Rc<RefCell<Ring>>,
    /// For reads, sendfile, syncs and buffered writes.
    buffered: File,
    /// Writes go through O_DIRECT (the file's path is kept to open the writer).
    direct_io: bool,
    /// The O_DIRECT descriptor, open while the file is written: a second descriptor per
    /// segment only for the logs being written (`release_writer` closes it when a log goes
    /// idle or a segment is sealed), so ten thousand idle partitions hold one each.
    direct: Option<File>,
    path: Option<std::path::PathBuf>,
    behind: Vec<WriteBehind>,
}

impl UringFile {
    fn write_fd(&self) -> types::Fd {
        types::Fd(self.direct.as_ref().unwrap_or(&self.buffered).as_raw_fd())
    }

    /// Opens the O_DIRECT descriptor if writes need it and it is closed.
    fn open_writer(&mut self) -> io::Result<()> {
        if let (true, None, Some(path)) = (self.direct_io, &self.direct, &self.path) {
            self.direct = Some(OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path)?);
        }
        Ok(())
    }

    /// Queues `data` at `position` as 1 MiB writes; returns their ids.
    ///
    /// # Safety
    /// `data` must stay valid until the ids have been waited for.
    unsafe fn queue_writes(&self, ring: &mut Ring, position: u64, data: &[u8], link: bool) -> io::Result<Vec<u64>> {
        let fd = self.write_fd();
        let mut ids = Vec::with_capacity(data.len().div_ceil(WRITE_CHUNK_BYTES));
        let mut at = position;
        for chunk in data.chunks(WRITE_CHUNK_BYTES) {
            let mut entry = opcode::Write::new(fd, chunk.as_ptr(), chunk.len() as u32).offset(at).build();
            if link {
                entry = entry.flags(squeue::Flags::IO_LINK);
            }
            // SAFETY: forwarded to the caller.
            ids.push(unsafe { ring.push(entry)? });
            at += chunk.len() as u64;
        }
        Ok(ids)
    }

    fn sync_entry(&self) -> squeue::Entry {
        opcode::Fsync::new(self.write_fd()).flags(types::FsyncFlags::DATASYNC).build()
    }

    /// Turns write results into an error for the first failed or short chunk, finishing short
    /// chunks synchronously (rare: a signal, or a disk filling at the edge).
    fn settle(&self, position: u64, data: &[u8], results: &[i32]) -> io::Result<bool> {
        let mut short = false;
        for (i, (chunk, &result)) in data.chunks(WRITE_CHUNK_BYTES).zip(results).enumerate() {
            if result < 0 {
                return Err(io::Error::from_raw_os_error(-result));
            }
            let mut done = result as usize;
            while done < chunk.len() {
                short = true;
                let at = position + (i * WRITE_CHUNK_BYTES + done) as u64;
                let mut ring = self.ring.borrow_mut();
                // SAFETY: `chunk` outlives the wait right below.
                let id = unsafe { self.queue_writes(&mut ring, at, &chunk[done..], false)? };
                let more = ring.wait(&id)?[0];
                if more <= 0 {
                    return Err(if more < 0 {
                        io::Error::from_raw_os_error(-more)
                    } else {
                        io::Error::new(io::ErrorKind::WriteZero, "io_uring write wrote nothing")
                    });
                }
                done += more as usize;
            }
        }
        Ok(short)
    }

    fn write_now(&mut self, position: u64, data: &[u8], sync: bool) -> io::Result<()> {
        self.check_direct(position, data.len());
        self.open_writer()?;
        if self.direct.is_some() && !(data.as_ptr() as usize).is_multiple_of(DIRECT_IO_ALIGNMENT) {
            let mut bounce = AlignedBuf::with_capacity(data.len());
            bounce.extend_from_slice(data);
            return self.write_now(position, bounce.as_slice(), sync);
        }
        self.wait_behind()?;
        if self.direct.is_none() {
            // A buffered write is a copy into the page cache: a plain pwrite here costs less
            // than the ring's hand-off to an io-wq worker (where buffered writes to ext4 go)
            // and the wake-up back.
            self.buffered.write_all_at(data, position)?;
            return if sync { self.sync_data() } else { Ok(()) };
        }
        let single = data.len() <= WRITE_CHUNK_BYTES;
        let (write_ids, sync_id) = {
            let mut ring = self.ring.borrow_mut();
            // SAFETY: `data` outlives the waits below.
            let write_ids = unsafe { self.queue_writes(&mut ring, position, data, sync && single)? };
            // One chunk: the fdatasync is linked behind it, one submission for both. Several:
            // they go to the device together and the fdatasync follows once all are done.
            // SAFETY: an fdatasync entry points at no memory.
            let sync_id = if sync && single { Some(unsafe { ring.push(self.sync_entry())? }) } else { None };
            (write_ids, sync_id)
        };
        let results = self.ring.borrow_mut().wait(&write_ids)?;
        let sync_result = match sync_id {
            Some(id) => Some(self.ring.borrow_mut().wait(&[id])?[0]),
            None => None,
        };
        let short = self.settle(position, data, &results)?;
        match sync_result {
            Some(result) if result < 0 && result != -libc::ECANCELED => Err(io::Error::from_raw_os_error(-result)),
            Some(result) if short || result == -libc::ECANCELED => self.sync_data(),
            None if sync => self.sync_data(),
            _ => Ok(()),
        }
    }

    fn check_direct(&self, position: u64, len: usize) {
        if self.direct_io {
            assert!(
                (position as usize).is_multiple_of(DIRECT_IO_ALIGNMENT) && len.is_multiple_of(DIRECT_IO_ALIGNMENT),
                "O_DIRECT write at {position} of {len} bytes is not {DIRECT_IO_ALIGNMENT}-aligned"
            );
        }
    }

    /// Ends the oldest write-behinds, in order, until at most `keep_pending` remain: waiting for
    /// each if `wait`, else only those already complete. Returns their buffers for reuse; a
    /// failed write is an error once they are all settled.
    fn end_behind(&mut self, keep_pending: usize, wait: bool) -> io::Result<Vec<AlignedBuf>> {
        let mut first_error = None;
        let mut buffers = Vec::new();
        while self.behind.len() > keep_pending {
            let ids = &self.behind[0].ids;
            let results = {
                let mut ring = self.ring.borrow_mut();
                if wait {
                    ring.wait(ids)?
                } else {
                    ring.reap();
                    if !ids.iter().all(|id| ring.completed.contains_key(id)) {
                        break;
                    }
                    ids.iter().map(|id| ring.completed.remove(id).expect("checked above")).collect()
                }
            };
            let write = self.behind.remove(0);
            if let Err(e) = self.settle(write.position, write.buf.as_slice(), &results) {
                first_error.get_or_insert(e);
            }
            buffers.push(write.buf);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(buffers),
        }
    }

    fn wait_behind(&mut self) -> io::Result<Vec<AlignedBuf>> {
        self.end_behind(0, true)
    }
}

impl Drop for UringFile {
    fn drop(&mut self) {
        // The kernel may still be reading write-behind buffers: they must outlive it.
        for write in std::mem::take(&mut self.behind) {
            let _ = self.ring.borrow_mut().wait(&write.ids);
        }
    }
}

impl StorageFile for UringFile {
    fn write_alignment(&self) -> usize {
        if self.direct_io {
            DIRECT_IO_ALIGNMENT
        } else {
            1
        }
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.buffered.metadata()?.len())
    }

    fn read_exact_at(&self, position: u64, buf: &mut [u8]) -> io::Result<()> {
        self.buffered.read_exact_at(buf, position)
    }

    fn write_at(&mut self, position: u64, data: &[u8]) -> io::Result<()> {
        self.write_now(position, data, false)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.wait_behind()?;
        let mut ring = self.ring.borrow_mut();
        // SAFETY: an fdatasync entry points at no memory.
        let id = unsafe { ring.push(self.sync_entry())? };
        let result = ring.wait(&[id])?[0];
        if result < 0 {
            return Err(io::Error::from_raw_os_error(-result));
        }
        Ok(())
    }

    fn write_and_sync(&mut self, position: u64, data: &[u8]) -> io::Result<()> {
        self.write_now(position, data, true)
    }

    fn write_behind(&mut self, position: u64, buf: AlignedBuf) -> io::Result<()> {
        self.check_direct(position, buf.len());
        self.open_writer()?;
        let mut ring = self.ring.borrow_mut();
        // SAFETY: `buf` moves into `self.behind` and is dropped only after its ids are waited for
        // (in `wait_behind` or in `Drop`); moving an AlignedBuf does not move its heap memory.
        let ids = unsafe { self.queue_writes(&mut ring, position, buf.as_slice(), false)? };
        ring.submit()?;
        drop(ring);
        self.behind.push(WriteBehind { ids, buf, position });
        Ok(())
    }

    fn write_behind_pending(&self) -> usize {
        self.behind.len()
    }

    fn release_writer(&mut self) {
        if self.behind.is_empty() {
            self.direct = None;
        }
    }

    fn wait_writes(&mut self, keep_pending: usize) -> io::Result<Vec<AlignedBuf>> {
        self.end_behind(keep_pending, true)
    }

    fn poll_writes(&mut self) -> io::Result<Vec<AlignedBuf>> {
        self.end_behind(0, false)
    }

    fn start_sync(&mut self) -> io::Result<u64> {
        let mut ring = self.ring.borrow_mut();
        // SAFETY: an fdatasync entry points at no memory.
        let id = unsafe { ring.push(self.sync_entry())? };
        ring.submit()?;
        Ok(id)
    }

    fn poll_sync(&mut self, id: u64) -> io::Result<Option<io::Result<()>>> {
        Ok(self.ring.borrow_mut().poll(id).map(|result| {
            if result < 0 {
                Err(io::Error::from_raw_os_error(-result))
            } else {
                Ok(())
            }
        }))
    }

    fn wait_sync(&mut self, id: u64) -> io::Result<()> {
        self.ring.borrow_mut().wait_unclaimed(id)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.wait_behind()?;
        self.buffered.set_len(len)
    }

    fn preallocate(&mut self, offset: u64, len: u64) -> io::Result<()> {
        // SAFETY: fallocate on a descriptor this file owns; no memory is passed.
        let rc = unsafe {
            libc::fallocate(
                self.buffered.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
                return Err(io::Error::new(io::ErrorKind::Unsupported, err));
            }
            return Err(err);
        }
        Ok(())
    }

    fn map(&self) -> io::Result<Mapped> {
        if self.len()? == 0 {
            return Ok(Mapped::Owned(Vec::new()));
        }
        // SAFETY: index files are written whole before they are mapped and are replaced, never
        // modified in place, while a map of them is alive.
        Ok(Mapped::Mmap(unsafe { memmap2::Mmap::map(&self.buffered)? }))
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.buffered.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::AlignedBuf;

    #[test]
    fn uring_write_and_sync_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for direct in [false, true] {
            let storage = UringStorage::new(direct).unwrap();
            let path = dir.path().join(format!("f-{direct}"));
            let mut file = storage.open(&path, FileKind::SegmentData).unwrap();
            let mut data = AlignedBuf::with_capacity(8192);
            data.extend_from_slice(&[7u8; 8192]);
            file.write_and_sync(0, data.as_slice()).unwrap();
            file.write_at(8192, data.as_slice()).unwrap();
            file.sync_data().unwrap();
            assert_eq!(file.len().unwrap(), 16384);
            let mut back = vec![0u8; 16384];
            file.read_exact_at(0, &mut back).unwrap();
            assert!(back.iter().all(|&b| b == 7));
        }
    }
}
