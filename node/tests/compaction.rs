//! Log compaction with real clients: a topic with cleanup.policy=compact keeps the newest value
//! of each key at its offset, and kcat (librdkafka) reads the compacted log through, past
//! batches left without records.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_compacted_topic_keeps_the_newest_value_of_each_key() {
    let node = Node::start_with(&["--retention-check-ms", "200"]);
    let out = node.cli(
        &[
            "topic",
            "create",
            "latest",
            "--partitions",
            "1",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "segment.bytes=2048",
        ],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // 20 keys, 50 values each, from 10 producer runs of 100: at least 10 batches, so at least
    // 10 segments of 2 KiB (one client run may put all its records in one batch, and the
    // segment being written is never compacted).
    let dir = tempfile::tempdir().unwrap();
    for run_index in 0..10 {
        let file = dir.path().join(format!("input-{run_index}.txt"));
        let input: String =
            (run_index * 100..(run_index + 1) * 100).map(|i| format!("key{}:value{i}\n", i % 20)).collect();
        std::fs::write(&file, &input).unwrap();
        run(Command::new("kcat")
            .args(["-b", &node.bootstrap(), "-P", "-t", "latest", "-K:", "-X", "acks=all", "-X", "linger.ms=0", "-l"])
            .arg(&file));
    }
    let newest: BTreeMap<String, (i64, String)> =
        (0..1000).map(|i| (format!("key{}", i % 20), (i64::from(i), format!("value{i}")))).collect();
    let consume = || -> Vec<(String, String, i64)> {
        let output = run(Command::new("kcat").args([
            "-b",
            &node.bootstrap(),
            "-C",
            "-t",
            "latest",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k %s %o\n",
        ]));
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[0].to_owned(), f[1].to_owned(), f[2].parse().unwrap())
            })
            .collect()
    };
    // Compaction runs in the background (every 200 ms here, once the log has doubled since its
    // last pass); how much is left depends on how the client batched (the segment being written
    // is never compacted).
    let started = Instant::now();
    let records = loop {
        let records = consume();
        if records.len() < 1000 && node.log().contains("compacted") {
            break records;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no compaction: {} records", records.len());
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("{} of 1000 records left after compaction", records.len());
    // Every key's newest value is there, at the offset it was produced at; what else is left
    // lies in the segment still being written, in offset order.
    for (key, (offset, value)) in &newest {
        assert!(records.contains(&(key.clone(), value.clone(), *offset)), "{key}: {value} at {offset}");
    }
    assert!(records.windows(2).all(|w| w[0].2 < w[1].2), "offsets ascend");
    for (key, value, offset) in &records {
        let i: i64 = value["value".len()..].parse().unwrap();
        assert_eq!(i, *offset, "{key}: each value stays at its offset");
    }
}

/// max.compaction.lag.ms: a topic whose min.cleanable.dirty.ratio is never reached after its
/// first compaction is compacted again once what was written since is older than the lag.
#[test]
fn max_compaction_lag_compacts_below_the_dirty_ratio() {
    let node = Node::start_with(&["--retention-check-ms", "200"]);
    let configs = [
        "cleanup.policy=compact",
        "segment.bytes=2048",
        "min.cleanable.dirty.ratio=0.99",
        "max.compaction.lag.ms=1000",
    ];
    let mut args = vec!["topic", "create", "lagged", "--partitions", "1"];
    for c in &configs {
        args.extend(["--config", c]);
    }
    let out = node.cli(&args, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let produce = |first: usize, count: usize| {
        for run_index in 0..count / 100 {
            let file = dir.path().join(format!("input-{first}-{run_index}.txt"));
            let from = first + run_index * 100;
            let input: String = (from..from + 100).map(|i| format!("key{}:value{i}\n", i % 20)).collect();
            std::fs::write(&file, &input).unwrap();
            run(Command::new("kcat")
                .args([
                    "-b",
                    &node.bootstrap(),
                    "-P",
                    "-t",
                    "lagged",
                    "-K:",
                    "-X",
                    "acks=all",
                    "-X",
                    "linger.ms=0",
                    "-l",
                ])
                .arg(&file));
        }
    };
    let compactions = || node.log().matches("compacted").count();
    // The first pass (everything is dirty) ...
    produce(0, 1000);
    wait_for("the first compaction", || (compactions() >= 1).then_some(()));
    // ... then a little more: far below the 0.99 ratio, so only the lag brings a second pass.
    let before = compactions();
    produce(1000, 300);
    wait_for("a compaction forced by max.compaction.lag.ms", || (compactions() > before).then_some(()));
}
