//! `braid zk ls|get|set|create|delete`: a node's tree through its ZooKeeper port, as zkCli does
//! it (one session per command, closed at the end). `--server` is a ZooKeeper connect string:
//! the servers are tried in turn until one takes the session, and a chroot suffix puts every
//! path under it, as ZooKeeper's clients do.

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

/// A ZooKeeper connect string, `host:port,host:port[/chroot]`: its servers and its chroot
/// (None for none or "/").
fn parse_connect_string(text: &str) -> anyhow::Result<(Vec<&str>, Option<&str>)> {
    let (hosts, chroot) = match text.find('/') {
        Some(at) => (&text[..at], Some(&text[at..])),
        None => (text, None),
    };
    let servers: Vec<&str> = hosts.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if servers.is_empty() {
        bail!("--server {text:?} names no ZooKeeper server (host:port,...[/chroot])");
    }
    let chroot = chroot.filter(|c| *c != "/");
    if let Some(chroot) = chroot {
        if chroot.ends_with('/') || chroot.contains("//") {
            bail!("--server {text:?}: the chroot {chroot:?} is not a znode path");
        }
    }
    Ok((servers, chroot))
}

impl Session {
    /// A session with the first of `servers` that takes one; the error names every server
    /// tried and why it failed.
    fn connect(servers: &[&str]) -> anyhow::Result<Session> {
        let mut failures = Vec::new();
        for server in servers {
            match Session::connect_one(server) {
                Ok(session) => return Ok(session),
                Err(e) => failures.push(format!("{server} ({e:#})")),
            }
        }
        if failures.len() == 1 {
            bail!("no ZooKeeper server answered at {}", failures[0]);
        }
        bail!("no ZooKeeper server answered at any of {} addresses: {}", failures.len(), failures.join("; "))
    }

    fn connect_one(server: &str) -> anyhow::Result<Session> {
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

/// `path` under `chroot`.
fn rooted(chroot: Option<&str>, path: String) -> String {
    match chroot {
        Some(root) if path == "/" => root.to_owned(),
        Some(root) => format!("{root}{path}"),
        None => path,
    }
}

pub fn run(command: ZkCommand, server: &str) -> anyhow::Result<()> {
    let (servers, chroot) = parse_connect_string(server)?;
    let mut session = Session::connect(&servers)?;
    let command = match command {
        ZkCommand::Ls { path } => ZkCommand::Ls { path: rooted(chroot, path) },
        ZkCommand::Get { path, stat } => ZkCommand::Get { path: rooted(chroot, path), stat },
        ZkCommand::Set { path, data, version } => ZkCommand::Set { path: rooted(chroot, path), data, version },
        ZkCommand::Create { path, data, sequential } => {
            ZkCommand::Create { path: rooted(chroot, path), data, sequential }
        }
        ZkCommand::Delete { path, version } => ZkCommand::Delete { path: rooted(chroot, path), version },
    };
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
                let created = Reader::new(&body).string()?;
                // Shown below the chroot, as ZooKeeper's clients show it.
                let shown = chroot.and_then(|root| created.strip_prefix(root)).filter(|p| p.starts_with('/'));
                println!("{}", shown.unwrap_or(&created));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_string_lists_servers_and_an_optional_chroot() {
        assert_eq!(parse_connect_string("a:1").unwrap(), (vec!["a:1"], None));
        assert_eq!(parse_connect_string("a:1, b:2,").unwrap(), (vec!["a:1", "b:2"], None));
        assert_eq!(parse_connect_string("a:1,[::1]:2/app/x").unwrap(), (vec!["a:1", "[::1]:2"], Some("/app/x")));
        assert_eq!(parse_connect_string("a:1/").unwrap(), (vec!["a:1"], None), "/ is no chroot");
        for (bad, why) in
            [("", "names no"), ("/app", "names no"), ("a:1/app/", "not a znode path"), ("a:1/x//y", "not")]
        {
            let e = parse_connect_string(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert_eq!(rooted(Some("/app"), "/".into()), "/app");
        assert_eq!(rooted(Some("/app"), "/x".into()), "/app/x");
        assert_eq!(rooted(None, "/x".into()), "/x");
    }
}
