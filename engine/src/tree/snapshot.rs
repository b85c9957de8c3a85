//! Snapshots of the data tree: the whole tree and its sessions at one zxid, so a node restarts
//! from the snapshot instead of the whole metadata log, and the log below it can go.
//!
//! Format (big-endian):
//! ```text
//! magic "BRTS" | u16 version 1 | i64 last_zxid
//! u32 sessions | sessions × (i64 id | i32 timeout_ms | bytes password | i32 owner)
//! u64 nodes    | nodes × (path | data | acl | stat: i64 czxid mzxid ctime mtime,
//!                          i32 version cversion aversion, i64 ephemeral_owner,
//!                          i32 data_length num_children, i64 pzxid)
//! u32 crc32c of everything before it
//! ```
//! Nodes come in path order, so every parent comes before its children. Children lists and
//! sessions' ephemerals are rebuilt from the nodes. Decoding checks every length and the CRC:
//! a torn or corrupt snapshot is an error, never a wrong tree.

use super::reader::Reader;
use super::{DataTree, NodeKind, Session, Stat, Znode};
use std::collections::{BTreeMap, BTreeSet};

const MAGIC: &[u8; 4] = b"BRTS";
const VERSION: u16 = 1;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// What a node was when a snapshot began: all of it the snapshot holds.
#[derive(Debug, Clone)]
struct Image {
    data: Vec<u8>,
    acl: Vec<super::Acl>,
    stat: Stat,
}

/// A snapshot written a slice at a time ([`DataTree::begin_snapshot`]), of the tree as it was
/// when it began: nodes up to `cursor` are in `out`; a node past it that changed since keeps
/// its image from then in `before` (`None`: it did not exist).
#[derive(Debug, Clone)]
pub(super) struct Partial {
    zxid: i64,
    out: Vec<u8>,
    cursor: Option<String>,
    before: BTreeMap<String, Option<Image>>,
    /// Nodes the snapshot holds (the tree's count when it began), and how many are written.
    count: u64,
    written: u64,
}

impl Partial {
    /// Keeps what `path` is now, before it changes, if the snapshot still has to write it.
    pub(super) fn keep(&mut self, path: &str, nodes: &BTreeMap<String, Znode>) {
        if self.cursor.as_deref().is_some_and(|cursor| path <= cursor) || self.before.contains_key(path) {
            return;
        }
        let image = nodes.get(path).map(|n| Image { data: n.data.clone(), acl: n.acl.clone(), stat: n.stat });
        self.before.insert(path.to_owned(), image);
    }
}

/// Magic, version, zxid and sessions: the snapshot's start.
fn put_header(out: &mut Vec<u8>, tree: &DataTree) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&tree.last_zxid.to_be_bytes());
    out.extend_from_slice(&(tree.sessions.len() as u32).to_be_bytes());
    for (id, s) in &tree.sessions {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&s.timeout_ms.to_be_bytes());
        put_bytes(out, &s.password);
        out.extend_from_slice(&s.owner.to_be_bytes());
    }
    out.extend_from_slice(&(tree.nodes.len() as u64).to_be_bytes());
}

fn put_node(out: &mut Vec<u8>, path: &str, data: &[u8], acl: &[super::Acl], st: &Stat) {
    put_bytes(out, path.as_bytes());
    put_bytes(out, data);
    out.extend_from_slice(&(acl.len() as u32).to_be_bytes());
    for a in acl {
        out.extend_from_slice(&a.perms.to_be_bytes());
        put_bytes(out, a.scheme.as_bytes());
        put_bytes(out, a.id.as_bytes());
    }
    for v in [st.czxid, st.mzxid, st.ctime, st.mtime] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    for v in [st.version, st.cversion, st.aversion] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&st.ephemeral_owner.to_be_bytes());
    for v in [st.data_length, st.num_children] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&st.pzxid.to_be_bytes());
}

fn put_crc(out: &mut Vec<u8>) {
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(&crc.to_be_bytes());
}

