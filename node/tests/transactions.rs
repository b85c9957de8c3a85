//! Transactions with real clients: confluent-kafka and aiokafka transactional producers against
//! read_committed and read_uncommitted consumers, and an exactly-once consume-transform-produce
//! loop (send_offsets_to_transaction).

mod common;

use common::*;

/// FindCoordinator then InitProducerId for transactional id `id`, as clients do (the
/// coordinator's topic is created on the first request): the producer id and epoch.
/// AddPartitionsToTxn v3 of partition 0 of `topic` to transactional id `id`: its error code.
fn add_partition(
    client: &mut braid_node::client::Client,
    id: &'static str,
    (producer_id, epoch): (kafka_protocol::messages::ProducerId, i16),
    topic: &'static str,
) -> i16 {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, TopicName, TransactionalId};
    use kafka_protocol::protocol::StrBytes;
    let mut add = AddPartitionsToTxnRequest::default();
    add.v3_and_below_transactional_id = TransactionalId(StrBytes::from_static_str(id));
    add.v3_and_below_producer_id = producer_id;
    add.v3_and_below_producer_epoch = epoch;
    let mut t = AddPartitionsToTxnTopic::default();
    t.name = TopicName(StrBytes::from_static_str(topic));
    t.partitions = vec![0];
    add.v3_and_below_topics = vec![t];
    client.call_version(add, 3).unwrap().results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

fn init_transactional(
    client: &mut braid_node::client::Client,
    id: &'static str,
) -> (kafka_protocol::messages::ProducerId, i16) {
    use kafka_protocol::messages::{FindCoordinatorRequest, InitProducerIdRequest, TransactionalId};
    use kafka_protocol::protocol::StrBytes;
    wait_for("a transactional producer id", || {
        let mut find = FindCoordinatorRequest::default();
        find.key = StrBytes::from_static_str(id);
        find.key_type = 1;
        client.call_version(find, 3).ok().filter(|r| r.error_code == 0)?;
        let mut r = InitProducerIdRequest::default();
        r.transactional_id = Some(TransactionalId(StrBytes::from_static_str(id)));
        r.transaction_timeout_ms = 60_000;
        let response = client.call_version(r, 3).ok()?;
        (response.error_code == 0).then_some((response.producer_id, response.producer_epoch))
    })
}

/// Every other transaction aborted: read_committed consumers see exactly the committed records,
/// in order, without markers; read_uncommitted ones see all; a second producer with the same
/// transactional.id fences the first, whose open transaction never becomes readable.
#[test]
fn confluent_transactions_commit_abort_and_fence() {
    let node = Node::start();
    python_ok("txn_confluent.py", &[&node.bootstrap(), "20"]);
}

#[test]
fn aiokafka_transactions_commit_and_abort() {
    let node = Node::start();
    python_ok("txn_aiokafka.py", &[&node.bootstrap(), "10"]);
}

/// A processor reads, writes results and commits its offsets in one transaction; run twice, the
/// second run finds nothing left to do, and each input has exactly one result.
#[test]
fn consume_transform_produce_is_exactly_once() {
    let node = Node::start();
    let bootstrap = node.bootstrap();
    python_ok("txn_process.py", &["prepare", &bootstrap, "2000"]);
    python_ok("txn_process.py", &["run", &bootstrap, "2000", "60"]);
    let again = run(python("txn_process.py").args(["run", &bootstrap, "2000", "10"]));
    assert!(String::from_utf8_lossy(&again.stdout).contains("processed 0"), "offsets were committed with the results");
    python_ok("txn_process.py", &["check", &bootstrap, "2000"]);
}

