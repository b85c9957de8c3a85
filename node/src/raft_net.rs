//! Node-to-node transport of raft messages: one TCP connection per peer and direction, frames
//! of many groups' messages (engine/src/raft/wire.rs), reconnection with backoff.
//!
//! The connections run on shard 0's executor; any shard may `send`, which queues a message for
//! a peer without waiting (raft tolerates a lost message; a full queue drops it and counts it),
//! and every message received for this node is handed to the `deliver` callback (on shard 0) in
//! the order its connection carried it.
//!
//! Liveness, one heartbeat per pair of nodes for all their groups: a connection with nothing to
//! send for `ping_every` sends an empty frame (frames name their sender), and a peer is
//! reported lost when its connection to this node closes or nothing came from it for
//! `silence`, and back when a frame from it arrives again. Quiet raft groups rely on this to
//! learn that a leader is gone ([`braid_engine::raft::Raft::peer_lost`]).

use braid_engine::raft::wire::{self, GroupId};
use braid_engine::raft::{Message, NodeId};
use bytes::BytesMut;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE_DEPTH: usize = 65_536;
/// Messages coalesced into one frame, at most.
pub const FRAME_MESSAGES_MAX: usize = 4096;
const _: () = assert!(FRAME_MESSAGES_MAX <= PEER_QUEUE_DEPTH);
/// Reconnection backoff bounds.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Time allowed to receive the rest of a frame once its length arrived.
pub const FRAME_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters of a transport, for tests and /metrics.
#[derive(Default)]
pub struct NetStats {
    pub frames_sent: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub messages_received: AtomicU64,
    pub bad_frames: AtomicU64,
    /// Empty frames sent to keep a quiet connection's liveness heartbeat going.
    pub pings_sent: AtomicU64,
    /// Times a peer was reported lost (closed connection or silence).
    pub peers_lost: AtomicU64,
}

/// A raft message with the group it belongs to.
pub type Addressed = (GroupId, Message);

/// What the transport reports to the node (all called on the transport's shard).
pub struct Handlers {
    /// The messages for this node of each frame, in order.
    pub deliver: Box<dyn Fn(Vec<Addressed>)>,
    /// A peer is lost: its connection to this node closed, or it was silent for `silence`.
    pub lost: Box<dyn Fn(NodeId)>,
    /// A lost peer was heard from again.
    pub back: Box<dyn Fn(NodeId)>,
}

/// The liveness heartbeat's timing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A connection with nothing to send sends an empty frame this often (a raft tick).
    pub ping_every: Duration,
    /// A peer heard nothing from for this long is lost (an election timeout).
    pub silence: Duration,
}

/// When each peer was last heard from, and which are lost.
struct Liveness {
    heard: HashMap<NodeId, Instant>,
    lost: HashSet<NodeId>,
}

impl Liveness {
    /// A frame from `peer` arrived: true if it was lost until now.
    fn heard(&mut self, peer: NodeId) -> bool {
        match self.heard.get_mut(&peer) {
            Some(at) => *at = Instant::now(),
            // Not a member this node knows: no liveness to keep.
            None => return false,
        }
        self.lost.remove(&peer)
    }

    /// `peer`'s connection to this node closed: true if it was not lost already.
    fn closed(&mut self, peer: NodeId) -> bool {
        self.heard.contains_key(&peer) && self.lost.insert(peer)
    }

    /// Peers silent for `silence` that were not lost yet (now they are).
    fn silent(&mut self, silence: Duration) -> Vec<NodeId> {
        let now = Instant::now();
        let silent: Vec<NodeId> = self
            .heard
            .iter()
            .filter(|(id, at)| now.saturating_duration_since(**at) >= silence && !self.lost.contains(id))
            .map(|(id, _)| *id)
            .collect();
        self.lost.extend(&silent);
        silent
    }
}

