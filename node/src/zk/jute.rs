//! Jute, ZooKeeper's wire format, for the client protocol: big-endian `int` (4 bytes), `long`
//! (8), `boolean` (1), `buffer` and `ustring` (an int length, -1 for null, then the bytes),
//! `vector` (an int count, -1 for null, then the elements). A client frame is an int length and
//! then, for the first frame of a connection, a ConnectRequest; for every later frame a
//! RequestHeader (xid, op code) and the op's record.
//!
//! Decoding checks every length against the bytes left (and [`MAX_FRAME_BYTES`]), so any bytes
//! give a request or an error, never a panic or an allocation larger than the frame.

/// Largest frame accepted (ZooKeeper's jute.maxbuffer defaults to 1 MiB of data, plus room for
/// the path and the record around it).
pub const MAX_FRAME_BYTES: usize = (1 << 20) + 64 * 1024;

/// Op codes (ZooDefs.OpCode).
pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    /// Dynamic reconfiguration: answered RECONFIG_DISABLED, as ZooKeeper 3.8 by default.
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// Error codes (KeeperException.Code).
pub mod err {
    pub const OK: i32 = 0;
    pub const SYSTEM_ERROR: i32 = -1;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const MARSHALLING_ERROR: i32 = -5;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
    pub const AUTH_FAILED: i32 = -115;
    pub const SESSION_MOVED: i32 = -118;
    /// A write to a server in read-only mode.
    pub const NOT_READ_ONLY: i32 = -119;
    pub const NO_WATCHER: i32 = -121;
    /// reconfig on a server whose dynamic reconfiguration is off (ZooKeeper's default).
    pub const RECONFIG_DISABLED: i32 = -123;
    pub const THROTTLED_OP: i32 = -127;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JuteError {
    /// The record needs more bytes than the frame has.
    Truncated {
        at: usize,
    },
    /// A length or count is negative (where null is not allowed) or beyond the frame.
    BadLength {
        at: usize,
        length: i32,
    },
    /// A string is not UTF-8.
    BadString {
        at: usize,
    },
    /// A boolean byte other than 0 or 1.
    BadBool {
        at: usize,
    },
    /// The frame goes on after the record.
    TrailingBytes(usize),
    UnknownOp(i32),
    /// A multi's operation that a multi cannot hold.
    BadMultiOp(i32),
}

impl std::fmt::Display for JuteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JuteError::Truncated { at } => write!(f, "record truncated at byte {at}"),
            JuteError::BadLength { at, length } => write!(f, "bad length {length} at byte {at}"),
            JuteError::BadString { at } => write!(f, "string at byte {at} is not UTF-8"),
            JuteError::BadBool { at } => write!(f, "boolean at byte {at} is neither 0 nor 1"),
            JuteError::TrailingBytes(n) => write!(f, "{n} bytes after the record"),
            JuteError::UnknownOp(op) => write!(f, "unknown op code {op}"),
            JuteError::BadMultiOp(op) => write!(f, "op code {op} cannot be part of a multi"),
        }
    }
}

impl std::error::Error for JuteError {}

