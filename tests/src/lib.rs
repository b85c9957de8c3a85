//! The deterministic simulator: a raft group of N nodes, each an engine state machine over its
//! own simulated disk, in one thread, driven by one seed.
//!
//! Every step: time advances one tick on every live node; due messages are delivered in a
//! seeded order; each node runs its driver round (persist the hard state, flush the log, then
//! send); the network drops, delays, duplicates and reorders; partitions come and go; nodes
//! crash (their disks keep only what was synced, tearing the rest) and restart; the leader gets
//! client proposals. After every step the checkers run:
//!
//! - election safety: at most one leader per term, ever;
//! - state machine safety / log matching: the committed prefixes of all nodes agree;
//! - leader completeness and durability: every acknowledged (committed) entry is in the log of
//!   every later leader, and on every node at the end once the network heals.
//!
//! A failure names the seed; `cargo run -p braid-tests --release --bin braid-sim -- --seed N`
//! replays it exactly.

pub mod cluster;
pub mod node_sim;

pub use cluster::{run, Faults, Outcome, SimConfig};
