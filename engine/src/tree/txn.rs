//! Tree transactions as stored in the metadata log, and their encoding.
//!
//! Encoding (big-endian, inside one record value of a RecordBatch of the metadata log):
//! ```text
//! Create (v1)   : u8 1 | path | data | i64 ephemeral_owner        (ACL world:anyone, not sequential)
//! Delete        : u8 2 | path | i32 version
//! SetData       : u8 3 | path | data | i32 version
//! Multi         : u8 4 | u32 count | count × (transaction)
//! Create        : u8 5 | path | data | i64 ephemeral_owner | u8 sequential | acl
//! SetAcl        : u8 6 | path | acl | i32 version
//! Check         : u8 7 | path | i32 version
//! CreateSession : u8 8 | i64 id | i32 timeout_ms | bytes password | i32 owner
//! MoveSession   : u8 9 | i64 id | i32 owner
//! CloseSession  : u8 10 | i64 id
//! Noop          : u8 11
//! Truncatable   : u8 12 | i64 below
//! path, data, bytes: u32 length | bytes
//! acl: u32 count | count × (i32 perms | scheme | id)
//! ```
//! Version 1 creates stay readable: logs written before sessions and ACLs existed replay the same.

use super::reader::Reader;
use super::Acl;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txn {
    /// `ephemeral_owner`: 0 persistent, a session id (ephemeral), [`super::CONTAINER_OWNER`]
    /// or [`super::ttl_owner`] (ZooKeeper's encodings). A sequential create appends the
    /// parent's cversion, as ten digits, to the name.
    Create {
        path: String,
        data: Vec<u8>,
        ephemeral_owner: i64,
        sequential: bool,
        acl: Vec<Acl>,
    },
    /// `version` -1 matches any version.
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    /// `version` is matched against the ACL version (aversion).
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// Fails unless the node exists (at `version`, unless -1); changes nothing.
    Check {
        path: String,
        version: i32,
    },
    /// All or nothing.
    Multi(Vec<Txn>),
    /// A client session opened on node `owner`.
    CreateSession {
        id: i64,
        timeout_ms: i32,
        password: Vec<u8>,
        owner: i32,
    },
    /// The session's client reconnected to node `owner`.
    MoveSession {
        id: i64,
        owner: i32,
    },
    /// The session closed or expired: its ephemeral nodes go with it.
    CloseSession {
        id: i64,
    },
    /// Changes nothing (ZooKeeper's sync passes through the log as one of these).
    Noop,
    /// Every member holds the metadata log up to `below`: a node may delete its log below
    /// that point once a snapshot of its tree covers it. Changes nothing in the tree.
    Truncatable {
        below: i64,
    },
}

impl Txn {
    /// A persistent node readable and writable by anyone (how Kafka's metadata is written).
    pub fn create(path: impl Into<String>, data: Vec<u8>) -> Txn {
        Txn::Create { path: path.into(), data, ephemeral_owner: 0, sequential: false, acl: Acl::open_unsafe() }
    }

    /// True for transactions that change nothing but the zxid when they succeed.
    pub fn is_write(&self) -> bool {
        !matches!(self, Txn::Check { .. } | Txn::Noop | Txn::Truncatable { .. })
    }
}

/// Why a transaction did not apply (ZooKeeper's error for each is named alongside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnError {
    /// NONODE
    NoNode(String),
    /// NODEEXISTS
    NodeExists(String),
    /// BADVERSION
    BadVersion(String),
    /// NOTEMPTY
    NotEmpty(String),
    /// NOCHILDRENFOREPHEMERALS
    NoChildrenForEphemerals(String),
    /// BADARGUMENTS
    BadPath(String),
    /// SESSIONEXPIRED: an ephemeral for a session that is not open.
    SessionExpired(i64),
    /// A session id already in use (the proposer picks another).
    SessionExists(i64),
    /// INVALIDACL
    InvalidAcl(String),
    NestedMulti,
    /// Op `index` of a multi failed with `error`; nothing of the multi applied.
    InMulti {
        index: usize,
        error: Box<TxnError>,
    },
    /// The stored bytes do not decode.
    Malformed(String),
}

