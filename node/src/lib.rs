//! The braid node: configuration, the thread-per-core runtime, the Kafka front end, the
//! metadata store, the admin HTTP endpoint and the command-line tools.

pub mod admin;
pub mod cli;
pub mod client;
pub mod config;
pub mod data_format;
pub mod env;
pub mod groups;
pub mod kafka;
pub mod meta;
pub mod metadata;
pub mod metrics;
pub mod msg;
pub mod mutation;
pub mod process;
pub mod producers;
pub mod raft_net;
pub mod recompress;
pub mod replica;
pub mod runtime;
pub mod shard;
pub mod shared;
pub mod storage;
pub mod topic_config;
pub mod txn;
pub mod zk;
