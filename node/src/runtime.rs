//! The thread-per-core runtime: one pinned thread per shard, each with a single-threaded
//! executor, its own io_uring (the storage ring) and its own Kafka listener (SO_REUSEPORT, so
//! the kernel spreads connections over shards).
//!
//! ```text
//!  main thread: start shards, wait for SIGINT/SIGTERM, hand every leadership over (a cluster),
//!               ask every shard to flush and stop
//!  shard k:     accept loop ─► connections (kafka::serve) ─► ShardMsg to the owning shard
//!               message loop (ShardState::handle)   flusher (group commit)   retention timer
//!               raft ticker (every --raft-tick-ms)
//!  shard 0:     also the metadata store (group 0), the ZooKeeper listener and its
//!               connections (beside the tree), the admin HTTP listener and the raft
//!               transport (connections to peers; received messages go to the owning shard)
//! ```

use crate::config::NodeConfig;
use crate::meta::{MetaStore, SharedSnapshot};
use crate::metrics::Metrics;
use crate::msg::{Publication, ShardMsg, SHARD_QUEUE_DEPTH};
use crate::process::{keep_large_buffers_on_the_heap, raise_open_file_limit};
use crate::raft_net::{Handlers, Outgoing, RaftNet, Timing};
use crate::replica::PendingPersist;
use crate::shard::ShardState;
use crate::shared::{owner_shard, ShardCtx, Shared};
use anyhow::Context;
use braid_engine::io::UringStorage;
use braid_engine::raft::wire::GroupId;
use braid_engine::raft::{Message, NodeId};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(cpu, error = %std::io::Error::last_os_error(), "could not pin shard thread");
        }
    }
}

fn reuse_port_listener(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into()).with_context(|| format!("binding {addr}"))?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Checks io_uring and O_DIRECT on the data directory before any shard starts, so a bad
/// environment is one clear message instead of a failure per shard.
fn preflight(config: &mut NodeConfig) -> anyhow::Result<()> {
    let open_files = raise_open_file_limit();
    tracing::info!(open_files, "open-file limit (each partition replica holds one to two descriptors)");
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    crate::data_format::check(&config.data_dir)?;
    UringStorage::new(config.direct_io)?;
    if config.direct_io {
        use std::os::unix::fs::OpenOptionsExt;
        let probe = config.data_dir.join(".direct-io-probe");
        let result = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe);
        let _ = std::fs::remove_file(&probe);
        if let Err(e) = result {
            tracing::warn!(dir = %config.data_dir.display(), error = %e, "O_DIRECT is not available here; writing through the page cache");
            config.direct_io = false;
        }
    }
    Ok(())
}

