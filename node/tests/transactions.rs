//! Transactions with real clients: confluent-kafka and aiokafka transactional producers against
//! read_committed and read_uncommitted consumers, and an exactly-once consume-transform-produce
//! loop (send_offsets_to_transaction).

mod common;

use common::*;

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
