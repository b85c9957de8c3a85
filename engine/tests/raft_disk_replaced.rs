//! A replica whose disk was replaced (`engine/src/raft/rejoin.rs`): started again under its id
//! with an empty log and no hard state, it votes for no one and never stands until it holds
//! what the group had committed, so an entry committed with its lost acknowledgement is never
//! lost; once caught up it is an ordinary voter again. A new group still elects as ever.

mod common;

use braid_engine::raft::{NodeId, Role};
use common::batch;
use common::group::{Group, ELECTION_TICKS};

/// The entries of `node`'s log, by end offset.
fn holds(group: &Group, node: NodeId, end: i64) -> bool {
    let raft = &group.nodes[&node];
    raft.log().log_end_offset() >= end && raft.committed() >= end
}

/// An entry is committed by the leader and one follower while the third is away; then the
/// leader goes down and the follower's disk is replaced. The replaced replica must not elect
/// the third (which lacks the entry): no leader until the old leader is back, and the entry
/// survives. Before `rejoin.rs`, the two elected a leader and the entry was lost.
#[test]
fn a_replica_with_a_replaced_disk_elects_no_one_who_lacks_what_it_acknowledged() {
    for seed in 1..=20u64 {
        let mut group = Group::new(seed, false);
        group.ticks_to_leader();
        let leader = group.leader().unwrap();
        let others: Vec<NodeId> = group.nodes.keys().copied().filter(|n| *n != leader).collect();
        let (behind, witness) = (others[0], others[1]);
        group.down.push(behind);
        let end = group.nodes.get_mut(&leader).unwrap().propose(&batch(seed, 2, 0)).unwrap();
        for _ in 0..3 {
            group.tick();
        }
        assert!(holds(&group, leader, end) && holds(&group, witness, end), "seed {seed}: committed by two");
        // The leader goes down; the witness's disk is replaced; the one behind comes back.
        group.down = vec![leader];
        group.restart_wiped(witness, seed + 1000);
        for _ in 0..10 * ELECTION_TICKS {
            group.tick();
            assert_eq!(group.leader(), None, "seed {seed}: a leader without the committed entry");
        }
        assert!(group.nodes[&witness].rejoining(), "seed {seed}: the replaced replica knows it rejoins");
        // The old leader returns: the entry is elected with it and reaches everyone.
        group.down.clear();
        group.ticks_to_leader();
        for _ in 0..3 * ELECTION_TICKS {
            group.tick();
        }
        for node in [leader, behind, witness] {
            assert!(holds(&group, node, end), "seed {seed}: node {node} lacks the committed entry");
        }
        assert!(!group.nodes[&witness].rejoining(), "seed {seed}: caught up, it votes again");
    }
}

/// A replaced replica catches up from a live leader and then counts as a voter: with the
/// leader down afterwards, it and the third elect a leader that holds everything committed.
#[test]
fn a_replaced_replica_that_caught_up_votes_again() {
    for seed in 1..=20u64 {
        let mut group = Group::new(seed, false);
        group.ticks_to_leader();
        let leader = group.leader().unwrap();
        let first = group.nodes.get_mut(&leader).unwrap().propose(&batch(seed, 1, 0)).unwrap();
        for _ in 0..3 {
            group.tick();
        }
        let replaced = *group.nodes.keys().find(|n| **n != leader).unwrap();
        group.restart_wiped(replaced, seed + 2000);
        for _ in 0..2 * ELECTION_TICKS {
            group.tick();
        }
        assert_eq!(group.leader(), Some(leader), "seed {seed}: the rejoining replica deposed no one");
        assert!(holds(&group, replaced, first), "seed {seed}: caught up");
        assert!(!group.nodes[&replaced].rejoining(), "seed {seed}");
        let second = group.nodes.get_mut(&leader).unwrap().propose(&batch(seed + 1, 1, 0)).unwrap();
        for _ in 0..3 {
            group.tick();
        }
        group.down.push(leader);
        let ticks = group.ticks_to_leader();
        assert!(ticks <= 10 * ELECTION_TICKS);
        let new_leader = group.leader().unwrap();
        assert!(holds(&group, new_leader, second), "seed {seed}: the new leader holds everything committed");
        assert_eq!(group.nodes[&new_leader].role(), Role::Leader);
    }
}

/// A replica that lost its disk while its group had never committed anything (a new group)
/// votes at once: fresh replicas of a new group elect as ever.
#[test]
fn fresh_replicas_of_a_new_group_elect_at_once() {
    for seed in 1..=20u64 {
        let mut group = Group::new(seed, false);
        let ticks = group.ticks_to_leader();
        assert!(ticks <= 4 * ELECTION_TICKS, "seed {seed}: {ticks} ticks");
        assert!(group.nodes.values().all(|r| !r.rejoining()), "seed {seed}");
    }
}
