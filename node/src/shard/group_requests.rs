//! Consumer groups on the shard owning their __consumer_offsets partition: requests answered by the
//! partition leader's coordinator, and the offset and group records written like acks=all produces
//! and applied by every replica as they commit.

use super::*;

impl<S: NodeStorage> ShardState<S> {
    /// A consumer-group request for the coordinator of offsets partition `partition`.
    pub(super) fn group_request(&mut self, partition: i32, request: GroupRequest) {
        let key = (OFFSETS_TOPIC.to_owned(), partition);
        let now = self.shared.env.now_ms();
        let not_coordinator = ResponseError::NotCoordinator.code();
        // A new leader answers only once everything its predecessors committed is applied
        // (Kafka's coordinator load): else it could hand out a stale generation or offsets.
        let loading = self.partitions.get(&key).is_some_and(|p| {
            p.replica.is_leader()
                && (!p.replica.raft.leader_ready()
                    || p.coordinator.as_ref().is_some_and(|c| c.applied < p.replica.raft.term_start()))
        });
        let not_coordinator = if loading { ResponseError::CoordinatorLoadInProgress.code() } else { not_coordinator };
        let Some(p) = self.partitions.get_mut(&key).filter(|p| p.replica.is_leader() && !loading) else {
            match request {
                GroupRequest::Join { reply, request, .. } => {
                    let mut outcome = JoinOutcome { error: not_coordinator, generation: -1, ..Default::default() };
                    outcome.member_id = request.member_id;
                    let _ = reply.send(outcome);
                }
                GroupRequest::Sync { reply, .. } => {
                    let _ = reply.send(SyncOutcome { error: not_coordinator, ..Default::default() });
                }
                GroupRequest::Heartbeat { reply, .. }
                | GroupRequest::Commit { reply, .. }
                | GroupRequest::Delete { reply, .. } => {
                    let _ = reply.send(not_coordinator);
                }
                GroupRequest::Leave { reply, .. } => {
                    let _ = reply.send(Err(not_coordinator));
                }
                GroupRequest::Fetch { reply, .. } => {
                    let _ = reply.send(Err(not_coordinator));
                }
                GroupRequest::Describe { reply, .. } => {
                    let _ = reply.send(Err(not_coordinator));
                }
                GroupRequest::List { reply } => {
                    let _ = reply.send(Vec::new());
                }
            }
            return;
        };
        let Some(c) = p.coordinator.as_mut() else { return };
        let mut to_write: Option<(Records, oneshot::Sender<Code>)> = None;
        let mut producer = None;
        match request {
            GroupRequest::Join { group, request, reply } => c.join(&group, request, now, self.shared.env.uuid(), reply),
            GroupRequest::Sync { group, generation, member_id, instance_id, assignments, reply } => {
                c.sync(&group, generation, (&member_id, instance_id.as_deref()), assignments, now, reply)
            }
            GroupRequest::Heartbeat { group, generation, member_id, instance_id, reply } => {
                let _ = reply.send(c.heartbeat(&group, generation, (&member_id, instance_id.as_deref()), now));
            }
            GroupRequest::Leave { group, members, reply } => {
                let _ = reply.send(Ok(c.leave(&group, &members, now)));
            }
            GroupRequest::Commit { group, generation, member_id, instance_id, offsets, producer: txn, reply } => {
                producer = txn;
                let member = (member_id.as_str(), instance_id.as_deref());
                match c.check_any_commit(&group, generation, member, producer.is_some(), now) {
                    Ok(()) => {
                        let records = offsets
                            .iter()
                            .map(|(topic, partition, committed)| {
                                let value = committed.as_ref().map(|c| groups::offset_value(c, now));
                                (groups::offset_key(&group, topic, *partition), value)
                            })
                            .collect();
                        to_write = Some((records, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(e.code());
                    }
                }
            }
            GroupRequest::Fetch { group, partitions, require_stable, reply } => {
                if require_stable && c.unstable(&group, partitions.as_deref()) {
                    let _ = reply.send(Err(ResponseError::UnstableOffsetCommit.code()));
                    return;
                }
                let _ = reply.send(Ok(c.offsets(&group, partitions.as_deref())));
            }
            GroupRequest::Describe { group, reply } => {
                let _ = reply.send(Ok(c.describe(&group, now)));
            }
            GroupRequest::List { reply } => {
                let _ = reply.send(c.list(now));
            }
            GroupRequest::Delete { group, reply } => {
                if !c.is_empty(&group) {
                    let _ = reply.send(ResponseError::NonEmptyGroup.code());
                } else if !c.has_offsets(&group) {
                    c.forget(&group);
                    let code =
                        if c.describe(&group, now).0 == "Dead" { ResponseError::GroupIdNotFound.code() } else { 0 };
                    let _ = reply.send(code);
                } else {
                    let mut records: Records = c
                        .offsets(&group, None)
                        .into_iter()
                        .map(|((topic, partition), _)| (groups::offset_key(&group, &topic, partition), None))
                        .collect();
                    records.push((groups::group_key(&group), None));
                    c.forget(&group);
                    to_write = Some((records, reply));
                }
            }
        }
        let group_writes = c.take_writes(now);
        let key = (OFFSETS_TOPIC.to_owned(), partition);
        self.write_records(key.clone(), group_writes, None, now, ProduceReply::Nobody);
        if let Some((records, reply)) = to_write {
            // Offsets are records of the partition, written like an acks=all produce; the map
            // changes when they commit (apply_offsets), before the answer.
            self.write_records(key, records, producer, now, ProduceReply::GroupDeletion(reply));
        }
    }
}

/// Applies a coordinator's newly committed offset records (every replica does, so a new
/// leader has them all). A transaction's offsets (TxnOffsetCommit) wait for its marker: applied
/// on commit, dropped on abort.
pub(super) fn apply_offsets<S: NodeStorage>(c: &mut Coordinator, log: &Log<S>, committed: i64) {
    let mut applied = c.applied;
    for_each_committed(&mut applied, log, committed, |header, bytes| {
        let transactional = crate::txn::is_transactional(header);
        if header.attributes & batch::CONTROL_ATTRIBUTE != 0 {
            if transactional {
                let commit = crate::txn::marker_type(bytes) == Some(crate::txn::COMMIT);
                c.end_transaction(header.producer_id, commit);
            }
            return;
        }
        for record in batch::records(bytes).unwrap_or_default() {
            if let Some(key) = record.key {
                if transactional {
                    c.apply_pending(header.producer_id, key, record.value);
                } else {
                    c.apply(key, record.value);
                }
            }
        }
    });
    c.applied = applied;
}
