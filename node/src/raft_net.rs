//! Node-to-node transport of raft messages: one TCP connection per peer and direction, frames
//! of many groups' messages (engine/src/raft/wire.rs), reconnection with backoff.
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

/// The receiving ends of the peer queues, handed to [`spawn`].
pub struct Outgoing(Vec<(NodeId, SocketAddr, PeerQueue)>);

type PeerQueue = mpsc::Receiver<(GroupId, Message)>;

impl RaftNet {
    /// The queues to every peer but `local`, and their receiving ends for [`spawn`].
    pub fn new(local: NodeId, peers: &[(NodeId, SocketAddr)]) -> (RaftNet, Outgoing) {
        let mut queues = HashMap::new();
        let mut outgoing = Vec::new();
        for &(id, addr) in peers.iter().filter(|(id, _)| *id != local) {
            let (tx, rx) = mpsc::channel(PEER_QUEUE_DEPTH);
            queues.insert(id, tx);
            outgoing.push((id, addr, rx));
        }
        (RaftNet { local, queues, stats: Arc::new(NetStats::default()) }, Outgoing(outgoing))
    }

    /// `new` and `spawn` in one, for a transport used on one thread.
    pub fn start(
        local: NodeId,
        listener: TcpListener,
        peers: Vec<(NodeId, SocketAddr)>,
        deliver: impl Fn(GroupId, Message) + 'static,
    ) -> RaftNet {
        let (net, outgoing) = RaftNet::new(local, &peers);
        net.spawn(listener, outgoing, deliver);
        net
    }

    /// Listens on `listener` and keeps a connection to each peer. Must run inside a LocalSet.
    pub fn spawn(&self, listener: TcpListener, outgoing: Outgoing, deliver: impl Fn(GroupId, Message) + 'static) {
        let deliver: Rc<dyn Fn(GroupId, Message)> = Rc::new(deliver);
        tokio::task::spawn_local(accept_loop(self.local, listener, deliver, Arc::clone(&self.stats)));
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

async fn send_loop(
    peer: NodeId,
    addr: SocketAddr,
    mut queue: mpsc::Receiver<(GroupId, Message)>,
    stats: Arc<NetStats>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut pending: Vec<(GroupId, Message)> = Vec::new();
    let mut frame = wire::EncodedFrame::default();
    loop {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                backoff = BACKOFF_MIN;
                stream
            }
            Err(e) => {
                tracing::debug!(peer, %addr, error = %e, "raft peer unreachable; retrying");
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

async fn accept_loop(
    local: NodeId,
    listener: TcpListener,
    deliver: Rc<dyn Fn(GroupId, Message)>,
    stats: Arc<NetStats>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(receive_loop(local, stream, peer, Rc::clone(&deliver), Arc::clone(&stats)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "raft accept failed");
                tokio::time::sleep(BACKOFF_MIN).await;
            }
        }
    }
}

async fn receive_loop(
    local: NodeId,
    mut stream: TcpStream,
    peer: SocketAddr,
    deliver: Rc<dyn Fn(GroupId, Message)>,
    stats: Arc<NetStats>,
) {
    let mut buffer = BytesMut::new();
    loop {
        let mut prefix = [0u8; 4];
        if stream.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let length = match wire::frame_length(prefix) {
            Ok(length) => length,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "bad raft frame; closing the connection");
                stats.bad_frames.fetch_add(1, Relaxed);
                return;
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
            _ => return,
        }
        let body = buffer.split_to(length).freeze();
        match wire::decode_frame(&body) {
            Ok(messages) => {
                for (group, message) in messages {
                    if message.to == local {
                        stats.messages_received.fetch_add(1, Relaxed);
                        deliver(group, message);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "undecodable raft frame; closing the connection");
                stats.bad_frames.fetch_add(1, Relaxed);
                return;
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
            let net1 = RaftNet::start(1, l1, vec![(1, a1), (2, a2)], |_, _| {});
            let net2 = RaftNet::start(2, l2, vec![(1, a1), (2, a2)], move |g, m| sink.borrow_mut().push((g, m)));
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
}
