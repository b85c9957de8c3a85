//! A raft group of three nodes in one thread for raft's integration tests: every message is
//! delivered at once (or lost, to or from a node that is down, or as the test's filter says).

use braid_engine::io::{SimFaults, SimStorage};
use braid_engine::log::{Log, LogConfig};
use braid_engine::raft::{Config, HardState, Message, NodeId, Raft, Role};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const ELECTION_TICKS: u32 = 10;

pub struct Group {
    pub nodes: BTreeMap<NodeId, Raft<Log<SimStorage>>>,
    pub down: Vec<NodeId>,
    /// Messages for which this returns false are lost on the way.
    pub deliver_if: Box<dyn Fn(&Message) -> bool>,
    /// Messages delivered so far.
    pub delivered: usize,
    disks: BTreeMap<NodeId, SimStorage>,
    configs: BTreeMap<NodeId, Config>,
    log_config: LogConfig,
}

impl Group {
    pub fn new(seed: u64, quiesce: bool) -> Group {
        Group::with_log_config(seed, quiesce, LogConfig::default())
    }

    /// As [`Group::new`], the nodes' logs configured as `log_config` says.
    #[allow(dead_code)]
    pub fn with_log_config(seed: u64, quiesce: bool, log_config: LogConfig) -> Group {
        Group::build(seed, quiesce, log_config, false)
    }

    /// As the metadata group runs: logs deleted only below what every member held
    /// (`Config::prefix_held_by_all`).
    #[allow(dead_code)]
    pub fn metadata(seed: u64, log_config: LogConfig) -> Group {
        Group::build(seed, false, log_config, true)
    }

    fn build(seed: u64, quiesce: bool, log_config: LogConfig, prefix_held_by_all: bool) -> Group {
        let voters = braid_engine::ids::node_ids(&[1, 2, 3]);
        let mut disks = BTreeMap::new();
        let mut configs = BTreeMap::new();
        let nodes = voters
            .iter()
            .map(|&id| {
                let disk = SimStorage::new(seed ^ id.wire(), SimFaults::default());
                disks.insert(id, disk.clone());
                let (log, _) = Log::open(disk, &node_dir(id), log_config.clone()).unwrap();
                let config = Config {
                    id,
                    voters: voters.clone(),
                    election_ticks: ELECTION_TICKS,
                    heartbeat_ticks: 2,
                    seed: seed * 31 + id.wire(),
                    eager_commit: false,
                    prefix_held_by_all,
                    quiesce,
                    replaced_disk: true,
                };
                configs.insert(id, config.clone());
                (id, Raft::new(config, log, HardState::default()))
            })
            .collect();
        Group { nodes, down: Vec::new(), deliver_if: Box::new(|_| true), delivered: 0, disks, configs, log_config }
    }

    /// Node `id` restarts: its log reopened from its disk (everything flushed stays), its hard
    /// state and configuration as persisted; it knows nothing of what committed.
    #[allow(dead_code)]
    pub fn restart(&mut self, id: NodeId) {
        let old = self.nodes.remove(&id).expect("a node of the group");
        let (hard, (_, changes)) = (old.hard_state(), old.config_state());
        drop(old);
        let (log, _) = Log::open(self.disks[&id].clone(), &node_dir(id), self.log_config.clone()).unwrap();
        self.nodes.insert(id, Raft::restore(self.configs[&id].clone(), log, hard, changes));
    }

    /// Node `id` restarts with its disk replaced: an empty log, no hard state, the group's
    /// first voters as its configuration.
    #[allow(dead_code)]
    pub fn restart_wiped(&mut self, id: NodeId, seed: u64) {
        drop(self.nodes.remove(&id).expect("a node of the group"));
        let disk = SimStorage::new(seed, SimFaults::default());
        self.disks.insert(id, disk.clone());
        let (log, _) = Log::open(disk, &node_dir(id), self.log_config.clone()).unwrap();
        self.nodes.insert(id, Raft::new(self.configs[&id].clone(), log, HardState::default()));
    }

    /// Persists every live node's log and delivers every message until none is left.
    pub fn settle(&mut self) {
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
            messages.retain(|m| !self.down.contains(&m.to) && (self.deliver_if)(m));
            if messages.is_empty() {
                return;
            }
            for m in messages {
                self.delivered += 1;
                self.nodes.get_mut(&m.to).unwrap().step(m);
            }
        }
    }

    pub fn tick(&mut self) {
        for (id, raft) in self.nodes.iter_mut() {
            if !self.down.contains(id) {
                raft.tick();
            }
        }
        self.settle();
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.nodes.iter().find(|(id, r)| !self.down.contains(id) && r.role() == Role::Leader).map(|(id, _)| *id)
    }

    /// Ticks until a live node leads; how many ticks that took.
    pub fn ticks_to_leader(&mut self) -> u32 {
        for ticks in 1..=10 * ELECTION_TICKS {
            self.tick();
            if self.leader().is_some() {
                return ticks;
            }
        }
        panic!("no leader after {} ticks", 10 * ELECTION_TICKS);
    }

    /// Tells every live node but `id` that `id` is lost.
    pub fn report_lost(&mut self, id: NodeId) {
        for (_, raft) in self.nodes.iter_mut().filter(|(other, _)| **other != id) {
            raft.peer_lost(id);
        }
    }

    /// Ticks until every live node's group is quiet (bounded); how many ticks that took.
    pub fn ticks_to_quiet(&mut self) -> u32 {
        for ticks in 1..=5 * ELECTION_TICKS {
            self.tick();
            if self.all_quiet() {
                return ticks;
            }
        }
        panic!("not quiet after {} ticks", 5 * ELECTION_TICKS);
    }

    /// True if every live node's group is quiet.
    pub fn all_quiet(&self) -> bool {
        self.nodes.iter().filter(|(id, _)| !self.down.contains(id)).all(|(_, r)| r.quiesced())
    }
}

fn node_dir(id: NodeId) -> PathBuf {
    PathBuf::from(format!("/data/{id}"))
}