/// Reads jute values from a frame, every length checked against what is left.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], JuteError> {
        if self.remaining() < n {
            return Err(JuteError::Truncated { at: self.at });
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    pub fn int(&mut self) -> Result<i32, JuteError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub fn long(&mut self) -> Result<i64, JuteError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    pub fn boolean(&mut self) -> Result<bool, JuteError> {
        let at = self.at;
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(JuteError::BadBool { at }),
        }
    }

    /// A buffer; None for null (length -1).
    pub fn buffer(&mut self) -> Result<Option<Vec<u8>>, JuteError> {
        let at = self.at;
        let length = self.int()?;
        if length == -1 {
            return Ok(None);
        }
        let n = usize::try_from(length).map_err(|_| JuteError::BadLength { at, length })?;
        if n > self.remaining() {
            return Err(JuteError::BadLength { at, length });
        }
        Ok(Some(self.take(n)?.to_vec()))
    }

    /// A string; null reads as empty (ZooKeeper's servers treat them alike).
    pub fn string(&mut self) -> Result<String, JuteError> {
        let at = self.at;
        let bytes = self.buffer()?.unwrap_or_default();
        String::from_utf8(bytes).map_err(|_| JuteError::BadString { at })
    }

    /// A vector's count (null reads as empty); each element takes at least `min_bytes`.
    fn count(&mut self, min_bytes: usize) -> Result<usize, JuteError> {
        let at = self.at;
        let length = self.int()?;
        if length == -1 {
            return Ok(0);
        }
        let n = usize::try_from(length).map_err(|_| JuteError::BadLength { at, length })?;
        if n.saturating_mul(min_bytes) > self.remaining() {
            return Err(JuteError::BadLength { at, length });
        }
        Ok(n)
    }

    pub fn strings(&mut self) -> Result<Vec<String>, JuteError> {
        let n = self.count(4)?;
        (0..n).map(|_| self.string()).collect()
    }

    pub fn acl(&mut self) -> Result<Vec<Acl>, JuteError> {
        let n = self.count(12)?;
        (0..n).map(|_| Ok(Acl { perms: self.int()?, scheme: self.string()?, id: self.string()? })).collect()
    }

    /// Ends a record: nothing may follow.
    pub fn finish(self) -> Result<(), JuteError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(JuteError::TrailingBytes(n)),
        }
    }
}

/// Writes jute values.
#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn int(&mut self, v: i32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn long(&mut self, v: i64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn boolean(&mut self, v: bool) -> &mut Self {
        self.bytes.push(u8::from(v));
        self
    }
    pub fn buffer(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            Some(b) => {
                self.int(b.len() as i32);
                self.bytes.extend_from_slice(b);
            }
            None => {
                self.int(-1);
            }
        }
        self
    }
    pub fn string(&mut self, v: &str) -> &mut Self {
        self.buffer(Some(v.as_bytes()))
    }
    pub fn strings(&mut self, v: &[String]) -> &mut Self {
        self.int(v.len() as i32);
        for s in v {
            self.string(s);
        }
        self
    }
    pub fn acl(&mut self, v: &[Acl]) -> &mut Self {
        self.int(v.len() as i32);
        for a in v {
            self.int(a.perms).string(&a.scheme).string(&a.id);
        }
        self
    }
    /// A Stat as clients see it: containers and TTL nodes show ephemeralOwner 0 (their marker
    /// stays inside the server, as with ZooKeeper).
    pub fn stat(&mut self, s: &Stat) -> &mut Self {
        let owner = match braid_engine::tree::NodeKind::of(s.ephemeral_owner) {
            braid_engine::tree::NodeKind::Ephemeral(owner) => owner,
            _ => 0,
        };
        self.long(s.czxid).long(s.mzxid).long(s.ctime).long(s.mtime);
        self.int(s.version).int(s.cversion).int(s.aversion).long(owner);
        self.int(s.data_length).int(s.num_children).long(s.pzxid)
    }
    /// The frame: length prefix and the bytes written.
    pub fn frame(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.bytes.len());
        out.extend_from_slice(&(self.bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }
}

/// An access control entry: the tree's own (permissions for a scheme and id).
pub use braid_engine::tree::Acl;

/// A znode's Stat: the tree's own, written in the order ZooKeeper sends its fields.
pub use braid_engine::tree::Stat;

/// The first frame of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub password: Vec<u8>,
    /// Sent by 3.4+ clients (absent from older ones).
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    pub fn decode(frame: &[u8]) -> Result<Self, JuteError> {
        let mut r = Reader::new(frame);
        let mut c = ConnectRequest {
            protocol_version: r.int()?,
            last_zxid_seen: r.long()?,
            timeout_ms: r.int()?,
            session_id: r.long()?,
            password: r.buffer()?.unwrap_or_default(),
            read_only: None,
        };
        if r.remaining() > 0 {
            c.read_only = Some(r.boolean()?);
        }
        r.finish()?;
        Ok(c)
    }

    pub fn encode(&self, w: &mut Writer) {
        w.int(self.protocol_version).long(self.last_zxid_seen).int(self.timeout_ms).long(self.session_id);
        w.buffer(Some(&self.password));
        if let Some(ro) = self.read_only {
            w.boolean(ro);
        }
    }
}

