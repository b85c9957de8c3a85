//! In-memory storage with seeded faults, for tests and the deterministic simulator.
//!
//! Every file keeps two images: what reads see now, and what would survive a crash (the state at
//! its last fdatasync). Writes after the last sync are kept as a list of pending operations;
//! [`SimStorage::crash`] keeps a seeded prefix of them, may tear the last one kept at any byte,
//! and drops the rest, exactly as a power cut can. Creating and removing files is durable at once.
//!
//! Faults: torn and lost unsynced writes at a crash, single bit flips ([`SimStorage::flip_bit`]),
//! a full disk (a capacity past which writes fail with ENOSPC), and failing fdatasyncs.

use super::{AlignedBuf, FileKind, Mapped, MemoryBudget, Storage, StorageFile, ENOSPC};
use crate::rng::SimRng;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Which faults the simulated disk may inject, and how its files behave.
#[derive(Debug, Clone)]
pub struct SimFaults {
    /// On a crash, keep only a seeded prefix of the writes made since the last sync.
    pub lose_unsynced_writes: bool,
    /// On a crash, the last write kept may be cut at a seeded byte.
    pub tear_writes: bool,
    /// Writes that would make the files' total size exceed this fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
    /// Alignment demanded of writes to segment data, as O_DIRECT would (1 = buffered).
    pub segment_write_alignment: usize,
    /// Write-behinds end in their own time: a poll finds a seeded number of the oldest ended
    /// (none, some, or all), where otherwise every one has. Their data is in the file at once
    /// either way (the log reads only what its flushes saw end).
    pub slow_write_behinds: bool,
    /// Syncs started on the ring stay in flight until polled a seeded number of times, and
    /// make durable only the writes made before they started (a crash meanwhile keeps what
    /// it keeps of the rest). Otherwise a started sync is done at once.
    pub slow_syncs: bool,
}

impl Default for SimFaults {
    fn default() -> Self {
        Self {
            lose_unsynced_writes: true,
            tear_writes: true,
            capacity_bytes: None,
            segment_write_alignment: 1,
            slow_write_behinds: false,
            slow_syncs: false,
        }
    }
}

#[derive(Debug, Clone)]
enum PendingOp {
    Write { position: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default, Clone)]
struct SimFileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<PendingOp>,
    /// End of the blocks reserved by `preallocate` (they take space past the file's end).
    reserved: u64,
    /// Operations made durable since the file was created (the count of those taken from the
    /// front of `pending`), so a sync in flight knows which of the pending ones it covers.
    made_durable: u64,
}

impl SimFileData {
    /// Bytes of the disk this file takes: its length, or its reserved blocks if they reach further.
    fn footprint(&self) -> u64 {
        (self.current.len() as u64).max(self.reserved)
    }
}

fn apply(image: &mut Vec<u8>, op: &PendingOp) {
    match op {
        PendingOp::Write { position, data } => {
            let end = *position as usize + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[*position as usize..end].copy_from_slice(data);
        }
        PendingOp::SetLen(len) => image.resize(*len as usize, 0),
    }
}

struct SimState {
    files: BTreeMap<PathBuf, SimFileData>,
    dirs: BTreeSet<PathBuf>,
    faults: SimFaults,
    rng: SimRng,
    /// Bumped by every crash: handles opened before it are dead.
    generation: u64,
    failing_syncs: u32,
    /// [`SimStorage::hold_write_behinds`].
    write_behinds_held: bool,
}

impl SimState {
    fn used_bytes(&self) -> u64 {
        self.files.values().map(SimFileData::footprint).sum()
    }
}

/// A simulated disk. Cloning gives another handle to the same disk.
#[derive(Clone)]
pub struct SimStorage {
    state: Rc<RefCell<SimState>>,
    memory: MemoryBudget,
}

impl SimStorage {
    pub fn new(seed: u64, faults: SimFaults) -> Self {
        assert!(faults.segment_write_alignment >= 1, "alignment must be at least 1");
        let state = SimState {
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            faults,
            rng: SimRng::new(seed),
            generation: 0,
            failing_syncs: 0,
            write_behinds_held: false,
        };
        Self { state: Rc::new(RefCell::new(state)), memory: MemoryBudget::default() }
    }

    /// The same disk, its logs counting their memory against `memory`.
    pub fn with_memory(mut self, memory: MemoryBudget) -> Self {
        self.memory = memory;
        self
    }

    /// Removes `dir`, everything under it and the directories below it (durable at once, as
    /// every creation and removal here).
    pub fn remove_dir_all(&self, dir: &Path) {
        let mut state = self.state.borrow_mut();
        state.files.retain(|p, _| !p.starts_with(dir));
        state.dirs.retain(|d| !d.starts_with(dir));
    }

