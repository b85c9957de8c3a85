//! The ZooKeeper server state of a node: its client connections, the sessions connected here,
//! requests waiting for their transaction, watches, and the expiry of sessions.
//!
//! Lives in the metadata store on shard 0, beside the tree it serves. Reads are answered from
//! this node's tree; writes become tree transactions proposed through group 0 (forwarded to the
//! leader by a follower), tagged with this node's id and a request id in the record key, and
//! are answered when this node applies them, so a client reads its own writes on the node it
//! talks to. Watch events are queued on the connection as transactions apply, so an event
//! always goes out before the reply to any read that sees its change.
//!
//! Per connection, replies leave in request order (ZooKeeper's FIFO promise): writes may be in
//! flight together (group 0 applies them in the order this node forwarded them); any request
//! answered at once (a read, a ping, a write refused here) waits until the writes before it
//! are answered.
//!
//! This module keeps the state, the messages and the path every request takes (queued, then
//! dispatched in order); the sibling modules `sessions` (connecting, closing, expiry, the
//! reaper), `read`, `write`, `acl`, `watches` and `four_letter` add the rest to `ZkServer`.

use super::jute::{self, err, op, ConnectRequest, Op, Request, Writer};
use braid_engine::hash::{HashMap, HashSet};
use braid_engine::tree::{Applied, DataTree, EventKind, Txn, TxnError};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};

/// What the server sends a connection's writer.
#[derive(Debug)]
pub enum Out {
    Frame(Vec<u8>),
    /// Flush what is queued, then close.
    Close,
}

/// Requests a connection may have unanswered at once (its reader waits beyond).
pub const MAX_OUTSTANDING: usize = 1000;
/// Bytes of replies and events a connection may have waiting to be written: a client that stops
/// reading is disconnected there instead of growing the node's memory.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

/// What a connection's writer shares with the server: the bytes it has yet to write, and the
/// signal to give up on a client that does not read.
#[derive(Default)]
pub struct Outbox {
    pub queued: std::sync::atomic::AtomicUsize,
    pub abort: tokio::sync::Notify,
}

/// Messages from connections to the server (through shard 0's queue).
pub enum ZkMsg {
    Connect {
        conn: u64,
        peer: SocketAddr,
        request: ConnectRequest,
        out: mpsc::UnboundedSender<Out>,
        credits: Arc<Semaphore>,
        outbox: Arc<Outbox>,
    },
    Request {
        conn: u64,
        request: Request,
    },
    /// A request whose header decoded but whose op is unknown or malformed.
    Refused {
        conn: u64,
        xid: i32,
        code: i32,
    },
    Closed {
        conn: u64,
    },
    FourLetter {
        word: String,
        peer: SocketAddr,
        reply: tokio::sync::oneshot::Sender<String>,
    },
}

/// Settings the server needs.
#[derive(Debug, Clone)]
pub struct ZkSettings {
    pub node_id: i32,
    pub min_timeout_ms: i32,
    pub max_timeout_ms: i32,
    pub max_data_bytes: usize,
    pub tick_ms: u32,
    pub client_addr: SocketAddr,
    pub data_dir: String,
    /// How often the leader looks for empty containers and expired TTL nodes.
    pub reaper_ms: i64,
    /// Where session ids and passwords get their randomness.
    pub env: crate::env::SharedEnv,
}

pub(super) struct Conn {
    pub(super) out: mpsc::UnboundedSender<Out>,
    pub(super) credits: Arc<Semaphore>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) peer: SocketAddr,
    pub(super) session: Option<i64>,
    /// Identities: ("ip", peer) always, ("digest", "user:hash") once added.
    pub(super) auth: Vec<(String, String)>,
    pub(super) queue: VecDeque<Queued>,
    /// Request ids of writes proposed and not yet applied, in order.
    pub(super) in_flight: VecDeque<u64>,
    pub(super) watches: HashSet<(WatchKind, String)>,
    pub(super) received: u64,
    pub(super) sent: u64,
    pub(super) closing: bool,
    /// A read-only session (ZooKeeper's read-only mode): made here while this node reaches no
    /// majority, for a client that allows it; local, never in the tree; writes are refused.
    pub(super) read_only: bool,
}

