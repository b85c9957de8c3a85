//! Requests answered at once, without a transaction: reads from this node's tree (which holds
//! every write this node has answered), pings, and the ops on the connection's own state (auth,
//! whoAmI, watches).

use super::acl::allowed;
use super::jute::{self, err, op, Op, Request, Writer};
use super::server::{WatchKind, ZkServer};
use braid_engine::tree::{perms, DataTree};

impl ZkServer {
    /// Answers a request that needs no transaction.
    pub(super) fn read(&mut self, tree: &DataTree, conn: u64, request: Request) {
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
            Op::Multi { ops, .. } => self.multi_read(tree, conn, xid, zxid, ops, may),
            Op::Auth { scheme, auth, .. } => self.add_auth(conn, xid, zxid, scheme, auth),
            Op::WhoAmI => self.who_am_i(conn, xid, zxid),
            Op::AddWatch { path, mode } => self.add_persistent_watch(conn, xid, zxid, path, mode),
            Op::SetWatches { relative_zxid, data, exist, child, persistent, persistent_recursive, .. } => {
                self.set_watches(tree, conn, relative_zxid, data, exist, child, persistent, persistent_recursive);
                self.reply(conn, xid, zxid, err::OK, |_| {});
            }
            Op::Watches { op: code, path, kind } => self.check_watches(conn, xid, zxid, code, path, kind),
            other => {
                tracing::debug!(op = other.code(), "ZooKeeper request not served here");
                self.reply(conn, xid, zxid, err::UNIMPLEMENTED, |_| {});
            }
        }
    }

    /// The ops of a multiRead; `may` says whether the connection may read a path.
    fn multi_read(
        &mut self,
        tree: &DataTree,
        conn: u64,
        xid: i32,
        zxid: i64,
        ops: Vec<Op>,
        may: impl Fn(&str, i32) -> bool,
    ) {
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
}

fn write_error(w: &mut Writer, code: i32) {
    w.int(-1).boolean(false).int(code).int(code);
}
