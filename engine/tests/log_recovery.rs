//! Crash recovery: torn tails, flipped bits, damaged indexes, full disks.

mod common;

use braid_engine::io::{FileKind, SimStorage, Storage, StorageFile, UringStorage};
use braid_engine::log::batch::stamp;
use braid_engine::log::{Log, LogConfig};
use common::*;

/// Writes `count` batches and flushes; returns the bytes of each as stored.
fn fill<S: Storage>(log: &mut Log<S>, count: u64) -> Vec<Vec<u8>> {
    let mut stored = Vec::new();
    for tag in 0..count {
        let mut bytes = batch(tag, 1 + (tag as usize % 4), 1_000 + tag as i64);
        let info = log.append(&bytes, 3).unwrap();
        stamp(&mut bytes, info.base_offset, 3);
        stored.push(bytes);
    }
    log.flush().unwrap();
    stored
}

#[test]
fn a_cut_at_every_byte_of_the_last_batch_keeps_exactly_the_batches_before_it() {
    for alignment in [1, 4096] {
        let probe_disk = sim_disk(7, alignment);
        let mut probe = open(probe_disk.clone(), &sim_dir(), LogConfig::default());
        let stored = fill(&mut probe, 12);
        let segment = sim_dir().join(format!("{:020}.log", 0));
        let full = probe_disk.contents(&segment).unwrap();
        let last_len = stored.last().unwrap().len();
        let logical: usize = stored.iter().map(Vec::len).sum();
        let last_start = logical - last_len;
        drop(probe);
        for cut in 0..=last_len {
            let disk = sim_disk(cut as u64, alignment);
            disk.create_dir_all(&sim_dir()).unwrap();
            disk.put_file(&segment, &full);
            disk.cut_file(&segment, (last_start + cut) as u64);
            let (log, report) = Log::open(disk.clone(), &sim_dir(), LogConfig::default()).unwrap();
            let expect = if cut == last_len { &stored[..] } else { &stored[..stored.len() - 1] };
            let got: Vec<Vec<u8>> = read_all(&log).into_iter().map(|(_, b)| b).collect();
            assert_eq!(got, expect, "alignment {alignment}, cut {cut}");
            // A torn tail is reported unless all it left is zero bytes (indistinguishable from
            // O_DIRECT padding, and dropped just the same).
            let torn_nonzero = cut != last_len && full[last_start..last_start + cut].iter().any(|&b| b != 0);
            assert_eq!(report.corruption.is_some(), torn_nonzero, "cut {cut}: {report:?}");
            if let Some(c) = &report.corruption {
                assert_eq!(c.position, last_start as u64);
                assert_eq!(c.segment, segment);
            }
            // The log takes appends again right where the good prefix ends.
            let mut log = log;
            let next = log.log_end_offset();
            assert_eq!(log.append(&batch(99, 1, 5), 4).unwrap().base_offset, next);
            log.flush().unwrap();
            drop(log);
            let reopened = open(disk, &sim_dir(), LogConfig::default());
            assert_eq!(read_all(&reopened).len(), expect.len() + 1);
        }
    }
}

#[test]
fn a_cut_on_a_real_disk_with_direct_io_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let storage = UringStorage::new(true).unwrap();
    let mut log = open(storage, dir.path(), LogConfig::default());
    let stored = fill(&mut log, 20);
    drop(log);
    let path = dir.path().join(format!("{:020}.log", 0));
    let logical: u64 = stored.iter().map(|b| b.len() as u64).sum();
    // A torn write leaves part of the last batch followed by O_DIRECT zero padding.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(logical - 7).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(logical + 4096).unwrap();
    let (log, report) = Log::open(UringStorage::new(true).unwrap(), dir.path(), LogConfig::default()).unwrap();
    let got: Vec<Vec<u8>> = read_all(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, stored[..19]);
    assert!(report.corruption.is_some());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), logical - stored[19].len() as u64);
}

