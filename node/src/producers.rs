//! Idempotent producers on a partition's leader: the last batches of every producer id, so a
//! retried batch is recognised and answered with its first offset instead of being stored twice,
//! and a batch that skips sequence numbers is refused (OUT_OF_ORDER_SEQUENCE_NUMBER).
//!
//! The state is a function of the log: a new leader rebuilds it from the headers of the last
//! [`SCAN_OFFSETS`] offsets of its log (every replica holds the same batches, with producer id,
//! epoch and sequence in their headers), then keeps it up to date with its own appends. A
//! producer whose last batch lies further back is unknown; its next batch is accepted at
//! whatever sequence it carries, as Kafka does for producers whose state has expired.

use braid_engine::hash::HashMap;
use braid_engine::log::BatchHeader;
use kafka_protocol::ResponseError;
use std::collections::VecDeque;

/// Batches remembered per producer: Kafka's limit on in-flight requests of an idempotent
/// producer, so any retry is among them.
pub const BATCHES_KEPT: usize = 5;
/// Offsets before the log end a new leader reads batch headers from.
pub const SCAN_OFFSETS: i64 = 500_000;

/// A batch of an idempotent producer, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Default)]
struct Producer {
    epoch: i16,
    batches: VecDeque<Stored>,
    /// The largest timestamp of its last batch.
    last_timestamp: i64,
}

/// A producer as DescribeProducers shows it: id, epoch, last sequence, last timestamp.
pub type ActiveProducer = (i64, i16, i32, i64);

/// What to do with an incoming batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not from an idempotent producer, or the next in its sequence: append it.
    Append,
    /// Already stored at these offsets: answer with them, store nothing.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
    Refuse(ResponseError, String),
}

#[derive(Debug, Default)]
pub struct Producers {
    producers: HashMap<i64, Producer>,
}

