//! Node settings: flags, then `BRAID_*` environment variables, then a TOML file (`--config`),
//! then the defaults of DESIGN.md (one node, `./braid-data`, loopback ports).

use anyhow::{bail, Context};
use braid_engine::raft::NodeId;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Largest request frame accepted by default (Kafka's `socket.request.max.bytes`).
pub const MAX_REQUEST_BYTES_DEFAULT: usize = 100 << 20;
/// Kafka connections a shard serves at once by default.
pub const MAX_CONNECTIONS_PER_SHARD_DEFAULT: usize = 4096;
/// Bytes of recently appended batches a shard keeps for its followers by default.
pub const REPLICATION_CACHE_BYTES_DEFAULT: usize = 128 << 20;
/// Bytes of log write buffers (tails, writes in flight, spares) a shard holds by default: a
/// partition produced to at full speed holds about 18 MiB, an idle one 4 KiB.
pub const WRITE_BUFFER_MEMORY_BYTES_DEFAULT: usize = 256 << 20;
/// Request bytes a shard holds in memory at once, across all its connections.
pub const SHARD_REQUEST_MEMORY_DEFAULT: usize = 256 << 20;

#[derive(clap::Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StartArgs {
    /// This node's id in the cluster.
    #[arg(long, env = "BRAID_NODE_ID")]
    pub node_id: Option<i32>,
    /// Directory holding the logs [default: ./braid-data].
    #[arg(long, env = "BRAID_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka protocol listener, one named PLAINTEXT [default: 127.0.0.1:9092].
    #[arg(long, env = "BRAID_KAFKA_ADDR")]
    pub kafka_addr: Option<SocketAddr>,
    /// The address Kafka clients are told to connect to, HOST:PORT (a host name or an IP):
    /// Kafka's advertised.listeners for the one listener of --kafka-addr [default: the
    /// listener's own address; this host's name if it binds 0.0.0.0 or ::].
    #[arg(long, env = "BRAID_KAFKA_ADVERTISED_ADDR")]
    pub kafka_advertised_addr: Option<HostPort>,
    /// Named Kafka listeners instead of --kafka-addr, as Kafka's listeners:
    /// NAME://HOST:PORT,... (e.g. INTERNAL://127.0.0.1:9092,EXTERNAL://0.0.0.0:19092; an
    /// empty HOST binds every interface). Clients are told the addresses of the listener they
    /// connected through.
    #[arg(long, env = "BRAID_KAFKA_LISTENERS")]
    pub kafka_listeners: Option<String>,
    /// The addresses clients of each named listener are told, as Kafka's
    /// advertised.listeners: NAME://HOST:PORT,... for names of --kafka-listeners (PLAINTEXT
    /// with --kafka-addr) [default, per listener: as for --kafka-advertised-addr].
    #[arg(long, env = "BRAID_KAFKA_ADVERTISED_LISTENERS")]
    pub kafka_advertised_listeners: Option<String>,
    /// ZooKeeper protocol listener [default: 127.0.0.1:2181].
    #[arg(long, env = "BRAID_ZK_ADDR")]
    pub zk_addr: Option<SocketAddr>,
    /// ZooKeeper's tickTime in milliseconds: sessions time out after 2 to 20 ticks, as the
    /// client asks [default: 2000].
    #[arg(long, env = "BRAID_ZK_TICK_MS")]
    pub zk_tick_ms: Option<u32>,
    /// Largest znode data and ZooKeeper request, in bytes (ZooKeeper's jute.maxbuffer)
    /// [default: 1048575].
    #[arg(long, env = "BRAID_ZK_MAX_DATA_BYTES")]
    pub zk_max_data_bytes: Option<usize>,
    /// How often empty container nodes and expired TTL nodes are removed, in milliseconds
    /// (ZooKeeper's znode.container.checkIntervalMs) [default: 1000].
    #[arg(long, env = "BRAID_ZK_REAPER_MS")]
    pub zk_reaper_ms: Option<u64>,
    /// Tree transactions between two snapshots of the tree (ZooKeeper's snapCount); the
    /// metadata log below a snapshot every node holds is then deleted [default: 100000].
    #[arg(long, env = "BRAID_ZK_SNAP_COUNT")]
    pub zk_snap_count: Option<u64>,
    /// Bytes of one metadata-log segment (the log below a tree snapshot goes a segment at a
    /// time) [default: 16 MiB]. For tests and the simulator, which want the log deleted early.
    #[arg(long, hide = true, env = "BRAID_META_SEGMENT_BYTES")]
    pub meta_segment_bytes: Option<u64>,
    /// Admin HTTP listener: /metrics and /v1/status [default: 127.0.0.1:9644].
    #[arg(long, env = "BRAID_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Cluster members, this node included, as id@host:port,... where host:port is each
    /// node's node-to-node (raft) listener; host names are resolved at every connection
    /// attempt (this node's own entry once, at start). Without it the node is a cluster of one.
    #[arg(long, env = "BRAID_PEERS")]
    pub peers: Option<String>,
    /// Node-to-node (raft) listener [default: this node's entry in --peers].
    #[arg(long, env = "BRAID_RAFT_ADDR")]
    pub raft_addr: Option<SocketAddr>,
    /// Replicas of a topic created without a replication factor [default: 3, or the number of
    /// nodes if fewer].
    #[arg(long, env = "BRAID_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i16>,
    /// Raft tick in milliseconds: heartbeats every 2 ticks, elections after 10 to 20 without
    /// a leader [default: 50].
    #[arg(long, env = "BRAID_RAFT_TICK_MS")]
    pub raft_tick_ms: Option<u64>,
    /// Shards (pinned threads, one io_uring each) [default: the CPUs of --cpuset, else the
    /// number of CPUs].
    #[arg(long, env = "BRAID_CORES")]
    pub cores: Option<usize>,
    /// CPUs the shards are pinned to, in order (shard k on the k-th, round robin), e.g.
    /// `2-3` or `1,0`: several nodes on one host each take their own [default: 0, 1, ... in
    /// order].
    #[arg(long, env = "BRAID_CPUSET")]
    pub cpuset: Option<String>,
    /// Largest request frame, in bytes [default: 104857600].
    #[arg(long, env = "BRAID_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Kafka connections a shard keeps open at once; more are closed on arrival
    /// [default: 4096].
    #[arg(long, env = "BRAID_MAX_CONNECTIONS_PER_SHARD")]
    pub max_connections_per_shard: Option<usize>,
    /// Bytes of recently appended batches a shard keeps in memory for followers, shared by its
    /// replicated partitions (16 MiB each at most); followers further behind, or behind a full
    /// cache, read the segments [default: 134217728].
    #[arg(long, env = "BRAID_REPLICATION_CACHE_BYTES")]
    pub replication_cache_bytes: Option<usize>,
    /// Bytes of log write buffers a shard holds, shared by its partitions as their appends need
    /// them (an idle partition holds 4 KiB); past it, logs write their appends out sooner
    /// instead of buffering more [default: 268435456].
    #[arg(long, env = "BRAID_WRITE_BUFFER_MEMORY_BYTES")]
    pub write_buffer_memory_bytes: Option<usize>,
    /// Write segments through the page cache instead of O_DIRECT.
    #[arg(long, env = "BRAID_BUFFERED_IO")]
    #[serde(default)]
    pub buffered_io: bool,
    /// Partitions of a topic created without a count, or created by a Metadata request
    /// [default: 1].
    #[arg(long, env = "BRAID_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// Let Metadata requests create the topics they name (auto.create.topics.enable)
    /// [default: true].
    #[arg(long, env = "BRAID_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Hand partition leadership back to preferred replicas every 10 s
    /// (auto.leader.rebalance.enable); off, only ElectLeaders does [default: true].
    #[arg(long, env = "BRAID_AUTO_LEADER_REBALANCE")]
    pub auto_leader_rebalance: Option<bool>,
    /// How often retention and compaction run, in milliseconds [default: 30000].
    #[arg(long, env = "BRAID_RETENTION_CHECK_MS")]
    pub retention_check_ms: Option<u64>,
    /// TOML file with any of these settings (kebab-case keys).
    #[arg(long, env = "BRAID_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// Resolved settings of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    /// The first Kafka listener's bind address (the only one with --kafka-addr).
    pub kafka_addr: SocketAddr,
    /// Every Kafka listener: its name, bind address and advertised address (at least one).
    pub kafka_listeners: Vec<KafkaListener>,
    pub admin_addr: SocketAddr,
    pub zk_addr: SocketAddr,
    pub zk_tick_ms: u32,
    pub zk_max_data_bytes: usize,
    pub zk_reaper_ms: u64,
    pub zk_snap_count: u64,
    /// Bytes of one metadata-log segment.
    pub meta_segment_bytes: u64,
    pub cores: usize,
    /// The CPU each shard is pinned to (shard k: `cpuset[k % len]`).
    pub cpuset: Vec<usize>,
    pub max_request_bytes: usize,
    pub max_connections_per_shard: usize,
    pub replication_cache_bytes: usize,
    pub write_buffer_memory_bytes: usize,
    pub shard_request_memory: usize,
    pub direct_io: bool,
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    pub auto_leader_rebalance: bool,
    pub retention_check_ms: u64,
    /// Every member of the cluster with its raft address (not resolved: a name may resolve
    /// only once its node is up), sorted by id; empty for a cluster of one.
    pub peers: Vec<(i32, HostPort)>,
    pub raft_addr: Option<SocketAddr>,
    pub default_replication_factor: i16,
    pub raft_tick_ms: u64,
}

