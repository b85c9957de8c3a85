//! Compaction (cleanup.policy=compact): the sealed segments below the commit point keep the
//! newest record of each key; see [`Log::compact`].

use super::segment::{file_name, Segment, INDEX_SUFFIX, TIME_INDEX_SUFFIX};
use super::txn::{is_transactional, Transactions};
use super::{batch, io_context, BatchHeader, CompactionOutcome, Log, LogError, RecoveryReport, CLEANED_SUFFIX};
use crate::io::{FileKind, Storage, StorageFile};
use std::io;

/// Calls `f` with every whole batch of a sealed (or written) segment, in order.
fn for_each_batch<F: StorageFile>(segment: &Segment<F>, mut f: impl FnMut(&[u8], &BatchHeader)) -> io::Result<()> {
    let mut position = 0u64;
    while let Some(header) = segment.header_at(position)? {
        let mut bytes = vec![0u8; header.total_bytes()];
        segment.file.read_exact_at(position, &mut bytes)?;
        f(&bytes, &header);
        position += header.total_bytes() as u64;
    }
    Ok(())
}

/// Each producer's aborted transactions (first offset, marker offset) below a limit, from the
/// transactions there ([`Transactions`], as the log keeps them past the limit too).
#[derive(Default)]
struct Aborted(crate::hash::HashMap<i64, Vec<(i64, i64)>>);

impl Aborted {
    fn of(txns: &Transactions) -> Self {
        let mut by_producer = Aborted::default();
        for a in txns.aborted_between(i64::MIN, i64::MAX) {
            by_producer.0.entry(a.producer_id).or_default().push((a.first_offset, a.last_offset));
        }
        by_producer
    }

    /// True if the batch's records belong to an aborted transaction.
    fn holds(&self, header: &BatchHeader) -> bool {
        is_transactional(header)
            && header.attributes & batch::CONTROL_ATTRIBUTE == 0
            && self.0.get(&header.producer_id).is_some_and(|ranges| {
                ranges.iter().any(|&(first, marker)| (first..marker).contains(&header.base_offset))
            })
    }
}

impl<S: Storage> Log<S> {
    /// Compaction (cleanup.policy=compact): in the sealed segments wholly below `limit_offset`
    /// (the commit point), keeps only the newest record of each key, as of everything below
    /// `limit_offset`, and drops tombstones (null values) older than `delete.retention.ms`.
    /// Offsets never change: a batch keeps its offset range even with no record left, so
    /// positions and terms stay where raft expects them. Compressed batches are kept whole
    /// (their records are not read here). Transactions keep their meaning (as Kafka's cleaner):
    /// nothing at or past the first transaction still open is cleaned, the records of aborted
    /// transactions are removed and never count as a key's newest, and markers stay. A
    /// rewritten segment goes to a `.log.cleaned` file, synced, then renamed over the segment,
    /// whose indexes are rebuilt.
    pub fn compact(&mut self, now_ms: i64, limit_offset: i64) -> Result<CompactionOutcome, LogError> {
        self.check_usable()?;
        let result = self.compact_inner(now_ms, limit_offset);
        self.checked(result)
    }

