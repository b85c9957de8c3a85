//! Group commit that does not block ([`Log::begin_flush`], [`Log::poll_flush`]): appends go on
//! while the device writes and syncs, and the durable offset moves only as far as the flush
//! covered.

mod common;

use braid_engine::io::UringStorage;
use braid_engine::log::batch::stamp;
use braid_engine::log::{FlushTicket, Log, LogConfig};
use common::*;
use std::time::{Duration, Instant};

fn real_log(dir: &std::path::Path, direct: bool, config: LogConfig) -> Log<UringStorage> {
    open(UringStorage::new(direct).unwrap(), dir, config)
}

/// Polls until the flush ends (bounded: the device answers within seconds or the test fails).
fn finish(log: &mut Log<UringStorage>, ticket: &mut FlushTicket) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.poll_flush(ticket).unwrap() {
        assert!(Instant::now() < deadline, "a flush did not end in 20 s");
        std::thread::sleep(Duration::from_micros(50));
    }
}

#[test]
fn appends_during_a_flush_are_durable_only_after_the_next() {
    for direct in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = real_log(dir.path(), direct, LogConfig::default());
        for tag in 0..5 {
            log.append(&batch(tag, 3, 1_000), 1).unwrap();
        }
        let mut ticket = log.begin_flush().unwrap().expect("appends to flush");
        assert_eq!(ticket.target(), 15);
        assert_eq!(log.durable_offset(), 0, "nothing is durable before the flush ends");
        // Appends go on meanwhile, enough of them to hand whole buffers to the device too (the
        // tail's partial block, in flight with the flush, is written again after it).
        let mut tag = 5;
        while log.log_end_offset() < 15 + 3 * 2_000 {
            log.append(&batch(tag, 3, 1_000), 1).unwrap();
            tag += 1;
        }
        finish(&mut log, &mut ticket);
        assert_eq!(log.durable_offset(), 15, "direct {direct}: only what the flush covered");
        let end = log.log_end_offset();
        let mut ticket = log.begin_flush().unwrap().expect("the later appends");
        finish(&mut log, &mut ticket);
        assert_eq!(log.durable_offset(), end);
        assert!(log.begin_flush().unwrap().is_none(), "all durable: nothing to flush");
        drop(log);
        let reopened = real_log(dir.path(), direct, LogConfig::default());
        assert_eq!(read_all(&reopened).len(), tag as usize, "direct {direct}");
        assert_eq!(reopened.log_end_offset(), end);
    }
}

#[test]
fn a_truncation_during_a_flush_voids_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = real_log(dir.path(), true, LogConfig::default());
    for tag in 0..4 {
        log.append(&batch(tag, 1, 1_000), 1).unwrap();
    }
    log.flush().unwrap();
    log.append(&batch(4, 1, 1_000), 1).unwrap();
    log.append(&batch(5, 1, 1_000), 1).unwrap();
    let mut ticket = log.begin_flush().unwrap().unwrap();
    let truncations = log.truncations();
    log.truncate_to(5).unwrap();
    assert_eq!(log.truncations(), truncations + 1);
    log.append(&batch(50, 1, 2_000), 2).unwrap();
    finish(&mut log, &mut ticket);
    assert_eq!(log.durable_offset(), 4, "the flush saw the old entries, not these");
    assert_eq!(log.flush().unwrap(), 6);
    drop(log);
    let reopened = real_log(dir.path(), true, LogConfig::default());
    let mut expected = batch(50, 1, 2_000);
    stamp(&mut expected, 5, 2);
    assert_eq!(read_all(&reopened).pop().unwrap().1, expected);
}

#[test]
fn a_roll_during_a_flush_leaves_everything_before_it_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = real_log(dir.path(), true, small_segments());
    log.append(&batch(0, 1, 1_000), 1).unwrap();
    let mut ticket = log.begin_flush().unwrap().unwrap();
    let segments = log.segment_count();
    let mut tag = 1;
    while log.segment_count() == segments {
        log.append(&batch(tag, 1, 1_000), 1).unwrap();
        tag += 1;
    }
    let durable = log.durable_offset();
    assert!(durable >= 1, "a roll syncs the segment it seals");
    finish(&mut log, &mut ticket);
    assert_eq!(log.durable_offset(), durable);
}

