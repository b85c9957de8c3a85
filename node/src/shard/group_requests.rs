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
            GroupRequest::Commit { group, generation, member_id, instance_id, offsets, reply } => {
                match c.check_commit(&group, generation, (&member_id, instance_id.as_deref()), now) {
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
            GroupRequest::Fetch { group, partitions, reply } => {
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
        self.write_group_records(partition, group_writes, now, ProduceReply::Nobody);
        if let Some((records, reply)) = to_write {
            // Offsets are records of the partition, written like an acks=all produce; the map
            // changes when they commit (apply_offsets), before the answer.
            self.write_group_records(partition, records, now, ProduceReply::GroupDeletion(reply));
        }
    }

    /// Appends records to offsets partition `partition` (as an acks=all produce); `reply` is
    /// answered once they commit.
    pub(super) fn write_group_records(&mut self, partition: i32, records: Records, now: i64, reply: ProduceReply) {
        if records.is_empty() {
            let _ = reply.send(ProduceOutcome { error: 0, message: None, base_offset: -1, log_start_offset: -1 });
            return;
        }
        let entries: Vec<batch::KeyValue<'_>> =
            records.iter().map(|(k, v)| (Some(k.as_slice()), v.as_deref())).collect();
        let batch = Bytes::from(batch::build_keyed_batch(now, &entries));
        self.produce(OFFSETS_TOPIC.to_owned(), partition, Some(batch), -1, reply);
    }
}

/// Applies a coordinator's newly committed offset records (every replica does, so a new
/// leader has them all).
pub(super) fn apply_offsets<S: NodeStorage>(c: &mut Coordinator, log: &Log<S>, committed: i64) {
    c.applied = c.applied.max(log.log_start_offset());
    while c.applied < committed {
        let Ok(Some(slice)) = log.read(c.applied, 1 << 20, Some(committed)) else { return };
        let Ok(bytes) = log.read_bytes(&slice) else { return };
        let mut at = 0;
        while at < bytes.len() {
            let Ok(header) = BatchHeader::parse(&bytes[at..]) else { return };
            let end = (at + header.total_bytes()).min(bytes.len());
            if header.attributes & batch::CONTROL_ATTRIBUTE == 0 {
                for record in batch::records(&bytes[at..end]).unwrap_or_default() {
                    if let Some(key) = record.key {
                        c.apply(key, record.value);
                    }
                }
            }
            c.applied = header.next_offset();
            at = end;
        }
    }
}
