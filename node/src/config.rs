//! Node settings: flags, then `BRAID_*` environment variables, then a TOML file (`--config`),
//! then the defaults of DESIGN.md (one node, `./braid-data`, loopback ports).

use anyhow::{bail, Context};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Largest request frame accepted by default (Kafka's `socket.request.max.bytes`).
pub const MAX_REQUEST_BYTES_DEFAULT: usize = 100 << 20;
/// Kafka connections a shard serves at once by default.
pub const MAX_CONNECTIONS_PER_SHARD_DEFAULT: usize = 4096;
/// Bytes of recently appended batches a shard keeps for its followers by default.
pub const REPLICATION_CACHE_BYTES_DEFAULT: usize = 128 << 20;
/// Bytes of log write buffers (tails, writes in flight, spares) a shard holds by default: a
/// partition produced to at full speed holds about 18 MiB, an idle one 8 KiB.
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
    /// Kafka protocol listener [default: 127.0.0.1:9092].
    #[arg(long, env = "BRAID_KAFKA_ADDR")]
    pub kafka_addr: Option<SocketAddr>,
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
    /// Admin HTTP listener: /metrics and /v1/status [default: 127.0.0.1:9644].
    #[arg(long, env = "BRAID_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Cluster members, this node included, as id@host:port,... where host:port is each
    /// node's node-to-node (raft) listener. Without it the node is a cluster of one.
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
    /// them (an idle partition holds 8 KiB); past it, logs write their appends out sooner
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
    pub kafka_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub zk_addr: SocketAddr,
    pub zk_tick_ms: u32,
    pub zk_max_data_bytes: usize,
    pub zk_reaper_ms: u64,
    pub zk_snap_count: u64,
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
    pub retention_check_ms: u64,
    /// Every member of the cluster with its raft address, sorted by id; empty for a cluster of
    /// one.
    pub peers: Vec<(i32, SocketAddr)>,
    pub raft_addr: Option<SocketAddr>,
    pub default_replication_factor: i16,
    pub raft_tick_ms: u64,
}

impl NodeConfig {
    /// Node ids of every member (just this node for a cluster of one).
    pub fn members(&self) -> Vec<i32> {
        if self.peers.is_empty() {
            vec![self.node_id]
        } else {
            self.peers.iter().map(|(id, _)| *id).collect()
        }
    }
}

/// Parses `id@host:port,...`.
pub fn parse_peers(spec: &str) -> anyhow::Result<Vec<(i32, SocketAddr)>> {
    let mut peers = Vec::new();
    for peer in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = peer.split_once('@').with_context(|| format!("peer {peer:?} is not id@host:port"))?;
        let id: i32 = id.trim().parse().with_context(|| format!("peer id in {peer:?}"))?;
        if id < 0 {
            bail!("peer id in {peer:?} must not be negative");
        }
        let addr = std::net::ToSocketAddrs::to_socket_addrs(addr.trim())
            .with_context(|| format!("peer address in {peer:?}"))?
            .next()
            .with_context(|| format!("no address for {peer:?}"))?;
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
        let cpuset = match args.cpuset.as_ref().or(file.cpuset.as_ref()) {
            Some(list) => Some(parse_cpuset(list, cpus)?),
            None => None,
        };
        let kafka_addr = args.kafka_addr.or(file.kafka_addr).unwrap_or(([127, 0, 0, 1], 9092).into());
        let config = NodeConfig {
            node_id,
            data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./braid-data")),
            kafka_addr,
            admin_addr: args.admin_addr.or(file.admin_addr).unwrap_or(([127, 0, 0, 1], 9644).into()),
            zk_addr: args.zk_addr.or(file.zk_addr).unwrap_or(([127, 0, 0, 1], 2181).into()),
            zk_tick_ms: args.zk_tick_ms.or(file.zk_tick_ms).unwrap_or(2000),
            zk_max_data_bytes: args.zk_max_data_bytes.or(file.zk_max_data_bytes).unwrap_or(0xfffff),
            zk_reaper_ms: args.zk_reaper_ms.or(file.zk_reaper_ms).unwrap_or(1000),
            zk_snap_count: args.zk_snap_count.or(file.zk_snap_count).unwrap_or(100_000).max(1),
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
            config.raft_addr = Some(args.raft_addr.or(file.raft_addr).unwrap_or(*own));
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

#[cfg(test)]
mod tests {
    use super::*;

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