impl NodeConfig {
    /// Node ids of every member (just this node for a cluster of one).
    /// This node's id in its raft groups (the same number: checked non-negative at start).
    pub fn raft_id(&self) -> NodeId {
        NodeId::new(self.node_id).expect("the node id is checked non-negative when the configuration is read")
    }

    /// The metadata group's members' raft ids.
    pub fn raft_members(&self) -> Vec<NodeId> {
        raft_ids(&self.members())
    }

    pub fn members(&self) -> Vec<i32> {
        if self.peers.is_empty() {
            vec![self.node_id]
        } else {
            self.peers.iter().map(|(id, _)| *id).collect()
        }
    }
}

/// A host (a name, or an IP address; IPv6 without its brackets) and a port: an address as it
/// is given to others, resolved only by whoever connects to it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// True if the host is 0.0.0.0 or :: (every interface): a place to bind, never one to
    /// connect to.
    pub fn is_wildcard(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for HostPort {
    type Err = anyhow::Error;

    /// `host:port` or `[ipv6]:port`, with a host and a port other than 0.
    fn from_str(text: &str) -> anyhow::Result<HostPort> {
        let (host, port) = split_host_port(text)?;
        // One message, not a chain: clap and serde show only the outermost.
        HostPort::connectable(host, port).map_err(|e| anyhow::anyhow!("{text:?}: {e}"))
    }
}

impl TryFrom<String> for HostPort {
    type Error = anyhow::Error;

    fn try_from(text: String) -> anyhow::Result<HostPort> {
        text.parse()
    }
}

/// Splits `host:port` or `[ipv6]:port` (the host may be empty: `:9092`), checking that the
/// host is an IP address or a host name (letters, digits, '-', '.', '_').
fn split_host_port(text: &str) -> anyhow::Result<(&str, u16)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").with_context(|| format!("{text:?} is not [IPv6]:PORT"))?;
        host.parse::<std::net::Ipv6Addr>().with_context(|| format!("{host:?} in {text:?} is not an IPv6 address"))?;
        (host, port)
    } else {
        let (host, port) = text.rsplit_once(':').with_context(|| format!("{text:?} is not HOST:PORT"))?;
        if host.contains(':') {
            bail!("{text:?}: write an IPv6 address in brackets, as [::1]:9092");
        }
        let name_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if !host.chars().all(name_chars) {
            bail!("{host:?} in {text:?} is neither an IP address nor a host name");
        }
        (host, port)
    };
    let port = port.parse::<u16>().with_context(|| format!("{port:?} in {text:?} is not a port number"))?;
    Ok((host, port))
}

