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

use super::jute::{self, err, op, Acl, ConnectRequest, ConnectResponse, Op, Request, Writer};
use braid_engine::tree::{perms, ttl_owner, Applied, DataTree, EventKind, Txn, TxnError, CONTAINER_OWNER, TTL_MAX_MS};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
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
/// A write not applied this long after it was proposed (a forward lost to a leader change)
/// closes its connection: the client sees a connection loss, reconnects and retries.
const WRITE_TIMEOUT_MS: i64 = 10_000;
/// A four-letter word's answer from a server out of its quorum (ZooKeeper's words).
const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests\n";

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
}

struct Conn {
    out: mpsc::UnboundedSender<Out>,
    credits: Arc<Semaphore>,
    outbox: Arc<Outbox>,
    peer: SocketAddr,
    session: Option<i64>,
    /// Identities: ("ip", peer) always, ("digest", "user:hash") once added.
    auth: Vec<(String, String)>,
    queue: VecDeque<Queued>,
    /// Request ids of writes proposed and not yet applied, in order.
    in_flight: VecDeque<u64>,
    watches: HashSet<(WatchKind, String)>,
    received: u64,
    sent: u64,
    closing: bool,
}

/// A request waiting its turn.
enum Queued {
    Request(Request),
    /// A request whose header decoded but not its body: answered with `code` in its turn.
    Refused {
        xid: i32,
        code: i32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WatchKind {
    /// getData, or exists on a node that exists.
    Data,
    /// exists on a node that does not.
    Exist,
    Child,
    Persistent,
    Recursive,
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
enum Waiting {
    /// A new session (or a session moved here) for a connection.
    Connect { conn: u64, session: i64, timeout_ms: i32, password: Vec<u8> },
    /// A request's reply.
    Reply { conn: u64, xid: i32, request: Op, proposed_ms: i64 },
}

impl Waiting {
    /// The connection that waits.
    fn conn(&self) -> u64 {
        match self {
            Waiting::Connect { conn, .. } | Waiting::Reply { conn, .. } => *conn,
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Latency {
    count: u64,
    total_ms: i64,
    min_ms: i64,
    max_ms: i64,
}

pub struct ZkServer {
    settings: ZkSettings,
    conns: HashMap<u64, Conn>,
    /// Sessions connected here, to their connection.
    attached: HashMap<i64, u64>,
    waiting: HashMap<u64, Waiting>,
    next_request: u64,
    /// Transactions to propose, with their record key.
    proposals: Vec<(Vec<u8>, Txn)>,
    /// Last sign of life of sessions owned by this node (ms), and closes proposed (ms).
    last_seen: HashMap<i64, i64>,
    expiring: HashMap<i64, i64>,
    watches: HashMap<(WatchKind, String), BTreeSet<u64>>,
    last_reap_ms: i64,
    packets_received: u64,
    packets_sent: u64,
    latency: Latency,
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

/// ZooKeeper's error code for a failed transaction.
pub fn error_code(e: &TxnError) -> i32 {
    match e.root() {
        TxnError::NoNode(_) => err::NO_NODE,
        TxnError::NodeExists(_) => err::NODE_EXISTS,
        TxnError::BadVersion(_) => err::BAD_VERSION,
        TxnError::NotEmpty(_) => err::NOT_EMPTY,
        TxnError::NoChildrenForEphemerals(_) => err::NO_CHILDREN_FOR_EPHEMERALS,
        TxnError::BadPath(_) => err::BAD_ARGUMENTS,
        TxnError::SessionExpired(_) => err::SESSION_EXPIRED,
        TxnError::InvalidAcl(_) => err::INVALID_ACL,
        _ => err::SYSTEM_ERROR,
    }
}

/// A digest identity as ZooKeeper computes it: "user:" + base64(sha1("user:password")).
pub fn digest_id(credentials: &str) -> Option<String> {
    use base64::Engine;
    use sha1::Digest;
    let (user, _) = credentials.split_once(':')?;
    let hash = sha1::Sha1::digest(credentials.as_bytes());
    Some(format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash)))
}

/// Whether `addr` lies in "a.b.c.d" or "a.b.c.d/bits" (ZooKeeper's ip scheme).
fn ip_matches(spec: &str, addr: IpAddr) -> bool {
    let (net, bits) = match spec.split_once('/') {
        Some((net, bits)) => (net, bits.parse::<u32>().ok()),
        None => (spec, None),
    };
    let Ok(net) = net.parse::<IpAddr>() else { return false };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

fn valid_ip_spec(spec: &str) -> bool {
    let (net, bits) = spec.split_once('/').map_or((spec, None), |(n, b)| (n, Some(b)));
    net.parse::<IpAddr>().is_ok() && bits.is_none_or(|b| b.parse::<u8>().is_ok_and(|b| b <= 128))
}

/// True if any entry of `acl` grants `perm` to one of `auth`'s identities.
fn allowed(acl: &[Acl], auth: &[(String, String)], peer: IpAddr, perm: i32) -> bool {
    acl.iter().any(|a| {
        a.perms & perm != 0
            && match a.scheme.as_str() {
                "world" => a.id == "anyone",
                "ip" => ip_matches(&a.id, peer),
                scheme => auth.iter().any(|(s, id)| s == scheme && *id == a.id),
            }
    })
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
            conns: HashMap::new(),
            attached: HashMap::new(),
            waiting: HashMap::new(),
            next_request: 1,
            proposals: Vec::new(),
            last_seen: HashMap::new(),
            expiring: HashMap::new(),
            watches: HashMap::new(),
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

    fn propose(&mut self, txn: Txn, waiting: Option<Waiting>) {
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

    fn send(&mut self, conn: u64, frame: Vec<u8>, reply: bool) {
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

    fn reply(&mut self, conn: u64, xid: i32, zxid: i64, code: i32, body: impl FnOnce(&mut Writer)) {
        let mut w = Writer::default();
        jute::reply_header(&mut w, xid, zxid, code);
        if code == err::OK {
            body(&mut w);
        }
        self.send(conn, w.frame(), true);
    }

    fn close(&mut self, conn: u64) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing = true;
            let _ = c.out.send(Out::Close);
        }
    }

    /// Ends `conns` and forgets what they wait for (each is warned about once).
    fn close_waiting(&mut self, conns: BTreeSet<u64>, why: &str) {
        if conns.is_empty() {
            return;
        }
        self.waiting.retain(|_, w| !conns.contains(&w.conn()));
        for conn in conns {
            tracing::warn!(conn, "{why}");
            self.close(conn);
        }
    }

    /// The metadata group's leader changed: what this node proposed or forwarded and has not
    /// applied may be lost with the old leader, and nothing would answer it until its 10 s
    /// timeout. Those connections close now (ZooKeeper's connection loss: the outcome is not
    /// known; the client reconnects, to any node, and retries), as a ZooKeeper server closes
    /// all its clients when its leader goes. Connections waiting for nothing stay.
    pub fn leader_changed(&mut self) {
        let waiting: BTreeSet<u64> = self.waiting.values().map(Waiting::conn).collect();
        self.close_waiting(
            waiting,
            "metadata leader changed with a ZooKeeper write or session change in flight; closing the connection",
        );
    }

    /// Closes every client connection (this node cannot reach a majority).
    pub fn close_all(&mut self, why: &str) {
        let open: Vec<u64> = self.conns.iter().filter(|(_, c)| !c.closing).map(|(id, _)| *id).collect();
        if !open.is_empty() {
            tracing::warn!(connections = open.len(), why, "closing ZooKeeper connections");
        }
        for conn in open {
            self.close(conn);
        }
    }

    /// A new connection's ConnectRequest (`cut_off`: this node reaches no majority, so the
    /// client is sent elsewhere).
    pub fn connect(&mut self, tree: &DataTree, now_ms: i64, msg: ZkMsg, cut_off: bool) {
        let ZkMsg::Connect { conn, peer, request, out, credits, outbox } = msg else { return };
        self.packets_received += 1;
        let c = Conn {
            out,
            credits,
            outbox,
            peer,
            session: None,
            auth: vec![("ip".to_owned(), peer.ip().to_string())],
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            watches: HashSet::new(),
            received: 1,
            sent: 0,
            closing: false,
        };
        self.conns.insert(conn, c);
        if cut_off {
            self.close(conn);
            return;
        }
        if request.last_zxid_seen > tree.last_zxid() {
            // The client has seen a newer tree than this node has: ZooKeeper's answer is to
            // close, and the client tries another server (its reads never go back in time).
            tracing::info!(%peer, seen = request.last_zxid_seen, here = tree.last_zxid(), "ZooKeeper client is ahead of this node; closing");
            self.close(conn);
            return;
        }
        let timeout_ms = request.timeout_ms.clamp(self.settings.min_timeout_ms, self.settings.max_timeout_ms);
        if request.session_id == 0 {
            let mut password = vec![0u8; 16];
            password.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..]);
            // Top byte: this node (ZooKeeper's layout), below it random: unique with
            // overwhelming odds, and a collision is refused by the tree (the client retries).
            let random = (uuid::Uuid::new_v4().as_u128() as i64) & ((1 << 56) - 1);
            let session = (i64::from(self.settings.node_id & 0x7f) << 56) | random.max(1);
            let txn = Txn::CreateSession {
                id: session,
                timeout_ms,
                password: password.clone(),
                owner: self.settings.node_id,
            };
            self.propose(txn, Some(Waiting::Connect { conn, session, timeout_ms, password }));
            return;
        }
        let session = request.session_id;
        match tree.session(session) {
            Some(s) if s.password == request.password => {
                let (timeout_ms, password) = (s.timeout_ms, s.password.clone());
                if s.owner == self.settings.node_id {
                    self.attach(tree, conn, session, timeout_ms, password, now_ms);
                } else {
                    let txn = Txn::MoveSession { id: session, owner: self.settings.node_id };
                    self.propose(txn, Some(Waiting::Connect { conn, session, timeout_ms, password }));
                }
            }
            found => {
                if found.is_some() {
                    tracing::info!(%peer, session = format!("{session:#x}"), "ZooKeeper reconnect with a wrong session password");
                }
                // Expired (or never was): timeout 0 tells the client so.
                let mut w = Writer::default();
                ConnectResponse {
                    protocol_version: 0,
                    timeout_ms: 0,
                    session_id: 0,
                    password: vec![0; 16],
                    read_only: false,
                }
                .encode(&mut w);
                self.send(conn, w.frame(), false);
                self.close(conn);
            }
        }
    }

    /// The session is live on this connection: answer the ConnectRequest.
    fn attach(&mut self, tree: &DataTree, conn: u64, session: i64, timeout_ms: i32, password: Vec<u8>, now_ms: i64) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.session = Some(session);
        if let Some(old) = self.attached.insert(session, conn).filter(|&old| old != conn) {
            // The client moved to a new connection; the old one is stale.
            self.close(old);
        }
        self.last_seen.insert(session, now_ms);
        let mut w = Writer::default();
        ConnectResponse { protocol_version: 0, timeout_ms, session_id: session, password, read_only: false }
            .encode(&mut w);
        self.send(conn, w.frame(), false);
        self.pump(tree, conn, now_ms);
    }

    /// A connection went away.
    pub fn closed(&mut self, conn: u64) {
        let Some(c) = self.conns.remove(&conn) else { return };
        if let Some(session) = c.session {
            if self.attached.get(&session) == Some(&conn) {
                self.attached.remove(&session);
            }
        }
        for key in c.watches {
            if let Some(set) = self.watches.get_mut(&key) {
                set.remove(&conn);
                if set.is_empty() {
                    self.watches.remove(&key);
                }
            }
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
    fn pump(&mut self, tree: &DataTree, conn: u64, now_ms: i64) {
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

    fn node_acl_allows(&self, tree: &DataTree, conn: u64, path: &str, perm: i32) -> bool {
        let Some(c) = self.conns.get(&conn) else { return false };
        match tree.get(path) {
            Some(node) => allowed(&node.acl, &c.auth, c.peer.ip(), perm),
            // Absent: the transaction itself will say so.
            None => true,
        }
    }

    /// The ACL a create asks for, with "auth" entries made the session's identities; None if
    /// it is invalid.
    fn fix_acl(&self, conn: u64, acl: &[Acl]) -> Option<Vec<Acl>> {
        let c = self.conns.get(&conn)?;
        let mut fixed = Vec::new();
        for a in acl {
            match a.scheme.as_str() {
                "world" if a.id == "anyone" => fixed.push(a.clone()),
                "auth" => {
                    let ids: Vec<_> = c.auth.iter().filter(|(s, _)| s == "digest").collect();
                    if ids.is_empty() {
                        return None;
                    }
                    fixed.extend(ids.into_iter().map(|(s, id)| Acl {
                        perms: a.perms,
                        scheme: s.clone(),
                        id: id.clone(),
                    }));
                }
                "digest" if a.id.contains(':') => fixed.push(a.clone()),
                "ip" if valid_ip_spec(&a.id) => fixed.push(a.clone()),
                _ => return None,
            }
        }
        (!fixed.is_empty()).then_some(fixed)
    }

    /// The transaction of one write op, or the error code that refuses it here.
    fn write_txn(&self, tree: &DataTree, conn: u64, op: &Op) -> Result<Txn, i32> {
        let session = self.conns.get(&conn).and_then(|c| c.session).unwrap_or(0);
        let parent_of = |path: &str| braid_engine::tree::split_path(path).map(|(p, _)| p.to_owned());
        let check_path =
            |path: &str| if braid_engine::tree::validate_path(path) { Ok(()) } else { Err(err::BAD_ARGUMENTS) };
        match op {
            Op::Create { op: code, path, data, acl, flags, ttl } => {
                let sequential = matches!(flags, 2 | 3 | 6);
                check_path(&if sequential { format!("{path}0") } else { path.clone() })?;
                if data.len() > self.settings.max_data_bytes {
                    return Err(err::BAD_ARGUMENTS);
                }
                let owner = match (*code, *flags) {
                    (op::CREATE_CONTAINER, 4) => CONTAINER_OWNER,
                    (op::CREATE_TTL, 5 | 6) => match ttl {
                        Some(ttl) if (1..=TTL_MAX_MS).contains(ttl) => ttl_owner(*ttl),
                        _ => return Err(err::BAD_ARGUMENTS),
                    },
                    (op::CREATE | op::CREATE2, 0 | 2) => 0,
                    (op::CREATE | op::CREATE2, 1 | 3) => session,
                    _ => return Err(err::BAD_ARGUMENTS),
                };
                let acl = self.fix_acl(conn, acl).ok_or(err::INVALID_ACL)?;
                let parent = parent_of(&if sequential { format!("{path}0") } else { path.clone() });
                if !self.node_acl_allows(tree, conn, parent.as_deref().unwrap_or("/"), perms::CREATE) {
                    return Err(err::NO_AUTH);
                }
                Ok(Txn::Create { path: path.clone(), data: data.clone(), ephemeral_owner: owner, sequential, acl })
            }
            Op::Delete { path, version, .. } => {
                check_path(path)?;
                if path == "/" {
                    return Err(err::BAD_ARGUMENTS);
                }
                if !self.node_acl_allows(tree, conn, &parent_of(path).unwrap_or_default(), perms::DELETE) {
                    return Err(err::NO_AUTH);
                }
                Ok(Txn::Delete { path: path.clone(), version: *version })
            }
            Op::SetData { path, data, version } => {
                check_path(path)?;
                if data.len() > self.settings.max_data_bytes {
                    return Err(err::BAD_ARGUMENTS);
                }
                if !self.node_acl_allows(tree, conn, path, perms::WRITE) {
                    return Err(err::NO_AUTH);
                }
                Ok(Txn::SetData { path: path.clone(), data: data.clone(), version: *version })
            }
            Op::SetAcl { path, acl, version } => {
                check_path(path)?;
                let acl = self.fix_acl(conn, acl).ok_or(err::INVALID_ACL)?;
                if !self.node_acl_allows(tree, conn, path, perms::ADMIN) {
                    return Err(err::NO_AUTH);
                }
                Ok(Txn::SetAcl { path: path.clone(), acl, version: *version })
            }
            Op::Check { path, version } => {
                check_path(path)?;
                if !self.node_acl_allows(tree, conn, path, perms::READ) {
                    return Err(err::NO_AUTH);
                }
                Ok(Txn::Check { path: path.clone(), version: *version })
            }
            _ => Err(err::BAD_ARGUMENTS),
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
                        self.reply(conn, xid, zxid, err::OK, |w| write_multi_failure(w, n, index, code));
                    }
                }
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

    fn add_watch(&mut self, conn: u64, kind: WatchKind, path: &str) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.watches.insert((kind, path.to_owned()));
            self.watches.entry((kind, path.to_owned())).or_default().insert(conn);
        }
    }

    fn read(&mut self, tree: &DataTree, conn: u64, request: Request) {
        let zxid = tree.last_zxid();
        let xid = request.xid;
        let (auth, peer) = match self.conns.get(&conn) {
            Some(c) => (c.auth.clone(), c.peer.ip()),
            None => return,
        };
        let may = |path: &str, perm: i32| tree.get(path).is_none_or(|n| allowed(&n.acl, &auth, peer, perm));
        match request.op {
            Op::Ping => self.reply(conn, xid, zxid, err::OK, |_| {}),
            Op::Exists { path, watch } => match tree.get(&path) {
                Some(node) => {
                    if watch {
                        self.add_watch(conn, WatchKind::Data, &path);
                    }
                    let stat = node.stat;
                    self.reply(conn, xid, zxid, err::OK, |w| {
                        w.stat(&stat);
                    });
                }
                None => {
                    if watch && braid_engine::tree::validate_path(&path) {
                        self.add_watch(conn, WatchKind::Exist, &path);
                    }
                    self.reply(conn, xid, zxid, err::NO_NODE, |_| {});
                }
            },
            Op::GetData { path, watch } => match tree.get(&path) {
                Some(_) if !may(&path, perms::READ) => self.reply(conn, xid, zxid, err::NO_AUTH, |_| {}),
                Some(node) => {
                    if watch {
                        self.add_watch(conn, WatchKind::Data, &path);
                    }
                    self.reply(conn, xid, zxid, err::OK, |w| {
                        w.buffer(Some(&node.data)).stat(&node.stat);
                    });
                }
                None => self.reply(conn, xid, zxid, err::NO_NODE, |_| {}),
            },
            Op::GetChildren { op: code, path, watch } => match tree.get(&path) {
                Some(_) if !may(&path, perms::READ) => self.reply(conn, xid, zxid, err::NO_AUTH, |_| {}),
                Some(node) => {
                    if watch {
                        self.add_watch(conn, WatchKind::Child, &path);
                    }
                    let children = tree.children(&path).unwrap_or_default();
                    let stat = node.stat;
                    self.reply(conn, xid, zxid, err::OK, |w| {
                        w.strings(&children);
                        if code == op::GET_CHILDREN2 {
                            w.stat(&stat);
                        }
                    });
                }
                None => self.reply(conn, xid, zxid, err::NO_NODE, |_| {}),
            },
            Op::GetAcl { path } => match tree.get(&path) {
                Some(_) if !may(&path, perms::READ | perms::ADMIN) => self.reply(conn, xid, zxid, err::NO_AUTH, |_| {}),
                Some(node) => self.reply(conn, xid, zxid, err::OK, |w| {
                    w.acl(&node.acl).stat(&node.stat);
                }),
                None => self.reply(conn, xid, zxid, err::NO_NODE, |_| {}),
            },
            Op::GetAllChildrenNumber { path } => match tree.get(&path) {
                Some(_) if !may(&path, perms::READ) => self.reply(conn, xid, zxid, err::NO_AUTH, |_| {}),
                Some(_) => {
                    let n = tree.descendants(&path) as i32;
                    self.reply(conn, xid, zxid, err::OK, |w| {
                        w.int(n);
                    })
                }
                None => self.reply(conn, xid, zxid, err::NO_NODE, |_| {}),
            },
            Op::GetEphemerals { prefix } => {
                let session = self.conns.get(&conn).and_then(|c| c.session).unwrap_or(0);
                let paths: Vec<String> = tree
                    .session(session)
                    .map(|s| s.ephemerals.iter().filter(|p| p.starts_with(&prefix)).cloned().collect())
                    .unwrap_or_default();
                self.reply(conn, xid, zxid, err::OK, |w| {
                    w.strings(&paths);
                });
            }
            Op::Multi { ops, .. } => {
                // multiRead: each op answered on its own.
                let mut w = Writer::default();
                jute::reply_header(&mut w, xid, zxid, err::OK);
                for o in ops {
                    match o {
                        Op::GetData { path, watch } => match tree.get(&path) {
                            Some(_) if !may(&path, perms::READ) => write_error(&mut w, err::NO_AUTH),
                            Some(node) => {
                                if watch {
                                    self.add_watch(conn, WatchKind::Data, &path);
                                }
                                w.int(op::GET_DATA).boolean(false).int(err::OK);
                                w.buffer(Some(&node.data)).stat(&node.stat);
                            }
                            None => write_error(&mut w, err::NO_NODE),
                        },
                        Op::GetChildren { path, watch, .. } => match tree.children(&path) {
                            Some(_) if !may(&path, perms::READ) => write_error(&mut w, err::NO_AUTH),
                            Some(children) => {
                                if watch {
                                    self.add_watch(conn, WatchKind::Child, &path);
                                }
                                w.int(op::GET_CHILDREN).boolean(false).int(err::OK);
                                w.strings(&children);
                            }
                            None => write_error(&mut w, err::NO_NODE),
                        },
                        _ => write_error(&mut w, err::BAD_ARGUMENTS),
                    }
                }
                w.int(-1).boolean(true).int(-1);
                self.send(conn, w.frame(), true);
            }
            Op::Auth { scheme, auth, .. } => {
                let id = (scheme == "digest").then(|| std::str::from_utf8(&auth).ok().and_then(digest_id)).flatten();
                match id {
                    Some(id) => {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            if !c.auth.iter().any(|(s, i)| s == "digest" && *i == id) {
                                c.auth.push(("digest".into(), id));
                            }
                        }
                        self.reply(conn, xid, zxid, err::OK, |_| {});
                    }
                    None => {
                        tracing::info!(scheme, "ZooKeeper auth failed: unknown scheme or malformed credentials");
                        self.reply(conn, xid, zxid, err::AUTH_FAILED, |_| {});
                        self.close(conn);
                    }
                }
            }
            Op::WhoAmI => {
                let c = self.conns.get(&conn).map(|c| c.auth.clone()).unwrap_or_default();
                self.reply(conn, xid, zxid, err::OK, |w| {
                    w.int(c.len() as i32);
                    for (scheme, id) in &c {
                        let user = if scheme == "digest" { id.split(':').next().unwrap_or(id) } else { id };
                        w.string(scheme).string(user);
                    }
                });
            }
            Op::AddWatch { path, mode } => {
                let kind = if mode == 1 { WatchKind::Recursive } else { WatchKind::Persistent };
                if !braid_engine::tree::validate_path(&path) || !(0..=1).contains(&mode) {
                    self.reply(conn, xid, zxid, err::BAD_ARGUMENTS, |_| {});
                } else {
                    self.add_watch(conn, kind, &path);
                    self.reply(conn, xid, zxid, err::OK, |_| {});
                }
            }
            Op::SetWatches { relative_zxid, data, exist, child, persistent, persistent_recursive, .. } => {
                self.set_watches(tree, conn, relative_zxid, data, exist, child, persistent, persistent_recursive);
                self.reply(conn, xid, zxid, err::OK, |_| {});
            }
            Op::Watches { op: code, path, kind } => {
                let kinds: &[WatchKind] = match kind {
                    1 => &[WatchKind::Child],
                    2 => &[WatchKind::Data, WatchKind::Exist],
                    3 => &[
                        WatchKind::Child,
                        WatchKind::Data,
                        WatchKind::Exist,
                        WatchKind::Persistent,
                        WatchKind::Recursive,
                    ],
                    _ => {
                        // ZooKeeper 3.8 reads only these three.
                        self.reply(conn, xid, zxid, err::MARSHALLING_ERROR, |_| {});
                        return;
                    }
                };
                let mut found = false;
                for &k in kinds {
                    let key = (k, path.clone());
                    let has = self.conns.get(&conn).is_some_and(|c| c.watches.contains(&key));
                    found |= has;
                    if has && code == op::REMOVE_WATCHES {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.watches.remove(&key);
                        }
                        if let Some(set) = self.watches.get_mut(&key) {
                            set.remove(&conn);
                            if set.is_empty() {
                                self.watches.remove(&key);
                            }
                        }
                    }
                }
                self.reply(conn, xid, zxid, if found { err::OK } else { err::NO_WATCHER }, |_| {});
            }
            other => {
                tracing::debug!(op = other.code(), "ZooKeeper request not served here");
                self.reply(conn, xid, zxid, err::UNIMPLEMENTED, |_| {});
            }
        }
    }

    /// Watches a reconnecting client had: set again, and fired at once for changes made after
    /// `relative_zxid` (the last zxid it saw), as ZooKeeper does.
    #[allow(clippy::too_many_arguments)]
    fn set_watches(
        &mut self,
        tree: &DataTree,
        conn: u64,
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
        persistent: Vec<String>,
        recursive: Vec<String>,
    ) {
        let zxid = tree.last_zxid();
        let mut fire = Vec::new();
        for path in data {
            match tree.get(&path) {
                None => fire.push((EventKind::Deleted, path)),
                Some(n) if n.stat.mzxid > relative_zxid => fire.push((EventKind::DataChanged, path)),
                Some(_) => self.add_watch(conn, WatchKind::Data, &path),
            }
        }
        for path in exist {
            match tree.get(&path) {
                Some(_) => fire.push((EventKind::Created, path)),
                None => self.add_watch(conn, WatchKind::Exist, &path),
            }
        }
        for path in child {
            match tree.get(&path) {
                None => fire.push((EventKind::Deleted, path)),
                Some(n) if n.stat.pzxid > relative_zxid => fire.push((EventKind::ChildrenChanged, path)),
                Some(_) => self.add_watch(conn, WatchKind::Child, &path),
            }
        }
        for path in persistent {
            self.add_watch(conn, WatchKind::Persistent, &path);
        }
        for path in recursive {
            self.add_watch(conn, WatchKind::Recursive, &path);
        }
        for (kind, path) in fire {
            self.event(conn, zxid, kind, &path);
        }
    }

    fn event(&mut self, conn: u64, zxid: i64, kind: EventKind, path: &str) {
        let mut w = Writer::default();
        jute::watcher_event(&mut w, zxid, kind as i32, 3, path);
        self.send(conn, w.frame(), false);
    }

    /// Takes the one-shot watchers of `kind` at `path`.
    fn take(&mut self, kind: WatchKind, path: &str, into: &mut BTreeSet<u64>) {
        if let Some(set) = self.watches.remove(&(kind, path.to_owned())) {
            for conn in set {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.watches.remove(&(kind, path.to_owned()));
                }
                into.insert(conn);
            }
        }
    }

    fn persistent(&self, path: &str, recursive_too: bool, into: &mut BTreeSet<u64>) {
        if let Some(set) = self.watches.get(&(WatchKind::Persistent, path.to_owned())) {
            into.extend(set);
        }
        if recursive_too {
            let mut at = Some(path);
            while let Some(p) = at {
                if let Some(set) = self.watches.get(&(WatchKind::Recursive, p.to_owned())) {
                    into.extend(set);
                }
                at = braid_engine::tree::split_path(p).map(|(parent, _)| parent);
            }
        }
    }

    /// Fires the watches of the changes one transaction made.
    fn fire(&mut self, zxid: i64, events: &[(EventKind, String)]) {
        if self.watches.is_empty() {
            return;
        }
        for (kind, path) in events {
            let mut to = BTreeSet::new();
            match kind {
                EventKind::Created => {
                    self.take(WatchKind::Data, path, &mut to);
                    self.take(WatchKind::Exist, path, &mut to);
                    self.persistent(path, true, &mut to);
                }
                EventKind::Deleted => {
                    self.take(WatchKind::Data, path, &mut to);
                    self.take(WatchKind::Exist, path, &mut to);
                    self.take(WatchKind::Child, path, &mut to);
                    self.persistent(path, true, &mut to);
                }
                EventKind::DataChanged => {
                    self.take(WatchKind::Data, path, &mut to);
                    self.persistent(path, true, &mut to);
                }
                EventKind::ChildrenChanged => {
                    self.take(WatchKind::Child, path, &mut to);
                    // Recursive watches are not told of children lists (ZooKeeper's rule).
                    self.persistent(path, false, &mut to);
                }
            }
            for conn in to {
                self.event(conn, zxid, *kind, path);
            }
        }
    }

    /// A transaction applied on this node.
    pub fn applied(&mut self, tree: &DataTree, now_ms: i64, applied: AppliedTxn<'_>) {
        let AppliedTxn { zxid, key, txn, result, events } = applied;
        let request = own_request(self.settings.node_id, key);
        self.fire(zxid, events);
        if let (Txn::CloseSession { id }, Ok(_)) = (txn, result) {
            self.last_seen.remove(id);
            self.expiring.remove(id);
            if let Some(conn) = self.attached.remove(id) {
                // Expired (or closed from elsewhere): the connection ends; a reconnect is told.
                let own_close = request
                    .and_then(|r| self.waiting.get(&r))
                    .is_some_and(|w| matches!(w, Waiting::Reply { conn: c, .. } if *c == conn));
                if !own_close {
                    self.close(conn);
                }
            }
        }
        let Some(request) = request else { return };
        let Some(waiting) = self.waiting.remove(&request) else { return };
        match waiting {
            Waiting::Connect { conn, session, timeout_ms, password } => match result {
                Ok(_) => self.attach(tree, conn, session, timeout_ms, password, now_ms),
                Err(e) => {
                    tracing::info!(error = %e, "ZooKeeper session could not open; closing the connection");
                    self.close(conn);
                }
            },
            Waiting::Reply { conn, xid, request: op, proposed_ms } => {
                let Some(c) = self.conns.get_mut(&conn) else { return };
                if c.in_flight.front() != Some(&request) {
                    // A write before it never applied (lost with a leader change): the order
                    // promised to the client is broken, so the connection ends.
                    tracing::warn!(
                        conn,
                        "ZooKeeper write applied out of order after a lost forward; closing the connection"
                    );
                    self.close(conn);
                    return;
                }
                c.in_flight.pop_front();
                self.note_latency(now_ms - proposed_ms);
                self.answer_write(conn, xid, zxid, &op, result);
                if let Op::CloseSession = op {
                    self.close(conn);
                    return;
                }
                self.pump(tree, conn, now_ms);
            }
        }
    }

    fn note_latency(&mut self, ms: i64) {
        let l = &mut self.latency;
        l.min_ms = if l.count == 0 { ms } else { l.min_ms.min(ms) };
        l.max_ms = l.max_ms.max(ms);
        l.count += 1;
        l.total_ms += ms;
    }

    fn answer_write(&mut self, conn: u64, xid: i32, zxid: i64, op: &Op, result: &Result<Applied, TxnError>) {
        match (op, result) {
            (Op::Multi { ops, .. }, Err(e)) => {
                let index = match e {
                    TxnError::InMulti { index, .. } => *index,
                    _ => 0,
                };
                let (n, code) = (ops.len(), error_code(e));
                self.reply(conn, xid, zxid, err::OK, |w| write_multi_failure(w, n, index, code));
            }
            (_, Err(e)) => self.reply(conn, xid, zxid, error_code(e), |_| {}),
            (Op::Multi { ops, .. }, Ok(Applied::Multi(results))) => self.reply(conn, xid, zxid, err::OK, |w| {
                for (o, r) in ops.iter().zip(results) {
                    write_result(w, o, r, true);
                }
                w.int(-1).boolean(true).int(-1);
            }),
            (Op::Sync { path }, Ok(_)) => self.reply(conn, xid, zxid, err::OK, |w| {
                w.string(path);
            }),
            (o, Ok(r)) => self.reply(conn, xid, zxid, err::OK, |w| write_result(w, o, r, false)),
        }
    }

    /// Every tick: sessions owned here that went quiet past their timeout expire, and (on the
    /// leader) so do sessions of nodes that went quiet. `silent_ms(node)` is how long the
    /// leader has not heard from `node` (None when this node does not lead).
    pub fn tick(&mut self, tree: &DataTree, now_ms: i64, leader: bool, silent_ms: impl Fn(i32) -> Option<i64>) {
        let me = self.settings.node_id;
        let mut expire = Vec::new();
        for (&id, s) in tree.sessions() {
            let timeout = i64::from(s.timeout_ms);
            let quiet = if s.owner == me {
                let seen = *self.last_seen.entry(id).or_insert(now_ms);
                // A connected client pings; its connection being open is not enough.
                now_ms - seen
            } else if leader {
                match silent_ms(s.owner) {
                    Some(ms) => ms,
                    // A node outside the cluster: nobody keeps the session alive.
                    None => {
                        let seen = *self.last_seen.entry(id).or_insert(now_ms);
                        now_ms - seen
                    }
                }
            } else {
                continue;
            };
            let retry_after = self.expiring.get(&id).is_none_or(|&at| now_ms - at > timeout.max(2000));
            if quiet > timeout && retry_after {
                expire.push(id);
            }
        }
        for id in expire {
            tracing::info!(session = format!("{id:#x}"), "ZooKeeper session expired");
            self.expiring.insert(id, now_ms);
            self.propose(Txn::CloseSession { id }, None);
        }
        self.last_seen.retain(|id, _| tree.session(*id).is_some());
        // Writes that never applied (their forward was lost): the connection ends.
        let late: BTreeSet<u64> = self
            .waiting
            .values()
            .filter_map(|w| match w {
                Waiting::Reply { conn, proposed_ms, .. } if now_ms - proposed_ms > WRITE_TIMEOUT_MS => Some(*conn),
                _ => None,
            })
            .collect();
        self.close_waiting(late, "ZooKeeper write not applied in time; closing the connection");
        if leader && now_ms - self.last_reap_ms >= self.settings.reaper_ms {
            self.last_reap_ms = now_ms;
            self.reap(tree, now_ms);
        }
    }

    /// Removes empty containers (that once had children) and TTL nodes past their TTL.
    fn reap(&mut self, tree: &DataTree, now_ms: i64) {
        let mut deletes = Vec::new();
        for (path, node) in tree.reapable() {
            if node.stat.num_children != 0 {
                continue;
            }
            match braid_engine::tree::NodeKind::of(node.stat.ephemeral_owner) {
                braid_engine::tree::NodeKind::Container if node.stat.cversion > 0 => {
                    deletes.push(Txn::Delete { path: path.clone(), version: -1 })
                }
                braid_engine::tree::NodeKind::Ttl(ttl) if now_ms - node.stat.mtime > ttl => {
                    deletes.push(Txn::Delete { path: path.clone(), version: node.stat.version })
                }
                _ => {}
            }
        }
        for txn in deletes {
            self.propose(txn, None);
        }
    }

    /// Connections and watches, for the four-letter words. Out of its quorum (`serving`
    /// false) a server answers only ruok, conf and envi, as ZooKeeper's does; the rest get
    /// [`NOT_SERVING`].
    pub fn four_letter(&self, word: &str, tree: &DataTree, mode: &str, serving: bool) -> String {
        if !serving && !matches!(word, "ruok" | "conf" | "envi") {
            return NOT_SERVING.to_owned();
        }
        let s = &self.settings;
        let version = format!("3.8.0-braid-{}, built on 1970-01-01 00:00 UTC", env!("CARGO_PKG_VERSION"));
        let watch_count: usize = self.watches.values().map(BTreeSet::len).sum();
        let ephemerals: usize = tree.sessions().values().map(|s| s.ephemerals.len()).sum();
        let avg = if self.latency.count == 0 { 0.0 } else { self.latency.total_ms as f64 / self.latency.count as f64 };
        let cons = || {
            let mut out = String::new();
            for (id, c) in &self.conns {
                out.push_str(&format!(
                    " /{}[1](queued={},recved={},sent={},sid={:#x},est={})\n",
                    c.peer,
                    c.queue.len() + c.in_flight.len(),
                    c.received,
                    c.sent,
                    c.session.unwrap_or(0),
                    id
                ));
            }
            out
        };
        let outstanding: usize = self.conns.values().map(|c| c.queue.len() + c.in_flight.len()).sum();
        let srvr = format!(
            "Latency min/avg/max: {}/{avg:.4}/{}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: {outstanding}\nZxid: {:#x}\nMode: {mode}\nNode count: {}\n",
            self.latency.min_ms,
            self.latency.max_ms,
            self.packets_received,
            self.packets_sent,
            self.conns.len(),
            tree.last_zxid(),
            tree.node_count()
        );
        match word {
            "ruok" => "imok".into(),
            "srvr" => format!("Zookeeper version: {version}\n{srvr}"),
            "stat" => format!("Zookeeper version: {version}\nClients:\n{}\n{srvr}", cons()),
            "cons" => format!("{}\n", cons()),
            "conf" => format!(
                "clientPort={}\nclientPortAddress={}\ndataDir={}\ndataLogDir={}\ntickTime={}\nmaxClientCnxns=0\nminSessionTimeout={}\nmaxSessionTimeout={}\nserverId={}\n",
                s.client_addr.port(),
                s.client_addr.ip(),
                s.data_dir,
                s.data_dir,
                s.tick_ms,
                s.min_timeout_ms,
                s.max_timeout_ms,
                s.node_id
            ),
            // As ZooKeeper's: its host's canonical name (never the client port's bind, which
            // may be a wildcard), the system, the working directory; no Java to describe.
            "envi" => format!(
                "Environment:\nzookeeper.version={version}\nhost.name={}\nos.name=Linux\nos.arch={}\nos.version={}\nuser.dir={}\n",
                crate::config::host_name(),
                match std::env::consts::ARCH {
                    "x86_64" => "amd64",
                    arch => arch,
                },
                kernel_release(),
                std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            ),
            "wchs" => {
                let paths: HashSet<&String> = self.watches.keys().map(|(_, p)| p).collect();
                let watching = self.conns.values().filter(|c| !c.watches.is_empty()).count();
                format!("{watching} connections watching {} paths\nTotal watches:{watch_count}\n", paths.len())
            }
            "mntr" => {
                let data: usize = tree.nodes().map(|(p, n)| p.len() + n.data.len()).sum();
                let lines = [
                    ("zk_version", version),
                    ("zk_server_state", mode.to_owned()),
                    ("zk_avg_latency", format!("{avg:.4}")),
                    ("zk_max_latency", self.latency.max_ms.to_string()),
                    ("zk_min_latency", self.latency.min_ms.to_string()),
                    ("zk_packets_received", self.packets_received.to_string()),
                    ("zk_packets_sent", self.packets_sent.to_string()),
                    ("zk_num_alive_connections", self.conns.len().to_string()),
                    ("zk_outstanding_requests", outstanding.to_string()),
                    ("zk_znode_count", tree.node_count().to_string()),
                    ("zk_watch_count", watch_count.to_string()),
                    ("zk_ephemerals_count", ephemerals.to_string()),
                    ("zk_approximate_data_size", data.to_string()),
                    ("zk_global_sessions", tree.sessions().len().to_string()),
                    ("zk_last_proposal_size", "-1".to_owned()),
                ];
                lines.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect()
            }
            other => format!("{other} is not executed because it is not in the whitelist.\n"),
        }
    }
}

/// The kernel's release, as uname(2) gives it (Java's os.version).
fn kernel_release() -> String {
    // SAFETY: a zeroed utsname is valid for uname to fill; on success each field is a
    // NUL-terminated string within its array.
    unsafe {
        let mut names: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut names) != 0 {
            return String::new();
        }
        std::ffi::CStr::from_ptr(names.release.as_ptr()).to_string_lossy().into_owned()
    }
}

