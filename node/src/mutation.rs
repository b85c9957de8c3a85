//! Known bugs, kept so the simulator can prove it still finds them. Each [`Mutation`] puts back
//! a mistake the node once made or could make, at the one place it lives; the mutation tests
//! (tests/tests/node_sim.rs) switch one on and fail unless the simulator reports a violation
//! within a bounded number of seeds. None is ever on in a running node: only the simulator sets
//! one, for its own thread, and the check is a thread-local read.

use std::cell::Cell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// The round lets every message leave when a flush begins, before its sync: a follower
    /// acknowledges appends its disk does not hold yet.
    AckBeforeSync,
    /// The controller writes a partition leader's report even when the tree already holds a
    /// newer leader epoch (a late report from a deposed leader wins).
    StaleLeaderReports,
    /// ZooKeeper sessions whose owner went quiet never expire (their ephemerals stay).
    SessionsNeverExpire,
    /// The group coordinator accepts an offset commit whatever its generation.
    CommitsIgnoreGeneration,
    /// A ZooKeeper `sync` is answered at once by the serving node, without the round through
    /// the leader that makes it catch up.
    SyncAnsweredAtOnce,
    /// A data watch stays registered after it fires (watches are one-shot in ZooKeeper).
    WatchesStay,
    /// A read_committed fetch gets no aborted transactions with its records, so the client
    /// cannot drop them.
    AbortedTransactionsHidden,
    /// The transaction coordinator acts on a request from a connection the client has left (a
    /// late EndTxn ends the client's next transaction).
    StaleConnectionsHeard,
}

thread_local! {
    static ACTIVE: Cell<Option<Mutation>> = const { Cell::new(None) };
}

/// True if `mutation` is switched on for this thread.
pub fn active(mutation: Mutation) -> bool {
    ACTIVE.with(|a| a.get() == Some(mutation))
}

/// Switches one mutation on for this thread (None: the node as it is).
pub fn set(mutation: Option<Mutation>) {
    ACTIVE.with(|a| a.set(mutation));
}