/// A Kafka endpoint as a broker registers it and Kafka's configs write it: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The listener's name, in upper case as Kafka normalises it.
    pub listener: String,
    pub addr: HostPort,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.listener, self.addr)
    }
}

impl std::str::FromStr for Endpoint {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Endpoint> {
        let (listener, addr) = split_listener(text)?;
        Ok(Endpoint { listener, addr: addr.parse()? })
    }
}

/// Splits `NAME://rest`, with the name checked and upper-cased (Kafka's listener names are
/// case-insensitive).
fn split_listener(text: &str) -> anyhow::Result<(String, &str)> {
    let (name, rest) = text.split_once("://").with_context(|| format!("{text:?} is not NAME://HOST:PORT"))?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
        bail!("{name:?} in {text:?} is not a listener name (letters, digits, '_', '-')");
    }
    let name = name.to_ascii_uppercase();
    // Kafka reads these names as security protocols (its default
    // listener.security.protocol.map): a listener so named would promise TLS or SASL.
    if matches!(name.as_str(), "SSL" | "SASL_PLAINTEXT" | "SASL_SSL") {
        bail!("listener {name} in {text:?}: Kafka's name for a security protocol Braid does not serve yet; every listener is PLAINTEXT, so name it otherwise");
    }
    Ok((name, rest))
}

/// A Kafka listener of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaListener {
    /// Kafka's listener name (PLAINTEXT for --kafka-addr).
    pub name: String,
    /// Where every shard binds it (SO_REUSEPORT).
    pub addr: SocketAddr,
    /// What clients connected through it are told this node's address is.
    pub advertised: HostPort,
}

impl NodeConfig {
    /// This node's advertised endpoints, one per listener, in the order given.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.kafka_listeners.iter().map(|l| Endpoint { listener: l.name.clone(), addr: l.advertised.clone() }).collect()
    }
}

/// Parses a list of `NAME://HOST:PORT` for `flag`: names unique, HOST possibly empty.
fn parse_endpoint_list(spec: &str, flag: &str) -> anyhow::Result<Vec<(String, String, u16)>> {
    let mut out: Vec<(String, String, u16)> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, rest) = split_listener(item).with_context(|| format!("{flag} {spec:?}"))?;
        let (host, port) = split_host_port(rest).with_context(|| format!("{flag} {spec:?}"))?;
        if out.iter().any(|(other, _, _)| *other == name) {
            bail!("{flag} {spec:?} names listener {name} twice");
        }
        out.push((name, host.to_owned(), port));
    }
    if out.is_empty() {
        bail!("{flag} {spec:?} names no listener");
    }
    Ok(out)
}

/// Where a listener given as HOST:PORT binds: an empty host or 0.0.0.0 every IPv4 interface
/// (and IPv6 ones too, on a host that maps them), `::` every interface, a name the first
/// address it resolves to now.
fn bind_addr(host: &str, port: u16, what: &str) -> anyhow::Result<SocketAddr> {
    if host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("{what}: resolving {host}"))?
        .next()
        .with_context(|| format!("{what}: {host} resolves to no address"))
}