/// A request waiting its turn.
pub(super) enum Queued {
    Request(Request),
    /// A request whose header decoded but not its body: answered with `code` in its turn.
    Refused {
        xid: i32,
        code: i32,
    },
}

/// A transaction this node applied, and what came of it.
pub struct AppliedTxn<'a> {
    pub zxid: i64,
    /// The record key: who proposed it, for which request.
    pub key: Option<&'a [u8]>,
    pub txn: &'a Txn,
    pub result: &'a Result<Applied, TxnError>,
    /// The changes it made (what watches fire on).
    pub events: &'a [(EventKind, String)],
}

/// What a proposed transaction's applying answers.
pub(super) enum Waiting {
    /// A new session (or a session moved here) for a connection.
    Connect { conn: u64, session: i64, timeout_ms: i32, password: Vec<u8> },
    /// A request's reply.
    Reply { conn: u64, xid: i32, request: Op, proposed_ms: i64 },
}

impl Waiting {
    /// The connection that waits.
    pub(super) fn conn(&self) -> u64 {
        match self {
            Waiting::Connect { conn, .. } | Waiting::Reply { conn, .. } => *conn,
        }
    }
}

#[derive(Default, Clone, Copy)]
pub(super) struct Latency {
    pub(super) count: u64,
    pub(super) total_ms: i64,
    pub(super) min_ms: i64,
    pub(super) max_ms: i64,
}

/// What a watch is set by, hence which events fire it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum WatchKind {
    /// getData, or exists on a node that exists.
    Data,
    /// exists on a node that does not.
    Exist,
    Child,
    Persistent,
    Recursive,
}

pub struct ZkServer {
    pub(super) settings: ZkSettings,
    pub(super) conns: HashMap<u64, Conn>,
    /// Sessions connected here, to their connection.
    pub(super) attached: HashMap<i64, u64>,
    pub(super) waiting: HashMap<u64, Waiting>,
    next_request: u64,
    /// Transactions to propose, with their record key.
    proposals: Vec<(Vec<u8>, Txn)>,
    /// Last sign of life of sessions owned by this node (ms), and closes proposed (ms).
    pub(super) last_seen: HashMap<i64, i64>,
    pub(super) expiring: HashMap<i64, i64>,
    pub(super) watches: HashMap<(WatchKind, String), BTreeSet<u64>>,
    pub(super) last_reap_ms: i64,
    pub(super) packets_received: u64,
    pub(super) packets_sent: u64,
    pub(super) latency: Latency,
}

/// The record key of a transaction proposed for a request: node id, request id.
fn request_key(node: i32, request: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(12);
    key.extend_from_slice(&node.to_be_bytes());
    key.extend_from_slice(&request.to_be_bytes());
    key
}

/// The request id in a record key, if this node proposed it.
pub fn own_request(node: i32, key: Option<&[u8]>) -> Option<u64> {
    let key = key.filter(|k| k.len() == 12)?;
    (i32::from_be_bytes(key[..4].try_into().ok()?) == node).then(|| u64::from_be_bytes(key[4..].try_into().unwrap()))
}

impl ZkServer {
    /// A request on a read-only session: reads answer from this node's tree, writes (and
    /// sync) get NOTREADONLY, as ZooKeeper's read-only server answers them; closing the
    /// session ends the connection.
    fn read_only_request(&mut self, tree: &DataTree, conn: u64, request: Request) {
        let zxid = tree.last_zxid();
        match &request.op {
            Op::CloseSession => {
                self.reply(conn, request.xid, zxid, err::OK, |_| {});
                self.close(conn);
            }
            op if is_write(op) => self.reply(conn, request.xid, zxid, err::NOT_READ_ONLY, |_| {}),
            _ => self.read(tree, conn, request),
        }
    }
}

