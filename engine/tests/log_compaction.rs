//! Compaction: the newest record of each key stays, offsets never move, tombstones go after
//! delete.retention.ms, and the compacted log reopens (indexes rebuilt) and reads the same.

use braid_engine::io::{SimFaults, SimStorage, Storage, UringStorage};
use braid_engine::log::batch::{build_keyed_batch, records, BatchHeader, KeyValue};
use braid_engine::log::{CleanupPolicy, Log, LogConfig};
use std::collections::BTreeMap;
use std::path::Path;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

/// Every record: offset -> (key, value).
fn read_all<S: Storage>(log: &Log<S>) -> BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)> {
    let mut out = BTreeMap::new();
    let mut offset = log.log_start_offset();
    while let Some(slice) = log.read(offset, 1 << 20, None).unwrap() {
        let bytes = log.read_bytes(&slice).unwrap();
        let mut at = 0;
        while at < bytes.len() {
            let h = BatchHeader::parse(&bytes[at..]).unwrap();
            for r in records(&bytes[at..at + h.total_bytes()]).unwrap() {
                out.insert(r.offset, (r.key.unwrap().to_vec(), r.value.map(<[u8]>::to_vec)));
            }
            at += h.total_bytes();
        }
        offset = slice.next_offset;
    }
    out
}

fn compacts<S: Storage + Clone>(storage: S, dir: &Path) {
    let (mut log, _) = Log::open(storage.clone(), dir, config()).unwrap();
    // 40 keys written 10 times each, two records per batch (time 10_000); key "gone" written
    // once, then deleted after the third round by a tombstone (time 0).
    let mut latest: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    let mut append = |log: &mut Log<S>, entries: &[KeyValue<'_>], time: i64| {
        let info = log.append(&build_keyed_batch(time, entries), 1).unwrap();
        for (i, (k, _)) in entries.iter().enumerate() {
            latest.insert(k.unwrap().to_vec(), info.base_offset + i as i64);
        }
    };
    append(&mut log, &[(Some(b"gone"), Some(b"x"))], 10_000);
    for round in 0..10 {
        for pair in 0..20 {
            let keys = [format!("k{}", pair * 2), format!("k{}", pair * 2 + 1)];
            let values = [format!("v{round}-{pair}a"), format!("v{round}-{pair}b")];
            let entries = [
                (Some(keys[0].as_bytes()), Some(values[0].as_bytes())),
                (Some(keys[1].as_bytes()), Some(values[1].as_bytes())),
            ];
            append(&mut log, &entries, 10_000);
        }
        if round == 2 {
            append(&mut log, &[(Some(b"gone"), None)], 0);
        }
    }
    log.flush().unwrap();
    let end = log.log_end_offset();
    let before = read_all(&log);
    assert_eq!(before.len(), 402);
    assert!(log.segment_count() > 3, "several segments to clean");

    // Before delete.retention.ms has passed, the tombstone stays.
    let outcome = log.compact(500, end).unwrap();
    assert!(outcome.segments > 0 && outcome.records_removed > 0, "{outcome:?}");
    assert!(outcome.bytes_after < outcome.bytes_before);
    let after = read_all(&log);
    assert_eq!(after.len() as u64, 402 - outcome.records_removed);
    for (offset, (key, value)) in &after {
        assert_eq!(before.get(offset), Some(&(key.clone(), value.clone())), "offsets never move");
    }
    for (key, offset) in &latest {
        assert_eq!(after.get(offset).map(|r| &r.0), Some(key), "{key:?}'s newest record stays");
    }
    // Below the first older record still kept (in the active segment), only newest ones.
    let stale: Vec<i64> = after.iter().filter(|(o, (k, _))| latest[k] != **o).map(|(o, _)| *o).collect();
    let cleaned_to = stale.first().copied().unwrap_or(end);
    assert!(cleaned_to > 200, "most of the log was cleaned (to {cleaned_to})");
    let tombstone = latest[&b"gone".to_vec()];
    assert!(tombstone < cleaned_to && after.contains_key(&tombstone), "the tombstone waits for delete.retention.ms");

    // Past delete.retention.ms, the tombstone goes too.
    log.compact(20_000, end).unwrap();
    assert!(!read_all(&log).contains_key(&tombstone));

    // The compacted log reopens and reads the same, and takes new appends.
    let now = read_all(&log);
    drop(log);
    let (mut log, report) = Log::open(storage, dir, config()).unwrap();
    assert!(report.corruption.is_none());
    assert_eq!(read_all(&log), now);
    assert_eq!(log.log_end_offset(), end);
    log.append(&build_keyed_batch(30_000, &[(Some(b"k1"), Some(b"new"))]), 2).unwrap();
    log.flush().unwrap();
    assert_eq!(log.log_end_offset(), end + 1);
}

