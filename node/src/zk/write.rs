//! Writes: an op turned into the transaction proposed for it (or refused here), and the reply
//! sent when this node applies it.

use super::jute::{err, op, Op, Writer};
use super::server::{own_request, AppliedTxn, Waiting, ZkServer};
use braid_engine::tree::{perms, ttl_owner, Applied, DataTree, Txn, TxnError, CONTAINER_OWNER, TTL_MAX_MS};

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

impl ZkServer {
    /// The transaction of one write op, or the error code that refuses it here.
    pub(super) fn write_txn(&self, tree: &DataTree, conn: u64, op: &Op) -> Result<Txn, i32> {
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
}

impl ZkServer {
    /// Answers a multi refused here at op `index` of `ops` with `code`.
    pub(super) fn refuse_multi(&mut self, conn: u64, xid: i32, zxid: i64, ops: usize, index: usize, code: i32) {
        self.reply(conn, xid, zxid, err::OK, |w| write_multi_failure(w, ops, index, code));
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
