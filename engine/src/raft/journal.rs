//! The hard states (term, vote) of many raft groups in one journal per shard, so that an
//! election of thousands of groups at once costs one write and one fdatasync per round, not
//! one per group (at 200 µs each, ten thousand groups' votes took seconds, longer than an
//! election timeout, and the elections never ended).
//!
//! ```text
//!  <dir>/hard-states.<shard>   record* : u32 crc32c (of the rest) | 16-byte topic id |
//!                                        i32 partition | u64 term | u64 vote + 1 (0: none),
//!                                        its top bit set while the replica rejoins, the next
//!                                        once it has heard from a leader
//! ```
//! Records are appended; a group's latest record is its hard state. A hard state only moves
//! forward (the term grows; within a term the vote goes from none to one node), so where
//! several journals hold a group (the shard owning it changed with `--cores`) the greatest
//! wins. A torn or corrupt tail (a crash mid-write) ends the journal there; it was never
//! synced, so no message promised it. Past [`COMPACT_BYTES`] the journal is rewritten with the
//! latest record of each group it holds (to a new file, synced, renamed over).
//!
//! Lives on one shard, like the storage it writes through.

use super::wire::GroupId;
use super::{HardState, NodeId};
use crate::hash::HashMap;
use crate::io::{FileKind, Storage, StorageFile};
use std::io;
use std::path::{Path, PathBuf};

const RECORD_BYTES: usize = 40;
/// A journal past this size is rewritten with one record per group (about 26,000 records).
pub const COMPACT_BYTES: u64 = 1 << 20;
const PREFIX: &str = "hard-states.";

fn encode(group: GroupId, hard: HardState, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&group.topic_id.to_be_bytes());
    out.extend_from_slice(&group.partition.to_be_bytes());
    out.extend_from_slice(&hard.term.to_be_bytes());
    let vote = hard.voted_for.map_or(0, |v| v.wire() + 1)
        | u64::from(hard.rejoining) << 63
        | u64::from(hard.knew_leader) << 62;
    out.extend_from_slice(&vote.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_be_bytes());
}

fn decode(record: &[u8]) -> Option<(GroupId, HardState)> {
    let crc = u32::from_be_bytes(record[0..4].try_into().ok()?);
    if crc32c::crc32c(&record[4..RECORD_BYTES]) != crc {
        return None;
    }
    let topic_id = u128::from_be_bytes(record[4..20].try_into().ok()?);
    let partition = i32::from_be_bytes(record[20..24].try_into().ok()?);
    let term = u64::from_be_bytes(record[24..32].try_into().ok()?);
    let field = u64::from_be_bytes(record[32..40].try_into().ok()?);
    let (vote, rejoining, knew_leader) = (field & !(3 << 62), field >> 63 == 1, field >> 62 & 1 == 1);
    Some((
        GroupId { topic_id, partition },
        HardState {
            term,
            voted_for: match vote.checked_sub(1) {
                Some(v) => Some(NodeId::from_wire(v)?),
                None => None,
            },
            rejoining,
            knew_leader,
        },
    ))
}

/// The greater of two hard states of one group (the later one: see the module docs).
/// Of two with the same term and vote, rejoining wins (which came later is unknown; a replica
/// that rejoins needlessly only waits for its leader).
pub fn newer(a: HardState, b: HardState) -> HardState {
    match (b.term, b.voted_for.is_some()).cmp(&(a.term, a.voted_for.is_some())) {
        std::cmp::Ordering::Greater => b,
        std::cmp::Ordering::Less => a,
        std::cmp::Ordering::Equal => {
            HardState { rejoining: a.rejoining || b.rejoining, knew_leader: a.knew_leader || b.knew_leader, ..a }
        }
    }
}

/// Reads a journal: its valid records' latest state per group, and where the valid part ends.
fn read<S: Storage>(storage: &S, path: &Path) -> io::Result<(HashMap<GroupId, HardState>, u64)> {
    let file = storage.open(path, FileKind::Index)?;
    let len = file.len()?;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(0, &mut bytes)?;
    let mut latest = HashMap::default();
    let mut end = 0;
    for record in bytes.chunks_exact(RECORD_BYTES) {
        let Some((group, hard)) = decode(record) else { break };
        latest.insert(group, hard);
        end += RECORD_BYTES as u64;
    }
    Ok((latest, end))
}

/// Every group's hard state in every journal of `dir` (the greatest where several hold one).
pub fn load_all<S: Storage>(storage: &S, dir: &Path) -> io::Result<HashMap<GroupId, HardState>> {
    let mut all: HashMap<GroupId, HardState> = HashMap::default();
    let names = match storage.list_dir(dir) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(all),
        Err(e) => return Err(e),
    };
    for name in names.iter().filter(|n| n.starts_with(PREFIX) && !n.ends_with(".tmp")) {
        let (latest, _) = read(storage, &dir.join(name))?;
        for (group, hard) in latest {
            all.entry(group).and_modify(|h| *h = newer(*h, hard)).or_insert(hard);
        }
    }
    Ok(all)
}

/// One shard's journal.
pub struct HardStateJournal<S: Storage> {
    storage: S,
    path: PathBuf,
    file: S::File,
    end: u64,
    /// The latest record of each group in this journal.
    latest: HashMap<GroupId, HardState>,
}

impl<S: Storage> HardStateJournal<S> {
    /// Opens (or creates) shard `shard`'s journal in `dir`; a torn tail is cut.
    pub fn open(storage: S, dir: &Path, shard: usize) -> io::Result<Self> {
        storage.create_dir_all(dir)?;
        let path = dir.join(format!("{PREFIX}{shard}"));
        let (latest, end) = read(&storage, &path)?;
        let mut file = storage.open(&path, FileKind::Index)?;
        if file.len()? != end {
            file.set_len(end)?;
            file.sync_data()?;
        }
        storage.sync_dir(dir)?;
        Ok(HardStateJournal { storage, path, file, end, latest })
    }

