//! Fault points that fire only in simulation, in the manner of FoundationDB's `BUGGIFY`.
//!
//! A fault point is a place where the code may legally take an unusual but correct path (roll
//! a segment early, send a shorter append, start an election before its timeout, take a
//! snapshot now): `if buggify!(per_mille) { ... }`. On a running node nothing ever enables them
//! and the check is one thread-local read that answers false. The simulator enables them for its
//! thread with a seed ([`enable`]); then each site, the first time it is reached, is switched on
//! for the whole run with probability 1/4 (so a run explores a few unusual paths hard instead of
//! all of them thinly), and a site that is on fires with its own chance per mille each time it is
//! reached. All of it is drawn from the seed, so a failing seed replays exactly.
//!
//! Being in a simulation also turns on the invariant checks that walk whole structures
//! ([`expensive_checks`]), which debug builds run anyway.

use crate::rng::SimRng;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// One site in four is switched on for a run.
const SITE_ON_PER_MILLE: u64 = 250;

struct State {
    rng: SimRng,
    /// Each site reached so far: switched on for this run, and how often it fired.
    sites: BTreeMap<&'static str, (bool, u64)>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Enables the fault points on this thread, drawn from `seed` (the simulator, at the start of
/// a run).
pub fn enable(seed: u64) {
    STATE.with(|s| *s.borrow_mut() = Some(State { rng: SimRng::new(seed), sites: BTreeMap::new() }));
}

/// Disables them again, returning how often each site that was switched on fired.
pub fn disable() -> Vec<(&'static str, u64)> {
    STATE.with(|s| s.borrow_mut().take()).map_or_else(Vec::new, |state| {
        state.sites.into_iter().filter(|(_, (on, _))| *on).map(|(site, (_, fired))| (site, fired)).collect()
    })
}

/// True if the fault points are enabled on this thread (a simulation runs here).
pub fn enabled() -> bool {
    STATE.with(|s| s.borrow().is_some())
}

/// True where invariant checks that walk whole structures run: debug builds and simulations.
pub fn expensive_checks() -> bool {
    cfg!(debug_assertions) || enabled()
}

/// Whether the fault point `site` fires now (see the module docs); use [`buggify!`].
pub fn fire(site: &'static str, per_mille: u64) -> bool {
    STATE.with(|s| {
        let mut state = s.borrow_mut();
        let Some(state) = state.as_mut() else { return false };
        let on = match state.sites.get(site) {
            Some((on, _)) => *on,
            None => {
                let on = state.rng.chance(SITE_ON_PER_MILLE, 1000);
                state.sites.insert(site, (on, 0));
                on
            }
        };
        if on && state.rng.chance(per_mille, 1000) {
            state.sites.get_mut(site).expect("site").1 += 1;
            true
        } else {
            false
        }
    })
}

/// A fault point: true (in a simulation only, where this site was switched on for the run) with
/// the given chance per mille, 50 if not given.
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::buggify!(50)
    };
    ($per_mille:expr) => {
        $crate::buggify::fire(concat!(file!(), ":", line!()), $per_mille)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_fires_unless_enabled_and_replays_from_its_seed() {
        assert!(!enabled());
        assert!((0..10_000).all(|_| !buggify!(1000)));
        let run = |seed| {
            enable(seed);
            let fired: Vec<bool> = (0..2_000).map(|i| if i % 2 == 0 { buggify!(100) } else { buggify!(500) }).collect();
            (fired, disable())
        };
        let (a, sites_a) = run(7);
        assert_eq!(run(7), (a.clone(), sites_a.clone()));
        assert!(!enabled());
        // Over many seeds, some runs switch a site on and some leave it off.
        let on: Vec<usize> = (0..40).map(|seed| run(seed).1.len()).collect();
        assert!(on.iter().any(|&n| n > 0) && on.contains(&0), "{on:?}");
        let fired = sites_a.iter().map(|(_, n)| n).sum::<u64>() as usize;
        assert_eq!(fired, a.iter().filter(|&&f| f).count());
    }
}