#[test]
fn a_flipped_bit_is_reported_with_segment_and_position() {
    let disk = sim_disk(1, 1);
    let mut log = open(disk.clone(), &sim_dir(), small_segments());
    let stored = fill(&mut log, 120);
    assert!(log.segment_count() > 2, "the test needs sealed segments");
    assert!(log.verify().unwrap().is_empty());
    // Flip one bit inside the third batch of the first (sealed) segment.
    let segment = sim_dir().join(format!("{:020}.log", 0));
    let position = (stored[0].len() + stored[1].len()) as u64;
    disk.flip_bit(&segment, position + 40, 3);
    let found = log.verify().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].segment, segment);
    assert_eq!(found[0].position, position);
    assert!(found[0].reason.contains("CRC"), "{}", found[0].reason);

    // In the active segment, recovery finds it and cuts the log there.
    let active_base = *log.segment_base_offsets().last().unwrap();
    let active = sim_dir().join(format!("{active_base:020}.log"));
    drop(log);
    disk.flip_bit(&active, 70, 0);
    let (_, report) = Log::open(disk, &sim_dir(), small_segments()).unwrap();
    let corruption = report.corruption.expect("flip detected");
    assert_eq!(corruption.segment, active);
    assert_eq!(corruption.position, 0);
    assert!(corruption.to_string().contains(&active.display().to_string()));
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt() {
    let disk = sim_disk(2, 1);
    let mut log = open(disk.clone(), &sim_dir(), small_segments());
    let stored = fill(&mut log, 120);
    let bases = log.segment_base_offsets();
    drop(log);
    disk.remove(&sim_dir().join(format!("{:020}.index", bases[0]))).unwrap();
    disk.put_file(&sim_dir().join(format!("{:020}.index", bases[1])), &[0xff; 13]);
    let (log, report) = Log::open(disk.clone(), &sim_dir(), small_segments()).unwrap();
    assert_eq!(report.rebuilt_indexes, vec![bases[0], bases[1]]);
    assert!(report.corruption.is_none());
    let got: Vec<Vec<u8>> = read_all(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, stored);
    // Lookups through the rebuilt index land on the right batch.
    for target in [0, 5, 17, 33, log.log_end_offset() - 1] {
        let slice = log.read(target, 1, None).unwrap().unwrap();
        assert!(slice.first_offset <= target && target < slice.next_offset, "{target}: {slice:?}");
    }
    drop(log);
    let (_, report) = Log::open(disk, &sim_dir(), small_segments()).unwrap();
    assert!(report.rebuilt_indexes.is_empty(), "rebuilt indexes are persisted");
}

/// After a crash, with space again, the log opens holding exactly `stored`.
fn reopens_with_after_a_crash(disk: SimStorage, stored: &[Vec<u8>]) {
    disk.crash();
    disk.set_capacity(None);
    let log = open(disk, &sim_dir(), LogConfig::default());
    let got: Vec<Vec<u8>> = read_all(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, stored);
}

#[test]
fn a_full_disk_fails_the_flush_and_loses_nothing_acknowledged() {
    let disk = sim_disk(3, 1);
    let mut log = open(disk.clone(), &sim_dir(), LogConfig::default());
    let stored = fill(&mut log, 10);
    let used: u64 = stored.iter().map(|b| b.len() as u64).sum();
    disk.set_capacity(Some(used + 100));
    log.append(&batch(50, 20, 0), 3).unwrap();
    let err = log.flush().unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert!(log.is_poisoned());
    assert!(log.append(&batch(51, 1, 0), 3).is_err());
    drop(log);
    reopens_with_after_a_crash(disk, &stored);
}

#[test]
fn a_disk_too_full_for_a_reservation_step_still_takes_writes_that_fit() {
    let disk = sim_disk(5, 1);
    // Room for the batches below, far less than a reservation step (1 MiB).
    disk.set_capacity(Some(64 << 10));
    let mut log = open(disk.clone(), &sim_dir(), LogConfig::default());
    let mut stored = fill(&mut log, 3);
    for tag in 0..20 {
        let mut bytes = batch(100 + tag, 10, 0);
        let info = log.append(&bytes, 3).unwrap();
        log.flush().unwrap();
        stamp(&mut bytes, info.base_offset, 3);
        stored.push(bytes);
    }
    assert!(!log.is_poisoned());
    // A batch past what is left fails as a full disk.
    log.append(&batch(200, 10_000, 0), 3).unwrap();
    assert!(log.flush().unwrap_err().is_disk_full());
    drop(log);
    reopens_with_after_a_crash(disk, &stored);
}