    fn compact_inner(&mut self, now_ms: i64, limit_offset: i64) -> Result<CompactionOutcome, LogError> {
        let mut outcome = CompactionOutcome::default();
        let mut limit = limit_offset.min(self.written_offset);
        let mut txns = Transactions::default();
        for segment in &self.segments {
            if segment.base_offset >= limit {
                break;
            }
            for_each_batch(segment, |bytes, header| {
                if header.next_offset() <= limit {
                    txns.take(header, bytes);
                }
            })
            .map_err(io_context(|| format!("reading {}", segment.path.display())))?;
        }
        // Nothing at or past the first transaction still open.
        limit = txns.last_stable(limit);
        let aborted = Aborted::of(&txns);
        // Sealed segments whose every offset lies below the limit, up to the first holding a
        // record younger than min.compaction.lag.ms.
        let lag = self.config.min_compaction_lag_ms;
        let horizon = now_ms.saturating_sub(lag);
        let cleanable = (0..self.segments.len().saturating_sub(1))
            .take_while(|&i| {
                self.segments[i + 1].base_offset <= limit && (lag <= 0 || self.segments[i].max_timestamp <= horizon)
            })
            .count();
        if cleanable == 0 {
            return Ok(outcome);
        }
        // The newest offset of every key below the limit.
        let mut latest: crate::hash::HashMap<Vec<u8>, i64> = crate::hash::HashMap::default();
        for segment in &self.segments {
            if segment.base_offset >= limit {
                break;
            }
            for_each_batch(segment, |bytes, header| {
                if header.next_offset() > limit
                    || header.attributes & batch::CONTROL_ATTRIBUTE != 0
                    || aborted.holds(header)
                {
                    return;
                }
                for record in batch::records(bytes).unwrap_or_default() {
                    if let Some(key) = record.key {
                        latest.insert(key.to_vec(), record.offset);
                    }
                }
            })
            .map_err(io_context(|| format!("reading {}", segment.path.display())))?;
        }
        let tombstone_horizon = now_ms - self.config.delete_retention_ms;
        for i in 0..cleanable {
            let segment = &self.segments[i];
            let mut cleaned = Vec::with_capacity(segment.size as usize);
            let mut removed = 0u64;
            for_each_batch(segment, |bytes, header| {
                if header.attributes & batch::CONTROL_ATTRIBUTE != 0 || header.compression() != 0 {
                    cleaned.extend_from_slice(bytes);
                    return;
                }
                let Ok(records) = batch::records(bytes) else {
                    cleaned.extend_from_slice(bytes);
                    return;
                };
                let dropped = aborted.holds(header);
                let keep: Vec<std::ops::Range<usize>> = records
                    .iter()
                    .filter(|_| !dropped)
                    .filter(|r| match r.key {
                        None => true,
                        Some(key) => {
                            latest.get(key) == Some(&r.offset) && (r.value.is_some() || r.timestamp > tombstone_horizon)
                        }
                    })
                    .map(|r| r.raw.clone())
                    .collect();
                if keep.len() == records.len() {
                    cleaned.extend_from_slice(bytes);
                } else {
                    removed += (records.len() - keep.len()) as u64;
                    cleaned.extend_from_slice(&batch::retain_records(bytes, &keep));
                }
            })
            .map_err(io_context(|| format!("reading {}", segment.path.display())))?;
            if removed == 0 {
                continue;
            }
            outcome.segments += 1;
            outcome.records_removed += removed;
            outcome.bytes_before += segment.size;
            outcome.bytes_after += cleaned.len() as u64;
            let result = self.replace_segment(i, &cleaned);
            self.poison_on_error(result)?;
        }
        Ok(outcome)
    }

    /// Puts `bytes` in place of sealed segment `i` (crash-safe: write, sync, rename), and
    /// reopens it with new indexes.
    fn replace_segment(&mut self, i: usize, bytes: &[u8]) -> Result<(), LogError> {
        let base = self.segments[i].base_offset;
        let next_base = self.segments[i + 1].base_offset;
        let path = self.segments[i].path.clone();
        let cleaned_path = self.dir.join(file_name(base, CLEANED_SUFFIX));
        let cleaned = &cleaned_path;
        let context = |what: &'static str| io_context(move || format!("{what} {}", cleaned.display()));
        {
            let mut file = self.storage.open(&cleaned_path, FileKind::Index).map_err(context("creating"))?;
            file.set_len(0).map_err(context("truncating"))?;
            file.write_at(0, bytes).map_err(context("writing"))?;
            file.sync_data().map_err(context("syncing"))?;
        }
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let index = self.dir.join(file_name(base, suffix));
            if self.storage.exists(&index) {
                self.storage.remove(&index).map_err(io_context(|| format!("removing {}", index.display())))?;
            }
        }
        self.storage.rename(&cleaned_path, &path).map_err(context("renaming"))?;
        self.resize_transactions(base, next_base, self.segments[i].size, bytes.len() as u64)?;
        self.storage.sync_dir(&self.dir).map_err(io_context(|| format!("syncing {}", self.dir.display())))?;
        let mut report = RecoveryReport::default();
        let (segment, corruption) = self.open_segment(base, Some(next_base), &mut report)?;
        if let Some(corruption) = corruption {
            return Err(LogError::Io {
                context: format!("compacted segment {} does not read back: {corruption}", path.display()),
                source: io::Error::other("compaction"),
            });
        }
        self.segments[i] = segment;
        // Its batches moved: what `positions` says of them must not be read again (were a
        // truncation to make this segment the active one).
        self.positions.retain(|p| p.segment != base);
        Ok(())
    }
}
