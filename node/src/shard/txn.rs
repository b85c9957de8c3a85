//! Transactions on a shard: requests to the transaction coordinators of the `__transaction_state`
//! partitions it leads (their records written like acks=all produces and applied by every
//! replica as they commit), the markers written on the partitions it leads, and each partition
//! leader's index of open and aborted transactions (the last stable offset).

use super::*;
use crate::msg::{Marker, TxnInit, TxnRequest, TxnWork};
use crate::txn::{self, InitOutcome, Transactions, TxnCoordinator, TXN_TOPIC};

impl<S: NodeStorage> ShardState<S> {
    /// A request for the transaction coordinator of `__transaction_state` partition `partition`.
    pub(super) fn txn_request(&mut self, partition: i32, request: TxnRequest) {
        let key = (TXN_TOPIC.to_owned(), partition);
        let now = self.shared.env.now_ms();
        let error = match self.partitions.get(&key) {
            Some(p) if p.replica.is_leader() && !txn_loading(p) => None,
            Some(p) if p.replica.is_leader() => Some(ResponseError::CoordinatorLoadInProgress.code()),
            _ => Some(ResponseError::NotCoordinator.code()),
        };
        let coordinator = self.partitions.get_mut(&key).and_then(|p| p.txn_coordinator.as_mut());
        let (Some(c), None) = (coordinator, error) else {
            let error = error.unwrap_or(ResponseError::NotCoordinator.code());
            match request {
                TxnRequest::Init { reply, .. } => {
                    let _ = reply.send(TxnInit::Answer(Err(error), None));
                }
                TxnRequest::AddPartitions { reply, .. }
                | TxnRequest::Verify { reply, .. }
                | TxnRequest::End { reply, .. } => {
                    let _ = reply.send(error);
                }
                TxnRequest::Complete { .. } => {}
                TxnRequest::List { reply } => {
                    let _ = reply.send(Err(error));
                }
            }
            return;
        };
        let (records, reply) = match request {
            TxnRequest::Init { id, timeout_ms, expected, new_id, conn, reply } => {
                c.connections.note(&id, conn);
                match c.init(&id, timeout_ms, expected, new_id, now) {
                    InitOutcome::NeedProducerId => {
                        let _ = reply.send(TxnInit::NeedProducerId);
                        return;
                    }
                    InitOutcome::Error(e) => {
                        let _ = reply.send(TxnInit::Answer(Err(e), None));
                        return;
                    }
                    InitOutcome::Write { answer, records } => {
                        let (written, outcome) = oneshot::channel();
                        let _ = reply.send(TxnInit::Answer(answer, Some(outcome)));
                        (records, ProduceReply::Code(written))
                    }
                }
            }
            TxnRequest::AddPartitions { id, conn, reply, .. } if !c.admit(&id, conn, true) => {
                let _ = reply.send(txn::STALE_CONNECTION);
                return;
            }
            TxnRequest::AddPartitions { id, producer, partitions, reply, .. } => {
                match c.add_partitions(&id, producer, &partitions, now) {
                    Ok(records) => (records, ProduceReply::Code(reply)),
                    Err(e) => {
                        let _ = reply.send(e);
                        return;
                    }
                }
            }
            TxnRequest::Verify { id, producer, partition, reply } => {
                let _ = reply.send(c.verify(&id, producer, &partition));
                return;
            }
            TxnRequest::End { id, conn, reply, .. } if !c.admit(&id, conn, false) => {
                let _ = reply.send(txn::STALE_CONNECTION);
                return;
            }
            TxnRequest::End { id, producer, commit, reply, .. } => {
                (c.end(&id, producer, commit, now, reply), ProduceReply::Nobody)
            }
            TxnRequest::Complete { plan } => (c.complete(&plan, now), ProduceReply::Nobody),
            TxnRequest::List { reply } => {
                let _ = reply.send(Ok(c.list().into_iter().collect()));
                return;
            }
        };
        self.write_records(key, records, None, now, reply);
    }

    /// Appends a coordinator's records to its internal partition `key` (as an acks=all
    /// produce); `reply` is answered once they commit. With a `producer`, they are records of
    /// its transaction (TxnOffsetCommit's offsets), which apply when its commit marker does.
    pub(super) fn write_records(
        &mut self,
        key: (String, i32),
        records: Records,
        producer: Option<(i64, i16)>,
        now: i64,
        reply: ProduceReply,
    ) {
        if records.is_empty() {
            let _ = reply.send(ProduceOutcome { error: 0, message: None, base_offset: -1, log_start_offset: -1 });
            return;
        }
        let entries: Vec<batch::KeyValue<'_>> =
            records.iter().map(|(k, v)| (Some(k.as_slice()), v.as_deref())).collect();
        let mut bytes = batch::build_keyed_batch(now, &entries);
        if let Some((producer_id, epoch)) = producer {
            batch::set_producer(&mut bytes, producer_id, epoch, txn::TRANSACTIONAL_ATTRIBUTE, now);
        }
        self.produce(key.0, key.1, Some(Bytes::from(bytes)), -1, reply);
    }