/// The sending side: cheap to share between shards (each peer's queue is a thread-safe
/// channel); the connections themselves run on the shard that called [`spawn`].
pub struct RaftNet {
    local: NodeId,
    queues: HashMap<NodeId, mpsc::Sender<(GroupId, Message)>>,
    pub stats: Arc<NetStats>,
}

/// The receiving ends of the peer queues, with each peer's host:port (resolved at every
/// connection attempt), handed to [`spawn`].
pub struct Outgoing(Vec<(NodeId, String, PeerQueue)>);

pub type PeerQueue = mpsc::Receiver<(GroupId, Message)>;

impl Outgoing {
    /// Each peer's queue of messages to send, for a transport other than [`RaftNet::spawn`]'s
    /// (the simulator's network).
    pub fn into_queues(self) -> Vec<(NodeId, PeerQueue)> {
        self.0.into_iter().map(|(id, _, queue)| (id, queue)).collect()
    }
}

impl RaftNet {
    /// The queues to every peer but `local`, and their receiving ends for [`spawn`].
    pub fn new(local: NodeId, peers: &[(NodeId, String)]) -> (RaftNet, Outgoing) {
        let mut queues = HashMap::new();
        let mut outgoing = Vec::new();
        for (id, addr) in peers.iter().filter(|(id, _)| *id != local) {
            let (tx, rx) = mpsc::channel(PEER_QUEUE_DEPTH);
            queues.insert(*id, tx);
            outgoing.push((*id, addr.clone(), rx));
        }
        (RaftNet { local, queues, stats: Arc::new(NetStats::default()) }, Outgoing(outgoing))
    }

    /// `new` and `spawn` in one, for a transport used on one thread.
    pub fn start(
        local: NodeId,
        listener: TcpListener,
        peers: Vec<(NodeId, String)>,
        timing: Timing,
        handlers: Handlers,
    ) -> RaftNet {
        let (net, outgoing) = RaftNet::new(local, &peers);
        net.spawn(listener, outgoing, timing, handlers);
        net
    }

    /// Listens on `listener`, keeps a connection to each peer with its liveness heartbeat, and
    /// reports what arrives and who is lost or back to `handlers`. Must run inside a LocalSet.
    /// A peer process that dies closes its sockets: the quickest news that it is gone.
    pub fn spawn(&self, listener: TcpListener, outgoing: Outgoing, timing: Timing, handlers: Handlers) {
        // A peer that was reconnecting to a node down until now may be in its longest backoff:
        // it counts as heard at start for that long too, before silence makes it lost.
        let start = Instant::now() + BACKOFF_MAX;
        let liveness = Rc::new(RefCell::new(Liveness {
            heard: outgoing.0.iter().map(|(id, _, _)| (*id, start)).collect(),
            lost: HashSet::new(),
        }));
        let handlers = Rc::new(handlers);
        let receiving = Receiving { local: self.local, handlers, liveness, stats: Arc::clone(&self.stats) };
        let receiving = Rc::new(receiving);
        tokio::task::spawn_local(watch_silence(Rc::clone(&receiving), timing));
        tokio::task::spawn_local(accept_loop(listener, receiving));
        for (id, addr, rx) in outgoing.0 {
            let sending = Sending { local: self.local, peer: id, addr, ping_every: timing.ping_every };
            tokio::task::spawn_local(send_loop(sending, rx, Arc::clone(&self.stats)));
        }
    }

    /// Queues a message for its destination; false (and counted) if it had to be dropped.
    pub fn send(&self, group: GroupId, message: Message) -> bool {
        assert_eq!(message.from, self.local, "messages leave from this node");
        let queued = self.queues.get(&message.to).is_some_and(|q| q.try_send((group, message)).is_ok());
        if !queued {
            self.stats.messages_dropped.fetch_add(1, Relaxed);
        }
        queued
    }
}

/// One peer's outgoing connection: where it goes (host:port) and how often it pings.
struct Sending {
    local: NodeId,
    peer: NodeId,
    addr: String,
    ping_every: Duration,
}

