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