impl DataTree {
    /// The tree as snapshot bytes, at once.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 128);
        put_header(&mut out, self);
        for (path, node) in &self.nodes {
            put_node(&mut out, path, &node.data, &node.acl, &node.stat);
        }
        put_crc(&mut out);
        out
    }

    /// Starts a snapshot of the tree as it is now, written a slice at a time by
    /// [`DataTree::snapshot_step`] between transactions, so a large tree never holds its thread
    /// for the whole of it. Until it ends, each transaction first keeps what it changes of the
    /// nodes not yet written. One runs at a time: a second call restarts it.
    pub fn begin_snapshot(&mut self) {
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 128);
        put_header(&mut out, self);
        let count = self.nodes.len() as u64;
        self.partial = Some(Box::new(Partial {
            zxid: self.last_zxid,
            out,
            cursor: None,
            before: BTreeMap::new(),
            count,
            written: 0,
        }));
    }

    /// The zxid of the snapshot [`DataTree::begin_snapshot`] began, while it runs.
    pub fn snapshot_running(&self) -> Option<i64> {
        self.partial.as_ref().map(|p| p.zxid)
    }

    /// Writes more nodes of the running snapshot: at least one, and no more once `max_nodes`
    /// nodes or `max_bytes` bytes are written. Returns its bytes (the same as
    /// [`DataTree::snapshot`] gave when it began) once the last node is written; `None` while
    /// there are more, or if no snapshot runs.
    pub fn snapshot_step(&mut self, max_nodes: usize, max_bytes: usize) -> Option<Vec<u8>> {
        let DataTree { nodes, partial, .. } = self;
        let p = partial.as_mut()?;
        let Partial { out, cursor, before, written, .. } = &mut **p;
        let bytes_end = out.len().saturating_add(max_bytes);
        let lower = match cursor.as_deref() {
            Some(c) => std::ops::Bound::Excluded(c),
            None => std::ops::Bound::Unbounded,
        };
        let mut now = nodes.range::<str, _>((lower, std::ops::Bound::Unbounded)).peekable();
        let mut kept = before.range::<str, _>((lower, std::ops::Bound::Unbounded)).peekable();
        let mut last: Option<&str> = None;
        for _ in 0..max_nodes.max(1) {
            if out.len() >= bytes_end && last.is_some() {
                break;
            }
            let take_now = match (now.peek(), kept.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((a, _)), Some((b, _))) => a < b,
            };
            if take_now {
                let (path, node) = now.next().expect("peeked");
                put_node(out, path, &node.data, &node.acl, &node.stat);
                *written += 1;
                last = Some(path);
            } else {
                let (path, image) = kept.next().expect("peeked");
                if now.peek().is_some_and(|(a, _)| *a == path) {
                    now.next();
                }
                if let Some(image) = image {
                    put_node(out, path, &image.data, &image.acl, &image.stat);
                    *written += 1;
                }
                last = Some(path);
            }
        }
        let done = now.peek().is_none() && kept.peek().is_none();
        if !done {
            let last = last.expect("a step takes at least one node").to_owned();
            let mut rest = before.split_off(last.as_str());
            rest.remove(last.as_str());
            *before = rest;
            *cursor = Some(last);
            return None;
        }
        let mut p = partial.take().expect("checked above");
        debug_assert_eq!(p.written, p.count, "a snapshot holds the nodes the tree had when it began");
        put_crc(&mut p.out);
        Some(std::mem::take(&mut p.out))
    }

    /// A tree from snapshot bytes; an error says what is wrong and where.
    pub fn from_snapshot(bytes: &[u8]) -> Result<DataTree, String> {
        if bytes.len() < 4 + 2 + 8 + 4 + 8 + 4 {
            return Err(format!("snapshot of {} bytes is too short", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
        if crc32c::crc32c(body) != stored {
            return Err("snapshot CRC mismatch (torn or corrupt)".to_owned());
        }
        let mut r = Reader::new(body);
        if r.take(4)? != MAGIC {
            return Err("not a tree snapshot (bad magic)".to_owned());
        }
        let version = u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes"));
        if version != VERSION {
            return Err(format!("snapshot version {version} is not known here"));
        }
        let last_zxid = r.i64()?;
        let mut sessions = BTreeMap::new();
        for _ in 0..r.u32()? {
            let id = r.i64()?;
            let session =
                Session { timeout_ms: r.i32()?, password: r.bytes()?, owner: r.i32()?, ephemerals: BTreeSet::new() };
            sessions.insert(id, session);
        }
        let count = r.u64()?;
        let mut tree = DataTree {
            nodes: BTreeMap::new(),
            sessions,
            last_zxid,
            events: Vec::new(),
            partial: None,
            reapable: BTreeSet::new(),
        };
        for _ in 0..count {
            let path = String::from_utf8(r.bytes()?).map_err(|_| format!("a path at byte {} is not UTF-8", r.at))?;
            let data = r.bytes()?;
            let acl = r.acl().map_err(|e| format!("{e} at {path}"))?;
            let stat = Stat {
                czxid: r.i64()?,
                mzxid: r.i64()?,
                ctime: r.i64()?,
                mtime: r.i64()?,
                version: r.i32()?,
                cversion: r.i32()?,
                aversion: r.i32()?,
                ephemeral_owner: r.i64()?,
                data_length: r.i32()?,
                num_children: r.i32()?,
                pzxid: r.i64()?,
            };
            if path == "/" {
                let root = Znode { data, stat, acl, children: BTreeSet::new() };
                tree.nodes.insert(path, root);
                continue;
            }
            let (parent, name) = super::split_path(&path).ok_or_else(|| format!("bad path {path:?} in snapshot"))?;
            let parent = tree.nodes.get_mut(parent).ok_or_else(|| format!("{path} comes before its parent"))?;
            parent.children.insert(name.to_owned());
            match NodeKind::of(stat.ephemeral_owner) {
                NodeKind::Ephemeral(owner) => {
                    let session = tree.sessions.get_mut(&owner).ok_or_else(|| format!("{path} has no session"))?;
                    session.ephemerals.insert(path.clone());
                }
                NodeKind::Container | NodeKind::Ttl(_) => {
                    tree.reapable.insert(path.clone());
                }
                NodeKind::Persistent => {}
            }
            tree.nodes.insert(path, Znode { data, stat, acl, children: BTreeSet::new() });
        }
        if r.at != body.len() {
            return Err(format!("{} bytes after the last node", body.len() - r.at));
        }
        if !tree.nodes.contains_key("/") {
            return Err("snapshot without a root".to_owned());
        }
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ttl_owner, Acl, Txn, CONTAINER_OWNER};
    use super::*;

    fn sample() -> DataTree {
        let mut tree = DataTree::new();
        let session = 0x0200_0000_0000_0009;
        tree.apply(1, 10, &Txn::CreateSession { id: session, timeout_ms: 6000, password: vec![3; 16], owner: 2 })
            .unwrap();
        tree.apply(2, 20, &Txn::create("/a", b"x".to_vec())).unwrap();
        let acl = vec![Acl { perms: 1, scheme: "digest".into(), id: "u:h=".into() }];
        let txns = [
            Txn::Create { path: "/a/e".into(), data: vec![1], ephemeral_owner: session, sequential: true, acl },
            Txn::Create {
                path: "/c".into(),
                data: vec![],
                ephemeral_owner: CONTAINER_OWNER,
                sequential: false,
                acl: Acl::open_unsafe(),
            },
            Txn::Create {
                path: "/t".into(),
                data: vec![],
                ephemeral_owner: ttl_owner(99),
                sequential: false,
                acl: Acl::open_unsafe(),
            },
            Txn::SetData { path: "/a".into(), data: b"y".to_vec(), version: 0 },
        ];
        for (i, txn) in txns.iter().enumerate() {
            tree.apply(3 + i as i64, 30, txn).unwrap();
        }
        tree.take_events();
        tree
    }

    #[test]
    fn a_snapshot_restores_the_same_tree_and_goes_on_the_same() {
        let tree = sample();
        let bytes = tree.snapshot();
        let mut restored = DataTree::from_snapshot(&bytes).unwrap();
        assert_eq!(restored.digest(), tree.digest());
        assert_eq!(restored.children("/a"), tree.children("/a"));
        assert_eq!(restored.session(0x0200_0000_0000_0009), tree.session(0x0200_0000_0000_0009));
        // Both apply the next transactions alike (children and ephemerals were rebuilt).
        let mut original = tree;
        for t in [&mut original, &mut restored] {
            t.apply(10, 50, &Txn::CloseSession { id: 0x0200_0000_0000_0009 }).unwrap();
            t.apply(11, 60, &Txn::create("/a/next", vec![])).unwrap();
        }
        assert_eq!(restored.digest(), original.digest());
        assert!(restored.get("/a/e0000000000").is_none());
    }

    /// A tree of `n` nodes under /p (with a few below /p/k0) and a session with ephemerals.
    fn grown(n: usize) -> DataTree {
        let mut tree = sample();
        let mut zxid = tree.last_zxid();
        let mut apply = |tree: &mut DataTree, txn: Txn| {
            zxid += 1;
            tree.apply(zxid, zxid * 10, &txn).unwrap();
        };
        apply(&mut tree, Txn::create("/p", vec![]));
        for i in 0..n {
            apply(&mut tree, Txn::create(format!("/p/k{i}"), vec![i as u8; i % 7]));
        }
        for i in 0..5 {
            apply(&mut tree, Txn::create(format!("/p/k0/c{i}"), vec![1]));
        }
        tree.take_events();
        tree
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// A snapshot written in slices between transactions of every kind (a failed multi
        /// undoes what it did) holds the tree as it was when it began, byte for byte; and the
        /// reaper's index of container and TTL nodes stays true through all of them.
        #[test]
        fn a_snapshot_in_slices_is_the_tree_when_it_began(
            ops in proptest::collection::vec((0u8..8, 0usize..60, 1usize..9), 1..120),
        ) {
            let mut tree = grown(50);
            let expected = tree.snapshot();
            tree.begin_snapshot();
            proptest::prop_assert_eq!(tree.snapshot_running(), Some(tree.last_zxid()));
            let session = 0x0200_0000_0000_0009;
            let mut zxid = tree.last_zxid();
            let mut done = None;
            for (kind, key, budget) in ops {
                let path = format!("/p/k{key}");
                let txn = match kind {
                    0 => Txn::create(path.clone(), vec![9]),
                    1 if key % 3 == 0 => Txn::Delete { path: format!("/p/k{key}x"), version: -1 },
                    1 => Txn::Delete { path: path.clone(), version: -1 },
                    2 => Txn::SetData { path: path.clone(), data: vec![key as u8; 3], version: -1 },
                    3 => Txn::SetAcl { path: path.clone(), acl: Acl::open_unsafe(), version: -1 },
                    4 => Txn::Create {
                        path: format!("/p/k{key}x"),
                        data: vec![],
                        ephemeral_owner: if key % 2 == 0 { CONTAINER_OWNER } else { ttl_owner(1000) },
                        sequential: false,
                        acl: Acl::open_unsafe(),
                    },
                    // Applies its first ops, then fails on the last, undoing them.
                    5 => Txn::Multi(vec![
                        Txn::Create {
                            path: format!("/p/m{key}"),
                            data: vec![],
                            ephemeral_owner: ttl_owner(5),
                            sequential: false,
                            acl: Acl::open_unsafe(),
                        },
                        Txn::SetData { path: path.clone(), data: vec![7], version: -1 },
                        Txn::Delete { path: format!("/p/k{key}{}", if key % 3 == 0 { "x" } else { "" }), version: -1 },
                        Txn::Check { path: "/nowhere".into(), version: -1 },
                    ]),
                    6 => Txn::Create {
                        path: "/p/seq-".into(),
                        data: vec![],
                        ephemeral_owner: session,
                        sequential: true,
                        acl: Acl::open_unsafe(),
                    },
                    _ => Txn::CloseSession { id: session },
                };
                zxid += 1;
                let _ = tree.apply(zxid, zxid * 10, &txn);
                if done.is_none() {
                    done = tree.snapshot_step(budget, if budget % 2 == 0 { 20 } else { usize::MAX });
                }
            }
            while done.is_none() {
                done = tree.snapshot_step(7, usize::MAX);
            }
            proptest::prop_assert!(tree.snapshot_running().is_none());
            let bytes = done.unwrap();
            proptest::prop_assert!(bytes == expected, "the sliced snapshot differs from the tree when it began");
            // The reaper's index holds exactly the container and TTL nodes, as does a restored tree's.
            let scanned: Vec<String> = tree
                .nodes()
                .filter(|(_, n)| matches!(NodeKind::of(n.stat.ephemeral_owner), NodeKind::Container | NodeKind::Ttl(_)))
                .map(|(p, _)| p.clone())
                .collect();
            let indexed: Vec<String> = tree.reapable.iter().cloned().collect();
            proptest::prop_assert_eq!(&indexed, &scanned);
            let indexed: Vec<String> = tree.reapable().map(|(p, _)| p.clone()).collect();
            proptest::prop_assert_eq!(&indexed, &scanned);
            let restored = DataTree::from_snapshot(&tree.snapshot()).unwrap();
            let restored: Vec<String> = restored.reapable().map(|(p, _)| p.clone()).collect();
            proptest::prop_assert_eq!(&restored, &scanned);
        }
    }

    #[test]
    fn a_snapshot_in_one_step_equals_the_whole_one_and_restarts_cleanly() {
        let mut tree = grown(20);
        tree.begin_snapshot();
        tree.snapshot_step(3, usize::MAX);
        // A second start begins again from the tree as it is now.
        tree.apply(tree.last_zxid() + 1, 5, &Txn::create("/later", vec![])).unwrap();
        let expected = tree.snapshot();
        tree.begin_snapshot();
        assert_eq!(tree.snapshot_step(usize::MAX, usize::MAX), Some(expected));
        assert_eq!(tree.snapshot_step(10, 1), None, "nothing runs once it ended");
    }

    #[test]
    fn damaged_snapshots_are_refused() {
        let bytes = sample().snapshot();
        for cut in 0..bytes.len() {
            assert!(DataTree::from_snapshot(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(DataTree::from_snapshot(&bad).is_err(), "flip at {at}");
        }
    }
}