    /// The directories directly in `dir`.
    pub fn subdirectories(&self, dir: &Path) -> Vec<PathBuf> {
        self.state.borrow().dirs.iter().filter(|d| d.parent() == Some(dir)).cloned().collect()
    }

    /// A power cut: every file falls back to its durable image plus a seeded prefix of the writes
    /// since its last sync (the last of which may be torn). Open handles stop working.
    pub fn crash(&self) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        state.generation += 1;
        for file in state.files.values_mut() {
            let mut image = std::mem::take(&mut file.durable);
            let pending = std::mem::take(&mut file.pending);
            let kept = if state.faults.lose_unsynced_writes {
                state.rng.below(pending.len() as u64 + 1) as usize
            } else {
                pending.len()
            };
            for (i, op) in pending.iter().enumerate().take(kept) {
                let last = i + 1 == kept;
                match op {
                    PendingOp::Write { position, data } if last && state.faults.tear_writes && !data.is_empty() => {
                        let cut = state.rng.below(data.len() as u64 + 1) as usize;
                        apply(&mut image, &PendingOp::Write { position: *position, data: data[..cut].to_vec() });
                    }
                    other => apply(&mut image, other),
                }
            }
            file.current = image.clone();
            file.durable = image;
        }
    }

    /// Flips one bit of a file, in both its current and durable image (bit rot on the platter).
    pub fn flip_bit(&self, path: &Path, byte: u64, bit: u8) {
        let mut state = self.state.borrow_mut();
        let file = state.files.get_mut(path).unwrap_or_else(|| panic!("flip_bit: no file {}", path.display()));
        for image in [&mut file.current, &mut file.durable] {
            if let Some(b) = image.get_mut(byte as usize) {
                *b ^= 1 << (bit % 8);
            }
        }
    }

    /// Cuts a file's current and durable images to `len` bytes (a torn write at a chosen byte).
    pub fn cut_file(&self, path: &Path, len: u64) {
        let mut state = self.state.borrow_mut();
        let file = state.files.get_mut(path).unwrap_or_else(|| panic!("cut_file: no file {}", path.display()));
        file.current.truncate(len as usize);
        file.durable.truncate(len as usize);
        file.made_durable += file.pending.len() as u64;
        file.pending.clear();
    }

    /// The next `count` fdatasyncs fail with EIO.
    pub fn fail_next_syncs(&self, count: u32) {
        self.state.borrow_mut().failing_syncs = count;
    }

    /// While held, no write-behind ends for a poll ([`StorageFile::poll_writes`]); a blocking
    /// wait still ends the ones it waits for. Tests use it to keep a write in flight while the
    /// log goes on.
    pub fn hold_write_behinds(&self, held: bool) {
        self.state.borrow_mut().write_behinds_held = held;
    }

    /// Sets the disk's capacity (`None` = unlimited).
    pub fn set_capacity(&self, capacity_bytes: Option<u64>) {
        self.state.borrow_mut().faults.capacity_bytes = capacity_bytes;
    }

    /// The bytes a file holds now, for tests.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.state.borrow().files.get(path).map(|f| f.current.clone())
    }

    /// Replaces a file's contents (current and durable), for tests that load fixtures.
    pub fn put_file(&self, path: &Path, data: &[u8]) {
        let mut state = self.state.borrow_mut();
        if let Some(parent) = path.parent() {
            state.dirs.insert(parent.to_path_buf());
        }
        state.files.insert(
            path.to_path_buf(),
            SimFileData {
                current: data.to_vec(),
                durable: data.to_vec(),
                pending: Vec::new(),
                reserved: 0,
                made_durable: 0,
            },
        );
    }
}

