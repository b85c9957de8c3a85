//! One simulated raft group (see the crate docs for what each step does and checks).

mod checks;

use braid_engine::io::{SimFaults, SimStorage, Storage};
use braid_engine::log::batch::{build_batch, records, BatchHeader, CONTROL_ATTRIBUTE};
use braid_engine::log::{Log, LogConfig};
use braid_engine::raft::log::entry_position;
use braid_engine::raft::{config_file, hard_state};
use braid_engine::raft::{wire, Config, Message, NodeId, Raft, RaftLog, Role, Term};
use braid_engine::rng::SimRng;
use braid_engine::tree::{Acl, DataTree, Txn};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Fault rates, per mille per step (or per message for the network ones).
#[derive(Debug, Clone)]
pub struct Faults {
    pub drop: u64,
    pub duplicate: u64,
    pub max_delay_ticks: u64,
    pub partition: u64,
    pub heal: u64,
    pub crash: u64,
    pub restart: u64,
    /// The code's own fault points ([`braid_engine::buggify`]) may fire.
    pub buggify: bool,
}

impl Faults {
    pub fn none() -> Self {
        Faults {
            drop: 0,
            duplicate: 0,
            max_delay_ticks: 1,
            partition: 0,
            heal: 1000,
            crash: 0,
            restart: 1000,
            buggify: false,
        }
    }
    pub fn harsh() -> Self {
        Faults {
            drop: 50,
            duplicate: 20,
            max_delay_ticks: 6,
            partition: 4,
            heal: 30,
            crash: 3,
            restart: 40,
            buggify: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    pub steps: u64,
    pub faults: Faults,
    /// Client proposals per mille per step.
    pub propose: u64,
    /// Retention passes per mille per node per step (segments of 1 KiB, 2 KiB kept).
    pub retention: u64,
    /// Configuration changes (add or remove one voter) asked of the leader, per mille per step.
    pub membership: u64,
    /// Groups go quiet when idle (as a node's partitions do), and nodes learn of each other's
    /// liveness as a node's transport reports it: after a seeded delay, lost or back.
    pub quiesce: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub acked: usize,
    pub leaders: usize,
    pub crashes: usize,
    pub max_term: Term,
    pub committed_end: i64,
    /// Resets sent to followers behind a leader's deleted prefix.
    pub resets: usize,
    /// Configuration changes the leaders accepted.
    pub config_changes: usize,
    /// Leadership transfers started.
    pub transfers: usize,
    /// Highest log start offset seen at the end (how much retention deleted).
    pub log_start_max: i64,
    /// Tree transactions (zxids) whose resulting tree was compared across nodes.
    pub tree_digests: usize,
    /// Times the code's fault points fired ([`braid_engine::buggify`]).
    pub buggified: u64,
    /// Synced reads of the tree completed (and checked for linearizability).
    pub reads: usize,
    /// Znodes and open sessions in the first node's tree at the end (the workload's reach).
    pub znodes: usize,
    pub sessions: usize,
    /// Node-steps a live node spent quiet (with [`SimConfig::quiesce`]).
    pub quiet_ticks: usize,
}

struct Node {
    disk: SimStorage,
    raft: Option<Raft<Log<SimStorage>>>,
    hard_seq: u64,
    config_seq: u64,
    /// Offset up to which this node's committed entries were compared with the canonical log.
    checked_to: i64,
    /// The coordination tree applied from this node's committed entries (the state machine).
    tree: DataTree,
    /// End offset of the last entry applied to `tree`.
    applied: i64,
    /// False once the log no longer starts at 0 (retention): the tree cannot be rebuilt
    /// without snapshots, so this node's tree is not compared.
    tree_valid: bool,
    /// The tree's last snapshot (taken before retention deletes the log below it).
    snapshot: Option<Vec<u8>>,
    /// `applied` when the snapshot being written began.
    snapshot_from: i64,
}

struct Proposal {
    node: NodeId,
    end: i64,
    term: Term,
    invoked_at: u64,
}

/// A write a client saw acknowledged: when it was invoked and acknowledged, and where it went.
#[derive(Debug, Clone, Copy)]
struct Completed {
    invoked_at: u64,
    acked_at: u64,
    end: i64,
}

/// A ZooKeeper-style linearizable read: sync (a no-op through the leader, ending at `end` in
/// `term`), then a read of the tree of the client's node once it has applied the no-op.
struct PendingRead {
    node: NodeId,
    end: i64,
    term: Term,
    invoked_at: u64,
}

/// A read that completed: the zxid of the tree it read, and the value it saw.
struct CompletedRead {
    invoked_at: u64,
    completed_at: u64,
    zxid: i64,
    key: String,
    value: Option<Vec<u8>>,
}

/// An acknowledged entry: committed by a leader, reported to its client.
#[derive(Debug, Clone, Copy)]
struct Acked {
    end: i64,
    term: Term,
}

/// True if the log holds the acknowledged entry, or has deleted it as part of its committed
/// prefix (retention).
fn holds(log: &Log<SimStorage>, acked: &Acked) -> bool {
    acked.end <= log.start() || log.term_at(acked.end) == Some(acked.term)
}

/// Keys of the tree workload: few, so creates, updates and deletes collide.
const KEYS: u64 = 6;

fn key_path(k: u64) -> String {
    format!("/k{k}")
}

fn node_dir(id: NodeId) -> PathBuf {
    PathBuf::from(format!("/node-{id}"))
}

/// Bytes of recent batches each simulated log keeps for replication.
const RECENT_BYTES: usize = 2 << 10;

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 10,
        index_interval_bytes: 512,
        retention_ms: -1,
        retention_bytes: 2 << 10,
        write_buffer_bytes: 2048,
        // As the metadata log: zeros ahead of the data (where writes are not in 4 KiB blocks).
        zero_ahead_bytes: 256,
        ..LogConfig::default()
    }
}

