//! What the raft core needs of a log, and its implementation on the partition [`Log`].
//!
//! Entries are Kafka batches: an entry spans offsets `[base, end)`, its term is the batch's
//! partitionLeaderEpoch, and raft positions are batch boundaries (end offsets). So raft index =
//! Kafka offset, and the commit index is the high watermark.

use crate::ids::{leader_epoch as epoch_from_term, term_of_epoch as term_from_epoch, NodeId};
use crate::io::Storage;
use crate::log::batch::{self, BatchHeader};
use crate::log::{Log, LogError};
use bytes::Bytes;

pub type Term = u64;

/// The log as the raft core sees it. Terms and boundaries are known for every appended entry;
/// `entries_from` returns an appended entry once it is written to the file or while the recent
/// batches hold it (appends wait in the log's tail for the persist round's write, so a leader
/// without recent batches sends them after that round); durability is `durable_end`.
pub trait RaftLog {
    /// Offset where the log starts (the end of the empty prefix).
    fn start(&self) -> i64;
    /// End offset of the last entry and its term (`(start, 0)` when empty).
    fn last(&self) -> (i64, Term);
    /// End offset of the last entry, without its term (cheaper where the term takes a lookup).
    fn end(&self) -> i64 {
        self.last().0
    }
    /// False once the log failed and refuses every call until reopened: what it says of its
    /// bounds and terms then proves nothing (the raft invariants skip it).
    fn usable(&self) -> bool {
        true
    }
    /// The term of the entry ending exactly at `end`; `Some(0)` for `end == start()`; None if
    /// no entry ends there.
    fn term_at(&self, end: i64) -> Option<Term>;
    /// Start offset of the entry ending at `end` (the previous boundary).
    fn boundary_before(&self, end: i64) -> Option<i64>;
    /// The greatest entry boundary at or below `end` in this log (`end` itself if an entry
    /// ends there, the log start at the least); None past the log end.
    fn boundary_at_or_below(&self, end: i64) -> Option<i64>;
    /// Whole entries starting at boundary `from`, up to about `max_bytes` (at least one).
    fn entries_from(&self, from: i64, max_bytes: u64) -> Vec<Bytes>;
    /// Appends a new entry in `term` (leader); returns its end offset.
    fn append_new(&mut self, entry: &[u8], term: Term) -> Result<i64, LogError>;
    /// Appends several new entries in `term`, all or none; returns each one's (base, end).
    fn append_new_all(&mut self, entries: &[&[u8]], term: Term) -> Result<Vec<(i64, i64)>, LogError>;
    /// Appends an entry copied from the leader; its base offset must be the log end.
    fn append_copy(&mut self, entry: &Bytes) -> Result<i64, LogError>;
    /// Entries ending at or before `end` will not be sent again soon (every follower has them,
    /// or they are committed): a log that keeps recent entries in memory may let them go.
    fn release_before(&mut self, end: i64);
    /// Removes every entry ending after `end` (a boundary).
    fn truncate(&mut self, end: i64) -> Result<(), LogError>;
    /// Drops the whole log and starts it empty at `start` (catch-up past a leader's deleted
    /// prefix, which is committed by construction).
    fn reset(&mut self, start: i64) -> Result<(), LogError>;
    /// Everything up to here survived an fdatasync.
    fn durable_end(&self) -> i64;
    /// The entry a new leader appends to commit its term (Kafka: a control batch).
    fn leader_marker(&self, term: Term) -> Vec<u8>;
    /// The entry that makes `voters` the group's configuration.
    fn config_entry(&self, term: Term, voters: &[NodeId]) -> Vec<u8>;
    /// The voters an entry sets, if it is a configuration entry.
    fn entry_voters(&self, entry: &[u8]) -> Option<Vec<NodeId>>;
}

/// Control record key of a configuration entry: version 0, type 6 (Kafka's KRaft voters).
const VOTERS_KEY: [u8; 4] = [0, 0, 0, 6];

/// Term and end offset of an entry from its bytes.
pub fn entry_position(entry: &[u8]) -> Option<(i64, i64, Term)> {
    let header = BatchHeader::parse(entry).ok()?;
    Some((header.base_offset, header.next_offset(), term_from_epoch(header.partition_leader_epoch)))
}

impl<S: Storage> RaftLog for Log<S> {
    fn start(&self) -> i64 {
        self.log_start_offset()
    }

    fn last(&self) -> (i64, Term) {
        let end = self.log_end_offset();
        (end, self.term_at(end).unwrap_or(0))
    }