    /// Writes a transaction marker on partition `key`, which this node must lead; `reply` is
    /// answered once it commits.
    pub(super) fn write_marker(&mut self, key: (String, i32), marker: Marker, reply: oneshot::Sender<Code>) {
        let Some(p) = self.partitions.get_mut(&key) else {
            let error = if self.opening_keys.contains_key(&key) {
                ResponseError::NotLeaderOrFollower
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            let _ = reply.send(error.code());
            return;
        };
        if !p.replica.is_leader() || p.replica.raft.log().is_poisoned() {
            let _ = reply.send(ResponseError::NotLeaderOrFollower.code());
            return;
        }
        let now = self.shared.env.now_ms();
        let bytes = txn::marker_batch(marker.producer_id, marker.epoch, marker.commit, marker.coordinator_epoch, now);
        match txn_index(p) {
            Err(e) => {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "reading the log's transactions failed");
                let _ = reply.send(storage_error(&e));
                return;
            }
            // A deposed coordinator's late marker (Kafka's TRANSACTION_COORDINATOR_FENCED): it
            // could end the producer's next transaction here.
            Ok(index) if index.fenced(marker.producer_id, marker.coordinator_epoch) => {
                let _ = reply.send(ResponseError::TransactionCoordinatorFenced.code());
                return;
            }
            Ok(_) => {}
        }
        let (base_offset, end) = match p.replica.raft.propose_all(&[&bytes]) {
            Ok(positions) => (positions[0].0, positions[0].1),
            Err(ProposeError::Log(e)) => {
                let _ = reply.send(storage_error(&e));
                return;
            }
            Err(_) => {
                let _ = reply.send(ResponseError::NotLeaderOrFollower.code());
                return;
            }
        };
        let header = BatchHeader { base_offset, ..BatchHeader::parse(&bytes).expect("a marker built here") };
        if let Some((_, producers)) = p.producers.as_mut() {
            producers.record(&header);
        }
        send(&self.shared, p.replica.group, p.replica.raft.take_leader_messages());
        p.waiters.wait(end, (ProduceReply::Code(reply), base_offset, p.replica.raft.term()));
        self.dirty.insert(key);
        self.flush_needed.notify_one();
    }

    /// The transaction coordinator of `key` leads and has loaded: its timers run, and the
    /// markers due are handed to the shard's marker writer.
    pub(super) fn txn_tick(&mut self, key: &(String, i32), now: i64) {
        let Some(p) = self.partitions.get_mut(key) else { return };
        if !p.replica.is_leader() || txn_loading(p) {
            return;
        }
        let Some(c) = p.txn_coordinator.as_mut() else { return };
        let records = c.tick(now);
        hand_over_plans(key, p, self.markers.as_ref());
        self.write_records(key.clone(), records, None, now, ProduceReply::Nobody);
    }
}

impl<S: NodeStorage> ShardState<S> {
    /// A produce, with its transactional batch held back if its producer has no transaction
    /// open on the partition yet: the coordinator must first say the partition was added to
    /// the transaction (KIP-890 part 1), so a batch of a transaction that ended (a late retry,
    /// a zombie) never opens a transaction no one will end. Batches of the same producer behind
    /// it wait too, in order.
    pub(super) fn produce_verified(
        &mut self,
        topic: String,
        partition: i32,
        records: Option<Bytes>,
        acks: i16,
        transactional_id: Option<String>,
        reply: oneshot::Sender<ProduceOutcome>,
    ) {
        let first = records.as_deref().and_then(|r| BatchHeader::parse(r).ok());
        let (Some(id), Some(h)) = (transactional_id, first.filter(txn::is_transactional)) else {
            return self.produce(topic, partition, records, acks, ProduceReply::Producer(reply));
        };
        let parked = (topic, partition, h.producer_id);
        if let Some(waiting) = self.verifying.get_mut(&parked) {
            waiting.push((records, acks, reply));
            return;
        }
        let key = (parked.0.clone(), partition);
        let open = match self.partitions.get_mut(&key).filter(|p| p.replica.is_leader()) {
            Some(p) => match txn_index(p) {
                Ok(index) => index.is_open(h.producer_id),
                Err(_) => true, // produce() answers the storage error
            },
            None => true, // produce() answers why not
        };
        let Some(worker) = self.markers.as_ref().filter(|_| !open) else {
            return self.produce(key.0, partition, records, acks, ProduceReply::Producer(reply));
        };
        let work = TxnWork::Verify { id, producer: (h.producer_id, h.producer_epoch), partition: key };
        if worker.send(work).is_err() {
            let _ = reply.send(ProduceOutcome::failed(ResponseError::NotEnoughReplicas.code(), None));
            return;
        }
        self.verifying.insert(parked, vec![(records, acks, reply)]);
    }

