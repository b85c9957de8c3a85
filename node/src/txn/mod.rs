//! Transactions: the transaction coordinator of one `__transaction_state` partition, and what a
//! partition knows of the transactions writing to it (`markers`; the log keeps its open and
//! aborted transactions itself, `braid_engine::log::txn`).
//!
//! As Kafka's, the coordinator of a transactional id is the leader of the id's partition of
//! `__transaction_state`, and a transaction's state is a record of that partition, in Kafka's
//! layout (`records`). Every replica applies the records as they commit (`committed`), so a new
//! leader knows every transaction as soon as it has applied its predecessors' records; the
//! leader's working view (`working`) adds its own writes still in flight, and a transactional id
//! with a write in flight answers CONCURRENT_TRANSACTIONS.
//!
//! A commit or abort is two records: PrepareCommit/PrepareAbort, then, once the markers are
//! written on every partition of the transaction, CompleteCommit/CompleteAbort. A transaction
//! whose committed state is a Prepare one has its markers written by whoever leads: the leader
//! takes [`TxnCoordinator::take_plans`] after applying, and on taking over, so a coordinator's
//! failover resumes the commits and aborts in flight. EndTxn is answered when the Complete
//! record is applied, so a client's next transaction never finds the last one unfinished.
//!
//! Time comes in from the shard (`now_ms`); the coordinator does no I/O.

mod connections;
mod markers;
mod records;

pub use connections::Connections;

pub use markers::{
    is_transactional, marker_batch, marker_coordinator_epoch, marker_type, AbortedTxn, Transactions, ABORT, COMMIT,
    TRANSACTIONAL_ATTRIBUTE,
};
pub use records::{decode_key, decode_value, txn_key, txn_value};

use crate::groups::Records;
use braid_engine::hash::{HashMap, HashSet};
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::oneshot;

/// The internal topic holding transactions' states, and its partitions (Kafka's
/// `transaction.state.log.num.partitions` defaults to 50; fewer raft groups suit small
/// clusters, as for `__consumer_offsets`).
pub const TXN_TOPIC: &str = "__transaction_state";

/// A coordinator's answer (never sent to a client) to a request from a connection the client
/// has left (`connections.rs`): the connection is closed.
pub const STALE_CONNECTION: i16 = i16::MIN;
pub const TXN_PARTITIONS: i32 = 16;
/// Longest transaction timeout a producer may ask for (Kafka's transaction.max.timeout.ms).
pub const MAX_TIMEOUT_MS: i32 = 900_000;
/// A transactional id unused this long is forgotten (Kafka's transactional.id.expiration.ms).
pub const ID_EXPIRATION_MS: i64 = 7 * 24 * 3600 * 1000;

/// What a partition leader answers a transactional batch whose verification got `code` from
/// the coordinator: a coordinator that cannot answer now gives NOT_ENOUGH_REPLICAS, which
/// clients retry, as Kafka does.
pub fn verification_error(code: i16) -> i16 {
    let retriable = [
        ResponseError::NotCoordinator,
        ResponseError::CoordinatorNotAvailable,
        ResponseError::CoordinatorLoadInProgress,
        ResponseError::ConcurrentTransactions,
    ];
    if retriable.iter().any(|e| e.code() == code) {
        ResponseError::NotEnoughReplicas.code()
    } else {
        code
    }
}

/// The `__transaction_state` partition whose leader coordinates `id`.
pub fn partition_for(id: &str) -> i32 {
    (crc32c::crc32c(id.as_bytes()) % TXN_PARTITIONS as u32) as i32
}

/// Kafka's transaction states, with the codes its records use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(i8)]
pub enum TxnState {
    #[default]
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    pub fn from_code(code: i8) -> Option<Self> {
        use TxnState::*;
        [Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, Dead, PrepareEpochFence]
            .into_iter()
            .find(|s| *s as i8 == code)
    }

    /// The name Kafka's admin APIs use.
    pub fn name(self) -> &'static str {
        use TxnState::*;
        match self {
            Empty => "Empty",
            Ongoing => "Ongoing",
            PrepareCommit => "PrepareCommit",
            PrepareAbort => "PrepareAbort",
            CompleteCommit => "CompleteCommit",
            CompleteAbort => "CompleteAbort",
            Dead => "Dead",
            PrepareEpochFence => "PrepareEpochFence",
        }
    }

    fn preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence)
    }
}

/// A transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions written in the transaction (and the offsets partitions of its groups).
    pub partitions: BTreeSet<(String, i32)>,
    pub update_ms: i64,
    /// When the transaction began (its first partition was added); -1 if none is open.
    pub start_ms: i64,
    /// On the leader: its writes of this id not yet applied.
    pub pending: u32,
}