#[test]
fn a_failed_fdatasync_poisons_the_log() {
    let disk = sim_disk(4, 1);
    let mut log = open(disk.clone(), &sim_dir(), LogConfig::default());
    let stored = fill(&mut log, 3);
    log.append(&batch(9, 1, 0), 3).unwrap();
    disk.fail_next_syncs(1);
    assert!(log.flush().is_err());
    assert!(matches!(log.flush(), Err(braid_engine::log::LogError::Poisoned(_))));
    drop(log);
    disk.crash();
    let log = open(disk, &sim_dir(), LogConfig::default());
    let got = read_all(&log);
    assert!(got.len() >= stored.len(), "acknowledged batches kept");
    assert_eq!(got[..3].iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(), stored);
}

#[test]
fn garbage_segment_files_do_not_crash_the_open() {
    for garbage in [vec![], vec![0u8; 10], vec![0xffu8; 100], (0..=255u8).cycle().take(5000).collect()] {
        let disk = sim_disk(5, 1);
        disk.create_dir_all(&sim_dir()).unwrap();
        disk.put_file(&sim_dir().join(format!("{:020}.log", 0)), &garbage);
        let (mut log, _) = Log::open(disk.clone(), &sim_dir(), LogConfig::default()).unwrap();
        assert_eq!(log.log_end_offset(), 0);
        log.append(&batch(1, 1, 0), 0).unwrap();
        log.flush().unwrap();
        let mut f = disk.open(&sim_dir().join(format!("{:020}.log", 0)), FileKind::SegmentData).unwrap();
        assert!(f.len().unwrap() > 0);
        f.sync_data().unwrap();
    }
}

#[test]
fn write_behind_on_a_real_disk_reads_back_after_reopen() {
    for direct in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { write_buffer_bytes: 64 << 10, segment_bytes: 64 << 10, ..LogConfig::default() };
        let mut log = open(UringStorage::new(direct).unwrap(), dir.path(), config.clone());
        let mut stored = Vec::new();
        for tag in 0..400u64 {
            let mut bytes = batch(tag, 1 + (tag as usize % 50), tag as i64);
            let info = log.append(&bytes, 2).unwrap();
            stamp(&mut bytes, info.base_offset, 2);
            stored.push(bytes);
            if tag % 97 == 0 {
                log.flush().unwrap();
            }
        }
        log.flush().unwrap();
        assert!(log.segment_count() > 1);
        let before: Vec<Vec<u8>> = read_all(&log).into_iter().map(|(_, b)| b).collect();
        assert_eq!(before, stored, "direct {direct}");
        drop(log);
        let log = open(UringStorage::new(direct).unwrap(), dir.path(), config);
        let after: Vec<Vec<u8>> = read_all(&log).into_iter().map(|(_, b)| b).collect();
        assert_eq!(after, stored, "direct {direct}");
        assert!(log.verify().unwrap().is_empty());
    }
}

proptest::proptest! {
    /// Any bytes at all as a segment file: opening never panics, what it keeps is whole valid
    /// batches, and the log takes appends after it.
    #[test]
    fn arbitrary_segment_bytes_open_cleanly(prefix_batches in 0usize..4, garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..600), flip in 0usize..10_000) {
        let disk = sim_disk(9, 1);
        disk.create_dir_all(&sim_dir()).unwrap();
        let mut bytes = Vec::new();
        let mut next = 0i64;
        for tag in 0..prefix_batches {
            let mut b = batch(tag as u64, 2, 0);
            stamp(&mut b, next, 0);
            next += 2;
            bytes.extend_from_slice(&b);
        }
        bytes.extend_from_slice(&garbage);
        if !bytes.is_empty() && flip % 3 == 0 {
            let at = flip % bytes.len();
            bytes[at] ^= 0x40;
        }
        let path = sim_dir().join(format!("{:020}.log", 0));
        disk.put_file(&path, &bytes);
        let (mut log, _) = Log::open(disk.clone(), &sim_dir(), LogConfig::default()).unwrap();
        let kept = read_all(&log);
        for (header, b) in &kept {
            braid_engine::log::batch::validate(b, 1 << 20).unwrap();
            proptest::prop_assert!(header.base_offset >= 0);
        }
        let end = log.log_end_offset();
        proptest::prop_assert_eq!(log.append(&batch(7, 1, 0), 0).unwrap().base_offset, end);
        log.flush().unwrap();
    }
}

