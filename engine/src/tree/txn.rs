//! Tree transactions as stored in the metadata log, and their encoding.
//!
//! Encoding (big-endian, inside one record value of a RecordBatch of the metadata log):
//! ```text
//! Create  : u8 1 | path | data | i64 ephemeral_owner
//! Delete  : u8 2 | path | i32 version
//! SetData : u8 3 | path | data | i32 version
//! Multi   : u8 4 | u32 count | count × (transaction)
//! path, data: u32 length | bytes
//! ```

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txn {
    Create {
        path: String,
        data: Vec<u8>,
        ephemeral_owner: i64,
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
    /// All or nothing.
    Multi(Vec<Txn>),
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
    NestedMulti,
    /// The stored bytes do not decode.
    Malformed(String),
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
            TxnError::NestedMulti => write!(f, "multi inside multi"),
            TxnError::Malformed(why) => write!(f, "malformed transaction: {why}"),
        }
    }
}

impl std::error::Error for TxnError {}

const CREATE: u8 = 1;
const DELETE: u8 = 2;
const SET_DATA: u8 = 3;
const MULTI: u8 = 4;
/// Ops in one multi, at most.
pub const MULTI_OPS_MAX: u32 = 10_000;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl Txn {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Txn::Create { path, data, ephemeral_owner } => {
                out.push(CREATE);
                put_bytes(out, path.as_bytes());
                put_bytes(out, data);
                out.extend_from_slice(&ephemeral_owner.to_be_bytes());
            }
            Txn::Delete { path, version } => {
                out.push(DELETE);
                put_bytes(out, path.as_bytes());
                out.extend_from_slice(&version.to_be_bytes());
            }
            Txn::SetData { path, data, version } => {
                out.push(SET_DATA);
                put_bytes(out, path.as_bytes());
                put_bytes(out, data);
                out.extend_from_slice(&version.to_be_bytes());
            }
            Txn::Multi(ops) => {
                out.push(MULTI);
                out.extend_from_slice(&(ops.len() as u32).to_be_bytes());
                for op in ops {
                    op.encode_into(out);
                }
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Txn, TxnError> {
        let mut reader = Reader { bytes, at: 0 };
        let txn = reader.txn(true)?;
        if reader.at != bytes.len() {
            return Err(TxnError::Malformed(format!("{} trailing bytes", bytes.len() - reader.at)));
        }
        Ok(txn)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], TxnError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| TxnError::Malformed(format!("{n} bytes needed at {}", self.at)))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, TxnError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, TxnError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn i32(&mut self) -> Result<i32, TxnError> {
        Ok(self.u32()? as i32)
    }
    fn i64(&mut self) -> Result<i64, TxnError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, TxnError> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }
    fn path(&mut self) -> Result<String, TxnError> {
        String::from_utf8(self.bytes()?).map_err(|_| TxnError::Malformed("path is not UTF-8".into()))
    }
    fn txn(&mut self, top: bool) -> Result<Txn, TxnError> {
        match self.u8()? {
            CREATE => Ok(Txn::Create { path: self.path()?, data: self.bytes()?, ephemeral_owner: self.i64()? }),
            DELETE => Ok(Txn::Delete { path: self.path()?, version: self.i32()? }),
            SET_DATA => Ok(Txn::SetData { path: self.path()?, data: self.bytes()?, version: self.i32()? }),
            MULTI if top => {
                let count = self.u32()?;
                if count > MULTI_OPS_MAX {
                    return Err(TxnError::Malformed(format!("multi of {count} ops")));
                }
                (0..count).map(|_| self.txn(false)).collect::<Result<_, _>>().map(Txn::Multi)
            }
            MULTI => Err(TxnError::NestedMulti),
            other => Err(TxnError::Malformed(format!("unknown transaction type {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_round_trip_and_garbage_is_rejected() {
        let txn = Txn::Multi(vec![
            Txn::Create { path: "/a".into(), data: b"x".to_vec(), ephemeral_owner: 7 },
            Txn::SetData { path: "/a".into(), data: vec![], version: 3 },
            Txn::Delete { path: "/a".into(), version: -1 },
        ]);
        let bytes = txn.encode();
        assert_eq!(Txn::decode(&bytes).unwrap(), txn);
        for cut in 0..bytes.len() {
            assert!(Txn::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        assert!(Txn::decode(&[9]).is_err());
        assert!(Txn::decode(&[4, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