struct Sim {
    config: SimConfig,
    rng: SimRng,
    nodes: BTreeMap<NodeId, Node>,
    voters: Vec<NodeId>,
    in_flight: Vec<(u64, u64, Message)>,
    sequence: u64,
    now: u64,
    group: BTreeMap<NodeId, u8>,
    leaders_by_term: BTreeMap<Term, NodeId>,
    proposals: Vec<Proposal>,
    acked: Vec<Acked>,
    /// (end, term, crc) of every committed entry, in order: what all nodes must agree on.
    /// end -> (start, term, crc).
    canonical: BTreeMap<i64, (i64, Term, u32)>,
    /// Tree digest after each zxid, as the first node to apply it saw it.
    digests: BTreeMap<i64, u64>,
    completed: Vec<Completed>,
    outcome: Outcome,
    proposal_counter: u64,
    reads: Vec<PendingRead>,
    completed_reads: Vec<CompletedRead>,
    /// With BRAID_SIM_TRACE set: each node's last traced state line.
    trace_last: BTreeMap<String, String>,
    /// The value of every key after each zxid, from the first node to apply it.
    values: BTreeMap<(String, i64), Option<Vec<u8>>>,
    /// (observer, peer) pairs whose last liveness news to the observer was "lost" (absent:
    /// reachable, as a freshly started node assumes).
    reported_lost: std::collections::BTreeSet<(NodeId, NodeId)>,
    /// Crashes of each node so far, and the last of a peer's crashes each observer has been
    /// told of: a process that dies closes its connections, so every peer hears it lost (then
    /// back) however soon it restarts.
    incarnations: BTreeMap<NodeId, u64>,
    seen_incarnations: BTreeMap<(NodeId, NodeId), u64>,
}

