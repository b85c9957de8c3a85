//! The transactions of a partition's log, kept by the log itself (Kafka's `.txnindex` and the
//! transactional part of its producer state): the first offset of each producer's open
//! transaction (so the last stable offset), the aborted transactions (producer id, first and
//! marker offset) a read_committed fetch returns, and the coordinator epoch of each producer's
//! last marker (a late marker of a deposed coordinator is refused).
//!
//! Built once, when first asked for ([`Log::transactions`]), then kept up to date by every
//! append. Each sealed segment has a `<base>.txnindex` file: the aborted transactions whose
//! markers lie in it and the state at its end, written when it is sealed (or by the first
//! build that had to scan it). A build reads those files and scans only the segments without
//! one (the active segment, or ones sealed before the state was first asked for), so a new
//! leader does not read its whole log. A truncation drops the state and the files of the
//! segments it cut; retention drops the aborted transactions before the new log start.

use super::batch::{self, BatchHeader};
use super::segment::{file_name, Segment};
use super::{io_context, Log, LogError};
use crate::hash::HashMap;
use crate::io::{FileKind, Storage, StorageFile};
use std::io;

pub const TXN_INDEX_SUFFIX: &str = ".txnindex";
const MAGIC: &[u8; 4] = b"BTX1";

/// An aborted transaction on the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
}