/// Runs a node until SIGINT or SIGTERM.
pub fn run(mut config: NodeConfig) -> anyhow::Result<()> {
    preflight(&mut config)?;
    keep_large_buffers_on_the_heap();
    let env: crate::env::SharedEnv = Arc::new(crate::env::SystemEnv);
    // Maps iterate in an order no client can predict (nor aim collisions at).
    braid_engine::hash::set_keys(env.random(), env.random());
    let shards = config.cores;
    let mut receivers = Vec::with_capacity(shards);
    let mut senders = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (tx, rx) = mpsc::channel(SHARD_QUEUE_DEPTH);
        senders.push(tx);
        receivers.push(rx);
    }
    let peers: Vec<(NodeId, String)> =
        config.peers.iter().filter_map(|(id, addr)| Some((NodeId::new(*id)?, addr.to_string()))).collect();
    let (net, outgoing) = if peers.is_empty() {
        (None, None)
    } else {
        let (net, outgoing) = RaftNet::new(config.raft_id(), &peers);
        (Some(net), Some(outgoing))
    };
    let mut outgoing = outgoing;
    let shared = Arc::new(Shared {
        config: config.clone(),
        env,
        senders,
        metrics: Metrics::default(),
        appended: Notify::new(),
        net,
        leaders: RwLock::default(),
        published: RwLock::default(),
        cut_off: Default::default(),
        connections_accepted: Default::default(),
        replaced_disk: Default::default(),
        lost_peers: RwLock::default(),
        serving: tokio::sync::watch::Sender::new(false),
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(usize, anyhow::Result<()>)>();
    let mut threads = Vec::new();
    for (id, rx) in receivers.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let ready = ready_tx.clone();
        let outgoing = if id == 0 { outgoing.take() } else { None };
        let cpu = shared.config.cpuset[id % shared.config.cpuset.len()];
        let thread = std::thread::Builder::new().name(format!("shard-{id}")).spawn(move || {
            pin_to_cpu(cpu);
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready.send((id, Err(e.into())));
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, shard_main(id, shared, rx, outgoing, ready));
        })?;
        threads.push(thread);
    }
    drop(ready_tx);
    for _ in 0..shards {
        let (id, result) = ready_rx.recv().context("a shard thread died during start-up")?;
        if let Err(e) = result {
            for tx in &shared.senders {
                let (ack, _) = oneshot::channel();
                let _ = tx.try_send(ShardMsg::Shutdown { ack });
            }
            return Err(e.context(format!("starting shard {id}")));
        }
    }
    let kafka = kafka_listeners_line(&config);
    tracing::info!(
        node_id = config.node_id, %kafka, zookeeper = %config.zk_addr, admin = %config.admin_addr, shards,
        data_dir = %config.data_dir.display(), direct_io = config.direct_io, "braid node started"
    );
    let cluster = match config.raft_addr {
        Some(raft) if !config.peers.is_empty() => format!(", raft on {raft} with {} nodes", config.peers.len()),
        _ => String::new(),
    };
    // The same as the line above, for a person; a log shipper reading JSON gets that one alone.
    if !crate::process::json_logs() {
        eprintln!(
            "braid: node {} serving Kafka on {kafka}, ZooKeeper on {} (admin http://{}){cluster}, data in {}",
            config.node_id,
            config.zk_addr,
            config.admin_addr,
            config.data_dir.display()
        );
    }

    let signals = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    signals.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        hand_over_leaderships(&shared).await;
        tracing::info!("stopping: flushing every partition");
        for tx in &shared.senders {
            let (ack, done) = oneshot::channel();
            if tx.send(ShardMsg::Shutdown { ack }).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(30), done).await;
            }
        }
        anyhow::Ok(())
    })?;
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

/// How long a stopping node waits for its leaderships to move before it stops anyway.
const HAND_OVER_MS: u64 = 5_000;

