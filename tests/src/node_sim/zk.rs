//! ZooKeeper clients in the simulator, and what their histories must show.
//!
//! Each client is a session that connects to a serving node (through the ZooKeeper server's
//! own messages, frames encoded and decoded as on the wire), sends pings, sets and reads keys
//! (some reads leave a watch), creates and deletes ephemeral and sequential znodes, and when
//! its connection is lost reconnects elsewhere with its session (the server refuses a node
//! behind what it has seen). Some clients die for good: their sessions must expire.
//!
//! Checked as replies arrive:
//! - replies come in the order of the requests, and their zxids never go back in a session;
//! - writes are linearizable: no two acknowledged setData of a key got the same version, and
//!   the versions (the order the tree applied them in) respect real time across all sessions:
//!   a write acknowledged before another was sent has the lower version; a write's version is
//!   above every version of that key its session saw before it;
//! - reads are sequentially consistent, as ZooKeeper promises: a read returns a value that was
//!   written to that key, the acknowledged one if that version's write was acknowledged, never
//!   a version older than its session saw (monotonic reads, read-your-writes), and after a
//!   `sync` never older than what was acknowledged to anyone before the sync was sent;
//! - a watch fires once for the registrations its connection made (however many getData set
//!   it), never without one, and events come in zxid order;
//! - sequential znodes never get the same name twice.
//!
//! Checked at the end, once the cluster settled ([`ZkWorkload::check_final`]): every
//! acknowledged write of a key is in the final tree (its version reached, its data if last);
//! every watch still registered on a live connection is on a key that has not changed since it
//! was read (else it should have fired); every acknowledged ephemeral of a live session is
//! there, and no ephemeral of an expired or dead session is.

use super::node::SimNode;
use braid_engine::rng::SimRng;
use braid_engine::tree::{DataTree, NodeKind};
use braid_node::msg::ShardMsg;
use braid_node::zk::jute::{self, err, op, Acl, ConnectRequest, ConnectResponse, Op, Reader, Request, Writer};
use braid_node::zk::server::{Out, Outbox, ZkMsg};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};

const ROOT: &str = "/sim";
const SESSION_TIMEOUT_MS: i32 = 600;
const MAX_IN_FLIGHT: usize = 8;

fn key_path(key: usize) -> String {
    format!("{ROOT}/k{key}")
}

/// The znodes the workload needs, parents first.
fn setup_paths(keys: usize) -> Vec<String> {
    let mut paths = vec![ROOT.to_owned(), format!("{ROOT}/e"), format!("{ROOT}/s")];
    paths.extend((0..keys).map(key_path));
    paths
}

fn open_acl() -> Vec<Acl> {
    vec![Acl { perms: 31, scheme: "world".into(), id: "anyone".into() }]
}

#[derive(Debug, Clone)]
enum SimOp {
    Setup(String),
    Set { key: usize, data: Vec<u8> },
    Get { key: usize, watch: bool },
    CreateEphemeral { path: String },
    CreateSequential,
    DeleteEphemeral { path: String },
    Sync,
    Ping,
}

struct Conn {
    node: i32,
    conn: u64,
    out: mpsc::UnboundedReceiver<Out>,
    connected: bool,
    /// Requests sent, with when.
    pending: VecDeque<(i32, SimOp, u64)>,
    last_sent: u64,
    last_heard: u64,
    /// Data watches registered on this connection (their getData answered) and not fired yet:
    /// per key, the versions those reads returned.
    watches: BTreeMap<usize, Vec<i32>>,
    last_event_zxid: i64,
    /// For each `sync` in flight: per key, the highest version acknowledged to anyone when it
    /// was sent (what the session must see once the sync is answered).
    sync_floors: VecDeque<BTreeMap<usize, i32>>,
}

struct Session {
    id: i64,
    password: Vec<u8>,
    timeout_ms: i32,
}

struct ZkClient {
    id: usize,
    conn: Option<Conn>,
    session: Option<Session>,
    last_zxid: i64,
    /// The client died (its process is gone): its session must expire.
    dead: bool,
    next_xid: i32,
    next_name: u64,
    /// Per key, the highest version this session saw (read or written).
    seen: BTreeMap<usize, i32>,
}

