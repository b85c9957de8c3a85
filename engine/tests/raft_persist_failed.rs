//! A driver that fails to write the hard state keeps it dirty (`Raft::persist_failed`): a new
//! leader's messages, which may leave before its log is durable but never before its term and
//! vote are, stay back until a round writes them.

use braid_engine::io::{SimFaults, SimStorage};
use braid_engine::log::{Log, LogConfig};
use braid_engine::raft::{Config, HardState, Message, NodeId, Raft, Role};
use std::path::PathBuf;

fn node(id: u64) -> Raft<Log<SimStorage>> {
    let disk = SimStorage::new(id, SimFaults::default());
    let (log, _) = Log::open(disk, &PathBuf::from(format!("/data/{id}")), LogConfig::default()).unwrap();
    let config = Config {
        id: NodeId::from(id as u8),
        voters: braid_engine::ids::node_ids(&[1, 2, 3]),
        election_ticks: 10,
        heartbeat_ticks: 2,
        seed: id,
        eager_commit: false,
        prefix_held_by_all: false,
        replaced_disk: true,
        quiesce: false,
    };
    Raft::new(config, log, HardState::default())
}

/// Delivers `messages` and returns the replies, with every receiver's hard state and log
/// persisted first (as a driver does).
fn deliver(nodes: &mut [Raft<Log<SimStorage>>], messages: Vec<Message>) -> Vec<Message> {
    let mut replies = Vec::new();
    for m in messages {
        let to = &mut nodes[(m.to.get() - 1) as usize];
        to.step(m);
        to.take_hard_state_dirty();
        to.log_mut().flush().unwrap();
        to.on_persisted();
        replies.extend(to.take_messages());
    }
    replies
}

#[test]
fn a_failed_hard_state_write_keeps_a_new_leaders_messages_back() {
    let mut nodes = vec![node(1), node(2), node(3)];
    nodes[0].campaign();
    // Pre-vote round, then the vote: node 1's replies come back to it.
    let prevotes = nodes[0].take_messages();
    for answer in deliver(&mut nodes, prevotes) {
        nodes[0].step(answer);
    }
    let votes_asked = nodes[0].take_messages();
    let votes = deliver(&mut nodes, votes_asked);
    for v in votes {
        nodes[0].step(v);
    }
    assert_eq!(nodes[0].role(), Role::Leader);
    // The driver takes the hard state to write it, and the write fails.
    assert!(nodes[0].take_hard_state_dirty(), "the new term and vote are dirty");
    nodes[0].persist_failed(true, false);
    assert!(nodes[0].take_leader_messages().is_empty(), "nothing leaves before the term and vote are on disk");
    // The next round writes it: now the leader's appends may go.
    assert!(nodes[0].take_hard_state_dirty(), "still dirty: written again");
    assert!(!nodes[0].take_leader_messages().is_empty(), "the leader's first appends leave");
}