impl TxnError {
    /// The error itself (a multi's failing op's).
    pub fn root(&self) -> &TxnError {
        match self {
            TxnError::InMulti { error, .. } => error.root(),
            other => other,
        }
    }
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnError::NoNode(p) => write!(f, "no node {p}"),
            TxnError::NodeExists(p) => write!(f, "node {p} exists"),
            TxnError::BadVersion(p) => write!(f, "version mismatch at {p}"),
            TxnError::NotEmpty(p) => write!(f, "node {p} has children"),
            TxnError::NoChildrenForEphemerals(p) => write!(f, "ephemeral node {p} cannot have children"),
            TxnError::BadPath(p) => write!(f, "bad path {p:?}"),
            TxnError::SessionExpired(id) => write!(f, "session {id:#x} is not open"),
            TxnError::SessionExists(id) => write!(f, "session {id:#x} already exists"),
            TxnError::InvalidAcl(why) => write!(f, "invalid ACL: {why}"),
            TxnError::NestedMulti => write!(f, "multi inside multi"),
            TxnError::InMulti { index, error } => write!(f, "op {index} of the multi: {error}"),
            TxnError::Malformed(why) => write!(f, "malformed transaction: {why}"),
        }
    }
}

impl std::error::Error for TxnError {}

const CREATE_V1: u8 = 1;
const DELETE: u8 = 2;
const SET_DATA: u8 = 3;
const MULTI: u8 = 4;
const CREATE: u8 = 5;
const SET_ACL: u8 = 6;
const CHECK: u8 = 7;
const CREATE_SESSION: u8 = 8;
const MOVE_SESSION: u8 = 9;
const CLOSE_SESSION: u8 = 10;
const NOOP: u8 = 11;
const TRUNCATABLE: u8 = 12;
/// Bytes of the smallest op a multi may hold (a delete or check of the empty path: type, path
/// length, version): a multi announcing more ops than its bytes can hold is malformed. Its
/// size is otherwise bounded only by the record that carries it (a topic of many thousand
/// partitions is deleted in one multi).
const MULTI_OP_BYTES_MIN: usize = 9;
/// Entries in one ACL, at most.
pub const ACL_ENTRIES_MAX: u32 = 1_000;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_acl(out: &mut Vec<u8>, acl: &[Acl]) {
    out.extend_from_slice(&(acl.len() as u32).to_be_bytes());
    for entry in acl {
        out.extend_from_slice(&entry.perms.to_be_bytes());
        put_bytes(out, entry.scheme.as_bytes());
        put_bytes(out, entry.id.as_bytes());
    }
}

