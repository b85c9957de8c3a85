//! Node-to-node transport of raft messages: one TCP connection per peer and direction, frames
//! of many groups' messages (engine/src/raft/wire.rs), reconnection with backoff. A peer's
//! address (host:port) is resolved at every connection attempt: its name may not resolve
//! until its node is up, or may move to another IP when it restarts.
//!
//! The connections run on shard 0's executor; any shard may `send`, which queues a message for
//! a peer without waiting (raft tolerates a lost message; a full queue drops it and counts it),
//! and every message received for this node is handed to the `deliver` callback (on shard 0) in
//! the order its connection carried it.

use braid_engine::raft::wire::{self, GroupId};
use braid_engine::raft::{Message, NodeId};
use bytes::BytesMut;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE_DEPTH: usize = 65_536;
/// Messages coalesced into one frame, at most.
pub const FRAME_MESSAGES_MAX: usize = 4096;
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
}

/// The sending side: cheap to share between shards (each peer's queue is a thread-safe
/// channel); the connections themselves run on the shard that called [`spawn`].
pub struct RaftNet {
    local: NodeId,
    queues: HashMap<NodeId, mpsc::Sender<(GroupId, Message)>>,
    pub stats: Arc<NetStats>,
}

/// The receiving ends of the peer queues, with each peer's address (host:port), handed to
/// [`spawn`].
pub struct Outgoing(Vec<(NodeId, String, PeerQueue)>);

type PeerQueue = mpsc::Receiver<(GroupId, Message)>;

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
        deliver: impl Fn(GroupId, Message) + 'static,
    ) -> RaftNet {
        let (net, outgoing) = RaftNet::new(local, &peers);
        net.spawn(listener, outgoing, deliver, |_| {});
        net
    }

    /// Listens on `listener` and keeps a connection to each peer. Must run inside a LocalSet.
    /// `deliver` gets every message for this node; `closed` the id of a peer whose connection
    /// to this node closed (a peer process that dies closes its sockets: raft's hint to stop
    /// waiting for a leader that is gone, [`braid_engine::raft::Raft::peer_lost`]).
    pub fn spawn(
        &self,
        listener: TcpListener,
        outgoing: Outgoing,
        deliver: impl Fn(GroupId, Message) + 'static,
        closed: impl Fn(NodeId) + 'static,
    ) {
        let handlers = Rc::new(Handlers { deliver: Box::new(deliver), closed: Box::new(closed) });
        tokio::task::spawn_local(accept_loop(self.local, listener, handlers, Arc::clone(&self.stats)));
        for (id, addr, rx) in outgoing.0 {
            tokio::task::spawn_local(send_loop(id, addr, rx, Arc::clone(&self.stats)));
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

async fn send_loop(peer: NodeId, addr: String, mut queue: mpsc::Receiver<(GroupId, Message)>, stats: Arc<NetStats>) {
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
            tracing::info!(peer, %addr, "raft peer's address resolves again");
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
                        tracing::warn!(peer, %addr, error = %e, "raft peer's address does not resolve; retrying");
                    }
                    ConnectError::Resolve(e) => {
                        tracing::debug!(peer, %addr, error = %e, "raft peer's address still does not resolve")
                    }
                    ConnectError::Connect(e) => {
                        tracing::debug!(peer, %addr, error = %e, "raft peer unreachable; retrying")
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
                match queue.recv().await {
                    Some(first) => pending.push(first),
                    None => return,
                }
            }
            while pending.len() < FRAME_MESSAGES_MAX {
                match queue.try_recv() {
                    Ok(next) => pending.push(next),
                    Err(_) => break,
                }
            }
            wire::encode_frame_parts(&mut frame, &pending);
            if let Err(e) = write_all_vectored(&mut stream, &frame).await {
                tracing::debug!(peer, error = %e, "raft connection lost; reconnecting");
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

/// What the receiving side hands on (see [`RaftNet::spawn`]).
struct Handlers {
    deliver: Box<dyn Fn(GroupId, Message)>,
    closed: Box<dyn Fn(NodeId)>,
}

async fn accept_loop(local: NodeId, listener: TcpListener, handlers: Rc<Handlers>, stats: Arc<NetStats>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let handlers = Rc::clone(&handlers);
                let stats = Arc::clone(&stats);
                tokio::task::spawn_local(async move {
                    // The peer is known once it has sent a message; its end closing is news.
                    if let Some(id) = receive_loop(local, stream, peer, &handlers, &stats).await {
                        (handlers.closed)(id);
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
async fn receive_loop(
    local: NodeId,
    mut stream: TcpStream,
    peer: SocketAddr,
    handlers: &Handlers,
    stats: &NetStats,
) -> Option<NodeId> {
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
            Ok(messages) => {
                for (group, message) in messages {
                    if message.to == local {
                        stats.messages_received.fetch_add(1, Relaxed);
                        from = Some(message.from);
                        (handlers.deliver)(group, message);
                    }
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

    fn message(from: NodeId, to: NodeId, n: u64) -> Message {
        let body = match n % 3 {
            0 => Body::Heartbeat { commit: n as i64, sent_end: n as i64 },
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
            let peers = vec![(1, a1.to_string()), (2, a2.to_string())];
            let net1 = RaftNet::start(1, l1, peers.clone(), |_, _| {});
            let net2 = RaftNet::start(2, l2, peers, move |g, m| sink.borrow_mut().push((g, m)));
            let group = GroupId { topic_id: 42, partition: 3 };
            // Garbage first, on its own connection.
            let mut junk = TcpStream::connect(a2).await.unwrap();
            junk.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.unwrap();
            let count = 10_000u64;
            let mut sent = 0;
            for n in 0..count {
                while !net1.send(group, message(1, 2, n)) {
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
                assert_eq!(*m, message(1, 2, m.term));
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
                (1, format!("localhost:{}", l1.local_addr().unwrap().port())),
                (2, format!("localhost:{}", l2.local_addr().unwrap().port())),
            ];
            let received: Rc<RefCell<Vec<Message>>> = Rc::default();
            let sink = Rc::clone(&received);
            let net1 = RaftNet::start(1, l1, peers.clone(), |_, _| {});
            let _net2 = RaftNet::start(2, l2, peers, move |_, m| sink.borrow_mut().push(m));
            let group = GroupId { topic_id: 1, partition: 0 };
            // Raft resends what a connection not yet up lost: so does this test, bounded.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while received.borrow().is_empty() && tokio::time::Instant::now() < deadline {
                net1.send(group, message(1, 2, 0));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(received.borrow().first(), Some(&message(1, 2, 0)));
        });
    }

    /// A peer's connection that closes is reported with the peer's id (from its messages);
    /// a connection that never sent one is not.
    #[test]
    fn a_closed_peer_connection_is_reported_with_the_peer_id() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let closed: Rc<RefCell<Vec<NodeId>>> = Rc::default();
            let sink = Rc::clone(&closed);
            let (net, outgoing) = RaftNet::new(2, &[(2, addr.to_string())]);
            net.spawn(listener, outgoing, |_, _| {}, move |peer| sink.borrow_mut().push(peer));
            // A connection that sends nothing, then one from node 7 that sends a message.
            drop(TcpStream::connect(addr).await.unwrap());
            let mut peer = TcpStream::connect(addr).await.unwrap();
            let group = GroupId { topic_id: 1, partition: 0 };
            peer.write_all(&wire::encode_frame(&[(group, message(7, 2, 1))])).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(closed.borrow().is_empty(), "reported while open");
            drop(peer);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while closed.borrow().is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(*closed.borrow(), vec![7]);
        });
    }
}