    /// The producers this leader knows, with their open transactions' first offsets.
    pub(super) fn describe_producers(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<crate::msg::DescribedProducer>, Code> {
        self.leading(topic, partition, -1).map_err(|e| e.code())?;
        let p =
            self.partitions.get_mut(&(topic.to_owned(), partition)).ok_or(ResponseError::NotLeaderOrFollower.code())?;
        let active = producers_of(p).map_err(|e| storage_error(&e))?.active();
        let index = txn_index(p).map_err(|e| storage_error(&e))?;
        let open: HashMap<i64, i64> = index.open().into_iter().collect();
        let describe = |a: crate::producers::ActiveProducer| {
            (a, open.get(&a.0).copied().unwrap_or(-1), index.coordinator_epoch(a.0))
        };
        Ok(active.into_iter().map(describe).collect())
    }

    /// The coordinator answered a verification: the batches held for it are appended in order,
    /// or refused.
    pub(super) fn verified(&mut self, (topic, partition): (String, i32), producer_id: i64, error: Code) {
        let Some(waiting) = self.verifying.remove(&(topic.clone(), partition, producer_id)) else { return };
        for (records, acks, reply) in waiting {
            if error == 0 {
                self.produce(topic.clone(), partition, records, acks, ProduceReply::Producer(reply));
            } else {
                let message = format!("the transaction coordinator did not verify partition {topic}-{partition}");
                let _ = reply.send(ProduceOutcome::failed(error, Some(message)));
            }
        }
    }
}

/// A coordinator that leads and has loaded hands the markers now due to the shard's worker.
pub(super) fn hand_over_plans<S: NodeStorage>(
    key: &(String, i32),
    p: &mut Partition<S>,
    worker: Option<&mpsc::UnboundedSender<TxnWork>>,
) {
    if !p.replica.is_leader() || txn_loading(p) {
        return;
    }
    let epoch = braid_engine::ids::leader_epoch(p.replica.raft.term());
    let (Some(c), Some(worker)) = (p.txn_coordinator.as_mut(), worker) else { return };
    for plan in c.take_plans() {
        let _ = worker.send(TxnWork::Markers(key.1, epoch, plan));
    }
}

/// True while a new leader of a coordinator's partition has not applied everything its
/// predecessors committed (Kafka's coordinator load).
pub(super) fn txn_loading<S: NodeStorage>(p: &Partition<S>) -> bool {
    !p.replica.raft.leader_ready()
        || p.txn_coordinator.as_ref().is_some_and(|c| c.applied < p.replica.raft.term_start())
}

/// The partition's transactions, as its log keeps them (built from the log the first time).
pub(super) fn txn_index<S: NodeStorage>(p: &mut Partition<S>) -> Result<&Transactions, LogError> {
    p.replica.raft.log_mut().transactions()
}

/// Applies the newly committed records of a transaction coordinator's partition (every replica
/// does, so a new leader has them all).
pub(super) fn apply_txn_records<S: NodeStorage>(c: &mut TxnCoordinator, log: &Log<S>, committed: i64, accepted: u64) {
    let mut applied = c.applied;
    for_each_committed(&mut applied, log, committed, |header, bytes| {
        if header.attributes & batch::CONTROL_ATTRIBUTE == 0 {
            for record in batch::records(bytes).unwrap_or_default() {
                if let Some(key) = record.key {
                    c.apply(key, record.value, accepted);
                }
            }
        }
    });
    c.applied = applied;
}

/// Calls `f` with every committed batch from `*applied` to `committed`, moving `*applied` past
/// each.
pub(super) fn for_each_committed<S: NodeStorage>(
    applied: &mut i64,
    log: &Log<S>,
    committed: i64,
    mut f: impl FnMut(&BatchHeader, &[u8]),
) {
    *applied = (*applied).max(log.log_start_offset());
    while *applied < committed {
        let Ok(Some(slice)) = log.read(*applied, 1 << 20, Some(committed)) else { return };
        let Ok(bytes) = log.read_bytes(&slice) else { return };
        let mut at = 0;
        while at < bytes.len() {
            let Ok(header) = BatchHeader::parse(&bytes[at..]) else { return };
            let end = (at + header.total_bytes()).min(bytes.len());
            f(&header, &bytes[at..end]);
            *applied = header.next_offset();
            at = end;
        }
    }
}
