//! Fetch long polling, ListOffsets by timestamp, and leader epochs (KIP-320: fenced and unknown
//! epochs, OffsetForLeaderEpoch), through the node's own client.

mod common;

use braid_node::client::Client;
use common::*;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, OffsetForLeaderEpochRequest, TopicName,
};
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

const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// ListOffsets of one partition: (error, offset, leader epoch).
fn list_offset(client: &mut Client, name: &str, timestamp: i64, current_leader_epoch: i32) -> (i16, i64, i32) {
    let mut p = ListOffsetsPartition::default();
    p.timestamp = timestamp;
    p.current_leader_epoch = current_leader_epoch;
    let mut t = ListOffsetsTopic::default();
    t.name = topic(name);
    t.partitions = vec![p];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics = vec![t];
    let response = client.call(request).unwrap();
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.offset, answer.leader_epoch)
}

/// OffsetForLeaderEpoch of one partition: (error, epoch, end offset).
fn epoch_end(client: &mut Client, name: &str, current_leader_epoch: i32, leader_epoch: i32) -> (i16, i32, i64) {
    let mut p = OffsetForLeaderPartition::default();
    p.current_leader_epoch = current_leader_epoch;
    p.leader_epoch = leader_epoch;
    let mut t = OffsetForLeaderTopic::default();
    t.topic = topic(name);
    t.partitions = vec![p];
    let mut request = OffsetForLeaderEpochRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics = vec![t];
    let response = client.call(request).unwrap();
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.leader_epoch, answer.end_offset)
}

/// The leader epoch of every batch a fetch from `offset` returns, with its base offset.
fn batch_epochs(client: &mut Client, name: &str, offset: i64, current_leader_epoch: i32) -> (i16, Vec<(i64, i32)>) {
    let mut request = fetch_request(name, offset, 0);
    request.topics[0].partitions[0].current_leader_epoch = current_leader_epoch;
    let response = client.call(request).unwrap();
    let partition = &response.responses[0].partitions[0];
    let mut records = partition.records.clone().unwrap_or_default();
    let mut out = Vec::new();
    while records.len() >= braid_engine::log::batch::BATCH_HEADER_BYTES {
        let header = braid_engine::log::BatchHeader::parse(&records).unwrap();
        out.push((header.base_offset, header.partition_leader_epoch));
        let _ = records.split_to(header.total_bytes());
    }
    (partition.error_code, out)
}

/// A restart starts a new leader epoch (raft term): Metadata and ListOffsets report it, a
/// client holding the old one is fenced (and one ahead of the leader is told it is unknown),
/// and OffsetForLeaderEpoch says where each epoch ends, as Kafka's leader epoch cache does.
#[test]
fn leader_epochs_fence_stale_clients_and_say_where_each_epoch_ends() {
    let mut node = Node::start();
    assert!(node.cli(&["topic", "create", "epochs"], None).status.success());
    let produce = |node: &Node, lines: &[u8]| {
        let out = node.cli(&["produce", "epochs", "--acks=-1"], Some(lines));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    produce(&node, b"a\nb\nc\n");
    let mut client = Client::connect(&node.bootstrap()).unwrap();
    let (error, end_before, first_epoch) = list_offset(&mut client, "epochs", -1, -1);
    assert_eq!(error, 0);
    assert!(first_epoch >= 0 && end_before >= 3, "epoch {first_epoch}, end {end_before}");
    drop(client);

    node.restart();
    produce(&node, b"d\ne\n");
    let mut client = Client::connect(&node.bootstrap()).unwrap();
    let (error, end, epoch) = list_offset(&mut client, "epochs", -1, -1);
    assert_eq!(error, 0);
    assert!(epoch > first_epoch, "a restart starts a new epoch: {first_epoch} then {epoch}");
    let mut metadata = MetadataRequest::default();
    metadata.topics = None;
    let response = client.call(metadata).unwrap();
    let partition =
        &response.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "epochs")).unwrap().partitions
            [0];
    assert_eq!(partition.leader_epoch, epoch, "Metadata reports the leader's epoch");

    // Every batch before the restart has the first epoch, every one after it a later one; the
    // first epoch ends where the later batches begin.
    let (error, batches) = batch_epochs(&mut client, "epochs", 0, epoch);
    assert_eq!(error, 0);
    let first_end = batches.iter().find(|(_, e)| *e > first_epoch).expect("batches of the new epoch").0;
    assert!(batches.iter().all(|&(base, e)| (base < first_end) == (e == first_epoch)), "{batches:?}");
    eprintln!("epochs {first_epoch} then {epoch}; batches {batches:?}; end {end}");
    assert_eq!(epoch_end(&mut client, "epochs", epoch, first_epoch), (0, first_epoch, first_end));
    assert_eq!(epoch_end(&mut client, "epochs", -1, epoch), (0, epoch, end), "the latest epoch ends at the log end");
    assert_eq!(epoch_end(&mut client, "epochs", epoch, epoch + 1), (0, -1, -1), "no epoch past the leader's");
    if first_epoch > 0 {
        assert_eq!(epoch_end(&mut client, "epochs", epoch, first_epoch - 1), (0, first_epoch - 1, 0));
    }
    assert_eq!(list_offset(&mut client, "epochs", -2, epoch), (0, 0, first_epoch), "earliest, with its epoch");

    // A client with the old epoch is fenced; one ahead of the leader is told it is unknown.
    assert_eq!(batch_epochs(&mut client, "epochs", 0, first_epoch), (FENCED_LEADER_EPOCH, Vec::new()));
    assert_eq!(batch_epochs(&mut client, "epochs", 0, epoch + 1), (UNKNOWN_LEADER_EPOCH, Vec::new()));
    assert_eq!(list_offset(&mut client, "epochs", -1, first_epoch).0, FENCED_LEADER_EPOCH);
    assert_eq!(epoch_end(&mut client, "epochs", epoch + 1, first_epoch).0, UNKNOWN_LEADER_EPOCH);
}

