//! `Raft::peer_lost`: followers told that their leader's connection closed elect a new leader
//! within half an election timeout instead of waiting a whole one; a wrong hint to one follower
//! about a live leader changes nothing.

mod common;

use braid_engine::io::{SimFaults, SimStorage};
use braid_engine::log::{Log, LogConfig};
use braid_engine::raft::{Config, HardState, Message, NodeId, Raft, Role};
use std::collections::BTreeMap;
use std::path::PathBuf;

const ELECTION_TICKS: u32 = 10;

struct Group {
    nodes: BTreeMap<NodeId, Raft<Log<SimStorage>>>,
    down: Vec<NodeId>,
}

impl Group {
    fn new(seed: u64) -> Group {
        let voters = vec![1, 2, 3];
        let nodes = voters
            .iter()
            .map(|&id| {
                let disk = SimStorage::new(seed ^ id, SimFaults::default());
                let (log, _) = Log::open(disk, &PathBuf::from(format!("/data/{id}")), LogConfig::default()).unwrap();
                let config = Config {
                    id,
                    voters: voters.clone(),
                    election_ticks: ELECTION_TICKS,
                    heartbeat_ticks: 2,
                    seed: seed * 31 + id,
                    eager_commit: false,
                };
                (id, Raft::new(config, log, HardState::default()))
            })
            .collect();
        Group { nodes, down: Vec::new() }
    }

    /// Persists every live node's log and delivers every message until none is left (messages
    /// to or from a node that is down are lost).
    fn settle(&mut self) {
        loop {
            let mut messages: Vec<Message> = Vec::new();
            for (id, raft) in self.nodes.iter_mut() {
                if self.down.contains(id) {
                    continue;
                }
                raft.log_mut().flush().unwrap();
                raft.on_persisted();
                messages.extend(raft.take_messages());
            }
            messages.retain(|m| !self.down.contains(&m.to));
            if messages.is_empty() {
                return;
            }
            for m in messages {
                self.nodes.get_mut(&m.to).unwrap().step(m);
            }
        }
    }

    fn tick(&mut self) {
        for (id, raft) in self.nodes.iter_mut() {
            if !self.down.contains(id) {
                raft.tick();
            }
        }
        self.settle();
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes.iter().find(|(id, r)| !self.down.contains(id) && r.role() == Role::Leader).map(|(id, _)| *id)
    }

    /// Ticks until a live node leads; how many ticks that took.
    fn ticks_to_leader(&mut self) -> u32 {
        for ticks in 1..=10 * ELECTION_TICKS {
            self.tick();
            if self.leader().is_some() {
                return ticks;
            }
        }
        panic!("no leader after {} ticks", 10 * ELECTION_TICKS);
    }
}

/// Ticks from the leader's crash to a new leader, with or without the hint.
fn failover_ticks(seed: u64, hint: bool) -> u32 {
    let mut group = Group::new(seed);
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
    let mut group = Group::new(7);
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