/// The Kafka listeners from the settings: --kafka-listeners, else one named PLAINTEXT on
/// --kafka-addr; advertised as --kafka-advertised-listeners or --kafka-advertised-addr say,
/// else at their own address, else (a wildcard bind) at this host's name.
fn kafka_listeners(
    kafka_addr: Option<SocketAddr>,
    listeners: Option<&str>,
    advertised_addr: Option<&HostPort>,
    advertised_listeners: Option<&str>,
) -> anyhow::Result<Vec<KafkaListener>> {
    let binds: Vec<(String, SocketAddr)> = match (listeners, kafka_addr) {
        (Some(_), Some(_)) => bail!(
            "--kafka-addr and --kafka-listeners are both set: give one (--kafka-addr is a single listener named PLAINTEXT)"
        ),
        (Some(spec), None) => parse_endpoint_list(spec, "--kafka-listeners")?
            .into_iter()
            .map(|(name, host, port)| Ok((name.clone(), bind_addr(&host, port, &format!("listener {name}"))?)))
            .collect::<anyhow::Result<_>>()?,
        (None, addr) => vec![(PLAINTEXT.to_owned(), addr.unwrap_or(([127, 0, 0, 1], 9092).into()))],
    };
    for (i, (name, addr)) in binds.iter().enumerate() {
        if addr.port() == 0 {
            bail!("Kafka listener {name} ({addr}): every shard binds the same port, so it cannot be 0");
        }
        // SO_REUSEPORT would let two of this node's listeners share a port, and the kernel
        // would spread one listener's clients over both names.
        let overlaps = |other: &SocketAddr| {
            other.port() == addr.port()
                && (other.ip() == addr.ip() || other.ip().is_unspecified() || addr.ip().is_unspecified())
        };
        if let Some((other, _)) = binds[..i].iter().find(|(_, other)| overlaps(other)) {
            bail!("Kafka listeners {other} and {name} both bind port {}", addr.port());
        }
    }
    let advertised: Vec<(String, HostPort)> = match (advertised_listeners, advertised_addr) {
        (Some(_), Some(_)) => bail!(
            "--kafka-advertised-addr and --kafka-advertised-listeners are both set: give one (--kafka-advertised-addr is the PLAINTEXT listener's)"
        ),
        (Some(spec), None) => parse_endpoint_list(spec, "--kafka-advertised-listeners")?
            .into_iter()
            .map(|(name, host, port)| {
                let addr = HostPort::connectable(&host, port)
                    .with_context(|| format!("--kafka-advertised-listeners {spec:?}: listener {name}"))?;
                Ok((name, addr))
            })
            .collect::<anyhow::Result<_>>()?,
        (None, Some(_)) if listeners.is_some() => bail!(
            "--kafka-advertised-addr goes with --kafka-addr; with --kafka-listeners give --kafka-advertised-listeners"
        ),
        (None, Some(addr)) => vec![(PLAINTEXT.to_owned(), addr.clone())],
        (None, None) => Vec::new(),
    };
    for (name, addr) in &advertised {
        if !binds.iter().any(|(bound, _)| bound == name) {
            let names: Vec<&str> = binds.iter().map(|(n, _)| n.as_str()).collect();
            bail!("advertised listener {name} is not one of the Kafka listeners ({})", names.join(", "));
        }
        if addr.is_wildcard() {
            bail!("listener {name} would advertise {addr}: clients cannot connect to a wildcard address; advertise a host name or IP they can reach");
        }
    }
    Ok(binds
        .into_iter()
        .map(|(name, addr)| {
            let advertised = match advertised.iter().find(|(n, _)| *n == name) {
                Some((_, advertised)) => advertised.clone(),
                None if addr.ip().is_unspecified() => {
                    let host = HostPort { host: host_name(), port: addr.port() };
                    tracing::warn!(
                        listener = %name, bind = %addr, advertised = %host,
                        "a Kafka listener binds every interface and has no advertised address: clients are told this host's name; set --kafka-advertised-addr (or --kafka-advertised-listeners) to the address they reach this node at"
                    );
                    host
                }
                None => HostPort { host: addr.ip().to_string(), port: addr.port() },
            };
            KafkaListener { name, addr, advertised }
        })
        .collect())
}

/// The name of the listener --kafka-addr makes (Kafka's default).
pub const PLAINTEXT: &str = "PLAINTEXT";

impl HostPort {
    /// A host and port already split and checked by [`split_host_port`], as an address to
    /// connect to: both must be there.
    fn connectable(host: &str, port: u16) -> anyhow::Result<HostPort> {
        if host.is_empty() {
            bail!("no host (HOST:PORT)");
        }
        if port == 0 {
            bail!("port 0 is no address to connect to");
        }
        Ok(HostPort { host: host.to_owned(), port })
    }
}

/// This host's name as `hostname -f` prints it: gethostname(2), then the canonical name the
/// resolver (/etc/hosts, DNS) gives it; the plain name where it has none, or only a loopback
/// one (Java's canonical host name, Kafka's default, is often "localhost", which no other
/// host can use). Looked up once.
pub fn host_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let plain = plain_host_name().unwrap_or_default();
        let canonical = canonical_name(&plain).filter(|c| !c.is_empty() && !is_loopback_name(c));
        match canonical {
            Some(name) => name,
            None if !plain.is_empty() => plain,
            None => "localhost".to_owned(),
        }
    })
    .clone()
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.starts_with("localhost.") || name.starts_with("ip6-localhost")
}

