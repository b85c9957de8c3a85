//! The records of an offsets partition, in Kafka's own key/value layout: an offset under key
//! version 1 (value version 3), a group under key version 2 (value version 3). Decoding also
//! reads the older value versions Kafka wrote.

use super::Committed;
use bytes::{Buf, BufMut, Bytes};

/// Key of an offset record (Kafka's version 1).
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(1);
    put_string(&mut out, group);
    put_string(&mut out, topic);
    out.put_i32(partition);
    out
}

/// Value of an offset record (Kafka's version 3).
pub fn offset_value(c: &Committed, now_ms: i64) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(3);
    out.put_i64(c.offset);
    out.put_i32(c.leader_epoch);
    put_string(&mut out, &c.metadata);
    out.put_i64(now_ms);
    out
}

pub(crate) fn put_string(out: &mut Vec<u8>, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

pub(crate) fn get_string(b: &mut &[u8]) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let len = b.get_i16();
    let len = usize::try_from(len).ok()?;
    if b.remaining() < len {
        return None;
    }
    let s = String::from_utf8(b[..len].to_vec()).ok()?;
    b.advance(len);
    Some(s)
}

fn put_nullable(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, s),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

fn get_nullable(b: &mut &[u8]) -> Option<Option<String>> {
    if b.remaining() >= 2 && i16::from_be_bytes([b[0], b[1]]) == -1 {
        b.advance(2);
        return Some(None);
    }
    get_string(b).map(Some)
}

fn get_bytes(b: &mut &[u8]) -> Option<Bytes> {
    if b.remaining() < 4 {
        return None;
    }
    let len = usize::try_from(b.get_i32()).ok()?;
    if b.remaining() < len {
        return None;
    }
    let out = Bytes::copy_from_slice(&b[..len]);
    b.advance(len);
    Some(out)
}

/// Key of a group record (Kafka's version 2).
pub fn group_key(group: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(2);
    put_string(&mut out, group);
    out
}

/// A group as stored: what a new coordinator needs to go on with the same generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: String,
    pub leader: String,
    /// member id, instance id, client id, client host, rebalance and session timeouts,
    /// subscription (the chosen protocol's metadata), assignment.
    pub members: Vec<StoredMember>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Value of a group record (Kafka's version 3).
pub fn group_value(g: &StoredGroup, now_ms: i64) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(3);
    put_string(&mut out, &g.protocol_type);
    out.put_i32(g.generation);
    put_nullable(&mut out, (!g.protocol.is_empty()).then_some(g.protocol.as_str()));
    put_nullable(&mut out, (!g.leader.is_empty()).then_some(g.leader.as_str()));
    out.put_i64(now_ms);
    out.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_string(&mut out, &m.member_id);
        put_nullable(&mut out, m.instance_id.as_deref());
        put_string(&mut out, &m.client_id);
        put_string(&mut out, &m.client_host);
        out.put_i32(m.rebalance_timeout_ms);
        out.put_i32(m.session_timeout_ms);
        put_bytes(&mut out, &m.subscription);
        put_bytes(&mut out, &m.assignment);
    }
    out
}

/// Decodes a group record's value (versions 1 to 3).
pub fn decode_group(value: &[u8]) -> Option<StoredGroup> {
    let mut v = value;
    if v.remaining() < 2 {
        return None;
    }
    let version = v.get_i16();
    let protocol_type = get_string(&mut v)?;
    if v.remaining() < 4 {
        return None;
    }
    let generation = v.get_i32();
    let protocol = get_nullable(&mut v)?.unwrap_or_default();
    let leader = get_nullable(&mut v)?.unwrap_or_default();
    if version >= 2 {
        if v.remaining() < 8 {
            return None;
        }
        v.get_i64();
    }
    if v.remaining() < 4 {
        return None;
    }
    let count = usize::try_from(v.get_i32()).ok()?;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let member_id = get_string(&mut v)?;
        let instance_id = if version >= 3 { get_nullable(&mut v)? } else { None };
        let client_id = get_string(&mut v)?;
        let client_host = get_string(&mut v)?;
        if v.remaining() < 8 {
            return None;
        }
        let rebalance_timeout_ms = v.get_i32();
        let session_timeout_ms = v.get_i32();
        let subscription = get_bytes(&mut v)?;
        let assignment = get_bytes(&mut v)?;
        members.push(StoredMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(StoredGroup { protocol_type, generation, protocol, leader, members })
}

/// Decodes an offset record: (group, topic, partition) and the offset (None: deleted).
/// Records of other kinds (Kafka's group metadata, key version 2) are skipped.
pub fn decode_offset(key: &[u8], value: Option<&[u8]>) -> Option<((String, String, i32), Option<Committed>)> {
    let mut k = key;
    if k.remaining() < 2 || !matches!(k.get_i16(), 0 | 1) {
        return None;
    }
    let group = get_string(&mut k)?;
    let topic = get_string(&mut k)?;
    if k.remaining() < 4 {
        return None;
    }
    let partition = k.get_i32();
    let Some(mut v) = value else { return Some(((group, topic, partition), None)) };
    if v.remaining() < 10 {
        return None;
    }
    let version = v.get_i16();
    let offset = v.get_i64();
    let leader_epoch = if version >= 3 && v.remaining() >= 4 { v.get_i32() } else { -1 };
    let metadata = get_string(&mut v).unwrap_or_default();
    Some(((group, topic, partition), Some(Committed { offset, leader_epoch, metadata })))
}