/// Markers to write for a transaction whose Prepare record committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerPlan {
    pub id: String,
    pub producer_id: i64,
    pub epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

/// What an InitProducerId gets.
#[derive(Debug, PartialEq, Eq)]
pub enum InitOutcome {
    /// A new producer id is needed (ask again with one).
    NeedProducerId,
    /// Write these records; once they commit, answer `answer`.
    Write {
        answer: Result<(i64, i16), i16>,
        records: Records,
    },
    Error(i16),
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// The coordinator of one `__transaction_state` partition on this node.
#[derive(Default)]
pub struct TxnCoordinator {
    /// Every transactional id as the partition's committed records have it.
    committed: HashMap<String, TxnMeta>,
    /// Ids whose committed state is a Prepare one (their markers are due).
    preparing: BTreeSet<String>,
    /// On the leader: ids as it has written them (its writes in flight included).
    working: HashMap<String, TxnMeta>,
    /// On the leader: ids whose markers it is writing.
    marking: HashSet<String>,
    /// On the leader: EndTxn requests answered once the transaction completes.
    end_waiters: HashMap<String, Vec<(bool, oneshot::Sender<i16>)>>,
    /// End of the records applied to `committed`.
    pub applied: i64,
    /// Which client connection may speak for each id (`connections.rs`).
    pub connections: Connections,
}

impl TxnCoordinator {
    /// The leader's view of `id`, taken from the committed records the first time.
    fn current(&mut self, id: &str) -> Option<&mut TxnMeta> {
        if !self.working.contains_key(id) {
            let m = self.committed.get(id)?.clone();
            self.working.insert(id.to_owned(), m);
        }
        self.working.get_mut(id)
    }

    /// Records `m` as `id`'s new state: the record to write, counted in flight.
    fn write(&mut self, id: &str, mut m: TxnMeta) -> Records {
        m.pending += 1;
        let value = txn_value(&m);
        self.working.insert(id.to_owned(), m);
        vec![(txn_key(id), Some(value))]
    }

    /// InitProducerId with a transactional id: the producer id (a new one, `new_id`, the first
    /// time) at the next epoch, fencing any older producer of the id. An open transaction is
    /// aborted first (the client retries meanwhile). `expected` is the producer id and epoch a
    /// producer recovering from an error gives (KIP-360).
    pub fn init(
        &mut self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        new_id: Option<i64>,
        now_ms: i64,
    ) -> InitOutcome {
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return InitOutcome::Error(code(ResponseError::InvalidTransactionTimeout));
        }
        let Some(m) = self.current(id).cloned() else {
            let Some(producer_id) = new_id else { return InitOutcome::NeedProducerId };
            let m = TxnMeta { producer_id, timeout_ms, update_ms: now_ms, start_ms: -1, ..Default::default() };
            return InitOutcome::Write { answer: Ok((producer_id, 0)), records: self.write(id, m) };
        };
        if m.pending > 0 || m.state.preparing() {
            return InitOutcome::Error(code(ResponseError::ConcurrentTransactions));
        }
        if let Some((producer_id, epoch)) = expected {
            if producer_id == m.producer_id && epoch.wrapping_add(1) == m.epoch && m.state != TxnState::Ongoing {
                // A retry of the bump that answered this epoch.
                return InitOutcome::Write { answer: Ok((m.producer_id, m.epoch)), records: Vec::new() };
            }
            if producer_id != m.producer_id || epoch != m.epoch {
                return InitOutcome::Error(code(ResponseError::ProducerFenced));
            }
        }
        let mut next = m.clone();
        next.update_ms = now_ms;
        if m.state == TxnState::Ongoing {
            // Fence the producer of the open transaction and abort it with the new epoch.
            next.epoch = bump(m.epoch);
            next.state = TxnState::PrepareAbort;
            let records = self.write(id, next);
            return InitOutcome::Write { answer: Err(code(ResponseError::ConcurrentTransactions)), records };
        }
        if m.epoch >= i16::MAX - 1 {
            let Some(producer_id) = new_id else { return InitOutcome::NeedProducerId };
            next.producer_id = producer_id;
            next.epoch = 0;
        } else {
            next.epoch = m.epoch + 1;
        }
        next.state = TxnState::Empty;
        next.timeout_ms = timeout_ms;
        next.partitions.clear();
        next.start_ms = -1;
        let answer = Ok((next.producer_id, next.epoch));
        InitOutcome::Write { answer, records: self.write(id, next) }
    }

