//! The braid CLI and the admin HTTP endpoint against a running node.

mod common;

use common::*;

#[test]
fn cli_manages_topics_and_moves_records() {
    let node = Node::start();
    let out = node.cli(&["topic", "create", "cli-topic", "--partitions", "3", "--config", "retention.ms=60000"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = node.cli(&["topic", "create", "cli-topic"], None);
    assert!(!bad.status.success(), "creating twice fails");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("TopicAlreadyExists"));
    let invalid = node.cli(&["topic", "create", "x", "--config", "retention.ms=abc"], None);
    assert!(
        String::from_utf8_lossy(&invalid.stderr).contains("InvalidConfig"),
        "{}",
        String::from_utf8_lossy(&invalid.stderr)
    );
    assert!(lines(&node.cli(&["topic", "list"], None)).contains(&"cli-topic".to_owned()));
    let described = String::from_utf8(node.cli(&["topic", "describe", "cli-topic"], None).stdout).unwrap();
    assert!(described.contains("partitions 3") && described.contains("retention.ms=60000"), "{described}");

    let input: String = (0..2500).map(|i| format!("line {i}\n")).collect();
    for codec in ["none", "zstd"] {
        let out =
            node.cli(&["produce", "cli-topic", "--partition", "2", "--compression", codec], Some(input.as_bytes()));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let consumed = node.cli(&["consume", "cli-topic", "--partition", "2", "--count", "5000"], None);
    let got = lines(&consumed);
    assert_eq!(got.len(), 5000);
    assert_eq!(got[0], "line 0");
    assert_eq!(got[2500], "line 0");
    assert_eq!(got[4999], "line 2499");
    let from = node.cli(&["consume", "cli-topic", "--partition", "2", "--offset", "4990", "--count", "10"], None);
    assert_eq!(lines(&from).first().map(String::as_str), Some("line 2490"));

    let out = node.cli(&["topic", "delete", "cli-topic"], None);
    assert!(out.status.success());
    assert!(!lines(&node.cli(&["topic", "list"], None)).contains(&"cli-topic".to_owned()));
}

#[test]
fn admin_http_serves_metrics_and_status() {
    let node = Node::start();
    node.cli(&["topic", "create", "observed", "--partitions", "2"], None);
    let out = node.cli(&["produce", "observed"], Some(b"a\nb\nc\n"));
    assert!(out.status.success());
    let metrics = node.http_get("/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("braid_kafka_requests_total{api=\"Produce\"} 1"), "{metrics}");
    assert!(metrics.contains("braid_kafka_request_latency_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 1"));
    assert!(metrics.contains("braid_log_end_offset{topic=\"observed\",partition=\"0\"} 3"), "{metrics}");
    let status = node.http_get("/v1/status");
    let json: serde_json::Value = serde_json::from_str(status.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["node_id"], 1);
    assert_eq!(json["partitions"].as_array().unwrap().len(), 2);
    assert!(node.http_get("/nope").starts_with("HTTP/1.1 404"));
}

#[test]
fn start_refuses_bad_peer_lists_with_a_clear_error() {
    let node = Node::start();
    for (peers, expected) in [
        ("1@127.0.0.1:9093,2@127.0.0.1:9094", "must list this node (3)"),
        ("3@127.0.0.1:9093,3@127.0.0.1:9094", "listed twice"),
        ("3-127.0.0.1:9093", "is not id@host:port"),
    ] {
        let out = node.cli(&["start", "--node-id", "3", "--peers", peers, "--kafka-addr", "127.0.0.1:1"], None);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{peers}: {stderr}");
    }
}

/// `braid bench`: produces and then consumes a known number of records, and reports them (and
/// latency percentiles) as JSON.
#[test]
fn bench_produces_and_consumes_what_it_reports() {
    let node = Node::start();
    let dir = tempfile::tempdir().unwrap();
    let (produced, consumed) = (dir.path().join("produce.json"), dir.path().join("consume.json"));
    let args = ["bench", "produce", "--topic", "b", "--partitions", "3", "--producers", "3", "--messages", "30000"];
    let out = node.cli(&[&args[..], &["--record-size", "100", "--json", produced.to_str().unwrap()]].concat(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = node
        .cli(&["bench", "consume", "--topic", "b", "--messages", "30000", "--json", consumed.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (path, what) in [(&produced, "produce"), (&consumed, "consume")] {
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(json["what"], what);
        assert_eq!(json["records"], 30_000, "{json}");
        assert_eq!(json["errors"], 0, "{json}");
        assert!(json["latency_us"]["samples"].as_u64().unwrap() > 0, "{json}");
        assert!(json["latency_us"]["p50"].as_u64().unwrap() <= json["latency_us"]["max"].as_u64().unwrap());
    }
    // It created the topic with --partitions (asking for it must not auto-create it with one).
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&produced).unwrap()).unwrap();
    assert_eq!(json["config"]["partitions"], 3, "{json}");
    // What it produced is really there: the CLI consumer reads each partition's share.
    for partition in ["0", "2"] {
        let out = node.cli(&["consume", "b", "--partition", partition, "--count", "10000"], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(lines(&out).len(), 10_000);
    }
}

#[test]
fn a_topic_change_waits_for_a_controller_instead_of_failing() {
    let mut cluster = Cluster::start(3, &[]);
    // Two of three nodes down: the survivor reaches no majority, so there is no controller.
    // The CLI starts once the survivor knows it (a change it took as controller before that
    // could still commit later, which is another matter: Kafka's NOT_CONTROLLER too).
    let cut_offs = |log: String| log.matches("cut off from the cluster").count();
    let before = cut_offs(cluster.nodes[0].log());
    cluster.nodes[1].kill();
    cluster.nodes[2].kill();
    wait_for("node 1 to find itself cut off", || (cut_offs(cluster.nodes[0].log()) > before).then_some(()));
    let mut create = std::process::Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["topic", "create", "patient", "--partitions", "2", "--replication-factor", "3"])
        .env("BRAID_BOOTSTRAP", cluster.nodes[0].bootstrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The CLI has found no controller (none elected, or the one last known does not answer)
    // at least once before the others come back.
    let mut stderr = std::io::BufReader::new(create.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    assert!(first.contains("retrying for up to 30 s"), "{first}");
    cluster.nodes[1].launch(&[]);
    cluster.nodes[2].launch(&[]);
    let out = create.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(out.status.success(), "{first}{rest}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("created topic patient"));
    let described = String::from_utf8(cluster.nodes[0].cli(&["topic", "describe", "patient"], None).stdout).unwrap();
    assert!(described.contains("partitions 2"), "{described}");
}

#[test]
fn bench_zk_pipelines_and_reports_what_the_node_received() {
    let node = Node::start();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("zk.json");
    let server = node.zk.to_string();
    let args = ["bench", "zk", "--servers", &server, "--sessions", "4", "--in-flight", "8", "--ops", "20000"];
    let extra = ["--mix", "set=1,get=3", "--keys", "50", "--watchers", "2", "--json", json_path.to_str().unwrap()];
    let out = node.cli(&[&args[..], &extra[..]].concat(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(json["ops"], 20_000, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    let (writes, reads) = (json["writes"].as_u64().unwrap(), json["reads"].as_u64().unwrap());
    assert_eq!(writes + reads, 20_000);
    assert!(writes > 0 && reads > writes, "set=1,get=3: {writes} writes, {reads} reads");
    assert!(json["watch"]["events"].as_u64().unwrap() > 0, "the watchers saw the setData: {json}");
    assert_eq!(json["by_op"]["get"]["ops"].as_u64().unwrap(), reads);
    // The node really answered them: its own count of requests received covers every op.
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(node.zk).unwrap();
    stream.write_all(b"srvr").unwrap();
    let mut srvr = String::new();
    stream.read_to_string(&mut srvr).unwrap();
    let received: u64 = srvr
        .lines()
        .find_map(|l| l.strip_prefix("Received: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Received line: {srvr}"));
    assert!(received >= 20_000, "{srvr}");
}

/// CreateTopics with a manual replica assignment on a three-node cluster (confluent-kafka's
/// AdminClient): every partition gets the replicas asked for, records go through, and the
/// assignments Kafka refuses (a node that is not a member, a node twice, uneven replica counts)
/// are refused with INVALID_REPLICA_ASSIGNMENT.
#[test]
fn a_manual_replica_assignment_places_partitions_on_the_nodes_asked_for() {
    let cluster = Cluster::start(3, &[]);
    let bootstrap = cluster.nodes[1].bootstrap();
    python_ok("manual_assignment.py", &[&bootstrap]);
}

/// DeleteRecords (confluent-kafka's AdminClient, as Kafka Streams purges repartition topics):
/// the log start offset moves to the offset asked for and ListOffsets reports it, consumers
/// start there, offsets past the high watermark are refused, and the start survives a restart.
#[test]
fn delete_records_moves_the_log_start_offset_that_list_offsets_reports() {
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    assert!(node.cli(&["topic", "create", "purge"], None).status.success());
    python_ok("delete_records.py", &[&bootstrap, "purge"]);
    node.restart();
    let mut client = braid_node::client::Client::connect(&node.bootstrap()).unwrap();
    let mut partition = kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default();
    partition.timestamp = -2;
    partition.current_leader_epoch = -1;
    let mut topic = kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default();
    topic.name = kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_static_str("purge"));
    topic.partitions = vec![partition];
    let mut request = kafka_protocol::messages::ListOffsetsRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.topics = vec![topic];
    wait_for("the restarted node to answer ListOffsets earliest with the moved start", || {
        let version = client.version_for::<kafka_protocol::messages::ListOffsetsRequest>().ok()?;
        let response = client.call_version(request.clone(), version).ok()?;
        let p = &response.topics[0].partitions[0];
        (p.error_code == 0).then_some(()).and_then(|()| (p.offset == 100).then_some(()))
    });
}

/// ElectLeaders (confluent-kafka's AdminClient) on a cluster whose automatic leader rebalance is
/// off: after a node's restart its partitions are led by others; a preferred election hands
/// them back (no error), answers ELECTION_NOT_NEEDED for the others, and an unclean election is
/// never needed while partitions have leaders.
#[test]
fn elect_leaders_hands_leadership_back_to_preferred_replicas() {
    let mut cluster = Cluster::start(3, &["--auto-leader-rebalance", "false"]);
    let bootstrap = cluster.nodes[1].bootstrap();
    python_ok("elect_leaders.py", &[&bootstrap, "create"]);
    // Node 1 restarts: whatever it led is led by another node meanwhile, and stays so.
    cluster.nodes[0].kill();
    wait_for("node 1's partitions led elsewhere", || {
        let out = cluster.nodes[1].cli(&["topic", "describe", "elect"], None);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && !text.contains("leader 1 ") && !text.contains("leader: 1")).then_some(())
    });
    cluster.nodes[0].launch(&[]);
    cluster.wait_formed();
    python_ok("elect_leaders.py", &[&bootstrap, "elect"]);
}

/// DescribeLogDirs (kafka-python's KafkaAdminClient): the node's log directory with every
/// partition it holds and its size, all partitions or those asked for.
#[test]
fn describe_log_dirs_names_the_log_directory_and_partition_sizes() {
    let node = Node::start();
    assert!(node.cli(&["topic", "create", "dirs", "--partitions", "2"], None).status.success());
    python_ok("describe_log_dirs.py", &[&node.bootstrap(), "dirs"]);
}

/// Every topic config Kafka documents through librdkafka's AdminClient: accepted at creation
/// and by IncrementalAlterConfigs, described with its value and whether it is a default; values
/// Braid cannot honour refused INVALID_CONFIG with the reason (docs/compatibility.md says what
/// each config does here).
#[test]
fn every_kafka_topic_config_is_accepted_and_described() {
    let node = Node::start();
    python_ok("topic_configs.py", &[&node.bootstrap()]);
}

/// message.timestamp.type=LogAppendTime (confluent-kafka): records take the leader's clock and
/// the LogAppendTime type; a CreateTime topic keeps the producer's timestamps.
#[test]
fn log_append_time_topics_stamp_records_with_the_brokers_clock() {
    let node = Node::start();
    python_ok("log_append_time.py", &[&node.bootstrap()]);
}

/// segment.ms (confluent-kafka sets it; records 2 s apart by timestamp): each record past
/// segment.ms from its segment's first starts a new segment.
#[test]
fn segment_ms_rolls_segments_by_record_time() {
    let node = Node::start();
    python_ok("segment_ms.py", &[&node.bootstrap()]);
    let status = node.status().expect("/v1/status");
    let segments = status["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["topic"] == "aged" && p["partition"] == 0)
        .and_then(|p| p["segments"].as_u64());
    assert_eq!(segments, Some(3), "{status}");
}

/// The data directory records its format (`FORMAT`); a directory written by a newer braid is
/// refused at start with a message that says so, and nothing in it is touched.
#[test]
fn a_data_directory_of_a_newer_format_is_refused_at_start() {
    let mut node = Node::start();
    let format = node.data_dir.join(braid_node::data_format::FORMAT_FILE);
    let written = std::fs::read_to_string(&format).unwrap();
    assert_eq!(written, format!("braid-data {}\n", braid_node::data_format::DATA_FORMAT));
    node.kill();
    let newer = format!("braid-data {}\n", braid_node::data_format::DATA_FORMAT + 1);
    std::fs::write(&format, &newer).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["start", "--data-dir"])
        .arg(&node.data_dir)
        .arg("--kafka-addr")
        .arg(node.kafka.to_string())
        .arg("--zk-addr")
        .arg(node.zk.to_string())
        .arg("--admin-addr")
        .arg(node.admin.to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("written by a newer braid"), "{said}");
    assert_eq!(std::fs::read_to_string(&format).unwrap(), newer, "left as it was");
}
