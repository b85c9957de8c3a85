//! Quiescence (`engine/src/raft/quiesce.rs`): an idle group goes quiet and exchanges no
//! messages; a proposal wakes it; the loss of its leader is found through the driver's
//! liveness news within half an election timeout; a lost quiescing heartbeat or an unreachable
//! follower does not keep it awake for long, and never deposes a live leader.

mod common;

use braid_engine::raft::Role;
use common::batch;
use common::group::{Group, ELECTION_TICKS};

/// A group with a leader, a committed entry, and enough ticks to go quiet.
fn quiet_group(seed: u64) -> Group {
    let mut group = Group::new(seed, true);
    group.ticks_to_leader();
    let leader = group.leader().unwrap();
    group.nodes.get_mut(&leader).unwrap().propose(&batch(1, 1, 0)).unwrap();
    // Three idle heartbeats (two ticks each), and the round trips to the followers.
    let ticks = group.ticks_to_quiet();
    assert!(ticks <= 4 * 2 + 2, "seed {seed}: quiet only after {ticks} ticks");
    group
}

#[test]
fn an_idle_group_goes_quiet_sends_nothing_and_a_proposal_wakes_it() {
    for seed in 1..=10 {
        let mut group = quiet_group(seed);
        let leader = group.leader().unwrap();
        let term = group.nodes[&leader].term();
        let before = group.delivered;
        for _ in 0..20 * ELECTION_TICKS {
            group.tick();
        }
        assert_eq!(group.delivered, before, "seed {seed}: a quiet group sent messages");
        assert_eq!((group.leader(), group.nodes[&leader].term()), (Some(leader), term));
        // A proposal commits on every node and the group goes quiet again.
        let end = group.nodes.get_mut(&leader).unwrap().propose(&batch(2, 3, 0)).unwrap();
        group.tick();
        assert!(!group.all_quiet(), "seed {seed}: a proposal wakes the group");
        group.ticks_to_quiet();
        for (id, raft) in &group.nodes {
            assert_eq!(raft.committed(), end, "seed {seed}: node {id} did not learn the commit");
        }
    }
}

#[test]
fn a_quiet_groups_lost_leader_is_replaced_within_half_an_election_timeout_of_the_news() {
    for seed in 1..=10 {
        let mut group = quiet_group(seed);
        let old = group.leader().unwrap();
        group.down.push(old);
        // Quiet followers trust their leader until the driver says it is lost...
        for _ in 0..5 * ELECTION_TICKS {
            group.tick();
        }
        assert_eq!(group.leader(), None, "seed {seed}: no news, no election");
        // ...and elect another soon after it does.
        group.report_lost(old);
        let ticks = group.ticks_to_leader();
        assert!(ticks <= ELECTION_TICKS / 2, "seed {seed}: {ticks} ticks after the news");
        assert_ne!(group.leader(), Some(old));
    }
}

#[test]
fn a_lost_quiescing_heartbeat_wakes_the_leader_through_the_followers_pre_vote_and_all_go_quiet_again() {
    for seed in 1..=10 {
        let mut group = Group::new(seed, true);
        group.ticks_to_leader();
        let leader = group.leader().unwrap();
        let follower = *group.nodes.keys().find(|&&id| id != leader).unwrap();
        // The first quiescing heartbeats to `follower` are lost: it stays awake.
        let lost = std::rc::Rc::new(std::cell::Cell::new(0));
        let counter = std::rc::Rc::clone(&lost);
        group.deliver_if = Box::new(move |m| {
            let quiescing = matches!(m.body, braid_engine::raft::Body::Heartbeat { quiesce: true, .. });
            if quiescing && m.to == follower && counter.get() < 1 {
                counter.set(counter.get() + 1);
                return false;
            }
            true
        });
        for _ in 0..10 {
            group.tick();
        }
        assert_eq!(lost.get(), 1, "seed {seed}");
        assert!(!group.nodes[&follower].quiesced(), "seed {seed}: it never heard it should be quiet");
        let term = group.nodes[&leader].term();
        for _ in 0..3 * ELECTION_TICKS {
            group.tick();
        }
        assert!(group.all_quiet(), "seed {seed}: not all quiet again");
        assert_eq!(group.leader(), Some(leader), "seed {seed}: the live leader was deposed");
        assert_eq!(group.nodes[&leader].term(), term, "seed {seed}: the term moved");
    }
}

#[test]
fn a_leader_goes_quiet_without_an_unreachable_follower_and_catches_it_up_when_it_is_back() {
    for seed in 1..=10 {
        let mut group = quiet_group(seed);
        let leader = group.leader().unwrap();
        let away = *group.nodes.keys().find(|&&id| id != leader).unwrap();
        group.down.push(away);
        group.report_lost(away);
        // The leader commits without it, then goes quiet again.
        let end = group.nodes.get_mut(&leader).unwrap().propose(&batch(3, 2, 0)).unwrap();
        group.ticks_to_quiet();
        assert_eq!(group.nodes[&leader].committed(), end, "seed {seed}");
        let before = group.delivered;
        for _ in 0..5 * ELECTION_TICKS {
            group.tick();
        }
        assert_eq!(group.delivered, before, "seed {seed}: quiet, yet messages");
        // It comes back: told so, the leader wakes and brings it up to date.
        group.down.retain(|&id| id != away);
        for (_, raft) in group.nodes.iter_mut().filter(|(id, _)| **id != away) {
            raft.peer_back(away);
        }
        group.ticks_to_quiet();
        assert_eq!(group.nodes[&away].committed(), end, "seed {seed}: not caught up");
        assert_eq!(group.leader(), Some(leader));
    }
}

#[test]
fn a_quiet_leader_cut_off_from_every_follower_steps_down() {
    for seed in 1..=10 {
        let mut group = quiet_group(seed);
        let leader = group.leader().unwrap();
        let others: Vec<_> = group.nodes.keys().copied().filter(|&id| id != leader).collect();
        group.deliver_if = Box::new(move |m| m.from != leader && m.to != leader);
        for &other in &others {
            group.nodes.get_mut(&leader).unwrap().peer_lost(other);
        }
        group.report_lost(leader);
        for _ in 0..3 * ELECTION_TICKS {
            group.tick();
        }
        assert_ne!(group.nodes[&leader].role(), Role::Leader, "seed {seed}: a leader without a majority");
        let new = group.leader().expect("the others elect one");
        assert_ne!(new, leader);
    }
}
