//! The `braid` command line: `start` runs a node; the other commands talk to a running node
//! over its Kafka protocol (`zk`: over its ZooKeeper protocol).

mod bench;
mod bench_zk;
mod cluster;
mod group;
mod records;
mod topic;
mod txn;
mod zk;

use crate::config::{NodeConfig, StartArgs};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "braid",
    version,
    about = "Braid: a Kafka-compatible log and ZooKeeper-compatible tree on one replicated log"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as text (coloured only on a terminal) or as JSON, one object per line, for
    /// log shippers. BRAID_LOG sets the level (info).
    #[arg(long, global = true, env = "BRAID_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A latency histogram of the load generators: 1 µs to 60 s, three significant digits.
fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a node (no flags: one node, data in ./braid-data, Kafka on 127.0.0.1:9092,
    /// ZooKeeper on 127.0.0.1:2181).
    Start(Box<StartArgs>),
    /// Create, list, describe or delete topics.
    Topic {
        #[command(subcommand)]
        command: topic::TopicCommand,
        /// Nodes' Kafka addresses, host:port,... (tried in turn until one answers).
        #[arg(long, global = true, env = "BRAID_BOOTSTRAP", default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Show the cluster: brokers, controller, partition leaders.
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
        /// Nodes' Kafka addresses, host:port,... (tried in turn until one answers).
        #[arg(long, global = true, env = "BRAID_BOOTSTRAP", default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// List consumer groups, describe one (members, offsets, lag), or reset its offsets.
    Group {
        #[command(subcommand)]
        command: group::GroupCommand,
        /// Nodes' Kafka addresses, host:port,... (tried in turn until one answers).
        #[arg(long, global = true, env = "BRAID_BOOTSTRAP", default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// List transactional ids and their transactions' states, or describe one.
    Txn {
        #[command(subcommand)]
        command: txn::TxnCommand,
        /// Nodes' Kafka addresses, host:port,... (tried in turn until one answers).
        #[arg(long, global = true, env = "BRAID_BOOTSTRAP", default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Load generator: produce or consume as fast as asked, with throughput and latency
    /// percentiles (and JSON for scripts).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Read and change the tree through a node's ZooKeeper port: ls, get, set, create, delete.
    Zk {
        #[command(subcommand)]
        command: zk::ZkCommand,
        /// ZooKeeper servers as a ZooKeeper connect string, host:port,...[/chroot] (tried in
        /// turn until one takes the session).
        #[arg(long, global = true, env = "BRAID_ZK", default_value = "127.0.0.1:2181")]
        server: String,
    },
    /// Produce records read from standard input, one per line.
    Produce(records::ProduceArgs),
    /// Print records of a partition, one value per line.
    Consume(records::ConsumeArgs),
}

fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("BRAID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        // Colour codes only where a person reads them: in a file or the journal they are noise.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => {
            crate::process::set_json_logs();
            logs.with_ansi(false).json().try_init()
        }
    };
}

/// Tools piped into `head` should stop quietly when the pipe closes, as Unix tools do; the
/// node itself keeps SIGPIPE ignored (a closed client socket is an error to handle, not a death).
fn default_sigpipe() {
    // SAFETY: restoring the default disposition of SIGPIPE before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    init_tracing(cli.log_format);
    if !matches!(cli.command, Command::Start(_)) {
        default_sigpipe();
    }
    match cli.command {
        Command::Start(args) => crate::runtime::run(NodeConfig::resolve(*args)?),
        Command::Topic { command, bootstrap } => topic::run(&bootstrap, command),
        Command::Cluster { command, bootstrap } => cluster::run(&bootstrap, command),
        Command::Group { command, bootstrap } => group::run(&bootstrap, command),
        Command::Txn { command, bootstrap } => txn::run(&bootstrap, command),
        Command::Bench { command } => bench::run(command),
        Command::Zk { command, server } => zk::run(command, &server),
        Command::Produce(args) => records::produce(args),
        Command::Consume(args) => records::consume(args),
    }
}