/// A graceful stop's first step (on a cluster): every group this node leads hands its
/// leadership to another voter, and the node waits (bounded) until it leads none, so that
/// clients meet other leaders at once instead of waiting for an election after it is gone.
async fn hand_over_leaderships(shared: &Shared) {
    if shared.config.peers.len() < 2 {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(HAND_OVER_MS);
    let mut first = None;
    loop {
        let mut leading = 0;
        for tx in &shared.senders {
            let (reply, answer) = oneshot::channel();
            if tx.send(ShardMsg::HandOver { reply }).await.is_ok() {
                leading +=
                    tokio::time::timeout(Duration::from_secs(1), answer).await.ok().and_then(Result::ok).unwrap_or(0);
            }
        }
        let first = *first.get_or_insert(leading);
        if leading == 0 {
            tracing::info!(leaderships = first, "stopping: every leadership handed over");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(still_leading = leading, of = first, "stopping: some leaderships did not move in time");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Kafka listeners as the start-up line shows them: where each binds, with its name when
/// there are several, and what it advertises when that is not its own address.
fn kafka_listeners_line(config: &NodeConfig) -> String {
    let several = config.kafka_listeners.len() > 1;
    let shown: Vec<String> = config
        .kafka_listeners
        .iter()
        .map(|l| {
            let name = if several { format!("{} ", l.name) } else { String::new() };
            let bound = crate::config::HostPort { host: l.addr.ip().to_string(), port: l.addr.port() };
            let advertised =
                if l.advertised == bound { String::new() } else { format!(" (advertised {})", l.advertised) };
            format!("{name}{}{advertised}", l.addr)
        })
        .collect();
    shown.join(", ")
}

/// What a shard binds and opens before it serves: its storage, the metadata store (shard 0),
/// and its listeners.
struct ShardStart {
    storage: UringStorage,
    meta: Option<MetaStore>,
    /// Every Kafka listener; a connection keeps the index of its listener.
    listeners: Vec<tokio::net::TcpListener>,
    admin: Option<tokio::net::TcpListener>,
    raft_listener: Option<tokio::net::TcpListener>,
    zk: Option<tokio::net::TcpListener>,
}

async fn open_shard(id: usize, shared: &Shared, outgoing: &Option<Outgoing>) -> anyhow::Result<ShardStart> {
    let memory = braid_engine::io::MemoryBudget::new(
        shared.config.write_buffer_memory_bytes,
        shared.config.replication_cache_bytes,
    );
    let storage = UringStorage::new(shared.config.direct_io)?.with_memory(memory);
    // The metadata log writes small batches, a few per round: through the page cache, one
    // fdatasync each round costs less than O_DIRECT writes plus the sync (decision 0006).
    let meta = if id == 0 {
        Some(MetaStore::open(UringStorage::new(false)?, &shared.config, Arc::clone(&shared.env))?)
    } else {
        None
    };
    let raft_listener = match (outgoing, shared.config.raft_addr) {
        (Some(_), Some(addr)) => {
            Some(tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding raft listener {addr}"))?)
        }
        _ => None,
    };
    // Every Kafka listener on every shard; a connection keeps the index of its listener.
    let mut listeners = Vec::with_capacity(shared.config.kafka_listeners.len());
    for kafka in &shared.config.kafka_listeners {
        let listener = reuse_port_listener(kafka.addr).with_context(|| format!("Kafka listener {}", kafka.name))?;
        listeners.push(tokio::net::TcpListener::from_std(listener)?);
    }
    let admin = if id == 0 {
        let std_listener = std::net::TcpListener::bind(shared.config.admin_addr)
            .with_context(|| format!("binding admin {}", shared.config.admin_addr))?;
        std_listener.set_nonblocking(true)?;
        Some(tokio::net::TcpListener::from_std(std_listener)?)
    } else {
        None
    };
    // ZooKeeper clients are served on shard 0, beside the tree (connections on the other
    // shards measured slower: decision 0006, item 12).
    let zk = if id == 0 {
        let addr = shared.config.zk_addr;
        Some(tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding ZooKeeper listener {addr}"))?)
    } else {
        None
    };
    Ok(ShardStart { storage, meta, listeners, admin, raft_listener, zk })
}

async fn shard_main(
    id: usize,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<ShardMsg>,
    outgoing: Option<Outgoing>,
    ready: std::sync::mpsc::Sender<(usize, anyhow::Result<()>)>,
) {
    let start = match open_shard(id, &shared, &outgoing).await {
        Ok(parts) => parts,
        Err(e) => {
            let _ = ready.send((id, Err(e)));
            return;
        }
    };
    // Snapshots that shard 0 publishes after a metadata change: sent to every shard, and the
    // clients are answered once all have applied it (so their next request finds the topic).
    let (publish_tx, publish_rx) = mpsc::unbounded_channel::<Publication>();
    let state = match ShardState::new(id, Arc::clone(&shared), start.storage, start.meta, publish_tx) {
        Ok(state) => Rc::new(RefCell::new(state)),
        Err(e) => {
            let dir = shared.config.data_dir.join(crate::shard::JOURNAL_DIR);
            let _ = ready.send((id, Err(anyhow::anyhow!("opening the hard-state journal in {}: {e}", dir.display()))));
            return;
        }
    };
    let ctx = Rc::new(ShardCtx {
        id,
        shared: Arc::clone(&shared),
        snapshot: RefCell::new(Arc::default()),
        request_memory: Arc::new(Semaphore::new(shared.config.shard_request_memory / 1024)),
    });

    tokio::task::spawn_local(publish(Arc::clone(&shared), publish_rx));
    let (markers_tx, markers_rx) = mpsc::unbounded_channel();
    state.borrow_mut().set_txn_worker(markers_tx);
    tokio::task::spawn_local(crate::kafka::handlers::txn::worker(Rc::clone(&ctx), markers_rx));
    if let (Some(listener), Some(outgoing), Some(net)) = (start.raft_listener, outgoing, shared.net.as_ref()) {
        spawn_raft_net(&ctx, net, listener, outgoing);
    }
    tokio::task::spawn_local(tick(Rc::clone(&state), Duration::from_millis(shared.config.raft_tick_ms)));
    spawn_flusher(id, &state);
    let retention_every = Duration::from_millis(shared.config.retention_check_ms.max(10));
    tokio::task::spawn_local(retention(Rc::clone(&state), retention_every));
    let connections = Arc::new(Semaphore::new(shared.config.max_connections_per_shard));
    for (index, listener) in start.listeners.into_iter().enumerate() {
        tokio::task::spawn_local(accept_kafka(Rc::clone(&ctx), listener, index, Arc::clone(&connections)));
    }
    if let Some(admin) = start.admin {
        tokio::task::spawn_local(crate::admin::serve(Arc::clone(&shared), admin));
    }
    if let Some(zk) = start.zk {
        tokio::task::spawn_local(accept_zk(Arc::clone(&shared), zk));
    }
    let _ = ready.send((id, Ok(())));

    while let Some(msg) = rx.recv().await {
        if let ShardMsg::Snapshot { snapshot, .. } = &msg {
            if snapshot.zxid >= ctx.snapshot.borrow().zxid {
                *ctx.snapshot.borrow_mut() = Arc::clone(snapshot);
            }
        }
        if !state.borrow_mut().handle(msg) {
            break;
        }
    }
}

/// Sends each snapshot shard 0 publishes to every shard, then answers the clients that waited
/// for it.
async fn publish(shared: Arc<Shared>, mut publish_rx: mpsc::UnboundedReceiver<Publication>) {
    while let Some((snapshot, replies)) = publish_rx.recv().await {
        broadcast(&shared, Arc::clone(&snapshot)).await;
        *shared.published.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
    }
}

/// Starts this shard's side of the peer connections: what arrives is delivered to the shards.
fn spawn_raft_net(ctx: &Rc<ShardCtx>, net: &RaftNet, listener: tokio::net::TcpListener, outgoing: Outgoing) {
    let shared = &ctx.shared;
    let deliver_ctx = Rc::clone(ctx);
    let (lost_shared, back_shared) = (Arc::clone(shared), Arc::clone(shared));
    let tick = Duration::from_millis(shared.config.raft_tick_ms);
    let timing = Timing { ping_every: tick, silence: tick * crate::replica::ELECTION_TICKS };
    let handlers = Handlers {
        deliver: Box::new(move |messages| deliver(&deliver_ctx, messages)),
        lost: Box::new(move |peer| peer_liveness(&lost_shared, peer, false)),
        back: Box::new(move |peer| peer_liveness(&back_shared, peer, true)),
    };
    net.spawn(listener, outgoing, timing, handlers);
}

/// The shard's clock: one tick every `every`.
async fn tick(state: Rc<RefCell<ShardState>>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        state.borrow_mut().tick();
    }
}

/// Retention and compaction, every `every`.
async fn retention(state: Rc<RefCell<ShardState>>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.tick().await;
    loop {
        interval.tick().await;
        state.borrow_mut().apply_retention();
    }
}

/// Group commit: after each burst of messages, flush what is dirty. Partition flushes run
/// on the ring; the flusher also wakes when the ring completes something, to end them.
fn spawn_flusher(id: usize, state: &Rc<RefCell<ShardState>>) {
    let flush_needed = state.borrow().flush_needed();
    let ring_done = match state.borrow().ring_completion_fd() {
        Ok(fd) => {
            // SAFETY: an OwnedFd is open, and the same descriptor, for as long as the AsyncFd owns it.
            match unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) } {
                Ok(fd) => Some(fd),
                Err(e) => {
                    tracing::warn!(shard = id, error = %e, "cannot wait on the ring's eventfd; partition logs flush synchronously");
                    None
                }
            }
        }
        Err(e) => {
            tracing::warn!(shard = id, error = %e, "no completion eventfd for the ring; partition logs flush synchronously");
            None
        }
    };
    if ring_done.is_some() {
        state.borrow_mut().flush_partitions_on_ring();
    }
    let flusher_state = Rc::clone(state);
    tokio::task::spawn_local(async move {
        loop {
            let running = flusher_state.borrow().flushes_running();
            match (&ring_done, running) {
                (Some(fd), true) => {
                    tokio::select! {
                        _ = flush_needed.notified() => {}
                        _ = ring_completion(fd) => {}
                    }
                }
                _ => flush_needed.notified().await,
            }
            flush_round(&flusher_state, &flush_needed).await;
        }
    });
}

/// One round of the flusher, once it woke.
async fn flush_round(flusher_state: &Rc<RefCell<ShardState>>, flush_needed: &Notify) {
    flusher_state.borrow_mut().poll_flushes();
    // A metadata leader's appends go out before its own fdatasync, so its followers
    // persist in parallel; the yield lets the peer connections (tasks on a shard's
    // thread) write them to their sockets before the flush holds the thread.
    if flusher_state.borrow_mut().send_meta_leader_messages() {
        tokio::task::yield_now().await;
    }
    let meta_sync = flusher_state.borrow_mut().flush_dirty();
    if flusher_state.borrow().opening_pending() {
        // Replicas still to open: the rest of the shard runs first, then the next batch.
        flush_needed.notify_one();
        tokio::task::yield_now().await;
    }
    if let Some(pending) = meta_sync {
        // The metadata log's fdatasync on a blocking thread: meanwhile this shard
        // serves clients and peers, and what they propose goes in the next round.
        let state = Rc::clone(flusher_state);
        tokio::task::spawn_local(async move {
            let (pending, synced) = sync_off_thread(pending).await;
            state.borrow_mut().end_meta_round(pending, synced);
        });
    }
}

/// Accepts Kafka connections on one listener, within the shard's connection limit.
async fn accept_kafka(
    accept_ctx: Rc<ShardCtx>,
    listener: tokio::net::TcpListener,
    index: usize,
    connections: Arc<Semaphore>,
) {
    until_serving(&accept_ctx.shared).await;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if accept_ctx.shared.cut_off.load(std::sync::atomic::Ordering::Relaxed) {
                    drop(stream);
                    continue;
                }
                let Ok(slot) = Arc::clone(&connections).try_acquire_owned() else {
                    // Over the limit: closing at once bounds the shard's memory; the client
                    // sees its connection refused and retries (or goes to another node).
                    tracing::warn!(%peer, limit = accept_ctx.shared.config.max_connections_per_shard, "connection limit reached; closing a new connection");
                    accept_ctx.shared.metrics.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                accept_ctx.shared.metrics.connections_opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let ctx = Rc::clone(&accept_ctx);
                tokio::task::spawn_local(async move {
                    crate::kafka::serve(ctx, stream, peer, index).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accepts ZooKeeper connections (shard 0).
async fn accept_zk(zk_shared: Arc<Shared>, zk: tokio::net::TcpListener) {
    until_serving(&zk_shared).await;
    let mut next_conn = 0u64;
    loop {
        match zk.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                next_conn += 1;
                tokio::task::spawn_local(crate::zk::conn::serve(Arc::clone(&zk_shared), stream, peer, next_conn));
            }
            Err(e) => {
                tracing::warn!(error = %e, "ZooKeeper accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Waits until this node serves clients ([`Shared::serving`]).
async fn until_serving(shared: &Shared) {
    let mut serving = shared.serving.subscribe();
    let _ = serving.wait_for(|&serving| serving).await;
}

/// Records a peer lost or back, and tells every shard to bring its groups in line.
pub fn peer_liveness(shared: &Shared, peer: NodeId, back: bool) {
    {
        let mut lost = shared.lost_peers.write().unwrap_or_else(|e| e.into_inner());
        let changed = if back { lost.1.remove(&peer) } else { lost.1.insert(peer) };
        if !changed {
            return;
        }
        lost.0 += 1;
    }
    for shard in &shared.senders {
        // Dropped if the queue is full: the shard's next tick looks anyway.
        let _ = shard.try_send(ShardMsg::Liveness);
    }
}

/// Hands the raft messages of a frame received from a peer to the shards owning their groups,
/// one queue entry per shard (dropped if a group is unknown here yet, or the shard's queue is
/// full: raft sends again; counted).
pub fn deliver(ctx: &ShardCtx, messages: Vec<(GroupId, Message)>) {
    let shards = ctx.shared.senders.len();
    let mut by_shard: Vec<Vec<(GroupId, Message)>> = (0..shards).map(|_| Vec::new()).collect();
    let mut unknown = 0u64;
    {
        let snapshot = ctx.snapshot.borrow();
        for (group, message) in messages {
            let shard = if group == GroupId::METADATA {
                0
            } else {
                match snapshot.names.get(&group.topic_id) {
                    Some(name) => owner_shard(name, group.partition, shards),
                    None => {
                        unknown += 1;
                        continue;
                    }
                }
            };
            by_shard[shard].push((group, message));
        }
    }
    let metrics = &ctx.shared.metrics;
    metrics.raft_messages_dropped.fetch_add(unknown, std::sync::atomic::Ordering::Relaxed);
    for (shard, messages) in by_shard.into_iter().enumerate().filter(|(_, m)| !m.is_empty()) {
        let count = messages.len() as u64;
        if ctx.shared.senders[shard].try_send(ShardMsg::Raft { messages }).is_err() {
            metrics.raft_messages_dropped.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Sends a snapshot to every shard and waits until each has applied it.
pub async fn broadcast(shared: &Shared, snapshot: SharedSnapshot) {
    let mut acks = Vec::new();
    for tx in &shared.senders {
        let (ack, done) = oneshot::channel();
        if tx.send(ShardMsg::Snapshot { snapshot: Arc::clone(&snapshot), ack }).await.is_ok() {
            acks.push(done);
        }
    }
    for done in acks {
        let _ = done.await;
    }
}

/// Waits until the ring signals a completion (its eventfd is readable), and consumes the signal.
async fn ring_completion(fd: &tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>) {
    loop {
        let Ok(mut guard) = fd.readable().await else {
            // The reactor failed us: poll again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(1)).await;
            return;
        };
        let drained = guard.try_io(|fd| {
            let mut count = [0u8; 8];
            // SAFETY: reads 8 bytes into a buffer of 8 from a descriptor this task owns.
            let n = unsafe { libc::read(std::os::fd::AsRawFd::as_raw_fd(fd.get_ref()), count.as_mut_ptr().cast(), 8) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
        if drained.is_ok() {
            return;
        }
    }
}

/// Runs a persist round's fdatasync on tokio's blocking threads.
async fn sync_off_thread(pending: PendingPersist) -> (PendingPersist, std::io::Result<()>) {
    let synced = match tokio::task::spawn_blocking(pending.syncer()).await {
        Ok(synced) => synced,
        Err(e) => Err(std::io::Error::other(format!("the fdatasync's thread failed: {e}"))),
    };
    (pending, synced)
}
