//! Braid's deterministic core.
//!
//! Everything here is synchronous and single-threaded: no clock reads, no sockets, no threads.
//! Time arrives as arguments (`now_ms`), I/O goes through the [`io::Storage`] trait, so the same
//! code runs on a shard's io_uring and inside the seeded simulator.

pub mod buggify;
pub mod hash;
pub mod ids;
pub mod io;
pub mod log;
pub mod raft;
pub mod rng;
pub mod tree;
