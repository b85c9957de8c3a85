//! A partition leader takes a produce: the batches' framing and sizes checked, idempotent
//! producers' sequences checked, the batches proposed to raft; acks=1 answered once written,
//! acks=all once committed (DurabilityWaiters). A log that failed is reopened first.

use super::*;

impl<S: NodeStorage> ShardState<S> {
    pub(super) fn produce(
        &mut self,
        topic: String,
        partition: i32,
        records: Option<Bytes>,
        acks: i16,
        reply: ProduceReply,
    ) {
        let key = (topic, partition);
        let Some(p) = self.partitions.get_mut(&key) else {
            let error = if self.opening_keys.contains_key(&key) {
                // Being opened here (a topic just created): not led yet; clients retry.
                ResponseError::NotLeaderOrFollower
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            let _ = reply.send(ProduceOutcome::failed(error.code(), None));
            return;
        };
        if p.replica.raft.log().is_poisoned() {
            let journaled = self.journal.get(p.replica.group);
            let why = "the partition log failed and was reopened; the batch may not be stored";
            if let Err(e) = reopen(&key, p, why, journaled) {
                let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
                return;
            }
        }
        if !p.replica.is_leader() {
            let _ = reply.send(not_leader(&p.replica));
            return;
        }
        let now = self.shared.env.now_ms();
        let (records, batches) = match prepare(records.unwrap_or_default(), p.max_message_bytes, p.batch_policy, now) {
            Ok(prepared) => prepared,
            Err((error, message)) => {
                let _ = reply.send(ProduceOutcome::failed(error.code(), Some(message)));
                return;
            }
        };
        let (slices, headers): (Vec<&[u8]>, Vec<BatchHeader>) =
            batches.into_iter().map(|(range, header)| (&records[range], header)).unzip();
        let idempotent = headers.iter().any(|h| h.producer_id >= 0);
        // Read before the first transactional batch: fetches report the last stable offset.
        let transactional = headers.iter().any(crate::txn::is_transactional);
        if let Some(Err(e)) = transactional.then(|| super::txn::txn_index(p).map(drop)) {
            let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
            return;
        }
        if idempotent {
            match check_producers(p, &headers) {
                Ok(Verdict::Append) => {}
                Ok(Verdict::Duplicate { base_offset, last_offset }) => {
                    // A retry of a stored batch: answered as the original is (once committed).
                    tracing::debug!(topic = %key.0, partition = key.1, base_offset, "a retried batch is stored already");
                    let end = last_offset + 1;
                    if acks == -1 && end > p.replica.raft.committed() {
                        p.waiters.wait(end, (reply, base_offset, p.replica.raft.term()));
                    } else {
                        let log_start_offset = p.log_start();
                        let _ = reply.send(ProduceOutcome { error: 0, message: None, base_offset, log_start_offset });
                    }
                    return;
                }
                Ok(Verdict::Refuse(error, message)) => {
                    let _ = reply.send(ProduceOutcome::failed(error.code(), Some(message)));
                    return;
                }
                Err(e) => {
                    let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
                    return;
                }
            }
        }
        let (base_offset, end) = match p.replica.raft.propose_all(&slices) {
            Ok(positions) => (positions.first().map_or(-1, |p| p.0), positions.last().map_or(-1, |p| p.1)),
            Err(ProposeError::NotLeader { .. }) => {
                let _ = reply.send(not_leader(&p.replica));
                return;
            }
            Err(ProposeError::Log(LogError::InvalidBatch(e))) => {
                let _ = reply.send(ProduceOutcome::failed(ResponseError::CorruptMessage.code(), Some(e.to_string())));
                return;
            }
            Err(ProposeError::ConfigChange(e)) => {
                let _ = reply.send(ProduceOutcome::failed(ResponseError::InvalidRecord.code(), Some(e)));
                return;
            }
            Err(ProposeError::Log(e)) => {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "append failed");
                let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
                return;
            }
        };
        // Kept if built (the log keeps its transactions itself).
        record_producers(p, &headers, base_offset);
        // Followers persist while the leader does.
        send(&self.shared, p.replica.group, p.replica.raft.take_leader_messages());
        if acks == -1 && braid_engine::buggify!(20) {
            // The producer's request timed out though its batch is appended (simulation only):
            // it may commit, and the producer must not take it as acknowledged.
            let error = ResponseError::RequestTimedOut.code();
            let _ = reply.send(ProduceOutcome::failed(error, Some("timed out (simulated)".into())));
        } else if acks == -1 {
            p.waiters.wait(end, (reply, base_offset, p.replica.raft.term()));
        } else {
            // acks=1 answers once the batch is in the leader's log file (a process that dies
            // after the answer keeps it); the round replicates it and makes it durable.
            if let Err(e) = p.replica.raft.log_mut().write() {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "writing an appended batch failed");
                let _ = reply.send(ProduceOutcome::failed(storage_error(&e), Some(e.to_string())));
                self.dirty.insert(key);
                self.flush_needed.notify_one();
                return;
            }
            let log_start_offset = p.log_start();
            let _ = reply.send(ProduceOutcome { error: 0, message: None, base_offset, log_start_offset });
        }
        self.dirty.insert(key);
        self.flush_needed.notify_one();
    }
}