#[test]
fn retention_below_a_limit_keeps_what_is_past_it() {
    let disk = sim_disk(11, 1);
    let config = LogConfig { segment_bytes: 1024, retention_bytes: 2048, retention_ms: -1, ..LogConfig::default() };
    let mut log = open(disk, &sim_dir(), config);
    fill(&mut log, 200);
    let segments = log.segment_count();
    assert!(segments > 4, "{segments} segments");
    assert_eq!(log.apply_retention_below(0, 0).unwrap().deleted_segments, 0, "nothing below offset 0");
    let limit = 150;
    let outcome = log.apply_retention_below(0, limit).unwrap();
    assert!(outcome.deleted_segments > 0, "{outcome:?}");
    assert!(log.log_start_offset() <= limit, "kept every segment holding an offset >= {limit}");
    let outcome = log.apply_retention(0).unwrap();
    assert!(outcome.deleted_segments > 0);
    assert!(log.size_bytes() < 2048 + 1024, "{} bytes kept", log.size_bytes());
}

#[test]
fn append_all_takes_every_batch_or_none() {
    let mut log = open(sim_disk(12, 1), &sim_dir(), LogConfig::default());
    let good = batch(1, 2, 0);
    let mut bad = batch(2, 1, 0);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(log.append_all(&[&good, &bad], 0), Err(braid_engine::log::LogError::InvalidBatch(_))));
    assert_eq!(log.log_end_offset(), 0, "nothing of a request with a bad batch is appended");
    let infos = log.append_all(&[&good, &good], 0).unwrap();
    assert_eq!((infos[0].base_offset, infos[1].base_offset), (0, 2));
    log.flush().unwrap();
    assert_eq!(read_all(&log).len(), 2);
}

/// segment.ms: a batch whose timestamp is more than segment.ms past the active segment's first
/// batch's starts a new segment (by record time, as Kafka rolls), also after a reopen.
#[test]
fn a_segment_rolls_by_record_time_past_segment_ms() {
    let disk = sim_disk(8, 1);
    let config = LogConfig { segment_ms: 1_000, ..LogConfig::default() };
    let mut log = open(disk.clone(), &sim_dir(), config.clone());
    for (tag, ts) in [(0, 10_000), (1, 10_500), (2, 11_000)] {
        log.append(&batch(tag, 1, ts), 1).unwrap();
    }
    assert_eq!(log.segment_count(), 1, "within segment.ms of the first batch");
    log.append(&batch(3, 1, 11_001), 1).unwrap();
    assert_eq!(log.segment_count(), 2, "past segment.ms: a new segment");
    log.flush().unwrap();
    drop(log);
    // Reopened, the active segment's first timestamp is read from its first batch.
    let mut log = open(disk, &sim_dir(), config);
    log.append(&batch(4, 1, 11_900), 1).unwrap();
    assert_eq!(log.segment_count(), 2);
    log.append(&batch(5, 1, 12_002), 1).unwrap();
    assert_eq!(log.segment_count(), 3);
}

/// segment.jitter.ms: a segment rolls up to the jitter before segment.ms (never after it).
#[test]
fn segment_jitter_rolls_no_later_than_segment_ms() {
    let config = LogConfig { segment_ms: 1_000, segment_jitter_ms: 900, ..LogConfig::default() };
    let mut rolled_early = false;
    for seed in 0..20 {
        let disk = sim_disk(100 + seed, 1);
        let mut log = open(disk, &sim_dir(), config.clone());
        // Start the segment at a base offset of its own, then step its records 50 ms apart.
        for tag in 0..seed {
            log.append(&batch(tag, 1, 0), 1).unwrap();
        }
        // The first stepped record starts a segment (it is far past the records at time 0).
        log.append(&batch(1_000, 1, 100_000), 1).unwrap();
        let first = log.segment_count();
        let mut rolled_at = None;
        for step in 1..=21 {
            log.append(&batch(1_000 + step, 1, 100_000 + 50 * step as i64), 1).unwrap();
            if rolled_at.is_none() && log.segment_count() > first {
                rolled_at = Some(50 * step as i64);
            }
        }
        let waited = rolled_at.expect("rolled");
        assert!(waited <= 1_050, "seed {seed}: rolled {waited} ms after the segment's first record");
        rolled_early |= waited < 1_000;
    }
    assert!(rolled_early, "the jitter rolls some segments before segment.ms");
}
