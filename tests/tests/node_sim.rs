//! The whole-node simulator over a bounded set of seeds (default CI); `braid-sim --nodes-sim`
//! runs long campaigns.

use braid_tests::node_sim::{run_nodes, NodeSimConfig};

#[test]
fn whole_nodes_keep_what_they_acknowledged_under_faults() {
    let seeds: u64 = std::env::var("BRAID_NODE_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    for seed in 1..=seeds {
        let config = NodeSimConfig::new(seed, 6_000);
        match run_nodes(&config) {
            Ok(outcome) => eprintln!("seed {seed}: {outcome:?}"),
            Err(e) => panic!("{e}\nreplay: cargo run -p braid-tests --release --bin braid-sim -- --nodes-sim --seed {seed} --steps 6000"),
        }
    }
}
