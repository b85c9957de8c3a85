//! Fetch long polling and ListOffsets by timestamp, through the node's own client.

mod common;

use braid_node::client::Client;
use common::*;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn fetch_request(name: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let mut partition = FetchPartition::default();
    partition.fetch_offset = offset;
    partition.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = topic(name);
    t.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = 1;
    request.topics = vec![t];
    request
}

/// A fetch waiting at the log end is answered with the records produced while it waits (not
/// with an empty answer at the end of its 30 s wait).
#[test]
fn a_waiting_fetch_returns_records_produced_meanwhile() {
    let node = Node::start();
    assert!(node.cli(&["topic", "create", "poll"], None).status.success());
    let bootstrap = node.bootstrap();
    let waiter = std::thread::spawn(move || {
        let mut client = Client::connect(&bootstrap).unwrap();
        let version = client.version_for::<FetchRequest>().unwrap();
        let started = std::time::Instant::now();
        let response = client.call_version(fetch_request("poll", 0, 30_000), version).unwrap();
        (response, started.elapsed())
    });
    // Give the fetch time to reach the node and wait (if it has not, the test still holds, it
    // just does not exercise the wake-up), then produce until the waiting fetch has its answer.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut produced = 0;
    while !waiter.is_finished() && produced < 200 {
        let out = node.cli(&["produce", "poll", "--acks", "1"], Some(b"woken\n"));
        assert!(out.status.success());
        produced += 1;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (response, waited) = waiter.join().unwrap();
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let records = partition.records.clone().unwrap_or_default();
    assert!(!records.is_empty(), "fetch came back empty after {waited:?}");
    assert!(records.windows(5).any(|w| w == b"woken"));
    assert!(waited < std::time::Duration::from_secs(30), "the fetch was not woken by the append");
}

#[test]
fn list_offsets_finds_the_first_record_at_or_after_a_timestamp() {
    let node = Node::start();
    assert!(node.cli(&["topic", "create", "times"], None).status.success());
    let mut client = Client::connect(&node.bootstrap()).unwrap();
    // Three batches with known timestamps, through the produce CLI's encoder is not possible
    // (it stamps now), so build them here.
    for (i, ts) in [(0, 1_000i64), (1, 2_000), (2, 3_000)] {
        let batch =
            braid_engine::log::batch::build_batch(ts, &[format!("r{i}a").as_bytes(), format!("r{i}b").as_bytes()]);
        let mut data = kafka_protocol::messages::produce_request::PartitionProduceData::default();
        data.records = Some(bytes::Bytes::from(batch));
        let mut t = kafka_protocol::messages::produce_request::TopicProduceData::default();
        t.name = topic("times");
        t.partition_data = vec![data];
        let mut request = kafka_protocol::messages::ProduceRequest::default();
        request.acks = -1;
        request.timeout_ms = 10_000;
        request.topic_data = vec![t];
        let response = client.call(request).unwrap();
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
        assert_eq!(response.responses[0].partition_responses[0].base_offset, i * 2);
    }
    for (timestamp, expected) in
        [(-2i64, 0i64), (-1, 6), (0, 0), (1_500, 2), (2_000, 2), (2_001, 4), (3_000, 4), (3_001, -1)]
    {
        let mut p = ListOffsetsPartition::default();
        p.timestamp = timestamp;
        let mut t = ListOffsetsTopic::default();
        t.name = topic("times");
        t.partitions = vec![p];
        let mut request = ListOffsetsRequest::default();
        request.replica_id = BrokerId(-1);
        request.topics = vec![t];
        let response = client.call(request).unwrap();
        let answer = &response.topics[0].partitions[0];
        assert_eq!(answer.error_code, 0);
        assert_eq!(answer.offset, expected, "timestamp {timestamp}");
    }
}