fn last_seq(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX, as Kafka's do.
    ((i64::from(h.base_sequence) + i64::from(h.last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

fn follows(previous: i32, next: i32) -> bool {
    next == if previous == i32::MAX { 0 } else { previous + 1 }
}

impl Producers {
    /// Rebuilds the state from stored batch headers, oldest first.
    pub fn from_headers(headers: &[BatchHeader]) -> Self {
        let mut producers = Producers::default();
        for h in headers {
            producers.record(h);
        }
        producers
    }

    /// Checks a batch (as the client sent it) against what its producer stored last.
    pub fn check(&self, h: &BatchHeader) -> Verdict {
        if h.producer_id < 0 {
            return Verdict::Append;
        }
        let Some(p) = self.producers.get(&h.producer_id) else { return Verdict::Append };
        if h.producer_epoch < p.epoch {
            let message = format!("producer {} epoch {} is older than {}", h.producer_id, h.producer_epoch, p.epoch);
            return Verdict::Refuse(ResponseError::InvalidProducerEpoch, message);
        }
        if h.base_sequence < 0 {
            // A batch without a sequence (the node's own: transaction markers, transactional
            // offset commits) is only checked against the producer's epoch.
            return Verdict::Append;
        }
        if h.producer_epoch > p.epoch {
            // A new epoch starts its sequence over.
            return if h.base_sequence == 0 {
                Verdict::Append
            } else {
                let message = format!(
                    "producer {} epoch {} must start at sequence 0, not {}",
                    h.producer_id, h.producer_epoch, h.base_sequence
                );
                Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber, message)
            };
        }
        let last = last_seq(h);
        if let Some(s) = p.batches.iter().find(|s| s.first_seq == h.base_sequence && s.last_seq == last) {
            return Verdict::Duplicate { base_offset: s.base_offset, last_offset: s.last_offset };
        }
        match p.batches.back() {
            Some(previous) if !follows(previous.last_seq, h.base_sequence) => {
                let message =
                    format!("producer {} sent sequence {} after {}", h.producer_id, h.base_sequence, previous.last_seq);
                Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber, message)
            }
            _ => Verdict::Append,
        }
    }

    /// Every producer known here, by id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, p)| (*id, p.epoch, p.batches.back().map_or(-1, |s| s.last_seq), p.last_timestamp))
            .collect();
        out.sort_unstable();
        out
    }

    /// A batch was stored (its header as stamped, with its offsets).
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        let p = self.producers.entry(h.producer_id).or_default();
        p.last_timestamp = p.last_timestamp.max(h.max_timestamp);
        if h.base_sequence < 0 {
            // A marker (or an offset commit) of a transaction: a newer epoch fences the older
            // one (a producer fenced while its transaction was open writes no more).
            if h.producer_epoch > p.epoch {
                p.epoch = h.producer_epoch;
                p.batches.clear();
            }
            return;
        }
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.batches.clear();
        }
        let stored = Stored {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        p.batches.push_back(stored);
        if p.batches.len() > BATCHES_KEPT {
            p.batches.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_engine::log::batch::{build_batch, stamp};

    /// A batch of `records` records from producer 7 at `epoch`, `seq`, stored at `base`.
    fn header(epoch: i16, seq: i32, records: usize, base: i64) -> BatchHeader {
        let values: Vec<&[u8]> = (0..records).map(|_| &b"v"[..]).collect();
        let mut bytes = build_batch(0, &values);
        stamp(&mut bytes, base, 0);
        let mut h = BatchHeader::parse(&bytes).unwrap();
        (h.producer_id, h.producer_epoch, h.base_sequence) = (7, epoch, seq);
        h
    }

    #[test]
    fn retries_are_recognised_gaps_refused_and_epochs_start_over() {
        let mut producers = Producers::default();
        let first = header(0, 0, 3, 100);
        assert_eq!(producers.check(&first), Verdict::Append, "an unknown producer starts anywhere");
        producers.record(&first);
        assert_eq!(producers.check(&first), Verdict::Duplicate { base_offset: 100, last_offset: 102 });
        let gap = header(0, 4, 1, 0);
        assert!(matches!(producers.check(&gap), Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber, _)));
        let next = header(0, 3, 2, 103);
        assert_eq!(producers.check(&next), Verdict::Append);
        producers.record(&next);
        // Five batches are remembered; the sixth pushes out the first.
        for i in 0..4 {
            let h = header(0, 5 + i, 1, 105 + i64::from(i));
            assert_eq!(producers.check(&h), Verdict::Append);
            producers.record(&h);
        }
        assert!(
            matches!(producers.check(&first), Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber, _)),
            "too old to be known as a retry: out of order"
        );
        assert!(matches!(producers.check(&header(0, 3, 2, 0)), Verdict::Duplicate { base_offset: 103, .. }));
        // A new epoch starts at 0; the old one is fenced.
        assert!(matches!(
            producers.check(&header(1, 9, 1, 0)),
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber, _)
        ));
        let bumped = header(1, 0, 1, 200);
        assert_eq!(producers.check(&bumped), Verdict::Append);
        producers.record(&bumped);
        assert!(matches!(
            producers.check(&header(0, 9, 1, 0)),
            Verdict::Refuse(ResponseError::InvalidProducerEpoch, _)
        ));
        // The same state comes back from the stored headers.
        let rebuilt = Producers::from_headers(&[first, next, bumped]);
        assert!(matches!(rebuilt.check(&header(1, 0, 1, 0)), Verdict::Duplicate { base_offset: 200, .. }));
        // A transaction marker at a newer epoch fences the old one; it has no sequence.
        let mut marked = Producers::default();
        marked.record(&header(0, 0, 1, 0));
        marked.record(&BatchHeader { base_sequence: -1, ..header(3, 0, 1, 1) });
        assert!(matches!(marked.check(&header(0, 1, 1, 0)), Verdict::Refuse(ResponseError::InvalidProducerEpoch, _)));
        assert_eq!(marked.check(&header(3, 0, 1, 0)), Verdict::Append, "the new epoch starts at 0");
        // Sequences wrap.
        let mut wrap = Producers::default();
        wrap.record(&header(0, i32::MAX - 1, 2, 0));
        assert_eq!(wrap.check(&header(0, 0, 1, 2)), Verdict::Append);
    }
}
