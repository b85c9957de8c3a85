//! A buffered log writes zeros ahead of its data (`LogConfig::zero_ahead_bytes`), so the syncs
//! of later appends write data alone; the zeros must read as the end of the log, before and
//! after a reopen, and a sealed segment must hold its data only.

mod common;

use braid_engine::io::UringStorage;
use braid_engine::log::{Log, LogConfig};
use common::*;

const STEP: u64 = 64 << 10;

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig { segment_bytes, zero_ahead_bytes: STEP, ..LogConfig::default() }
}

fn real_log(dir: &std::path::Path, config: LogConfig) -> (Log<UringStorage>, braid_engine::log::RecoveryReport) {
    Log::open(UringStorage::new(false).unwrap(), dir, config).unwrap()
}

fn segment_len(dir: &std::path::Path, base: i64) -> u64 {
    std::fs::metadata(dir.join(format!("{base:020}.log"))).unwrap().len()
}

#[test]
fn zeros_past_the_data_are_the_end_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = real_log(dir.path(), config(16 << 20));
    let mut batches = 0;
    let mut data_end = 0u64;
    // Past two steps, one flush per few appends as the metadata log's rounds.
    while data_end < 2 * STEP + 1000 {
        for _ in 0..7 {
            let bytes = batch(batches, 3, 1_000);
            data_end += bytes.len() as u64;
            log.append(&bytes, 1).unwrap();
            batches += 1;
        }
        log.flush().unwrap();
        let len = segment_len(dir.path(), 0);
        assert_eq!(len, (data_end / STEP + 1) * STEP, "zeros to the step past the data at {data_end}");
        let file = std::fs::read(dir.path().join(format!("{:020}.log", 0))).unwrap();
        assert!(file[data_end as usize..].iter().all(|&b| b == 0));
    }
    let end = log.log_end_offset();
    drop(log);
    let (mut log, report) = real_log(dir.path(), config(16 << 20));
    assert_eq!(report.corruption, None, "zeros are the end, not damage");
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log).len(), batches as usize);
    // Appends after the reopen land where the data ended, over the zeros.
    log.append(&batch(batches, 3, 1_000), 1).unwrap();
    log.flush().unwrap();
    drop(log);
    let (log, report) = real_log(dir.path(), config(16 << 20));
    assert_eq!(report.corruption, None);
    assert_eq!(read_all(&log).len(), batches as usize + 1);
}

#[test]
fn a_sealed_segment_holds_its_data_only() {
    let dir = tempfile::tempdir().unwrap();
    let segment_bytes = 3 * STEP;
    let (mut log, _) = real_log(dir.path(), config(segment_bytes));
    let mut tag = 0;
    while log.segment_count() == 1 {
        log.append(&batch(tag, 3, 1_000), 1).unwrap();
        log.flush().unwrap();
        tag += 1;
    }
    let sealed_end = log.segment_base_offsets()[1];
    let sealed_bytes: u64 =
        read_all(&log).iter().filter(|(h, _)| h.next_offset() <= sealed_end).map(|(_, bytes)| bytes.len() as u64).sum();
    assert_eq!(segment_len(dir.path(), 0), sealed_bytes, "the roll cut the zeros");
    drop(log);
    let (log, report) = real_log(dir.path(), config(segment_bytes));
    assert_eq!(report.corruption, None);
    assert_eq!(read_all(&log).len(), tag as usize);
}

#[test]
fn a_truncation_cuts_the_zeros_and_later_appends_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = real_log(dir.path(), config(16 << 20));
    let mut ends = Vec::new();
    for tag in 0..600u64 {
        let info = log.append(&batch(tag, 3, 1_000), 1).unwrap();
        ends.push(info.last_offset + 1);
        if tag % 7 == 0 {
            log.flush().unwrap();
        }
    }
    log.flush().unwrap();
    assert!(segment_len(dir.path(), 0) > STEP, "zeros ahead of the data");
    // Back to the 200th batch: the file ends at its data, no zeros left past the cut.
    let cut = ends[199];
    assert_eq!(log.truncate_to(cut).unwrap(), cut);
    let data_len = segment_len(dir.path(), 0);
    assert!(data_len < STEP, "the cut took the zeros too ({data_len} bytes)");
    for tag in 1000..1100u64 {
        log.append(&batch(tag, 2, 2_000), 2).unwrap();
    }
    log.flush().unwrap();
    let expected: Vec<_> = read_all(&log).into_iter().map(|(_, bytes)| bytes).collect();
    assert_eq!(expected.len(), 300);
    drop(log);
    let (log, report) = real_log(dir.path(), config(16 << 20));
    assert_eq!(report.corruption, None);
    let found: Vec<_> = read_all(&log).into_iter().map(|(_, bytes)| bytes).collect();
    assert_eq!(found, expected, "the batches after the cut, over what were zeros");
}
