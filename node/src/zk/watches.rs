//! Watches: registering them (reads, addWatch, a reconnect's setWatches), checking and removing
//! them, and firing their events as transactions apply.

use super::jute::{self, err, op, Writer};
use super::server::{WatchKind, ZkServer};
use braid_engine::tree::{DataTree, EventKind};
use std::collections::BTreeSet;

impl ZkServer {
    pub(super) fn add_watch(&mut self, conn: u64, kind: WatchKind, path: &str) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.watches.insert((kind, path.to_owned()));
            self.watches.entry((kind, path.to_owned())).or_default().insert(conn);
        }
    }

    /// addWatch: a persistent watch at `path` (mode 1: recursive, on its whole subtree).
    pub(super) fn add_persistent_watch(&mut self, conn: u64, xid: i32, zxid: i64, path: String, mode: i32) {
        let kind = if mode == 1 { WatchKind::Recursive } else { WatchKind::Persistent };
        if !braid_engine::tree::validate_path(&path) || !(0..=1).contains(&mode) {
            self.reply(conn, xid, zxid, err::BAD_ARGUMENTS, |_| {});
        } else {
            self.add_watch(conn, kind, &path);
            self.reply(conn, xid, zxid, err::OK, |_| {});
        }
    }

    /// Watches a reconnecting client had: set again, and fired at once for changes made after
    /// `relative_zxid` (the last zxid it saw), as ZooKeeper does.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn set_watches(
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

    /// checkWatches or removeWatches (`code`): whether the connection has watches of `kind` at
    /// `path`, and with removeWatches, takes them away.
    pub(super) fn check_watches(&mut self, conn: u64, xid: i32, zxid: i64, code: i32, path: String, kind: i32) {
        let kinds: &[WatchKind] = match kind {
            1 => &[WatchKind::Child],
            2 => &[WatchKind::Data, WatchKind::Exist],
            3 => &[WatchKind::Child, WatchKind::Data, WatchKind::Exist, WatchKind::Persistent, WatchKind::Recursive],
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

    fn event(&mut self, conn: u64, zxid: i64, kind: EventKind, path: &str) {
        let mut w = Writer::default();
        jute::watcher_event(&mut w, zxid, kind as i32, 3, path);
        self.send(conn, w.frame(), false);
    }

    /// Takes the one-shot watchers of `kind` at `path`.
    fn take(&mut self, kind: WatchKind, path: &str, into: &mut BTreeSet<u64>) {
        if crate::mutation::active(crate::mutation::Mutation::WatchesStay) {
            into.extend(self.watches.get(&(kind, path.to_owned())).into_iter().flatten());
            return;
        }
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
    pub(super) fn fire(&mut self, zxid: i64, events: &[(EventKind, String)]) {
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
}