#[test]
fn the_simulator_flushes_at_once() {
    let mut log = open(sim_disk(3, 4096), &sim_dir(), LogConfig::default());
    log.append(&batch(0, 2, 1_000), 1).unwrap();
    let mut ticket = log.begin_flush().unwrap().unwrap();
    assert!(log.poll_flush(&mut ticket).unwrap());
    assert_eq!(log.durable_offset(), 2);
}

#[test]
fn batches_not_yet_written_are_known_by_their_terms() {
    // An O_DIRECT log leaves appends in its tail until a write or flush: raft still
    // looks up their terms and boundaries, for votes and for matching the leader's appends.
    let dir = tempfile::tempdir().unwrap();
    let mut log = real_log(dir.path(), true, LogConfig::default());
    log.keep_recent(1 << 20);
    let mut ends = Vec::new();
    for tag in 0..3000u64 {
        let info = log.append(&batch(tag, 1, 1_000), 1 + (tag / 1000) as i32).unwrap();
        ends.push((info.base_offset, info.last_offset + 1, 1 + (tag / 1000) as i32));
    }
    assert!(log.written_offset() < log.log_end_offset(), "the tail is not written yet");
    for &(base, end, epoch) in &ends {
        assert_eq!(log.epoch_of_batch_ending_at(end).unwrap(), Some(epoch), "end {end}");
        assert_eq!(log.base_of_batch_ending_at(end).unwrap(), Some(base), "end {end}");
    }
    assert_eq!(log.epoch_of_batch_ending_at(log.log_end_offset() + 1).unwrap(), None);
    let last = ends.last().unwrap();
    let recent = log.recent_from(last.0, 1).expect("the recent batches hold the last one");
    assert_eq!(recent.len(), 1);
}

/// A flush writes the tail's partial block padded; appends then complete that block while the
/// write is still in flight. The hand-offs that follow send the blocks after it at once (the
/// device's queue stays full) and hold the block back until its earlier write ended, never two
/// writes of one block in flight (the simulated disk asserts that). The next flush covers the
/// held block, and after a crash everything it made durable is there.
#[test]
fn hand_offs_during_a_flush_hold_back_the_block_it_is_writing_and_the_next_flush_covers_it() {
    let disk = sim_disk(11, 512);
    let config = LogConfig { write_buffer_bytes: 1100, ..LogConfig::default() };
    let mut log = open(disk.clone(), &sim_dir(), config.clone());
    let mut tag = 0u64;
    let mut append = |log: &mut Log<braid_engine::io::SimStorage>| {
        log.append(&batch(tag, 2, 1_000), 1).unwrap();
        tag += 1;
    };
    append(&mut log);
    disk.hold_write_behinds(true);
    let mut first = log.begin_flush().unwrap().expect("appends to flush");
    assert!(!log.poll_flush(&mut first).unwrap(), "its write is in flight");
    // Two hand-offs' worth of appends while the flush's write of the partial block is in flight.
    let before = log.log_end_offset();
    while log.log_end_offset() < before + 80 {
        append(&mut log);
    }
    disk.hold_write_behinds(false);
    while !log.poll_flush(&mut first).unwrap() {}
    assert_eq!(log.durable_offset(), first.target(), "the first flush covers what it began with");
    let mut second = log.begin_flush().unwrap().expect("the appends made meanwhile");
    while !log.poll_flush(&mut second).unwrap() {}
    let durable = log.durable_offset();
    assert_eq!(durable, log.log_end_offset(), "the second flush covers everything, the held block too");
    let expected = read_all(&log);
    drop(log);
    disk.crash();
    let reopened = open(disk, &sim_dir(), config);
    assert_eq!(reopened.log_end_offset(), durable, "nothing durable lost");
    assert_eq!(read_all(&reopened), expected);
}
