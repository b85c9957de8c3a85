//! The round (group commit): after any raft input, the hard states that changed go to the shard's
//! journal (one write, one fdatasync), then every dirty group's log is flushed (on the ring,
//! without blocking the shard); once durable, raft's messages leave, the producers whose batches
//! committed are answered and leader changes are published. Nothing leaves before what it promises
//! is durable. The metadata group's round runs its fdatasync on a thread of its own.

use super::*;

impl ShardState<UringStorage> {
    /// The shard's ring's completion eventfd, duplicated for the caller to own and wait on:
    /// readable whenever the ring completes something.
    pub fn ring_completion_fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        let raw = self.storage.completion_fd()?;
        // SAFETY: the ring owns `raw` for as long as this shard's storage lives; the duplicate
        // is the caller's.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) }.try_clone_to_owned()
    }
}

impl<S: NodeStorage> ShardState<S> {
    /// A partition group's hard state in the journals, if it is there.
    pub(super) fn journaled(&self, group: GroupId) -> Option<HardState> {
        match (self.journal.get(group), self.journaled_at_start.get(&group)) {
            (Some(a), Some(&b)) => Some(journal::newer(a, b)),
            (a, b) => a.or(b.copied()),
        }
    }

    /// Writes the hard state of every dirty group whose term or vote changed, in one journal
    /// write and one fdatasync; before any of their messages leaves (their rounds follow).
    /// If the journal fails, the groups keep their hard state dirty and each round writes it
    /// to the group's own file instead.
    pub(super) fn persist_hard_states(&mut self) {
        let mut states = Vec::new();
        for key in &self.dirty {
            let Some(p) = self.partitions.get_mut(key) else { continue };
            if p.replica.raft.take_hard_state_dirty() {
                states.push((p.replica.group, p.replica.raft.hard_state()));
            }
        }
        if let Err(e) = self.journal.append(&states) {
            tracing::error!(error = %e, groups = states.len(), "writing the hard-state journal failed; each group writes its own file");
            for (group, _) in &states {
                let Some(key) = self.groups.get(group) else { continue };
                if let Some(p) = self.partitions.get_mut(key) {
                    p.replica.raft.persist_failed(true, false);
                }
            }
        }
    }

    pub fn flush_needed(&self) -> Rc<Notify> {
        Rc::clone(&self.flush_needed)
    }

    /// From now on partition flushes run on the ring: the caller's flusher must then also wake
    /// on [`ShardState::ring_completion_fd`] and call [`ShardState::poll_flushes`].
    pub fn flush_partitions_on_ring(&mut self) {
        self.flush_on_ring = true;
    }

    /// True while a partition's flush runs on the ring.
    pub fn flushes_running(&self) -> bool {
        !self.flushing.is_empty()
    }

    /// Moves the running partition flushes on and ends those the device finished.
    pub fn poll_flushes(&mut self) {
        if self.flushing.is_empty() {
            return;
        }
        let mut ended = Vec::new();
        for (key, (_, pending)) in self.flushing.iter_mut() {
            let Some(p) = self.partitions.get_mut(key) else { continue };
            if let Some(result) = p.replica.flush_poll(pending) {
                ended.push((key.clone(), result));
            }
        }
        let mut committed_any = false;
        for (key, result) in ended {
            let Some((before, _)) = self.flushing.remove(&key) else { continue };
            committed_any |= self.after_persist(key, before, result);
        }
        if committed_any {
            self.shared.appended.notify_waiters();
        }
    }

