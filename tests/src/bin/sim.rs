//! Long simulation runs: `braid-sim [--seed N | --seeds COUNT --first N] [--steps S] [--nodes K]
//! [--retention PER_MILLE] [--membership PER_MILLE] [--propose PER_MILLE] [--quiesce 0|1] [--calm]`
//! (quiet groups: on even seeds unless --quiesce says).
//! Prints one line per seed; exits non-zero at the first failing seed, naming the replay command.
//! `braid-sim --nodes-sim [--seed N | --seeds COUNT --first N] [--steps MS] [--nodes K] [--calm]
//! [--txn-ops PER_MILLE] [--disk-replaced PER_100]` (transactions begun per mille per step,
//! default 50; 0 replays the runs from before transactions; disks replaced per 100 restarts,
//! default 20; 0 replays the runs from before that fault) [--meta-segment-bytes N] (metadata
//! log segments of N bytes, so the log below tree snapshots is deleted during a run)
//! runs the whole-node simulator instead. BRAID_SIM_TRACE=1 prints the run's story, BRAID_SIM_LOG=FILTER
//! the nodes' own log lines (a tracing filter, e.g. `info` or `braid_node::meta=debug`).

use braid_tests::node_sim::{run_nodes, Mutation, NodeFaults, NodeSimConfig};
use braid_tests::{run, Faults, SimConfig};

/// `--mutation NAME`: a known bug put back (see braid_node::mutation).
fn mutation(args: &[String]) -> Option<Mutation> {
    let name = args.iter().position(|a| a == "--mutation").and_then(|i| args.get(i + 1))?;
    Some(match name.as_str() {
        "ack-before-sync" => Mutation::AckBeforeSync,
        "stale-leader-reports" => Mutation::StaleLeaderReports,
        "sessions-never-expire" => Mutation::SessionsNeverExpire,
        "commits-ignore-generation" => Mutation::CommitsIgnoreGeneration,
        "sync-answered-at-once" => Mutation::SyncAnsweredAtOnce,
        "watches-stay" => Mutation::WatchesStay,
        "aborted-hidden" => Mutation::AbortedTransactionsHidden,
        "stale-connections-heard" => Mutation::StaleConnectionsHeard,
        other => panic!("unknown mutation {other}"),
    })
}

/// The seeds to run: `--seed N`, or `--seeds COUNT` from `--first N` (100 from 1).
fn seeds(value: &dyn Fn(&str) -> Option<u64>) -> Vec<u64> {
    match value("--seed") {
        Some(seed) => vec![seed],
        None => {
            let first = value("--first").unwrap_or(1);
            (first..first + value("--seeds").unwrap_or(100)).collect()
        }
    }
}

/// `--nodes-sim`: whole nodes (shards, metadata store, ZooKeeper server, coordinators) driven
/// by ZooKeeper and Kafka clients.
fn nodes_sim(args: &[String], value: &dyn Fn(&str) -> Option<u64>) {
    let steps = value("--steps").unwrap_or(6_000);
    let seeds = seeds(value);
    let mut total_steps = 0u64;
    for seed in seeds {
        let mut config = NodeSimConfig::new(seed, steps);
        if args.iter().any(|a| a == "--calm") {
            config.faults = NodeFaults::none();
        }
        if let Some(nodes) = value("--nodes") {
            config.settings.nodes = nodes as usize;
        }
        if let Some(txn_ops) = value("--txn-ops") {
            config.txn_ops = txn_ops;
        }
        if let Some(replaced) = value("--disk-replaced") {
            config.faults.disk_replaced = replaced;
        }
        if let Some(bytes) = value("--meta-segment-bytes") {
            config.settings.meta_segment_bytes = Some(bytes);
        }
        config.mutation = mutation(args);
        match run_nodes(&config) {
            Ok(outcome) => {
                total_steps += outcome.steps;
                println!("seed {seed}: ok {outcome:?}");
            }
            Err(violation) => {
                eprintln!("FAILED: {violation}");
                eprintln!(
                    "replay: cargo run -p braid-tests --release --bin braid-sim -- --nodes-sim --seed {seed} --steps {steps} --nodes {}",
                    config.settings.nodes
                );
                std::process::exit(1);
            }
        }
    }
    println!("all seeds passed, {total_steps} steps");
}

fn main() {
    // BRAID_SIM_LOG=info (a tracing filter): the nodes' own log lines, on stderr.
    if let Ok(filter) = std::env::var("BRAID_SIM_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(|v| v.parse::<u64>().expect(flag))
    };
    if args.iter().any(|a| a == "--nodes-sim") {
        return nodes_sim(&args, &value);
    }
    let steps = value("--steps").unwrap_or(5_000);
    let nodes = value("--nodes").unwrap_or(3) as usize;
    let faults = if args.iter().any(|a| a == "--calm") { Faults::none() } else { Faults::harsh() };
    let seeds = seeds(&value);
    let mut total_steps = 0u64;
    for seed in seeds {
        let config = SimConfig {
            nodes,
            seed,
            steps,
            faults: faults.clone(),
            propose: value("--propose").unwrap_or(300),
            retention: value("--retention").unwrap_or(20),
            membership: value("--membership").unwrap_or(5),
            // Quiet groups on even seeds, as the default test run has them, unless told.
            quiesce: value("--quiesce").map_or(seed % 2 == 0, |q| q != 0),
        };
        match run(&config) {
            Ok(outcome) => {
                total_steps += steps;
                println!("seed {seed}: ok {outcome:?}");
            }
            Err(violation) => {
                eprintln!("seed {seed}: FAILED: {violation}");
                eprintln!(
                    "replay: cargo run -p braid-tests --release --bin braid-sim -- --seed {seed} --steps {steps} --nodes {nodes} --membership {} --retention {} --quiesce {} --propose {}",
                    config.membership, config.retention, u8::from(config.quiesce), config.propose
                );
                std::process::exit(1);
            }
        }
    }
    println!("all seeds passed, {total_steps} steps");
}