    /// The leader's view of `id` if `producer_id` and `epoch` are its producer's, with no write
    /// of it in flight.
    fn producer(&mut self, id: &str, producer_id: i64, epoch: i16) -> Result<TxnMeta, i16> {
        let m = self.current(id).ok_or(code(ResponseError::InvalidProducerIdMapping))?;
        if m.producer_id != producer_id {
            return Err(code(ResponseError::InvalidProducerIdMapping));
        }
        if m.epoch != epoch {
            return Err(code(ResponseError::ProducerFenced));
        }
        if m.pending > 0 {
            return Err(code(ResponseError::ConcurrentTransactions));
        }
        Ok(m.clone())
    }

    /// True if a request for `id` from client connection `conn` may act (`adds`: it adds
    /// partitions, so it may begin a transaction); see `connections.rs`.
    pub fn admit(&mut self, id: &str, conn: Option<u64>, adds: bool) -> bool {
        let begins = adds && self.current(id).is_none_or(|m| m.state != TxnState::Ongoing);
        self.connections.admit(id, conn, begins)
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition): the
    /// records to write (none if every partition is in the transaction already).
    pub fn add_partitions(
        &mut self,
        id: &str,
        (producer_id, epoch): (i64, i16),
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<Records, i16> {
        let m = self.producer(id, producer_id, epoch)?;
        if m.state.preparing() {
            return Err(code(ResponseError::ConcurrentTransactions));
        }
        if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
            return Ok(Vec::new());
        }
        let mut next = m;
        if next.state != TxnState::Ongoing {
            next.partitions.clear();
            next.start_ms = now_ms;
            next.state = TxnState::Ongoing;
        }
        next.partitions.extend(partitions.iter().cloned());
        next.update_ms = now_ms;
        Ok(self.write(id, next))
    }

    /// True if the transaction of `id` by this producer is open and holds `partition` (a
    /// partition leader asks before it takes a transactional batch, KIP-890 part 1).
    pub fn verify(&mut self, id: &str, (producer_id, epoch): (i64, i16), partition: &(String, i32)) -> i16 {
        let Some(m) = self.current(id) else { return code(ResponseError::InvalidProducerIdMapping) };
        if m.producer_id != producer_id {
            return code(ResponseError::InvalidProducerIdMapping);
        }
        if m.epoch != epoch {
            return code(ResponseError::ProducerFenced);
        }
        if m.state != TxnState::Ongoing || !m.partitions.contains(partition) {
            return code(ResponseError::InvalidTxnState);
        }
        0
    }

    /// EndTxn: the Prepare record to write; `reply` is answered once the transaction completes.
    pub fn end(
        &mut self,
        id: &str,
        (producer_id, epoch): (i64, i16),
        commit: bool,
        now_ms: i64,
        reply: oneshot::Sender<i16>,
    ) -> Records {
        let m = match self.producer(id, producer_id, epoch) {
            Ok(m) => m,
            Err(e) => {
                let _ = reply.send(e);
                return Vec::new();
            }
        };
        let (prepare, complete) = if commit {
            (TxnState::PrepareCommit, TxnState::CompleteCommit)
        } else {
            (TxnState::PrepareAbort, TxnState::CompleteAbort)
        };
        match m.state {
            TxnState::Ongoing => {
                self.end_waiters.entry(id.to_owned()).or_default().push((commit, reply));
                let mut next = m;
                next.state = prepare;
                next.update_ms = now_ms;
                self.write(id, next)
            }
            // A retry: answered when the markers are written, or at once if they are.
            s if s == prepare => {
                self.end_waiters.entry(id.to_owned()).or_default().push((commit, reply));
                Vec::new()
            }
            s if s == complete => {
                let _ = reply.send(0);
                Vec::new()
            }
            _ => {
                let _ = reply.send(code(ResponseError::InvalidTxnState));
                Vec::new()
            }
        }
    }

    /// The markers of `plan` are written on every partition: the Complete record to write.
    pub fn complete(&mut self, plan: &MarkerPlan, now_ms: i64) -> Records {
        let Some(m) = self.current(&plan.id) else { return Vec::new() };
        let wanted = if plan.commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        if m.producer_id != plan.producer_id || m.epoch != plan.epoch || m.state != wanted || m.pending > 0 {
            return Vec::new();
        }
        let mut next = m.clone();
        next.state = if plan.commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        next.partitions.clear();
        next.start_ms = -1;
        next.update_ms = now_ms;
        self.write(&plan.id, next)
    }

