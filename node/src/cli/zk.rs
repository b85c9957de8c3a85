//! `braid zk ls|get|set|create|delete`: a node's tree through its ZooKeeper port, as zkCli does
//! it (one session per command, closed at the end).

use crate::zk::jute::{
    err, op, read_reply_header, Acl, ConnectRequest, ConnectResponse, Op, Reader, Request, Writer, MAX_FRAME_BYTES,
    REPLY_HEADER_BYTES,
};
use anyhow::{bail, Context};
use clap::Subcommand;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum ZkCommand {
    /// List a znode's children.
    Ls { path: String },
    /// Print a znode's data, then its Stat with --stat.
    Get {
        path: String,
        #[arg(long)]
        stat: bool,
    },
    /// Set a znode's data (only at this version, unless -1).
    Set {
        path: String,
        data: String,
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        version: i32,
    },
    /// Create a persistent znode (with a sequence number appended with --sequential); prints
    /// the path created.
    Create {
        path: String,
        #[arg(default_value = "")]
        data: String,
        #[arg(long)]
        sequential: bool,
    },
    /// Delete a znode (only at this version, unless -1).
    Delete {
        path: String,
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        version: i32,
    },
}

/// ZooKeeper's name for an error code (KeeperException.Code).
fn code_name(code: i32) -> &'static str {
    match code {
        err::NO_NODE => "NoNode",
        err::NODE_EXISTS => "NodeExists",
        err::BAD_VERSION => "BadVersion",
        err::NOT_EMPTY => "NotEmpty",
        err::NO_AUTH => "NoAuth",
        err::BAD_ARGUMENTS => "BadArguments",
        err::NO_CHILDREN_FOR_EPHEMERALS => "NoChildrenForEphemerals",
        err::INVALID_ACL => "InvalidACL",
        err::SESSION_EXPIRED => "SessionExpired",
        err::UNIMPLEMENTED => "Unimplemented",
        _ => "error",
    }
}

struct Session {
    stream: TcpStream,
    xid: i32,
}

impl Session {
    fn connect(server: &str) -> anyhow::Result<Session> {
        let stream = TcpStream::connect(server).with_context(|| format!("connecting to ZooKeeper at {server}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut session = Session { stream, xid: 0 };
        let mut w = Writer::default();
        ConnectRequest { timeout_ms: 10_000, password: vec![0; 16], read_only: Some(false), ..Default::default() }
            .encode(&mut w);
        session.stream.write_all(&w.frame())?;
        let body = session.frame().with_context(|| format!("{server} closed the connection during connect"))?;
        let response = ConnectResponse::decode(&body)?;
        if response.timeout_ms <= 0 {
            bail!("{server} refused the session");
        }
        Ok(session)
    }

    fn frame(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if len < 16 || len as usize > MAX_FRAME_BYTES {
            bail!("reply frame of {len} bytes");
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        Ok(body)
    }

    /// Sends `op` and returns the reply's body after its header, or the error code's name.
    fn call(&mut self, op: Op) -> anyhow::Result<Vec<u8>> {
        self.xid += 1;
        let mut w = Writer::default();
        Request { xid: self.xid, op }.encode(&mut w);
        self.stream.write_all(&w.frame())?;
        loop {
            let body = self.frame()?;
            let (xid, _zxid, code) = read_reply_header(&mut Reader::new(&body))?;
            if xid != self.xid {
                continue; // a watch event or a ping's answer
            }
            if code != err::OK {
                bail!("{} ({code})", code_name(code));
            }
            return Ok(body[REPLY_HEADER_BYTES..].to_vec());
        }
    }

    fn close(mut self) {
        let _ = self.call(Op::CloseSession);
    }
}

pub fn run(command: ZkCommand, server: &str) -> anyhow::Result<()> {
    let mut session = Session::connect(server)?;
    let result = (|| -> anyhow::Result<()> {
        match command {
            ZkCommand::Ls { path } => {
                let body = session.call(Op::GetChildren { op: op::GET_CHILDREN, path: path.clone(), watch: false })?;
                let mut children = Reader::new(&body).strings()?;
                children.sort();
                println!("[{}]", children.join(", "));
            }
            ZkCommand::Get { path, stat } => {
                let body = session.call(Op::GetData { path, watch: false })?;
                let mut r = Reader::new(&body);
                let data = r.buffer()?.unwrap_or_default();
                println!("{}", String::from_utf8_lossy(&data));
                if stat {
                    let names = ["czxid", "mzxid", "ctime", "mtime"];
                    for name in names {
                        println!("{name} = {}", r.long()?);
                    }
                    for name in ["version", "cversion", "aversion"] {
                        println!("{name} = {}", r.int()?);
                    }
                    println!("ephemeralOwner = {:#x}", r.long()?);
                    println!("dataLength = {}", r.int()?);
                    println!("numChildren = {}", r.int()?);
                    println!("pzxid = {}", r.long()?);
                }
            }
            ZkCommand::Set { path, data, version } => {
                session.call(Op::SetData { path, data: data.into_bytes(), version })?;
            }
            ZkCommand::Create { path, data, sequential } => {
                let flags = if sequential { 2 } else { 0 };
                let acl = Acl::open_unsafe();
                let body = session.call(Op::Create {
                    op: op::CREATE,
                    path,
                    data: data.into_bytes(),
                    acl,
                    flags,
                    ttl: None,
                })?;
                println!("{}", Reader::new(&body).string()?);
            }
            ZkCommand::Delete { path, version } => {
                session.call(Op::Delete { op: op::DELETE, path, version })?;
            }
        }
        Ok(())
    })();
    session.close();
    result
}
