//! Sparse offset and time indexes of one segment, in Kafka's on-disk layout.
//!
//! ```text
//! .index      entries of 8 bytes:  relativeOffset u32 BE | position u32 BE
//! .timeindex  entries of 12 bytes: timestamp i64 BE      | relativeOffset u32 BE
//! ```
//! An offset entry maps the last offset of a batch to the batch's byte position; a time entry
//! maps the largest timestamp seen so far in the segment to the last offset of the batch that
//! carried it. Both are strictly increasing. The active segment keeps its entries in memory (it
//! is rebuilt by the recovery scan after a crash anyway); a sealed segment's are written once when
//! it is rolled and then memory-mapped read-only.

use crate::io::Mapped;

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

/// Entries in memory (active segment) or mapped from the file (sealed segment).
#[derive(Debug)]
pub enum IndexBytes {
    Growing(Vec<u8>),
    Sealed(Mapped),
}

impl IndexBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            IndexBytes::Growing(v) => v,
            IndexBytes::Sealed(m) => m,
        }
    }

    /// Heap bytes held (a growing index's; a sealed one is a mapped file, paged by the kernel).
    fn memory_bytes(&self) -> usize {
        match self {
            IndexBytes::Growing(v) => v.capacity(),
            IndexBytes::Sealed(Mapped::Owned(v)) => v.capacity(),
            IndexBytes::Sealed(Mapped::Mmap(_)) => 0,
        }
    }

    fn growing(&mut self) -> &mut Vec<u8> {
        if let IndexBytes::Sealed(m) = self {
            *self = IndexBytes::Growing(m.to_vec());
        }
        match self {
            IndexBytes::Growing(v) => v,
            IndexBytes::Sealed(_) => unreachable!("converted above"),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Offset → position index.
#[derive(Debug)]
pub struct OffsetIndex {
    entries: IndexBytes,
}

impl OffsetIndex {
    pub fn new() -> Self {
        Self { entries: IndexBytes::Growing(Vec::new()) }
    }

    pub fn sealed(map: Mapped) -> Self {
        Self { entries: IndexBytes::Sealed(map) }
    }

    /// Heap bytes this index holds.
    pub fn memory_bytes(&self) -> usize {
        self.entries.memory_bytes()
    }

    pub fn len(&self) -> usize {
        self.entries.bytes().len() / OFFSET_ENTRY_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn entry(&self, i: usize) -> (u32, u32) {
        let b = self.entries.bytes();
        let at = i * OFFSET_ENTRY_BYTES;
        (u32_at(b, at), u32_at(b, at + 4))
    }

    pub fn bytes(&self) -> &[u8] {
        self.entries.bytes()
    }

    pub fn append(&mut self, relative_offset: u32, position: u32) {
        if let Some(last) = self.len().checked_sub(1).map(|i| self.entry(i)) {
            assert!(
                relative_offset > last.0 && position > last.1,
                "offset index must grow: {last:?} then {relative_offset}@{position}"
            );
        }
        let v = self.entries.growing();
        v.extend_from_slice(&relative_offset.to_be_bytes());
        v.extend_from_slice(&position.to_be_bytes());
    }

    /// Position to start scanning from for `relative_offset`: that of the greatest entry whose
    /// offset is below it (its batch ends before the target), or 0.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        // Entries key batches by their last offset, so an entry equal to the target points at the
        // batch holding it; an entry below the target points at a batch entirely before it, which
        // is still a safe place to start.
        let (mut low, mut high) = (0usize, self.len());
        while low < high {
            let mid = (low + high) / 2;
            if self.entry(mid).0 < relative_offset {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        if low < self.len() && self.entry(low).0 == relative_offset {
            return self.entry(low).1;
        }
        if low == 0 {
            0
        } else {
            self.entry(low - 1).1
        }
    }

    /// Drops entries whose position is at or past `position`.
    pub fn truncate_to_position(&mut self, position: u64) {
        let keep = (0..self.len()).take_while(|&i| u64::from(self.entry(i).1) < position).count();
        self.entries.growing().truncate(keep * OFFSET_ENTRY_BYTES);
    }

    /// True if the entries are strictly increasing and every position lies below `segment_bytes`
    /// and every offset below `offset_span` (the segment's next offset minus its base).
    pub fn is_sane(&self, segment_bytes: u64, offset_span: i64) -> bool {
        if !self.entries.bytes().len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            return false;
        }
        let mut previous: Option<(u32, u32)> = None;
        for i in 0..self.len() {
            let (offset, position) = self.entry(i);
            if u64::from(position) >= segment_bytes || i64::from(offset) >= offset_span {
                return false;
            }
            if let Some((po, pp)) = previous {
                if offset <= po || position <= pp {
                    return false;
                }
            }
            previous = Some((offset, position));
        }
        true
    }
}

impl Default for OffsetIndex {
    fn default() -> Self {
        Self::new()
    }
}

/// Timestamp → offset index.
#[derive(Debug)]
pub struct TimeIndex {
    entries: IndexBytes,
}

impl TimeIndex {
    pub fn new() -> Self {
        Self { entries: IndexBytes::Growing(Vec::new()) }
    }

    pub fn sealed(map: Mapped) -> Self {
        Self { entries: IndexBytes::Sealed(map) }
    }

    /// Heap bytes this index holds.
    pub fn memory_bytes(&self) -> usize {
        self.entries.memory_bytes()
    }

    pub fn len(&self) -> usize {
        self.entries.bytes().len() / TIME_ENTRY_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> &[u8] {
        self.entries.bytes()
    }

    pub fn entry(&self, i: usize) -> (i64, u32) {
        let b = self.entries.bytes();
        let at = i * TIME_ENTRY_BYTES;
        (i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes")), u32_at(b, at + 8))
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Adds an entry if `timestamp` is above the last one (timestamps in the index only grow).
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) {
        if self.last().is_some_and(|(t, o)| timestamp <= t || relative_offset <= o) {
            return;
        }
        let v = self.entries.growing();
        v.extend_from_slice(&timestamp.to_be_bytes());
        v.extend_from_slice(&relative_offset.to_be_bytes());
    }

    /// Relative offset to start scanning from for the first batch with max timestamp >= `ts`:
    /// that of the greatest entry whose timestamp is below `ts` (all batches up to it are older).
    pub fn lookup(&self, timestamp: i64) -> Option<u32> {
        let below = (0..self.len()).rev().find(|&i| self.entry(i).0 < timestamp)?;
        Some(self.entry(below).1)
    }

    /// Drops entries whose offset is at or past `relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let keep = (0..self.len()).take_while(|&i| self.entry(i).1 < relative_offset).count();
        self.entries.growing().truncate(keep * TIME_ENTRY_BYTES);
    }

    pub fn is_sane(&self, offset_span: i64) -> bool {
        if !self.entries.bytes().len().is_multiple_of(TIME_ENTRY_BYTES) {
            return false;
        }
        (0..self.len()).all(|i| {
            let (t, o) = self.entry(i);
            i64::from(o) < offset_span && (i == 0 || (t > self.entry(i - 1).0 && o > self.entry(i - 1).1))
        })
    }
}

impl Default for TimeIndex {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_greatest_entry_not_past_target() {
        let mut index = OffsetIndex::new();
        index.append(9, 100);
        index.append(19, 200);
        index.append(29, 300);
        assert_eq!(index.lookup(0), 0);
        assert_eq!(index.lookup(9), 100);
        assert_eq!(index.lookup(10), 100);
        assert_eq!(index.lookup(19), 200);
        assert_eq!(index.lookup(25), 200);
        assert_eq!(index.lookup(1000), 300);
        assert!(index.is_sane(301, 30));
        assert!(!index.is_sane(300, 30));
        index.truncate_to_position(200);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn time_index_only_grows() {
        let mut index = TimeIndex::new();
        index.maybe_append(100, 1);
        index.maybe_append(90, 2);
        index.maybe_append(200, 5);
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup(100), None);
        assert_eq!(index.lookup(150), Some(1));
        assert_eq!(index.lookup(1000), Some(5));
        index.truncate_to_offset(5);
        assert_eq!(index.len(), 1);
    }
}
