//! What a partition leader keeps of the transactions writing to its partition: the first offset
//! of each producer's open transaction (so the last stable offset, LSO: no read_committed
//! consumer reads at or past it), and the aborted transactions (producer id, first and last
//! offset), which a read_committed fetch returns for the range it reads so the client drops
//! their records.
//!
//! The index is a function of the log: a leader builds it from the batch headers of its whole log
//! (control batches' record keys say commit or abort) at the start of its term, then keeps it up
//! to date with its own appends.

use braid_engine::hash::HashMap;
use braid_engine::log::batch::{self, BatchHeader};

pub use batch::{marker_coordinator_epoch, marker_type, TRANSACTIONAL_ATTRIBUTE};
/// Control record types (the key's second field) of transaction markers.
pub const ABORT: i16 = batch::ABORT_MARKER;
pub const COMMIT: i16 = batch::COMMIT_MARKER;

/// An aborted transaction on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
}

#[derive(Debug, Default, Clone)]
pub struct TxnIndex {
    /// Open transactions: producer id to the first offset it wrote in them.
    open: HashMap<i64, i64>,
    /// Aborted transactions, in the order of their markers.
    aborted: Vec<AbortedTxn>,
    /// The coordinator epoch of each producer's last marker: a marker from an older
    /// coordinator (one deposed, its markers late) is refused.
    coordinator_epochs: HashMap<i64, i32>,
}

/// True if a batch with these attributes is transactional.
pub fn is_transactional(h: &BatchHeader) -> bool {
    h.attributes & TRANSACTIONAL_ATTRIBUTE != 0 && h.producer_id >= 0
}

/// A transaction marker: a control batch of one record, of `producer_id` at `epoch`; the key is
/// version 0 and the type, the value version 0 and the coordinator's epoch.
pub fn marker_batch(producer_id: i64, epoch: i16, commit: bool, coordinator_epoch: i32, now_ms: i64) -> Vec<u8> {
    let key = [0, 0, 0, if commit { COMMIT as u8 } else { ABORT as u8 }];
    let mut value = vec![0, 0];
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut b = batch::build_control_batch_with_value(&key, Some(&value));
    batch::set_producer(&mut b, producer_id, epoch, batch::CONTROL_ATTRIBUTE | TRANSACTIONAL_ATTRIBUTE, now_ms);
    b
}

impl TxnIndex {
    /// Takes a batch now in the log at `h.base_offset`; `marker` is its marker type if it is a
    /// transaction marker.
    pub fn append(&mut self, h: &BatchHeader, marker: Option<i16>) {
        if !is_transactional(h) {
            return;
        }
        if h.attributes & batch::CONTROL_ATTRIBUTE == 0 {
            self.open.entry(h.producer_id).or_insert(h.base_offset);
            return;
        }
        let Some(first_offset) = self.open.remove(&h.producer_id) else { return };
        if marker == Some(ABORT) {
            let producer_id = h.producer_id;
            self.aborted.push(AbortedTxn { producer_id, first_offset, last_offset: h.base_offset });
        }
    }

    /// A marker of `producer_id` from coordinator epoch `epoch` was written.
    pub fn marked_by(&mut self, producer_id: i64, epoch: i32) {
        let last = self.coordinator_epochs.entry(producer_id).or_insert(epoch);
        *last = (*last).max(epoch);
    }

    /// True if a marker of `producer_id` from coordinator epoch `epoch` comes from a coordinator
    /// older than one that wrote a marker here already.
    pub fn fenced(&self, producer_id: i64, epoch: i32) -> bool {
        self.coordinator_epochs.get(&producer_id).is_some_and(|&last| epoch < last)
    }

    /// The coordinator epoch of the producer's last marker here (-1: none).
    pub fn coordinator_epoch(&self, producer_id: i64) -> i32 {
        self.coordinator_epochs.get(&producer_id).copied().unwrap_or(-1)
    }

    /// True if `producer_id` has a transaction open here.
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.open.contains_key(&producer_id)
    }

    /// The last stable offset: the first offset of the oldest open transaction, or the high
    /// watermark.
    pub fn last_stable(&self, high_watermark: i64) -> i64 {
        self.open.values().copied().min().map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// Open transactions (producer id, first offset).
    pub fn open(&self) -> Vec<(i64, i64)> {
        let mut open: Vec<(i64, i64)> = self.open.iter().map(|(p, o)| (*p, *o)).collect();
        open.sort_unstable();
        open
    }

    /// Aborted transactions with records in [from, to): those a fetch of that range returns.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        if crate::mutation::active(crate::mutation::Mutation::AbortedTransactionsHidden) {
            return Vec::new();
        }
        // Kafka's rule: every aborted transaction whose marker is at or past `from` and whose
        // first offset is before `to`.
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..].iter().filter(|a| a.first_offset < to).copied().collect()
    }

    /// Forgets what lies before `log_start` (retention or DeleteRecords removed it).
    pub fn trim(&mut self, log_start: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(base_offset: i64, producer_id: i64, control: bool) -> BatchHeader {
        let mut b = batch::build_batch(0, &[b"x"]);
        let attributes = TRANSACTIONAL_ATTRIBUTE | if control { batch::CONTROL_ATTRIBUTE } else { 0 };
        batch::set_producer(&mut b, producer_id, 0, attributes, 0);
        BatchHeader { base_offset, ..BatchHeader::parse(&b).unwrap() }
    }

    #[test]
    fn the_stable_offset_waits_for_the_oldest_open_transaction_and_aborts_are_listed() {
        let mut index = TxnIndex::default();
        index.append(&header(0, 1, false), None);
        index.append(&header(1, 2, false), None);
        index.append(&header(2, 1, false), None);
        assert_eq!(index.last_stable(10), 0);
        index.append(&header(3, 1, true), Some(COMMIT));
        assert_eq!(index.last_stable(10), 1, "producer 2's transaction is still open");
        index.append(&header(4, 2, true), Some(ABORT));
        assert_eq!(index.last_stable(10), 10);
        assert_eq!(index.aborted_between(0, 10), vec![AbortedTxn { producer_id: 2, first_offset: 1, last_offset: 4 }]);
        assert!(index.aborted_between(5, 10).is_empty(), "the abort lies before the range");
        assert!(index.aborted_between(0, 1).is_empty(), "the aborted records lie after the range");
        index.trim(5);
        assert!(index.aborted_between(0, 10).is_empty());
    }

    #[test]
    fn a_marker_from_an_older_coordinator_is_fenced() {
        let mut index = TxnIndex::default();
        assert!(!index.fenced(7, 3));
        index.marked_by(7, 5);
        assert!(index.fenced(7, 4) && !index.fenced(7, 5) && !index.fenced(7, 6) && !index.fenced(8, 1));
        assert_eq!(marker_coordinator_epoch(&marker_batch(7, 0, true, 5, 0)), Some(5));
    }

    #[test]
    fn a_marker_batch_reads_back_as_its_type() {
        let m = marker_batch(9, 2, false, 4, 100);
        let h = BatchHeader::parse(&m).unwrap();
        assert!(is_transactional(&h));
        assert_eq!((h.producer_id, h.producer_epoch), (9, 2));
        assert_eq!(marker_type(&m), Some(ABORT));
        batch::check_crc(&m, &h).unwrap();
        assert_eq!(marker_type(&marker_batch(9, 2, true, 4, 100)), Some(COMMIT));
    }
}
