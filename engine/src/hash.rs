//! Hash maps whose iteration order a seed decides. The standard library's maps draw their
//! keys from the system at every construction, so the same inputs iterate in another order on
//! every run; the state machines iterate maps (which groups flush first, which sessions expire
//! first), and the simulator must replay a seed exactly. Here the keys are the process's:
//! random on a running node ([`set_keys`] at start, which keeps crafted keys from colliding),
//! fixed by the seed in simulation.

use std::hash::{BuildHasher, DefaultHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

static KEY0: AtomicU64 = AtomicU64::new(0);
static KEY1: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THREAD_KEYS: std::cell::Cell<Option<(u64, u64)>> = const { std::cell::Cell::new(None) };
}

/// Sets the keys every map built from now on hashes with (on threads without keys of their
/// own).
pub fn set_keys(k0: u64, k1: u64) {
    KEY0.store(k0, Relaxed);
    KEY1.store(k1, Relaxed);
}

/// Sets the keys maps built on this thread hash with (the simulator: runs on other threads
/// keep theirs).
pub fn set_thread_keys(k0: u64, k1: u64) {
    THREAD_KEYS.with(|k| k.set(Some((k0, k1))));
}

/// SipHash (the standard library's) keyed by the process's keys, taken when the map is built.
#[derive(Debug, Clone, Copy)]
pub struct KeyedState {
    k0: u64,
    k1: u64,
}

impl Default for KeyedState {
    fn default() -> Self {
        let (k0, k1) = THREAD_KEYS.with(|k| k.get()).unwrap_or_else(|| (KEY0.load(Relaxed), KEY1.load(Relaxed)));
        KeyedState { k0, k1 }
    }
}

impl BuildHasher for KeyedState {
    type Hasher = DefaultHasher;

    fn build_hasher(&self) -> DefaultHasher {
        let mut hasher = DefaultHasher::new();
        hasher.write_u64(self.k0);
        hasher.write_u64(self.k1);
        hasher
    }
}

pub type HashMap<K, V> = std::collections::HashMap<K, V, KeyedState>;
pub type HashSet<T> = std::collections::HashSet<T, KeyedState>;

#[cfg(test)]
mod tests {
    use super::*;

    fn order(keys: (u64, u64)) -> Vec<u32> {
        let state = KeyedState { k0: keys.0, k1: keys.1 };
        let mut set = std::collections::HashSet::with_hasher(state);
        set.extend(0..64u32);
        set.into_iter().collect()
    }

    #[test]
    fn the_same_keys_iterate_in_the_same_order_and_others_do_not() {
        assert_eq!(order((1, 2)), order((1, 2)));
        assert_ne!(order((1, 2)), order((3, 4)));
    }
}
