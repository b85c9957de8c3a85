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

impl DataTree {
    /// The tree as snapshot bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 128);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.last_zxid.to_be_bytes());
        out.extend_from_slice(&(self.sessions.len() as u32).to_be_bytes());
        for (id, s) in &self.sessions {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&s.timeout_ms.to_be_bytes());
            put_bytes(&mut out, &s.password);
            out.extend_from_slice(&s.owner.to_be_bytes());
        }
        out.extend_from_slice(&(self.nodes.len() as u64).to_be_bytes());
        for (path, node) in &self.nodes {
            put_bytes(&mut out, path.as_bytes());
            put_bytes(&mut out, &node.data);
            out.extend_from_slice(&(node.acl.len() as u32).to_be_bytes());
            for a in &node.acl {
                out.extend_from_slice(&a.perms.to_be_bytes());
                put_bytes(&mut out, a.scheme.as_bytes());
                put_bytes(&mut out, a.id.as_bytes());
            }
            let st = &node.stat;
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
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
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
        let mut tree = DataTree { nodes: BTreeMap::new(), sessions, last_zxid, events: Vec::new() };
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
            if let NodeKind::Ephemeral(owner) = NodeKind::of(stat.ephemeral_owner) {
                let session = tree.sessions.get_mut(&owner).ok_or_else(|| format!("{path} has no session"))?;
                session.ephemerals.insert(path.clone());
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
