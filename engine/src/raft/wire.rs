//! The node-to-node wire format of raft messages: one frame carries messages of many groups
//! (a partition's or the metadata log's), so the heartbeats of thousands of groups between two
//! nodes travel together.
//!
//! ```text
//! frame    : u32 length (bytes after it) | u16 version = 5 | u64 sender | u32 count | count × message
//! message  : group (16-byte topic id | i32 partition) | u64 from | u64 to | u64 term | u8 kind | body
//! bodies   : 1 PreVote      i64 last_end | u64 last_term | u8 knew_leader (version 5)
//!            2 PreVoteReply u8 granted | u8 knew_leader (version 5)
//!            3 Vote         i64 last_end | u64 last_term | u8 knew_leader (version 5)
//!            4 VoteReply    u8 granted | u8 knew_leader (version 5)
//!            5 Append       i64 prev_end | u64 prev_term | i64 commit | u32 n | n × (u32 len | batch)
//!            6 AppendReply  u8 accepted | i64 end
//!            7 Heartbeat    i64 commit | i64 sent_end
//!           13 Heartbeat, the leader going quiet: as 7
//!            8 HeartbeatReply i64 end | i64 sent_end
//!            9 Reset        i64 start | u64 start_term | u32 n | n × u64 voter
//!           10 Forward      u32 len | batch
//!           11 TimeoutNow
//!           12 Vote, asked for by a leader handing over: as 3
//!           14 SnapshotChunk u64 transfer | u64 offset | u64 total | u32 len | bytes (version 5)
//!           15 SnapshotAck   u64 transfer | u64 next (version 5)
//! ```
//! All integers big-endian. Decoding checks every length against what is left and against the
//! limits below, so any bytes at all give a frame or an error, never a panic or a huge
//! allocation.
//!
//! Entries are never copied on their way through: [`encode_frame_parts`] leaves large entries
//! as references to the leader's buffers for a vectored write, and [`decode_frame`] cuts the
//! received entries out of the frame's own buffer.

use super::{Body, Message, NodeId};
use crate::log::batch::BatchHeader;
use bytes::Bytes;
use std::io::IoSlice;
use std::ops::Range;

/// Version 2: heartbeats carry the end of the appends sent before them, and replies the
/// follower's log end. Version 3: a reset carries the term at the new log start. Version 4:
/// the frame names its sender (an empty frame is a node's liveness heartbeat), and heartbeats
/// may quiesce a group (kind 13). Version 5: vote requests say whether the candidate has heard
/// from a leader (`rejoin.rs`); version 4 frames are still read (their candidates count as
/// having heard one).
pub const WIRE_VERSION: u16 = 5;
/// Largest frame accepted.
pub const FRAME_MAX_BYTES: usize = 64 << 20;
/// Entries in one append, at most.
pub const ENTRIES_MAX: usize = 65_536;
/// Voters in one reset, at most.
pub const VOTERS_MAX: usize = 1024;
// A leader's largest append fits a frame with room to spare.
const _: () = assert!(super::APPEND_MAX_BYTES as usize <= FRAME_MAX_BYTES / 2);

/// Which raft group a message belongs to: a partition (topic id, partition) or, with the nil id
/// and partition -1, the metadata log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId {
    pub topic_id: u128,
    pub partition: i32,
}

impl GroupId {
    pub const METADATA: GroupId = GroupId { topic_id: 0, partition: -1 };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    Truncated { needed: usize, at: usize },
    TooLarge { what: &'static str, value: u64 },
    BadVersion(u16),
    BadKind(u8),
    BadEntry { at: usize },
    TrailingBytes(usize),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Truncated { needed, at } => write!(f, "truncated: {needed} more bytes needed at byte {at}"),
            WireError::TooLarge { what, value } => write!(f, "{what} of {value} is over the limit"),
            WireError::BadVersion(v) => write!(f, "unknown wire version {v}"),
            WireError::BadKind(k) => write!(f, "unknown message kind {k}"),
            WireError::BadEntry { at } => write!(f, "malformed entry at byte {at}"),
            WireError::TrailingBytes(n) => write!(f, "{n} bytes after the last message"),
        }
    }
}

impl std::error::Error for WireError {}