/// What the clients' histories hold, for the checks.
#[derive(Default)]
pub struct ZkWorkload {
    clients: Vec<ZkClient>,
    keys: usize,
    /// The next of [`setup_paths`] to create (client 0 creates them), and whether all are.
    setup_next: usize,
    setup_done: bool,
    next_conn: u64,
    /// Acknowledged setData: (key, version) → data.
    acked_sets: BTreeMap<(usize, i32), Vec<u8>>,
    /// Acknowledged setData: (key, version) → when it was sent and when its answer came.
    set_times: BTreeMap<(usize, i32), (u64, u64)>,
    /// Every setData sent: data (unique) → key.
    written: HashMap<Vec<u8>, usize>,
    /// Acknowledged ephemeral creates: path → session; removed when a delete is acknowledged.
    ephemerals: BTreeMap<String, i64>,
    /// Sessions that expired (the server said so) or whose client died.
    gone_sessions: BTreeSet<i64>,
    sequential_names: BTreeSet<String>,
    pub acked: u64,
    pub reads: u64,
    pub events: u64,
    pub expired: u64,
    pub reconnects: u64,
}

fn read_stat(r: &mut Reader<'_>) -> Result<(i64, i32, i64), String> {
    let e = |e: jute::JuteError| format!("stat: {e:?}");
    let (_czxid, mzxid, _ctime, _mtime) =
        (r.long().map_err(e)?, r.long().map_err(e)?, r.long().map_err(e)?, r.long().map_err(e)?);
    let (version, _cversion, _aversion) = (r.int().map_err(e)?, r.int().map_err(e)?, r.int().map_err(e)?);
    let owner = r.long().map_err(e)?;
    let (_len, _children, _pzxid) = (r.int().map_err(e)?, r.int().map_err(e)?, r.long().map_err(e)?);
    Ok((mzxid, version, owner))
}

impl ZkWorkload {
    pub fn new(clients: usize, keys: usize) -> Self {
        let clients = (0..clients)
            .map(|id| ZkClient {
                id,
                conn: None,
                session: None,
                last_zxid: 0,
                dead: false,
                next_xid: 1,
                next_name: 0,
                seen: BTreeMap::new(),
            })
            .collect();
        ZkWorkload { clients, keys, ..Default::default() }
    }

    /// One millisecond of every client: replies and events read, reconnects, new requests.
    pub fn step(
        &mut self,
        now: u64,
        nodes: &BTreeMap<i32, SimNode>,
        rng: &mut SimRng,
        ops_per_mille: u64,
    ) -> Result<(), String> {
        for index in 0..self.clients.len() {
            if self.clients[index].dead {
                continue;
            }
            self.poll(index, now, nodes)?;
            self.keep_connected(index, now, nodes, rng);
            self.act(index, now, nodes, rng, ops_per_mille);
        }
        Ok(())
    }

    /// A client dies: its connection closes (the server sees the socket go), its session
    /// lingers until it expires.
    pub fn kill_one(&mut self, nodes: &BTreeMap<i32, SimNode>, rng: &mut SimRng) {
        let alive: Vec<usize> =
            self.clients.iter().filter(|c| !c.dead && c.session.is_some() && c.id != 0).map(|c| c.id).collect();
        // Client 0 (which makes the workload's znodes) and one more stay, so the run keeps its load.
        if !self.setup_done || alive.len() <= 1 {
            return;
        }
        let index = alive[rng.below(alive.len() as u64) as usize];
        let client = &mut self.clients[index];
        client.dead = true;
        if let Some(session) = &client.session {
            self.gone_sessions.insert(session.id);
        }
        if let Some(conn) = client.conn.take() {
            if let Some(node) = nodes.get(&conn.node) {
                node.send(0, ShardMsg::Zk(ZkMsg::Closed { conn: conn.conn }));
            }
        }
    }

