//! Raft's hard state (term, vote) on disk, written so a torn write can never
//! lose the last synced value: two 32-byte slots used in turn, each with a sequence number and
//! a CRC; the valid slot with the highest sequence wins.

use super::{HardState, NodeId};
use crate::io::{FileKind, Storage, StorageFile};
use std::path::Path;

const SLOT_BYTES: usize = 32;

fn encode(seq: u64, hard: HardState) -> [u8; SLOT_BYTES] {
    let mut slot = [0u8; SLOT_BYTES];
    slot[0..8].copy_from_slice(&seq.to_be_bytes());
    slot[8..16].copy_from_slice(&hard.term.to_be_bytes());
    slot[16..24].copy_from_slice(&hard.voted_for.map_or(u64::MAX, NodeId::wire).to_be_bytes());
    slot[24] = u8::from(hard.rejoining) | u8::from(hard.knew_leader) << 1;
    let crc = crc32c::crc32c(&slot[..28]);
    slot[28..32].copy_from_slice(&crc.to_be_bytes());
    slot
}

fn decode(slot: &[u8]) -> Option<(u64, HardState)> {
    let crc = u32::from_be_bytes(slot[28..32].try_into().ok()?);
    if crc32c::crc32c(&slot[..28]) != crc {
        return None;
    }
    let seq = u64::from_be_bytes(slot[0..8].try_into().ok()?);
    let term = u64::from_be_bytes(slot[8..16].try_into().ok()?);
    let vote = u64::from_be_bytes(slot[16..24].try_into().ok()?);
    let voted_for = if vote == u64::MAX { None } else { Some(NodeId::from_wire(vote)?) };
    let (rejoining, knew_leader) = (slot[24] & 1 != 0, slot[24] & 2 != 0);
    Some((seq, HardState { term, voted_for, rejoining, knew_leader }))
}

/// Reads the newest valid slot (the default hard state if none).
pub fn load<S: Storage>(storage: &S, path: &Path) -> (u64, HardState) {
    // Absent (a group whose hard state is in its shard's journal, or a new one): nothing to
    // read, and nothing to create.
    if !storage.exists(path) {
        return (0, HardState::default());
    }
    let Ok(file) = storage.open(path, FileKind::Index) else { return (0, HardState::default()) };
    let mut best = (0, HardState::default());
    for slot in 0..2 {
        let mut bytes = [0u8; SLOT_BYTES];
        if file.read_exact_at((slot * SLOT_BYTES) as u64, &mut bytes).is_ok() {
            if let Some((seq, hard)) = decode(&bytes) {
                if seq > best.0 {
                    best = (seq, hard);
                }
            }
        }
    }
    best
}

/// Writes `hard` as sequence `seq` into slot `seq % 2` and syncs it.
pub fn store<S: Storage>(storage: &S, path: &Path, seq: u64, hard: HardState) -> std::io::Result<()> {
    let mut file = storage.open(path, FileKind::Index)?;
    file.write_at((seq % 2) * SLOT_BYTES as u64, &encode(seq, hard))?;
    file.sync_data()
}