/// The exactly-once loop on three nodes while the node coordinating its transactions, the
/// leader of an output partition and its group's coordinator are killed in turn (each restarted
/// once the loop has gone on without it): every input has exactly one result.
#[test]
fn consume_transform_produce_is_exactly_once_through_node_kills() {
    use std::io::BufRead;
    let mut cluster = Cluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let count = 6000;
    python_ok("txn_process.py", &["prepare", &bootstrap, &count.to_string()]);
    let mut processor = python("txn_process.py")
        .args(["run", &bootstrap, &count.to_string(), "200", "10"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let roles = [
        (braid_node::txn::TXN_TOPIC.to_owned(), braid_node::txn::partition_for("eos-processor")),
        ("eos-out".to_owned(), 0),
        (braid_node::groups::OFFSETS_TOPIC.to_owned(), braid_node::groups::partition_for("eos-group")),
    ];
    let mut step = 0;
    let mut down: Option<(usize, i64)> = None;
    let lines = std::io::BufReader::new(processor.stdout.take().expect("piped")).lines();
    for line in lines.map_while(Result::ok) {
        eprintln!("processor: {line}");
        let Some(done) = line.strip_prefix("progress ").and_then(|n| n.parse::<i64>().ok()) else { continue };
        match down {
            // The loop went on for 500 records without the node: bring it back.
            Some((node, at)) if done >= at + 500 => {
                eprintln!("restarting node {}", node + 1);
                cluster.nodes[node].restart();
                down = None;
            }
            None if step < roles.len() && done >= 1000 * (step as i64 + 1) => {
                let (topic, partition) = &roles[step];
                let node = wait_for("a leader", || cluster.leader_of(topic, *partition));
                eprintln!("killing node {} (leader of {topic}/{partition})", node + 1);
                cluster.nodes[node].kill();
                down = Some((node, done));
                step += 1;
            }
            _ => {}
        }
    }
    let exited = processor.wait().expect("processor");
    if !exited.success() {
        for (i, node) in cluster.nodes.iter().enumerate() {
            let log = node.log();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("transaction"))
                .collect();
            eprintln!("node {}:\n{}", i + 1, lines[lines.len().saturating_sub(40)..].join("\n"));
        }
    }
    assert!(exited.success(), "the processor failed");
    assert_eq!(step, roles.len(), "every role's node was killed while the loop ran");
    if let Some((node, _)) = down {
        cluster.nodes[node].restart();
    }
    python_ok("txn_process.py", &["check", &bootstrap, &count.to_string()]);
}

/// KIP-890 part 1: a transactional batch for a partition its transaction does not hold is
/// refused (INVALID_TXN_STATE) and opens nothing; once AddPartitionsToTxn added the partition
/// it is taken; after the commit, a late batch of the ended transaction is refused again, and
/// the last stable offset (read_committed ListOffsets) is the log end.
#[test]
fn a_transactional_batch_is_taken_only_for_a_partition_its_transaction_holds() {
    use braid_engine::log::batch;
    use braid_node::client::Client;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let node = Node::start();
    let out = node.cli(&["topic", "create", "verified", "--partitions", "1"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut client = Client::connect(&node.bootstrap()).unwrap();
    let id = || TransactionalId(StrBytes::from_static_str("verifying"));
    let (producer_id, epoch) = init_transactional(&mut client, "verifying");
    let mut produce = |seq: i32| {
        let mut bytes = batch::build_batch(0, &[b"x"]);
        batch::set_producer(&mut bytes, producer_id.0, epoch, braid_node::txn::TRANSACTIONAL_ATTRIBUTE, 0);
        batch::set_base_sequence(&mut bytes, seq);
        let mut data = PartitionProduceData::default();
        data.records = Some(bytes.into());
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_static_str("verified"));
        topic.partition_data = vec![data];
        let mut r = ProduceRequest::default();
        r.transactional_id = Some(id());
        r.acks = -1;
        r.timeout_ms = 10_000;
        r.topic_data = vec![topic];
        client.call_version(r, 8).unwrap().responses[0].partition_responses[0].error_code
    };
    assert_eq!(produce(0), kafka_protocol::ResponseError::InvalidTxnState.code(), "not added to the transaction");
    let mut client = Client::connect(&node.bootstrap()).unwrap();
    assert_eq!(add_partition(&mut client, "verifying", (producer_id, epoch), "verified"), 0);
    drop(client);
    assert_eq!(produce(0), 0, "added: taken");
    let mut client = Client::connect(&node.bootstrap()).unwrap();
    // DescribeProducers: the producer, its last sequence and its open transaction's start.
    let describe = |client: &mut Client| {
        let mut topic = describe_producers_request::TopicRequest::default();
        topic.name = TopicName(StrBytes::from_static_str("verified"));
        topic.partition_indexes = vec![0];
        let mut r = DescribeProducersRequest::default();
        r.topics = vec![topic];
        let response = client.call_version(r, 0).unwrap();
        let p = &response.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        p.active_producers
            .iter()
            .map(|s| (s.producer_id.0, s.last_sequence, s.current_txn_start_offset, s.coordinator_epoch))
            .collect::<Vec<_>>()
    };
    assert_eq!(describe(&mut client), vec![(producer_id.0, 0, 0, -1)], "the transaction is open from offset 0");
    let mut end = EndTxnRequest::default();
    end.transactional_id = id();
    end.producer_id = producer_id;
    end.producer_epoch = epoch;
    end.committed = true;
    assert_eq!(client.call_version(end, 3).unwrap().error_code, 0);
    let after = describe(&mut client);
    assert_eq!(after.len(), 1);
    let coordinator_epoch = after[0].3;
    assert!(coordinator_epoch >= 0, "the commit marker's coordinator epoch: {after:?}");
    assert_eq!(after[0].2, -1, "no transaction open after the commit");
    // A late marker from an older coordinator is refused: it could end the next transaction.
    let mut late = write_txn_markers_request::WritableTxnMarker::default();
    late.producer_id = producer_id;
    late.producer_epoch = epoch;
    late.transaction_result = true;
    late.coordinator_epoch = coordinator_epoch - 1;
    let mut topic = write_txn_markers_request::WritableTxnMarkerTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("verified"));
    topic.partition_indexes = vec![0];
    late.topics = vec![topic];
    let mut request = WriteTxnMarkersRequest::default();
    request.markers = vec![late];
    let answer = client.call_version(request, 1).unwrap();
    let code = answer.markers[0].topics[0].partitions[0].error_code;
    assert_eq!(code, kafka_protocol::ResponseError::TransactionCoordinatorFenced.code());
    drop(client);
    assert_eq!(produce(1), kafka_protocol::ResponseError::InvalidTxnState.code(), "the transaction ended");
    let mut client = Client::connect(&node.bootstrap()).unwrap();
    let mut offsets = ListOffsetsRequest::default();
    offsets.isolation_level = 1;
    let mut partition = ListOffsetsPartition::default();
    partition.timestamp = -1;
    let mut topic = ListOffsetsTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("verified"));
    topic.partitions = vec![partition];
    offsets.topics = vec![topic];
    let latest = client.call_version(offsets, 5).unwrap().topics[0].partitions[0].offset;
    assert_eq!(latest, 2, "the record and its commit marker are stable");
}

