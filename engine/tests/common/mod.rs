//! Helpers shared by the log's and raft's integration tests.
#![allow(dead_code)]

pub mod group;

use braid_engine::io::{SimFaults, SimStorage, Storage};
use braid_engine::log::batch::{build_batch, BatchHeader};
use braid_engine::log::{Log, LogConfig};
use std::path::{Path, PathBuf};

pub fn sim_dir() -> PathBuf {
    PathBuf::from("/data/topic-0")
}

pub fn sim_disk(seed: u64, alignment: usize) -> SimStorage {
    SimStorage::new(seed, SimFaults { segment_write_alignment: alignment, ..SimFaults::default() })
}

/// A batch whose single record's value names `tag`, timestamped `timestamp`.
pub fn batch(tag: u64, records: usize, timestamp: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..records).map(|i| format!("value-{tag}-{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    build_batch(timestamp, &refs)
}

/// Every readable batch, in order, as (header, bytes).
pub fn read_all<S: Storage>(log: &Log<S>) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while let Some(slice) = log.read(offset, 1 << 20, None).expect("read") {
        let bytes = log.read_bytes(&slice).expect("read bytes");
        let mut at = 0;
        while at < bytes.len() {
            let header = BatchHeader::parse(&bytes[at..]).expect("header");
            out.push((header, bytes[at..at + header.total_bytes()].to_vec()));
            at += header.total_bytes();
        }
        offset = slice.next_offset;
    }
    out
}

pub fn small_segments() -> LogConfig {
    LogConfig { segment_bytes: 4096, index_interval_bytes: 256, ..LogConfig::default() }
}

pub fn open<S: Storage>(storage: S, dir: &Path, config: LogConfig) -> Log<S> {
    Log::open(storage, dir, config).expect("open").0
}