/// One batch of a request: where it is in the request's records, and its header.
type Framed = (std::ops::Range<usize>, BatchHeader);

/// A request's records split into batches (checked as [`split_batches`] checks them), as the
/// topic's `policy` wants them stored: recompressed, with the leader's clock, or their
/// timestamps checked against it.
fn prepare(
    records: Bytes,
    max_message_bytes: i64,
    policy: topic_config::BatchPolicy,
    now_ms: i64,
) -> Result<(Bytes, Vec<Framed>), ProduceRefusal> {
    let (records, batches) = match policy.compression {
        Some(codec) => {
            recompress_all(&records, &split_batches(&records, max_message_bytes)?, codec, max_message_bytes)?
        }
        None => {
            let batches = split_batches(&records, max_message_bytes)?;
            (records, batches)
        }
    };
    if policy.log_append_time {
        return Ok((stamp_append_time(&records, &batches, now_ms)?, batches));
    }
    // CreateTime: each batch's first and largest timestamps within the topic's bounds of the
    // broker's clock (Kafka checks every record; a batch's records lie between those two
    // unless a producer wrote negative deltas).
    for (_, h) in &batches {
        let too_old = h.base_timestamp < now_ms.saturating_sub(policy.before_ms);
        let too_new = h.max_timestamp > now_ms.saturating_add(policy.after_ms);
        if too_old || too_new {
            let message = format!(
                "timestamp {} of a batch is out of range (at most {} ms before and {} ms after the broker's {now_ms})",
                if too_old { h.base_timestamp } else { h.max_timestamp },
                policy.before_ms,
                policy.after_ms
            );
            return Err((ResponseError::InvalidTimestamp, message));
        }
    }
    Ok((records, batches))
}

/// The batches compressed with the topic's codec (compression.type), each CRC checked first (a
/// corrupt batch must not get a fresh CRC); split again, and checked against
/// max.message.bytes as stored.
fn recompress_all(
    records: &Bytes,
    batches: &[Framed],
    codec: i16,
    max_message_bytes: i64,
) -> Result<(Bytes, Vec<Framed>), ProduceRefusal> {
    let mut out = Vec::with_capacity(records.len());
    for (range, header) in batches {
        let bytes = &records[range.clone()];
        batch::check_crc(bytes, header).map_err(|e| (ResponseError::CorruptMessage, e.to_string()))?;
        let stored = crate::recompress::recompress(bytes, codec).map_err(|e| (ResponseError::CorruptMessage, e))?;
        out.extend_from_slice(&stored);
    }
    let records = Bytes::from(out);
    let batches = split_batches(&records, max_message_bytes)?;
    Ok((records, batches))
}

/// The batches with the leader's clock as their timestamp (LogAppendTime), each CRC checked
/// first (a corrupt batch must not get a fresh CRC) and recomputed after.
fn stamp_append_time(records: &Bytes, batches: &[Framed], now_ms: i64) -> Result<Bytes, ProduceRefusal> {
    let mut stamped = records.to_vec();
    for (range, header) in batches {
        batch::check_crc(&records[range.clone()], header)
            .map_err(|e| (ResponseError::CorruptMessage, e.to_string()))?;
        batch::set_log_append_time(&mut stamped[range.clone()], now_ms);
    }
    Ok(Bytes::from(stamped))
}