/// True if a batch with this header belongs to a transaction (its records or its marker).
pub fn is_transactional(h: &BatchHeader) -> bool {
    h.attributes & batch::TRANSACTIONAL_ATTRIBUTE != 0 && h.producer_id >= 0
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transactions {
    /// Open transactions: producer id to the first offset it wrote in them.
    open: HashMap<i64, i64>,
    /// Aborted transactions, in the order of their markers.
    aborted: Vec<AbortedTxn>,
    /// The coordinator epoch of each producer's last marker.
    coordinator_epochs: HashMap<i64, i32>,
}

impl Transactions {
    /// Takes a batch now in the log at `h.base_offset`; `bytes` are the whole batch (read only
    /// for a marker: its type and coordinator epoch).
    pub fn take(&mut self, h: &BatchHeader, bytes: &[u8]) {
        if !is_transactional(h) {
            return;
        }
        if h.attributes & batch::CONTROL_ATTRIBUTE == 0 {
            self.open.entry(h.producer_id).or_insert(h.base_offset);
            return;
        }
        if let Some(epoch) = batch::marker_coordinator_epoch(bytes) {
            let last = self.coordinator_epochs.entry(h.producer_id).or_insert(epoch);
            *last = (*last).max(epoch);
        }
        let Some(first_offset) = self.open.remove(&h.producer_id) else { return };
        if batch::marker_type(bytes) == Some(batch::ABORT_MARKER) {
            let producer_id = h.producer_id;
            self.aborted.push(AbortedTxn { producer_id, first_offset, last_offset: h.base_offset });
        }
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

    /// Aborted transactions with records in [from, to): those a fetch of that range returns
    /// (Kafka's rule: every aborted transaction whose marker is at or past `from` and whose
    /// first offset is before `to`).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..].iter().filter(|a| a.first_offset < to).copied().collect()
    }

    /// Forgets the aborted transactions wholly before `log_start` (retention removed them).
    fn trim(&mut self, log_start: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start);
    }

    /// The `.txnindex` of a segment that holds [base, next): the aborted transactions whose
    /// markers lie in it and the state at its end; `size` is the segment's, so a file left
    /// from another segment at the same base does not pass for this one's.
    fn encode(&self, base: i64, next: i64, size: u64) -> Vec<u8> {
        // In marker order: those of this segment are the tail.
        let aborted = &self.aborted[self.aborted.partition_point(|a| a.last_offset < base)..];
        let mut out = MAGIC.to_vec();
        for v in [next, size as i64] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&(aborted.len() as u32).to_be_bytes());
        for a in aborted {
            for v in [a.producer_id, a.first_offset, a.last_offset] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        let open = self.open();
        out.extend_from_slice(&(open.len() as u32).to_be_bytes());
        for (producer, first) in open {
            out.extend_from_slice(&producer.to_be_bytes());
            out.extend_from_slice(&first.to_be_bytes());
        }
        let mut epochs: Vec<(i64, i32)> = self.coordinator_epochs.iter().map(|(p, e)| (*p, *e)).collect();
        epochs.sort_unstable();
        out.extend_from_slice(&(epochs.len() as u32).to_be_bytes());
        for (producer, epoch) in epochs {
            out.extend_from_slice(&producer.to_be_bytes());
            out.extend_from_slice(&epoch.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Takes a segment's `.txnindex`: its aborted transactions are added, and the state at its
    /// end replaces the open transactions and epochs. None (nothing taken) if the file is not
    /// one for a segment ending at `next` with `size` bytes, or damaged.
    fn take_encoded(&mut self, bytes: &[u8], next: i64, size: u64) -> Option<()> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if !body.starts_with(MAGIC) || crc32c::crc32c(body).to_be_bytes() != crc {
            return None;
        }
        let mut r = Reader(&body[MAGIC.len()..]);
        if r.i64()? != next || r.i64()? != size as i64 {
            return None;
        }
        let mut aborted = Vec::new();
        for _ in 0..r.u32()? {
            aborted.push(AbortedTxn { producer_id: r.i64()?, first_offset: r.i64()?, last_offset: r.i64()? });
        }
        let mut open = HashMap::default();
        for _ in 0..r.u32()? {
            open.insert(r.i64()?, r.i64()?);
        }
        let mut coordinator_epochs = HashMap::default();
        for _ in 0..r.u32()? {
            coordinator_epochs.insert(r.i64()?, r.i32()?);
        }
        if !r.0.is_empty() {
            return None;
        }
        self.aborted.extend(aborted);
        self.open = open;
        self.coordinator_epochs = coordinator_epochs;
        Some(())
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

/// Takes every batch of a segment (its written part) into `txns`.
fn scan<F: StorageFile>(segment: &Segment<F>, txns: &mut Transactions) -> io::Result<()> {
    let mut position = 0u64;
    while let Some(header) = segment.header_at(position)? {
        if is_transactional(&header) && header.attributes & batch::CONTROL_ATTRIBUTE != 0 {
            let mut bytes = vec![0u8; header.total_bytes()];
            segment.file.read_exact_at(position, &mut bytes)?;
            txns.take(&header, &bytes);
        } else {
            txns.take(&header, &[]);
        }
        position += header.total_bytes() as u64;
    }
    Ok(())
}

impl<S: Storage> Log<S> {
    /// The log's transactions, built the first time (see the module's comment).
    pub fn transactions(&mut self) -> Result<&Transactions, LogError> {
        if self.txns.is_none() {
            self.write()?;
            let result = self.build_transactions();
            let txns = self.poison_on_error(result)?;
            self.txns = Some(txns);
        }
        Ok(self.txns.as_ref().expect("built above"))
    }

    /// The transactions if they were built (they are kept from then on).
    pub fn transactions_if_built(&self) -> Option<&Transactions> {
        self.txns.as_ref()
    }

    fn build_transactions(&mut self) -> Result<Transactions, LogError> {
        let mut txns = Transactions::default();
        let sealed = self.segments.len() - 1;
        for i in 0..sealed {
            let (base, next, size) =
                (self.segments[i].base_offset, self.segments[i + 1].base_offset, self.segments[i].size);
            let bytes = self.read_txn_index(base).ok().flatten();
            let loaded = bytes.and_then(|bytes| txns.take_encoded(&bytes, next, size)).is_some();
            if !loaded {
                let segment = &self.segments[i];
                scan(segment, &mut txns).map_err(io_context(|| format!("reading {}", segment.path.display())))?;
                self.persist_transactions(&txns, i)?;
            }
        }
        let active = self.segments.last().expect("a log always has a segment");
        scan(active, &mut txns).map_err(io_context(|| format!("reading {}", active.path.display())))?;
        Ok(txns)
    }

    /// Writes sealed segment `i`'s `.txnindex` from `txns`, the state at its end.
    fn persist_transactions(&self, txns: &Transactions, i: usize) -> Result<(), LogError> {
        let segment = &self.segments[i];
        let next = self.segments.get(i + 1).map_or(segment.next_offset, |s| s.base_offset);
        self.write_txn_index(segment.base_offset, &txns.encode(segment.base_offset, next, segment.size))
    }

    /// The `.txnindex` of the segment at `base` (None: there is none).
    fn read_txn_index(&self, base: i64) -> Result<Option<Vec<u8>>, LogError> {
        let path = self.dir.join(file_name(base, TXN_INDEX_SUFFIX));
        if !self.storage.exists(&path) {
            return Ok(None);
        }
        let read = || -> io::Result<Vec<u8>> {
            let file = self.storage.open(&path, FileKind::Index)?;
            let mut bytes = vec![0u8; usize::try_from(file.len()?).map_err(io::Error::other)?];
            file.read_exact_at(0, &mut bytes)?;
            Ok(bytes)
        };
        read().map(Some).map_err(io_context(|| format!("reading {}", path.display())))
    }

    /// Writes (replaces) the `.txnindex` of the segment at `base`, synced.
    fn write_txn_index(&self, base: i64, bytes: &[u8]) -> Result<(), LogError> {
        let path = self.dir.join(file_name(base, TXN_INDEX_SUFFIX));
        let write = || -> io::Result<()> {
            let mut file = self.storage.open(&path, FileKind::Index)?;
            file.set_len(0)?;
            file.write_at(0, bytes)?;
            file.sync_data()
        };
        write().map_err(io_context(|| format!("writing {}", path.display())))
    }

    /// Takes a batch just appended into the transactions, if they are kept.
    pub(super) fn take_transactional(&mut self, header: &BatchHeader, bytes: &[u8]) {
        if let Some(txns) = self.txns.as_mut() {
            txns.take(header, bytes);
        }
    }

    /// The active segment (the last but one now) was just sealed: its `.txnindex` is written if
    /// the transactions are kept (else the first build scans it).
    pub(super) fn seal_transactions(&mut self) -> Result<(), LogError> {
        let Some(i) = self.segments.len().checked_sub(2) else { return Ok(()) };
        if let Some(txns) = &self.txns {
            return self.persist_transactions(txns, i);
        }
        // A file left from an earlier segment at this base (cut by a truncation a crash kept
        // from removing it) must not pass for this one's.
        let path = self.dir.join(file_name(self.segments[i].base_offset, TXN_INDEX_SUFFIX));
        if self.storage.exists(&path) {
            self.storage.remove(&path).map_err(io_context(|| format!("removing {}", path.display())))?;
        }
        Ok(())
    }

    /// Compaction rewrote the segment at `base` (ending at `next`) from `old_size` bytes to
    /// `new_size`: its `.txnindex` still holds (markers stay, offsets do not move) and is
    /// rewritten for the new size.
    pub(super) fn resize_transactions(
        &self,
        base: i64,
        next: i64,
        old_size: u64,
        new_size: u64,
    ) -> Result<(), LogError> {
        let Some(bytes) = self.read_txn_index(base)? else { return Ok(()) };
        let mut txns = Transactions::default();
        let bytes = match txns.take_encoded(&bytes, next, old_size) {
            Some(()) => txns.encode(base, next, new_size),
            None => Vec::new(), // damaged: the next build scans the segment
        };
        self.write_txn_index(base, &bytes)
    }

    /// Segments before `log_start` were deleted.
    pub(super) fn trim_transactions(&mut self) {
        let start = self.log_start_offset();
        if let Some(txns) = self.txns.as_mut() {
            txns.trim(start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(producer_id: i64, control: Option<i16>, coordinator_epoch: i32) -> Vec<u8> {
        let mut b = match control {
            Some(kind) => {
                let value = [&[0u8, 0][..], &coordinator_epoch.to_be_bytes()].concat();
                batch::build_control_batch_with_value(&[0, 0, 0, kind as u8], Some(&value))
            }
            None => batch::build_batch(0, &[b"x"]),
        };
        let control_bit = if control.is_some() { batch::CONTROL_ATTRIBUTE } else { 0 };
        batch::set_producer(&mut b, producer_id, 0, batch::TRANSACTIONAL_ATTRIBUTE | control_bit, 0);
        b
    }

    fn take(txns: &mut Transactions, base_offset: i64, bytes: &[u8]) {
        let h = BatchHeader { base_offset, ..BatchHeader::parse(bytes).unwrap() };
        txns.take(&h, bytes);
    }

    #[test]
    fn the_stable_offset_waits_for_the_oldest_open_transaction_and_aborts_are_listed() {
        let mut t = Transactions::default();
        take(&mut t, 0, &batch_of(1, None, 0));
        take(&mut t, 1, &batch_of(2, None, 0));
        take(&mut t, 2, &batch_of(1, None, 0));
        assert_eq!(t.last_stable(10), 0);
        take(&mut t, 3, &batch_of(1, Some(batch::COMMIT_MARKER), 4));
        assert_eq!(t.last_stable(10), 1, "producer 2's transaction is still open");
        take(&mut t, 4, &batch_of(2, Some(batch::ABORT_MARKER), 4));
        assert_eq!(t.last_stable(10), 10);
        assert_eq!(t.aborted_between(0, 10), vec![AbortedTxn { producer_id: 2, first_offset: 1, last_offset: 4 }]);
        assert!(t.aborted_between(5, 10).is_empty(), "the abort lies before the range");
        assert!(t.aborted_between(0, 1).is_empty(), "the aborted records lie after the range");
        t.trim(5);
        assert!(t.aborted_between(0, 10).is_empty());
    }

    #[test]
    fn a_marker_from_an_older_coordinator_is_fenced() {
        let mut t = Transactions::default();
        assert!(!t.fenced(7, 3));
        take(&mut t, 0, &batch_of(7, Some(batch::COMMIT_MARKER), 5));
        assert!(t.fenced(7, 4) && !t.fenced(7, 5) && !t.fenced(7, 6) && !t.fenced(8, 1));
        assert_eq!(t.coordinator_epoch(7), 5);
    }

    #[test]
    fn a_segment_file_reads_back_only_for_its_own_segment() {
        let mut t = Transactions::default();
        take(&mut t, 0, &batch_of(1, None, 0));
        take(&mut t, 1, &batch_of(1, Some(batch::ABORT_MARKER), 2));
        take(&mut t, 2, &batch_of(3, None, 0));
        let bytes = t.encode(0, 3, 300);
        let mut back = Transactions::default();
        assert_eq!(back.take_encoded(&bytes, 3, 300), Some(()));
        assert_eq!(back, t);
        assert_eq!(Transactions::default().take_encoded(&bytes, 3, 299), None, "another segment's size");
        assert_eq!(Transactions::default().take_encoded(&bytes, 4, 300), None, "another segment's end");
        let mut torn = bytes.clone();
        torn[10] ^= 1;
        assert_eq!(Transactions::default().take_encoded(&torn, 3, 300), None);
        assert_eq!(Transactions::default().take_encoded(&bytes[..bytes.len() - 1], 3, 300), None);
        // A later segment's file lists only the aborts whose markers lie in it.
        assert!(t.encode(2, 3, 10).len() < bytes.len());
    }
}
