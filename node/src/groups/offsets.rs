//! Committed offsets, as applied from the partition's records: whether an OffsetCommit may add
//! to them, and what OffsetFetch and DeleteGroups read of them.

use super::{Coordinator, State};
use kafka_protocol::ResponseError;

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// Committed offsets by (topic, partition); None where nothing is committed.
pub type OffsetsOf = Vec<((String, i32), Option<Committed>)>;

impl Coordinator {
    /// Checks an offset commit: Ok if the records may be written.
    pub fn check_commit(
        &mut self,
        group: &str,
        generation: i32,
        member: (&str, Option<&str>),
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        self.restore(group, now_ms);
        match self.groups.get(group) {
            // A simple consumer (no group membership) commits with generation -1.
            None if generation < 0 => Ok(()),
            None => Err(ResponseError::IllegalGeneration),
            Some(g) if generation < 0 && g.state == State::Empty => Ok(()),
            Some(g) if generation < 0 => {
                let _ = g;
                Err(ResponseError::UnknownMemberId)
            }
            // While the generation is being replaced, its members still commit (what they
            // consumed before giving their partitions up); between join and sync they may not.
            Some(g) if g.state == State::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            Some(_) if crate::mutation::active(crate::mutation::Mutation::CommitsIgnoreGeneration) => Ok(()),
            Some(g) => g.check_member(member, generation),
        }
    }

    /// Checks an OffsetCommit, or a TxnOffsetCommit (`transactional`): one without member
    /// (before v3, as aiokafka and faust send it) is not checked against the group, as Kafka
    /// does for such clients.
    pub fn check_any_commit(
        &mut self,
        group: &str,
        generation: i32,
        member: (&str, Option<&str>),
        transactional: bool,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if transactional && generation < 0 && member.0.is_empty() {
            return Ok(());
        }
        self.check_commit(group, generation, member, now_ms)
    }

    /// Committed offsets of a group: the partitions asked for, or all.
    pub fn offsets(&self, group: &str, wanted: Option<&[(String, i32)]>) -> OffsetsOf {
        let committed = self.offsets.get(group);
        match wanted {
            Some(wanted) => wanted.iter().map(|k| (k.clone(), committed.and_then(|c| c.get(k)).cloned())).collect(),
            None => committed.into_iter().flatten().map(|(k, c)| (k.clone(), Some(c.clone()))).collect(),
        }
    }

    pub fn has_offsets(&self, group: &str) -> bool {
        self.offsets.contains_key(group)
    }

    /// A transaction's offset record (TxnOffsetCommit), committed in the log but held until the
    /// transaction's marker.
    pub fn apply_pending(&mut self, producer_id: i64, key: &[u8], value: Option<&[u8]>) {
        self.txn_offsets.entry(producer_id).or_default().push((key.to_vec(), value.map(<[u8]>::to_vec)));
    }

    /// A producer's transaction ended: its offsets apply if it committed.
    pub fn end_transaction(&mut self, producer_id: i64, commit: bool) {
        let Some(records) = self.txn_offsets.remove(&producer_id) else { return };
        if commit {
            for (key, value) in records {
                self.apply(&key, value.as_deref());
            }
        }
    }

    /// True if an open transaction holds an offset of the group for one of `partitions` (all if
    /// None): OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT then.
    pub fn unstable(&self, group: &str, partitions: Option<&[(String, i32)]>) -> bool {
        self.txn_offsets.values().flatten().any(|(key, _)| {
            super::decode_offset(key, None).is_some_and(|((g, topic, partition), _)| {
                g == group && partitions.is_none_or(|ps| ps.iter().any(|p| p.0 == topic && p.1 == partition))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::{decode_offset, offset_key, offset_value};

    #[test]
    fn offsets_round_trip_through_kafkas_record_layout() {
        let mut c = Coordinator::default();
        let committed = Committed { offset: 42, leader_epoch: 3, metadata: "m".into() };
        c.apply(&offset_key("g", "t", 1), Some(&offset_value(&committed, 5)));
        c.apply(&offset_key("g", "t", 2), Some(&offset_value(&committed, 5)));
        c.apply(&offset_key("g", "t", 2), None);
        let all = c.offsets("g", None);
        assert_eq!(all, vec![(("t".into(), 1), Some(committed))]);
        assert_eq!(c.offsets("g", Some(&[("t".into(), 2)])), vec![(("t".into(), 2), None)]);
        assert!(decode_offset(b"\x00\x02junk", None).is_none(), "group metadata records are skipped");
    }
}
