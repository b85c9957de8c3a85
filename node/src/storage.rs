//! The storage a node's state machines run on: the engine's [`Storage`] (the logs' files),
//! plus the whole files the node writes beside them (the tree's snapshot). A running node
//! has [`UringStorage`]; the simulator [`SimStorage`], whose files live in memory and crash
//! as a disk does.

use crate::env::Env;
use braid_engine::io::{FileKind, SimStorage, Storage, StorageFile, UringStorage};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// The outcome of [`NodeStorage::write_durably`]: the bytes written, or what failed.
pub type WriteOutcome = Result<usize, String>;

pub trait NodeStorage: Storage + Clone + 'static {
    /// A whole file's bytes; None if there is no such file.
    fn read_whole(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;

    /// Removes `dir` and everything under it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// The directories directly in `dir` (none if it does not exist).
    fn subdirectories(&self, dir: &Path) -> Vec<PathBuf>;

    /// Replaces `path` with `bytes` durably (a new file synced, renamed over the old one, the
    /// directory synced) where it does not hold the caller's thread (`env`'s thread named
    /// `name`); `done` gets the outcome. Err when the write could not be started.
    fn write_durably(
        &self,
        env: &dyn Env,
        name: &str,
        path: PathBuf,
        bytes: Vec<u8>,
        done: mpsc::Sender<WriteOutcome>,
    ) -> io::Result<()>;
}

/// The temporary file a durable write goes through.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

impl NodeStorage for UringStorage {
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
    }

    fn subdirectories(&self, dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
    }

    fn read_whole(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_durably(
        &self,
        env: &dyn Env,
        name: &str,
        path: PathBuf,
        bytes: Vec<u8>,
        done: mpsc::Sender<WriteOutcome>,
    ) -> io::Result<()> {
        // Plain files on a thread of their own: the bytes may be large (a big tree), and the
        // shard's ring is for its logs.
        env.run_blocking(
            name,
            Box::new(move || {
                let tmp = temporary(&path);
                let written = (|| -> io::Result<()> {
                    use std::io::Write;
                    let mut file = std::fs::File::create(&tmp)?;
                    file.write_all(&bytes)?;
                    file.sync_all()?;
                    std::fs::rename(&tmp, &path)?;
                    if let Some(dir) = path.parent() {
                        std::fs::File::open(dir)?.sync_all()?;
                    }
                    Ok(())
                })();
                let _ = done.send(written.map(|()| bytes.len()).map_err(|e| format!("writing {}: {e}", tmp.display())));
            }),
        )
    }
}

impl NodeStorage for SimStorage {
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        SimStorage::remove_dir_all(self, dir);
        Ok(())
    }

    fn subdirectories(&self, dir: &Path) -> Vec<PathBuf> {
        SimStorage::subdirectories(self, dir)
    }

    fn read_whole(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        if !self.exists(path) {
            return Ok(None);
        }
        let file = self.open(path, FileKind::Index)?;
        let mut bytes = vec![0u8; file.len()? as usize];
        file.read_exact_at(0, &mut bytes)?;
        Ok(Some(bytes))
    }

    fn write_durably(
        &self,
        _env: &dyn Env,
        _name: &str,
        path: PathBuf,
        bytes: Vec<u8>,
        done: mpsc::Sender<WriteOutcome>,
    ) -> io::Result<()> {
        // At once, on the caller's thread: the simulated disk's faults (a failed sync, a crash
        // before the rename) apply as to any file.
        let tmp = temporary(&path);
        let written = (|| -> io::Result<()> {
            let _ = self.remove(&tmp);
            let mut file = self.open(&tmp, FileKind::Index)?;
            file.write_at(0, &bytes)?;
            file.sync_data()?;
            drop(file);
            self.rename(&tmp, &path)?;
            if let Some(dir) = path.parent() {
                self.sync_dir(dir)?;
            }
            Ok(())
        })();
        let _ = done.send(written.map(|()| bytes.len()).map_err(|e| format!("writing {}: {e}", tmp.display())));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SimEnv;
    use braid_engine::io::SimFaults;

    #[test]
    fn a_durable_write_survives_a_crash_and_replaces_the_old_file() {
        let storage = SimStorage::new(1, SimFaults::default());
        let env = SimEnv::new(1, 0);
        let dir = Path::new("/node/meta");
        storage.create_dir_all(dir).unwrap();
        let path = dir.join("tree.snap");
        assert_eq!(storage.read_whole(&path).unwrap(), None);
        for bytes in [b"first".to_vec(), b"second, longer".to_vec()] {
            let (done, outcome) = mpsc::channel();
            storage.write_durably(&env, "test", path.clone(), bytes.clone(), done).unwrap();
            assert_eq!(outcome.recv().unwrap(), Ok(bytes.len()));
            storage.crash();
            assert_eq!(storage.read_whole(&path).unwrap(), Some(bytes));
        }
    }
}
