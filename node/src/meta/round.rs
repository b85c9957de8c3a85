//! The group-commit round of the metadata group: persisting the log (on this thread, or with
//! its fdatasync off it), applying what is newly committed and durable to the tree, answering
//! the clients whose transactions applied, publishing Kafka's metadata to the shards when it
//! changed, and running the duties; also reopening the log after a failed persist.

use super::paths::{is_kafka_path, reply_for};
use super::producer_ids::PRODUCER_ID_BLOCK_PATH;
use super::{MetaStore, SharedSnapshot};
use crate::msg::MetaReply;
use crate::replica::{PendingPersist, Persist};
use crate::storage::NodeStorage;
use crate::zk::server::AppliedTxn;
use anyhow::Context;
use braid_engine::log::batch::{records, CONTROL_ATTRIBUTE};
use braid_engine::raft::Message;
use braid_engine::tree::Txn;
use kafka_protocol::ResponseError;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Ticks between runs of the duties (registration, bootstrap) while they have work left.
const DUTY_EVERY_TICKS: u32 = 20;

/// How [`MetaStore::begin_round`] left a round.
pub enum RoundStart {
    /// The log's fdatasync must run (off the shard's thread) before the round can end; what
    /// the round could do meanwhile (apply what was durable already).
    Syncing(PendingPersist, MetaRound),
    /// Nothing was left to sync (or persisting failed): the round is done.
    Done(MetaRound),
}

/// What a round of the metadata group produced.
#[derive(Default)]
pub struct MetaRound {
    /// Messages for peers (persisted first).
    pub messages: Vec<Message>,
    /// The tree changed: the new snapshot, and the clients whose transactions it holds.
    pub snapshot: Option<SharedSnapshot>,
    pub replies: Vec<(oneshot::Sender<MetaReply>, MetaReply)>,
    /// The tree just caught up with what this node had before it stopped (once per start).
    pub caught_up: bool,
}

impl<S: NodeStorage> MetaStore<S> {
    /// Persists, applies what is newly committed, runs the duties (all on this thread).
    pub fn round(&mut self, now_ms: i64) -> MetaRound {
        let persisted = self.replica.persist();
        self.finish_round(persisted, now_ms)
    }

    /// Starts a round whose fdatasync may run off this thread: a [`RoundStart::Syncing`] goes
    /// to [`MetaStore::end_round`] with the sync's outcome.
    pub fn begin_round(&mut self, now_ms: i64) -> RoundStart {
        match self.replica.persist_begin() {
            Ok(Persist::Syncing(pending, early)) => {
                let mut round = self.advance_round(now_ms);
                round.messages.splice(0..0, early);
                RoundStart::Syncing(pending, round)
            }
            Ok(Persist::Done(messages)) => RoundStart::Done(self.finish_round(Ok(messages), now_ms)),
            Err(e) => RoundStart::Done(self.finish_round(Err(e), now_ms)),
        }
    }

    /// Ends a round from [`MetaStore::begin_round`] once its sync is done.
    pub fn end_round(&mut self, pending: PendingPersist, synced: std::io::Result<()>, now_ms: i64) -> MetaRound {
        let persisted = self.replica.persist_end(pending, synced);
        self.finish_round(persisted, now_ms)
    }

    /// The rest of a round once the log is persisted (or failed to be): applies what is newly
    /// committed, runs the duties.
    fn finish_round(&mut self, persisted: Result<Vec<Message>, String>, now_ms: i64) -> MetaRound {
        let messages = match persisted {
            Ok(messages) => messages,
            Err(e) => {
                self.recover_log(&e, now_ms);
                Vec::new()
            }
        };
        let mut round = self.advance(now_ms);
        round.messages = messages;
        round
    }

    /// A round without persisting, while a sync runs off the thread: applies what committed and
    /// is durable here (a commit the leader told of meanwhile), answers its clients, runs the
    /// duties. It sends nothing of raft's but a leader's own messages.
    pub fn advance_round(&mut self, now_ms: i64) -> MetaRound {
        let mut round = self.advance(now_ms);
        round.messages = self.replica.raft.take_leader_messages();
        round
    }

    /// What every round does once persisting is settled.
    fn advance(&mut self, now_ms: i64) -> MetaRound {
        let mut round = MetaRound::default();
        if !self.replica.is_leader() && !self.pending.is_empty() {
            for (_, reply) in std::mem::take(&mut self.pending) {
                let _ = reply.send(Err((ResponseError::NotController.code(), "the controller changed".into())));
            }
        }
        let applied_before = self.applied;
        let log_start = self.replica.raft.log().log_start_offset();
        if self.applied < log_start {
            // The log was reset past the tree (this member lacked what the leader had deleted):
            // nothing more can apply here. Said once; the node does not serve meanwhile
            // (`ready` wants everything committed applied).
            if !std::mem::replace(&mut self.tree_stranded, true) {
                tracing::warn!(
                    tree_zxid = self.applied,
                    log_start,
                    "the metadata log now starts past the tree (the leader had deleted what this \
                     member lacked): asking the leader for its tree snapshot"
                );
            }
        } else if let Err(e) = self.apply_committed(&mut round) {
            tracing::error!(error = %format!("{e:#}"), "metadata log: applying failed");
        }
        // The first round publishes whatever it has (a tree loaded from its snapshot may have
        // nothing to apply).
        let first = !std::mem::replace(&mut self.published, true);
        if (self.applied != applied_before || first) && std::mem::take(&mut self.kafka_changed) {
            self.current = Arc::new(self.refresh_snapshot());
            round.snapshot = Some(self.snapshot());
            // The tree moved: the duties look at it again now.
            self.duty_wait = 0;
        }
        if !self.caught_up && self.applied >= self.caught_up_at {
            self.caught_up = true;
            round.caught_up = true;
        }
        if let Some(now) = self.replica.leader_changed() {
            self.duty_wait = 0;
            // A leader this node knew is gone (or was re-elected in a new term): whatever was
            // forwarded to it and has not applied may be lost.
            if std::mem::replace(&mut self.known_leader, now).0.is_some() {
                self.zk.leader_changed();
            }
        }
        self.propose_leader_reports(now_ms);
        // Work proposed now goes out with the next round. The duties look again after
        // DUTY_EVERY_TICKS, or as soon as the tree's Kafka paths or the leader change (a new
        // leader bootstraps the tree in the round it learns it leads): not on every round, where
        // their lookups and JSON parsing cost a tenth of a busy shard 0.
        if self.duty_wait == 0 && self.applied == self.replica.raft.committed() {
            self.duties(now_ms);
            self.duty_wait = DUTY_EVERY_TICKS;
        }
        round
    }

