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
            log.write_ahead().unwrap();
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