/// gethostname(2).
fn plain_host_name() -> Option<String> {
    /// Linux's HOST_NAME_MAX is 64; room for more and the NUL.
    const HOST_NAME_BYTES: usize = 256;
    let mut buffer = [0u8; HOST_NAME_BYTES];
    // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    Some(String::from_utf8_lossy(&buffer[..end]).into_owned())
}

/// The canonical name getaddrinfo(3) gives `name` (AI_CANONNAME), as `hostname -f` asks it.
fn canonical_name(name: &str) -> Option<String> {
    let c_name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a zeroed addrinfo is a valid set of hints (no family, type or flags).
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_CANONNAME;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut found: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated name and hints; on success `found` is a list freed below.
    let rc = unsafe { libc::getaddrinfo(c_name.as_ptr(), std::ptr::null(), &hints, &mut found) };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: `found` is the list getaddrinfo returned; its first entry carries the canonical
    // name (or null), a NUL-terminated string that lives until freeaddrinfo.
    let canonical = unsafe {
        let name = (*found).ai_canonname;
        let name = (!name.is_null()).then(|| std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned());
        libc::freeaddrinfo(found);
        name
    };
    canonical
}

/// Parses `id@host:port,...`. Host names are kept as they are: a peer's name may not resolve
/// until its node is up (a container starting), so it is resolved at each connection attempt.
pub fn parse_peers(spec: &str) -> anyhow::Result<Vec<(i32, HostPort)>> {
    let mut peers = Vec::new();
    for peer in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = peer.split_once('@').with_context(|| format!("peer {peer:?} is not id@host:port"))?;
        let id: i32 = id.trim().parse().with_context(|| format!("peer id in {peer:?}"))?;
        if id < 0 {
            bail!("peer id in {peer:?} must not be negative");
        }
        let addr: HostPort = addr.trim().parse().with_context(|| format!("peer address in {peer:?}"))?;
        if addr.is_wildcard() {
            bail!("peer address in {peer:?} is a wildcard: give the address other nodes reach that node at");
        }
        if peers.iter().any(|(other, _)| *other == id) {
            bail!("peer {id} is listed twice in --peers");
        }
        peers.push((id, addr));
    }
    peers.sort_unstable_by_key(|(id, _)| *id);
    Ok(peers)
}

/// A CPU list as taskset and cgroups write it: `0-3,6`, in the order given.
fn parse_cpuset(list: &str, cpus: usize) -> anyhow::Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let number =
            |n: &str| n.parse::<usize>().with_context(|| format!("--cpuset {list:?}: {n:?} is not a CPU number"));
        let (first, last) = (number(first)?, number(last)?);
        if first > last || last >= cpus {
            bail!("--cpuset {list:?}: {part:?} is not a range of this machine's CPUs (0-{})", cpus - 1);
        }
        for cpu in first..=last {
            if out.contains(&cpu) {
                bail!("--cpuset {list:?} names CPU {cpu} twice");
            }
            out.push(cpu);
        }
    }
    if out.is_empty() {
        bail!("--cpuset {list:?} names no CPU");
    }
    Ok(out)
}

