//! Real Kafka clients against a real braid process: kcat (librdkafka), confluent-kafka and
//! kafka-python.

mod common;

use common::*;
use std::process::Command;

const MESSAGES: usize = 100_000;

#[test]
fn kcat_round_trips_100k_messages_with_every_codec() {
    let node = Node::start();
    let input: String = (0..MESSAGES).map(|i| format!("message-{i}\n")).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.txt");
    std::fs::write(&file, &input).unwrap();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("kcat-{codec}");
        run(Command::new("kcat")
            .args(["-b", &node.bootstrap(), "-P", "-t", &topic, "-z", codec, "-X", "acks=all", "-l"])
            .arg(&file));
        let output = run(Command::new("kcat").args([
            "-b",
            &node.bootstrap(),
            "-C",
            "-t",
            &topic,
            "-o",
            "beginning",
            "-e",
            "-q",
        ]));
        let got = String::from_utf8(output.stdout).unwrap();
        assert_eq!(got.lines().count(), MESSAGES, "{codec}: message count");
        assert!(got == input, "{codec}: messages differ or are out of order");
    }
}

#[test]
fn confluent_kafka_acks_all_and_assign_round_trip_100k_keyed_messages() {
    let node = Node::start();
    let output = run(python("confluent_roundtrip.py").args([&node.bootstrap(), "keyed", &MESSAGES.to_string()]));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok:"));
}

#[test]
fn kafka_python_admin_creates_describes_alters_and_deletes_a_topic() {
    let node = Node::start();
    let output = run(python("kafka_python_admin.py").args([&node.bootstrap(), "managed"]));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok:"));
    // The change reached the log settings: the topic is gone from the data directory too.
    let kafka_dir = node.data_dir.join("kafka");
    let leftovers: Vec<_> = std::fs::read_dir(&kafka_dir)
        .map(|d| {
            d.flatten().map(|e| e.file_name().into_string().unwrap()).filter(|n| n.starts_with("managed-")).collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "partition directories left after delete: {leftovers:?}");
}

/// Every acknowledged message (acks=all and acks=1) is there after the process is killed with
/// SIGKILL and started again, and the topics are too.
#[test]
fn a_killed_and_restarted_node_loses_no_acknowledged_message() {
    let mut node = Node::start();
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for (topic, acks) in [("durable-all", "all"), ("durable-one", "1")] {
        run(Command::new(env!("CARGO_BIN_EXE_braid")).args([
            "topic",
            "create",
            topic,
            "--partitions",
            "4",
            "--bootstrap",
            &node.bootstrap(),
        ]));
        let out = dir.path().join(format!("{topic}.acked"));
        run(python("acked_producer.py").args([&node.bootstrap(), topic, "20000", acks]).arg(&out));
        let acked = std::fs::read_to_string(&out).unwrap();
        assert_eq!(acked.lines().count(), 20000, "{topic}: all messages acknowledged");
        expected.push((topic, acked));
    }
    node.kill();
    node.restart();
    for (topic, acked) in expected {
        for (partition, mut messages) in acked_by_partition(&acked) {
            messages.sort();
            let got = stored_records(&node.bootstrap(), topic, partition);
            assert_eq!(got, messages, "{topic}-{partition}: acknowledged messages after restart");
        }
    }
}