/// A multi refused (here or by the tree) at op `index` with `code`: ZooKeeper answers every op
/// with an error result, 0 before the failing op, RUNTIMEINCONSISTENCY after it.
fn write_multi_failure(w: &mut Writer, ops: usize, index: usize, code: i32) {
    for i in 0..ops {
        let e = match i.cmp(&index) {
            std::cmp::Ordering::Less => err::OK,
            std::cmp::Ordering::Equal => code,
            std::cmp::Ordering::Greater => err::RUNTIME_INCONSISTENCY,
        };
        w.int(-1).boolean(false).int(e).int(e);
    }
    w.int(-1).boolean(true).int(-1);
}

fn write_error(w: &mut Writer, code: i32) {
    w.int(-1).boolean(false).int(code).int(code);
}

/// The response record of a write (inside a multi: with its MultiHeader).
fn write_result(w: &mut Writer, op: &Op, result: &Applied, in_multi: bool) {
    let code = op.code();
    match (op, result) {
        (Op::Create { op: c, .. }, Applied::Created { path, stat }) => {
            // A multi's create answers with its path; create2 and its kin add the Stat.
            let with_stat = *c != op::CREATE;
            if in_multi {
                w.int(if with_stat { op::CREATE2 } else { op::CREATE }).boolean(false).int(err::OK);
            }
            w.string(path);
            if with_stat {
                w.stat(stat);
            }
        }
        (_, Applied::Changed { stat }) => {
            if in_multi {
                w.int(code).boolean(false).int(err::OK);
            }
            w.stat(stat);
        }
        _ => {
            if in_multi {
                w.int(code).boolean(false).int(err::OK);
            }
        }
    }
}
