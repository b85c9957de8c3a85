//! Identifiers shared by the engine and the node, as types of their own so that one is never
//! taken for another number.
//!
//! A node has one id everywhere: its Kafka broker id, its ZooKeeper server id (`myid`) and its
//! raft id are the same [`NodeId`], a non-negative int32 as Kafka's wire carries it. The raft
//! wire carries it as a u64 (unchanged since the first version); a frame naming a larger one
//! is refused. A raft term is stamped into Kafka batches as their partition leader epoch (an
//! int32): [`leader_epoch`] converts, checked.

use std::fmt;

/// A node's id (see the module docs). Built only from a non-negative int32.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(i32);

impl NodeId {
    /// The id `id`, if it is one (non-negative).
    pub const fn new(id: i32) -> Option<NodeId> {
        if id >= 0 {
            Some(NodeId(id))
        } else {
            None
        }
    }

    /// The id as Kafka's and ZooKeeper's wire carry it.
    pub const fn get(self) -> i32 {
        self.0
    }

    /// The id from the raft wire's u64, if it is one.
    pub fn from_wire(id: u64) -> Option<NodeId> {
        i32::try_from(id).ok().and_then(NodeId::new)
    }

    /// The id as the raft wire carries it.
    pub const fn wire(self) -> u64 {
        self.0 as u64
    }
}

/// Small ids for tests and simulations (1, 2, 3 ...).
impl From<u8> for NodeId {
    fn from(id: u8) -> NodeId {
        NodeId(i32::from(id))
    }
}

/// Small ids (tests and simulations): `node_ids(&[1, 2, 3])`.
pub fn node_ids(ids: &[u8]) -> Vec<NodeId> {
    ids.iter().map(|&id| NodeId::from(id)).collect()
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The Kafka leader epoch of raft term `term`. Terms stay far below 2^31 (one per election);
/// one that did not would be a bug, and stops the caller rather than wrap.
pub fn leader_epoch(term: u64) -> i32 {
    i32::try_from(term).expect("raft terms stay below 2^31 (Kafka leader epochs are int32)")
}

/// The raft term of Kafka leader epoch `epoch` (a batch written before any election carries
/// -1 or 0: term 0).
pub fn term_of_epoch(epoch: i32) -> u64 {
    u64::try_from(epoch).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_convert_only_when_they_fit() {
        assert_eq!(NodeId::new(-1), None);
        assert_eq!(NodeId::new(7).map(NodeId::get), Some(7));
        assert_eq!(NodeId::from_wire(1 << 31), None);
        assert_eq!(NodeId::from_wire(3).map(NodeId::wire), Some(3));
        assert_eq!(format!("{:?} {}", NodeId::from(2u8), NodeId::from(2u8)), "2 2");
        assert_eq!(term_of_epoch(-1), 0);
        assert_eq!(leader_epoch(term_of_epoch(41)), 41);
    }

    #[test]
    #[should_panic(expected = "below 2^31")]
    fn a_term_past_an_int32_stops_rather_than_wraps() {
        leader_epoch(1 << 31);
    }
}
