//! One whole node in the simulator: its shards' state machines (shard 0 with the metadata
//! store, the ZooKeeper server, the controller and its coordinators; the partition shards),
//! over the node's simulated disk, with the effects the runtime carries out on a real node
//! carried out here instead: queued messages handled, the group-commit round run after each
//! burst, the metadata log's fdatasync left in flight for a seeded time, snapshots published
//! to every shard, ticks, retention, and raft messages taken from the peer queues for the
//! simulated network.

use braid_engine::io::SimStorage;
use braid_engine::raft::wire::GroupId;
use braid_engine::raft::{Message, NodeId};
use braid_engine::rng::SimRng;
use braid_node::config::{NodeConfig, StartArgs};
use braid_node::env::SimEnv;
use braid_node::meta::MetaStore;
use braid_node::metrics::Metrics;
use braid_node::msg::{Publication, ShardMsg, TxnWork, SHARD_QUEUE_DEPTH};
use braid_node::raft_net::{PeerQueue, RaftNet};
use braid_node::replica::PendingPersist;
use braid_node::shard::ShardState;
use braid_node::shared::{ShardCtx, Shared};
use std::cell::RefCell;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

/// The settings every simulated node shares.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub nodes: usize,
    pub shards: usize,
    pub raft_tick_ms: u64,
    pub zk_tick_ms: u32,
    /// Longest a metadata fdatasync stays in flight (ms).
    pub max_sync_ms: u64,
    /// Bytes of a metadata-log segment (None: the node's default, 16 MiB, which a run never
    /// fills: the log below tree snapshots is then never deleted).
    pub meta_segment_bytes: Option<u64>,
}

/// The address the node's peers are listed at (never bound: the network is simulated).
fn peer_spec(nodes: usize) -> String {
    (1..=nodes).map(|id| format!("{id}@127.0.0.1:{}", 19_000 + id)).collect::<Vec<_>>().join(",")
}

pub fn node_config(id: i32, settings: &NodeSettings) -> NodeConfig {
    let args = StartArgs {
        node_id: Some(id),
        data_dir: Some(format!("/sim/node-{id}").into()),
        peers: Some(peer_spec(settings.nodes)),
        raft_addr: Some(([127, 0, 0, 1], 19_000 + id as u16).into()),
        cores: Some(settings.shards),
        raft_tick_ms: Some(settings.raft_tick_ms),
        zk_tick_ms: Some(settings.zk_tick_ms),
        zk_reaper_ms: Some(100),
        zk_snap_count: Some(200),
        meta_segment_bytes: settings.meta_segment_bytes,
        ..Default::default()
    };
    NodeConfig::resolve(args).expect("the simulator's node settings are valid")
}

struct SimShard {
    state: ShardState<SimStorage>,
    inbox: mpsc::Receiver<ShardMsg>,
    publications: mpsc::UnboundedReceiver<Publication>,
    /// What the shard hands its transaction worker (the simulator is the worker).
    txn_work: mpsc::UnboundedReceiver<TxnWork>,
}

/// A running node.
pub struct SimNode {
    pub id: i32,
    /// This process among every one the simulator started (a restart is a new one): what a
    /// connection belongs to. (A pointer would not do: a restarted node's may reuse the old
    /// one's address.)
    pub process: u64,
    pub shared: Arc<Shared>,
    shards: Vec<SimShard>,
    /// Routes arriving raft messages to shards by the node's last published snapshot.
    router: ShardCtx,
    peer_queues: Vec<(NodeId, PeerQueue)>,
    /// The metadata log's fdatasync in flight, and the time it ends.
    meta_sync: Option<(u64, PendingPersist)>,
}

impl SimNode {
    /// Starts node `id` over `storage` (its disk, as a crash left it).
    pub fn start(id: i32, settings: &NodeSettings, storage: &SimStorage, env: &Arc<SimEnv>) -> Result<SimNode, String> {
        let _node = tracing::info_span!("node", id).entered();
        let config = node_config(id, settings);
        let mut senders = Vec::new();
        let mut inboxes = Vec::new();
        for _ in 0..settings.shards {
            let (tx, rx) = mpsc::channel(SHARD_QUEUE_DEPTH);
            senders.push(tx);
            inboxes.push(rx);
        }
        let peers: Vec<(NodeId, String)> = config
            .peers
            .iter()
            .map(|(peer, addr)| (NodeId::new(*peer).expect("simulated node ids are positive"), addr.to_string()))
            .collect();
        let (net, outgoing) = RaftNet::new(config.raft_id(), &peers);
        let shared = Arc::new(Shared {
            config: config.clone(),
            env: Arc::clone(env) as Arc<dyn braid_node::env::Env>,
            senders,
            metrics: Metrics::default(),
            appended: Notify::new(),
            net: Some(net),
            leaders: RwLock::default(),
            published: RwLock::default(),
            cut_off: Default::default(),
            connections_accepted: Default::default(),
            replaced_disk: Default::default(),
            lost_peers: RwLock::default(),
            serving: tokio::sync::watch::Sender::new(false),
        });
        let mut shards = Vec::new();
        for (shard, inbox) in inboxes.into_iter().enumerate() {
            let meta = if shard == 0 {
                let store = MetaStore::open(storage.clone(), &config, Arc::clone(&shared.env))
                    .map_err(|e| format!("node {id}: opening the metadata store: {e:#}"))?;
                Some(store)
            } else {
                None
            };
            let (publish, publications) = mpsc::unbounded_channel();
            let mut state = ShardState::new(shard, Arc::clone(&shared), storage.clone(), meta, publish)
                .map_err(|e| format!("node {id} shard {shard}: {e}"))?;
            // Partition flushes as on a real node's ring: begun, then polled until the disk
            // says they ended.
            state.flush_partitions_on_ring();
            let (worker, txn_work) = mpsc::unbounded_channel();
            state.set_txn_worker(worker);
            shards.push(SimShard { state, inbox, publications, txn_work });
        }
        let router = ShardCtx {
            id: 0,
            shared: Arc::clone(&shared),
            snapshot: RefCell::new(Arc::default()),
            request_memory: Arc::new(Semaphore::new(1)),
        };
        static PROCESSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let process = PROCESSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(SimNode { id, process, shared, shards, router, peer_queues: outgoing.into_queues(), meta_sync: None })
    }