impl Storage for SimStorage {
    type File = SimFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.state.borrow_mut().dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.borrow();
        if !state.dirs.contains(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no directory {}", dir.display())));
        }
        Ok(state
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path, kind: FileKind) -> io::Result<SimFile> {
        let mut state = self.state.borrow_mut();
        let parent = path.parent().unwrap_or(Path::new(""));
        if !state.dirs.contains(parent) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no directory {}", parent.display())));
        }
        state.files.entry(path.to_path_buf()).or_default();
        let alignment = match kind {
            FileKind::SegmentData => state.faults.segment_write_alignment,
            FileKind::Index => 1,
        };
        Ok(SimFile {
            state: Rc::clone(&self.state),
            path: path.to_path_buf(),
            generation: state.generation,
            alignment,
            behind: Vec::new(),
            synced: crate::hash::HashMap::default(),
            next_sync: 0,
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match self.state.borrow_mut().files.remove(path) {
            Some(_) => Ok(()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("no file {}", path.display()))),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        let file = state
            .files
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {}", from.display())))?;
        state.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.state.borrow().files.contains_key(path)
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn memory(&self) -> &MemoryBudget {
        &self.memory
    }
}

/// A sync started on a [`SimFile`]: done (its outcome waits to be polled), or in flight.
enum SimSync {
    Done(io::Result<()>),
    Running { started: u64, upto: usize },
}

/// A file on a [`SimStorage`].
pub struct SimFile {
    state: Rc<RefCell<SimState>>,
    path: PathBuf,
    generation: u64,
    alignment: usize,
    /// Write-behinds in flight (their position and buffer): the simulated write happens at once;
    /// the buffer waits to be reclaimed. Two never overlap: a device may do them in any order.
    behind: Vec<(u64, AlignedBuf)>,
    /// Outcomes of the syncs started with `start_sync` and not yet polled, by id.
    synced: crate::hash::HashMap<u64, SimSync>,
    next_sync: u64,
}

impl SimFile {
    /// Ends a sync started when `started` operations had been made durable and `upto` were
    /// pending: the first of those not made durable since become durable.
    fn end_sync(&mut self, started: u64, upto: usize) -> io::Result<()> {
        self.with_file(|state, f| {
            if state.failing_syncs > 0 {
                state.failing_syncs -= 1;
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let already = (f.made_durable - started) as usize;
            let covered = upto.saturating_sub(already).min(f.pending.len());
            for op in f.pending.drain(..covered) {
                apply(&mut f.durable, &op);
            }
            f.made_durable += covered as u64;
            Ok(())
        })
    }

    fn with_file<T>(&self, f: impl FnOnce(&mut SimState, &mut SimFileData) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.state.borrow_mut();
        if state.generation != self.generation {
            return Err(io::Error::other(format!("{}: handle opened before a crash", self.path.display())));
        }
        let mut file = state
            .files
            .remove(&self.path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} was removed", self.path.display())))?;
        let result = f(&mut state, &mut file);
        state.files.insert(self.path.clone(), file);
        result
    }
}

impl StorageFile for SimFile {
    fn write_alignment(&self) -> usize {
        self.alignment
    }

    fn len(&self) -> io::Result<u64> {
        self.with_file(|_, f| Ok(f.current.len() as u64))
    }

    fn read_exact_at(&self, position: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with_file(|_, f| {
            let start = position as usize;
            let end = start + buf.len();
            if end > f.current.len() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file"));
            }
            buf.copy_from_slice(&f.current[start..end]);
            Ok(())
        })
    }

    fn write_at(&mut self, position: u64, data: &[u8]) -> io::Result<()> {
        let alignment = self.alignment;
        assert!(
            (position as usize).is_multiple_of(alignment) && data.len().is_multiple_of(alignment),
            "write at {position} of {} bytes is not {alignment}-aligned",
            data.len()
        );
        let end = position + data.len() as u64;
        for (at, other) in &self.behind {
            assert!(
                end <= *at || position >= at + other.len() as u64,
                "a write of {position}..{end} overlaps a write-behind in flight at {at}..{}",
                at + other.len() as u64
            );
        }
        self.with_file(|state, f| {
            if let Some(capacity) = state.faults.capacity_bytes {
                if state.used_bytes() + f.footprint().max(end) > capacity {
                    return Err(io::Error::from_raw_os_error(ENOSPC));
                }
            }
            let op = PendingOp::Write { position, data: data.to_vec() };
            apply(&mut f.current, &op);
            f.pending.push(op);
            Ok(())
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.with_file(|state, f| {
            if state.failing_syncs > 0 {
                state.failing_syncs -= 1;
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            f.durable = f.current.clone();
            f.made_durable += f.pending.len() as u64;
            f.pending.clear();
            Ok(())
        })
    }

    fn write_behind(&mut self, position: u64, buf: AlignedBuf) -> io::Result<()> {
        self.write_at(position, buf.as_slice())?;
        self.behind.push((position, buf));
        Ok(())
    }

    fn write_behind_pending(&self) -> usize {
        self.behind.len()
    }

    fn wait_writes(&mut self, keep_pending: usize) -> io::Result<Vec<AlignedBuf>> {
        let done = self.behind.len().saturating_sub(keep_pending);
        Ok(self.behind.drain(..done).map(|(_, buf)| buf).collect())
    }

    fn poll_writes(&mut self) -> io::Result<Vec<AlignedBuf>> {
        let ended = {
            let mut state = self.state.borrow_mut();
            if state.write_behinds_held {
                0
            } else if state.faults.slow_write_behinds {
                state.rng.below(self.behind.len() as u64 + 1) as usize
            } else {
                self.behind.len()
            }
        };
        Ok(self.behind.drain(..ended).map(|(_, buf)| buf).collect())
    }

    fn start_sync(&mut self) -> io::Result<u64> {
        let id = self.next_sync;
        self.next_sync += 1;
        let slow = self.state.borrow().faults.slow_syncs;
        let sync = if slow {
            // What it covers: the writes pending now.
            self.with_file(|_, f| Ok(SimSync::Running { started: f.made_durable, upto: f.pending.len() }))?
        } else {
            // The simulated sync happens at once; its outcome waits to be polled.
            SimSync::Done(self.sync_data())
        };
        self.synced.insert(id, sync);
        Ok(id)
    }

    fn poll_sync(&mut self, id: u64) -> io::Result<Option<io::Result<()>>> {
        match self.synced.remove(&id) {
            Some(SimSync::Done(result)) => Ok(Some(result)),
            Some(SimSync::Running { started, upto }) => {
                if self.state.borrow_mut().rng.below(3) != 0 {
                    self.synced.insert(id, SimSync::Running { started, upto });
                    return Ok(None);
                }
                Ok(Some(self.end_sync(started, upto)))
            }
            None => Err(io::Error::other(format!("sync {id} was not started or was polled already"))),
        }
    }

    fn wait_sync(&mut self, id: u64) -> io::Result<()> {
        if let Some(SimSync::Running { started, upto }) = self.synced.get(&id) {
            let result = self.end_sync(*started, *upto);
            self.synced.insert(id, SimSync::Done(result));
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.with_file(|_, f| {
            // Cutting a file gives back the blocks reserved past its new end.
            if len <= f.current.len() as u64 {
                f.reserved = f.reserved.min(len);
            }
            let op = PendingOp::SetLen(len);
            apply(&mut f.current, &op);
            f.pending.push(op);
            Ok(())
        })
    }

    fn preallocate(&mut self, offset: u64, len: u64) -> io::Result<()> {
        // Reserving blocks changes no byte a reader or a crash can see, only the space left.
        self.with_file(|state, f| {
            let reserved = f.reserved.max(offset + len);
            if let Some(capacity) = state.faults.capacity_bytes {
                if state.used_bytes() + f.footprint().max(reserved) > capacity {
                    return Err(io::Error::from_raw_os_error(ENOSPC));
                }
            }
            f.reserved = reserved;
            Ok(())
        })
    }

    fn map(&self) -> io::Result<Mapped> {
        self.with_file(|_, f| Ok(Mapped::Owned(f.current.clone())))
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(seed: u64) -> (SimStorage, PathBuf) {
        let storage = SimStorage::new(seed, SimFaults::default());
        let dir = PathBuf::from("/d");
        storage.create_dir_all(&dir).unwrap();
        (storage, dir)
    }

    #[test]
    fn synced_writes_survive_a_crash() {
        let (storage, dir) = disk(1);
        let path = dir.join("f");
        let mut file = storage.open(&path, FileKind::SegmentData).unwrap();
        file.write_at(0, b"hello").unwrap();
        file.sync_data().unwrap();
        file.write_at(5, b" world").unwrap();
        storage.crash();
        let after = storage.contents(&path).unwrap();
        assert!(after.starts_with(b"hello"), "synced bytes lost: {after:?}");
        assert!(after.len() <= 11);
        assert!(file.len().is_err(), "a handle from before the crash must not work");
    }

    #[test]
    fn full_disk_reports_enospc() {
        let (storage, dir) = disk(2);
        storage.set_capacity(Some(10));
        let mut file = storage.open(&dir.join("f"), FileKind::SegmentData).unwrap();
        file.write_at(0, &[0; 8]).unwrap();
        let err = file.write_at(8, &[0; 8]).unwrap_err();
        assert!(super::super::is_disk_full(&err));
    }

    #[test]
    fn failed_sync_keeps_the_old_durable_image() {
        let (storage, dir) = disk(3);
        let path = dir.join("f");
        let mut file = storage.open(&path, FileKind::SegmentData).unwrap();
        file.write_at(0, b"abc").unwrap();
        storage.fail_next_syncs(1);
        assert!(file.sync_data().is_err());
        file.sync_data().unwrap();
        storage.crash();
        assert_eq!(storage.contents(&path).unwrap(), b"abc");
    }
}
