//! ACLs and authentication: which identities a connection has, whether a node's ACL lets them
//! act, the ACL a create or setACL asks for, and the digest scheme's identities.

use super::jute::{err, Acl};
use super::server::ZkServer;
use braid_engine::tree::DataTree;
use std::net::IpAddr;

/// A digest identity as ZooKeeper computes it: "user:" + base64(sha1("user:password")).
pub fn digest_id(credentials: &str) -> Option<String> {
    use base64::Engine;
    use sha1::Digest;
    let (user, _) = credentials.split_once(':')?;
    let hash = sha1::Sha1::digest(credentials.as_bytes());
    Some(format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash)))
}

/// Whether `addr` lies in "a.b.c.d" or "a.b.c.d/bits" (ZooKeeper's ip scheme).
fn ip_matches(spec: &str, addr: IpAddr) -> bool {
    let (net, bits) = match spec.split_once('/') {
        Some((net, bits)) => (net, bits.parse::<u32>().ok()),
        None => (spec, None),
    };
    let Ok(net) = net.parse::<IpAddr>() else { return false };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

fn valid_ip_spec(spec: &str) -> bool {
    let (net, bits) = spec.split_once('/').map_or((spec, None), |(n, b)| (n, Some(b)));
    net.parse::<IpAddr>().is_ok() && bits.is_none_or(|b| b.parse::<u8>().is_ok_and(|b| b <= 128))
}

/// True if any entry of `acl` grants `perm` to one of `auth`'s identities.
pub(super) fn allowed(acl: &[Acl], auth: &[(String, String)], peer: IpAddr, perm: i32) -> bool {
    acl.iter().any(|a| {
        a.perms & perm != 0
            && match a.scheme.as_str() {
                "world" => a.id == "anyone",
                "ip" => ip_matches(&a.id, peer),
                scheme => auth.iter().any(|(s, id)| s == scheme && *id == a.id),
            }
    })
}

impl ZkServer {
    pub(super) fn node_acl_allows(&self, tree: &DataTree, conn: u64, path: &str, perm: i32) -> bool {
        let Some(c) = self.conns.get(&conn) else { return false };
        match tree.get(path) {
            Some(node) => allowed(&node.acl, &c.auth, c.peer.ip(), perm),
            // Absent: the transaction itself will say so.
            None => true,
        }
    }

    /// The ACL a create asks for, with "auth" entries made the session's identities; None if
    /// it is invalid.
    /// Entries repeated in the request are kept once, in the order first given (ZooKeeper's
    /// removeDuplicates, before "auth" expands).
    pub(super) fn fix_acl(&self, conn: u64, acl: &[Acl]) -> Option<Vec<Acl>> {
        let c = self.conns.get(&conn)?;
        let mut fixed = Vec::new();
        let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
        for a in acl {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        for a in unique {
            match a.scheme.as_str() {
                "world" if a.id == "anyone" => fixed.push(a.clone()),
                "auth" => {
                    let ids: Vec<_> = c.auth.iter().filter(|(s, _)| s == "digest").collect();
                    if ids.is_empty() {
                        return None;
                    }
                    fixed.extend(ids.into_iter().map(|(s, id)| Acl {
                        perms: a.perms,
                        scheme: s.clone(),
                        id: id.clone(),
                    }));
                }
                "digest" if a.id.contains(':') => fixed.push(a.clone()),
                "ip" if valid_ip_spec(&a.id) => fixed.push(a.clone()),
                _ => return None,
            }
        }
        (!fixed.is_empty()).then_some(fixed)
    }

    /// addAuth: a digest identity joins the connection's; anything else fails and closes it.
    pub(super) fn add_auth(&mut self, conn: u64, xid: i32, zxid: i64, scheme: String, auth: Vec<u8>) {
        let id = (scheme == "digest").then(|| std::str::from_utf8(&auth).ok().and_then(digest_id)).flatten();
        match id {
            Some(id) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if !c.auth.iter().any(|(s, i)| s == "digest" && *i == id) {
                        c.auth.push(("digest".into(), id));
                    }
                }
                self.reply(conn, xid, zxid, err::OK, |_| {});
            }
            None => {
                tracing::info!(scheme, "ZooKeeper auth failed: unknown scheme or malformed credentials");
                self.reply(conn, xid, zxid, err::AUTH_FAILED, |_| {});
                self.close(conn);
            }
        }
    }

    /// whoAmI: the connection's identities (a digest one by its user name alone).
    pub(super) fn who_am_i(&mut self, conn: u64, xid: i32, zxid: i64) {
        let c = self.conns.get(&conn).map(|c| c.auth.clone()).unwrap_or_default();
        self.reply(conn, xid, zxid, err::OK, |w| {
            w.int(c.len() as i32);
            for (scheme, id) in &c {
                let user = if scheme == "digest" { id.split(':').next().unwrap_or(id) } else { id };
                w.string(scheme).string(user);
            }
        });
    }
}
