//! The coordination tree: ZooKeeper's data tree as a pure state machine.
//!
//! Transactions come from the metadata log (group 0) in log order, each with the zxid (its log
//! offset) and the time the leader stamped on it; applying the same transactions gives the same
//! tree on every node. Nothing here reads a clock.
//!
//! Stat fields follow ZooKeeper: `czxid`/`mzxid` are the zxids that created / last changed the
//! data, `pzxid` the last change to the children list, `version`/`cversion`/`aversion` count data,
//! children and ACL changes.

mod reader;
mod snapshot;
mod txn;

pub use txn::{Txn, TxnError, ACL_ENTRIES_MAX};

use std::collections::{BTreeMap, BTreeSet};

/// ZooKeeper's Stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

/// An access control entry: permissions (READ 1, WRITE 2, CREATE 4, DELETE 8, ADMIN 16) for an
/// identity (scheme "world"/"digest"/"ip", id).
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Acl {
    pub perms: i32,
    pub scheme: String,
    pub id: String,
}

pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = 31;
}

impl Acl {
    /// world:anyone with every permission (ZooKeeper's OPEN_ACL_UNSAFE).
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl { perms: perms::ALL, scheme: "world".into(), id: "anyone".into() }]
    }
}

/// The ephemeral owner ZooKeeper gives container nodes.
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// Largest TTL a TTL node can have (ms).
pub const TTL_MAX_MS: i64 = (1 << 40) - 1;

/// The ephemeral owner ZooKeeper gives a TTL node (its extended-types encoding: 0xFF in the
/// top byte, the TTL below).
pub fn ttl_owner(ttl_ms: i64) -> i64 {
    (0xFFi64 << 56) | (ttl_ms & TTL_MAX_MS)
}

/// What an ephemeral owner field says about the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Persistent,
    /// Ephemeral, owned by this session.
    Ephemeral(i64),
    Container,
    Ttl(i64),
}

impl NodeKind {
    pub fn of(owner: i64) -> NodeKind {
        if owner == 0 {
            NodeKind::Persistent
        } else if owner == CONTAINER_OWNER {
            NodeKind::Container
        } else if (owner >> 56) & 0xFF == 0xFF {
            NodeKind::Ttl(owner & TTL_MAX_MS)
        } else {
            NodeKind::Ephemeral(owner)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Znode {
    pub data: Vec<u8>,
    pub stat: Stat,
    pub acl: Vec<Acl>,
    children: BTreeSet<String>,
}

/// A client session, as every node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub timeout_ms: i32,
    pub password: Vec<u8>,
    /// The node the client is connected to (it tells the leader the session lives).
    pub owner: i32,
    /// Paths of the session's ephemeral nodes.
    pub ephemerals: BTreeSet<String>,
}

/// ZooKeeper's watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Created = 1,
    Deleted = 2,
    DataChanged = 3,
    ChildrenChanged = 4,
}

/// What a successful transaction did (what the client is answered with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The node's path (with its sequence number) and Stat.
    Created {
        path: String,
        stat: Stat,
    },
    Deleted,
    /// SetData and SetAcl: the node's new Stat.
    Changed {
        stat: Stat,
    },
    Checked,
    Multi(Vec<Applied>),
    /// Session transactions and no-ops.
    Done,
}

/// What undoes one applied operation of a multi.
enum Undo {
    Created { path: String, parent_stat: Stat },
    Deleted { path: String, node: Znode, parent_stat: Stat },
    Changed { path: String, data: Vec<u8>, acl: Vec<Acl>, stat: Stat },
    Nothing,
}

