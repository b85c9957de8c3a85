//! Transaction markers, the control batches a coordinator has written on every partition of a
//! transaction to end it, and what a partition knows of its transactions: the log keeps that
//! itself (`braid_engine::log::txn`: open transactions, so the last stable offset; aborted ones,
//! which a read_committed fetch returns; the coordinator epoch of each producer's last marker),
//! with a `.txnindex` per sealed segment.

use braid_engine::log::batch;

pub use braid_engine::log::txn::{is_transactional, AbortedTxn, Transactions};

pub use batch::{marker_coordinator_epoch, marker_type, TRANSACTIONAL_ATTRIBUTE};
/// Control record types (the key's second field) of transaction markers.
pub const ABORT: i16 = batch::ABORT_MARKER;
pub const COMMIT: i16 = batch::COMMIT_MARKER;

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

#[cfg(test)]
mod tests {
    use super::*;
    use braid_engine::log::batch::BatchHeader;

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