impl Sim {
    fn start_node(&mut self, id: NodeId) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).expect("node");
        let (seq, hard) = hard_state::load(&node.disk, &node_dir(id).join("raft-state"));
        let (config_seq, base, changes) = config_file::load(&node.disk, &node_dir(id).join("raft-config")).unwrap_or((
            0,
            self.voters.clone(),
            Vec::new(),
        ));
        let (mut log, _) = Log::open(node.disk.clone(), &node_dir(id).join("log"), log_config())
            .map_err(|e| format!("node {id} log open: {e}"))?;
        // Small enough that laggards are served from the segments too.
        log.keep_recent(RECENT_BYTES);
        let config = Config {
            id,
            voters: base,
            election_ticks: 10,
            heartbeat_ticks: 2,
            seed: self.config.seed ^ self.now,
            eager_commit: self.config.seed % 2 == 1,
            prefix_held_by_all: false,
            replaced_disk: false,
            quiesce: self.config.quiesce,
        };
        // A node starting afresh takes every peer for reachable until told otherwise.
        self.reported_lost.retain(|&(observer, _)| observer != id);
        for (&peer, &incarnation) in &self.incarnations {
            self.seen_incarnations.insert((id, peer), incarnation);
        }
        let start = log.log_start_offset();
        node.raft = Some(Raft::restore(config, log, hard, changes));
        node.hard_seq = seq;
        node.config_seq = config_seq;
        node.checked_to = 0;
        // The tree restarts from its last snapshot (kept durably, as a node keeps it), or
        // from nothing.
        node.tree = match &node.snapshot {
            Some(bytes) => DataTree::from_snapshot(bytes).map_err(|e| format!("node {id}: snapshot: {e}"))?,
            None => DataTree::new(),
        };
        node.applied = node.tree.last_zxid().max(start);
        node.tree_valid = node.tree.last_zxid() >= start;
        Ok(())
    }

    fn linked(&self, a: NodeId, b: NodeId) -> bool {
        self.group.get(&a) == self.group.get(&b)
    }

    fn inject_faults(&mut self) -> Result<(), String> {
        let f = self.config.faults.clone();
        if self.rng.chance(f.partition, 1000) {
            for &id in &self.voters {
                self.group.insert(id, self.rng.below(2) as u8);
            }
        } else if self.rng.chance(f.heal, 1000) {
            for &id in &self.voters {
                self.group.insert(id, 0);
            }
        }
        let live: Vec<NodeId> = self.nodes.iter().filter(|(_, n)| n.raft.is_some()).map(|(id, _)| *id).collect();
        let dead: Vec<NodeId> = self.nodes.iter().filter(|(_, n)| n.raft.is_none()).map(|(id, _)| *id).collect();
        // Keep a majority able to run, so the group can make progress between faults.
        if !live.is_empty() && live.len() > self.voters.len() / 2 + 1 && self.rng.chance(f.crash, 1000) {
            let id = live[self.rng.below(live.len() as u64) as usize];
            let node = self.nodes.get_mut(&id).expect("node");
            node.raft = None;
            node.disk.crash();
            self.outcome.crashes += 1;
            *self.incarnations.entry(id).or_default() += 1;
            // The peers that see its connections close (not those cut off from it) are told.
            for other in live.iter().filter(|&&o| o != id) {
                if self.rng.chance(1, 2) {
                    if let Some(raft) = self.nodes.get_mut(other).and_then(|n| n.raft.as_mut()) {
                        raft.peer_lost(id);
                        self.reported_lost.insert((*other, id));
                        self.seen_incarnations.insert((*other, id), self.incarnations[&id]);
                    }
                }
            }
        }
        // A connection that closes while its peer lives on (a network error): a wrong hint.
        if !live.is_empty() && self.rng.chance(f.crash, 1000) {
            let id = live[self.rng.below(live.len() as u64) as usize];
            if let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) {
                if let Some(leader) = raft.leader() {
                    raft.peer_lost(leader);
                    self.reported_lost.insert((id, leader));
                }
            }
        }
        if !dead.is_empty() && self.rng.chance(f.restart, 1000) {
            let id = dead[self.rng.below(dead.len() as u64) as usize];
            self.start_node(id)?;
        }
        Ok(())
    }

    /// The transport's liveness news, as a node's raft transport gives it (a peer silent for an
    /// election timeout is lost; frames from it again, back): each observer learns of a change
    /// in whether it can hear a peer after a seeded delay.
    fn report_liveness(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &observer in &ids {
            if self.nodes[&observer].raft.is_none() {
                continue;
            }
            for &peer in ids.iter().filter(|&&p| p != observer) {
                let incarnation = self.incarnations.get(&peer).copied().unwrap_or(0);
                let seen = self.seen_incarnations.get(&(observer, peer)).copied().unwrap_or(0);
                let reported = !self.reported_lost.contains(&(observer, peer));
                // A crash not heard of yet counts as unreachable until it is.
                let reachable = self.nodes[&peer].raft.is_some()
                    && self.linked(observer, peer)
                    && (seen == incarnation || !reported);
                if reachable == reported || !self.rng.chance(1, 4) {
                    continue;
                }
                self.seen_incarnations.insert((observer, peer), incarnation);
                let raft = self.nodes.get_mut(&observer).and_then(|n| n.raft.as_mut()).expect("live");
                if reachable {
                    raft.peer_back(peer);
                    self.reported_lost.remove(&(observer, peer));
                } else {
                    raft.peer_lost(peer);
                    self.reported_lost.insert((observer, peer));
                }
            }
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let mut due: Vec<(u64, Message)> = Vec::new();
        self.in_flight.retain(|(at, order, msg)| {
            if *at <= now {
                due.push((*order, msg.clone()));
                false
            } else {
                true
            }
        });
        // Seeded reordering of what arrives in the same tick.
        for i in (1..due.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            due.swap(i, j);
        }
        for (_, msg) in due {
            if !self.linked(msg.from, msg.to) {
                continue;
            }
            if let Some(raft) = self.nodes.get_mut(&msg.to).and_then(|n| n.raft.as_mut()) {
                raft.step(msg);
                // As the node does: a leader's next appends leave at once.
                let early = raft.take_leader_messages();
                self.transmit(early).expect("messages encode");
            }
        }
    }

    fn propose(&mut self) {
        let leaders: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.raft.as_ref().is_some_and(|r| r.role() == Role::Leader))
            .map(|(id, _)| *id)
            .collect();
        if leaders.is_empty() {
            return;
        }
        let id = leaders[self.rng.below(leaders.len() as u64) as usize];
        if self.rng.chance(1, 4) {
            // A client on a random live node syncs, then reads there.
            let live: Vec<NodeId> = self.nodes.iter().filter(|(_, n)| n.raft.is_some()).map(|(id, _)| *id).collect();
            let node = live[self.rng.below(live.len() as u64) as usize];
            let batch = build_batch(self.now as i64, &[&Txn::Noop.encode()]);
            let raft = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()).expect("leader");
            let term = raft.term();
            if let Ok(end) = raft.propose(&batch) {
                self.reads.push(PendingRead { node, end, term, invoked_at: self.now });
            }
            let early = raft.take_leader_messages();
            self.transmit(early).expect("messages encode");
            return;
        }
        self.proposal_counter += 1;
        // Tree transactions on a handful of paths, so creates, updates and deletes collide.
        let records = 1 + self.rng.below(3) as usize;
        let txns: Vec<Vec<u8>> = (0..records).map(|_| self.random_txn().encode()).collect();
        let values: Vec<&[u8]> = txns.iter().map(Vec::as_slice).collect();
        let batch = build_batch(self.now as i64, &values);
        let raft = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()).expect("leader");
        let term = raft.term();
        if let Ok(end) = raft.propose(&batch) {
            self.proposals.push(Proposal { node: id, end, term, invoked_at: self.now });
        }
        // As the node does: the leader's appends leave before its own flush.
        let early = raft.take_leader_messages();
        self.transmit(early).expect("messages encode");
    }

    /// Asks a leader to add a node that is not a voter, or (unless `add_only`) sometimes to
    /// remove one (itself included, keeping at least two voters) or to hand leadership over.
    fn change_membership(&mut self, add_only: bool) {
        let leader = self
            .nodes
            .iter()
            .find(|(_, n)| n.raft.as_ref().is_some_and(|r| r.role() == Role::Leader))
            .map(|(id, _)| *id);
        let Some(id) = leader else { return };
        let raft = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()).expect("leader");
        let current = raft.voters().to_vec();
        if !add_only && self.rng.chance(1, 3) {
            // Or hand leadership to another voter.
            let to = current[self.rng.below(current.len() as u64) as usize];
            if raft.transfer_leadership(to) {
                self.outcome.transfers += 1;
            }
            let early = raft.take_leader_messages();
            self.transmit(early).expect("messages encode");
            return;
        }
        let missing: Vec<NodeId> = self.voters.iter().copied().filter(|v| !current.contains(v)).collect();
        let remove = !add_only && current.len() > 2 && (missing.is_empty() || self.rng.chance(1, 2));
        let mut next = current.clone();
        if remove {
            let victim = current[self.rng.below(current.len() as u64) as usize];
            next.retain(|&v| v != victim);
        } else if let Some(&node) = missing.first() {
            next.push(node);
        } else {
            return;
        }
        if raft.propose_config(next).is_ok() {
            self.outcome.config_changes += 1;
        }
        let early = raft.take_leader_messages();
        self.transmit(early).expect("messages encode");
    }

    fn random_txn(&mut self) -> Txn {
        let path = key_path;
        let data = format!("v{}", self.proposal_counter).into_bytes();
        let acl = |rng: &mut SimRng| {
            if rng.chance(1, 2) {
                Acl::open_unsafe()
            } else {
                vec![Acl { perms: 1 + rng.below(31) as i32, scheme: "digest".into(), id: "u:x".into() }]
            }
        };
        // Sessions 1..=3 open and close, so ephemerals meet open and closed sessions.
        let one = |rng: &mut SimRng| match rng.below(9) {
            0 => Txn::create(path(rng.below(KEYS)), data.clone()),
            1 => Txn::Delete { path: path(rng.below(KEYS)), version: -1 },
            2 => Txn::SetData { path: path(rng.below(KEYS)), data: data.clone(), version: -1 },
            3 => Txn::SetData { path: path(rng.below(KEYS)), data: data.clone(), version: rng.below(3) as i32 },
            4 => Txn::Create {
                path: format!("{}/e", path(rng.below(KEYS))),
                data: data.clone(),
                ephemeral_owner: 1 + rng.below(3) as i64,
                sequential: rng.chance(1, 2),
                acl: acl(rng),
            },
            5 => Txn::Create {
                path: "/q/s-".into(),
                data: data.clone(),
                ephemeral_owner: 0,
                sequential: true,
                acl: Acl::open_unsafe(),
            },
            6 => Txn::SetAcl { path: path(rng.below(KEYS)), acl: acl(rng), version: rng.below(3) as i32 - 1 },
            7 => Txn::Check { path: path(rng.below(KEYS)), version: rng.below(3) as i32 - 1 },
            _ => Txn::Delete { path: format!("{}/e", path(rng.below(KEYS))), version: -1 },
        };
        match self.rng.below(20) {
            0 => Txn::Multi((0..2).map(|_| one(&mut self.rng)).collect()),
            1..=3 => Txn::Multi((0..3).map(|_| one(&mut self.rng)).collect()),
            4 => Txn::CreateSession {
                id: 1 + self.rng.below(3) as i64,
                timeout_ms: 4000,
                password: vec![7; 16],
                owner: self.rng.below(3) as i32,
            },
            5 => Txn::CloseSession { id: 1 + self.rng.below(3) as i64 },
            6 => Txn::MoveSession { id: 1 + self.rng.below(3) as i64, owner: self.rng.below(3) as i32 },
            7 => Txn::create("/q", Vec::new()),
            _ => one(&mut self.rng),
        }
    }

    /// Applies newly committed entries to each node's tree; trees must agree at every zxid.
    fn apply_trees(&mut self) -> Result<(), String> {
        for (id, node) in &mut self.nodes {
            let Some(raft) = node.raft.as_ref() else { continue };
            if !node.tree_valid {
                continue;
            }
            if raft.log().start() > node.applied {
                node.tree_valid = false;
                continue;
            }
            while node.applied < raft.committed() {
                let entries = raft.log().entries_from(node.applied, 1 << 20);
                let Some(entry) = entries.into_iter().next() else {
                    return Err(format!("node {id}: cannot read committed entry at {}", node.applied));
                };
                let header = BatchHeader::parse(&entry).map_err(|e| e.to_string())?;
                if header.attributes & CONTROL_ATTRIBUTE == 0 {
                    for record in records(&entry).map_err(|e| format!("node {id}: {e}"))? {
                        let txn =
                            Txn::decode(record.value.unwrap_or_default()).map_err(|e| format!("node {id}: {e}"))?;
                        let zxid = record.offset + 1;
                        let _ = node.tree.apply(zxid, record.timestamp, &txn);
                        let digest = node.tree.digest();
                        let first = *self.digests.entry(zxid).or_insert(digest);
                        if first != digest {
                            return Err(format!("node {id}: tree after zxid {zxid} differs from another node's"));
                        }
                        for k in 0..KEYS {
                            let key = key_path(k);
                            let value = node.tree.get(&key).map(|n| n.data.clone());
                            self.values.entry((key, zxid)).or_insert(value);
                        }
                    }
                }
                node.applied = header.next_offset();
            }
        }
        Ok(())
    }

    /// Writes in real-time order land in log order: a write acknowledged before another was
    /// invoked sits at a lower offset (linearizability of the write history).
    fn check_write_order(&self) -> Result<(), String> {
        let mut by_ack: Vec<Completed> = self.completed.clone();
        by_ack.sort_by_key(|c| c.acked_at);
        let mut by_invoke = self.completed.clone();
        by_invoke.sort_by_key(|c| c.invoked_at);
        let mut i = 0;
        let mut max_end_acked_before = i64::MIN;
        for c in &by_invoke {
            while i < by_ack.len() && by_ack[i].acked_at < c.invoked_at {
                max_end_acked_before = max_end_acked_before.max(by_ack[i].end);
                i += 1;
            }
            if c.end <= max_end_acked_before {
                return Err(format!("write invoked at step {} landed at {} before a write acknowledged earlier (at {max_end_acked_before})", c.invoked_at, c.end));
            }
        }
        Ok(())
    }

    /// Each live node's driver round: persist, flush, then send.
    fn drive(&mut self) -> Result<(), String> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let node = self.nodes.get_mut(&id).expect("node");
            let Some(raft) = node.raft.as_mut() else { continue };
            if raft.take_hard_state_dirty() {
                node.hard_seq += 1;
                hard_state::store(&node.disk, &node_dir(id).join("raft-state"), node.hard_seq, raft.hard_state())
                    .map_err(|e| format!("node {id}: hard state: {e}"))?;
            }
            // The configuration before the log: a restart drops changes the log lost.
            if raft.take_config_dirty() {
                node.config_seq += 1;
                let (base, changes) = raft.config_state();
                config_file::store(&node.disk, &node_dir(id).join("raft-config"), node.config_seq, &base, &changes)
                    .map_err(|e| format!("node {id}: config: {e}"))?;
            }
            raft.log_mut().flush().map_err(|e| format!("node {id}: flush: {e}"))?;
            raft.on_persisted();
            // Retention now and then, never past the commit point: laggards then need the
            // leader's reset to catch up.
            // As a node does with the metadata log: snapshot the tree a slice per round while
            // entries apply between rounds, then delete the log below what the snapshot holds.
            let mut below = None;
            if node.tree_valid && node.tree.snapshot_running().is_some() {
                let budget = 1 + self.rng.below(16) as usize;
                if let Some(bytes) = node.tree.snapshot_step(budget, usize::MAX) {
                    node.snapshot = Some(bytes);
                    below = Some(raft.committed().min(node.snapshot_from));
                }
            } else if self.rng.chance(self.config.retention, 1000) {
                if node.tree_valid {
                    node.tree.begin_snapshot();
                    node.snapshot_from = node.applied;
                } else {
                    below = Some(raft.committed());
                }
            }
            if let Some(below) = below {
                raft.log_mut().apply_retention_below(0, below).map_err(|e| format!("node {id}: retention: {e}"))?;
            }
            let messages = raft.take_messages();
            self.transmit(messages)?;
        }
        Ok(())
    }

    /// Puts messages on the simulated network (through the wire format), with its faults.
    fn transmit(&mut self, messages: Vec<braid_engine::raft::Message>) -> Result<(), String> {
        self.outcome.resets +=
            messages.iter().filter(|m| matches!(m.body, braid_engine::raft::Body::Reset { .. })).count();
        for msg in messages {
            // Every message crosses the node-to-node wire format on its way.
            let frame = wire::encode_frame(msg.from, &[(wire::GroupId::METADATA, msg)]);
            let (_, mut decoded) =
                wire::decode_frame(&bytes::Bytes::from(frame).slice(4..)).map_err(|e| format!("wire: {e}"))?;
            let msg = decoded.pop().ok_or("wire: empty frame")?.1;
            if self.rng.chance(self.config.faults.drop, 1000) {
                continue;
            }
            let copies = if self.rng.chance(self.config.faults.duplicate, 1000) { 2 } else { 1 };
            for _ in 0..copies {
                let delay = 1 + self.rng.below(self.config.faults.max_delay_ticks.max(1));
                self.sequence += 1;
                self.in_flight.push((self.now + delay, self.sequence, msg.clone()));
            }
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), String> {
        if std::env::var_os("BRAID_SIM_TRACE").is_some() {
            self.trace();
        }
        self.check_election_safety()?;
        self.check_acknowledgements()?;
        self.check_leader_completeness()?;
        self.check_state_machine_safety()
    }

    /// Prints each node's state when it changed (BRAID_SIM_TRACE).
    fn trace(&mut self) {
        for (id, node) in &self.nodes {
            let line = match &node.raft {
                Some(r) => format!(
                    "{:?}{} t{} voters {:?} last {:?} commit {} start {} leader {:?}",
                    r.role(),
                    if r.quiesced() { " quiet" } else { "" },
                    r.term(),
                    r.voters(),
                    r.log().last(),
                    r.committed(),
                    r.log().start(),
                    r.leader()
                ),
                None => "down".to_owned(),
            };
            let key = format!("{id}");
            if self.trace_last.get(&key) != Some(&line) {
                eprintln!("step {} node {id}: {line}", self.now);
                self.trace_last.insert(key, line);
            }
        }
    }

    fn step(&mut self, faults: bool, proposals: bool) -> Result<(), String> {
        self.now += 1;
        if faults {
            self.inject_faults()?;
        }
        if self.config.quiesce {
            self.report_liveness();
        }
        for node in self.nodes.values_mut() {
            if let Some(raft) = node.raft.as_mut() {
                self.outcome.quiet_ticks += usize::from(raft.quiesced());
                raft.tick();
            }
        }
        self.deliver();
        if proposals && self.rng.chance(self.config.propose, 1000) {
            self.propose();
        }
        if proposals && self.rng.chance(self.config.membership, 1000) {
            self.change_membership(false);
        }
        self.drive()?;
        self.check()?;
        self.apply_trees()?;
        self.complete_reads();
        Ok(())
    }

    /// Reads whose sync has applied on their node read its tree now; reads whose sync was
    /// lost (overwritten, or the node went down) fail, as the client would see.
    fn complete_reads(&mut self) {
        let mut still = Vec::new();
        for r in std::mem::take(&mut self.reads) {
            let Some(node) = self.nodes.get(&r.node) else { continue };
            let Some(raft) = node.raft.as_ref() else { continue };
            if !node.tree_valid || self.now - r.invoked_at > 500 {
                continue;
            }
            if node.applied < r.end {
                still.push(r);
                continue;
            }
            if raft.log().term_at(r.end) != Some(r.term) {
                continue;
            }
            let k = self.rng.below(KEYS);
            let key = key_path(k);
            let value = node.tree.get(&key).map(|n| n.data.clone());
            self.completed_reads.push(CompletedRead {
                invoked_at: r.invoked_at,
                completed_at: self.now,
                zxid: node.tree.last_zxid(),
                key,
                value,
            });
        }
        self.reads = still;
    }
}