    /// One raft round for every dirty group: persist (one fdatasync per log with appends:
    /// group commit), send what raft queued, release the producers whose batches committed.
    /// The metadata group's round leaves its fdatasync to the caller, to run off this thread
    /// while the shard serves clients and peers: the caller ends it with
    /// [`ShardState::end_meta_round`]. Until then the metadata group starts no other round.
    pub fn flush_dirty(&mut self) -> Option<PendingPersist> {
        self.open_pending();
        self.persist_hard_states();
        let mut committed_any = false;
        let dirty: Vec<(String, i32)> = self.dirty.drain().collect();
        for key in dirty {
            // Whatever made it dirty may have woken it: it ticks until it is quiet again.
            if self.partitions.get(&key).is_some_and(|p| !p.replica.raft.quiesced()) {
                self.awake.insert(key.clone());
            }
            if self.flushing.contains_key(&key) {
                // One flush at a time per log: the next round takes what came meanwhile.
                self.dirty.insert(key);
                continue;
            }
            let Some(p) = self.partitions.get_mut(&key) else { continue };
            let before = p.replica.raft.committed();
            let persisted = if self.flush_on_ring {
                match p.replica.flush_begin() {
                    Ok(Persist::Syncing(pending, early)) => {
                        send(&self.shared, p.replica.group, early);
                        self.flushing.insert(key, (before, pending));
                        continue;
                    }
                    Ok(Persist::Done(messages)) => Ok(messages),
                    Err(e) => Err(e),
                }
            } else {
                p.replica.persist()
            };
            committed_any |= self.after_persist(key, before, persisted);
        }
        if committed_any {
            self.shared.appended.notify_waiters();
        }
        if self.meta_dirty && !self.meta_syncing {
            self.meta_dirty = false;
            return self.meta_round();
        }
        if self.meta_dirty {
            // A sync runs: what committed meanwhile applies now, and the next round persists
            // what arrived (meta_dirty stays set).
            if let Some(meta) = self.meta.as_mut() {
                let round = meta.advance_round(self.shared.env.now_ms());
                self.publish_meta_round(round);
            }
        }
        None
    }