    fn end(&self) -> i64 {
        self.log_end_offset()
    }

    fn usable(&self) -> bool {
        !self.is_poisoned()
    }

    fn term_at(&self, end: i64) -> Option<Term> {
        if end == self.log_start_offset() {
            return Some(0);
        }
        self.epoch_of_batch_ending_at(end).ok().flatten().map(term_from_epoch)
    }

    fn boundary_at_or_below(&self, end: i64) -> Option<i64> {
        let start = self.log_start_offset();
        if end <= start || end > self.log_end_offset() {
            return (end == start).then_some(start);
        }
        match self.batch_holding(end - 1).ok().flatten() {
            Some(span) if span.next_offset == end => Some(end),
            Some(span) => Some(span.base_offset.max(start)),
            None => None,
        }
    }

    fn boundary_before(&self, end: i64) -> Option<i64> {
        if end <= self.log_start_offset() {
            return None;
        }
        self.base_of_batch_ending_at(end).ok().flatten()
    }

    /// From the recent batches if they still hold `from` (shared buffers, no copy); else one
    /// read from the segment, shared by the entries cut from it.
    fn entries_from(&self, from: i64, max_bytes: u64) -> Vec<Bytes> {
        if let Some(entries) = self.recent_from(from, max_bytes) {
            return entries;
        }
        let Ok(Some(slice)) = self.read(from, max_bytes, None) else { return Vec::new() };
        if slice.first_offset != from {
            return Vec::new();
        }
        let Ok(bytes) = self.read_bytes(&slice) else { return Vec::new() };
        let bytes = Bytes::from(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let Ok(header) = BatchHeader::parse(&bytes[at..]) else { break };
            let end = (at + header.total_bytes()).min(bytes.len());
            out.push(bytes.slice(at..end));
            at = end;
        }
        out
    }

    fn release_before(&mut self, end: i64) {
        self.release_recent_before(end);
    }

    fn append_new(&mut self, entry: &[u8], term: Term) -> Result<i64, LogError> {
        let info = self.append(entry, epoch_from_term(term))?;
        Ok(info.last_offset + 1)
    }

    fn append_new_all(&mut self, entries: &[&[u8]], term: Term) -> Result<Vec<(i64, i64)>, LogError> {
        let infos = self.append_all(entries, epoch_from_term(term))?;
        Ok(infos.iter().map(|info| (info.base_offset, info.last_offset + 1)).collect())
    }

    fn append_copy(&mut self, entry: &Bytes) -> Result<i64, LogError> {
        let info = self.append_replicated(entry)?;
        Ok(info.last_offset + 1)
    }

    fn truncate(&mut self, end: i64) -> Result<(), LogError> {
        let new_end = self.truncate_to(end)?;
        assert_eq!(new_end, end, "raft truncates at entry boundaries only");
        Ok(())
    }

    fn reset(&mut self, start: i64) -> Result<(), LogError> {
        self.reset_to(start)
    }

    fn durable_end(&self) -> i64 {
        self.durable_offset()
    }

    fn config_entry(&self, term: Term, voters: &[NodeId]) -> Vec<u8> {
        let value: Vec<u8> = voters.iter().flat_map(|v| v.wire().to_be_bytes()).collect();
        let mut entry = batch::build_control_batch_with_value(&VOTERS_KEY, Some(&value));
        batch::stamp(&mut entry, 0, epoch_from_term(term));
        entry
    }

    fn entry_voters(&self, entry: &[u8]) -> Option<Vec<NodeId>> {
        let header = BatchHeader::parse(entry).ok()?;
        if header.attributes & batch::CONTROL_ATTRIBUTE == 0 || header.record_count != 1 {
            return None;
        }
        let record = batch::records(entry).ok()?.into_iter().next()?;
        if record.key != Some(&VOTERS_KEY[..]) {
            return None;
        }
        let value = record.value?;
        if value.is_empty() || value.len() % 8 != 0 {
            return None;
        }
        value.chunks_exact(8).map(|c| NodeId::from_wire(u64::from_be_bytes(c.try_into().expect("8 bytes")))).collect()
    }

    fn leader_marker(&self, term: Term) -> Vec<u8> {
        // A control batch (attributes bit 5) with one LEADER_CHANGE record (key: version 0,
        // type 2); consumers skip control batches.
        let mut marker = batch::build_control_batch(&[0, 0, 0, 2]);
        batch::stamp(&mut marker, 0, epoch_from_term(term));
        marker
    }
}