    /// After a failed persist (a full disk, an I/O error) the log refuses writes until reopened.
    /// Reopening keeps what is durable (the tree never applied past it); this node starts over
    /// as a follower, and the leader sends again what was not durable. Logged and retried at
    /// most once a second, so a disk that stays full does not flood the log.
    fn recover_log(&mut self, error: &str, now_ms: i64) {
        if now_ms - self.log_failed_at_ms < 1000 {
            return;
        }
        self.log_failed_at_ms = now_ms;
        tracing::error!(%error, "metadata log: persisting failed; reopening it");
        let voters = self.replica.raft.voters().to_vec();
        match self.replica.reopen(voters, None) {
            Ok(report) => {
                tracing::warn!(?report.corruption, "metadata log reopened after an I/O failure");
                // Their entries were not durable and are gone; new ones may take their offsets.
                for (_, reply) in std::mem::take(&mut self.pending) {
                    let _ = reply.send(Err((
                        ResponseError::NotController.code(),
                        "the metadata log failed and was reopened; try again".into(),
                    )));
                }
            }
            Err(e) => tracing::error!(error = %e, "metadata log: reopening failed; trying again in a second"),
        }
    }

    fn apply_committed(&mut self, round: &mut MetaRound) -> anyhow::Result<()> {
        let log = self.replica.raft.log();
        let limit = self.replica.raft.committed().min(log.durable_offset());
        let mut claims = Vec::new();
        let now = self.env.now_ms();
        while self.applied < limit {
            let Some(slice) = log.read(self.applied, 1 << 20, Some(limit))? else { break };
            let bytes = log.read_bytes(&slice)?;
            let mut at = 0;
            while at < bytes.len() {
                let header = braid_engine::log::BatchHeader::parse(&bytes[at..])?;
                let batch = &bytes[at..at + header.total_bytes()];
                if header.attributes & CONTROL_ATTRIBUTE == 0 {
                    for record in records(batch)? {
                        let value = record.value.context("metadata record without a value")?;
                        let zxid = record.offset + 1;
                        let txn = match Txn::decode(value) {
                            Ok(txn) => txn,
                            Err(e) => {
                                tracing::error!(offset = record.offset, error = %e, "skipping an undecodable metadata record");
                                continue;
                            }
                        };
                        if zxid <= self.tree.last_zxid() {
                            // Already in the tree (it started from a snapshot).
                            continue;
                        }
                        if let Txn::Truncatable { below } = txn {
                            self.truncatable = self.truncatable.max(below);
                        }
                        let result = self.tree.apply(zxid, record.timestamp, &txn);
                        let events = self.tree.take_events();
                        for (_, path) in &events {
                            if is_kafka_path(path) {
                                self.kafka_changed = true;
                                self.dirty.note(path);
                            }
                        }
                        if result.is_ok() && matches!(&txn, Txn::SetData { path, .. } if path == PRODUCER_ID_BLOCK_PATH)
                        {
                            claims.push((zxid, txn.clone()));
                        }
                        self.zk.applied(
                            &self.tree,
                            now,
                            AppliedTxn { zxid, key: record.key, txn: &txn, result: &result, events: &events },
                        );
                        if let Some(reply) = self.pending.remove(&(header.next_offset())) {
                            self.kafka_changed = true;
                            round.replies.push((reply, reply_for(result.map(|_| ()))));
                        }
                    }
                }
                if let Some(reply) = self.pending.remove(&header.next_offset()) {
                    // Its transaction could not be applied (logged above): the client hears so.
                    let message = "the change was committed but could not be applied; see the node's log".to_owned();
                    round.replies.push((reply, Err((ResponseError::UnknownServerError.code(), message))));
                }
                at += header.total_bytes();
                self.applied = header.next_offset();
            }
        }
        for (zxid, txn) in claims {
            self.on_applied(zxid, &txn);
        }
        // Requests that waited for these transactions may have proposed more.
        self.propose_zk(now);
        self.finish_snapshot();
        let idle = self.snapshot_writing.is_none() && self.tree.snapshot_running().is_none();
        // A snapshot may also start early (simulation only): restarts then load one and the
        // log after it more often.
        if idle && (self.tree.last_zxid() >= self.snapshot_due || braid_engine::buggify!(20)) {
            self.tree.begin_snapshot();
            self.snapshot_started = Some(self.env.now_ms());
        }
        self.snapshot_slice();
        self.truncate_log();
        Ok(())
    }
}