    fn poll(&mut self, index: usize, now: u64, nodes: &BTreeMap<i32, SimNode>) -> Result<(), String> {
        loop {
            let client = &mut self.clients[index];
            let Some(conn) = client.conn.as_mut() else { return Ok(()) };
            match conn.out.try_recv() {
                Ok(Out::Frame(frame)) => {
                    conn.last_heard = now;
                    self.frame(index, now, &frame)?;
                }
                Ok(Out::Close) | Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.disconnect(index, nodes);
                    return Ok(());
                }
                Err(mpsc::error::TryRecvError::Empty) => return Ok(()),
            }
        }
    }

    /// Drops the connection (its requests' outcomes are unknown) and tells the node.
    fn disconnect(&mut self, index: usize, nodes: &BTreeMap<i32, SimNode>) {
        if let Some(conn) = self.clients[index].conn.take() {
            if let Some(node) = nodes.get(&conn.node) {
                node.send(0, ShardMsg::Zk(ZkMsg::Closed { conn: conn.conn }));
            }
        }
    }

    fn keep_connected(&mut self, index: usize, now: u64, nodes: &BTreeMap<i32, SimNode>, rng: &mut SimRng) {
        let client = &self.clients[index];
        if let Some(conn) = &client.conn {
            // Nothing heard for two thirds of the session timeout: the client gives up on
            // this server (ZooKeeper's read timeout) and tries another.
            let timeout = client.session.as_ref().map_or(SESSION_TIMEOUT_MS, |s| s.timeout_ms) as u64;
            if now.saturating_sub(conn.last_heard) > timeout * 2 / 3 {
                self.disconnect(index, nodes);
            }
            return;
        }
        let serving: Vec<&SimNode> = nodes.values().filter(|n| n.serving()).collect();
        if serving.is_empty() {
            return;
        }
        let node = serving[rng.below(serving.len() as u64) as usize];
        self.next_conn += 1;
        let conn_id = self.next_conn;
        let client = &mut self.clients[index];
        let request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: client.last_zxid,
            timeout_ms: SESSION_TIMEOUT_MS,
            session_id: client.session.as_ref().map_or(0, |s| s.id),
            password: client.session.as_ref().map_or_else(|| vec![0; 16], |s| s.password.clone()),
            read_only: Some(false),
        };
        let (out, frames) = mpsc::unbounded_channel();
        let peer = ([127, 0, 0, 1], 40_000 + (conn_id % 20_000) as u16).into();
        let connect = ZkMsg::Connect {
            conn: conn_id,
            peer,
            request,
            out,
            credits: Arc::new(Semaphore::new(braid_node::zk::server::MAX_OUTSTANDING)),
            outbox: Arc::new(Outbox::default()),
        };
        if node.send(0, ShardMsg::Zk(connect)) {
            if client.session.is_some() {
                self.reconnects += 1;
            }
            client.conn = Some(Conn {
                node: node.id,
                conn: conn_id,
                out: frames,
                connected: false,
                pending: VecDeque::new(),
                last_sent: now,
                last_heard: now,
                watches: BTreeMap::new(),
                last_event_zxid: 0,
                sync_floors: VecDeque::new(),
            });
        }
    }

    fn act(&mut self, index: usize, now: u64, nodes: &BTreeMap<i32, SimNode>, rng: &mut SimRng, ops: u64) {
        let keys = self.keys;
        let setup_done = self.setup_done;
        let client = &mut self.clients[index];
        let Some(conn) = client.conn.as_mut().filter(|c| c.connected) else { return };
        let Some(node) = nodes.get(&conn.node) else { return };
        let timeout = client.session.as_ref().map_or(SESSION_TIMEOUT_MS, |s| s.timeout_ms) as u64;
        let op = if !setup_done && index == 0 && conn.pending.is_empty() {
            // One create per round trip, parents first.
            setup_paths(keys).into_iter().nth(self.setup_next).map(SimOp::Setup)
        } else if setup_done && conn.pending.len() < MAX_IN_FLIGHT && rng.chance(ops, 1000) {
            client.next_name += 1;
            let name = format!("c{}-{}", client.id, client.next_name);
            let key = rng.below(keys as u64) as usize;
            Some(match rng.below(100) {
                0..=39 => SimOp::Set { key, data: name.into_bytes() },
                40..=69 => SimOp::Get { key, watch: rng.chance(1, 2) },
                70..=79 => SimOp::CreateEphemeral { path: format!("{ROOT}/e/{name}") },
                80..=84 => {
                    let session = client.session.as_ref().map_or(0, |s| s.id);
                    match self.ephemerals.iter().find(|(_, &owner)| owner == session) {
                        Some((path, _)) => SimOp::DeleteEphemeral { path: path.clone() },
                        None => SimOp::Sync,
                    }
                }
                85..=94 => SimOp::CreateSequential,
                _ => SimOp::Sync,
            })
        } else if now.saturating_sub(conn.last_sent) >= timeout / 3 {
            Some(SimOp::Ping)
        } else {
            None
        };
        let Some(op) = op else { return };
        match &op {
            SimOp::Set { key, data } => {
                self.written.insert(data.clone(), *key);
            }
            // Once asked, it may be gone whether or not the answer comes.
            SimOp::DeleteEphemeral { path } => {
                self.ephemerals.remove(path);
            }
            _ => {}
        }
        let (xid, wire_op) = match &op {
            SimOp::Ping => (-2, Op::Ping),
            other => {
                client.next_xid += 1;
                (client.next_xid, wire_op(other))
            }
        };
        if let SimOp::Sync = &op {
            let mut floor = BTreeMap::new();
            for (key, version) in self.acked_sets.keys() {
                floor.insert(*key, *version);
            }
            conn.sync_floors.push_back(floor);
        }
        let mut w = Writer::default();
        Request { xid, op: wire_op }.encode(&mut w);
        let frame = w.frame();
        let request = Request::decode(&frame[4..]).expect("the simulator's request decodes");
        if node.send(0, ShardMsg::Zk(ZkMsg::Request { conn: conn.conn, request })) {
            conn.pending.push_back((xid, op, now));
            conn.last_sent = now;
        }
    }

    fn frame(&mut self, index: usize, now: u64, frame: &[u8]) -> Result<(), String> {
        let body = frame.get(4..).ok_or("a frame shorter than its length")?;
        let connected = self.clients[index].conn.as_ref().is_some_and(|c| c.connected);
        if !connected {
            return self.connected(index, body);
        }
        let mut r = Reader::new(body);
        let (xid, zxid, code) = jute::read_reply_header(&mut r).map_err(|e| format!("reply header: {e:?}"))?;
        let client = &mut self.clients[index];
        let client_id = client.id;
        if zxid > 0 {
            if zxid < client.last_zxid && xid != -1 {
                return Err(format!(
                    "client {client_id}: a reply's zxid {zxid} is behind what its session saw ({})",
                    client.last_zxid
                ));
            }
            client.last_zxid = client.last_zxid.max(zxid);
        }
        if xid == -1 {
            return self.event(index, zxid, &mut r);
        }
        let conn = client.conn.as_mut().expect("connected");
        let Some((expected, op, sent)) = conn.pending.pop_front() else {
            return Err(format!("client {client_id}: a reply (xid {xid}) to nothing it asked"));
        };
        if expected != xid {
            return Err(format!(
                "client {client_id}: reply for xid {xid} where {expected} was next (replies out of order)"
            ));
        }
        if code == err::SESSION_EXPIRED {
            self.session_gone(index);
            return Ok(());
        }
        self.reply(index, op, code, (sent, now), &mut r)
    }

    fn connected(&mut self, index: usize, body: &[u8]) -> Result<(), String> {
        let response = ConnectResponse::decode(body).map_err(|e| format!("ConnectResponse: {e:?}"))?;
        if response.timeout_ms <= 0 {
            // Expired (or refused): the client starts a new session.
            self.session_gone(index);
            return Ok(());
        }
        let client = &mut self.clients[index];
        if let Some(old) = &client.session {
            if old.id != response.session_id {
                return Err(format!(
                    "client {}: resumed session {:#x} came back as {:#x}",
                    client.id, old.id, response.session_id
                ));
            }
        }
        client.session =
            Some(Session { id: response.session_id, password: response.password, timeout_ms: response.timeout_ms });
        if let Some(conn) = client.conn.as_mut() {
            conn.connected = true;
        }
        Ok(())
    }

    /// The server says the session expired: its ephemerals must be gone; the client starts
    /// over with a new one.
    fn session_gone(&mut self, index: usize) {
        let client = &mut self.clients[index];
        if let Some(session) = client.session.take() {
            self.gone_sessions.insert(session.id);
            self.expired += 1;
        }
        client.seen.clear();
        client.conn = None;
    }

    fn event(&mut self, index: usize, zxid: i64, r: &mut Reader<'_>) -> Result<(), String> {
        let e = |e: jute::JuteError| format!("watch event: {e:?}");
        let (kind, _state, path) = (r.int().map_err(e)?, r.int().map_err(e)?, r.string().map_err(e)?);
        self.events += 1;
        let client = &mut self.clients[index];
        let conn = client.conn.as_mut().expect("connected");
        if zxid < conn.last_event_zxid {
            return Err(format!(
                "client {}: watch event at zxid {zxid} after one at {}",
                client.id, conn.last_event_zxid
            ));
        }
        conn.last_event_zxid = zxid;
        let key = path.strip_prefix(&format!("{ROOT}/k")).and_then(|k| k.parse::<usize>().ok());
        if let (Some(key), 3) = (key, kind) {
            // One event for every registration of the key on this connection.
            if conn.watches.remove(&key).is_none_or(|set| set.is_empty()) {
                return Err(format!(
                    "client {}: a data watch on {path} fired with no registration left (fired twice, or never set)",
                    client.id
                ));
            }
        }
        Ok(())
    }

    /// An acknowledged write of `key` at `version`, sent and answered at `times`: the versions
    /// of the key's acknowledged writes follow real time (linearizable writes).
    fn check_real_time(&self, key: usize, version: i32, (sent, answered): (u64, u64)) -> Result<(), String> {
        for (&(_, other), &(other_sent, other_answered)) in self.set_times.range((key, i32::MIN)..=(key, i32::MAX)) {
            let before = other_answered < sent && other > version;
            let after = answered < other_sent && other < version;
            if before || after {
                return Err(format!(
                    "key {key}: the write at version {version} (sent at {sent}, answered at {answered}) and the one at \
                     version {other} (sent at {other_sent}, answered at {other_answered}): versions against real time \
                     (writes not linearizable)"
                ));
            }
        }
        Ok(())
    }

    /// A request's answer; `times`: when it was sent and when the answer came.
    fn reply(
        &mut self,
        index: usize,
        op: SimOp,
        code: i32,
        times: (u64, u64),
        r: &mut Reader<'_>,
    ) -> Result<(), String> {
        let e = |e: jute::JuteError| format!("reply: {e:?}");
        let client = &mut self.clients[index];
        let client_id = client.id;
        let session = client.session.as_ref().map_or(0, |s| s.id);
        match (op, code) {
            (SimOp::Setup(_), err::OK | err::NODE_EXISTS) => {
                self.setup_next += 1;
                self.setup_done = self.setup_next == setup_paths(self.keys).len();
            }
            (SimOp::Set { key, data }, err::OK) => {
                let (_, version, _) = read_stat(r)?;
                self.acked += 1;
                if let Some(other) = self.acked_sets.get(&(key, version)) {
                    if *other != data {
                        return Err(format!(
                            "two acknowledged setData of key {key} got version {version}: {:?} and {:?}",
                            String::from_utf8_lossy(other),
                            String::from_utf8_lossy(&data)
                        ));
                    }
                }
                let seen = client.seen.get(&key).copied().unwrap_or(-1);
                if version <= seen {
                    return Err(format!(
                        "client {client_id}: its setData of key {key} got version {version}, not above the {seen} it had seen"
                    ));
                }
                client.seen.insert(key, version);
                self.acked_sets.insert((key, version), data);
                self.check_real_time(key, version, times)?;
                self.set_times.insert((key, version), times);
            }
            (SimOp::Get { key, watch }, err::OK) => {
                let data = r.buffer().map_err(e)?.unwrap_or_default();
                let (_, version, _) = read_stat(r)?;
                self.reads += 1;
                if !data.is_empty() && self.written.get(&data) != Some(&key) {
                    return Err(format!(
                        "client {client_id}: key {key} read {:?}, which no one wrote there",
                        String::from_utf8_lossy(&data)
                    ));
                }
                if let Some(acked) = self.acked_sets.get(&(key, version)) {
                    if *acked != data {
                        return Err(format!(
                            "client {client_id}: key {key} at version {version} read {:?}, but the write acknowledged at that version was {:?}",
                            String::from_utf8_lossy(&data),
                            String::from_utf8_lossy(acked)
                        ));
                    }
                }
                let seen = client.seen.get(&key).copied().unwrap_or(-1);
                if version < seen {
                    return Err(format!(
                        "client {client_id}: key {key} read version {version} after its session saw version {seen} \
                         (or synced past it)"
                    ));
                }
                client.seen.insert(key, version);
                if let Some(conn) = client.conn.as_mut().filter(|_| watch) {
                    conn.watches.entry(key).or_default().push(version);
                }
            }
            (SimOp::Sync, code) => {
                let floor = client.conn.as_mut().and_then(|c| c.sync_floors.pop_front()).unwrap_or_default();
                if code == err::OK {
                    for (key, version) in floor {
                        let seen = client.seen.entry(key).or_insert(version);
                        *seen = (*seen).max(version);
                    }
                }
            }
            (SimOp::CreateEphemeral { path }, err::OK) => {
                let created = r.string().map_err(e)?;
                if created != path {
                    return Err(format!("client {client_id}: created {created} asking for {path}"));
                }
                self.acked += 1;
                self.ephemerals.insert(path, session);
            }
            (SimOp::DeleteEphemeral { .. }, err::OK) => self.acked += 1,
            (SimOp::CreateSequential, err::OK) => {
                let created = r.string().map_err(e)?;
                self.acked += 1;
                if !self.sequential_names.insert(created.clone()) {
                    return Err(format!("client {client_id}: sequential znode {created} was created twice"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The checks on the final tree (every node's, once they agree).
    pub fn check_final(&self, tree: &DataTree) -> Result<(), String> {
        self.check_final_watches(tree)?;
        for key in 0..self.keys {
            let Some(node) = tree.get(&key_path(key)) else {
                if self.acked_sets.keys().any(|(k, _)| *k == key) {
                    return Err(format!("key {key} is gone from the tree, with acknowledged writes"));
                }
                continue;
            };
            let last = self.acked_sets.range((key, i32::MIN)..=(key, i32::MAX)).next_back();
            if let Some(((_, version), data)) = last {
                if node.stat.version < *version {
                    return Err(format!(
                        "key {key} ends at version {}, below the acknowledged write at version {version}",
                        node.stat.version
                    ));
                }
                if node.stat.version == *version && node.data != *data {
                    return Err(format!("key {key} ends with other data than its last acknowledged write"));
                }
            }
        }
        let mut live = BTreeSet::new();
        for client in self.clients.iter().filter(|c| !c.dead) {
            if let Some(session) = &client.session {
                live.insert(session.id);
            }
        }
        for (path, owner) in &self.ephemerals {
            if live.contains(owner) && tree.get(path).is_none() {
                return Err(format!("ephemeral {path} of live session {owner:#x} is gone"));
            }
        }
        for child in tree.children(&format!("{ROOT}/e")).unwrap_or_default() {
            let path = format!("{ROOT}/e/{child}");
            let Some(node) = tree.get(&path) else { continue };
            if let NodeKind::Ephemeral(owner) = NodeKind::of(node.stat.ephemeral_owner) {
                if self.gone_sessions.contains(&owner) {
                    return Err(format!("ephemeral {path} of expired session {owner:#x} outlived its session"));
                }
            }
        }
        Ok(())
    }

    /// A watch still registered on a live connection must be on a key that has not changed
    /// since the read that set it: else its event was lost.
    fn check_final_watches(&self, tree: &DataTree) -> Result<(), String> {
        for client in self.clients.iter().filter(|c| !c.dead) {
            let Some(conn) = client.conn.as_ref().filter(|c| c.connected) else { continue };
            for (key, versions) in &conn.watches {
                let now = tree.get(&key_path(*key)).map_or(i32::MAX, |n| n.stat.version);
                if let Some(read) = versions.iter().min().filter(|&&read| read < now) {
                    return Err(format!(
                        "client {}: its data watch on key {key}, set reading version {read}, never fired; the key is \
                         at version {now}",
                        client.id
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn sessions_gone(&self) -> usize {
        self.gone_sessions.len()
    }
}

fn wire_op(op: &SimOp) -> Op {
    match op {
        SimOp::Setup(path) => {
            Op::Create { op: op::CREATE, path: path.clone(), data: Vec::new(), acl: open_acl(), flags: 0, ttl: None }
        }
        SimOp::Set { key, data } => Op::SetData { path: key_path(*key), data: data.clone(), version: -1 },
        SimOp::Get { key, watch } => Op::GetData { path: key_path(*key), watch: *watch },
        SimOp::CreateEphemeral { path } => {
            Op::Create { op: op::CREATE, path: path.clone(), data: Vec::new(), acl: open_acl(), flags: 1, ttl: None }
        }
        SimOp::CreateSequential => Op::Create {
            op: op::CREATE,
            path: format!("{ROOT}/s/q-"),
            data: Vec::new(),
            acl: open_acl(),
            flags: 2,
            ttl: None,
        },
        SimOp::DeleteEphemeral { path } => Op::Delete { op: op::DELETE, path: path.clone(), version: -1 },
        SimOp::Sync => Op::Sync { path: ROOT.to_owned() },
        SimOp::Ping => Op::Ping,
    }
}
