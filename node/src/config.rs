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
    /// Admin HTTP listener: /metrics and /v1/status [default: 127.0.0.1:9644].
    #[arg(long, env = "BRAID_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Cluster members as id@host:port,... (this build runs single-node clusters: only this
    /// node may be listed).
    #[arg(long, env = "BRAID_PEERS")]
    pub peers: Option<String>,
    /// Shards (pinned threads, one io_uring each) [default: the number of CPUs].
    #[arg(long, env = "BRAID_CORES")]
    pub cores: Option<usize>,
    /// Largest request frame, in bytes [default: 104857600].
    #[arg(long, env = "BRAID_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Kafka connections a shard keeps open at once; more are closed on arrival
    /// [default: 4096].
    #[arg(long, env = "BRAID_MAX_CONNECTIONS_PER_SHARD")]
    pub max_connections_per_shard: Option<usize>,
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
    /// How often retention runs, in milliseconds [default: 30000].
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
    pub cores: usize,
    pub max_request_bytes: usize,
    pub max_connections_per_shard: usize,
    pub shard_request_memory: usize,
    pub direct_io: bool,
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    pub retention_check_ms: u64,
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
        let kafka_addr = args.kafka_addr.or(file.kafka_addr).unwrap_or(([127, 0, 0, 1], 9092).into());
        let config = NodeConfig {
            node_id,
            data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./braid-data")),
            kafka_addr,
            admin_addr: args.admin_addr.or(file.admin_addr).unwrap_or(([127, 0, 0, 1], 9644).into()),
            cores: args.cores.or(file.cores).unwrap_or(cpus),
            max_request_bytes: args.max_request_bytes.or(file.max_request_bytes).unwrap_or(MAX_REQUEST_BYTES_DEFAULT),
            max_connections_per_shard: args
                .max_connections_per_shard
                .or(file.max_connections_per_shard)
                .unwrap_or(MAX_CONNECTIONS_PER_SHARD_DEFAULT),
            shard_request_memory: SHARD_REQUEST_MEMORY_DEFAULT,
            direct_io: !(args.buffered_io || file.buffered_io),
            default_partitions: args.default_partitions.or(file.default_partitions).unwrap_or(1),
            auto_create_topics: args.auto_create_topics.or(file.auto_create_topics).unwrap_or(true),
            retention_check_ms: args.retention_check_ms.or(file.retention_check_ms).unwrap_or(30_000),
        };
        if let Some(peers) = args.peers.or(file.peers) {
            for peer in peers.split(',').filter(|p| !p.trim().is_empty()) {
                let (id, _) = peer.split_once('@').with_context(|| format!("peer {peer:?} is not id@host:port"))?;
                let id: i32 = id.trim().parse().with_context(|| format!("peer id in {peer:?}"))?;
                if id != node_id {
                    bail!(
                        "--peers names node {id}: this build runs single-node clusters only (replication across \
                         nodes is not part of it yet); start without --peers"
                    );
                }
            }
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
        if config.max_request_bytes < 1024 {
            bail!("--max-request-bytes must be at least 1024");
        }
        Ok(config)
    }
}