fn is_write(op: &Op) -> bool {
    matches!(
        op,
        Op::Create { .. }
            | Op::Delete { .. }
            | Op::SetData { .. }
            | Op::SetAcl { .. }
            | Op::Check { .. }
            | Op::Sync { .. }
            | Op::CloseSession
    ) || matches!(op, Op::Multi { op: code, .. } if *code == op::MULTI)
}

impl ZkServer {
    pub fn new(settings: ZkSettings) -> Self {
        ZkServer {
            settings,
            conns: HashMap::default(),
            attached: HashMap::default(),
            waiting: HashMap::default(),
            next_request: 1,
            proposals: Vec::new(),
            last_seen: HashMap::default(),
            expiring: HashMap::default(),
            watches: HashMap::default(),
            last_reap_ms: 0,
            packets_received: 0,
            packets_sent: 0,
            latency: Latency::default(),
        }
    }

    pub fn settings(&self) -> &ZkSettings {
        &self.settings
    }

    /// Transactions to propose now, each with its record key.
    pub fn take_proposals(&mut self) -> Vec<(Vec<u8>, Txn)> {
        std::mem::take(&mut self.proposals)
    }

    pub(super) fn propose(&mut self, txn: Txn, waiting: Option<Waiting>) {
        let id = self.next_request;
        self.next_request += 1;
        if let Some(w) = waiting {
            if let Waiting::Reply { conn, .. } = &w {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.in_flight.push_back(id);
                }
            }
            self.waiting.insert(id, w);
        }
        self.proposals.push((request_key(self.settings.node_id, id), txn));
    }

    /// A proposal could not be sent (no leader is known): its connection closes, so its
    /// client goes to another node.
    pub fn unsent(&mut self, key: &[u8]) {
        if let Some(id) = own_request(self.settings.node_id, Some(key)) {
            if let Some(waiting) = self.waiting.remove(&id) {
                self.close(waiting.conn());
            }
        }
    }

    pub(super) fn send(&mut self, conn: u64, frame: Vec<u8>, reply: bool) {
        if let Some(c) = self.conns.get_mut(&conn) {
            use std::sync::atomic::Ordering::Relaxed;
            let queued = c.outbox.queued.load(Relaxed);
            if queued + frame.len() > MAX_QUEUED_BYTES {
                if !c.closing {
                    tracing::warn!(peer = %c.peer, queued, "ZooKeeper client is not reading its replies; closing the connection");
                }
                c.closing = true;
                c.outbox.abort.notify_one();
                return;
            }
            c.sent += 1;
            self.packets_sent += 1;
            c.outbox.queued.fetch_add(frame.len(), Relaxed);
            if c.out.send(Out::Frame(frame)).is_err() {
                c.closing = true;
            }
            if reply {
                c.credits.add_permits(1);
            }
        }
    }

    pub(super) fn reply(&mut self, conn: u64, xid: i32, zxid: i64, code: i32, body: impl FnOnce(&mut Writer)) {
        let mut w = Writer::default();
        jute::reply_header(&mut w, xid, zxid, code);
        if code == err::OK {
            body(&mut w);
        }
        self.send(conn, w.frame(), true);
    }

    pub(super) fn close(&mut self, conn: u64) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing = true;
            let _ = c.out.send(Out::Close);
        }
    }

    /// A request of a connected client.
    pub fn request(&mut self, tree: &DataTree, now_ms: i64, conn: u64, request: Request) {
        self.packets_received += 1;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.received += 1;
        if let Some(session) = c.session {
            self.last_seen.insert(session, now_ms);
        }
        c.queue.push_back(Queued::Request(request));
        self.pump(tree, conn, now_ms);
    }

    /// A request that did not decode: answered with `code` in its turn.
    pub fn refused(&mut self, tree: &DataTree, now_ms: i64, conn: u64, xid: i32, code: i32) {
        self.packets_received += 1;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.received += 1;
        c.queue.push_back(Queued::Refused { xid, code });
        self.pump(tree, conn, now_ms);
    }

    /// Answers or proposes queued requests, in order, as far as the rules allow.
    pub(super) fn pump(&mut self, tree: &DataTree, conn: u64, now_ms: i64) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            if c.session.is_none() || c.closing {
                return;
            }
            let busy = !c.in_flight.is_empty();
            let request = match c.queue.front() {
                None => return,
                Some(Queued::Refused { .. }) if busy => return,
                Some(Queued::Refused { xid, code }) => {
                    let (xid, code) = (*xid, *code);
                    c.queue.pop_front();
                    self.reply(conn, xid, tree.last_zxid(), code, |_| {});
                    continue;
                }
                Some(Queued::Request(request)) if busy && !is_write(&request.op) => return,
                Some(Queued::Request(_)) => {
                    let Some(Queued::Request(request)) = c.queue.pop_front() else { return };
                    request
                }
            };
            if let Err(request) = self.dispatch(tree, conn, request, busy, now_ms) {
                // Refused here while writes are in flight: answered after them.
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.queue.push_front(Queued::Request(*request));
                }
                return;
            }
        }
    }

    /// Handles one request. Err gives it back when it must wait for the writes in flight.
    fn dispatch(
        &mut self,
        tree: &DataTree,
        conn: u64,
        request: Request,
        busy: bool,
        now_ms: i64,
    ) -> Result<(), Box<Request>> {
        let zxid = tree.last_zxid();
        let xid = request.xid;
        let waiting = |op: Op| Some(Waiting::Reply { conn, xid, request: op, proposed_ms: now_ms });
        if self.conns.get(&conn).is_some_and(|c| c.read_only) {
            self.read_only_request(tree, conn, request);
            return Ok(());
        }
        match &request.op {
            Op::Create { .. } | Op::Delete { .. } | Op::SetData { .. } | Op::SetAcl { .. } | Op::Check { .. } => {
                match self.write_txn(tree, conn, &request.op) {
                    Ok(txn) => self.propose(txn, waiting(request.op)),
                    Err(_) if busy => return Err(Box::new(request)),
                    Err(code) => self.reply(conn, xid, zxid, code, |_| {}),
                }
            }
            Op::Multi { op: code, ops } if *code == op::MULTI => {
                let mut txns = Vec::with_capacity(ops.len());
                let mut refused = None;
                for (i, o) in ops.iter().enumerate() {
                    match self.write_txn(tree, conn, o) {
                        Ok(t) => txns.push(t),
                        Err(code) => {
                            refused = Some((i, code));
                            break;
                        }
                    }
                }
                match refused {
                    None => self.propose(Txn::Multi(txns), waiting(request.op)),
                    Some(_) if busy => return Err(Box::new(request)),
                    Some((index, code)) => {
                        let n = ops.len();
                        self.refuse_multi(conn, xid, zxid, n, index, code);
                    }
                }
            }
            Op::Sync { .. } if busy && crate::mutation::active(crate::mutation::Mutation::SyncAnsweredAtOnce) => {
                return Err(Box::new(request));
            }
            Op::Sync { path } if crate::mutation::active(crate::mutation::Mutation::SyncAnsweredAtOnce) => {
                let path = path.clone();
                self.reply(conn, xid, zxid, err::OK, |w| {
                    w.string(&path);
                });
            }
            Op::Sync { .. } => self.propose(Txn::Noop, waiting(request.op)),
            Op::CloseSession => {
                let session = self.conns.get(&conn).and_then(|c| c.session).unwrap_or(0);
                self.propose(Txn::CloseSession { id: session }, waiting(request.op));
            }
            _ => self.read(tree, conn, request),
        }
        Ok(())
    }
}
