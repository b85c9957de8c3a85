//! `Raft::peer_lost`: followers told that their leader's connection closed elect a new leader
//! within half an election timeout instead of waiting a whole one; a wrong hint to one follower
//! about a live leader changes nothing.

mod common;

use common::group::{Group, ELECTION_TICKS};

/// Ticks from the leader's crash to a new leader, with or without the hint.
fn failover_ticks(seed: u64, hint: bool) -> u32 {
    let mut group = Group::new(seed, false);
    group.ticks_to_leader();
    // Steady state: a few heartbeats, so every follower knows the leader.
    for _ in 0..4 {
        group.tick();
    }
    let old = group.leader().unwrap();
    group.down.push(old);
    if hint {
        for raft in group.nodes.iter_mut().filter(|(id, _)| **id != old).map(|(_, r)| r) {
            raft.peer_lost(old);
        }
    }
    let ticks = group.ticks_to_leader();
    assert_ne!(group.leader(), Some(old));
    ticks
}

#[test]
fn followers_told_their_leader_is_gone_elect_another_within_half_an_election_timeout() {
    let mut hinted = Vec::new();
    for seed in 1..=20 {
        let unhinted = failover_ticks(seed, false);
        assert!(unhinted >= ELECTION_TICKS, "seed {seed}: elected after {unhinted} ticks without the hint");
        hinted.push(failover_ticks(seed, true));
    }
    // The hinted wait is 1..=ELECTION_TICKS/2 ticks, and two followers standing in the same
    // tick do not split the vote (the lower id stands down).
    assert!(hinted.iter().all(|&t| t <= ELECTION_TICKS / 2), "failover ticks with the hint: {hinted:?}");
}

#[test]
fn a_wrong_hint_about_a_live_leader_changes_nothing() {
    let mut group = Group::new(7, false);
    group.ticks_to_leader();
    for _ in 0..4 {
        group.tick();
    }
    let leader = group.leader().unwrap();
    let term = group.nodes[&leader].term();
    // One follower's connection from the leader broke; the other still hears it.
    let follower = *group.nodes.keys().find(|&&id| id != leader).unwrap();
    group.nodes.get_mut(&follower).unwrap().peer_lost(leader);
    for _ in 0..3 * ELECTION_TICKS {
        group.tick();
    }
    assert_eq!(group.leader(), Some(leader));
    assert_eq!(group.nodes[&leader].term(), term, "the leader was never deposed");
}