    /// The rest of a partition's persist round once its log is durable (or failed to be): the
    /// messages leave, the producers whose batches committed are answered, leader changes are
    /// published. True if the commit point moved.
    pub(super) fn after_persist(
        &mut self,
        key: (String, i32),
        before: i64,
        persisted: Result<Vec<Message>, String>,
    ) -> bool {
        let Some(p) = self.partitions.get_mut(&key) else { return false };
        match persisted {
            Ok(messages) => send(&self.shared, p.replica.group, messages),
            Err(e) => {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "persisting failed; the log will be reopened");
                let journaled = self.journal.get(p.replica.group);
                if let Err(e) = reopen(&key, p, &e, journaled) {
                    tracing::error!(topic = %key.0, partition = key.1, error = %e, "reopening failed");
                }
                return false;
            }
        }
        let committed = p.replica.raft.committed();
        if let Some(coordinator) = p.coordinator.as_mut() {
            apply_offsets(coordinator, p.replica.raft.log(), committed);
        }
        if let Some(coordinator) = p.txn_coordinator.as_mut() {
            let accepted = self.shared.connections_accepted.load(std::sync::atomic::Ordering::Relaxed);
            apply_txn_records(coordinator, p.replica.raft.log(), committed, accepted);
            // Markers of transactions just prepared are written at once, not at the next tick.
            txn::hand_over_plans(&key, p, self.markers.as_ref());
        }
        let log_start_offset = p.log_start();
        let (term, leading) = (p.replica.raft.term(), p.replica.is_leader());
        for (waiter, base_offset, appended) in p.waiters.release(committed) {
            // Committed where the batch was, and it is still the batch: this node has led
            // since it appended it (a leader never loses entries of its own term). Otherwise
            // the commit point may cover another leader's entry at that offset (this node
            // stepped down, its batch was replaced, and it learned the new commit point).
            let outcome = if leading && appended == term {
                ProduceOutcome { error: 0, message: None, base_offset, log_start_offset }
            } else {
                let message = format!("leadership moved (term {appended} to {term}) before the batch was known to commit; it may be stored");
                ProduceOutcome::failed(ResponseError::RequestTimedOut.code(), Some(message))
            };
            let _ = waiter.send(outcome);
        }
        if let Some((leader, term)) = p.replica.leader_changed() {
            tracing::info!(topic = %key.0, partition = key.1, ?leader, term, "partition leader");
            let known = (leader.map_or(-1, NodeId::get), braid_engine::ids::leader_epoch(term));
            self.shared.leaders.write().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), known);
            if p.replica.is_leader() {
                announce_leader(
                    &self.shared,
                    &key,
                    (self.shared.config.node_id, braid_engine::ids::leader_epoch(term)),
                    &p.voters,
                );
            }
            if !p.replica.is_leader() {
                if let Some(coordinator) = p.coordinator.as_mut() {
                    coordinator.lose_leadership();
                }
                if let Some(coordinator) = p.txn_coordinator.as_mut() {
                    coordinator.lose_leadership();
                }
                // These batches are in the log but not committed: the next leader may keep
                // them or not. REQUEST_TIMED_OUT says "possibly stored" (clients count a
                // retry, and an idempotent producer deduplicates it); NOT_LEADER_OR_FOLLOWER
                // would tell them it was not stored, and they would resend a duplicate.
                let message = format!(
                    "leadership moved before the batch committed; it may be stored ({})",
                    not_leader(&p.replica).message.unwrap_or_default()
                );
                for (waiter, _, _) in p.waiters.fail_all() {
                    let _ = waiter
                        .send(ProduceOutcome::failed(ResponseError::RequestTimedOut.code(), Some(message.clone())));
                }
            }
        }
        committed > before
    }

    /// Sends what the metadata group's leader may send before its log is durable (its appends
    /// to followers); true if anything left.
    pub fn send_meta_leader_messages(&mut self) -> bool {
        let Some(meta) = self.meta.as_mut() else { return false };
        let messages = meta.leader_messages();
        let any = !messages.is_empty();
        send(&self.shared, GroupId::METADATA, messages);
        any
    }

    pub(super) fn meta_round(&mut self) -> Option<PendingPersist> {
        let meta = self.meta.as_mut()?;
        match meta.begin_round(self.shared.env.now_ms()) {
            RoundStart::Syncing(pending, round) => {
                self.meta_syncing = true;
                self.publish_meta_round(round);
                Some(pending)
            }
            RoundStart::Done(round) => {
                self.publish_meta_round(round);
                None
            }
        }
    }

    /// Ends the metadata round whose sync [`ShardState::flush_dirty`] handed out.
    pub fn end_meta_round(&mut self, pending: PendingPersist, synced: std::io::Result<()>) {
        self.meta_syncing = false;
        let Some(meta) = self.meta.as_mut() else { return };
        let round = meta.end_round(pending, synced, self.shared.env.now_ms());
        self.publish_meta_round(round);
        if self.meta_dirty {
            // What arrived during the sync goes in the next round.
            self.flush_needed.notify_one();
        }
    }

    pub(super) fn publish_meta_round(&mut self, round: MetaRound) {
        // Before the tree goes to the shards: the replicas they open know.
        if self.meta.as_mut().is_some_and(MetaStore::note_replaced_disk) {
            self.shared.replaced_disk.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        send(&self.shared, GroupId::METADATA, round.messages);
        if let Some(meta) = self.meta.as_mut() {
            send(&self.shared, GroupId::METADATA, meta.take_snapshot_messages());
        }
        if let Some(snapshot) = round.snapshot {
            if round.caught_up {
                remove_orphan_dirs(&self.storage, &self.shared.config.data_dir, &snapshot);
            }
            let _ = self.publish.send((snapshot, round.replies));
        }
    }

    pub(super) fn flush_all(&mut self) {
        // Running flushes end here, waiting for the device: a shard stopping makes everything
        // durable (and a running sync's error is not lost).
        for (key, (before, pending)) in std::mem::take(&mut self.flushing) {
            let Some(p) = self.partitions.get_mut(&key) else { continue };
            let result = p.replica.flush_finish(pending);
            self.after_persist(key, before, result);
        }
        self.flush_on_ring = false;
        self.dirty.extend(self.partitions.keys().cloned());
        if let Some(pending) = self.flush_dirty() {
            let synced = pending.sync();
            self.end_meta_round(pending, synced);
        }
        if let Some(meta) = self.meta.as_mut() {
            // A round whose sync was still running when the shard stopped.
            if let Err(e) = meta.flush_log() {
                tracing::error!(error = %e, "metadata log: the last flush failed");
            }
        }
    }
}