    /// Timers: transactions open longer than their timeout are aborted (their producer fenced),
    /// ids unused for [`ID_EXPIRATION_MS`] are forgotten.
    pub fn tick(&mut self, now_ms: i64) -> Records {
        let mut records = Vec::new();
        let due: Vec<String> = self
            .committed
            .iter()
            .filter(|(_, m)| {
                let expired = m.state == TxnState::Ongoing && now_ms > m.start_ms + i64::from(m.timeout_ms);
                let idle = matches!(m.state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
                    && now_ms > m.update_ms + ID_EXPIRATION_MS;
                expired || idle
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(m) = self.current(&id).filter(|m| m.pending == 0).cloned() else { continue };
            if m.state == TxnState::Ongoing {
                tracing::info!(transactional_id = %id, producer_id = m.producer_id, "transaction timed out: aborting it");
                let mut next = m;
                next.epoch = bump(next.epoch);
                next.state = TxnState::PrepareAbort;
                next.update_ms = now_ms;
                records.extend(self.write(&id, next));
            } else {
                let mut next = m;
                next.state = TxnState::Dead;
                next.pending += 1;
                self.working.insert(id.clone(), next);
                records.push((txn_key(&id), None));
            }
        }
        records
    }

    /// Applies a committed record; `accepted`: the node's count of accepted connections.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>, accepted: u64) {
        let Some(id) = decode_key(key) else { return };
        let meta = value.and_then(records::decode_value);
        if self.working.get(&id).is_none_or(|w| w.pending == 0) {
            // Not this leader's own write: the client may have gone on elsewhere.
            self.connections.changed_elsewhere(&id, accepted);
        }
        if let Some(w) = self.working.get_mut(&id) {
            w.pending = w.pending.saturating_sub(1);
            if w.pending == 0 && meta.is_none() {
                self.working.remove(&id);
            }
        }
        match meta {
            Some(m) => {
                if m.state.preparing() {
                    self.preparing.insert(id.clone());
                } else {
                    self.preparing.remove(&id);
                    self.marking.remove(&id);
                }
                let done = match m.state {
                    TxnState::CompleteCommit => Some(true),
                    TxnState::CompleteAbort => Some(false),
                    _ => None,
                };
                if let Some(committed) = done {
                    for (commit, reply) in self.end_waiters.remove(&id).unwrap_or_default() {
                        let error = if commit == committed { 0 } else { code(ResponseError::InvalidTxnState) };
                        let _ = reply.send(error);
                    }
                }
                self.committed.insert(id, m);
            }
            None => {
                self.committed.remove(&id);
                self.preparing.remove(&id);
                self.connections.forget(&id);
            }
        }
    }

    /// On the leader: the transactions whose markers are due and not being written yet.
    pub fn take_plans(&mut self) -> Vec<MarkerPlan> {
        let mut plans = Vec::new();
        for id in &self.preparing {
            if self.marking.contains(id) {
                continue;
            }
            let Some(m) = self.committed.get(id) else { continue };
            self.marking.insert(id.clone());
            plans.push(MarkerPlan {
                id: id.clone(),
                producer_id: m.producer_id,
                epoch: m.epoch,
                commit: m.state == TxnState::PrepareCommit,
                partitions: m.partitions.iter().cloned().collect(),
            });
        }
        plans
    }

    /// Leadership of the partition is lost: waiting EndTxn requests are told to look for the new
    /// coordinator, and the working view is dropped.
    pub fn lose_leadership(&mut self) {
        self.working.clear();
        self.marking.clear();
        for (_, waiters) in self.end_waiters.drain() {
            for (_, reply) in waiters {
                let _ = reply.send(code(ResponseError::NotCoordinator));
            }
        }
    }

    /// A write of the leader failed (its log, not its leadership): the working view of `id` is
    /// taken from the committed records again.
    pub fn write_failed(&mut self, id: &str) {
        self.working.remove(id);
    }

    /// Transactional ids as committed, by id.
    pub fn list(&self) -> BTreeMap<String, TxnMeta> {
        self.committed.iter().map(|(id, m)| (id.clone(), m.clone())).collect()
    }

    /// The state of `id` as committed.
    pub fn describe(&self, id: &str) -> Option<TxnMeta> {
        self.committed.get(id).cloned()
    }
}

/// The next epoch (kept below Kafka's limit: a producer past it gets a new id at its next init).
fn bump(epoch: i16) -> i16 {
    epoch.saturating_add(1).min(i16::MAX - 1)
}

#[cfg(test)]
mod tests;
