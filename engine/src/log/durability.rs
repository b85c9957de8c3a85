//! Group commit bookkeeping: who waits for which offset to become durable.
//!
//! Appenders register the offset their batch ends at; after one fdatasync covers many appends,
//! [`DurabilityWaiters::release`] hands back every waiter the sync made durable, in append order.
//! Generic over the waiter (a channel, a task waker, a request id) so the engine stays sans-IO.

use std::collections::VecDeque;

/// Waiters in increasing offset order (appends register in order, so a deque suffices).
#[derive(Debug)]
pub struct DurabilityWaiters<T> {
    queue: VecDeque<(i64, T)>,
}

impl<T> DurabilityWaiters<T> {
    pub fn new() -> Self {
        Self { queue: VecDeque::new() }
    }

    /// `next_offset` is one past the last offset of the waiter's batch.
    pub fn wait(&mut self, next_offset: i64, waiter: T) {
        if let Some((last, _)) = self.queue.back() {
            assert!(next_offset >= *last, "waiters must register in append order");
        }
        self.queue.push_back((next_offset, waiter));
    }

    /// Removes and returns the waiters whose batches are below `durable_offset`.
    pub fn release(&mut self, durable_offset: i64) -> impl Iterator<Item = T> + '_ {
        let ready = self.queue.iter().take_while(|(offset, _)| *offset <= durable_offset).count();
        self.queue.drain(..ready).map(|(_, waiter)| waiter)
    }

    /// Removes every waiter (the log failed or was truncated under them).
    pub fn fail_all(&mut self) -> impl Iterator<Item = T> + '_ {
        self.queue.drain(..).map(|(_, waiter)| waiter)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

impl<T> Default for DurabilityWaiters<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::DurabilityWaiters;

    #[test]
    fn release_hands_back_only_durable_waiters_in_order() {
        let mut waiters = DurabilityWaiters::new();
        waiters.wait(10, "a");
        waiters.wait(20, "b");
        waiters.wait(30, "c");
        assert_eq!(waiters.release(19).collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(waiters.release(30).collect::<Vec<_>>(), vec!["b", "c"]);
        assert!(waiters.is_empty());
    }
}
