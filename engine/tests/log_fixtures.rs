//! On-disk format fixtures, kept forever: a log written by this version is committed under
//! `tests/fixtures/log-v1/` and must read back, and be written again, byte for byte.
//!
//! Regenerate (only for a deliberate format change, with a new directory name):
//! `BRAID_WRITE_FIXTURES=1 cargo test -p braid-engine --test log_fixtures`

mod common;

use braid_engine::io::UringStorage;
use braid_engine::log::{Log, LogConfig};
use common::*;
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/log-v1")
}

fn fixture_config() -> LogConfig {
    LogConfig { segment_bytes: 2048, index_interval_bytes: 300, ..LogConfig::default() }
}

/// 60 batches of 1..=3 records with timestamps 1_700_000_000_000 + 10 * n, leader epoch n / 20.
fn write_fixture(dir: &Path) {
    let storage = UringStorage::new(false).unwrap();
    let mut log = open(storage, dir, fixture_config());
    for n in 0..60u64 {
        log.append(&batch(n, 1 + (n as usize % 3), 1_700_000_000_000 + 10 * n as i64), (n / 20) as i32).unwrap();
    }
    log.flush().unwrap();
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names.into_iter().map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap())).collect()
}

#[test]
fn fixture_reads_back() {
    if std::env::var_os("BRAID_WRITE_FIXTURES").is_some() {
        let _ = std::fs::remove_dir_all(fixture_dir());
        write_fixture(&fixture_dir());
    }
    // Work on a copy: opening a log may write (recovery syncs, index rebuilds).
    let copy = tempfile::tempdir().unwrap();
    for (name, bytes) in files(&fixture_dir()) {
        std::fs::write(copy.path().join(name), bytes).unwrap();
    }
    let (log, report) = Log::open(UringStorage::new(false).unwrap(), copy.path(), fixture_config()).unwrap();
    assert_eq!(report, Default::default(), "a clean fixture needs no repair");
    assert!(log.segment_count() >= 3, "the fixture spans several segments");
    let batches = read_all(&log);
    assert_eq!(batches.len(), 60);
    let mut offset = 0;
    for (n, (header, bytes)) in batches.iter().enumerate() {
        assert_eq!(header.base_offset, offset);
        assert_eq!(header.record_count as usize, 1 + n % 3);
        assert_eq!(header.partition_leader_epoch, (n / 20) as i32);
        assert_eq!(header.max_timestamp, 1_700_000_000_000 + 10 * n as i64);
        let value = format!("value-{n}-0");
        assert!(bytes.windows(value.len()).any(|w| w == value.as_bytes()), "batch {n} holds {value}");
        offset = header.next_offset();
    }
    assert_eq!(log.offset_for_timestamp(1_700_000_000_305).unwrap().map(|(o, _)| o), Some(batches[31].0.base_offset));
    assert_eq!(files(copy.path()), files(&fixture_dir()), "opening a clean log changes no byte");
}

#[test]
fn this_version_writes_the_fixture_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    assert_eq!(files(dir.path()), files(&fixture_dir()));
}