/// Why a connection to a peer could not be made.
enum ConnectError {
    /// Its address did not resolve (yet).
    Resolve(std::io::Error),
    /// No address it resolved to accepted (the last one's error).
    Connect(std::io::Error),
}

/// Resolves `addr` (host:port) now and connects to the first of its addresses that accepts.
async fn connect(addr: &str) -> Result<TcpStream, ConnectError> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr).await.map_err(ConnectError::Resolve)?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the name resolves to no address");
    if resolved.is_empty() {
        return Err(ConnectError::Resolve(last));
    }
    for target in resolved {
        match TcpStream::connect(target).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(ConnectError::Connect(last))
}

async fn send_loop(sending: Sending, mut queue: mpsc::Receiver<(GroupId, Message)>, stats: Arc<NetStats>) {
    let Sending { local, peer, addr, ping_every } = sending;
    let mut backoff = BACKOFF_MIN;
    let mut pending: Vec<(GroupId, Message)> = Vec::new();
    let mut frame = wire::EncodedFrame::default();
    // The peer's name failed to resolve on the last attempt: said once (a warning) until it
    // resolves again, not at every retry.
    let mut unresolved = false;
    loop {
        let attempt = connect(&addr).await;
        if unresolved && !matches!(attempt, Err(ConnectError::Resolve(_))) {
            unresolved = false;
            tracing::info!(%peer, %addr, "raft peer's address resolves again");
        }
        let mut stream = match attempt {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                backoff = BACKOFF_MIN;
                stream
            }
            Err(failure) => {
                match failure {
                    ConnectError::Resolve(e) if !unresolved => {
                        unresolved = true;
                        tracing::warn!(%peer, %addr, error = %e, "raft peer's address does not resolve; retrying");
                    }
                    ConnectError::Resolve(e) => {
                        tracing::debug!(%peer, %addr, error = %e, "raft peer's address still does not resolve")
                    }
                    ConnectError::Connect(e) => {
                        tracing::debug!(%peer, %addr, error = %e, "raft peer unreachable; retrying")
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                // Messages queued meanwhile are stale by the time we connect; raft resends.
                while queue.try_recv().is_ok() {
                    stats.messages_dropped.fetch_add(1, Relaxed);
                }
                continue;
            }
        };
        loop {
            if pending.is_empty() {
                match tokio::time::timeout(ping_every, queue.recv()).await {
                    Ok(Some(first)) => pending.push(first),
                    Ok(None) => return,
                    // Nothing to send for a while: an empty frame tells the peer we live.
                    Err(_) => {
                        stats.pings_sent.fetch_add(1, Relaxed);
                    }
                }
            }
            while pending.len() < FRAME_MESSAGES_MAX {
                match queue.try_recv() {
                    Ok(next) => pending.push(next),
                    Err(_) => break,
                }
            }
            wire::encode_frame_parts(&mut frame, local, &pending);
            if let Err(e) = write_all_vectored(&mut stream, &frame).await {
                tracing::debug!(%peer, error = %e, "raft connection lost; reconnecting");
                stats.messages_dropped.fetch_add(pending.len() as u64, Relaxed);
                pending.clear();
                break;
            }
            stats.frames_sent.fetch_add(1, Relaxed);
            stats.messages_sent.fetch_add(pending.len() as u64, Relaxed);
            pending.clear();
        }
    }
}

/// Writes a frame's pieces with vectored writes: large entries go from the buffers the log
/// holds them in, without a copy.
async fn write_all_vectored(stream: &mut TcpStream, frame: &wire::EncodedFrame) -> std::io::Result<()> {
    let mut slices = frame.io_slices();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = stream.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// The receiving side: who we are, what to report to, and each peer's liveness.
struct Receiving {
    local: NodeId,
    handlers: Rc<Handlers>,
    liveness: Rc<RefCell<Liveness>>,
    stats: Arc<NetStats>,
}

impl Receiving {
    /// A frame from `peer`: it lives (reported back if it was lost).
    fn heard(&self, peer: NodeId) {
        if self.liveness.borrow_mut().heard(peer) {
            tracing::info!(%peer, "raft peer heard from again");
            (self.handlers.back)(peer);
        }
    }

    fn lost(&self, peer: NodeId, why: &str) {
        tracing::info!(%peer, why, "raft peer lost");
        self.stats.peers_lost.fetch_add(1, Relaxed);
        (self.handlers.lost)(peer);
    }
}

/// Reports peers silent for `timing.silence` as lost, checking every `ping_every`.
async fn watch_silence(receiving: Rc<Receiving>, timing: Timing) {
    let mut interval = tokio::time::interval(timing.ping_every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let silent = receiving.liveness.borrow_mut().silent(timing.silence);
        for peer in silent {
            receiving.lost(peer, "silent for an election timeout");
        }
    }
}

async fn accept_loop(listener: TcpListener, receiving: Rc<Receiving>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let receiving = Rc::clone(&receiving);
                tokio::task::spawn_local(async move {
                    // The peer is known once it has sent a frame; its end closing is news.
                    if let Some(id) = receive_loop(stream, peer, &receiving).await {
                        if receiving.liveness.borrow_mut().closed(id) {
                            receiving.lost(id, "its connection closed");
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "raft accept failed");
                tokio::time::sleep(BACKOFF_MIN).await;
            }
        }
    }
}

/// Reads one peer's connection until it ends; returns the peer's id if the peer's end closed
/// (or failed) after it sent a message, None if this end gave up on the connection.
async fn receive_loop(mut stream: TcpStream, peer: SocketAddr, receiving: &Receiving) -> Option<NodeId> {
    let (local, handlers, stats) = (receiving.local, &receiving.handlers, &receiving.stats);
    let mut from = None;
    let mut buffer = BytesMut::new();
    loop {
        let mut prefix = [0u8; 4];
        if stream.read_exact(&mut prefix).await.is_err() {
            return from;
        }
        let length = match wire::frame_length(prefix) {
            Ok(length) => length,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "bad raft frame; closing the connection");
                stats.bad_frames.fetch_add(1, Relaxed);
                // This end closes: not a sign the peer died.
                return None;
            }
        };
        // Read into spare capacity (nothing to clear first); the frame's entries keep their
        // part of it alive until the log has them, and the buffer is reused once they are gone.
        buffer.clear();
        buffer.reserve(length);
        let read = async {
            while buffer.len() < length {
                let mut limited = (&mut stream).take((length - buffer.len()) as u64);
                if limited.read_buf(&mut buffer).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
            }
            Ok(())
        };
        match tokio::time::timeout(FRAME_READ_TIMEOUT, read).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return from,
            // A peer too slow to finish a frame is alive.
            Err(_) => return None,
        }
        let body = buffer.split_to(length).freeze();
        match wire::decode_frame(&body) {
            Ok((sender, messages)) => {
                from = Some(sender);
                receiving.heard(sender);
                let mine: Vec<(GroupId, Message)> = messages.into_iter().filter(|(_, m)| m.to == local).collect();
                if !mine.is_empty() {
                    stats.messages_received.fetch_add(mine.len() as u64, Relaxed);
                    (handlers.deliver)(mine);
                }
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "undecodable raft frame; closing the connection");
                stats.bad_frames.fetch_add(1, Relaxed);
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_engine::raft::Body;
    use std::cell::RefCell;

    const TIMING: Timing = Timing { ping_every: Duration::from_millis(20), silence: Duration::from_secs(2) };

    /// Handlers that deliver to `deliver` and record lost and back peers.
    fn handlers(
        deliver: impl Fn(GroupId, Message) + 'static,
        events: Rc<RefCell<Vec<(&'static str, NodeId)>>>,
    ) -> Handlers {
        let back = Rc::clone(&events);
        Handlers {
            deliver: Box::new(move |messages| messages.into_iter().for_each(|(g, m)| deliver(g, m))),
            lost: Box::new(move |peer| events.borrow_mut().push(("lost", peer))),
            back: Box::new(move |peer| back.borrow_mut().push(("back", peer))),
        }
    }

    fn message(from: NodeId, to: NodeId, n: u64) -> Message {
        let body = match n % 3 {
            0 => Body::Heartbeat { commit: n as i64, sent_end: n as i64, quiesce: false },
            1 => Body::Append {
                prev_end: n as i64,
                prev_term: 1,
                // Some entries large enough to leave from their own buffers.
                entries: vec![braid_engine::log::batch::build_batch(
                    n as i64,
                    &[&vec![n as u8; (n % 5) as usize * 9000]],
                )
                .into()],
                commit: 0,
            },
            _ => Body::AppendReply { accepted: true, end: n as i64 },
        };
        Message { from, to, term: n, body }
    }

    /// Two transports on loopback: everything sent arrives, in order, and garbage from a third
    /// party closes only its own connection.
    #[test]
    fn messages_cross_between_two_nodes_in_order() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let l1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let (a1, a2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
            let received: Rc<RefCell<Vec<(GroupId, Message)>>> = Rc::default();
            let sink = Rc::clone(&received);
            let events = Rc::default();
            let peers = vec![(NodeId::from(1), a1.to_string()), (NodeId::from(2), a2.to_string())];
            let net1 =
                RaftNet::start(NodeId::from(1), l1, peers.clone(), TIMING, handlers(|_, _| {}, Rc::clone(&events)));
            let deliver = move |g, m| sink.borrow_mut().push((g, m));
            let net2 = RaftNet::start(NodeId::from(2), l2, peers, TIMING, handlers(deliver, events));
            let group = GroupId { topic_id: 42, partition: 3 };
            // Garbage first, on its own connection.
            let mut junk = TcpStream::connect(a2).await.unwrap();
            junk.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.unwrap();
            let count = 10_000u64;
            let mut sent = 0;
            for n in 0..count {
                while !net1.send(group, message(NodeId::from(1), NodeId::from(2), n)) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                sent += 1;
                if n % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while received.borrow().len() < sent as usize && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let got = received.borrow();
            // Messages sent before the connection was up may be dropped (raft resends); what
            // arrives is in order and intact.
            assert!(got.len() as u64 >= count - 100, "only {} of {count} arrived", got.len());
            let terms: Vec<u64> = got.iter().map(|(_, m)| m.term).collect();
            assert!(terms.windows(2).all(|w| w[0] < w[1]), "out of order");
            for (g, m) in got.iter() {
                assert_eq!(*g, group);
                assert_eq!(*m, message(NodeId::from(1), NodeId::from(2), m.term));
            }
            assert!(
                net1.stats.frames_sent.load(Relaxed) < net1.stats.messages_sent.load(Relaxed),
                "messages share frames"
            );
            assert_eq!(net2.stats.bad_frames.load(Relaxed), 1, "the garbage connection was refused");
        });
    }

    /// A peer given by host name is resolved when the transport connects to it.
    #[test]
    fn a_peer_named_by_host_name_is_reached() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let l1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let peers = vec![
                (NodeId::from(1), format!("localhost:{}", l1.local_addr().unwrap().port())),
                (NodeId::from(2), format!("localhost:{}", l2.local_addr().unwrap().port())),
            ];
            let received: Rc<RefCell<Vec<Message>>> = Rc::default();
            let sink = Rc::clone(&received);
            let net1 = RaftNet::start(NodeId::from(1), l1, peers.clone(), TIMING, handlers(|_, _| {}, Rc::default()));
            let deliver = move |_, m| sink.borrow_mut().push(m);
            let _net2 = RaftNet::start(NodeId::from(2), l2, peers, TIMING, handlers(deliver, Rc::default()));
            let group = GroupId { topic_id: 1, partition: 0 };
            // Raft resends what a connection not yet up lost: so does this test, bounded.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while received.borrow().is_empty() && tokio::time::Instant::now() < deadline {
                net1.send(group, message(NodeId::from(1), NodeId::from(2), 0));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(received.borrow().first(), Some(&message(NodeId::from(1), NodeId::from(2), 0)));
        });
    }

    /// Waits (bounded) until `events` holds `want`.
    async fn wait_events(events: &Rc<RefCell<Vec<(&'static str, NodeId)>>>, want: &[(&'static str, NodeId)]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while events.borrow().as_slice() != want && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(events.borrow().as_slice(), want);
    }

    /// A peer's connection that closes is reported with the peer's id (from its frames); a
    /// connection that never sent one is not, and a frame from the peer again reports it back.
    #[test]
    fn a_closed_peer_connection_is_reported_with_the_peer_id() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let events: Rc<RefCell<Vec<(&'static str, NodeId)>>> = Rc::default();
            // Node 7's own listener is nowhere: only its connection to us carries news.
            let (net, outgoing) = RaftNet::new(
                NodeId::from(2),
                &[(NodeId::from(2), addr.to_string()), (NodeId::from(7), "127.0.0.1:1".to_owned())],
            );
            let slow = Timing { silence: Duration::from_secs(60), ..TIMING };
            net.spawn(listener, outgoing, slow, handlers(|_, _| {}, Rc::clone(&events)));
            // A connection that sends nothing, then one from node 7 that sends a message.
            drop(TcpStream::connect(addr).await.unwrap());
            let mut peer = TcpStream::connect(addr).await.unwrap();
            let group = GroupId { topic_id: 1, partition: 0 };
            peer.write_all(&wire::encode_frame(
                NodeId::from(7),
                &[(group, message(NodeId::from(7), NodeId::from(2), 1))],
            ))
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(events.borrow().is_empty(), "reported while open");
            drop(peer);
            wait_events(&events, &[("lost", NodeId::from(7))]).await;
            // Back: an empty frame (a liveness heartbeat) is enough.
            let mut peer = TcpStream::connect(addr).await.unwrap();
            peer.write_all(&wire::encode_frame(NodeId::from(7), &[])).await.unwrap();
            wait_events(&events, &[("lost", NodeId::from(7)), ("back", NodeId::from(7))]).await;
        });
    }

    /// A peer that keeps its connection open but sends nothing for the silence is lost, and
    /// back once a frame comes; a live transport's own heartbeats keep it from being lost.
    #[test]
    fn a_silent_peer_is_lost_and_a_pinging_one_is_not() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let l3 = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let (a2, a3) = (l2.local_addr().unwrap(), l3.local_addr().unwrap());
            let events: Rc<RefCell<Vec<(&'static str, NodeId)>>> = Rc::default();
            let peers = vec![
                (NodeId::from(2), a2.to_string()),
                (NodeId::from(3), a3.to_string()),
                (NodeId::from(7), "127.0.0.1:1".to_owned()),
            ];
            let _net2 =
                RaftNet::start(NodeId::from(2), l2, peers.clone(), TIMING, handlers(|_, _| {}, Rc::clone(&events)));
            let _net3 = RaftNet::start(NodeId::from(3), l3, peers, TIMING, handlers(|_, _| {}, Rc::default()));
            let mut peer = TcpStream::connect(a2).await.unwrap();
            peer.write_all(&wire::encode_frame(NodeId::from(7), &[])).await.unwrap();
            // Node 7 goes silent; node 3 sends nothing but its heartbeats (a hundred in the
            // silence), so only node 7 is lost.
            wait_events(&events, &[("lost", NodeId::from(7))]).await;
            peer.write_all(&wire::encode_frame(NodeId::from(7), &[])).await.unwrap();
            wait_events(&events, &[("lost", NodeId::from(7)), ("back", NodeId::from(7))]).await;
        });
    }
}
