//! Group commit with the fdatasync on another thread ([`Log::begin_sync`], [`Log::end_sync`]):
//! the log takes appends while the sync runs, and the durable offset moves only as far as the
//! sync covered.

mod common;

use braid_engine::io::UringStorage;
use braid_engine::log::{Log, LogConfig};
use common::*;

fn real_log(dir: &std::path::Path, config: LogConfig) -> Log<UringStorage> {
    open(UringStorage::new(false).unwrap(), dir, config)
}

#[test]
fn appends_during_the_sync_wait_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = real_log(dir.path(), LogConfig::default());
    for tag in 0..3 {
        log.append(&batch(tag, 2, 1_000), 1).unwrap();
    }
    let ticket = log.begin_sync().unwrap().expect("appends to sync");
    assert_eq!(ticket.target(), 6);
    assert_eq!(log.durable_offset(), 0, "nothing is durable before the sync ends");
    let syncing = std::thread::spawn(move || {
        let result = ticket.sync();
        (ticket, result)
    });
    // The log takes appends meanwhile.
    log.append(&batch(3, 2, 1_000), 1).unwrap();
    let (ticket, result) = syncing.join().unwrap();
    assert_eq!(log.end_sync(ticket, result).unwrap(), 6, "only what was written before the sync");
    let ticket = log.begin_sync().unwrap().expect("the later append");
    let result = ticket.sync();
    assert_eq!(log.end_sync(ticket, result).unwrap(), 8);
    assert!(log.begin_sync().unwrap().is_none(), "all durable: nothing to sync");
    drop(log);
    assert_eq!(read_all(&real_log(dir.path(), LogConfig::default())).len(), 4);
}

#[test]
fn a_truncation_during_the_sync_keeps_the_durable_offset_below_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = real_log(dir.path(), LogConfig::default());
    for tag in 0..4 {
        log.append(&batch(tag, 1, 1_000), 1).unwrap();
    }
    log.flush().unwrap();
    log.append(&batch(4, 1, 1_000), 1).unwrap();
    log.append(&batch(5, 1, 1_000), 1).unwrap();
    let ticket = log.begin_sync().unwrap().unwrap();
    assert_eq!(ticket.target(), 6);
    // A follower told to drop its last entries, and given others in their place, while the
    // sync runs: the sync saw the old bytes, not these.
    log.truncate_to(5).unwrap();
    log.append(&batch(50, 1, 2_000), 2).unwrap();
    let result = ticket.sync();
    assert_eq!(log.end_sync(ticket, result).unwrap(), 4, "the cut's entries are not vouched for");
    assert_eq!(log.flush().unwrap(), 6);
}

#[test]
fn a_roll_during_the_sync_leaves_everything_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = real_log(dir.path(), small_segments());
    log.append(&batch(0, 1, 1_000), 1).unwrap();
    let ticket = log.begin_sync().unwrap().unwrap();
    let segments = log.segment_count();
    let mut tag = 1;
    while log.segment_count() == segments {
        log.append(&batch(tag, 1, 1_000), 1).unwrap();
        tag += 1;
    }
    let durable_after_roll = log.durable_offset();
    assert!(durable_after_roll >= 1, "a roll syncs the segment it seals");
    let result = ticket.sync();
    assert_eq!(log.end_sync(ticket, result).unwrap(), durable_after_roll);
}

#[test]
fn a_failed_sync_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = real_log(dir.path(), LogConfig::default());
    log.append(&batch(0, 1, 1_000), 1).unwrap();
    let ticket = log.begin_sync().unwrap().unwrap();
    let failed = std::io::Error::from_raw_os_error(libc::EIO);
    let error = log.end_sync(ticket, Err(failed)).unwrap_err().to_string();
    assert!(error.contains("syncing") && error.contains(".log"), "{error}");
    assert_eq!(log.durable_offset(), 0);
    assert!(log.is_poisoned());
    assert!(log.append(&batch(1, 1, 1_000), 1).is_err());
}

#[test]
fn the_simulator_syncs_in_place() {
    let disk = sim_disk(1, 1);
    let mut log = open(disk, &sim_dir(), LogConfig::default());
    log.append(&batch(0, 1, 1_000), 1).unwrap();
    assert!(log.begin_sync().unwrap().is_none(), "no descriptor: a whole flush");
    assert_eq!(log.durable_offset(), 1);
}
