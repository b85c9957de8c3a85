//! Bad input on the Kafka port: the offending connection gets an answer or is closed, the node
//! keeps serving everyone else.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

fn connect(node: &Node) -> TcpStream {
    let stream = TcpStream::connect(node.kafka).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Reads one size-prefixed response; None if the node closed the connection.
fn read_response(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

fn request(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    frame.extend_from_slice(body);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    out
}

fn still_serves(node: &Node) {
    let output = Command::new("kcat").args(["-b", &node.bootstrap(), "-L", "-m", "5"]).output().unwrap();
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("1 brokers"),
        "node stopped serving"
    );
}

#[test]
fn unknown_api_keys_and_versions_get_unsupported_version() {
    let node = Node::start();
    for (key, version) in [(0i16, 99i16), (1, 0), (18, 77), (250, 0), (-5, 1)] {
        let mut stream = connect(&node);
        stream.write_all(&request(key, version, 4242, &[])).unwrap();
        let body = read_response(&mut stream).unwrap_or_else(|| panic!("no answer to api {key} v{version}"));
        assert_eq!(i32::from_be_bytes(body[0..4].try_into().unwrap()), 4242, "correlation id");
        assert_eq!(
            i16::from_be_bytes(body[4..6].try_into().unwrap()),
            35,
            "UNSUPPORTED_VERSION for api {key} v{version}"
        );
    }
    still_serves(&node);
}

#[test]
fn oversized_truncated_and_garbage_frames_close_only_their_connection() {
    let node = Node::start_with(&["--max-request-bytes", "65536"]);
    // A length prefix far past the limit.
    let mut huge = connect(&node);
    huge.write_all(&i32::MAX.to_be_bytes()).unwrap();
    assert!(closed(&mut huge), "oversized frame must close the connection");
    // A negative length.
    let mut negative = connect(&node);
    negative.write_all(&(-7i32).to_be_bytes()).unwrap();
    assert!(closed(&mut negative));
    // A frame whose body does not decode (Metadata v1 with a topic count of 1000 and nothing after).
    let mut garbage = connect(&node);
    garbage.write_all(&request(3, 1, 1, &1000i32.to_be_bytes())).unwrap();
    assert!(closed(&mut garbage), "an undecodable body must close the connection");
    // An array length of 2^31-1 in a tiny frame: the decoder must not try to reserve for it.
    let mut lying = connect(&node);
    lying.write_all(&request(3, 1, 2, &i32::MAX.to_be_bytes())).unwrap();
    assert!(closed(&mut lying), "a lying array length must close the connection");
    // Random bytes.
    let mut noise = connect(&node);
    let junk: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let _ = noise.write_all(&junk);
    // A truncated frame: the client goes away mid-frame.
    let mut truncated = connect(&node);
    truncated.write_all(&1000i32.to_be_bytes()).unwrap();
    truncated.write_all(&[0u8; 10]).unwrap();
    drop(truncated);
    // A valid request on a fresh connection still works, and the process is alive.
    let mut ok = connect(&node);
    ok.write_all(&request(18, 0, 7, &[])).unwrap();
    let body = read_response(&mut ok).expect("ApiVersions answered");
    assert_eq!(i16::from_be_bytes(body[4..6].try_into().unwrap()), 0);
    still_serves(&node);
    let mut node = node;
    assert!(node.alive());
    let metrics = node.http_get("/metrics");
    let bad_frames: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("braid_kafka_bad_frames_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("bad frame counter");
    assert!(bad_frames >= 3, "bad frames counted: {bad_frames}");
}

/// Produce v3 of one batch to partition 0 of topic "crc" (acks 1); returns the error code.
fn produce_one(node: &Node, batch: &[u8]) -> i16 {
    let body = produce_v3_body("crc", 5000, batch);
    let mut stream = connect(node);
    stream.write_all(&request(0, 3, 9, &body)).unwrap();
    let response = read_response(&mut stream).expect("produce answered");
    // correlation(4) topics(4) name(2+3) partitions(4) index(4) error_code(2)
    i16::from_be_bytes(response[21..23].try_into().unwrap())
}

#[test]
fn a_corrupt_batch_is_refused_with_corrupt_message() {
    let node = Node::start();
    run(Command::new(env!("CARGO_BIN_EXE_braid")).args(["topic", "create", "crc", "--bootstrap", &node.bootstrap()]));
    let mut batch = braid_engine::log::batch::build_batch(0, &[b"payload"]);
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    assert_eq!(produce_one(&node, &batch), 2, "CORRUPT_MESSAGE");
    // A control batch is the node's own kind (leader markers, voter changes): never a client's.
    let voters: Vec<u8> = [1u64, 2].iter().flat_map(|v| v.to_be_bytes()).collect();
    let control = braid_engine::log::batch::build_control_batch_with_value(&[0, 0, 0, 6], Some(&voters));
    assert_eq!(produce_one(&node, &control), 87, "INVALID_RECORD");
    let output =
        run(Command::new("kcat").args(["-b", &node.bootstrap(), "-C", "-t", "crc", "-o", "beginning", "-e", "-q"]));
    assert!(output.stdout.is_empty(), "nothing of either batch was stored");
}

#[test]
fn connections_past_the_limit_are_closed_and_the_rest_keep_working() {
    // Two shards, one connection each at most.
    let node = Node::start_with(&["--max-connections-per-shard", "1"]);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let mut stream = connect(&node);
        stream.write_all(&request(18, 0, 1, &[])).unwrap();
        match read_response(&mut stream) {
            Some(_) => held.push(stream),
            None => refused += 1,
        }
    }
    assert!(held.len() <= 2, "{} connections served past a limit of 1 per shard", held.len());
    assert!(refused >= 6, "only {refused} of 8 refused");
    // The connections already held are still served.
    for stream in &mut held {
        stream.write_all(&request(18, 0, 2, &[])).unwrap();
        assert!(read_response(stream).is_some());
    }
    drop(held);
    let metrics = node.http_get("/metrics");
    assert!(metrics.contains("braid_kafka_connections_refused_total"), "{metrics}");
}
