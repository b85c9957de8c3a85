//! Reads of the batches appended last are answered from the log's memory of where they lie in
//! the active segment, with no header read from the file; they must say exactly what a read
//! from the file says (a reopened log knows nothing from memory).

mod common;

use braid_engine::io::UringStorage;
use braid_engine::log::{Log, LogConfig};
use common::*;

fn real_log(dir: &std::path::Path, direct: bool) -> Log<UringStorage> {
    let config = LogConfig { segment_bytes: 16 << 10, index_interval_bytes: 1 << 10, ..LogConfig::default() };
    open(UringStorage::new(direct).unwrap(), dir, config)
}

type Answer = Option<(i64, i64, i64, u64, Vec<u8>)>;

/// Every read of the log from each offset, with small and large byte budgets and an offset limit.
fn every_read(log: &Log<UringStorage>) -> Vec<(i64, u64, Option<i64>, Answer)> {
    let mut out = Vec::new();
    for offset in log.log_start_offset()..=log.log_end_offset() {
        for max_bytes in [1, 700, 5_000, 1 << 20] {
            for max_offset in [None, Some(offset + 3), Some(offset)] {
                let slice = log.read(offset, max_bytes, max_offset).unwrap();
                let answer = slice.map(|s| {
                    let bytes = log.read_bytes(&s).unwrap();
                    (s.first_offset, s.next_offset, s.records, s.len, bytes)
                });
                out.push((offset, max_bytes, max_offset, answer));
            }
        }
    }
    out
}

#[test]
fn reads_from_memory_match_reads_from_the_file() {
    for direct in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = real_log(dir.path(), direct);
        for tag in 0..300u64 {
            log.append(&batch(tag, 1 + (tag % 5) as usize, 1_000 + tag as i64), 1).unwrap();
        }
        // A cut in the active segment, and appends of a later term after it.
        let cut = log.log_end_offset() - 40;
        let cut = log.truncate_to(cut).unwrap();
        for tag in 300..420u64 {
            log.append(&batch(tag, 1 + (tag % 3) as usize, 2_000 + tag as i64), 2).unwrap();
        }
        // Not written yet: nothing past the written offset is read, from memory or not.
        let written = log.written_offset();
        assert!(written < log.log_end_offset(), "direct {direct}: the last appends wait in the tail");
        assert_eq!(log.read(written, 1 << 20, None).unwrap(), None, "direct {direct}");
        log.flush().unwrap();
        assert!(log.log_end_offset() > cut);
        let from_memory = every_read(&log);
        drop(log);
        let reopened = real_log(dir.path(), direct);
        let from_file = every_read(&reopened);
        assert_eq!(from_memory.len(), from_file.len());
        for (m, f) in from_memory.iter().zip(&from_file) {
            assert_eq!(m, f, "direct {direct}: read from {} ({} bytes, limit {:?})", m.0, m.1, m.2);
        }
    }
}

#[test]
fn a_truncation_into_a_compacted_segment_reads_its_new_layout() {
    use braid_engine::log::batch::build_keyed_batch;
    use braid_engine::log::CleanupPolicy;
    let config = || LogConfig { segment_bytes: 4096, cleanup_policy: CleanupPolicy::Compact, ..LogConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(UringStorage::new(false).unwrap(), dir.path(), config()).unwrap();
    for round in 0..10 {
        for key in 0..20 {
            let (k, v) = (format!("k{key}"), format!("v{round}-{key}"));
            log.append(&build_keyed_batch(10_000, &[(Some(k.as_bytes()), Some(v.as_bytes()))]), 1).unwrap();
        }
    }
    log.flush().unwrap();
    let outcome = log.compact(10_000, log.log_end_offset()).unwrap();
    assert!(outcome.records_removed > 0, "{outcome:?}");
    // Back into the newest compacted (sealed) segment: it becomes the active one, and what the
    // log remembered of its batches before compaction no longer says where they are.
    let bases = log.segment_base_offsets();
    let sealed = bases[bases.len() - 2];
    let cut = log.read(sealed, 1, None).unwrap().expect("a batch in the sealed segment").next_offset;
    assert_eq!(log.truncate_to(cut).unwrap(), cut);
    assert_eq!(*log.segment_base_offsets().last().unwrap(), sealed);
    let from_memory = every_read(&log);
    drop(log);
    let (reopened, _) = Log::open(UringStorage::new(false).unwrap(), dir.path(), config()).unwrap();
    assert_eq!(from_memory, every_read(&reopened));
}