#[test]
fn compaction_keeps_the_newest_record_of_each_key_at_its_offset() {
    compacts(SimStorage::new(7, SimFaults::default()), Path::new("/sim/compact"));
    let dir = tempfile::tempdir().unwrap();
    compacts(UringStorage::new(false).unwrap(), dir.path());
}

/// min.compaction.lag.ms: a segment holding a record younger than the lag is left as written;
/// older ones are compacted.
#[test]
fn compaction_leaves_segments_younger_than_the_lag() {
    let dir = Path::new("/data/lag-0");
    let disk = SimStorage::new(9, SimFaults::default());
    let config = LogConfig { min_compaction_lag_ms: 60_000, ..config() };
    let (mut log, _) = Log::open(disk, dir, config).unwrap();
    // The same key over and over: old records at time 1_000, recent ones at 100_000.
    for (time, rounds) in [(1_000, 150), (100_000, 150)] {
        for i in 0..rounds {
            let value = format!("value-{time}-{i:04}");
            log.append(&build_keyed_batch(time, &[(Some(b"k"), Some(value.as_bytes()))]), 1).unwrap();
        }
    }
    log.flush().unwrap();
    let end = log.log_end_offset();
    let before = read_all(&log).len();
    // At time 120_000 the recent records are 20 s old: younger than the lag.
    log.compact(120_000, end).unwrap();
    let after = read_all(&log);
    let recent = after.values().filter(|(_, v)| v.as_deref().is_some_and(|v| v.starts_with(b"value-100000"))).count();
    assert!(after.len() < before, "old segments compacted: {} of {before} left", after.len());
    assert!(recent >= 140, "records younger than the lag are kept: {recent} of 150");
}

/// Transactions through compaction, as Kafka's cleaner keeps them: an aborted transaction's
/// record is removed and never counts as its key's newest (the committed value stays), markers
/// stay, and nothing at or past a transaction still open is cleaned.
#[test]
fn compaction_removes_aborted_records_and_stops_at_an_open_transaction() {
    use braid_engine::log::batch::{
        build_control_batch_with_value, set_producer, CONTROL_ATTRIBUTE, TRANSACTIONAL_ATTRIBUTE,
    };
    let disk = SimStorage::new(11, SimFaults::default());
    let (mut log, _) = Log::open(disk, Path::new("/data/txn-compact"), config()).unwrap();
    let txn = |log: &mut Log<SimStorage>, producer: i64, key: &[u8], value: &[u8]| {
        let mut b = build_keyed_batch(0, &[(Some(key), Some(value))]);
        set_producer(&mut b, producer, 0, TRANSACTIONAL_ATTRIBUTE, 0);
        log.append(&b, 1).unwrap().base_offset
    };
    let marker = |log: &mut Log<SimStorage>, producer: i64, commit: bool| {
        let mut b = build_control_batch_with_value(&[0, 0, 0, u8::from(commit)], Some(&[0, 0, 0, 0, 0, 0]));
        set_producer(&mut b, producer, 0, CONTROL_ATTRIBUTE | TRANSACTIONAL_ATTRIBUTE, 0);
        log.append(&b, 1).unwrap();
    };
    let filler = |log: &mut Log<SimStorage>, n: usize| {
        for i in 0..n {
            let key = format!("f{}", i % 10);
            log.append(&build_keyed_batch(0, &[(Some(key.as_bytes()), Some(b"filler"))]), 1).unwrap();
        }
    };
    txn(&mut log, 5, b"a", b"committed");
    marker(&mut log, 5, true);
    let aborted_at = txn(&mut log, 6, b"a", b"aborted");
    marker(&mut log, 6, false);
    filler(&mut log, 200);
    let open_at = txn(&mut log, 7, b"b", b"open");
    filler(&mut log, 200);
    log.flush().unwrap();
    let end = log.log_end_offset();
    log.compact(10_000, end).unwrap();
    let after = read_all(&log);
    let value_of = |key: &[u8]| after.values().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    assert_eq!(value_of(b"a"), vec![Some(b"committed".to_vec())], "the aborted record is gone, the committed stays");
    assert!(!after.contains_key(&aborted_at));
    assert_eq!(value_of(&[0, 0, 0, 1]).len(), 1, "the commit marker stays");
    assert_eq!(value_of(&[0, 0, 0, 0]).len(), 1, "the abort marker stays");
    assert_eq!(value_of(b"b"), vec![Some(b"open".to_vec())]);
    let before_open = after.range(..open_at).filter(|(_, (k, _))| k.starts_with(b"f")).count();
    let past_open = after.range(open_at..).filter(|(_, (k, _))| k.starts_with(b"f")).count();
    assert!(before_open < 200, "below the open transaction, compacted: {before_open} left");
    assert_eq!(past_open, 200, "at and past the open transaction, nothing cleaned");
}
