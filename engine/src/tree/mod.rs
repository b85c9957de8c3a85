//! The coordination tree: ZooKeeper's data tree as a pure state machine.
//!
//! Transactions come from the metadata log (group 0) in log order, each with the zxid (its log
//! offset) and the time the leader stamped on it; applying the same transactions gives the same
//! tree on every node. Nothing here reads a clock.
//!
//! Stat fields follow ZooKeeper: `czxid`/`mzxid` are the zxids that created / last changed the
//! data, `pzxid` the last change to the children list, `version`/`cversion`/`aversion` count data,
//! children and ACL changes.

mod txn;

pub use txn::{Txn, TxnError};

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

#[derive(Debug, Clone)]
pub struct Znode {
    pub data: Vec<u8>,
    pub stat: Stat,
    children: BTreeSet<String>,
}

/// What undoes one applied operation of a multi.
enum Undo {
    Created { path: String, parent_stat: Stat },
    Deleted { path: String, node: Znode, parent_stat: Stat },
    SetData { path: String, data: Vec<u8>, stat: Stat },
}

/// The data tree. Paths are absolute ("/brokers/topics/t"); "/" always exists.
#[derive(Debug, Clone)]
pub struct DataTree {
    nodes: BTreeMap<String, Znode>,
    last_zxid: i64,
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
    path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains('\0')
        && path[1..].split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

impl DataTree {
    pub fn new() -> Self {
        let root = Znode { data: Vec::new(), stat: Stat::default(), children: BTreeSet::new() };
        Self { nodes: BTreeMap::from([("/".to_owned(), root)]), last_zxid: 0 }
    }

    pub fn get(&self, path: &str) -> Option<&Znode> {
        self.nodes.get(path)
    }

    /// Child names of `path`, sorted.
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        self.nodes.get(path).map(|n| n.children.iter().cloned().collect())
    }

    /// The zxid of the last transaction applied.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A digest of the whole tree (paths, data and Stat), equal on every node that applied the
    /// same transactions: how replicas are compared.
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
        }
        eat(&self.last_zxid.to_be_bytes());
        hash
    }

    /// Applies one transaction at `zxid` and `time_ms`. A failed transaction changes nothing
    /// (a multi fails whole) but still moves `last_zxid`: it was in the log.
    pub fn apply(&mut self, zxid: i64, time_ms: i64, txn: &Txn) -> Result<(), TxnError> {
        assert!(zxid > self.last_zxid, "zxids only grow: {zxid} after {}", self.last_zxid);
        self.last_zxid = zxid;
        match txn {
            Txn::Multi(ops) => {
                // Each applied op leaves what undoes it; a failing op undoes the ones before it,
                // newest first (the tree is never copied, whatever its size).
                let mut undo = Vec::with_capacity(ops.len());
                for op in ops {
                    match self.apply_one(zxid, time_ms, op) {
                        Ok(u) => undo.push(u),
                        Err(e) => {
                            for u in undo.into_iter().rev() {
                                self.undo(u);
                            }
                            return Err(e);
                        }
                    }
                }
                Ok(())
            }
            single => self.apply_one(zxid, time_ms, single).map(|_| ()),
        }
    }

    fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Created { path, parent_stat } => {
                self.nodes.remove(&path);
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
                self.nodes.insert(path, node);
            }
            Undo::SetData { path, data, stat } => {
                let node = self.nodes.get_mut(&path).expect("a changed node exists");
                node.data = data;
                node.stat = stat;
            }
        }
    }

    fn apply_one(&mut self, zxid: i64, time_ms: i64, txn: &Txn) -> Result<Undo, TxnError> {
        match txn {
            Txn::Create { path, data, ephemeral_owner } => {
                let (parent, name) = split_path(path).ok_or_else(|| TxnError::BadPath(path.clone()))?;
                if self.nodes.contains_key(path.as_str()) {
                    return Err(TxnError::NodeExists(path.clone()));
                }
                let parent_node = self.nodes.get_mut(parent).ok_or_else(|| TxnError::NoNode(parent.to_owned()))?;
                if parent_node.stat.ephemeral_owner != 0 {
                    return Err(TxnError::NoChildrenForEphemerals(parent.to_owned()));
                }
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
                self.nodes.insert(path.clone(), Znode { data: data.clone(), stat, children: BTreeSet::new() });
                Ok(Undo::Created { path: path.clone(), parent_stat })
            }
            Txn::Delete { path, version } => {
                let (parent, name) = split_path(path).ok_or_else(|| TxnError::BadPath(path.clone()))?;
                let node = self.nodes.get(path.as_str()).ok_or_else(|| TxnError::NoNode(path.clone()))?;
                if *version != -1 && node.stat.version != *version {
                    return Err(TxnError::BadVersion(path.clone()));
                }
                if !node.children.is_empty() {
                    return Err(TxnError::NotEmpty(path.clone()));
                }
                let node = self.nodes.remove(path.as_str()).expect("checked above");
                let parent_node = self.nodes.get_mut(parent).expect("a node's parent exists");
                let parent_stat = parent_node.stat;
                parent_node.children.remove(name);
                parent_node.stat.cversion += 1;
                parent_node.stat.pzxid = zxid;
                parent_node.stat.num_children = parent_node.children.len() as i32;
                Ok(Undo::Deleted { path: path.clone(), node, parent_stat })
            }
            Txn::SetData { path, data, version } => {
                let node = self.nodes.get_mut(path.as_str()).ok_or_else(|| TxnError::NoNode(path.clone()))?;
                if *version != -1 && node.stat.version != *version {
                    return Err(TxnError::BadVersion(path.clone()));
                }
                let undo = Undo::SetData {
                    path: path.clone(),
                    data: std::mem::replace(&mut node.data, data.clone()),
                    stat: node.stat,
                };
                node.stat.version += 1;
                node.stat.mzxid = zxid;
                node.stat.mtime = time_ms;
                node.stat.data_length = data.len() as i32;
                Ok(undo)
            }
            Txn::Multi(_) => Err(TxnError::NestedMulti),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(path: &str, data: &[u8]) -> Txn {
        Txn::Create { path: path.to_owned(), data: data.to_vec(), ephemeral_owner: 0 }
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
        assert_eq!(tree.apply(3, 5, &multi), Err(TxnError::NoNode("/missing".into())));
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

    #[test]
    fn paths_are_checked() {
        for bad in ["", "a", "/a/", "//a", "/a/./b", "/a/../b", "/a\0b"] {
            assert!(!validate_path(bad), "{bad:?}");
        }
        assert_eq!(split_path("/a/b"), Some(("/a", "b")));
        assert_eq!(split_path("/a"), Some(("/", "a")));
        assert_eq!(split_path("/"), None);
    }
}
