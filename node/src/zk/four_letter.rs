//! The four-letter words ZooKeeper 3.8 has (ruok, srvr, stat, cons, conf, envi, wchs, mntr,
//! isro, srst, crst, wchc, wchp, dump, hash, dirs): the server's state as ZooKeeper's admin
//! commands report it, in their format.

use super::server::ZkServer;
use braid_engine::hash::HashSet;
use braid_engine::tree::DataTree;
use std::collections::{BTreeMap, BTreeSet};

/// A four-letter word's answer from a server out of its quorum (ZooKeeper's words).
const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests\n";

/// What the node around the ZooKeeper server knows, for the four-letter words.
pub struct ServerFacts<'a> {
    /// standalone, leader or follower.
    pub mode: &'a str,
    /// False out of the quorum.
    pub serving: bool,
    /// Bytes of the tree's snapshot (dirs' datadir_size) and of the metadata log (logdir_size).
    pub data_dir_bytes: u64,
    pub log_dir_bytes: u64,
}

impl ZkServer {
    /// Connections and watches, for the four-letter words. Out of its quorum a server answers
    /// only ruok, conf, envi and isro ("ro": it takes read-only sessions), as ZooKeeper's
    /// read-only server does; the rest get [`NOT_SERVING`].
    pub fn four_letter(&mut self, word: &str, tree: &DataTree, facts: &ServerFacts<'_>) -> String {
        let (mode, serving) = (facts.mode, facts.serving);
        if word == "isro" {
            // Out of its quorum a server is in read-only mode (it takes read-only sessions).
            return if serving { "rw" } else { "ro" }.to_owned();
        }
        if !serving && !matches!(word, "ruok" | "conf" | "envi") {
            return NOT_SERVING.to_owned();
        }
        if let Some(answer) = self.state_word(word, tree, facts) {
            return answer;
        }
        let s = &self.settings;
        let version = format!("3.8.0-braid-{}, built on 1970-01-01 00:00 UTC", env!("CARGO_PKG_VERSION"));
        let watch_count: usize = self.watches.values().map(BTreeSet::len).sum();
        let ephemerals: usize = tree.sessions().values().map(|s| s.ephemerals.len()).sum();
        let avg = if self.latency.count == 0 { 0.0 } else { self.latency.total_ms as f64 / self.latency.count as f64 };
        let cons = || {
            let mut out = String::new();
            for (id, c) in &self.conns {
                out.push_str(&format!(
                    " /{}[1](queued={},recved={},sent={},sid={:#x},est={})\n",
                    c.peer,
                    c.queue.len() + c.in_flight.len(),
                    c.received,
                    c.sent,
                    c.session.unwrap_or(0),
                    id
                ));
            }
            out
        };
        let outstanding: usize = self.conns.values().map(|c| c.queue.len() + c.in_flight.len()).sum();
        let srvr = format!(
            "Latency min/avg/max: {}/{avg:.4}/{}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: {outstanding}\nZxid: {:#x}\nMode: {mode}\nNode count: {}\n",
            self.latency.min_ms,
            self.latency.max_ms,
            self.packets_received,
            self.packets_sent,
            self.conns.len(),
            tree.last_zxid(),
            tree.node_count()
        );
        match word {
            "ruok" => "imok".into(),
            "srvr" => format!("Zookeeper version: {version}\n{srvr}"),
            "stat" => format!("Zookeeper version: {version}\nClients:\n{}\n{srvr}", cons()),
            "cons" => format!("{}\n", cons()),
            "conf" => format!(
                "clientPort={}\nclientPortAddress={}\ndataDir={}\ndataLogDir={}\ntickTime={}\nmaxClientCnxns=0\nminSessionTimeout={}\nmaxSessionTimeout={}\nserverId={}\n",
                s.client_addr.port(),
                s.client_addr.ip(),
                s.data_dir,
                s.data_dir,
                s.tick_ms,
                s.min_timeout_ms,
                s.max_timeout_ms,
                s.node_id
            ),
            // As ZooKeeper's: its host's canonical name (never the client port's bind, which
            // may be a wildcard), the system, the working directory; no Java to describe.
            "envi" => format!(
                "Environment:\nzookeeper.version={version}\nhost.name={}\nos.name=Linux\nos.arch={}\nos.version={}\nuser.dir={}\n",
                crate::config::host_name(),
                match std::env::consts::ARCH {
                    "x86_64" => "amd64",
                    arch => arch,
                },
                kernel_release(),
                std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            ),
            "wchs" => {
                let paths: HashSet<&String> = self.watches.keys().map(|(_, p)| p).collect();
                let watching = self.conns.values().filter(|c| !c.watches.is_empty()).count();
                format!("{watching} connections watching {} paths\nTotal watches:{watch_count}\n", paths.len())
            }
            "mntr" => {
                let data: usize = tree.nodes().map(|(p, n)| p.len() + n.data.len()).sum();
                let lines = [
                    ("zk_version", version),
                    ("zk_server_state", mode.to_owned()),
                    ("zk_avg_latency", format!("{avg:.4}")),
                    ("zk_max_latency", self.latency.max_ms.to_string()),
                    ("zk_min_latency", self.latency.min_ms.to_string()),
                    ("zk_packets_received", self.packets_received.to_string()),
                    ("zk_packets_sent", self.packets_sent.to_string()),
                    ("zk_num_alive_connections", self.conns.len().to_string()),
                    ("zk_outstanding_requests", outstanding.to_string()),
                    ("zk_znode_count", tree.node_count().to_string()),
                    ("zk_watch_count", watch_count.to_string()),
                    ("zk_ephemerals_count", ephemerals.to_string()),
                    ("zk_approximate_data_size", data.to_string()),
                    ("zk_global_sessions", tree.sessions().len().to_string()),
                    ("zk_last_proposal_size", "-1".to_owned()),
                ];
                lines.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect()
            }
            other => format!("{other} is not executed because it is not in the whitelist.\n"),
        }
    }
}