/// Runs one seeded simulation; `Err` describes the first violated property.
pub fn run(config: &SimConfig) -> Result<Outcome, String> {
    if config.faults.buggify {
        braid_engine::buggify::enable(config.seed ^ BUGGIFY_SALT);
    }
    let outcome = run_seed(config);
    let fired: u64 = braid_engine::buggify::disable().iter().map(|(_, n)| n).sum();
    outcome.map(|outcome| Outcome { buggified: fired, ..outcome })
}

/// Keeps the fault points' draws apart from the simulator's own for the same seed.
pub const BUGGIFY_SALT: u64 = 0xB066_1F1E_D5EE_D000;

fn run_seed(config: &SimConfig) -> Result<Outcome, String> {
    let voters: Vec<NodeId> = (1..=config.nodes as u8).map(NodeId::from).collect();
    let mut sim = Sim {
        config: config.clone(),
        rng: SimRng::new(config.seed),
        nodes: BTreeMap::new(),
        voters: voters.clone(),
        in_flight: Vec::new(),
        sequence: 0,
        now: 0,
        group: voters.iter().map(|&v| (v, 0)).collect(),
        leaders_by_term: BTreeMap::new(),
        proposals: Vec::new(),
        acked: Vec::new(),
        canonical: BTreeMap::new(),
        digests: BTreeMap::new(),
        completed: Vec::new(),
        outcome: Outcome::default(),
        proposal_counter: 0,
        reads: Vec::new(),
        completed_reads: Vec::new(),
        trace_last: BTreeMap::new(),
        values: BTreeMap::new(),
        reported_lost: Default::default(),
        incarnations: BTreeMap::new(),
        seen_incarnations: BTreeMap::new(),
    };
    for &id in &voters {
        // Odd seeds write segments in 4 KiB blocks, as O_DIRECT does: a write then leaves the
        // partial last block in the log's tail, to be written again with what follows.
        let alignment = if config.seed % 2 == 1 { 4096 } else { 1 };
        let faults = SimFaults { segment_write_alignment: alignment, ..SimFaults::default() };
        let disk = SimStorage::new(config.seed.wrapping_mul(31).wrapping_add(id.wire()), faults);
        disk.create_dir_all(&node_dir(id)).map_err(|e| e.to_string())?;
        sim.nodes.insert(
            id,
            Node {
                disk,
                raft: None,
                hard_seq: 0,
                config_seq: 0,
                checked_to: 0,
                tree: DataTree::new(),
                applied: 0,
                tree_valid: true,
                snapshot: None,
                snapshot_from: 0,
            },
        );
        sim.start_node(id)?;
    }
    for _ in 0..config.steps {
        sim.step(true, true)?;
    }
    // Heal: every node up, no faults, until every node holds every acknowledged entry.
    for &id in &voters {
        sim.group.insert(id, 0);
        if sim.nodes[&id].raft.is_none() {
            sim.start_node(id)?;
        }
    }
    let mut settle = 0;
    loop {
        sim.config.faults = Faults::none();
        sim.step(false, settle < 50)?;
        // Every node becomes a voter again, so every node must end up with every entry.
        sim.change_membership(true);
        settle += 1;
        // Proposals still run for a while after healing; everything acknowledged counts.
        let target = sim.acked.iter().map(|a| a.end).max().unwrap_or(0);
        let done = sim
            .nodes
            .values()
            .all(|n| n.raft.as_ref().is_some_and(|r| r.committed() >= target && r.log().durable_end() >= target));
        if done && settle > 100 {
            break;
        }
        if settle > 20_000 {
            return Err("the healed cluster did not converge within 20000 steps".to_owned());
        }
    }
    for (id, node) in &sim.nodes {
        let raft = node.raft.as_ref().expect("all up");
        sim.outcome.log_start_max = sim.outcome.log_start_max.max(raft.log().start());
        for a in &sim.acked {
            if !holds(raft.log(), a) {
                return Err(format!(
                    "node {id} lacks acknowledged entry ending at {} (term {}) after healing (log start {}, last {:?}, term there {:?}, committed {}, role {:?})",
                    a.end,
                    a.term,
                    raft.log().start(),
                    raft.log().last(),
                    raft.log().term_at(a.end),
                    raft.committed(),
                    raft.role()
                ));
            }
        }
    }
    sim.check_write_order()?;
    sim.check_reads()?;
    sim.outcome.tree_digests = sim.digests.len();
    sim.outcome.reads = sim.completed_reads.len();
    if let Some(node) = sim.nodes.values().find(|n| n.tree_valid) {
        sim.outcome.znodes = node.tree.node_count();
        sim.outcome.sessions = node.tree.sessions().len();
    }
    Ok(sim.outcome.clone())
}
