//! Bounded simulation runs for CI: many seeds, calm and harsh. Longer runs: the braid-sim binary
//! (docs in tests/README.md).

use braid_tests::{run, Faults, Outcome, SimConfig};

/// Runs `count` seeds from `first` (membership changes at `membership` per mille); panics with
/// the replay command at the first violation, else returns every outcome.
fn seeds_with(first: u64, count: u64, steps: u64, nodes: usize, faults: Faults, membership: u64) -> Vec<Outcome> {
    (first..first + count)
        .map(|seed| {
            // Half the seeds run groups that go quiet when idle, as a node's partitions do.
            let quiesce = seed % 2 == 0;
            let config = SimConfig {
                nodes,
                seed,
                steps,
                faults: faults.clone(),
                propose: 300,
                retention: 20,
                membership,
                quiesce,
            };
            run(&config).unwrap_or_else(|violation| {
                panic!(
                    "seed {seed}: {violation}\nreplay: cargo run -p braid-tests --release --bin braid-sim -- --seed {seed} --steps {steps} --nodes {nodes} --membership {membership}"
                )
            })
        })
        .collect()
}

fn seeds(first: u64, count: u64, steps: u64, nodes: usize, faults: Faults) {
    seeds_with(first, count, steps, nodes, faults, 5);
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
        // No membership changes either: removing the leader or handing over elects another.
        membership: 0,
        quiesce: false,
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
        quiesce: false,
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
        quiesce: true,
    };
    let first = format!("{:?}", run(&config).unwrap());
    let second = format!("{:?}", run(&config).unwrap());
    assert_eq!(first, second);
}

#[test]
fn laggards_catch_up_past_a_deleted_prefix() {
    // With retention on, some seeds make a follower fall behind the leader's log start; the
    // leader then resets it. Across these seeds that path must run, and safety must hold.
    let resets: usize = seeds_with(1000, 12, 1500, 3, Faults::harsh(), 5).iter().map(|o| o.resets).sum();
    assert!(resets > 0, "no follower needed a reset: the catch-up path went untested");
}

#[test]
fn voters_come_and_go_one_at_a_time_without_losing_anything() {
    // Leaders are asked now and then to add or remove a voter (themselves included); the
    // healing phase adds every node back. Across these seeds changes must commit, and every
    // safety property must hold.
    let changes: usize = seeds_with(2000, 10, 1500, 3, Faults::harsh(), 30).iter().map(|o| o.config_changes).sum();
    assert!(changes >= 10, "only {changes} configuration changes were accepted");
}

#[test]
fn quiet_groups_keep_every_safety_property_and_do_go_quiet() {
    // Few proposals, so the groups are idle often: quiet, woken, and quiet again, through
    // crashes, partitions and liveness news that comes late or wrong.
    let outcomes: Vec<Outcome> = (3000..3012)
        .map(|seed| {
            let config = SimConfig {
                nodes: 3,
                seed,
                steps: 1500,
                faults: Faults::harsh(),
                propose: 20,
                retention: 20,
                membership: 5,
                quiesce: true,
            };
            run(&config).unwrap_or_else(|violation| {
                panic!("seed {seed}: {violation}\nreplay: cargo run -p braid-tests --release --bin braid-sim -- --seed {seed} --steps 1500 --nodes 3 --membership 5 --quiesce 1 --propose 20")
            })
        })
        .collect();
    let quiet: usize = outcomes.iter().map(|o| o.quiet_ticks).sum();
    let acked: usize = outcomes.iter().map(|o| o.acked).sum();
    assert!(quiet > 12 * 1500, "groups were quiet for only {quiet} node-steps");
    assert!(acked > 12 * 10, "only {acked} writes acknowledged");
}
