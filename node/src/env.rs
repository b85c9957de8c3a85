//! The environment a node's state machines run in. The time they read, the randomness they
//! draw and the work they hand to another thread come from here, never from the system
//! directly: a running node has [`SystemEnv`], the simulator a [`SimEnv`] whose clock it
//! moves and whose generator it seeds, so that a failing seed replays exactly.
//!
//! The tidy test (tests/tests/tidy.rs) fails on a clock, thread or randomness call in the
//! state machines' files; this module and the runtime are where those calls live.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

pub trait Env: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// 64 random bits.
    fn random(&self) -> u64;
    /// A random (version 4) UUID.
    fn uuid(&self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.random().to_le_bytes());
        bytes[8..].copy_from_slice(&self.random().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
    /// Runs `work` where it does not hold the caller's thread: a thread named `name` on a
    /// running node, at once in simulation. Err when no thread could be started (`work` did
    /// not run).
    fn run_blocking(&self, name: &str, work: Box<dyn FnOnce() + Send>) -> std::io::Result<()>;
}

impl std::fmt::Debug for dyn Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

/// The environment as a shared handle, held by [`crate::shared::Shared`] and the state
/// machines.
pub type SharedEnv = Arc<dyn Env>;

/// The real clock, the system's randomness and threads.
pub struct SystemEnv;

impl Env for SystemEnv {
    fn now_ms(&self) -> i64 {
        crate::process::now_ms()
    }

    fn random(&self) -> u64 {
        uuid::Uuid::new_v4().as_u64_pair().0
    }

    fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::new_v4()
    }

    fn run_blocking(&self, name: &str, work: Box<dyn FnOnce() + Send>) -> std::io::Result<()> {
        std::thread::Builder::new().name(name.to_owned()).spawn(work).map(drop)
    }
}

/// A simulated environment: a clock that moves only when told, and a seeded generator
/// (SplitMix64: every seed gives its own sequence, the same on every run).
pub struct SimEnv {
    now_ms: AtomicI64,
    state: AtomicU64,
}

impl SimEnv {
    pub fn new(seed: u64, start_ms: i64) -> Self {
        SimEnv { now_ms: AtomicI64::new(start_ms), state: AtomicU64::new(seed) }
    }

    /// Moves the clock on by `ms`.
    pub fn advance(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Env for SimEnv {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    fn random(&self) -> u64 {
        let mut z = self.state.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn run_blocking(&self, _name: &str, work: Box<dyn FnOnce() + Send>) -> std::io::Result<()> {
        work();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_sequence_and_seeds_differ() {
        let draw = |seed| {
            let env = SimEnv::new(seed, 0);
            (0..4).map(|_| env.random()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let env = SimEnv::new(7, 0);
        assert_eq!(env.uuid().get_version_num(), 4);
        assert_ne!(env.uuid(), env.uuid());
    }

    #[test]
    fn the_simulated_clock_moves_only_when_told() {
        let env = SimEnv::new(1, 1_000);
        assert_eq!(env.now_ms(), 1_000);
        env.advance(250);
        assert_eq!(env.now_ms(), 1_250);
    }
}
