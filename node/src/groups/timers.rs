//! A group's clocks: the session timeouts members are dropped after, the deadline of a
//! rebalance, and the initial delay of a new group's first one. Time comes in from the shard.

use super::membership::State;
use super::Coordinator;

/// How long a new group waits for more members before its first rebalance completes
/// (Kafka's `group.initial.rebalance.delay.ms` is 3000).
pub const INITIAL_REBALANCE_DELAY_MS: i64 = 300;

impl Coordinator {
    /// Session timeouts and rebalance deadlines.
    pub fn tick(&mut self, now_ms: i64) {
        for g in self.groups.values_mut() {
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| m.join.is_none() && now_ms - m.last_heard_ms > m.session_timeout_ms)
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                tracing::info!(member = %id, "group member's session expired");
                g.remove_member(&id, now_ms);
            }
            if g.state == State::PreparingRebalance {
                let forced = now_ms >= g.rebalance_deadline_ms;
                g.maybe_complete_join(now_ms, forced);
            }
        }
        for g in self.groups.values_mut() {
            g.pending.retain(|(_, deadline)| *deadline > now_ms);
        }
        self.groups.retain(|_, g| g.state != State::Empty || g.persist || !g.pending.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::tests::join;
    use kafka_protocol::ResponseError;

    #[test]
    fn a_member_id_handed_out_is_forgotten_if_it_never_joins() {
        let mut c = Coordinator::default();
        let id = join(&mut c, "", &["range"], 0).try_recv().unwrap().member_id;
        c.tick(10_001);
        let late = join(&mut c, &id, &["range"], 10_002).try_recv().unwrap();
        assert_eq!(late.error, ResponseError::UnknownMemberId.code());
        c.tick(10_003);
        assert!(c.list(0).is_empty(), "nothing is kept for it");
    }
}