impl Txn {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Txn::Create { path, data, ephemeral_owner, sequential, acl } => {
                out.push(CREATE);
                put_bytes(out, path.as_bytes());
                put_bytes(out, data);
                out.extend_from_slice(&ephemeral_owner.to_be_bytes());
                out.push(u8::from(*sequential));
                put_acl(out, acl);
            }
            Txn::Delete { path, version } | Txn::Check { path, version } => {
                out.push(if matches!(self, Txn::Delete { .. }) { DELETE } else { CHECK });
                put_bytes(out, path.as_bytes());
                out.extend_from_slice(&version.to_be_bytes());
            }
            Txn::SetData { path, data, version } => {
                out.push(SET_DATA);
                put_bytes(out, path.as_bytes());
                put_bytes(out, data);
                out.extend_from_slice(&version.to_be_bytes());
            }
            Txn::SetAcl { path, acl, version } => {
                out.push(SET_ACL);
                put_bytes(out, path.as_bytes());
                put_acl(out, acl);
                out.extend_from_slice(&version.to_be_bytes());
            }
            Txn::Multi(ops) => {
                out.push(MULTI);
                out.extend_from_slice(&(ops.len() as u32).to_be_bytes());
                for op in ops {
                    op.encode_into(out);
                }
            }
            Txn::CreateSession { id, timeout_ms, password, owner } => {
                out.push(CREATE_SESSION);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&timeout_ms.to_be_bytes());
                put_bytes(out, password);
                out.extend_from_slice(&owner.to_be_bytes());
            }
            Txn::MoveSession { id, owner } => {
                out.push(MOVE_SESSION);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&owner.to_be_bytes());
            }
            Txn::CloseSession { id } => {
                out.push(CLOSE_SESSION);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Txn::Noop => out.push(NOOP),
            Txn::Truncatable { below } => {
                out.push(TRUNCATABLE);
                out.extend_from_slice(&below.to_be_bytes());
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Txn, TxnError> {
        let mut reader = Reader::new(bytes);
        let txn = reader.txn(true)?;
        if reader.at != bytes.len() {
            return Err(TxnError::Malformed(format!("{} trailing bytes", bytes.len() - reader.at)));
        }
        Ok(txn)
    }
}

impl From<String> for TxnError {
    fn from(why: String) -> Self {
        TxnError::Malformed(why)
    }
}

impl Reader<'_> {
    fn txn(&mut self, top: bool) -> Result<Txn, TxnError> {
        match self.u8()? {
            CREATE_V1 => Ok(Txn::Create {
                path: self.string()?,
                data: self.bytes()?,
                ephemeral_owner: self.i64()?,
                sequential: false,
                acl: Acl::open_unsafe(),
            }),
            CREATE => Ok(Txn::Create {
                path: self.string()?,
                data: self.bytes()?,
                ephemeral_owner: self.i64()?,
                sequential: match self.u8()? {
                    0 => false,
                    1 => true,
                    other => return Err(TxnError::Malformed(format!("sequential flag {other}"))),
                },
                acl: self.acl()?,
            }),
            DELETE => Ok(Txn::Delete { path: self.string()?, version: self.i32()? }),
            CHECK => Ok(Txn::Check { path: self.string()?, version: self.i32()? }),
            SET_DATA => Ok(Txn::SetData { path: self.string()?, data: self.bytes()?, version: self.i32()? }),
            SET_ACL => Ok(Txn::SetAcl { path: self.string()?, acl: self.acl()?, version: self.i32()? }),
            MULTI if top => {
                let count = self.u32()?;
                if count as usize > (self.bytes.len() - self.at) / MULTI_OP_BYTES_MIN {
                    return Err(TxnError::Malformed(format!("multi of {count} ops in too few bytes")));
                }
                (0..count).map(|_| self.txn(false)).collect::<Result<_, _>>().map(Txn::Multi)
            }
            MULTI => Err(TxnError::NestedMulti),
            CREATE_SESSION if top => Ok(Txn::CreateSession {
                id: self.i64()?,
                timeout_ms: self.i32()?,
                password: self.bytes()?,
                owner: self.i32()?,
            }),
            MOVE_SESSION if top => Ok(Txn::MoveSession { id: self.i64()?, owner: self.i32()? }),
            CLOSE_SESSION if top => Ok(Txn::CloseSession { id: self.i64()? }),
            NOOP if top => Ok(Txn::Noop),
            TRUNCATABLE if top => Ok(Txn::Truncatable { below: self.i64()? }),
            other => Err(TxnError::Malformed(format!("transaction type {other} (here)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_round_trip_and_garbage_is_rejected() {
        let acl = vec![Acl { perms: 31, scheme: "digest".into(), id: "u:abc=".into() }];
        let txns = [
            Txn::Multi(vec![
                Txn::Create { path: "/a".into(), data: b"x".to_vec(), ephemeral_owner: 7, sequential: true, acl },
                Txn::SetData { path: "/a".into(), data: vec![], version: 3 },
                Txn::Check { path: "/a".into(), version: 4 },
                Txn::SetAcl { path: "/a".into(), acl: Acl::open_unsafe(), version: 0 },
                Txn::Delete { path: "/a".into(), version: -1 },
            ]),
            Txn::CreateSession { id: 1 << 56, timeout_ms: 6000, password: vec![1; 16], owner: 3 },
            Txn::MoveSession { id: 5, owner: 2 },
            Txn::CloseSession { id: 5 },
            Txn::Noop,
            Txn::Truncatable { below: 4096 },
        ];
        for txn in txns {
            let bytes = txn.encode();
            assert_eq!(Txn::decode(&bytes).unwrap(), txn);
            for cut in 0..bytes.len() {
                assert!(Txn::decode(&bytes[..cut]).is_err(), "cut {cut} of {txn:?}");
            }
        }
        assert!(Txn::decode(&[9]).is_err());
        assert!(Txn::decode(&[4, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(Txn::decode(&[4, 0, 0, 0, 1, 11]).is_err(), "sessions and no-ops are not multi ops");
        // As many ops as a large topic's deletion has: what encodes, decodes.
        let many = Txn::Multi((0..50_000).map(|p| Txn::Delete { path: format!("/t/{p}"), version: -1 }).collect());
        assert_eq!(Txn::decode(&many.encode()).unwrap(), many);
    }

    #[test]
    fn version_1_creates_still_decode() {
        // u8 1 | path "/a" | data "x" | owner 7: what logs written before ACLs hold.
        let bytes = [1, 0, 0, 0, 2, b'/', b'a', 0, 0, 0, 1, b'x', 0, 0, 0, 0, 0, 0, 0, 7];
        let expected = Txn::Create {
            path: "/a".into(),
            data: b"x".to_vec(),
            ephemeral_owner: 7,
            sequential: false,
            acl: Acl::open_unsafe(),
        };
        assert_eq!(Txn::decode(&bytes).unwrap(), expected);
    }
}