/// Entries at least this large go out from their own buffers ([`EncodedFrame`]); smaller
/// ones are copied in with the headers (cheaper than one more piece of a vectored write).
pub const SHARED_ENTRY_MIN_BYTES: usize = 16 << 10;

/// A frame as pieces to write in order: the headers (and small entries) copied into `head`,
/// large entries shared with the log that holds them.
#[derive(Debug, Default)]
pub struct EncodedFrame {
    pub head: Vec<u8>,
    pieces: Vec<Piece>,
}

#[derive(Debug)]
enum Piece {
    Head(Range<usize>),
    Shared(Bytes),
}

impl EncodedFrame {
    /// The pieces for a vectored write, in order.
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Head(r) => IoSlice::new(&self.head[r.clone()]),
                Piece::Shared(b) => IoSlice::new(b),
            })
            .collect()
    }

    /// The whole frame in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.io_slices().iter().flat_map(|s| s.iter().copied()).collect()
    }

    /// Ends the piece of `head` that began at `from`, then adds a shared entry.
    fn share(&mut self, from: &mut usize, entry: &Bytes) {
        self.pieces.push(Piece::Head(*from..self.head.len()));
        self.pieces.push(Piece::Shared(entry.clone()));
        *from = self.head.len();
    }
}

/// Encodes one frame (length prefix included) into one buffer; `sender` is this node.
pub fn encode_frame(sender: NodeId, messages: &[(GroupId, Message)]) -> Vec<u8> {
    let mut frame = EncodedFrame::default();
    encode_frame_parts(&mut frame, sender, messages);
    frame.to_vec()
}