/// The data tree. Paths are absolute ("/brokers/topics/t"); "/" always exists.
#[derive(Debug, Clone)]
pub struct DataTree {
    nodes: BTreeMap<String, Znode>,
    sessions: BTreeMap<i64, Session>,
    last_zxid: i64,
    /// Changes made by the transactions applied since the last [`DataTree::take_events`].
    events: Vec<(EventKind, String)>,
    /// The snapshot being written a slice at a time ([`DataTree::begin_snapshot`]).
    partial: Option<Box<snapshot::Partial>>,
    /// Paths of the container and TTL nodes ([`DataTree::reapable`]).
    reapable: BTreeSet<String>,
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

/// Splits "/a/b" into ("/a", "b"); None for "/" or a malformed path.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    if !validate_path(path) || path == "/" {
        return None;
    }
    let cut = path.rfind('/')?;
    let parent = if cut == 0 { "/" } else { &path[..cut] };
    Some((parent, &path[cut + 1..]))
}

/// ZooKeeper's path rules: absolute, no empty, "." or ".." segments, no trailing slash, no NUL.
pub fn validate_path(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    // ZooKeeper also refuses control characters and a few Unicode ranges.
    let bad_char = |c: char| matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{e000}'..='\u{f8ff}' | '\u{fff0}'..='\u{ffff}');
    path.starts_with('/')
        && !path.ends_with('/')
        && !path.chars().any(bad_char)
        && path[1..].split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

impl DataTree {
    pub fn new() -> Self {
        let root =
            Znode { data: Vec::new(), stat: Stat::default(), acl: Acl::open_unsafe(), children: BTreeSet::new() };
        Self {
            nodes: BTreeMap::from([("/".to_owned(), root)]),
            sessions: BTreeMap::new(),
            last_zxid: 0,
            events: Vec::new(),
            partial: None,
            reapable: BTreeSet::new(),
        }
    }

    pub fn get(&self, path: &str) -> Option<&Znode> {
        self.nodes.get(path)
    }

    /// Child names of `path`, sorted.
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        self.nodes.get(path).map(|n| n.children.iter().cloned().collect())
    }

    /// Nodes below `path` (not counting it).
    pub fn descendants(&self, path: &str) -> usize {
        let prefix = if path == "/" { "/".to_owned() } else { format!("{path}/") };
        let below = self.nodes.range(prefix.clone()..).take_while(|(p, _)| p.starts_with(&prefix)).count();
        below - usize::from(path == "/")
    }

    /// Every node path, in order.
    pub fn nodes(&self) -> impl Iterator<Item = (&String, &Znode)> {
        self.nodes.iter()
    }

    /// The container and TTL nodes, in path order: what the reaper looks at, without a walk
    /// of the whole tree.
    pub fn reapable(&self) -> impl Iterator<Item = (&String, &Znode)> {
        self.reapable.iter().filter_map(|path| self.nodes.get_key_value(path.as_str()))
    }

    pub fn session(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    pub fn sessions(&self) -> &BTreeMap<i64, Session> {
        &self.sessions
    }

    /// The zxid of the last transaction applied.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The changes made since the last call, in order: what watches fire on.
    pub fn take_events(&mut self) -> Vec<(EventKind, String)> {
        std::mem::take(&mut self.events)
    }

    /// A digest of the whole tree (paths, data, ACLs, Stat and sessions), equal on every node
    /// that applied the same transactions: how replicas are compared.
    pub fn digest(&self) -> u64 {
        // FNV-1a, stable across platforms and versions (unlike std's hasher).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for (path, node) in &self.nodes {
            let st = &node.stat;
            eat(path.as_bytes());
            eat(&node.data);
            for v in [st.czxid, st.mzxid, st.ctime, st.mtime, st.ephemeral_owner, st.pzxid] {
                eat(&v.to_be_bytes());
            }
            for v in [st.version, st.cversion, st.aversion, st.data_length, st.num_children] {
                eat(&v.to_be_bytes());
            }
            for a in &node.acl {
                eat(&a.perms.to_be_bytes());
                eat(a.scheme.as_bytes());
                eat(a.id.as_bytes());
            }
        }
        for (id, s) in &self.sessions {
            eat(&id.to_be_bytes());
            eat(&s.timeout_ms.to_be_bytes());
            eat(&s.owner.to_be_bytes());
            eat(&s.password);
        }
        eat(&self.last_zxid.to_be_bytes());
        hash
    }

    /// Applies one transaction at `zxid` and `time_ms`. A failed transaction changes nothing
    /// (a multi fails whole) but still moves `last_zxid`: it was in the log.
    pub fn apply(&mut self, zxid: i64, time_ms: i64, txn: &Txn) -> Result<Applied, TxnError> {
        assert!(zxid > self.last_zxid, "zxids only grow: {zxid} after {}", self.last_zxid);
        self.last_zxid = zxid;
        match txn {
            Txn::Multi(ops) => {
                // Each applied op leaves what undoes it; a failing op undoes the ones before it,
                // newest first (the tree is never copied, whatever its size).
                let mut undo = Vec::with_capacity(ops.len());
                let mut results = Vec::with_capacity(ops.len());
                let events_before = self.events.len();
                for (index, op) in ops.iter().enumerate() {
                    match self.apply_one(zxid, time_ms, op, true) {
                        Ok((applied, u)) => {
                            results.push(applied);
                            undo.push(u);
                        }
                        Err(e) => {
                            for u in undo.into_iter().rev() {
                                self.undo(u);
                            }
                            self.events.truncate(events_before);
                            return Err(TxnError::InMulti { index, error: Box::new(e) });
                        }
                    }
                }
                Ok(Applied::Multi(results))
            }
            Txn::CreateSession { id, timeout_ms, password, owner } => {
                if self.sessions.contains_key(id) {
                    return Err(TxnError::SessionExists(*id));
                }
                let session = Session {
                    timeout_ms: *timeout_ms,
                    password: password.clone(),
                    owner: *owner,
                    ephemerals: BTreeSet::new(),
                };
                self.sessions.insert(*id, session);
                Ok(Applied::Done)
            }
            Txn::MoveSession { id, owner } => {
                let session = self.sessions.get_mut(id).ok_or(TxnError::SessionExpired(*id))?;
                session.owner = *owner;
                Ok(Applied::Done)
            }
            Txn::CloseSession { id } => {
                let session = self.sessions.remove(id).ok_or(TxnError::SessionExpired(*id))?;
                // Deepest first: an ephemeral never has children, but keep the order stable.
                for path in session.ephemerals.iter().rev() {
                    if let Err(e) = self.delete(zxid, path, -1) {
                        // Cannot happen (the set is kept with the tree); the tree stays whole.
                        debug_assert!(false, "ephemeral {path} of a closing session: {e}");
                    }
                }
                Ok(Applied::Done)
            }
            Txn::Noop | Txn::Truncatable { .. } => Ok(Applied::Done),
            single => self.apply_one(zxid, time_ms, single, false).map(|(applied, _)| applied),
        }
    }

    /// Undoes an op of the multi being applied. A running snapshot kept the nodes it touches
    /// when the op itself ran.
    fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Created { path, parent_stat } => {
                if let Some(node) = self.nodes.remove(&path) {
                    self.forget_owned(node.stat.ephemeral_owner, &path);
                }
                if let Some((parent, name)) = split_path(&path) {
                    let parent = self.nodes.get_mut(parent).expect("a node's parent exists");
                    parent.children.remove(name);
                    parent.stat = parent_stat;
                }
            }
            Undo::Deleted { path, node, parent_stat } => {
                if let Some((parent, name)) = split_path(&path) {
                    let parent = self.nodes.get_mut(parent).expect("a node's parent exists");
                    parent.children.insert(name.to_owned());
                    parent.stat = parent_stat;
                }
                match NodeKind::of(node.stat.ephemeral_owner) {
                    NodeKind::Ephemeral(owner) => {
                        if let Some(session) = self.sessions.get_mut(&owner) {
                            session.ephemerals.insert(path.clone());
                        }
                    }
                    NodeKind::Container | NodeKind::Ttl(_) => {
                        self.reapable.insert(path.clone());
                    }
                    NodeKind::Persistent => {}
                }
                self.nodes.insert(path, node);
            }
            Undo::Changed { path, data, acl, stat } => {
                let node = self.nodes.get_mut(&path).expect("a changed node exists");
                node.data = data;
                node.acl = acl;
                node.stat = stat;
            }
            Undo::Nothing => {}
        }
    }

    /// Before `path` changes (or appears, or goes): a running snapshot keeps what it was.
    fn keep(&mut self, path: &str) {
        if let Some(partial) = &mut self.partial {
            partial.keep(path, &self.nodes);
        }
    }

    /// A node with this owner went: its session, or the reaper, no longer keeps it.
    fn forget_owned(&mut self, owner: i64, path: &str) {
        match NodeKind::of(owner) {
            NodeKind::Ephemeral(owner) => {
                if let Some(session) = self.sessions.get_mut(&owner) {
                    session.ephemerals.remove(path);
                }
            }
            NodeKind::Container | NodeKind::Ttl(_) => {
                self.reapable.remove(path);
            }
            NodeKind::Persistent => {}
        }
    }

    fn delete(&mut self, zxid: i64, path: &str, version: i32) -> Result<Undo, TxnError> {
        let (parent, name) = split_path(path).ok_or_else(|| TxnError::BadPath(path.to_owned()))?;
        let node = self.nodes.get(path).ok_or_else(|| TxnError::NoNode(path.to_owned()))?;
        if version != -1 && node.stat.version != version {
            return Err(TxnError::BadVersion(path.to_owned()));
        }
        if !node.children.is_empty() {
            return Err(TxnError::NotEmpty(path.to_owned()));
        }
        self.keep(path);
        self.keep(parent);
        let node = self.nodes.remove(path).expect("checked above");
        self.forget_owned(node.stat.ephemeral_owner, path);
        let parent_node = self.nodes.get_mut(parent).expect("a node's parent exists");
        let parent_stat = parent_node.stat;
        parent_node.children.remove(name);
        parent_node.stat.cversion += 1;
        parent_node.stat.pzxid = zxid;
        parent_node.stat.num_children = parent_node.children.len() as i32;
        self.events.push((EventKind::Deleted, path.to_owned()));
        self.events.push((EventKind::ChildrenChanged, parent.to_owned()));
        Ok(Undo::Deleted { path: path.to_owned(), node, parent_stat })
    }

    /// One transaction (or one op of a multi). `keep_undo`: return what undoes it (a multi's
    /// ops); a lone transaction skips the copies a setData's or setACL's undo would take.
    fn apply_one(&mut self, zxid: i64, time_ms: i64, txn: &Txn, keep_undo: bool) -> Result<(Applied, Undo), TxnError> {
        match txn {
            Txn::Create { path, data, ephemeral_owner, sequential, acl } => {
                // A sequential name may end in "/" ("/queue/" makes "/queue/0000000007").
                let probe = if *sequential { format!("{path}0") } else { path.clone() };
                let (parent, _) = split_path(&probe).ok_or_else(|| TxnError::BadPath(path.clone()))?;
                if acl.is_empty() {
                    return Err(TxnError::InvalidAcl(format!("no ACL for {path}")));
                }
                let parent_node = self.nodes.get(parent).ok_or_else(|| TxnError::NoNode(parent.to_owned()))?;
                let path = if *sequential {
                    // ZooKeeper's name: the count of child creates so far, ten digits (negative
                    // after wrap). cversion counts creates and deletes, so creates are
                    // (cversion + children) / 2.
                    let st = parent_node.stat;
                    let creates = (i64::from(st.cversion) + i64::from(st.num_children)) / 2;
                    format!("{path}{:010}", creates as i32)
                } else {
                    path.clone()
                };
                if self.nodes.contains_key(path.as_str()) {
                    return Err(TxnError::NodeExists(path));
                }
                if matches!(NodeKind::of(parent_node.stat.ephemeral_owner), NodeKind::Ephemeral(_)) {
                    return Err(TxnError::NoChildrenForEphemerals(parent.to_owned()));
                }
                match NodeKind::of(*ephemeral_owner) {
                    NodeKind::Ephemeral(owner) => {
                        let session = self.sessions.get_mut(&owner).ok_or(TxnError::SessionExpired(owner))?;
                        session.ephemerals.insert(path.clone());
                    }
                    NodeKind::Container | NodeKind::Ttl(_) => {
                        self.reapable.insert(path.clone());
                    }
                    NodeKind::Persistent => {}
                }
                let name = &path[parent.len() + usize::from(parent != "/")..];
                self.keep(&path);
                self.keep(parent);
                let parent_node = self.nodes.get_mut(parent).expect("checked above");
                let parent_stat = parent_node.stat;
                parent_node.children.insert(name.to_owned());
                parent_node.stat.cversion += 1;
                parent_node.stat.pzxid = zxid;
                parent_node.stat.num_children = parent_node.children.len() as i32;
                let stat = Stat {
                    czxid: zxid,
                    mzxid: zxid,
                    ctime: time_ms,
                    mtime: time_ms,
                    ephemeral_owner: *ephemeral_owner,
                    data_length: data.len() as i32,
                    pzxid: zxid,
                    ..Stat::default()
                };
                let node = Znode { data: data.clone(), stat, acl: acl.clone(), children: BTreeSet::new() };
                self.nodes.insert(path.clone(), node);
                self.events.push((EventKind::Created, path.clone()));
                self.events.push((EventKind::ChildrenChanged, parent.to_owned()));
                Ok((Applied::Created { path: path.clone(), stat }, Undo::Created { path, parent_stat }))
            }
            Txn::Delete { path, version } => Ok((Applied::Deleted, self.delete(zxid, path, *version)?)),
            Txn::SetData { path, data, version } => {
                self.keep(path);
                let node = self.nodes.get_mut(path.as_str()).ok_or_else(|| TxnError::NoNode(path.clone()))?;
                if *version != -1 && node.stat.version != *version {
                    return Err(TxnError::BadVersion(path.clone()));
                }
                let old = std::mem::replace(&mut node.data, data.clone());
                let undo = if keep_undo {
                    Undo::Changed { path: path.clone(), data: old, acl: node.acl.clone(), stat: node.stat }
                } else {
                    Undo::Nothing
                };
                node.stat.version = node.stat.version.wrapping_add(1);
                node.stat.mzxid = zxid;
                node.stat.mtime = time_ms;
                node.stat.data_length = data.len() as i32;
                let stat = node.stat;
                self.events.push((EventKind::DataChanged, path.clone()));
                Ok((Applied::Changed { stat }, undo))
            }
            Txn::SetAcl { path, acl, version } => {
                if acl.is_empty() {
                    return Err(TxnError::InvalidAcl(format!("no ACL for {path}")));
                }
                self.keep(path);
                let node = self.nodes.get_mut(path.as_str()).ok_or_else(|| TxnError::NoNode(path.clone()))?;
                if *version != -1 && node.stat.aversion != *version {
                    return Err(TxnError::BadVersion(path.clone()));
                }
                let old = std::mem::replace(&mut node.acl, acl.clone());
                let undo = if keep_undo {
                    Undo::Changed { path: path.clone(), data: node.data.clone(), acl: old, stat: node.stat }
                } else {
                    Undo::Nothing
                };
                node.stat.aversion = node.stat.aversion.wrapping_add(1);
                Ok((Applied::Changed { stat: node.stat }, undo))
            }
            Txn::Check { path, version } => {
                let node = self.nodes.get(path.as_str()).ok_or_else(|| TxnError::NoNode(path.clone()))?;
                if *version != -1 && node.stat.version != *version {
                    return Err(TxnError::BadVersion(path.clone()));
                }
                Ok((Applied::Checked, Undo::Nothing))
            }
            Txn::Multi(_) => Err(TxnError::NestedMulti),
            other => Err(TxnError::Malformed(format!("{other:?} inside a multi"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(path: &str, data: &[u8]) -> Txn {
        Txn::create(path, data.to_vec())
    }

    #[test]
    fn stat_follows_zookeeper_rules() {
        let mut tree = DataTree::new();
        tree.apply(1, 100, &create("/brokers", b"")).unwrap();
        tree.apply(2, 200, &create("/brokers/topics", b"x")).unwrap();
        tree.apply(3, 300, &Txn::SetData { path: "/brokers/topics".into(), data: b"yz".to_vec(), version: 0 }).unwrap();
        let topics = tree.get("/brokers/topics").unwrap();
        assert_eq!((topics.stat.czxid, topics.stat.mzxid, topics.stat.version), (2, 3, 1));
        assert_eq!((topics.stat.ctime, topics.stat.mtime, topics.stat.data_length), (200, 300, 2));
        let brokers = tree.get("/brokers").unwrap();
        assert_eq!((brokers.stat.cversion, brokers.stat.pzxid, brokers.stat.num_children), (1, 2, 1));
        assert_eq!(
            tree.apply(4, 400, &Txn::SetData { path: "/brokers/topics".into(), data: vec![], version: 0 }),
            Err(TxnError::BadVersion("/brokers/topics".into()))
        );
        assert_eq!(
            tree.apply(5, 500, &create("/brokers/topics", b"")),
            Err(TxnError::NodeExists("/brokers/topics".into()))
        );
        assert_eq!(tree.apply(6, 600, &create("/nope/x", b"")), Err(TxnError::NoNode("/nope".into())));
        assert_eq!(
            tree.apply(7, 700, &Txn::Delete { path: "/brokers".into(), version: -1 }),
            Err(TxnError::NotEmpty("/brokers".into()))
        );
        tree.apply(8, 800, &Txn::Delete { path: "/brokers/topics".into(), version: 1 }).unwrap();
        assert_eq!(tree.get("/brokers").unwrap().stat.num_children, 0);
        assert_eq!(tree.get("/brokers").unwrap().stat.cversion, 2);
    }

    #[test]
    fn a_failing_multi_changes_nothing() {
        let mut tree = DataTree::new();
        let multi = Txn::Multi(vec![create("/a", b"1"), create("/a/b", b"2"), create("/missing/c", b"")]);
        assert!(tree.apply(1, 0, &multi).is_err());
        assert!(tree.get("/a").is_none());
        assert_eq!(tree.last_zxid(), 1);
        tree.apply(2, 0, &Txn::Multi(vec![create("/a", b"1"), create("/a/b", b"2")])).unwrap();
        assert_eq!(tree.children("/a").unwrap(), vec!["b".to_owned()]);
        // Every kind of op is undone, newest first, to the byte: the digest does not move.
        let before = (tree.digest(), tree.get("/a").unwrap().stat, tree.get("/").unwrap().stat);
        let multi = Txn::Multi(vec![
            Txn::SetData { path: "/a".into(), data: b"changed".to_vec(), version: 0 },
            Txn::Delete { path: "/a/b".into(), version: -1 },
            create("/a/c", b"3"),
            Txn::Delete { path: "/a/c".into(), version: -1 },
            Txn::Delete { path: "/a".into(), version: -1 },
            create("/a", b"again"),
            create("/missing/d", b""),
        ]);
        assert_eq!(
            tree.apply(3, 5, &multi),
            Err(TxnError::InMulti { index: 6, error: Box::new(TxnError::NoNode("/missing".into())) })
        );
        let after = (tree.digest(), tree.get("/a").unwrap().stat, tree.get("/").unwrap().stat);
        assert_eq!((after.1, after.2), (before.1, before.2));
        assert_eq!(tree.get("/a").unwrap().data, b"1");
        assert_eq!(tree.children("/a").unwrap(), vec!["b".to_owned()]);
        assert_ne!(after.0, before.0, "only last_zxid moved (it is in the digest)");
        let mut fresh = DataTree::new();
        fresh.apply(2, 0, &Txn::Multi(vec![create("/a", b"1"), create("/a/b", b"2")])).unwrap();
        fresh.apply(3, 5, &Txn::SetData { path: "/zz".into(), data: vec![], version: -1 }).unwrap_err();
        assert_eq!(fresh.digest(), tree.digest(), "the same tree as one that never saw the multi");
    }

    #[test]
    fn digests_agree_exactly_when_trees_do() {
        let (mut a, mut b) = (DataTree::new(), DataTree::new());
        for tree in [&mut a, &mut b] {
            tree.apply(1, 10, &create("/x", b"1")).unwrap();
        }
        assert_eq!(a.digest(), b.digest());
        a.apply(2, 20, &Txn::SetData { path: "/x".into(), data: b"2".to_vec(), version: -1 }).unwrap();
        b.apply(2, 21, &Txn::SetData { path: "/x".into(), data: b"2".to_vec(), version: -1 }).unwrap();
        assert_ne!(a.digest(), b.digest(), "mtime differs");
    }

    fn ephemeral(path: &str, session: i64, sequential: bool) -> Txn {
        Txn::Create { path: path.into(), data: vec![], ephemeral_owner: session, sequential, acl: Acl::open_unsafe() }
    }

    #[test]
    fn sequential_names_come_from_the_parents_cversion() {
        let mut tree = DataTree::new();
        tree.apply(1, 0, &create("/q", b"")).unwrap();
        tree.apply(2, 0, &create("/q/x", b"")).unwrap();
        let seq = Txn::Create {
            path: "/q/item-".into(),
            data: vec![],
            ephemeral_owner: 0,
            sequential: true,
            acl: Acl::open_unsafe(),
        };
        let Applied::Created { path, stat } = tree.apply(3, 0, &seq).unwrap() else { panic!() };
        assert_eq!(path, "/q/item-0000000001");
        assert_eq!(stat.czxid, 3);
        tree.apply(4, 0, &Txn::Delete { path: "/q/x".into(), version: -1 }).unwrap();
        let slash = Txn::Create {
            path: "/q/".into(),
            data: vec![],
            ephemeral_owner: 0,
            sequential: true,
            acl: Acl::open_unsafe(),
        };
        // Two creates and a delete before: the suffix counts creates, as ZooKeeper's does.
        assert_eq!(
            tree.apply(5, 0, &slash).unwrap(),
            Applied::Created { path: "/q/0000000002".into(), stat: tree_stat(&tree, "/q/0000000002") }
        );
        let events = tree.take_events();
        assert_eq!(events.last(), Some(&(EventKind::ChildrenChanged, "/q".to_owned())));
        assert!(events.contains(&(EventKind::Deleted, "/q/x".to_owned())));
        assert!(tree.take_events().is_empty());
    }

    fn tree_stat(tree: &DataTree, path: &str) -> Stat {
        tree.get(path).unwrap().stat
    }

    #[test]
    fn ephemerals_belong_to_open_sessions_and_leave_with_them() {
        let mut tree = DataTree::new();
        let s = 0x0100_0000_0000_0001;
        assert_eq!(tree.apply(1, 0, &ephemeral("/e", s, false)), Err(TxnError::SessionExpired(s)));
        let open = Txn::CreateSession { id: s, timeout_ms: 4000, password: vec![7; 16], owner: 1 };
        tree.apply(2, 0, &open).unwrap();
        assert_eq!(tree.apply(3, 0, &open), Err(TxnError::SessionExists(s)));
        tree.apply(4, 0, &create("/p", b"")).unwrap();
        tree.apply(5, 0, &ephemeral("/p/e", s, false)).unwrap();
        tree.apply(6, 0, &ephemeral("/p/s-", s, true)).unwrap();
        assert_eq!(tree.apply(7, 0, &create("/p/e/child", b"")), Err(TxnError::NoChildrenForEphemerals("/p/e".into())));
        assert_eq!(tree.session(s).unwrap().ephemerals.len(), 2);
        assert_eq!(NodeKind::of(tree_stat(&tree, "/p/e").ephemeral_owner), NodeKind::Ephemeral(s));
        // A failed multi that deleted one leaves the session's set as it was.
        let multi = Txn::Multi(vec![Txn::Delete { path: "/p/e".into(), version: -1 }, create("/nope/x", b"")]);
        assert!(tree.apply(8, 0, &multi).is_err());
        assert_eq!(tree.session(s).unwrap().ephemerals.len(), 2);
        tree.apply(9, 0, &Txn::MoveSession { id: s, owner: 2 }).unwrap();
        assert_eq!(tree.session(s).unwrap().owner, 2);
        tree.take_events();
        tree.apply(10, 0, &Txn::CloseSession { id: s }).unwrap();
        assert!(tree.get("/p/e").is_none() && tree.get("/p/s-0000000001").is_none());
        assert_eq!(tree_stat(&tree, "/p").num_children, 0);
        assert_eq!(tree.take_events().iter().filter(|(k, _)| *k == EventKind::Deleted).count(), 2);
        assert_eq!(tree.apply(11, 0, &Txn::CloseSession { id: s }), Err(TxnError::SessionExpired(s)));
    }

    #[test]
    fn containers_ttls_acls_and_checks() {
        let mut tree = DataTree::new();
        let container = Txn::Create {
            path: "/c".into(),
            data: vec![],
            ephemeral_owner: CONTAINER_OWNER,
            sequential: false,
            acl: Acl::open_unsafe(),
        };
        tree.apply(1, 0, &container).unwrap();
        tree.apply(2, 0, &create("/c/child", b"")).unwrap();
        assert_eq!(NodeKind::of(tree_stat(&tree, "/c").ephemeral_owner), NodeKind::Container);
        let ttl = Txn::Create {
            path: "/t".into(),
            data: vec![],
            ephemeral_owner: ttl_owner(5000),
            sequential: false,
            acl: Acl::open_unsafe(),
        };
        tree.apply(3, 0, &ttl).unwrap();
        assert_eq!(NodeKind::of(tree_stat(&tree, "/t").ephemeral_owner), NodeKind::Ttl(5000));
        assert_eq!(tree_stat(&tree, "/t").ephemeral_owner as u64 >> 56, 0xFF);
        let secret = vec![Acl { perms: perms::READ, scheme: "digest".into(), id: "u:x".into() }];
        let Applied::Changed { stat } =
            tree.apply(4, 0, &Txn::SetAcl { path: "/t".into(), acl: secret.clone(), version: 0 }).unwrap()
        else {
            panic!()
        };
        assert_eq!((stat.aversion, stat.version), (1, 0));
        assert_eq!(tree.get("/t").unwrap().acl, secret);
        assert_eq!(
            tree.apply(5, 0, &Txn::SetAcl { path: "/t".into(), acl: secret, version: 0 }),
            Err(TxnError::BadVersion("/t".into()))
        );
        assert_eq!(
            tree.apply(6, 0, &Txn::SetAcl { path: "/t".into(), acl: vec![], version: -1 }),
            Err(TxnError::InvalidAcl("no ACL for /t".into()))
        );
        let multi = Txn::Multi(vec![
            Txn::Check { path: "/t".into(), version: 0 },
            Txn::SetData { path: "/t".into(), data: b"v".to_vec(), version: 0 },
        ]);
        let Applied::Multi(results) = tree.apply(7, 0, &multi).unwrap() else { panic!() };
        assert_eq!(results[0], Applied::Checked);
        let failing = Txn::Multi(vec![
            Txn::SetData { path: "/t".into(), data: b"w".to_vec(), version: -1 },
            Txn::Check { path: "/t".into(), version: 0 },
        ]);
        assert_eq!(
            tree.apply(8, 0, &failing),
            Err(TxnError::InMulti { index: 1, error: Box::new(TxnError::BadVersion("/t".into())) })
        );
        assert_eq!(tree.get("/t").unwrap().data, b"v", "the multi's set was undone");
        assert_eq!(tree.descendants("/"), 3);
        assert_eq!(tree.descendants("/c"), 1);
    }

    #[test]
    fn paths_are_checked() {
        for bad in ["", "a", "/a/", "//a", "/a/./b", "/a/../b", "/a\0b", "/a\u{1}", "/\u{fff5}"] {
            assert!(!validate_path(bad), "{bad:?}");
        }
        assert_eq!(split_path("/a/b"), Some(("/a", "b")));
        assert_eq!(split_path("/a"), Some(("/", "a")));
        assert_eq!(split_path("/"), None);
    }
}
