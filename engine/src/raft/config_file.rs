//! A group's configuration changes on disk ([`super::Raft::config_state`]): two files used in
//! turn, each `u64 seq | u32 len | payload | u32 crc32c`, so a torn write never loses the last
//! synced state; the valid file with the highest sequence wins.
//!
//! ```text
//! payload: u32 n | n × u64 base voter | u32 m | m × (i64 end | u64 term | u32 k | k × u64 voter)
//! ```

use super::{ConfigChange, NodeId};
use crate::io::{FileKind, Storage, StorageFile};
use std::path::{Path, PathBuf};

/// Voters per list and changes per file, at most (anything larger is not ours).
const LIST_MAX: usize = 4096;

fn slot_path(path: &Path, slot: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{slot}"));
    PathBuf::from(name)
}

fn put_voters(out: &mut Vec<u8>, voters: &[NodeId]) {
    out.extend_from_slice(&(voters.len() as u32).to_be_bytes());
    for v in voters {
        out.extend_from_slice(&v.wire().to_be_bytes());
    }
}

pub fn encode(seq: u64, base: &[NodeId], changes: &[ConfigChange]) -> Vec<u8> {
    let mut payload = Vec::new();
    put_voters(&mut payload, base);
    payload.extend_from_slice(&(changes.len() as u32).to_be_bytes());
    for c in changes {
        payload.extend_from_slice(&c.end.to_be_bytes());
        payload.extend_from_slice(&c.term.to_be_bytes());
        put_voters(&mut payload, &c.voters);
    }
    let mut out = Vec::with_capacity(16 + payload.len());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
    fn voters(&mut self) -> Option<Vec<NodeId>> {
        let n = u32::from_be_bytes(self.take()?) as usize;
        if n > LIST_MAX {
            return None;
        }
        (0..n).map(|_| self.take().map(u64::from_be_bytes).and_then(NodeId::from_wire)).collect()
    }
}

/// (seq, base voters, changes) from one file's bytes; None if torn or corrupt.
pub fn decode(bytes: &[u8]) -> Option<(u64, Vec<NodeId>, Vec<ConfigChange>)> {
    let len = u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
    let body_end = 12usize.checked_add(len)?;
    let crc = u32::from_be_bytes(bytes.get(body_end..body_end + 4)?.try_into().ok()?);
    if crc32c::crc32c(&bytes[..body_end]) != crc {
        return None;
    }
    let seq = u64::from_be_bytes(bytes[..8].try_into().ok()?);
    let mut r = Reader(&bytes[12..body_end]);
    let base = r.voters()?;
    let m = u32::from_be_bytes(r.take()?) as usize;
    if m > LIST_MAX {
        return None;
    }
    let mut changes = Vec::new();
    for _ in 0..m {
        let end = i64::from_be_bytes(r.take()?);
        let term = u64::from_be_bytes(r.take()?);
        changes.push(ConfigChange { end, term, voters: r.voters()? });
    }
    Some((seq, base, changes))
}

/// The newest valid state: (seq, base voters, changes); None if there is none (a new group).
pub fn load<S: Storage>(storage: &S, path: &Path) -> Option<(u64, Vec<NodeId>, Vec<ConfigChange>)> {
    let mut best: Option<(u64, Vec<NodeId>, Vec<ConfigChange>)> = None;
    for slot in 0..2 {
        // Absent (a group that never changed its voters): nothing to read, nothing to create.
        let slot_path = slot_path(path, slot);
        if !storage.exists(&slot_path) {
            continue;
        }
        let Ok(file) = storage.open(&slot_path, FileKind::Index) else { continue };
        let Ok(len) = file.len() else { continue };
        let Ok(len) = usize::try_from(len) else { continue };
        if len > 16 + LIST_MAX * 64 {
            continue;
        }
        let mut bytes = vec![0u8; len];
        if file.read_exact_at(0, &mut bytes).is_err() {
            continue;
        }
        if let Some(state) = decode(&bytes) {
            if best.as_ref().is_none_or(|b| state.0 > b.0) {
                best = Some(state);
            }
        }
    }
    best
}

/// Writes the state as sequence `seq` into file `seq % 2` and syncs it.
pub fn store<S: Storage>(
    storage: &S,
    path: &Path,
    seq: u64,
    base: &[NodeId],
    changes: &[ConfigChange],
) -> std::io::Result<()> {
    let mut file = storage.open(&slot_path(path, seq % 2), FileKind::Index)?;
    file.write_at(0, &encode(seq, base, changes))?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::node_ids;
    use crate::io::SimStorage;

    #[test]
    fn the_newest_whole_state_wins_and_torn_ones_are_ignored() {
        let disk = SimStorage::new(7, Default::default());
        let path = Path::new("/g/raft-config");
        disk.create_dir_all(Path::new("/g")).unwrap();
        assert!(load(&disk, path).is_none());
        let c1 = vec![ConfigChange { end: 10, term: 2, voters: node_ids(&[1, 2, 3, 4]) }];
        store(&disk, path, 1, &node_ids(&[1, 2, 3]), &c1).unwrap();
        assert_eq!(load(&disk, path), Some((1, node_ids(&[1, 2, 3]), c1.clone())));
        let c2 = vec![c1[0].clone(), ConfigChange { end: 20, term: 3, voters: node_ids(&[2, 3, 4]) }];
        store(&disk, path, 2, &node_ids(&[1, 2, 3]), &c2).unwrap();
        assert_eq!(load(&disk, path).unwrap().2, c2);
        // A torn third write (into file 1) leaves the second.
        let bytes = encode(3, &node_ids(&[9]), &[]);
        let mut file = disk.open(&slot_path(path, 1), FileKind::Index).unwrap();
        file.write_at(0, &bytes[..bytes.len() - 3]).unwrap();
        file.write_at(bytes.len() as u64 - 3, &[0, 0, 0]).unwrap();
        assert_eq!(load(&disk, path).unwrap().0, 2);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none());
        }
    }
}
