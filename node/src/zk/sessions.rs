//! Sessions: a connection's ConnectRequest (a new session, one resumed here, one moved here
//! from another node), connections going away, and the tick that expires quiet sessions, gives
//! up on writes never applied and, on the leader, reaps empty containers and expired TTL nodes.

use super::jute::{ConnectResponse, Writer};
use super::server::{Conn, Waiting, ZkMsg, ZkServer};
use braid_engine::hash::HashSet;
use braid_engine::tree::{DataTree, Txn};
use std::collections::{BTreeSet, VecDeque};

/// A write not applied this long after it was proposed (a forward lost to a leader change)
/// closes its connection: the client sees a connection loss, reconnects and retries.
const WRITE_TIMEOUT_MS: i64 = 10_000;

impl ZkServer {
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
            watches: HashSet::default(),
            received: 1,
            sent: 0,
            closing: false,
            read_only: false,
        };
        self.conns.insert(conn, c);
        if cut_off && request.read_only != Some(true) {
            // No majority: the client goes elsewhere (one that allows read-only mode gets a
            // read-only session below, as from ZooKeeper's read-only server).
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
        if cut_off {
            self.read_only_session(tree, conn, request.timeout_ms, now_ms);
            return;
        }
        let timeout_ms = request.timeout_ms.clamp(self.settings.min_timeout_ms, self.settings.max_timeout_ms);
        if request.session_id == 0 {
            let (session, password) = self.new_session();
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

    /// A read-only session for `conn` (this node reaches no majority): local to this node,
    /// never in the tree, gone with its connection. A client that later reaches a read-write
    /// server starts a new session there (ZooKeeper's clients send session 0 when they have
    /// seen no read-write server).
    fn read_only_session(&mut self, tree: &DataTree, conn: u64, timeout_ms: i32, now_ms: i64) {
        let timeout_ms = timeout_ms.clamp(self.settings.min_timeout_ms, self.settings.max_timeout_ms);
        let (session, password) = self.new_session();
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.session = Some(session);
        c.read_only = true;
        tracing::info!(peer = %c.peer, session = format!("{session:#x}"), "ZooKeeper read-only session (no majority reachable)");
        self.answer_connect(tree, conn, (session, timeout_ms, password), true, now_ms);
    }

    /// A new session's id and password. The id's top byte is this node (ZooKeeper's layout),
    /// below it random: unique with overwhelming odds, and a collision is refused by the tree
    /// (the client retries).
    fn new_session(&self) -> (i64, Vec<u8>) {
        let mut password = vec![0u8; 16];
        password.copy_from_slice(&self.settings.env.uuid().as_bytes()[..]);
        let random = (self.settings.env.random() as i64) & ((1 << 56) - 1);
        ((i64::from(self.settings.node_id & 0x7f) << 56) | random.max(1), password)
    }

    /// Answers a ConnectRequest with the session now live on `conn`, then serves what it sent.
    fn answer_connect(
        &mut self,
        tree: &DataTree,
        conn: u64,
        (session, timeout_ms, password): (i64, i32, Vec<u8>),
        read_only: bool,
        now_ms: i64,
    ) {
        let mut w = Writer::default();
        ConnectResponse { protocol_version: 0, timeout_ms, session_id: session, password, read_only }.encode(&mut w);
        self.send(conn, w.frame(), false);
        self.pump(tree, conn, now_ms);
    }

    /// The session is live on this connection: answer the ConnectRequest.
    pub(super) fn attach(
        &mut self,
        tree: &DataTree,
        conn: u64,
        session: i64,
        timeout_ms: i32,
        password: Vec<u8>,
        now_ms: i64,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.session = Some(session);
        if let Some(old) = self.attached.insert(session, conn).filter(|&old| old != conn) {
            // The client moved to a new connection; the old one is stale.
            self.close(old);
        }
        self.last_seen.insert(session, now_ms);
        self.answer_connect(tree, conn, (session, timeout_ms, password), false, now_ms);
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

    /// Closes every client connection (this node cannot reach a majority).
    /// Closes every connection whose session is (`read_only`) or is not read-only.
    pub fn close_all(&mut self, read_only: bool, why: &str) {
        let open: Vec<u64> =
            self.conns.iter().filter(|(_, c)| !c.closing && c.read_only == read_only).map(|(id, _)| *id).collect();
        if !open.is_empty() {
            tracing::warn!(connections = open.len(), why, "closing ZooKeeper connections");
        }
        for conn in open {
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
            let mutated = crate::mutation::active(crate::mutation::Mutation::SessionsNeverExpire);
            if quiet > timeout && retry_after && !mutated {
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
}