/// KAFKA-17754 with a client that keeps its epoch across transactions (librdkafka, aiokafka):
/// an EndTxn that stalled on a connection the client then left (it reconnected, finished that
/// transaction and began the next) is read only after the next transaction's requests on the
/// newer connection. It must end nothing: the old connection is closed unanswered, and the
/// transaction stays open until the client ends it.
#[test]
fn a_late_end_txn_from_a_connection_the_client_left_ends_nothing() {
    use braid_node::client::Client;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let node = Node::start();
    let out = node.cli(&["topic", "create", "late-end", "--partitions", "1"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = || TransactionalId(StrBytes::from_static_str("late-end"));
    let mut old = Client::connect(&node.bootstrap()).unwrap();
    let (producer_id, epoch) = init_transactional(&mut old, "late-end");
    let add = |client: &mut Client| add_partition(client, "late-end", (producer_id, epoch), "late-end");
    let end = |commit: bool| {
        let mut end = EndTxnRequest::default();
        end.transactional_id = id();
        end.producer_id = producer_id;
        end.producer_epoch = epoch;
        end.committed = commit;
        end
    };
    let state = |client: &mut Client| {
        let mut r = DescribeTransactionsRequest::default();
        r.transactional_ids = vec![id()];
        let response = client.call_version(r, 0).unwrap();
        response.transaction_states[0].transaction_state.to_string()
    };
    // The first transaction, on the connection the client will leave.
    assert_eq!(add(&mut old), 0);
    // Its EndTxn "times out": the client reconnects, ends the transaction there and begins the
    // next one.
    let mut new = Client::connect(&node.bootstrap()).unwrap();
    assert_eq!(new.call_version(end(true), 3).unwrap().error_code, 0);
    assert_eq!(add(&mut new), 0);
    assert_eq!(state(&mut new), "Ongoing");
    // The stalled EndTxn is read now.
    old.send(end(true), 3).unwrap();
    assert!(old.receive::<EndTxnRequest>(3).is_err(), "the left connection is closed unanswered");
    assert_eq!(state(&mut new), "Ongoing", "the late EndTxn ended nothing");
    // The client ends its transaction as it wants; a new connection is heard.
    assert_eq!(new.call_version(end(false), 3).unwrap().error_code, 0);
    assert_eq!(state(&mut new), "CompleteAbort");
    let mut newer = Client::connect(&node.bootstrap()).unwrap();
    assert_eq!(add(&mut newer), 0);
    assert_eq!(newer.call_version(end(true), 3).unwrap().error_code, 0);
    assert_eq!(state(&mut newer), "CompleteCommit");
}

/// A producer that dies with its transaction open: `braid txn list|describe` show it Ongoing
/// with its partition, /metrics counts it open and the last stable offset lagging; the
/// coordinator aborts it once its timeout passes, and the lag goes back to 0.
#[test]
fn an_abandoned_transaction_is_listed_then_aborted_at_its_timeout() {
    let node = Node::start();
    let out = node.cli(&["topic", "create", "abandoned", "--partitions", "1"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    python_ok("txn_open.py", &[&node.bootstrap(), "abandoned", "left-open", "3000"]);
    let list = node.cli(&["txn", "list"], None);
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(listed.lines().any(|l| l.starts_with("left-open producer") && l.ends_with("Ongoing")), "{listed}");
    let describe = node.cli(&["txn", "describe", "left-open"], None);
    let described = String::from_utf8_lossy(&describe.stdout).into_owned();
    assert!(described.contains("state Ongoing") && described.contains("  abandoned 0"), "{described}");
    let metrics = node.http_get("/metrics");
    assert!(metrics.contains("braid_open_transactions{topic=\"abandoned\",partition=\"0\"} 1"), "{metrics}");
    assert!(metrics.contains("braid_last_stable_offset_lag{topic=\"abandoned\",partition=\"0\"} 1"));
    let status = node.status().expect("/v1/status");
    let partition = status["partitions"].as_array().into_iter().flatten().find(|p| p["topic"] == "abandoned");
    let partition = partition.expect("the partition in /v1/status");
    assert_eq!((partition["open_transactions"].as_i64(), partition["last_stable_lag"].as_i64()), (Some(1), Some(1)));
    wait_for("the coordinator to abort the transaction at its timeout", || {
        let list = node.cli(&["txn", "list", "--state", "CompleteAbort"], None);
        String::from_utf8_lossy(&list.stdout).contains("left-open").then_some(())
    });
    let metrics = node.http_get("/metrics");
    assert!(metrics.contains("braid_last_stable_offset_lag{topic=\"abandoned\",partition=\"0\"} 0"), "{metrics}");
    let unknown = node.cli(&["txn", "describe", "never-used"], None);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("TransactionalIdNotFound"));
}

/// `braid bench produce --transactional`: every batch in a committed transaction, none refused;
/// read_committed sees them all.
#[test]
fn the_load_generator_produces_in_transactions() {
    let node = Node::start();
    let out = node.cli(
        &[
            "bench",
            "produce",
            "--topic",
            "tx-bench",
            "--messages",
            "20000",
            "--batch-records",
            "100",
            "--transactional",
            "--commit-ms",
            "20",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("20000 records") && text.contains("errors 0"), "{text}");
    assert!(text.contains("commit latency us"), "{text}");
    python_ok("txn_count.py", &[&node.bootstrap(), "tx-bench", "20000"]);
}

/// A quixstreams application in exactly-once mode with a windowed count per key (state in
/// RocksDB and its changelog topic), killed with SIGKILL mid-stream and started again: the
/// final counts are exact. quixstreams runs from its own virtualenv (tests/run.sh makes it,
/// BRAID_QUIX_PYTHON names its interpreter).
#[test]
fn a_quixstreams_exactly_once_count_survives_sigkill() {
    let quix = std::env::var("BRAID_QUIX_PYTHON")
        .unwrap_or_else(|_| repo_root().join("target/quix-venv/bin/python").display().to_string());
    assert!(
        std::path::Path::new(&quix).exists(),
        "no quixstreams interpreter at {quix}: run tests/run.sh once (it makes target/quix-venv)"
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    let count = "60000";
    python_ok("quix_eos.py", &["prepare", &bootstrap, count]);
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();
    let script = repo_root().join("tests/clients/quix_eos.py");
    let mut app = std::process::Command::new(&quix)
        .arg(&script)
        .args(["run", &bootstrap, &state_dir, "120"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("quixstreams python");
    // Killed once it has written some counts (mid-stream, with state and a transaction open).
    wait_for("the application's first counts", || {
        let metrics = node.http_get("/metrics");
        let written: i64 = metrics
            .lines()
            .filter(|l| l.starts_with("braid_log_end_offset{topic=\"quix-counts\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .sum();
        (written > 5000).then_some(())
    });
    app.kill().unwrap();
    let _ = app.wait();
    let rerun = run(std::process::Command::new(&quix).arg(&script).args(["run", &bootstrap, &state_dir, "30"]));
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    python_ok("quix_eos.py", &["check", &bootstrap, count]);
}

/// A Jepsen-style run: three transactional producers commit and abort transactions of 1-4
/// records over three partitions, read_committed pollers read along, while a seeded nemesis
/// kills and restarts nodes and cuts one node off its peers; then the history is checked (no
/// lost write, no aborted read, no duplicate, one value per offset, monotonic polls,
/// transactions of unknown outcome all or nothing). BRAID_JEPSEN_SEED and
/// BRAID_JEPSEN_SECONDS (default 1 and 30) choose the run; longer runs are documented in
/// docs/benchmarks.md.
#[test]
fn jepsen_style_transactions_survive_kills_and_cuts() {
    let seed: u64 = std::env::var("BRAID_JEPSEN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let seconds: u64 = std::env::var("BRAID_JEPSEN_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let mut cluster = Cluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl").display().to_string();
    let mut workload = python("txn_jepsen.py")
        .args(["run", &bootstrap, &seed.to_string(), &seconds.to_string(), &history])
        .spawn()
        .expect("python3");
    // The nemesis: every 2-4 s, kill a node or cut one off, for 1-3 s, then bring it back.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(seconds.saturating_sub(8)) {
        std::thread::sleep(std::time::Duration::from_millis(2000 + next(2000)));
        let node = next(3) as usize;
        let down = std::time::Duration::from_millis(1000 + next(2000));
        if next(2) == 0 {
            eprintln!("nemesis: kill node {} for {down:?}", node + 1);
            cluster.nodes[node].kill();
            std::thread::sleep(down);
            cluster.nodes[node].restart();
        } else {
            eprintln!("nemesis: cut node {} off for {down:?}", node + 1);
            cluster.isolate(node, true);
            std::thread::sleep(down);
            cluster.isolate(node, false);
        }
    }
    assert!(workload.wait().expect("workload").success(), "the workload failed");
    cluster.wait_formed();
    let out = run(python("txn_jepsen.py").args(["check", &bootstrap, &history]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    assert!(text.lines().any(|l| l == "ok"), "{text}{}", String::from_utf8_lossy(&out.stderr));
}