/// A fetch's answer stays within the request's max_bytes even when a partition's own limit is
/// larger (fetch.max.bytes below max.partition.fetch.bytes): Kafka reads each partition to the
/// smaller of the two, and only a first batch larger than the limit may go past it (KIP-74).
#[test]
fn a_fetch_answer_stays_within_the_requests_max_bytes() {
    let node = Node::start();
    assert!(node.cli(&["topic", "create", "big"], None).status.success());
    let line = "x".repeat(200);
    let mut input = String::new();
    for _ in 0..15_000 {
        input.push_str(&line);
        input.push('\n');
    }
    let out = node.cli(&["produce", "big", "--acks", "1"], Some(input.as_bytes()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut client = Client::connect(&node.bootstrap()).unwrap();
    let version = client.version_for::<FetchRequest>().unwrap();
    let limit = 256 << 10;
    let mut request = fetch_request("big", 0, 1_000);
    request.max_bytes = limit;
    request.topics[0].partitions[0].partition_max_bytes = 64 << 20;
    let response = client.call_version(request, version).unwrap();
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert!(partition.high_watermark > 10_000, "{}", partition.high_watermark);
    let records = partition.records.as_ref().map_or(0, |r| r.len());
    assert!(records > 0 && records <= limit as usize, "{records} bytes answered to a {limit}-byte fetch");
}

/// compression.type (confluent-kafka produces; the stored batches are read raw here): a topic
/// with compression.type=zstd stores uncompressed producers' batches as zstd, one with
/// compression.type=uncompressed stores gzip producers' batches uncompressed, and clients read
/// every record back whole, duplicate header keys included.
#[test]
fn topics_store_batches_with_their_compression_type() {
    let node = Node::start();
    let output = run(python("recompress.py").arg(node.bootstrap()));
    assert!(String::from_utf8_lossy(&output.stdout).lines().any(|l| l == "ok"));
    let mut client = Client::connect(&node.bootstrap()).unwrap();
    let version = client.version_for::<FetchRequest>().unwrap();
    for (topic, codec) in [("zstd-stored", 4), ("plain-stored", 0)] {
        let response = client.call_version(fetch_request(topic, 0, 1_000), version).unwrap();
        let records = response.responses[0].partitions[0].records.clone().unwrap_or_default();
        let mut at = 0;
        let mut batches = 0;
        while at + 61 <= records.len() {
            let header = braid_engine::log::batch::BatchHeader::parse(&records[at..]).unwrap();
            assert_eq!(header.compression(), codec, "{topic}: batch at {at}");
            at += header.total_bytes();
            batches += 1;
        }
        assert!(batches > 0, "{topic}: no batch read");
    }
}