/// The answer to a ConnectRequest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub password: Vec<u8>,
    pub read_only: bool,
}

impl ConnectResponse {
    pub fn encode(&self, w: &mut Writer) {
        w.int(self.protocol_version).int(self.timeout_ms).long(self.session_id);
        w.buffer(Some(&self.password)).boolean(self.read_only);
    }

    /// Decodes a server's answer (clients: tools and the load generator). A timeout of 0
    /// means the session is expired or refused.
    pub fn decode(frame: &[u8]) -> Result<Self, JuteError> {
        let mut r = Reader::new(frame);
        let mut c = ConnectResponse {
            protocol_version: r.int()?,
            timeout_ms: r.int()?,
            session_id: r.long()?,
            password: r.buffer()?.unwrap_or_default(),
            read_only: false,
        };
        if r.remaining() > 0 {
            c.read_only = r.boolean()?;
        }
        r.finish()?;
        Ok(c)
    }
}

/// One operation of a request (or of a multi).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// create, create2, createContainer (flags say container), createTTL (`ttl` set).
    Create {
        op: i32,
        path: String,
        data: Vec<u8>,
        acl: Vec<Acl>,
        flags: i32,
        ttl: Option<i64>,
    },
    Delete {
        op: i32,
        path: String,
        version: i32,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    GetChildren {
        op: i32,
        path: String,
        watch: bool,
    },
    Sync {
        path: String,
    },
    Ping,
    Check {
        path: String,
        version: i32,
    },
    /// multi (writes) or multiRead (reads).
    Multi {
        op: i32,
        ops: Vec<Op>,
    },
    /// checkWatches or removeWatches: watcher type 1 children, 2 data, 3 any.
    Watches {
        op: i32,
        path: String,
        kind: i32,
    },
    Auth {
        kind: i32,
        scheme: String,
        auth: Vec<u8>,
    },
    /// setWatches (no persistent lists) or setWatches2.
    SetWatches {
        op: i32,
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
        persistent: Vec<String>,
        persistent_recursive: Vec<String>,
    },
    GetEphemerals {
        prefix: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    /// mode 0 persistent, 1 persistent recursive.
    AddWatch {
        path: String,
        mode: i32,
    },
    WhoAmI,
    CloseSession,
}

impl Op {
    pub fn code(&self) -> i32 {
        match self {
            Op::Create { op, .. } | Op::Delete { op, .. } | Op::GetChildren { op, .. } => *op,
            Op::Multi { op, .. } | Op::Watches { op, .. } | Op::SetWatches { op, .. } => *op,
            Op::Exists { .. } => op::EXISTS,
            Op::GetData { .. } => op::GET_DATA,
            Op::SetData { .. } => op::SET_DATA,
            Op::GetAcl { .. } => op::GET_ACL,
            Op::SetAcl { .. } => op::SET_ACL,
            Op::Sync { .. } => op::SYNC,
            Op::Ping => op::PING,
            Op::Check { .. } => op::CHECK,
            Op::Auth { .. } => op::AUTH,
            Op::GetEphemerals { .. } => op::GET_EPHEMERALS,
            Op::GetAllChildrenNumber { .. } => op::GET_ALL_CHILDREN_NUMBER,
            Op::AddWatch { .. } => op::ADD_WATCH,
            Op::WhoAmI => op::WHO_AM_I,
            Op::CloseSession => op::CLOSE_SESSION,
        }
    }

    /// Reads the record of op code `code`.
    fn read(code: i32, r: &mut Reader<'_>) -> Result<Op, JuteError> {
        Ok(match code {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER => Op::Create {
                op: code,
                path: r.string()?,
                data: r.buffer()?.unwrap_or_default(),
                acl: r.acl()?,
                flags: r.int()?,
                ttl: None,
            },
            op::CREATE_TTL => {
                let (path, data, acl, flags) = (r.string()?, r.buffer()?.unwrap_or_default(), r.acl()?, r.int()?);
                Op::Create { op: code, path, data, acl, flags, ttl: Some(r.long()?) }
            }
            op::DELETE | op::DELETE_CONTAINER => Op::Delete { op: code, path: r.string()?, version: r.int()? },
            op::EXISTS => Op::Exists { path: r.string()?, watch: r.boolean()? },
            op::GET_DATA => Op::GetData { path: r.string()?, watch: r.boolean()? },
            op::SET_DATA => Op::SetData { path: r.string()?, data: r.buffer()?.unwrap_or_default(), version: r.int()? },
            op::GET_ACL => Op::GetAcl { path: r.string()? },
            op::SET_ACL => Op::SetAcl { path: r.string()?, acl: r.acl()?, version: r.int()? },
            op::GET_CHILDREN | op::GET_CHILDREN2 => {
                Op::GetChildren { op: code, path: r.string()?, watch: r.boolean()? }
            }
            op::SYNC => Op::Sync { path: r.string()? },
            op::PING => Op::Ping,
            op::CHECK => Op::Check { path: r.string()?, version: r.int()? },
            op::MULTI | op::MULTI_READ => {
                let mut ops = Vec::new();
                loop {
                    // MultiHeader: type, done, err; the last has done = true.
                    let (kind, done, _err) = (r.int()?, r.boolean()?, r.int()?);
                    if done {
                        break;
                    }
                    let allowed = match code {
                        op::MULTI => matches!(
                            kind,
                            op::CREATE
                                | op::CREATE2
                                | op::CREATE_CONTAINER
                                | op::CREATE_TTL
                                | op::DELETE
                                | op::SET_DATA
                                | op::CHECK
                        ),
                        _ => matches!(kind, op::GET_CHILDREN | op::GET_DATA),
                    };
                    if !allowed {
                        return Err(JuteError::BadMultiOp(kind));
                    }
                    ops.push(Op::read(kind, r)?);
                }
                Op::Multi { op: code, ops }
            }
            op::CHECK_WATCHES | op::REMOVE_WATCHES => Op::Watches { op: code, path: r.string()?, kind: r.int()? },
            op::AUTH => Op::Auth { kind: r.int()?, scheme: r.string()?, auth: r.buffer()?.unwrap_or_default() },
            op::SET_WATCHES | op::SET_WATCHES2 => {
                let relative_zxid = r.long()?;
                let (data, exist, child) = (r.strings()?, r.strings()?, r.strings()?);
                let (persistent, persistent_recursive) =
                    if code == op::SET_WATCHES2 { (r.strings()?, r.strings()?) } else { (Vec::new(), Vec::new()) };
                Op::SetWatches { op: code, relative_zxid, data, exist, child, persistent, persistent_recursive }
            }
            op::GET_EPHEMERALS => Op::GetEphemerals { prefix: r.string()? },
            op::GET_ALL_CHILDREN_NUMBER => Op::GetAllChildrenNumber { path: r.string()? },
            op::ADD_WATCH => Op::AddWatch { path: r.string()?, mode: r.int()? },
            op::WHO_AM_I => Op::WhoAmI,
            op::CLOSE_SESSION => Op::CloseSession,
            other => return Err(JuteError::UnknownOp(other)),
        })
    }

    /// Writes the op's record (as a client would: for tests, tools and the load generator).
    pub fn write(&self, w: &mut Writer) {
        match self {
            Op::Create { path, data, acl, flags, ttl, .. } => {
                w.string(path).buffer(Some(data)).acl(acl).int(*flags);
                if let Some(ttl) = ttl {
                    w.long(*ttl);
                }
            }
            Op::Delete { path, version, .. } | Op::Check { path, version } => {
                w.string(path).int(*version);
            }
            Op::Exists { path, watch } | Op::GetData { path, watch } | Op::GetChildren { path, watch, .. } => {
                w.string(path).boolean(*watch);
            }
            Op::SetData { path, data, version } => {
                w.string(path).buffer(Some(data)).int(*version);
            }
            Op::GetAcl { path } | Op::Sync { path } | Op::GetAllChildrenNumber { path } => {
                w.string(path);
            }
            Op::GetEphemerals { prefix } => {
                w.string(prefix);
            }
            Op::SetAcl { path, acl, version } => {
                w.string(path).acl(acl).int(*version);
            }
            Op::Ping | Op::WhoAmI | Op::CloseSession => {}
            Op::Multi { ops, .. } => {
                for o in ops {
                    w.int(o.code()).boolean(false).int(-1);
                    o.write(w);
                }
                w.int(-1).boolean(true).int(-1);
            }
            Op::Watches { path, kind, .. } => {
                w.string(path).int(*kind);
            }
            Op::Auth { kind, scheme, auth } => {
                w.int(*kind).string(scheme).buffer(Some(auth));
            }
            Op::SetWatches { op, relative_zxid, data, exist, child, persistent, persistent_recursive } => {
                w.long(*relative_zxid).strings(data).strings(exist).strings(child);
                if *op == op::SET_WATCHES2 {
                    w.strings(persistent).strings(persistent_recursive);
                }
            }
            Op::AddWatch { path, mode } => {
                w.string(path).int(*mode);
            }
        }
    }
}

/// A request after the connect: its xid (the client's sequence number; -2 for pings, -8 for
/// setWatches, -4 for auth) and its operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub xid: i32,
    pub op: Op,
}

