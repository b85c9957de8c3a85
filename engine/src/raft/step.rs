//! A message in: a quiet group wakes unless the message keeps it quiet. Forwards and pre-votes
//! are handled as they come; every other message first obeys the term rules (a higher term
//! makes this node a follower; a lower one is dropped, a deposed leader told of the newer
//! term), then goes to its handler in `election.rs` or `replication.rs`.

use super::{Body, Message, Raft, RaftLog, Role};

impl<L: RaftLog> Raft<L> {
    /// Handles one message (a quiet group wakes for anything but what keeps it quiet).
    pub fn step(&mut self, msg: Message) {
        self.step_quiet_or_awake(msg);
        self.check_invariants();
    }

    fn step_quiet_or_awake(&mut self, msg: Message) {
        if !self.quiesced {
            return self.step_awake(msg);
        }
        if !self.keeps_quiet(&msg) {
            self.wake();
            return self.step_awake(msg);
        }
        let before = (self.hard.term, self.leader, self.role);
        self.step_awake(msg);
        if (self.hard.term, self.leader, self.role) != before {
            self.wake();
        }
    }

    fn step_awake(&mut self, msg: Message) {
        match &msg.body {
            Body::Forward { entry } => {
                if self.role == Role::Leader {
                    let _ = self.propose(entry);
                }
                return;
            }
            Body::PreVote { last_end, last_term, knew_leader } => {
                self.handle_pre_vote(&msg, (*last_end, *last_term), *knew_leader);
                return;
            }
            // The driver's (a state machine snapshot on its way): nothing for raft.
            Body::SnapshotChunk { .. } | Body::SnapshotAck { .. } => return,
            Body::PreVoteReply { granted, knew_leader } => {
                self.handle_pre_vote_reply(&msg, *granted, *knew_leader);
                return;
            }
            Body::Vote { transfer: false, .. } if msg.term > self.hard.term && self.in_lease() => return,
            _ => {}
        }
        if msg.term > self.hard.term {
            let leader = matches!(msg.body, Body::Append { .. } | Body::Heartbeat { .. } | Body::Reset { .. })
                .then_some(msg.from);
            self.become_follower(msg.term, leader);
        } else if msg.term < self.hard.term {
            if matches!(msg.body, Body::Append { .. } | Body::Heartbeat { .. } | Body::Reset { .. }) {
                // Tell a deposed leader about the newer term.
                let end = self.log.last().0;
                self.send(msg.from, Body::AppendReply { accepted: false, end });
            }
            return;
        }
        match msg.body {
            Body::Vote { last_end, last_term, knew_leader, .. } => {
                self.handle_vote(msg.from, (last_end, last_term), knew_leader)
            }
            Body::VoteReply { granted, knew_leader } => self.handle_vote_reply(msg.from, granted, knew_leader),
            Body::Append { prev_end, prev_term, entries, commit } => {
                self.become_follower(msg.term, Some(msg.from));
                self.handle_append(msg.from, prev_end, prev_term, entries, commit);
                self.heard_leader(Some(commit));
            }
            Body::Heartbeat { commit, sent_end, quiesce } => {
                self.handle_heartbeat(msg.from, msg.term, commit, sent_end, quiesce);
                self.heard_leader(Some(commit));
            }
            Body::Reset { start, start_term, voters } => {
                self.handle_reset(msg.from, msg.term, start, start_term, voters);
                self.heard_leader(None);
            }
            Body::AppendReply { accepted, end } => self.handle_append_reply(msg.from, accepted, end),
            Body::TimeoutNow => self.handle_timeout_now(msg.from),
            Body::HeartbeatReply { end, sent_end } => self.handle_heartbeat_reply(msg.from, end, sent_end),
            Body::PreVote { .. }
            | Body::PreVoteReply { .. }
            | Body::Forward { .. }
            | Body::SnapshotChunk { .. }
            | Body::SnapshotAck { .. } => {
                unreachable!("handled above")
            }
        }
    }
}
