//! The log's transactions (open ones, aborted ones, markers' coordinator epochs), kept across
//! appends, rolls, truncations, compaction and reopens with a `.txnindex` per sealed segment,
//! always equal to what a scan of the whole log gives.

mod common;

use braid_engine::io::{SimFaults, SimStorage, Storage, StorageFile};
use braid_engine::log::batch::{
    build_control_batch_with_value, build_keyed_batch, set_producer, CONTROL_ATTRIBUTE, TRANSACTIONAL_ATTRIBUTE,
};
use braid_engine::log::txn::{Transactions, TXN_INDEX_SUFFIX};
use braid_engine::log::{CleanupPolicy, Log, LogConfig};
use std::path::Path;

const DIR: &str = "/data/txn";

fn config() -> LogConfig {
    LogConfig { segment_bytes: 1024, cleanup_policy: CleanupPolicy::Compact, ..LogConfig::default() }
}

/// What a scan of every batch of the log gives.
fn scanned<S: Storage>(log: &Log<S>) -> Transactions {
    let mut txns = Transactions::default();
    for (header, bytes) in common::read_all(log) {
        txns.take(&header, &bytes);
    }
    txns
}

fn data(producer: i64, key: u8) -> Vec<u8> {
    let mut b = build_keyed_batch(0, &[(Some(&[key][..]), Some(&b"value"[..]))]);
    if producer >= 0 {
        set_producer(&mut b, producer, 0, TRANSACTIONAL_ATTRIBUTE, 0);
    }
    b
}

fn marker(producer: i64, commit: bool, coordinator_epoch: i32) -> Vec<u8> {
    let value = [&[0u8, 0][..], &coordinator_epoch.to_be_bytes()].concat();
    let mut b = build_control_batch_with_value(&[0, 0, 0, u8::from(commit)], Some(&value));
    set_producer(&mut b, producer, 0, CONTROL_ATTRIBUTE | TRANSACTIONAL_ATTRIBUTE, 0);
    b
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn txn_files(disk: &SimStorage) -> usize {
    disk.list_dir(Path::new(DIR)).unwrap().iter().filter(|n| n.ends_with(TXN_INDEX_SUFFIX)).count()
}

/// Random transactional and plain appends, commits and aborts from several producers and
/// coordinator epochs, with truncations, compactions, reopens and damaged `.txnindex` files: the
/// transactions the log keeps are always those a scan of it gives.
#[test]
fn the_kept_transactions_always_equal_a_scan_of_the_log() {
    for seed in 1..=8u64 {
        let disk = SimStorage::new(seed, SimFaults::default());
        let (mut log, _) = Log::open(disk.clone(), Path::new(DIR), config()).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (mut built_from_files, mut most_segments) = (0, 0);
        for step in 0..600 {
            let producer = rng.below(4) as i64;
            match rng.below(100) {
                0..=44 => drop(log.append(&data(producer, rng.below(8) as u8), 1).unwrap()),
                45..=54 => drop(log.append(&data(-1, rng.below(8) as u8), 1).unwrap()),
                55..=74 => drop(log.append(&marker(producer, rng.below(2) == 0, rng.below(3) as i32), 1).unwrap()),
                75..=79 => {
                    // Mostly a short cut (an uncommitted suffix), sometimes a deep one.
                    let (start, end) = (log.log_start_offset(), log.log_end_offset());
                    let depth = if rng.below(10) == 0 { end - start + 1 } else { 30.min(end - start + 1) };
                    log.truncate_to(end - rng.below(depth as u64) as i64).unwrap();
                }
                80..=82 => {
                    log.flush().unwrap();
                    log.compact(0, log.log_end_offset()).unwrap();
                }
                83..=86 => {
                    log.flush().unwrap();
                    drop(log);
                    if rng.below(3) == 0 {
                        // A damaged file is not trusted: the build scans its segment again.
                        let names = disk.list_dir(Path::new(DIR)).unwrap();
                        if let Some(name) = names.iter().find(|n| n.ends_with(TXN_INDEX_SUFFIX)) {
                            let path = Path::new(DIR).join(name);
                            let mut file = disk.open(&path, braid_engine::io::FileKind::Index).unwrap();
                            file.write_at(7, &[0xff]).unwrap();
                        }
                    }
                    log = Log::open(disk.clone(), Path::new(DIR), config()).unwrap().0;
                    built_from_files += usize::from(txn_files(&disk) > 0);
                }
                _ => {}
            }
            most_segments = most_segments.max(log.segment_count());
            // Asked for at some steps only: appends while nothing is kept seal segments with no
            // file, which a later build scans and writes.
            if rng.below(3) == 0 || step == 599 {
                log.write().unwrap();
                let kept = log.transactions().unwrap().clone();
                assert_eq!(kept, scanned(&log), "seed {seed} step {step}");
            }
        }
        assert!(
            most_segments > 3 && built_from_files > 0,
            "seed {seed}: {most_segments} segments, {built_from_files} reopens with files"
        );
    }
}

/// Retention drops the aborted transactions of the deleted segments and their files.
#[test]
fn retention_forgets_the_aborted_transactions_it_deletes() {
    let disk = SimStorage::new(3, SimFaults::default());
    let config = LogConfig { segment_bytes: 1024, retention_bytes: 3000, ..LogConfig::default() };
    let (mut log, _) = Log::open(disk.clone(), Path::new(DIR), config).unwrap();
    assert!(log.transactions().unwrap().aborted_between(0, i64::MAX).is_empty());
    for _ in 0..5 {
        log.append(&data(1, 0), 1).unwrap();
        log.append(&marker(1, false, 0), 1).unwrap();
    }
    for _ in 0..60 {
        log.append(&data(-1, 0), 1).unwrap();
    }
    log.flush().unwrap();
    assert_eq!(log.transactions().unwrap().aborted_between(0, i64::MAX).len(), 5);
    let files = txn_files(&disk);
    assert!(files >= 3, "one file per sealed segment: {files}");
    let outcome = log.apply_retention(0).unwrap();
    assert!(outcome.deleted_segments > 0);
    assert!(log.log_start_offset() > 10, "the aborted transactions' segments went");
    assert!(log.transactions().unwrap().aborted_between(0, i64::MAX).is_empty());
    assert_eq!(txn_files(&disk), files - outcome.deleted_segments);
}
