//! The whole-node simulator: N nodes, each its real shards' state machines (the same
//! `ShardState`, `MetaStore`, ZooKeeper server, controller and group coordinators a running
//! node has) over its own simulated disk, driven by ZooKeeper and Kafka clients, in one
//! thread, from one seed. Time is the environment's (`SimEnv`), moved one millisecond a step;
//! randomness is the seed's.
//!
//! Every step: due raft messages are delivered (through the wire format) and each node's
//! shards handle what is queued and run their group-commit round; the metadata log's
//! fdatasync stays in flight for a seeded time, partition flushes end when the simulated disk
//! says; the network drops, duplicates, delays and reorders; partitions come and go; nodes
//! crash (their disks keep what was synced, and a seeded prefix of the rest, torn) and
//! restart; ZooKeeper sessions and Kafka producers and consumers work against whichever nodes
//! serve. The clients' histories are checked as replies arrive (see [`zk`], [`kafka`]); at the
//! end the network heals, every node restarts, and once they settle their trees must agree and
//! hold what was acknowledged.
//!
//! A failure names the seed; `braid-sim --nodes-sim --seed N` replays it exactly.

mod kafka;
mod net;
mod node;
mod txn;
mod zk;

pub use braid_node::mutation::Mutation;
pub use net::NetFaults;
pub use node::NodeSettings;

use braid_engine::io::{SimFaults, SimStorage};
use braid_engine::rng::SimRng;
use braid_node::env::SimEnv;
use node::SimNode;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Faults, per mille per step unless said otherwise.
#[derive(Debug, Clone)]
pub struct NodeFaults {
    pub net: NetFaults,
    pub crash: u64,
    /// Every node loses power at once (per 10,000 per step): what was not synced is lost on
    /// every disk, and acknowledged data must survive.
    pub power_loss: u64,
    pub restart: u64,
    pub partition: u64,
    pub heal: u64,
    /// A ZooKeeper client dies for good (its session must expire).
    pub client_death: u64,
    /// Partition logs' write-behinds end in their own (seeded) time.
    pub slow_disk: bool,
    /// The code's own fault points ([`braid_engine::buggify`]) may fire.
    pub buggify: bool,
    /// A node that restarts had its disk replaced (per 100 restarts): it starts with an empty
    /// data directory under its id. Once a run, while every other node is up (one lost disk is
    /// the fault a majority survives; two at once are not) and none of them counts itself as
    /// on a replaced disk (a late first start looks the same). Where the metadata log was
    /// deleted below a snapshot (`NodeSettings::meta_segment_bytes`), the node rebuilds its tree
    /// from the leader's snapshot. 0: no draw, so the runs of before replay as they were found.
    pub disk_replaced: u64,
}

impl NodeFaults {
    pub fn none() -> Self {
        NodeFaults {
            net: NetFaults { drop: 0, duplicate: 0, max_delay_ms: 1 },
            crash: 0,
            power_loss: 0,
            restart: 1000,
            partition: 0,
            heal: 1000,
            client_death: 0,
            slow_disk: false,
            buggify: false,
            disk_replaced: 0,
        }
    }

