//! Bounded simulation runs for CI: many seeds, calm and harsh. Longer runs: the braid-sim binary
//! (docs in tests/README.md).

use braid_tests::{run, Faults, SimConfig};

fn seeds(first: u64, count: u64, steps: u64, nodes: usize, faults: Faults) {
    for seed in first..first + count {
        let config =
            SimConfig { nodes, seed, steps, faults: faults.clone(), propose: 300, retention: 20, membership: 5 };
        if let Err(violation) = run(&config) {
            panic!(
                "seed {seed}: {violation}\nreplay: cargo run -p braid-tests --release --bin braid-sim -- --seed {seed} --steps {steps} --nodes {nodes}"
            );
        }
    }
}

#[test]
fn a_calm_three_node_group_elects_one_leader_and_commits() {
    let outcome = run(&SimConfig {
        nodes: 3,
        seed: 1,
        steps: 300,
        faults: Faults::none(),
        propose: 300,
        retention: 20,
        membership: 5,
    })
    .unwrap();
    assert!(outcome.acked > 20, "{outcome:?}");
    assert_eq!(outcome.leaders, 1, "no fault, one election: {outcome:?}");
}

#[test]
fn a_single_voter_commits_on_its_own() {
    let outcome = run(&SimConfig {
        nodes: 1,
        seed: 2,
        steps: 200,
        faults: Faults::none(),
        propose: 500,
        retention: 20,
        membership: 5,
    })
    .unwrap();
    assert!(outcome.acked > 50, "{outcome:?}");
}

#[test]
fn three_nodes_under_harsh_faults_keep_every_safety_property() {
    seeds(100, 24, 1500, 3, Faults::harsh());
}

#[test]
fn five_nodes_under_harsh_faults_keep_every_safety_property() {
    seeds(500, 12, 1500, 5, Faults::harsh());
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig {
        nodes: 3,
        seed: 77,
        steps: 800,
        faults: Faults::harsh(),
        propose: 300,
        retention: 20,
        membership: 5,
    };
    let first = format!("{:?}", run(&config).unwrap());
    let second = format!("{:?}", run(&config).unwrap());
    assert_eq!(first, second);
}

#[test]
fn laggards_catch_up_past_a_deleted_prefix() {
    // With retention on, some seeds make a follower fall behind the leader's log start; the
    // leader then resets it. Across these seeds that path must run, and safety must hold.
    let mut resets = 0;
    for seed in 1000..1012 {
        let config = SimConfig {
            nodes: 3,
            seed,
            steps: 1500,
            faults: Faults::harsh(),
            propose: 300,
            retention: 20,
            membership: 5,
        };
        let outcome = run(&config).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
        resets += outcome.resets;
    }
    assert!(resets > 0, "no follower needed a reset: the catch-up path went untested");
}

#[test]
fn voters_come_and_go_one_at_a_time_without_losing_anything() {
    // Leaders are asked now and then to add or remove a voter (themselves included); the
    // healing phase adds every node back. Across these seeds changes must commit, and every
    // safety property must hold.
    let mut changes = 0;
    for seed in 2000..2010 {
        let config = SimConfig {
            nodes: 3,
            seed,
            steps: 1500,
            faults: Faults::harsh(),
            propose: 300,
            retention: 20,
            membership: 30,
        };
        let outcome = run(&config).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
        changes += outcome.config_changes;
    }
    assert!(changes >= 10, "only {changes} configuration changes were accepted");
}