impl NodeConfig {
    pub fn resolve(args: StartArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<StartArgs>(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => StartArgs::default(),
        };
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let node_id = args.node_id.or(file.node_id).unwrap_or(1);
        if node_id < 0 {
            bail!("--node-id {node_id}: a node id is a non-negative integer (it is the node's Kafka broker id)");
        }
        let cpuset = match args.cpuset.as_ref().or(file.cpuset.as_ref()) {
            Some(list) => Some(parse_cpuset(list, cpus)?),
            None => None,
        };
        // Looked up here, before any shard runs: the ZooKeeper server's envi answer shows it,
        // and the resolver may take its time.
        host_name();
        let kafka_listeners = kafka_listeners(
            args.kafka_addr.or(file.kafka_addr),
            args.kafka_listeners.as_deref().or(file.kafka_listeners.as_deref()),
            args.kafka_advertised_addr.as_ref().or(file.kafka_advertised_addr.as_ref()),
            args.kafka_advertised_listeners.as_deref().or(file.kafka_advertised_listeners.as_deref()),
        )?;
        let config = NodeConfig {
            node_id,
            data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./braid-data")),
            kafka_addr: kafka_listeners[0].addr,
            kafka_listeners,
            admin_addr: args.admin_addr.or(file.admin_addr).unwrap_or(([127, 0, 0, 1], 9644).into()),
            zk_addr: args.zk_addr.or(file.zk_addr).unwrap_or(([127, 0, 0, 1], 2181).into()),
            zk_tick_ms: args.zk_tick_ms.or(file.zk_tick_ms).unwrap_or(2000),
            zk_max_data_bytes: args.zk_max_data_bytes.or(file.zk_max_data_bytes).unwrap_or(0xfffff),
            zk_reaper_ms: args.zk_reaper_ms.or(file.zk_reaper_ms).unwrap_or(1000),
            zk_snap_count: args.zk_snap_count.or(file.zk_snap_count).unwrap_or(100_000).max(1),
            meta_segment_bytes: args.meta_segment_bytes.unwrap_or(16 << 20).clamp(4096, 1 << 30),
            cores: args.cores.or(file.cores).unwrap_or(cpuset.as_ref().map_or(cpus, Vec::len)),
            cpuset: cpuset.unwrap_or_else(|| (0..cpus).collect()),
            max_request_bytes: args.max_request_bytes.or(file.max_request_bytes).unwrap_or(MAX_REQUEST_BYTES_DEFAULT),
            max_connections_per_shard: args
                .max_connections_per_shard
                .or(file.max_connections_per_shard)
                .unwrap_or(MAX_CONNECTIONS_PER_SHARD_DEFAULT),
            replication_cache_bytes: args
                .replication_cache_bytes
                .or(file.replication_cache_bytes)
                .unwrap_or(REPLICATION_CACHE_BYTES_DEFAULT),
            write_buffer_memory_bytes: args
                .write_buffer_memory_bytes
                .or(file.write_buffer_memory_bytes)
                .unwrap_or(WRITE_BUFFER_MEMORY_BYTES_DEFAULT),
            shard_request_memory: SHARD_REQUEST_MEMORY_DEFAULT,
            direct_io: !(args.buffered_io || file.buffered_io),
            default_partitions: args.default_partitions.or(file.default_partitions).unwrap_or(1),
            auto_create_topics: args.auto_create_topics.or(file.auto_create_topics).unwrap_or(true),
            auto_leader_rebalance: args.auto_leader_rebalance.or(file.auto_leader_rebalance).unwrap_or(true),
            retention_check_ms: args.retention_check_ms.or(file.retention_check_ms).unwrap_or(30_000),
            peers: Vec::new(),
            raft_addr: None,
            default_replication_factor: 1,
            raft_tick_ms: args.raft_tick_ms.or(file.raft_tick_ms).unwrap_or(50),
        };
        let mut config = config;
        if let Some(spec) = args.peers.or(file.peers) {
            let peers = parse_peers(&spec)?;
            let Some((_, own)) = peers.iter().find(|(id, _)| *id == node_id) else {
                bail!("--peers must list this node ({node_id}) too");
            };
            config.raft_addr = Some(match args.raft_addr.or(file.raft_addr) {
                Some(addr) => addr,
                None => bind_addr(&own.host, own.port, &format!("this node's --peers entry {node_id}@{own}"))
                    .context("give --raft-addr, or a host name that resolves here")?,
            });
            // A cluster of one listed alone is the same as no --peers.
            if peers.len() > 1 {
                config.peers = peers;
            }
        }
        let nodes = config.members().len() as i16;
        config.default_replication_factor =
            args.default_replication_factor.or(file.default_replication_factor).unwrap_or(3.min(nodes));
        if !(1..=nodes).contains(&config.default_replication_factor) {
            bail!(
                "--default-replication-factor must be between 1 and the number of nodes ({nodes}), not {}",
                config.default_replication_factor
            );
        }
        if !(5..=10_000).contains(&config.raft_tick_ms) {
            bail!("--raft-tick-ms must be between 5 and 10000, not {}", config.raft_tick_ms);
        }
        if config.cores == 0 || config.cores > 1024 {
            bail!("--cores must be between 1 and 1024, not {}", config.cores);
        }
        if config.default_partitions < 1 {
            bail!("--default-partitions must be at least 1");
        }
        if config.max_connections_per_shard == 0 {
            bail!("--max-connections-per-shard must be at least 1");
        }
        if !(100..=60_000).contains(&config.zk_tick_ms) {
            bail!("--zk-tick-ms must be between 100 and 60000, not {}", config.zk_tick_ms);
        }
        if !(1024..=(64 << 20)).contains(&config.zk_max_data_bytes) {
            bail!("--zk-max-data-bytes must be between 1024 and 67108864, not {}", config.zk_max_data_bytes);
        }
        if config.write_buffer_memory_bytes < (1 << 20) {
            bail!("--write-buffer-memory-bytes must be at least 1048576, not {}", config.write_buffer_memory_bytes);
        }
        if config.max_request_bytes < 1024 {
            bail!("--max-request-bytes must be at least 1024");
        }
        Ok(config)
    }
}

