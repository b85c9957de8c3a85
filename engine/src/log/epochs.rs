//! Leader epochs along the log: which epoch (raft term) holds an offset, and where an epoch
//! ends (Kafka's OffsetForLeaderEpoch, KIP-320, which consumers use to check their position
//! after a leader change).
//!
//! Braid keeps no epoch cache beside the log (Kafka's `leader-epoch-checkpoint`): epochs only
//! grow along a log, so a binary search over offsets, each probe one batch header (from the
//! recent `positions` in memory, or one offset-index lookup and a short scan of a segment),
//! finds an epoch's end in about 2 x log2(offsets) header reads. Clients ask once per leader
//! change, not per fetch.
//!
//! ```text
//!   offsets:  [start ........................................ end)
//!   epochs:    3 3 3 3 | 5 5 5 5 5 5 | 6 6 6 6 6 6 6 6 6 6 6 6 6
//!                        ^ end of epochs 3 and 4 (4 had no batch: answered as 3)
//! ```

use super::{Log, LogError};
use crate::io::Storage;

/// A batch located by one of its offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSpan {
    /// Its first offset.
    pub base_offset: i64,
    /// One past its last offset.
    pub next_offset: i64,
    /// Its partitionLeaderEpoch (the raft term it was appended in).
    pub epoch: i32,
}

impl<S: Storage> Log<S> {
    /// The batch holding `offset`, appended or written, with its leader epoch; `None` outside
    /// `[log_start_offset, log_end_offset)`.
    pub fn batch_holding(&self, offset: i64) -> Result<Option<EpochSpan>, LogError> {
        self.check_usable()?;
        if offset < self.log_start_offset() || offset >= self.log_end_offset() {
            return Ok(None);
        }
        // Every batch past the written offset is among the positions, and so are the last ones
        // written: those need no read.
        let i = self.positions.partition_point(|p| p.end <= offset);
        if let Some(p) = self.positions.get(i).filter(|p| p.base <= offset) {
            return Ok(Some(EpochSpan { base_offset: p.base, next_offset: p.end, epoch: p.epoch }));
        }
        let segment = &self.segments[self.segment_index_for(offset)];
        let found =
            segment.find_offset(offset).map_err(super::io_context(|| format!("reading {}", segment.path.display())))?;
        Ok(found.filter(|located| located.header.base_offset <= offset).map(|located| EpochSpan {
            base_offset: located.header.base_offset,
            next_offset: located.header.next_offset(),
            epoch: located.header.partition_leader_epoch,
        }))
    }

    /// Where leader epoch `epoch` ends in this log, as Kafka's leader epoch cache answers it:
    /// the largest epoch at most `epoch` that holds a batch, and the first offset of the first
    /// batch of a later epoch; for the latest epoch, the log end offset. `appending_epoch` is
    /// the epoch appends get now (a leader's term; -1 for none): it counts as starting at the
    /// log end while no batch holds it yet, as Kafka's leader records its epoch when elected.
    /// `None` (Kafka's undefined epoch and offset) for a negative epoch or one past the latest;
    /// an epoch older than every batch's is answered with itself and the log start.
    pub fn end_offset_for_epoch(&self, epoch: i32, appending_epoch: i32) -> Result<Option<(i32, i64)>, LogError> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        let last = if start < end { Some(self.expect_batch(end - 1)?) } else { None };
        let latest = last.map_or(-1, |b| b.epoch).max(appending_epoch);
        if epoch < 0 || epoch > latest {
            return Ok(None);
        }
        if epoch == latest {
            return Ok(Some((epoch, end)));
        }
        let last = match last {
            // Only the appending epoch is known: it starts at the (empty) log's end.
            None => return Ok(Some((epoch, end))),
            // The appending epoch is the first after `epoch`, and it starts at the log end.
            Some(last) if last.epoch <= epoch => return Ok(Some((last.epoch, end))),
            Some(last) => last,
        };
        // The first offset whose batch's epoch is past `epoch`: it exists (the last batch's
        // is), and epochs never fall along the log.
        let (mut low, mut high) = (start, last.base_offset);
        while low < high {
            let probe = self.expect_batch(low + (high - low) / 2)?;
            if probe.epoch > epoch {
                high = probe.base_offset;
            } else {
                low = probe.next_offset;
            }
        }
        assert!(low >= start && low < end, "epoch {epoch} ends at {low}, outside [{start}, {end})");
        if low == start {
            return Ok(Some((epoch, start)));
        }
        let before = self.expect_batch(low - 1)?;
        assert!(before.epoch <= epoch && before.next_offset == low, "epochs fell along the log near {low}");
        Ok(Some((before.epoch, low)))
    }

    /// [`Log::batch_holding`] of an offset known to be in the log.
    fn expect_batch(&self, offset: i64) -> Result<EpochSpan, LogError> {
        self.batch_holding(offset)?.ok_or_else(|| LogError::Io {
            context: format!(
                "looking up offset {offset} in {} (log [{}, {}))",
                self.dir.display(),
                self.log_start_offset(),
                self.log_end_offset()
            ),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no batch holds it"),
        })
    }
}
