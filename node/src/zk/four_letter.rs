//! The four-letter words (ruok, srvr, stat, cons, conf, envi, wchs, mntr): the server's state
//! as ZooKeeper's admin commands report it.

use super::server::ZkServer;
use braid_engine::hash::HashSet;
use braid_engine::tree::DataTree;
use std::collections::BTreeSet;

/// A four-letter word's answer from a server out of its quorum (ZooKeeper's words).
const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests\n";

impl ZkServer {
    /// Connections and watches, for the four-letter words. Out of its quorum (`serving`
    /// false) a server answers only ruok, conf and envi, as ZooKeeper's does; the rest get
    /// [`NOT_SERVING`].
    pub fn four_letter(&self, word: &str, tree: &DataTree, mode: &str, serving: bool) -> String {
        if !serving && !matches!(word, "ruok" | "conf" | "envi") {
            return NOT_SERVING.to_owned();
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