impl Request {
    /// Decodes a frame's body (after its length prefix).
    pub fn decode(frame: &[u8]) -> Result<Request, JuteError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(JuteError::BadLength { at: 0, length: frame.len() as i32 });
        }
        let mut r = Reader::new(frame);
        let (xid, code) = (r.int()?, r.int()?);
        let op = Op::read(code, &mut r)?;
        r.finish()?;
        Ok(Request { xid, op })
    }

    pub fn encode(&self, w: &mut Writer) {
        w.int(self.xid).int(self.op.code());
        self.op.write(w);
    }
}

/// The header of every response after the connect: xid (-1 for a watch event, -2 for a
/// ping's answer), the zxid the server has seen, and the error code.
pub fn reply_header(w: &mut Writer, xid: i32, zxid: i64, err: i32) {
    w.int(xid).long(zxid).int(err);
}

/// Bytes of a reply header; the reply's record follows.
pub const REPLY_HEADER_BYTES: usize = 16;

/// Reads a reply header: (xid, zxid, error code).
pub fn read_reply_header(r: &mut Reader<'_>) -> Result<(i32, i64, i32), JuteError> {
    Ok((r.int()?, r.long()?, r.int()?))
}

/// A watch event (sent with xid -1): type (1 created, 2 deleted, 3 data changed, 4 children
/// changed, ...), keeper state (3 connected), path.
pub fn watcher_event(w: &mut Writer, zxid: i64, kind: i32, state: i32, path: &str) {
    reply_header(w, -1, zxid, err::OK);
    w.int(kind).int(state).string(path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_engine::rng::SimRng;

    fn samples() -> Vec<Request> {
        let acl = vec![Acl { perms: 31, scheme: "world".into(), id: "anyone".into() }];
        let ops = vec![
            Op::Create {
                op: op::CREATE,
                path: "/a".into(),
                data: b"x".to_vec(),
                acl: acl.clone(),
                flags: 3,
                ttl: None,
            },
            Op::Create {
                op: op::CREATE_TTL,
                path: "/t".into(),
                data: vec![],
                acl: acl.clone(),
                flags: 5,
                ttl: Some(60_000),
            },
            Op::Delete { op: op::DELETE, path: "/a".into(), version: -1 },
            Op::Exists { path: "/a".into(), watch: true },
            Op::GetData { path: "/a".into(), watch: false },
            Op::SetData { path: "/a".into(), data: vec![1, 2, 3], version: 4 },
            Op::GetAcl { path: "/".into() },
            Op::SetAcl { path: "/a".into(), acl: acl.clone(), version: 0 },
            Op::GetChildren { op: op::GET_CHILDREN2, path: "/".into(), watch: true },
            Op::Sync { path: "/".into() },
            Op::Ping,
            Op::Check { path: "/a".into(), version: 1 },
            Op::Multi {
                op: op::MULTI,
                ops: vec![
                    Op::Check { path: "/a".into(), version: 1 },
                    Op::SetData { path: "/a".into(), data: vec![], version: 1 },
                ],
            },
            Op::Multi { op: op::MULTI_READ, ops: vec![Op::GetData { path: "/a".into(), watch: false }] },
            Op::Watches { op: op::REMOVE_WATCHES, path: "/a".into(), kind: 3 },
            Op::Auth { kind: 0, scheme: "digest".into(), auth: b"u:p".to_vec() },
            Op::SetWatches {
                op: op::SET_WATCHES2,
                relative_zxid: 7,
                data: vec!["/a".into()],
                exist: vec![],
                child: vec!["/".into()],
                persistent: vec!["/p".into()],
                persistent_recursive: vec![],
            },
            Op::GetEphemerals { prefix: "/".into() },
            Op::GetAllChildrenNumber { path: "/".into() },
            Op::AddWatch { path: "/w".into(), mode: 1 },
            Op::WhoAmI,
            Op::CloseSession,
        ];
        ops.into_iter().enumerate().map(|(i, op)| Request { xid: i as i32 + 1, op }).collect()
    }

    #[test]
    fn every_request_round_trips() {
        for request in samples() {
            let mut w = Writer::default();
            request.encode(&mut w);
            assert_eq!(Request::decode(&w.bytes), Ok(request.clone()), "{request:?}");
        }
        let connect = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 5,
            timeout_ms: 30_000,
            session_id: 0,
            password: vec![0; 16],
            read_only: Some(false),
        };
        let mut w = Writer::default();
        connect.encode(&mut w);
        assert_eq!(ConnectRequest::decode(&w.bytes), Ok(connect.clone()));
        // A 3.3-era client sends no read-only flag.
        let old = ConnectRequest { read_only: None, ..connect };
        let mut w = Writer::default();
        old.encode(&mut w);
        assert_eq!(ConnectRequest::decode(&w.bytes), Ok(old));
    }

    #[test]
    fn any_cut_or_bit_flip_is_an_error_or_a_request_never_a_panic() {
        let mut rng = SimRng::new(11);
        for request in samples() {
            let mut w = Writer::default();
            request.encode(&mut w);
            let bytes = w.bytes;
            for cut in 0..bytes.len() {
                let _ = Request::decode(&bytes[..cut]);
            }
            for _ in 0..2_000 {
                let mut b = bytes.clone();
                for _ in 0..=rng.below(3) {
                    let at = rng.below(b.len() as u64) as usize;
                    b[at] ^= 1 << rng.below(8);
                }
                if let Ok(decoded) = Request::decode(&b) {
                    let mut again = Writer::default();
                    decoded.encode(&mut again);
                    let _ = Request::decode(&again.bytes).expect("what decodes encodes back to something decodable");
                }
            }
        }
        // A huge announced length is refused without allocating it.
        let mut w = Writer::default();
        w.int(1).int(op::GET_DATA).int(i32::MAX);
        assert!(matches!(Request::decode(&w.bytes), Err(JuteError::BadLength { .. })));
        let mut w = Writer::default();
        w.int(1).int(op::SET_WATCHES).long(0).int(1 << 30);
        assert!(matches!(Request::decode(&w.bytes), Err(JuteError::BadLength { .. })));
        assert_eq!(Request::decode(&[0, 0, 0, 1, 0, 0, 0, 99]), Err(JuteError::UnknownOp(99)));
    }

    #[test]
    fn responses_are_laid_out_as_zookeeper_sends_them() {
        let mut w = Writer::default();
        let connected = ConnectResponse {
            protocol_version: 0,
            timeout_ms: 10_000,
            session_id: 0x1234,
            password: vec![7; 16],
            read_only: false,
        };
        connected.encode(&mut w);
        assert_eq!(w.bytes.len(), 4 + 4 + 8 + 4 + 16 + 1);
        assert_eq!(ConnectResponse::decode(&w.bytes), Ok(connected));
        for cut in 0..w.bytes.len() - 1 {
            assert!(ConnectResponse::decode(&w.bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut w = Writer::default();
        reply_header(&mut w, 3, 42, err::NO_NODE);
        w.stat(&Stat::default());
        assert_eq!(w.bytes.len(), REPLY_HEADER_BYTES + 68, "ReplyHeader, then Stat's 68 bytes");
        assert_eq!(read_reply_header(&mut Reader::new(&w.bytes)), Ok((3, 42, err::NO_NODE)));
        assert_eq!(&w.frame()[..4], &(84i32).to_be_bytes());
    }
}