/// Encodes one frame into `frame`, replacing what it held (a sender reuses one).
pub fn encode_frame_parts(frame: &mut EncodedFrame, sender: NodeId, messages: &[(GroupId, Message)]) {
    frame.pieces.clear();
    let mut from = 0;
    let mut shared_bytes = 0usize;
    frame.head.clear();
    frame.head.extend_from_slice(&[0u8; 4]);
    frame.head.extend_from_slice(&WIRE_VERSION.to_be_bytes());
    frame.head.extend_from_slice(&sender.wire().to_be_bytes());
    frame.head.extend_from_slice(&(messages.len() as u32).to_be_bytes());
    for (group, m) in messages {
        frame.head.extend_from_slice(&group.topic_id.to_be_bytes());
        frame.head.extend_from_slice(&group.partition.to_be_bytes());
        frame.head.extend_from_slice(&m.from.wire().to_be_bytes());
        frame.head.extend_from_slice(&m.to.wire().to_be_bytes());
        frame.head.extend_from_slice(&m.term.to_be_bytes());
        match &m.body {
            Body::PreVote { last_end, last_term, knew_leader }
            | Body::Vote { last_end, last_term, knew_leader, .. } => {
                frame.head.push(match m.body {
                    Body::PreVote { .. } => 1,
                    Body::Vote { transfer: false, .. } => 3,
                    _ => 12,
                });
                frame.head.extend_from_slice(&last_end.to_be_bytes());
                frame.head.extend_from_slice(&last_term.to_be_bytes());
                frame.head.push(u8::from(*knew_leader));
            }
            Body::PreVoteReply { granted, knew_leader } => {
                frame.head.extend_from_slice(&[2, u8::from(*granted), u8::from(*knew_leader)])
            }
            Body::VoteReply { granted, knew_leader } => {
                frame.head.extend_from_slice(&[4, u8::from(*granted), u8::from(*knew_leader)])
            }
            Body::Append { prev_end, prev_term, entries, commit } => {
                frame.head.push(5);
                frame.head.extend_from_slice(&prev_end.to_be_bytes());
                frame.head.extend_from_slice(&prev_term.to_be_bytes());
                frame.head.extend_from_slice(&commit.to_be_bytes());
                frame.head.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for entry in entries {
                    frame.head.extend_from_slice(&(entry.len() as u32).to_be_bytes());
                    if entry.len() >= SHARED_ENTRY_MIN_BYTES {
                        shared_bytes += entry.len();
                        frame.share(&mut from, entry);
                    } else {
                        frame.head.extend_from_slice(entry);
                    }
                }
            }
            Body::AppendReply { accepted, end } => {
                frame.head.extend_from_slice(&[6, u8::from(*accepted)]);
                frame.head.extend_from_slice(&end.to_be_bytes());
            }
            Body::Heartbeat { commit, sent_end, quiesce } => {
                frame.head.push(if *quiesce { 13 } else { 7 });
                frame.head.extend_from_slice(&commit.to_be_bytes());
                frame.head.extend_from_slice(&sent_end.to_be_bytes());
            }
            Body::HeartbeatReply { end, sent_end } => {
                frame.head.push(8);
                frame.head.extend_from_slice(&end.to_be_bytes());
                frame.head.extend_from_slice(&sent_end.to_be_bytes());
            }
            Body::Reset { start, start_term, voters } => {
                frame.head.push(9);
                frame.head.extend_from_slice(&start.to_be_bytes());
                frame.head.extend_from_slice(&start_term.to_be_bytes());
                frame.head.extend_from_slice(&(voters.len() as u32).to_be_bytes());
                for v in voters {
                    frame.head.extend_from_slice(&v.wire().to_be_bytes());
                }
            }
            Body::TimeoutNow => frame.head.push(11),
            Body::SnapshotChunk { transfer, offset, total, data } => {
                frame.head.push(14);
                for v in [transfer, offset, total] {
                    frame.head.extend_from_slice(&v.to_be_bytes());
                }
                frame.head.extend_from_slice(&(data.len() as u32).to_be_bytes());
                frame.head.extend_from_slice(data);
            }
            Body::SnapshotAck { transfer, next } => {
                frame.head.push(15);
                frame.head.extend_from_slice(&transfer.to_be_bytes());
                frame.head.extend_from_slice(&next.to_be_bytes());
            }
            Body::Forward { entry } => {
                frame.head.push(10);
                frame.head.extend_from_slice(&(entry.len() as u32).to_be_bytes());
                frame.head.extend_from_slice(entry);
            }
        }
    }
    frame.pieces.push(Piece::Head(from..frame.head.len()));
    let length = (frame.head.len() + shared_bytes - 4) as u32;
    frame.head[0..4].copy_from_slice(&length.to_be_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() - self.at < n {
            return Err(WireError::Truncated { needed: n - (self.bytes.len() - self.at), at: self.at });
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn flag(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::BadEntry { at: self.at - 1 }),
        }
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        Ok(self.u64()? as i64)
    }

    /// A node id (a u64 on the wire that must fit one).
    fn node_id(&mut self) -> Result<NodeId, WireError> {
        let id = self.u64()?;
        NodeId::from_wire(id).ok_or(WireError::TooLarge { what: "node id", value: id })
    }
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
}

/// The body length a frame announces, from its first 4 bytes; checked against the limit.
pub fn frame_length(prefix: [u8; 4]) -> Result<usize, WireError> {
    let length = u32::from_be_bytes(prefix) as usize;
    if length > FRAME_MAX_BYTES {
        return Err(WireError::TooLarge { what: "frame", value: length as u64 });
    }
    Ok(length)
}

/// A decoded frame: its sender and its messages.
pub type Frame = (NodeId, Vec<(GroupId, Message)>);