/// Remembers the idempotent producers' batches just appended from `base_offset` on.
fn record_producers<S: NodeStorage>(p: &mut Partition<S>, headers: &[BatchHeader], base_offset: i64) {
    if let Some((_, producers)) = p.producers.as_mut() {
        let mut at = base_offset;
        for h in headers {
            producers.record(&BatchHeader { base_offset: at, ..*h });
            at += i64::from(h.last_offset_delta) + 1;
        }
    }
}

/// Splits a produce request's records into whole batches (with their headers), checking each one's framing and size
/// against `max.message.bytes` (the CRCs are checked by the log, for all batches before any is
/// appended).
pub(super) fn split_batches(
    records: &[u8],
    max_message_bytes: i64,
) -> Result<Vec<(std::ops::Range<usize>, BatchHeader)>, ProduceRefusal> {
    if records.is_empty() {
        return Err((ResponseError::InvalidRecord, "no records".into()));
    }
    let mut batches = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let rest = &records[at..];
        let header = BatchHeader::parse(rest)
            .map_err(|e| (ResponseError::CorruptMessage, format!("batch at byte {at}: {e}")))?;
        if header.total_bytes() > rest.len() {
            let message = format!("batch of {} bytes truncated to {}", header.total_bytes(), rest.len());
            return Err((ResponseError::CorruptMessage, message));
        }
        if header.attributes & batch::CONTROL_ATTRIBUTE != 0 {
            // Control batches are the node's own (leader markers, configuration entries):
            // a client's would be taken for one.
            return Err((ResponseError::InvalidRecord, format!("batch at byte {at} is a control batch")));
        }
        if header.total_bytes() as i64 > max_message_bytes {
            let message =
                format!("batch of {} bytes exceeds max.message.bytes {max_message_bytes}", header.total_bytes());
            return Err((ResponseError::MessageTooLarge, message));
        }
        batches.push((at..at + header.total_bytes(), header));
        at += header.total_bytes();
    }
    Ok(batches)
}

pub(super) fn not_leader<S: NodeStorage>(replica: &Replica<S>) -> ProduceOutcome {
    let message = match replica.raft.leader() {
        Some(id) => format!("node {id} leads this partition"),
        None => "this partition has no leader right now".to_owned(),
    };
    ProduceOutcome::failed(ResponseError::NotLeaderOrFollower.code(), Some(message))
}

/// The verdict on a produce request's batches from idempotent producers, with the state
/// rebuilt from the log first if this leader term has none yet. A request holds one batch per
/// partition from such a producer (Kafka requires it); several are appended only if each
/// is next in its sequence.
pub(super) fn check_producers<S: NodeStorage>(
    p: &mut Partition<S>,
    headers: &[BatchHeader],
) -> Result<Verdict, LogError> {
    let producers = producers_of(p)?;
    if let [only] = headers {
        return Ok(producers.check(only));
    }
    for h in headers {
        match producers.check(h) {
            Verdict::Append => {}
            _ => {
                let message = "batches of an idempotent producer come one per partition and request".to_owned();
                return Ok(Verdict::Refuse(ResponseError::InvalidRecord, message));
            }
        }
    }
    Ok(Verdict::Append)
}

/// Reopens a partition whose log failed (recovery runs again); raft starts over as a follower
/// from its persisted hard state. The log is cut back to what was durable, so the producers
/// waiting for offsets past it are answered first (`why`), with KAFKA_STORAGE_ERROR: the
/// offsets they wait for may go to other batches, which must never acknowledge them.
pub(super) fn reopen<S: NodeStorage>(
    key: &(String, i32),
    p: &mut Partition<S>,
    why: &str,
    journaled: Option<HardState>,
) -> Result<(), LogError> {
    let code = ResponseError::KafkaStorageError.code();
    for (waiter, _, _) in p.waiters.fail_all() {
        let _ = waiter.send(ProduceOutcome::failed(code, Some(why.to_owned())));
    }
    let report = p.replica.reopen(p.voters.clone(), journaled)?;
    tracing::warn!(topic = %key.0, partition = key.1, ?report.corruption, "partition log reopened after an I/O failure");
    Ok(())
}