    /// The work the shards handed their transaction worker since last asked.
    pub fn take_txn_work(&mut self) -> Vec<TxnWork> {
        let mut out = Vec::new();
        for shard in &mut self.shards {
            while let Ok(work) = shard.txn_work.try_recv() {
                out.push(work);
            }
        }
        out
    }

    /// Raft messages from a peer, to the shards that own their groups.
    pub fn deliver(&self, messages: Vec<(GroupId, Message)>) {
        braid_node::runtime::deliver(&self.router, messages);
    }

    /// Tells the node a peer is lost or back, as its transport would.
    pub fn liveness(&self, peer: NodeId, back: bool) {
        braid_node::runtime::peer_liveness(&self.shared, peer, back);
    }

    /// Hands a message to a shard at once (its reply is ready when this returns, for the
    /// messages a shard answers without a round).
    pub fn handle(&mut self, shard: usize, msg: ShardMsg) {
        self.shards[shard].state.handle(msg);
    }

    /// Sends a message to a shard's queue, as a connection of this node would.
    pub fn send(&self, shard: usize, msg: ShardMsg) -> bool {
        self.shared.senders[shard].try_send(msg).is_ok()
    }

    /// One millisecond of the node: every shard handles what is queued and runs its round,
    /// the metadata fdatasync ends when due, ticks and retention when their time comes.
    pub fn pump(&mut self, now: u64, settings: &NodeSettings, rng: &mut SimRng, retention: bool) {
        // The node's own log lines name it (BRAID_SIM_LOG).
        let _node = tracing::info_span!("node", id = self.id).entered();
        for _ in 0..3 {
            let mut busy = false;
            for index in 0..self.shards.len() {
                busy |= self.drain(index);
                self.publish(index);
                self.round(index, now, settings, rng);
            }
            if !busy {
                break;
            }
        }
        if let Some((due, _)) = &self.meta_sync {
            if *due <= now {
                let (_, pending) = self.meta_sync.take().expect("checked");
                let synced = pending.sync();
                self.shards[0].state.end_meta_round(pending, synced);
                self.publish(0);
            }
        }
        if now.is_multiple_of(settings.raft_tick_ms) {
            for shard in &mut self.shards {
                shard.state.tick();
            }
        }
        if retention {
            for shard in &mut self.shards {
                shard.state.apply_retention();
            }
        }
    }

    /// Handles what is queued for a shard (at most a queue's worth); true if there was any.
    fn drain(&mut self, index: usize) -> bool {
        let mut handled = false;
        for _ in 0..SHARD_QUEUE_DEPTH {
            let Ok(msg) = self.shards[index].inbox.try_recv() else { break };
            handled = true;
            self.shards[index].state.handle(msg);
        }
        handled
    }

    /// Snapshots the metadata store published: applied by every shard, then the clients that
    /// waited for them answered (as the runtime's publisher does).
    fn publish(&mut self, index: usize) {
        while let Ok((snapshot, replies)) = self.shards[index].publications.try_recv() {
            for shard in &mut self.shards {
                let (ack, _) = oneshot::channel();
                shard.state.handle(ShardMsg::Snapshot { snapshot: Arc::clone(&snapshot), ack });
            }
            *self.router.snapshot.borrow_mut() = Arc::clone(&snapshot);
            *self.shared.published.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
            for (reply, result) in replies {
                let _ = reply.send(result);
            }
        }
    }

    /// The flusher's round on a shard (the runtime's `flush_round`).
    fn round(&mut self, index: usize, now: u64, settings: &NodeSettings, rng: &mut SimRng) {
        let state = &mut self.shards[index].state;
        state.poll_flushes();
        state.send_meta_leader_messages();
        if let Some(pending) = state.flush_dirty() {
            let due = now + rng.below(settings.max_sync_ms + 1);
            assert!(self.meta_sync.is_none(), "one metadata fdatasync at a time");
            self.meta_sync = Some((due, pending));
        }
    }

    /// Raft messages the node's shards queued for its peers.
    pub fn outgoing(&mut self) -> Vec<(GroupId, Message)> {
        let mut out = Vec::new();
        for (_, queue) in &mut self.peer_queues {
            while let Ok(item) = queue.try_recv() {
                out.push(item);
            }
        }
        out
    }

    /// Shard 0's state machine (the metadata store and the ZooKeeper server).
    pub fn shard0(&self) -> &ShardState<SimStorage> {
        &self.shards[0].state
    }

    /// A partition replica's raft state (for the trace), from whichever shard holds it.
    pub fn raft_status(&self, topic: &str, partition: i32) -> Option<String> {
        self.shards.iter().find_map(|s| s.state.raft_status(topic, partition))
    }

    pub fn serving(&self) -> bool {
        *self.shared.serving.borrow()
    }
}
