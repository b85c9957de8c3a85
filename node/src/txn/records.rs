//! The records of a `__transaction_state` partition, in Kafka's own layout: key version 0 (the
//! transactional id), value version 0 (producer id and epoch, timeout, state, the partitions in
//! the transaction by topic, last update and start times). A null value deletes (an expired id).

use super::{TxnMeta, TxnState};
use crate::groups::{get_string, put_string};
use bytes::{Buf, BufMut};
use std::collections::BTreeSet;

/// Key of a transactional id's record.
pub fn txn_key(id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(0);
    put_string(&mut out, id);
    out
}

/// The transactional id of a key (None: not a transaction record).
pub fn decode_key(key: &[u8]) -> Option<String> {
    let mut b = key;
    if b.remaining() < 2 || b.get_i16() != 0 {
        return None;
    }
    get_string(&mut b)
}

/// Value of a transactional id's record.
pub fn txn_value(m: &TxnMeta) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(0);
    out.put_i64(m.producer_id);
    out.put_i16(m.epoch);
    out.put_i32(m.timeout_ms);
    out.put_i8(m.state as i8);
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &m.partitions {
        match topics.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
            _ => topics.push((topic, vec![*partition])),
        }
    }
    out.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        put_string(&mut out, topic);
        out.put_i32(partitions.len() as i32);
        for p in partitions {
            out.put_i32(p);
        }
    }
    out.put_i64(m.update_ms);
    out.put_i64(m.start_ms);
    out
}

/// Decodes a value (None: malformed or of an unknown version).
pub fn decode_value(value: &[u8]) -> Option<TxnMeta> {
    let mut b = value;
    if b.remaining() < 2 + 8 + 2 + 4 + 1 + 4 || b.get_i16() != 0 {
        return None;
    }
    let producer_id = b.get_i64();
    let epoch = b.get_i16();
    let timeout_ms = b.get_i32();
    let state = TxnState::from_code(b.get_i8())?;
    let topics = b.get_i32();
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = get_string(&mut b)?;
        if b.remaining() < 4 {
            return None;
        }
        let count = b.get_i32();
        if b.remaining() < 4 * count.max(0) as usize {
            return None;
        }
        for _ in 0..count.max(0) {
            partitions.insert((topic.clone(), b.get_i32()));
        }
    }
    if b.remaining() < 16 {
        return None;
    }
    let update_ms = b.get_i64();
    let start_ms = b.get_i64();
    Some(TxnMeta { producer_id, epoch, timeout_ms, state, partitions, update_ms, start_ms, pending: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_round_trips_through_kafkas_record_layout() {
        let mut partitions = BTreeSet::new();
        partitions.insert(("a".to_owned(), 0));
        partitions.insert(("a".to_owned(), 3));
        partitions.insert(("b".to_owned(), 1));
        let m = TxnMeta {
            producer_id: 7,
            epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions,
            update_ms: 12,
            start_ms: 10,
            pending: 0,
        };
        assert_eq!(decode_value(&txn_value(&m)), Some(m));
        assert_eq!(decode_key(&txn_key("tx-1")).as_deref(), Some("tx-1"));
        assert_eq!(decode_value(&txn_value(&TxnMeta::default())[..10]), None, "truncated");
    }
}