    /// Appends the groups' hard states and makes them durable: one write, one fdatasync.
    pub fn append(&mut self, states: &[(GroupId, HardState)]) -> io::Result<()> {
        if states.is_empty() {
            return Ok(());
        }
        if self.end >= COMPACT_BYTES {
            self.compact()?;
        }
        let mut bytes = Vec::with_capacity(states.len() * RECORD_BYTES);
        for &(group, hard) in states {
            encode(group, hard, &mut bytes);
        }
        self.file.write_at(self.end, &bytes)?;
        self.file.sync_data()?;
        self.end += bytes.len() as u64;
        for &(group, hard) in states {
            self.latest.insert(group, hard);
        }
        Ok(())
    }

    /// The latest hard state of `group` in this journal.
    pub fn get(&self, group: GroupId) -> Option<HardState> {
        self.latest.get(&group).copied()
    }

    /// A group gone for good (its topic deleted): left out of the next compaction.
    pub fn forget(&mut self, group: GroupId) {
        self.latest.remove(&group);
    }

    /// Bytes of the journal on disk.
    pub fn len(&self) -> u64 {
        self.end
    }

    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Rewrites the journal with one record per group it holds.
    fn compact(&mut self) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(self.latest.len() * RECORD_BYTES);
        for (&group, &hard) in &self.latest {
            encode(group, hard, &mut bytes);
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut file = self.storage.open(&tmp, FileKind::Index)?;
            file.set_len(0)?;
            file.write_at(0, &bytes)?;
            file.sync_data()?;
        }
        self.storage.rename(&tmp, &self.path)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.storage.sync_dir(dir)?;
        self.file = self.storage.open(&self.path, FileKind::Index)?;
        self.end = bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{SimFaults, SimStorage};

    fn group(p: i32) -> GroupId {
        GroupId { topic_id: 0xabcd, partition: p }
    }

    fn hs(term: u64, vote: Option<u64>) -> HardState {
        HardState {
            term,
            voted_for: vote.map(|v| NodeId::from_wire(v).expect("a small id")),
            rejoining: false,
            knew_leader: false,
        }
    }

    #[test]
    fn the_latest_state_of_each_group_survives_reopening_compaction_and_a_torn_tail() {
        let disk = SimStorage::new(1, SimFaults::default());
        let dir = Path::new("/data/raft");
        let mut journal = HardStateJournal::open(disk.clone(), dir, 0).unwrap();
        journal.append(&[(group(0), hs(1, None)), (group(1), hs(1, Some(2)))]).unwrap();
        journal.append(&[(group(0), hs(2, Some(0)))]).unwrap();
        let all = load_all(&disk, dir).unwrap();
        assert_eq!(all[&group(0)], hs(2, Some(0)));
        assert_eq!(all[&group(1)], hs(1, Some(2)));
        // A torn record at the end: ignored, and cut when the journal opens again.
        let path = dir.join("hard-states.0");
        let mut bytes = disk.contents(&path).unwrap();
        bytes.extend_from_slice(&[7; 25]);
        disk.put_file(&path, &bytes);
        let mut journal = HardStateJournal::open(disk.clone(), dir, 0).unwrap();
        assert_eq!(journal.len(), 3 * RECORD_BYTES as u64);
        // Enough records to compact, then a group forgotten.
        let many: Vec<_> = (0..40).map(|t| (group(1), hs(t + 2, None))).collect();
        while journal.len() < COMPACT_BYTES {
            journal.append(&many).unwrap();
        }
        journal.forget(group(0));
        journal.append(&[(group(2), hs(9, Some(1)))]).unwrap();
        assert_eq!(journal.len(), 2 * RECORD_BYTES as u64, "compacted: groups 1 and 2 only");
        let all = load_all(&disk, dir).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[&group(1)], hs(41, None));
        assert_eq!(all[&group(2)], hs(9, Some(1)));
    }

    #[test]
    fn across_journals_the_greater_state_wins() {
        let disk = SimStorage::new(2, SimFaults::default());
        let dir = Path::new("/data/raft");
        let mut a = HardStateJournal::open(disk.clone(), dir, 0).unwrap();
        let mut b = HardStateJournal::open(disk.clone(), dir, 1).unwrap();
        a.append(&[(group(0), hs(5, Some(1))), (group(1), hs(3, None))]).unwrap();
        b.append(&[(group(0), hs(4, Some(2))), (group(1), hs(3, Some(3)))]).unwrap();
        let all = load_all(&disk, dir).unwrap();
        assert_eq!(all[&group(0)], hs(5, Some(1)), "the higher term");
        assert_eq!(all[&group(1)], hs(3, Some(3)), "the same term with a vote");
        assert_eq!(newer(hs(2, None), hs(1, Some(1))), hs(2, None));
    }

    #[test]
    fn a_crash_before_the_sync_loses_only_unsynced_records() {
        let disk = SimStorage::new(3, SimFaults::default());
        let dir = Path::new("/data/raft");
        let mut journal = HardStateJournal::open(disk.clone(), dir, 0).unwrap();
        journal.append(&[(group(0), hs(1, Some(1)))]).unwrap();
        disk.crash();
        let all = load_all(&disk, dir).unwrap();
        assert_eq!(all[&group(0)], hs(1, Some(1)), "synced before the crash");
    }
}