/// The raft ids of Kafka replica (broker) ids; an id that is none (negative: a replica list
/// written into the tree by hand) is left out.
pub fn raft_ids(replicas: &[i32]) -> Vec<NodeId> {
    replicas.iter().filter_map(|&r| NodeId::new(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort { host: host.into(), port }
    }

    /// The error's whole chain, for checking what it says.
    fn error_of<T: std::fmt::Debug>(result: anyhow::Result<T>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn host_port_takes_names_and_ips_and_refuses_what_no_client_can_reach() {
        assert_eq!("node-1.example:9092".parse::<HostPort>().unwrap(), hp("node-1.example", 9092));
        assert_eq!("127.0.0.2:1".parse::<HostPort>().unwrap(), hp("127.0.0.2", 1));
        let v6 = "[::1]:9092".parse::<HostPort>().unwrap();
        assert_eq!(v6, hp("::1", 9092));
        assert_eq!(v6.to_string(), "[::1]:9092", "IPv6 is written back in brackets");
        assert!(hp("0.0.0.0", 1).is_wildcard() && hp("::", 1).is_wildcard() && !hp("h", 1).is_wildcard());
        for (bad, why) in [
            ("node", "is not HOST:PORT"),
            ("node:0", "port 0"),
            (":9092", "no host"),
            ("node:99999", "is not a port number"),
            ("node:x", "is not a port number"),
            ("::1:9092", "in brackets"),
            ("[::1]9092", "is not [IPv6]:PORT"),
            ("[node]:9092", "is not an IPv6 address"),
            ("no de:9092", "neither an IP address nor a host name"),
            ("a/b:9092", "neither an IP address nor a host name"),
        ] {
            let e = bad.parse::<HostPort>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn peers_keep_their_names_unresolved() {
        // A name that resolves nowhere is kept as it is: it is looked up at each connection.
        let peers = parse_peers("2@node-2.invalid:9093, 1@127.0.0.1:9093,3@[::1]:9093").unwrap();
        assert_eq!(peers, vec![(1, hp("127.0.0.1", 9093)), (2, hp("node-2.invalid", 9093)), (3, hp("::1", 9093))]);
        for (bad, why) in [
            ("1@node", "peer address in \"1@node\""),
            ("1@0.0.0.0:9093", "is a wildcard"),
            ("x@node:1", "peer id"),
            ("-1@node:1", "must not be negative"),
            ("1@a:1,1@b:1", "listed twice"),
            ("1@a:0", "port 0"),
        ] {
            let e = error_of(parse_peers(bad));
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn this_nodes_raft_listener_is_its_own_peers_entry_resolved_at_start() {
        let args = StartArgs {
            node_id: Some(2),
            peers: Some("1@node-1.invalid:9093,2@localhost:9193".into()),
            ..Default::default()
        };
        let config = NodeConfig::resolve(args).unwrap();
        assert_eq!(config.raft_addr.map(|a| a.port()), Some(9193));
        assert!(config.raft_addr.unwrap().ip().is_loopback());
        assert_eq!(config.peers[0], (1, hp("node-1.invalid", 9093)), "the others are not resolved");
    }

    #[test]
    fn one_listener_advertises_its_own_address_or_the_one_given() {
        let plain = kafka_listeners(None, None, None, None).unwrap();
        assert_eq!(
            plain,
            vec![KafkaListener {
                name: "PLAINTEXT".into(),
                addr: "127.0.0.1:9092".parse().unwrap(),
                advertised: hp("127.0.0.1", 9092)
            }]
        );
        let wildcard: SocketAddr = "0.0.0.0:9092".parse().unwrap();
        let given = kafka_listeners(Some(wildcard), None, Some(&hp("kafka-1.example", 19092)), None).unwrap();
        assert_eq!((given[0].addr, &given[0].advertised), (wildcard, &hp("kafka-1.example", 19092)));
        let v6: SocketAddr = "[::1]:9092".parse().unwrap();
        assert_eq!(kafka_listeners(Some(v6), None, None, None).unwrap()[0].advertised, hp("::1", 9092));
        // A wildcard bind and nothing advertised: this host's name, never the wildcard.
        for bind in ["0.0.0.0:9092", "[::]:9092"] {
            let listener = &kafka_listeners(Some(bind.parse().unwrap()), None, None, None).unwrap()[0];
            assert_eq!(listener.advertised, hp(&host_name(), 9092), "{bind}");
            assert!(!listener.advertised.is_wildcard() && !listener.advertised.host.is_empty());
        }
    }

    #[test]
    fn named_listeners_are_read_as_kafka_writes_them() {
        let listeners = kafka_listeners(
            None,
            Some("internal://127.0.0.1:9092, EXTERNAL://0.0.0.0:19092,REPLICATION://:29092"),
            None,
            Some("EXTERNAL://kafka.example:19092"),
        )
        .unwrap();
        let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["INTERNAL", "EXTERNAL", "REPLICATION"], "names are upper-cased, order kept");
        assert_eq!(listeners[0].advertised, hp("127.0.0.1", 9092));
        assert_eq!(listeners[1].advertised, hp("kafka.example", 19092));
        assert_eq!(listeners[2].addr, "0.0.0.0:29092".parse().unwrap(), "an empty host binds every interface");
        assert_eq!(listeners[2].advertised, hp(&host_name(), 29092));
        let config = NodeConfig { kafka_listeners: listeners, ..NodeConfig::resolve(StartArgs::default()).unwrap() };
        let endpoints: Vec<String> = config.endpoints().iter().map(Endpoint::to_string).collect();
        assert_eq!(endpoints[..2], ["INTERNAL://127.0.0.1:9092", "EXTERNAL://kafka.example:19092"]);
        assert_eq!("A://[::1]:1".parse::<Endpoint>().unwrap().addr, hp("::1", 1));
    }

    #[test]
    fn bad_listeners_are_refused_with_what_is_wrong() {
        let addr: SocketAddr = "127.0.0.1:9092".parse().unwrap();
        let l = Some("A://127.0.0.1:9092,B://127.0.0.1:9093");
        let cases: Vec<(anyhow::Result<Vec<KafkaListener>>, &str)> = vec![
            (kafka_listeners(Some(addr), l, None, None), "--kafka-addr and --kafka-listeners are both set"),
            (
                kafka_listeners(None, l, Some(&hp("h", 1)), None),
                "with --kafka-listeners give --kafka-advertised-listeners",
            ),
            (kafka_listeners(None, None, Some(&hp("h", 1)), Some("PLAINTEXT://h:1")), "are both set"),
            (
                kafka_listeners(None, l, None, Some("C://h:1")),
                "advertised listener C is not one of the Kafka listeners (A, B)",
            ),
            (kafka_listeners(None, l, None, Some("A://0.0.0.0:9092")), "clients cannot connect to a wildcard"),
            (kafka_listeners(None, l, None, Some("A://[::]:9092")), "clients cannot connect to a wildcard"),
            (kafka_listeners(None, l, None, Some("A://:9092")), "no host"),
            (kafka_listeners(None, l, None, Some("A://h:1,a://h:2")), "names listener A twice"),
            (kafka_listeners(None, Some("A://127.0.0.1:1,a://127.0.0.2:2"), None, None), "names listener A twice"),
            (kafka_listeners(None, Some("A://0.0.0.0:1,B://127.0.0.2:1"), None, None), "A and B both bind port 1"),
            (kafka_listeners(None, Some("A://127.0.0.1:1,B://127.0.0.1:1"), None, None), "both bind port 1"),
            (kafka_listeners(None, Some("A://127.0.0.1:0"), None, None), "cannot be 0"),
            (kafka_listeners(Some("127.0.0.1:0".parse().unwrap()), None, None, None), "cannot be 0"),
            (kafka_listeners(None, Some("SSL://127.0.0.1:1"), None, None), "security protocol"),
            (kafka_listeners(None, Some("A:127.0.0.1:1"), None, None), "is not NAME://HOST:PORT"),
            (kafka_listeners(None, Some("A B://127.0.0.1:1"), None, None), "is not a listener name"),
            (kafka_listeners(None, Some("A://127.0.0.1"), None, None), "is not HOST:PORT"),
            (kafka_listeners(None, Some(" , "), None, None), "names no listener"),
        ];
        for (result, why) in cases {
            let e = error_of(result);
            assert!(e.contains(why), "expected {why:?} in: {e}");
        }
        // Two listeners on one port of different addresses are fine.
        assert!(kafka_listeners(None, Some("A://127.0.0.1:1,B://127.0.0.2:1"), None, None).is_ok());
    }

    #[test]
    fn listener_settings_come_from_flags_env_or_the_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("braid.toml");
        std::fs::write(
            &file,
            "kafka-listeners = \"IN://127.0.0.1:9092,OUT://127.0.0.3:9092\"\n\
             kafka-advertised-listeners = \"OUT://out.example:9092\"\n",
        )
        .unwrap();
        let config = NodeConfig::resolve(StartArgs { config: Some(file.clone()), ..Default::default() }).unwrap();
        assert_eq!(config.kafka_listeners[1].advertised, hp("out.example", 9092));
        assert_eq!(config.kafka_addr, "127.0.0.1:9092".parse().unwrap(), "the first listener's");
        std::fs::write(&file, "kafka-addr = \"0.0.0.0:9092\"\nkafka-advertised-addr = \"in.example:9092\"\n").unwrap();
        let config = NodeConfig::resolve(StartArgs { config: Some(file.clone()), ..Default::default() }).unwrap();
        assert_eq!(config.kafka_listeners[0].advertised, hp("in.example", 9092));
        std::fs::write(&file, "kafka-advertised-addr = \"in.example\"\n").unwrap();
        let e = error_of(NodeConfig::resolve(StartArgs { config: Some(file), ..Default::default() }));
        assert!(e.contains("is not HOST:PORT"), "{e}");
    }

    #[test]
    fn a_cpuset_is_read_as_taskset_writes_it_and_sets_the_default_shards() {
        assert_eq!(parse_cpuset("0-2,5", 8).unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpuset("1,0", 2).unwrap(), vec![1, 0], "the order given is the shards' order");
        for bad in ["", "2", "1-0", "a", "0,0", "0-1,1"] {
            assert!(parse_cpuset(bad, 2).is_err(), "{bad:?} must be refused");
        }
        let args = StartArgs { cpuset: Some("1".into()), ..Default::default() };
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        match NodeConfig::resolve(args) {
            Ok(config) => assert_eq!((config.cores, config.cpuset), (1, vec![1])),
            Err(e) => assert!(cpus < 2, "CPU 1 exists here: {e:#}"),
        }
        let config = NodeConfig::resolve(StartArgs::default()).unwrap();
        assert_eq!(config.cpuset, (0..cpus).collect::<Vec<_>>());
        assert_eq!(config.cores, cpus);
    }
}