    pub fn harsh() -> Self {
        NodeFaults {
            net: NetFaults { drop: 20, duplicate: 10, max_delay_ms: 8 },
            crash: 1,
            power_loss: 1,
            restart: 3,
            partition: 1,
            heal: 2,
            client_death: 1,
            slow_disk: true,
            buggify: true,
            disk_replaced: 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeSimConfig {
    pub seed: u64,
    /// Simulated milliseconds of load and faults; the settling that follows adds its own.
    pub steps: u64,
    pub settings: NodeSettings,
    pub faults: NodeFaults,
    pub zk_clients: usize,
    pub zk_keys: usize,
    /// Requests per mille per client per step.
    pub zk_ops: u64,
    /// Kafka: producers' requests and consumers' group work per mille per step.
    pub kafka_ops: u64,
    /// Transactions begun per mille per step (0: no transactional producer, no
    /// `__transaction_state`: the runs before transactions existed replay as they were).
    pub txn_ops: u64,
    /// A known bug put back for this run (the mutation tests): the checkers must catch it.
    pub mutation: Option<Mutation>,
}

impl NodeSimConfig {
    pub fn new(seed: u64, steps: u64) -> Self {
        NodeSimConfig {
            seed,
            steps,
            settings: NodeSettings {
                nodes: 3,
                shards: 2,
                raft_tick_ms: 10,
                zk_tick_ms: 100,
                max_sync_ms: 4,
                meta_segment_bytes: None,
            },
            faults: NodeFaults::harsh(),
            zk_clients: 4,
            zk_keys: 4,
            zk_ops: 100,
            kafka_ops: 50,
            txn_ops: 50,
            mutation: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct NodeSimOutcome {
    pub steps: u64,
    pub crashes: u64,
    pub power_losses: u64,
    pub disks_replaced: u64,
    pub partitions: u64,
    pub zk_acked: u64,
    pub zk_reads: u64,
    pub zk_events: u64,
    pub zk_sessions_gone: usize,
    pub zk_reconnects: u64,
    pub kafka_acked: u64,
    pub kafka_commits: u64,
    pub kafka_generations: i32,
    /// Transactions committed, aborted, and of unknown outcome.
    pub transactions: (usize, usize, usize),
    pub final_zxid: i64,
    pub messages: u64,
    /// Times the code's fault points fired ([`braid_engine::buggify`]).
    pub buggified: u64,
}

/// Settling after the load: long enough for every session timeout, an election or two and
/// the reaper.
const SETTLE_MS: u64 = 4_000;
/// Then only pings, until every node has every write.
const QUIET_MS: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Faults and the full load.
    Load,
    /// No faults, a lighter load.
    Settle,
    /// No new requests.
    Quiet,
}

/// The clock the simulated wall starts at (2023-11-14).
const START_MS: i64 = 1_700_000_000_000;

struct Sim {
    config: NodeSimConfig,
    rng: SimRng,
    env: Arc<SimEnv>,
    ids: Vec<i32>,
    nodes: BTreeMap<i32, SimNode>,
    disks: BTreeMap<i32, SimStorage>,
    net: net::Network,
    zk: zk::ZkWorkload,
    kafka: kafka::KafkaWorkload,
    txn: txn::TxnWorkload,
    now: u64,
    outcome: NodeSimOutcome,
    /// BRAID_SIM_PARTITION: a partition of the workload's topic whose raft state the trace
    /// follows on every node.
    watch_partition: Option<i32>,
    watched_status: BTreeMap<i32, String>,
    /// The leader epoch each node's tree last showed for each partition state znode.
    leader_epochs: BTreeMap<(i32, String), i32>,
}

/// The `leader_epoch` of a partition state znode's JSON.
fn leader_epoch(data: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(data).ok()?;
    let at = text.find("\"leader_epoch\":")? + "\"leader_epoch\":".len();
    let digits: String = text[at..].trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
    digits.parse().ok()
}

/// Prints a line of the run's story when BRAID_SIM_TRACE is set.
pub(crate) fn trace(now: u64, what: std::fmt::Arguments<'_>) {
    if std::env::var_os("BRAID_SIM_TRACE").is_some() {
        eprintln!("{now:>6} ms: {what}");
    }
}

/// Runs one seed; Err names the first violation (and the step).
pub fn run_nodes(config: &NodeSimConfig) -> Result<NodeSimOutcome, String> {
    braid_node::mutation::set(config.mutation);
    if config.faults.buggify {
        braid_engine::buggify::enable(config.seed ^ crate::cluster::BUGGIFY_SALT);
    }
    let outcome = Sim::new(config.clone()).and_then(|mut sim| {
        sim.run().map_err(|e| format!("seed {} step {}: {e}", config.seed, sim.now))?;
        Ok(sim.outcome)
    });
    let fired: u64 = braid_engine::buggify::disable().iter().map(|(_, n)| n).sum();
    braid_node::mutation::set(None);
    outcome.map(|outcome| NodeSimOutcome { buggified: fired, ..outcome })
}

impl Sim {
    fn new(config: NodeSimConfig) -> Result<Sim, String> {
        let mut rng = SimRng::new(config.seed);
        // The state machines' maps iterate in the order this seed gives.
        braid_engine::hash::set_thread_keys(rng.next_u64(), rng.next_u64());
        let env = Arc::new(SimEnv::new(rng.next_u64(), START_MS));
        let ids: Vec<i32> = (1..=config.settings.nodes as i32).collect();
        let mut disks = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for &id in &ids {
            let slow = config.faults.slow_disk;
            let faults = SimFaults { slow_write_behinds: slow, slow_syncs: slow, ..SimFaults::default() };
            let disk = SimStorage::new(rng.next_u64(), faults);
            nodes.insert(id, SimNode::start(id, &config.settings, &disk, &env)?);
            disks.insert(id, disk);
        }
        Ok(Sim {
            rng,
            env,
            ids,
            nodes,
            disks,
            net: net::Network::new(config.faults.net.clone()),
            zk: zk::ZkWorkload::new(config.zk_clients, config.zk_keys),
            kafka: kafka::KafkaWorkload::new(),
            txn: txn::TxnWorkload::new(),
            now: 0,
            outcome: NodeSimOutcome::default(),
            watch_partition: std::env::var("BRAID_SIM_PARTITION").ok().and_then(|p| p.parse().ok()),
            watched_status: BTreeMap::new(),
            leader_epochs: BTreeMap::new(),
            config,
        })
    }

    fn run(&mut self) -> Result<(), String> {
        for _ in 0..self.config.steps {
            self.step(Phase::Load)?;
        }
        self.settle()?;
        self.check_final()
    }

    /// One millisecond: with faults and the full load (`Phase::Load`), or settling.
    fn step(&mut self, phase: Phase) -> Result<(), String> {
        let faults = phase == Phase::Load;
        self.now += 1;
        self.env.advance(1);
        if faults {
            self.faults()?;
        }
        for (to, messages) in self.net.due(self.now) {
            if let Some(node) = self.nodes.get(&to) {
                node.deliver(messages);
            }
        }
        let up: BTreeSet<i32> = self.nodes.keys().copied().collect();
        let silence = self.config.settings.raft_tick_ms * braid_node::replica::ELECTION_TICKS as u64;
        for (node, peer, back) in self.net.liveness(self.now, &up, &self.ids, silence) {
            if let Some(n) = self.nodes.get(&node) {
                n.liveness(peer, back);
            }
        }
        let retention = self.now.is_multiple_of(500);
        for node in self.nodes.values_mut() {
            node.pump(self.now, &self.config.settings, &mut self.rng, retention);
        }
        let ids: Vec<i32> = self.nodes.keys().copied().collect();
        for id in ids {
            let out = self.nodes.get_mut(&id).expect("up").outgoing();
            self.net.send(self.now, id, out, &mut self.rng);
        }
        if let Some(watched) = &self.watch_partition {
            for node in self.nodes.values() {
                let topic = std::env::var("BRAID_SIM_TOPIC").unwrap_or_else(|_| "sim".into());
                let status = node.raft_status(&topic, *watched).unwrap_or_default();
                if self.watched_status.get(&node.id) != Some(&status) {
                    trace(self.now, format_args!("node {} partition {watched}: {status}", node.id));
                    self.watched_status.insert(node.id, status);
                }
            }
        }
        if self.now.is_multiple_of(10) {
            self.check_leader_epochs()?;
        }
        let zk_ops = match phase {
            Phase::Load => self.config.zk_ops,
            Phase::Settle => self.config.zk_ops / 4,
            Phase::Quiet => 0,
        };
        self.zk.step(self.now, &self.nodes, &mut self.rng, zk_ops)?;
        let kafka_ops = if faults { self.config.kafka_ops } else { 0 };
        self.kafka.step(self.now, &self.nodes, &mut self.rng, kafka_ops)?;
        let txn_ops = if faults { self.config.txn_ops } else { 0 };
        self.txn.step(self.now, &mut self.nodes, &mut self.rng, txn_ops);
        Ok(())
    }

    /// The controller's record of each partition's leader, in every node's tree: its leader
    /// epoch never goes back (a deposed leader's late report must not replace a newer one).
    fn check_leader_epochs(&mut self) -> Result<(), String> {
        for node in self.nodes.values() {
            let tree = node.shard0().meta().expect("shard 0").tree();
            for topic in ["sim", braid_node::groups::OFFSETS_TOPIC] {
                let partitions = format!("/brokers/topics/{topic}/partitions");
                for p in tree.children(&partitions).unwrap_or_default() {
                    let path = format!("{partitions}/{p}/state");
                    let Some(epoch) = tree.get(&path).and_then(|z| leader_epoch(&z.data)) else { continue };
                    let seen = self.leader_epochs.entry((node.id, path.clone())).or_insert(epoch);
                    if epoch < *seen {
                        return Err(format!(
                            "node {}: {path} went back from leader epoch {} to {epoch} (zxid {})",
                            node.id,
                            *seen,
                            tree.last_zxid()
                        ));
                    }
                    *seen = epoch;
                }
            }
        }
        Ok(())
    }

    fn faults(&mut self) -> Result<(), String> {
        let f = self.config.faults.clone();
        if self.nodes.len() == self.ids.len() && self.rng.chance(f.power_loss, 10_000) {
            for id in self.ids.clone() {
                self.nodes.remove(&id);
                self.disks[&id].crash();
            }
            self.outcome.power_losses += 1;
            trace(self.now, format_args!("every node loses power"));
        // Otherwise at most one node down at a time: a majority stays, so the run goes on.
        } else if self.nodes.len() == self.ids.len() && self.rng.chance(f.crash, 1000) {
            let victim = self.ids[self.rng.below(self.ids.len() as u64) as usize];
            self.nodes.remove(&victim);
            self.disks[&victim].crash();
            trace(self.now, format_args!("node {victim} crashes"));
            self.outcome.crashes += 1;
        } else if self.nodes.len() < self.ids.len() && self.rng.chance(f.restart, 1000) {
            self.restart_one()?;
        }
        if !self.net.partitioned() && self.rng.chance(f.partition, 1000) {
            let victim = self.ids[self.rng.below(self.ids.len() as u64) as usize];
            self.net.isolate(victim, &self.ids);
            trace(self.now, format_args!("node {victim} is cut off"));
            self.outcome.partitions += 1;
        } else if self.net.partitioned() && self.rng.chance(f.heal, 1000) {
            self.net.heal();
            trace(self.now, format_args!("the network heals"));
        }
        if self.rng.chance(f.client_death, 1000) {
            self.zk.kill_one(&self.nodes, &mut self.rng);
        }
        Ok(())
    }

    fn restart_one(&mut self) -> Result<(), String> {
        let Some(&id) = self.ids.iter().find(|id| !self.nodes.contains_key(id)) else { return Ok(()) };
        let replaced = self.config.faults.disk_replaced;
        let alone = self.nodes.len() + 1 == self.ids.len() && self.outcome.disks_replaced == 0;
        if replaced > 0 && alone && self.rng.chance(replaced, 100) && self.none_replaced() {
            let slow = self.config.faults.slow_disk;
            let faults = SimFaults { slow_write_behinds: slow, slow_syncs: slow, ..SimFaults::default() };
            self.disks.insert(id, SimStorage::new(self.rng.next_u64(), faults));
            trace(self.now, format_args!("node {id}'s disk is replaced"));
            self.outcome.disks_replaced += 1;
        }
        let node = SimNode::start(id, &self.config.settings, &self.disks[&id], &self.env)?;
        self.net.restarted(id, &self.ids);
        // Its tree starts again from its snapshot and log: what it showed before is not a floor.
        self.leader_epochs.retain(|(node, _), _| *node != id);
        trace(self.now, format_args!("node {id} restarts"));
        self.nodes.insert(id, node);
        Ok(())
    }

    /// True if no live node counts itself as on a replaced disk (a node that first started
    /// after the others had committed looks just like one: a second such node is a second
    /// fault).
    fn none_replaced(&self) -> bool {
        self.nodes.values().all(|n| !n.shared.replaced_disk.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The network heals, every node comes back, and the cluster runs without faults until
    /// it settles.
    fn settle(&mut self) -> Result<(), String> {
        self.net.heal();
        self.net.calm();
        while self.nodes.len() < self.ids.len() {
            self.restart_one()?;
        }
        for _ in 0..SETTLE_MS {
            self.step(Phase::Settle)?;
        }
        // The last writes reach every node: pings only.
        for _ in 0..QUIET_MS {
            self.step(Phase::Quiet)?;
        }
        Ok(())
    }

    fn check_final(&mut self) -> Result<(), String> {
        let mut trees = self.nodes.values().map(|n| {
            let meta = n.shard0().meta().expect("shard 0 has the metadata store");
            (n.id, meta.tree().last_zxid(), meta.tree().digest())
        });
        let (first, zxid, digest) = trees.next().expect("nodes");
        for (id, other_zxid, other_digest) in trees {
            if (other_zxid, other_digest) != (zxid, digest) {
                let states: Vec<String> = self
                    .nodes
                    .values()
                    .map(|n| format!("node {}: {}", n.id, n.shard0().meta().expect("shard 0").raft_summary()))
                    .collect();
                return Err(format!(
                    "after settling, node {id}'s tree (zxid {other_zxid}, digest {other_digest:x}) differs from node {first}'s (zxid {zxid}, digest {digest:x}); {}",
                    states.join("; ")
                ));
            }
        }
        let tree = self.nodes[&first].shard0().meta().expect("shard 0").tree();
        self.zk.check_final(tree)?;
        self.kafka.check_final(&mut self.nodes)?;
        self.txn.check_final(&mut self.nodes)?;
        self.outcome.transactions = self.txn.counts();
        self.outcome.steps = self.now;
        self.outcome.final_zxid = zxid;
        self.outcome.zk_acked = self.zk.acked;
        self.outcome.zk_reads = self.zk.reads;
        self.outcome.zk_events = self.zk.events;
        self.outcome.zk_sessions_gone = self.zk.sessions_gone();
        self.outcome.zk_reconnects = self.zk.reconnects;
        self.outcome.kafka_acked = self.kafka.acked;
        self.outcome.kafka_commits = self.kafka.commits;
        self.outcome.kafka_generations = self.kafka.generations();
        self.outcome.messages = self.net.delivered;
        Ok(())
    }
}
