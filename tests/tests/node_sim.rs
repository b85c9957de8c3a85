//! The whole-node simulator in the default test run: a bounded set of seeds must pass, and
//! each known bug put back (a mutation) must be caught within a bounded number of seeds.
//! `braid-sim --nodes-sim` runs long campaigns; BRAID_NODE_SIM_SEEDS sets how many seeds run
//! here.

use braid_tests::node_sim::{run_nodes, Mutation, NodeSimConfig};

/// Simulated milliseconds of load per seed (settling follows).
const STEPS: u64 = 6_000;
/// Seeds that once failed, kept whatever the default count.
const REGRESSIONS: [u64; 7] = [152, 160, 240, 1002, 1084, 10343, 25603];

/// Seeds of five nodes that once failed.
const REGRESSIONS_FIVE_NODES: [u64; 1] = [51243];
/// Seeds that failed with transactions on: 1003 (a marker answered UNKNOWN_TOPIC_OR_PARTITION
/// by a node still starting was taken for a deleted partition's, and the transaction completed
/// without it).
const TXN_REGRESSIONS: [u64; 1] = [1003];

fn seeds() -> Vec<u64> {
    let count: u64 = std::env::var("BRAID_NODE_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    (1..=count).chain(REGRESSIONS).chain(TXN_REGRESSIONS).collect()
}

#[test]
fn whole_nodes_keep_what_they_acknowledged_under_faults() {
    let mut totals = (0u64, 0u64, 0u64, 0u64);
    let mut transactions = (0, 0, 0);
    for seed in seeds() {
        let mut config = NodeSimConfig::new(seed, STEPS);
        if REGRESSIONS.contains(&seed) {
            // As they were found: before transactions, whose traffic changes every draw.
            config.txn_ops = 0;
        }
        if REGRESSIONS.contains(&seed) || TXN_REGRESSIONS.contains(&seed) {
            // As they were found: before replaced disks.
            config.faults.disk_replaced = 0;
        }
        match run_nodes(&config) {
            Ok(outcome) => {
                totals.0 += outcome.steps;
                totals.1 += outcome.zk_acked;
                totals.2 += outcome.kafka_acked;
                totals.3 += outcome.crashes + outcome.power_losses;
                transactions.0 += outcome.transactions.0;
                transactions.1 += outcome.transactions.1;
                transactions.2 += outcome.transactions.2;
            }
            Err(e) => panic!(
                "{e}\nreplay: cargo run -p braid-tests --release --bin braid-sim -- --nodes-sim --seed {seed} --steps {STEPS}"
            ),
        }
    }
    eprintln!(
        "{} seeds, {} simulated ms: {} ZooKeeper and {} Kafka acknowledgements checked through {} crashes; transactions committed, aborted, unknown: {transactions:?}",
        seeds().len(),
        totals.0,
        totals.1,
        totals.2,
        totals.3
    );
    // The runs did what they are for: load acknowledged, transactions ended, and faults.
    assert!(totals.1 > 0 && totals.2 > 0 && totals.3 > 0, "the runs made no acknowledged writes or no crashes");
    assert!(transactions.0 > 0 && transactions.1 > 0, "no transaction committed or aborted: {transactions:?}");
}

#[test]
fn five_whole_nodes_keep_the_regression_seeds() {
    for seed in REGRESSIONS_FIVE_NODES {
        let mut config = NodeSimConfig::new(seed, STEPS);
        config.settings.nodes = 5;
        config.txn_ops = 0;
        config.faults.disk_replaced = 0;
        if let Err(e) = run_nodes(&config) {
            panic!("{e}\nreplay: cargo run -p braid-tests --release --bin braid-sim -- --nodes-sim --seed {seed} --nodes 5");
        }
    }
}

/// Runs seeds with `mutation` on until one fails; the failure, or None after `limit` seeds.
fn first_failure(mutation: Mutation, limit: u64) -> Option<String> {
    (1..=limit).find_map(|seed| {
        // The mutations of before transactions run as they were calibrated, without them.
        let txn_mutations = [Mutation::AbortedTransactionsHidden, Mutation::StaleConnectionsHeard];
        let txn_ops = if txn_mutations.contains(&mutation) { 50 } else { 0 };
        let mut config = NodeSimConfig { mutation: Some(mutation), txn_ops, ..NodeSimConfig::new(seed, STEPS) };
        // As they were calibrated: before replaced disks.
        config.faults.disk_replaced = 0;
        run_nodes(&config).err()
    })
}

fn assert_caught(mutation: Mutation, expect: &str) {
    match first_failure(mutation, 300) {
        Some(failure) => {
            eprintln!("{mutation:?} caught: {failure}");
            assert!(failure.contains(expect), "{mutation:?} was caught by another check than expected: {failure}");
        }
        None => panic!("the simulator no longer catches {mutation:?} within 300 seeds"),
    }
}

#[test]
fn the_simulator_catches_an_acknowledgement_sent_before_its_sync() {
    assert_caught(Mutation::AckBeforeSync, "acknowledged");
}

#[test]
fn the_simulator_catches_a_controller_writing_a_deposed_leader_over_its_successor() {
    assert_caught(Mutation::StaleLeaderReports, "went back from leader epoch");
}

#[test]
fn the_simulator_catches_zookeeper_sessions_that_never_expire() {
    assert_caught(Mutation::SessionsNeverExpire, "outlived its session");
}

#[test]
fn the_simulator_catches_commits_of_a_stale_consumer_group_generation() {
    assert_caught(Mutation::CommitsIgnoreGeneration, "was accepted after generation");
}

#[test]
fn the_simulator_catches_a_zookeeper_sync_that_does_not_catch_up() {
    assert_caught(Mutation::SyncAnsweredAtOnce, "(or synced past it)");
}

#[test]
fn the_simulator_catches_a_zookeeper_watch_that_fires_twice() {
    assert_caught(Mutation::WatchesStay, "fired with no registration left");
}

#[test]
fn the_simulator_catches_a_late_end_txn_ending_the_next_transaction() {
    assert_caught(Mutation::StaleConnectionsHeard, "read in part");
}

#[test]
fn the_simulator_catches_aborted_transactions_hidden_from_read_committed() {
    assert_caught(Mutation::AbortedTransactionsHidden, "is read");
}