/// Decodes a frame's body (the bytes after its length prefix); entries share its buffer.
pub fn decode_frame(body: &Bytes) -> Result<Frame, WireError> {
    let mut r = Reader { bytes: body, at: 0 };
    let version = r.u16()?;
    if version != WIRE_VERSION && version != 4 {
        return Err(WireError::BadVersion(version));
    }
    let knew_leader = |r: &mut Reader| if version == 4 { Ok(true) } else { r.flag() };
    let sender = r.node_id()?;
    let count = r.u32()? as usize;
    // Every message takes at least 45 bytes: a count beyond that is a lie.
    if count > r.remaining() / 45 {
        return Err(WireError::TooLarge { what: "message count", value: count as u64 });
    }
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        let topic_id = u128::from_be_bytes(r.take(16)?.try_into().expect("16"));
        let partition = r.u32()? as i32;
        let (from, to, term) = (r.node_id()?, r.node_id()?, r.u64()?);
        let body = match r.u8()? {
            1 => Body::PreVote { last_end: r.i64()?, last_term: r.u64()?, knew_leader: knew_leader(&mut r)? },
            2 => Body::PreVoteReply { granted: r.flag()?, knew_leader: knew_leader(&mut r)? },
            3 => Body::Vote {
                last_end: r.i64()?,
                last_term: r.u64()?,
                knew_leader: knew_leader(&mut r)?,
                transfer: false,
            },
            12 => Body::Vote {
                last_end: r.i64()?,
                last_term: r.u64()?,
                knew_leader: knew_leader(&mut r)?,
                transfer: true,
            },
            11 => Body::TimeoutNow,
            14 => {
                let (transfer, offset, total) = (r.u64()?, r.u64()?, r.u64()?);
                let len = r.u32()? as usize;
                let at = r.at;
                r.take(len)?;
                Body::SnapshotChunk { transfer, offset, total, data: body.slice(at..at + len) }
            }
            15 => Body::SnapshotAck { transfer: r.u64()?, next: r.u64()? },
            4 => Body::VoteReply { granted: r.flag()?, knew_leader: knew_leader(&mut r)? },
            5 => {
                let (prev_end, prev_term, commit) = (r.i64()?, r.u64()?, r.i64()?);
                let n = r.u32()? as usize;
                if n > ENTRIES_MAX || n > r.remaining() / 4 {
                    return Err(WireError::TooLarge { what: "entry count", value: n as u64 });
                }
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = r.u32()? as usize;
                    let at = r.at;
                    let entry = r.take(len)?;
                    match BatchHeader::parse(entry) {
                        Ok(h) if h.total_bytes() == len => entries.push(body.slice(at..at + len)),
                        _ => return Err(WireError::BadEntry { at }),
                    }
                }
                Body::Append { prev_end, prev_term, entries, commit }
            }
            6 => Body::AppendReply { accepted: r.flag()?, end: r.i64()? },
            7 => Body::Heartbeat { commit: r.i64()?, sent_end: r.i64()?, quiesce: false },
            13 => Body::Heartbeat { commit: r.i64()?, sent_end: r.i64()?, quiesce: true },
            8 => Body::HeartbeatReply { end: r.i64()?, sent_end: r.i64()? },
            9 => {
                let start = r.i64()?;
                let start_term = r.u64()?;
                let n = r.u32()? as usize;
                if n > VOTERS_MAX {
                    return Err(WireError::TooLarge { what: "voters", value: n as u64 });
                }
                let mut voters = Vec::with_capacity(n);
                for _ in 0..n {
                    voters.push(r.node_id()?);
                }
                Body::Reset { start, start_term, voters }
            }
            10 => {
                let len = r.u32()? as usize;
                let at = r.at;
                let entry = r.take(len)?;
                match BatchHeader::parse(entry) {
                    Ok(h) if h.total_bytes() == len => Body::Forward { entry: body.slice(at..at + len) },
                    _ => return Err(WireError::BadEntry { at }),
                }
            }
            kind => return Err(WireError::BadKind(kind)),
        };
        messages.push((GroupId { topic_id, partition }, Message { from, to, term, body }));
    }
    if r.remaining() != 0 {
        return Err(WireError::TrailingBytes(r.remaining()));
    }
    Ok((sender, messages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::build_batch;
    use crate::rng::SimRng;

    fn sample() -> Vec<(GroupId, Message)> {
        let group = GroupId { topic_id: 0x1234_5678_9abc_def0_1122_3344_5566_7788, partition: 7 };
        let m = |body| Message { from: NodeId::from(1), to: NodeId::from(2), term: 9, body };
        vec![
            (GroupId::METADATA, m(Body::PreVote { last_end: 10, last_term: 3, knew_leader: true })),
            (group, m(Body::PreVoteReply { granted: true, knew_leader: false })),
            (group, m(Body::Vote { last_end: -1, last_term: 0, knew_leader: false, transfer: false })),
            (group, m(Body::Vote { last_end: 7, last_term: 2, knew_leader: true, transfer: true })),
            (group, m(Body::TimeoutNow)),
            (group, m(Body::SnapshotChunk { transfer: 9, offset: 4, total: 10, data: Bytes::from_static(b"snap") })),
            (group, m(Body::SnapshotAck { transfer: 9, next: 8 })),
            (group, m(Body::VoteReply { granted: false, knew_leader: true })),
            (
                group,
                m(Body::Append {
                    prev_end: 5,
                    prev_term: 2,
                    entries: vec![build_batch(1, &[b"a"]).into(), build_batch(2, &[b"bc", b"d"]).into()],
                    commit: 4,
                }),
            ),
            (group, m(Body::AppendReply { accepted: true, end: 8 })),
            (group, m(Body::Heartbeat { commit: 8, sent_end: 12, quiesce: false })),
            (group, m(Body::Heartbeat { commit: 12, sent_end: 12, quiesce: true })),
            (group, m(Body::HeartbeatReply { end: 10, sent_end: 12 })),
            (group, m(Body::Reset { start: 100, start_term: 7, voters: crate::ids::node_ids(&[1, 2, 3]) })),
            (group, m(Body::Forward { entry: crate::log::batch::build_batch(5, &[b"forwarded"]).into() })),
        ]
    }

    #[test]
    fn frames_round_trip() {
        let messages = sample();
        let frame = encode_frame(NodeId::from(1), &messages);
        let length = frame_length(frame[0..4].try_into().unwrap()).unwrap();
        assert_eq!(length, frame.len() - 4);
        assert_eq!(decode_frame(&Bytes::copy_from_slice(&frame[4..])).unwrap(), (NodeId::from(1), messages));
        // An empty frame still names its sender: a node's liveness heartbeat.
        assert_eq!(
            decode_frame(&Bytes::copy_from_slice(&encode_frame(NodeId::from(7), &[])[4..])).unwrap(),
            (NodeId::from(7), vec![])
        );
    }

    #[test]
    fn large_entries_leave_from_their_own_buffers_and_arrive_in_the_frames() {
        let big = Bytes::from(build_batch(3, &[&vec![7u8; 100_000][..]]));
        let small = Bytes::from(build_batch(1, &[b"a"]));
        let group = GroupId { topic_id: 1, partition: 0 };
        let body =
            Body::Append { prev_end: 0, prev_term: 0, entries: vec![small, big.clone(), big.clone()], commit: 0 };
        let messages = vec![
            (group, Message { from: NodeId::from(1), to: NodeId::from(2), term: 1, body }),
            (group, sample().remove(8).1),
        ];
        let mut frame = EncodedFrame::default();
        encode_frame_parts(&mut frame, NodeId::from(1), &messages);
        let slices = frame.io_slices();
        assert_eq!(slices.len(), 5, "head, big, head, big, head");
        assert_eq!(slices[1].as_ptr(), big.as_ptr(), "the entry is not copied");
        assert!(frame.head.len() < 1000, "only headers and the small entry are copied");
        let bytes = frame.to_vec();
        assert_eq!(frame_length(bytes[0..4].try_into().unwrap()).unwrap(), bytes.len() - 4);
        let received = Bytes::from(bytes);
        let (_, decoded) = decode_frame(&received.slice(4..)).unwrap();
        assert_eq!(decoded, messages);
        let Body::Append { entries, .. } = &decoded[0].1.body else { panic!() };
        let within = received.as_ptr_range();
        assert!(within.contains(&entries[1].as_ptr()), "decoded entries share the frame's buffer");
    }

    #[test]
    fn any_cut_or_bit_flip_is_an_error_or_a_frame_never_a_panic() {
        let frame = encode_frame(NodeId::from(1), &sample());
        for cut in 0..frame.len() - 4 {
            assert!(decode_frame(&Bytes::copy_from_slice(&frame[4..4 + cut])).is_err(), "cut at {cut}");
        }
        let mut rng = SimRng::new(5);
        for _ in 0..20_000 {
            let mut bytes = frame[4..].to_vec();
            for _ in 0..=rng.below(3) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            if let Ok((sender, messages)) = decode_frame(&Bytes::from(bytes.clone())) {
                assert_eq!(encode_frame(sender, &messages)[4..], bytes[..], "decode then encode is the identity");
            }
        }
        assert!(matches!(
            decode_frame(&Bytes::from_static(&[0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff])),
            Err(WireError::TooLarge { .. })
        ));
        assert!(frame_length([0xff; 4]).is_err());
    }
}