impl ZkServer {
    /// srst, crst, wchc, wchp, dump, hash and dirs (None for another word).
    fn state_word(&mut self, word: &str, tree: &DataTree, facts: &ServerFacts<'_>) -> Option<String> {
        let sid = |conn: &u64| self.conns.get(conn).and_then(|c| c.session).unwrap_or(0);
        Some(match word {
            "srst" => {
                self.latency = Default::default();
                self.packets_received = 0;
                self.packets_sent = 0;
                "Server stats reset.\n".to_owned()
            }
            "crst" => {
                for c in self.conns.values_mut() {
                    c.received = 0;
                    c.sent = 0;
                }
                "Connection stats reset.\n".to_owned()
            }
            "wchc" => {
                let mut by_session: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
                for ((_, path), conns) in &self.watches {
                    for conn in conns {
                        by_session.entry(sid(conn)).or_default().insert(path);
                    }
                }
                let mut out = String::new();
                for (session, paths) in by_session {
                    out.push_str(&format!("0x{session:x}\n"));
                    paths.iter().for_each(|p| out.push_str(&format!("\t{p}\n")));
                }
                out + "\n"
            }
            "wchp" => {
                let mut by_path: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
                for ((_, path), conns) in &self.watches {
                    by_path.entry(path).or_default().extend(conns.iter().map(sid));
                }
                let mut out = String::new();
                for (path, sessions) in by_path {
                    out.push_str(&format!("{path}\n"));
                    sessions.iter().for_each(|s| out.push_str(&format!("\t0x{s:x}\n")));
                }
                out + "\n"
            }
            "dump" => self.dump(tree),
            "hash" => format!("{:x}: {}\n", tree.last_zxid(), tree.digest() as i64),
            "dirs" => format!("datadir_size: {}\nlogdir_size: {}\n", facts.data_dir_bytes, facts.log_dir_bytes),
            _ => return None,
        })
    }

    /// dump: sessions by the tick at which they expire (ZooKeeper's ExpiryQueue dump), each
    /// session's ephemerals, and the connections.
    fn dump(&self, tree: &DataTree) -> String {
        let tick = i64::from(self.settings.tick_ms).max(1);
        let mut sets: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (id, session) in tree.sessions() {
            let seen = self.last_seen.get(id).copied().unwrap_or_else(|| self.settings.env.now_ms());
            let expires = (seen + i64::from(session.timeout_ms)) / tick * tick + tick;
            sets.entry(expires).or_default().push(*id);
        }
        let mut out = format!("SessionTracker dump:\nSession Sets ({})/({}):\n", sets.len(), tree.sessions().len());
        for (expires, ids) in &sets {
            out.push_str(&format!("{} expire at {}:\n", ids.len(), java_date(expires)));
            ids.iter().for_each(|id| out.push_str(&format!("\t0x{id:x}\n")));
        }
        let with: Vec<_> = tree.sessions().iter().filter(|(_, s)| !s.ephemerals.is_empty()).collect();
        out.push_str(&format!("ephemeral nodes dump:\nSessions with Ephemerals ({}):\n", with.len()));
        for (id, session) in with {
            out.push_str(&format!("0x{id:x}:\n"));
            session.ephemerals.iter().for_each(|p| out.push_str(&format!("\t{p}\n")));
        }
        out.push_str("Connections dump:\n");
        for c in self.conns.values() {
            out.push_str(&format!(" /{}[1](sid=0x{:x})\n", c.peer, c.session.unwrap_or(0)));
        }
        out
    }
}

/// A time in ms since the epoch as Java's Date prints it in UTC ("Mon Dec 07 20:20:00 UTC 2026").
fn java_date(ms: &i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{} {} {day:02} {:02}:{:02}:{:02} UTC {year}",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The kernel's release, as uname(2) gives it (Java's os.version).
fn kernel_release() -> String {
    // SAFETY: a zeroed utsname is valid for uname to fill; on success each field is a
    // NUL-terminated string within its array.
    unsafe {
        let mut names: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut names) != 0 {
            return String::new();
        }
        std::ffi::CStr::from_ptr(names.release.as_ptr()).to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_print_as_javas_date_does() {
        assert_eq!(super::java_date(&0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(super::java_date(&1_796_674_117_763), "Mon Dec 07 20:08:37 UTC 2026");
        assert_eq!(super::java_date(&951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    }
}
