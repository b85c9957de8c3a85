//! Real files, with writes and fdatasync submitted to the shard's own io_uring.
//!
//! One `UringStorage` per shard: its ring is shared (through `Rc`) by every file the shard opens,
//! so a shard makes one `io_uring_enter` for a write and the fdatasync linked behind it.
//! Segment data may be opened O_DIRECT; reads, maps and sendfile then use a second, buffered
//! descriptor of the same file (the kernel keeps the two coherent).

use super::{FileKind, Mapped, Storage, StorageFile};
use io_uring::{opcode, squeue, types, IoUring};
use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::rc::Rc;

/// Submission queue depth of a shard's ring; a write and its fdatasync use two entries.
const RING_ENTRIES: u32 = 64;
/// Block size O_DIRECT writes are aligned to (offset, length and memory address).
pub const DIRECT_IO_ALIGNMENT: usize = 4096;

/// Files on the local file system, written through one io_uring.
pub struct UringStorage {
    ring: Rc<RefCell<IoUring>>,
    direct_io: bool,
}

impl UringStorage {
    /// Sets up the ring. Fails with a message naming the fix where the kernel or a seccomp
    /// profile forbids io_uring.
    pub fn new(direct_io: bool) -> io::Result<Self> {
        let ring = IoUring::new(RING_ENTRIES).map_err(|err| {
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
        Ok(Self { ring: Rc::new(RefCell::new(ring)), direct_io })
    }

    pub fn direct_io(&self) -> bool {
        self.direct_io
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
        let direct = if self.direct_io && kind == FileKind::SegmentData {
            Some(OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path)?)
        } else {
            None
        };
        Ok(UringFile { ring: Rc::clone(&self.ring), buffered, direct })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// A file of a [`UringStorage`]; lives on the shard that opened it.
pub struct UringFile {
    ring: Rc<RefCell<IoUring>>,
    buffered: File,
    direct: Option<File>,
}

impl UringFile {
    fn write_fd(&self) -> types::Fd {
        types::Fd(self.direct.as_ref().unwrap_or(&self.buffered).as_raw_fd())
    }

    /// Submits a write of `data` at `position` and, if `sync`, an fdatasync linked behind it;
    /// waits for both. Returns the bytes written (a short write cancels the linked sync, and
    /// `Ok((written, false))` says so).
    fn submit_write(&self, position: u64, data: &[u8], sync: bool) -> io::Result<(usize, bool)> {
        let len = u32::try_from(data.len()).map_err(|_| io::Error::other("write larger than 4 GiB"))?;
        let fd = self.write_fd();
        let mut write = opcode::Write::new(fd, data.as_ptr(), len).offset(position).build().user_data(1);
        if sync {
            write = write.flags(squeue::Flags::IO_LINK);
        }
        let fsync = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(2);
        let mut ring = self.ring.borrow_mut();
        // SAFETY: `data` outlives the submission: we wait for every completion below before
        // returning, and the ring is not shared across threads.
        unsafe {
            let mut sq = ring.submission();
            sq.push(&write).map_err(|_| io::Error::other("io_uring submission queue full"))?;
            if sync {
                sq.push(&fsync).map_err(|_| io::Error::other("io_uring submission queue full"))?;
            }
        }
        let expected = if sync { 2 } else { 1 };
        let mut written = 0usize;
        let mut synced = false;
        let mut seen = 0;
        let mut first_error: Option<io::Error> = None;
        while seen < expected {
            ring.submit_and_wait(expected - seen)?;
            for cqe in ring.completion() {
                seen += 1;
                let result = cqe.result();
                match cqe.user_data() {
                    1 if result >= 0 => written = result as usize,
                    2 if result >= 0 => synced = true,
                    2 if result == -libc::ECANCELED => {}
                    _ => {
                        first_error.get_or_insert(io::Error::from_raw_os_error(-result));
                    }
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok((written, synced)),
        }
    }

    fn write_all(&self, mut position: u64, mut data: &[u8], sync: bool) -> io::Result<()> {
        loop {
            let (written, synced) = self.submit_write(position, data, sync && !data.is_empty())?;
            if written == data.len() {
                if sync && !synced {
                    self.submit_sync()?;
                }
                return Ok(());
            }
            if written == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "io_uring write wrote nothing"));
            }
            position += written as u64;
            data = &data[written..];
        }
    }

    fn submit_sync(&self) -> io::Result<()> {
        let fsync = opcode::Fsync::new(self.write_fd()).flags(types::FsyncFlags::DATASYNC).build().user_data(2);
        let mut ring = self.ring.borrow_mut();
        // SAFETY: the entry references no memory.
        unsafe {
            ring.submission().push(&fsync).map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        ring.submit_and_wait(1)?;
        let cqe = ring.completion().next().ok_or_else(|| io::Error::other("io_uring lost a completion"))?;
        if cqe.result() < 0 {
            return Err(io::Error::from_raw_os_error(-cqe.result()));
        }
        Ok(())
    }

    /// Writes through O_DIRECT need block-aligned memory; data that is not gets copied into an
    /// aligned bounce buffer first (the log's own tail buffer is always aligned, so this is rare).
    fn write_checked(&mut self, position: u64, data: &[u8], sync: bool) -> io::Result<()> {
        if self.direct.is_none() {
            return self.write_all(position, data, sync);
        }
        let alignment = DIRECT_IO_ALIGNMENT;
        assert!(
            (position as usize).is_multiple_of(alignment) && data.len().is_multiple_of(alignment),
            "O_DIRECT write at {position} of {} bytes is not {alignment}-aligned",
            data.len()
        );
        if (data.as_ptr() as usize).is_multiple_of(alignment) {
            return self.write_all(position, data, sync);
        }
        let mut bounce = AlignedBuf::with_capacity(data.len());
        bounce.extend_from_slice(data);
        self.write_all(position, bounce.as_slice(), sync)
    }
}

impl StorageFile for UringFile {
    fn write_alignment(&self) -> usize {
        if self.direct.is_some() {
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
        self.write_checked(position, data, false)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.submit_sync()
    }

    fn write_and_sync(&mut self, position: u64, data: &[u8]) -> io::Result<()> {
        self.write_checked(position, data, true)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.buffered.set_len(len)
    }

    fn map(&self) -> io::Result<Mapped> {
        if self.len()? == 0 {
            return Ok(Mapped::Owned(Vec::new()));
        }
        // SAFETY: index files are written whole before they are mapped and never modified while
        // a map of them is alive (a rebuilt index is written under a new file).
        Ok(Mapped::Mmap(unsafe { memmap2::Mmap::map(&self.buffered)? }))
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.buffered.as_raw_fd())
    }
}

/// A growable byte buffer whose memory is aligned for O_DIRECT.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    capacity: usize,
}

impl AlignedBuf {
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(DIRECT_IO_ALIGNMENT).next_multiple_of(DIRECT_IO_ALIGNMENT);
        let layout = Layout::from_size_align(capacity, DIRECT_IO_ALIGNMENT).expect("aligned buffer layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        Self { ptr, len: 0, capacity }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len <= capacity` bytes are initialised (the allocation is zeroed).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn reserve(&mut self, additional: usize) {
        let needed = self.len + additional;
        if needed <= self.capacity {
            return;
        }
        let mut bigger = AlignedBuf::with_capacity(needed.max(self.capacity * 2));
        bigger.extend_from_slice(self.as_slice());
        *self = bigger;
    }

    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.reserve(data.len());
        // SAFETY: reserve made room for `data.len()` more bytes; the regions cannot overlap since
        // `self` owns its allocation exclusively.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), data.len());
        }
        self.len += data.len();
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Pads with zero bytes up to a multiple of `alignment`.
    pub fn pad_to(&mut self, alignment: usize) {
        let target = self.len.next_multiple_of(alignment);
        self.reserve(target - self.len);
        // SAFETY: room reserved above.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, target - self.len) };
        self.len = target;
    }

    /// Shortens to `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Drops the first `count` bytes, moving the rest to the front.
    pub fn drain_front(&mut self, count: usize) {
        assert!(count <= self.len, "drain_front({count}) past the end ({})", self.len);
        // SAFETY: both ranges are within the allocation; `copy` handles overlap.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(count), self.ptr.as_ptr(), self.len - count) };
        self.len -= count;
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.capacity, DIRECT_IO_ALIGNMENT).expect("aligned buffer layout");
        // SAFETY: allocated in `with_capacity` with this very layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buf_keeps_alignment_and_contents() {
        let mut buf = AlignedBuf::with_capacity(10);
        buf.extend_from_slice(&[1; 5000]);
        assert_eq!(buf.as_slice().as_ptr() as usize % DIRECT_IO_ALIGNMENT, 0);
        buf.pad_to(DIRECT_IO_ALIGNMENT);
        assert_eq!(buf.len(), 8192);
        assert_eq!(buf.as_slice()[4999], 1);
        assert_eq!(buf.as_slice()[5000], 0);
        buf.drain_front(4096);
        assert_eq!(buf.len(), 4096);
        assert_eq!(buf.as_slice()[903], 1);
        assert_eq!(buf.as_slice()[904], 0);
    }

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
