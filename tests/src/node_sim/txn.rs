//! Transactions in the simulator: the nodes' transaction workers, and a transactional producer.
//!
//! On a real node each shard hands its transaction worker (kafka::handlers::txn::worker) the
//! markers its coordinators need written and the verifications its leaders need; here the
//! simulator is that worker: it delivers each marker to the partition's leader, completes the
//! transaction at its coordinator once every marker is written, and carries verifications to
//! the coordinator and back. A node that crashes loses its worker's jobs, as a process does.
//!
//! The producer runs transactions of one batch on each of two partitions of `sim-txn`,
//! committing or aborting them at random; any error makes it start over with InitProducerId
//! (a new epoch, which aborts what it left open), and the transaction it was in has an unknown
//! outcome. It speaks to each node on a connection numbered as the node numbers the ones it
//! accepts; at times its EndTxn stalls in the node's socket: it reconnects and sends it again,
//! and the stalled one is read later, once the next transaction has begun (the producer's
//! epoch is the same: the coordinator must tell it by its connection).
//!
//! Checked at the end ([`TxnWorkload::check_final`]), reading each partition with
//! read_committed: every committed transaction's records are there, no aborted one's is, and
//! a transaction of unknown outcome is there whole or not at all.

use super::node::SimNode;
use braid_engine::log::batch;
use braid_engine::rng::SimRng;
use braid_node::msg::{
    FetchOutcome, Marker, MetaOp, MetaReply, ProduceOutcome, RecordsChunk, ShardMsg, TxnInit, TxnRequest, TxnWork,
};
use braid_node::shared::owner_shard;
use braid_node::txn::{partition_for, MarkerPlan, TRANSACTIONAL_ATTRIBUTE, TXN_PARTITIONS, TXN_TOPIC};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::oneshot;

const TOPIC: &str = "sim-txn";
const ID: &str = "sim-producer";
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TRANSACTION_COORDINATOR_FENCED: i16 = 52;

/// Markers a coordinator's leader asked for: its node, partition and epoch, the transaction,
/// the partitions still to mark and the markers on their way.
struct MarkerJob {
    node: i32,
    partition: i32,
    epoch: i32,
    plan: MarkerPlan,
    left: Vec<(String, i32)>,
    in_flight: Vec<((String, i32), oneshot::Receiver<i16>)>,
}

/// A leader's question to a coordinator, on its way.
struct VerifyJob {
    node: i32,
    producer_id: i64,
    partition: (String, i32),
    reply: oneshot::Receiver<i16>,
}

enum Producer {
    Start,
    Initing(oneshot::Receiver<TxnInit>, Option<oneshot::Receiver<i16>>),
    GettingId(oneshot::Receiver<braid_node::msg::ProducerIdReply>),
    Ready,
    Adding(oneshot::Receiver<i16>),
    Producing(usize, oneshot::Receiver<ProduceOutcome>),
    Ending(bool, oneshot::Receiver<i16>),
    /// Batch `.0` of the transaction goes out at `.1`.
    Paused(usize, u64),
}

pub struct TxnWorkload {
    ready: bool,
    topic_requests: Vec<oneshot::Receiver<MetaReply>>,
    markers: Vec<MarkerJob>,
    verifies: Vec<VerifyJob>,
    state: Producer,
    new_id: Option<i64>,
    producer: (i64, i16),
    sequences: BTreeMap<i32, i32>,
    /// The open transaction's values (one per partition) and partitions.
    values: Vec<(i32, String)>,
    next_value: u64,
    committed: Vec<Vec<(i32, String)>>,
    aborted: Vec<Vec<(i32, String)>>,
    unknown: Vec<Vec<(i32, String)>>,
    /// When the producer's current request went out (it gives up on a stuck one).
    sent_at: u64,
    /// The producer's connection to each node (its number in the node's accept order).
    conns: BTreeMap<i32, (u64, u64)>,
    /// An EndTxn stalled in a node's socket: the node (and its process: a restart ends the
    /// connection and what it held), the transaction it ended (by `next_value`), and the
    /// request.
    late: Option<((i32, u64), u64, TxnRequest)>,
}

impl TxnWorkload {
    pub fn new() -> Self {
        TxnWorkload {
            ready: false,
            topic_requests: Vec::new(),
            markers: Vec::new(),
            verifies: Vec::new(),
            state: Producer::Start,
            new_id: None,
            producer: (-1, -1),
            sequences: BTreeMap::new(),
            values: Vec::new(),
            next_value: 0,
            committed: Vec::new(),
            aborted: Vec::new(),
            unknown: Vec::new(),
            sent_at: 0,
            conns: BTreeMap::new(),
            late: None,
        }
    }

    /// (committed, aborted, unknown) transactions so far.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.committed.len(), self.aborted.len(), self.unknown.len())
    }

    pub fn step(&mut self, now: u64, nodes: &mut BTreeMap<i32, SimNode>, rng: &mut SimRng, ops: u64) {
        self.worker(nodes);
        if !self.ready {
            if ops > 0 {
                self.create_topics(now, nodes);
            }
            return;
        }
        if ops > 0 {
            self.produce_step(now, nodes, rng, ops);
        }
    }

    fn create_topics(&mut self, now: u64, nodes: &BTreeMap<i32, SimNode>) {
        let exists = nodes.values().filter(|n| n.serving()).any(|n| {
            let snapshot = n.shared.published.read().unwrap_or_else(|e| e.into_inner()).clone();
            snapshot.topic(TOPIC).is_some() && snapshot.topic(TXN_TOPIC).is_some()
        });
        self.topic_requests.retain_mut(|r| r.try_recv().is_err());
        if exists {
            self.ready = true;
            return;
        }
        if !now.is_multiple_of(300) || !self.topic_requests.is_empty() {
            return;
        }
        let Some(node) = nodes.values().filter(|n| n.serving()).nth((now / 300) as usize % nodes.len().max(1)) else {
            return;
        };
        for (name, partitions) in [(TOPIC, 2), (TXN_TOPIC, TXN_PARTITIONS)] {
            let (reply, answer) = oneshot::channel();
            let op = MetaOp::CreateTopic {
                name: name.into(),
                partitions,
                replication_factor: 3,
                configs: BTreeMap::new(),
                validate_only: false,
                forward: true,
                assignment: None,
            };
            if node.send(0, ShardMsg::Meta { op, now_ms: now as i64, reply }) {
                self.topic_requests.push(answer);
            }
        }
    }

    fn leader(nodes: &BTreeMap<i32, SimNode>, topic: &str, partition: i32) -> Option<i32> {
        nodes.values().find_map(|n| {
            let leaders = n.shared.leaders.read().unwrap_or_else(|e| e.into_inner());
            leaders.get(&(topic.to_owned(), partition)).map(|(leader, _)| *leader).filter(|&l| l >= 0)
        })
    }

    /// Sends `msg` to the shard of `node` owning `topic`/`partition`.
    fn send(nodes: &BTreeMap<i32, SimNode>, node: i32, topic: &str, partition: i32, msg: ShardMsg) -> bool {
        let Some(n) = nodes.get(&node) else { return false };
        n.send(owner_shard(topic, partition, n.shared.senders.len()), msg)
    }

    /// The transaction workers of every node: new work taken, markers and verifications carried.
    fn worker(&mut self, nodes: &mut BTreeMap<i32, SimNode>) {
        let work: Vec<(i32, TxnWork)> =
            nodes.iter_mut().flat_map(|(&id, node)| node.take_txn_work().into_iter().map(move |w| (id, w))).collect();
        {
            for (id, work) in work {
                match work {
                    TxnWork::Markers(partition, epoch, plan) => {
                        super::trace(0, format_args!("node {id}: markers {plan:?} (coordinator epoch {epoch})"));
                        let left = plan.partitions.clone();
                        self.markers.push(MarkerJob { node: id, partition, epoch, plan, left, in_flight: Vec::new() });
                    }
                    TxnWork::Verify { id: txn_id, producer, partition } => {
                        let (reply, answer) = oneshot::channel();
                        let coordinator = partition_for(&txn_id);
                        let request = TxnRequest::Verify { id: txn_id, producer, partition: partition.clone(), reply };
                        let msg = ShardMsg::Txn { partition: coordinator, request };
                        let asked = Self::leader(nodes, TXN_TOPIC, coordinator)
                            .is_some_and(|l| Self::send(nodes, l, TXN_TOPIC, coordinator, msg));
                        let error = if asked { None } else { Some(braid_node::txn::verification_error(15)) };
                        let job = VerifyJob { node: id, producer_id: producer.0, partition, reply: answer };
                        match error {
                            None => self.verifies.push(job),
                            Some(error) => Self::verified(nodes, &job, error),
                        }
                    }
                }
            }
        }
        let mut still = Vec::new();
        for mut job in std::mem::take(&mut self.verifies) {
            match job.reply.try_recv() {
                Ok(code) => Self::verified(nodes, &job, braid_node::txn::verification_error(code)),
                Err(oneshot::error::TryRecvError::Closed) => Self::verified(nodes, &job, 15),
                Err(oneshot::error::TryRecvError::Empty) => still.push(job),
            }
        }
        self.verifies = still;
        let jobs = std::mem::take(&mut self.markers);
        self.markers = jobs.into_iter().filter_map(|job| Self::mark(nodes, job)).collect();
    }

    fn verified(nodes: &BTreeMap<i32, SimNode>, job: &VerifyJob, error: i16) {
        let (topic, partition) = job.partition.clone();
        let msg = ShardMsg::Verified { topic: topic.clone(), partition, producer_id: job.producer_id, error };
        Self::send(nodes, job.node, &topic, partition, msg);
    }

    /// One round of a marker job; None once it is done or its node is gone.
    fn mark(nodes: &BTreeMap<i32, SimNode>, mut job: MarkerJob) -> Option<MarkerJob> {
        nodes.get(&job.node)?;
        let mut still = Vec::new();
        for (key, mut reply) in std::mem::take(&mut job.in_flight) {
            let got = reply.try_recv();
            if !matches!(got, Err(oneshot::error::TryRecvError::Empty)) {
                super::trace(0, format_args!("marker {key:?} of {}/{}: {got:?}", job.plan.producer_id, job.plan.epoch));
            }
            // As the real worker: a partition deleted needs no marker; one the coordinator's
            // metadata still has was only not open yet at a starting node.
            let exists = nodes.get(&job.node).is_some_and(|n| {
                let snapshot = n.shared.published.read().unwrap_or_else(|e| e.into_inner()).clone();
                snapshot.topic(&key.0).is_some_and(|t| (0..t.partitions.len() as i32).contains(&key.1))
            });
            match got {
                // A newer coordinator wrote markers for this producer: it completes it.
                Ok(TRANSACTION_COORDINATOR_FENCED) => return None,
                Ok(0) => {}
                Ok(UNKNOWN_TOPIC_OR_PARTITION) if !exists => {}
                Ok(_) | Err(oneshot::error::TryRecvError::Closed) => job.left.push(key),
                Err(oneshot::error::TryRecvError::Empty) => still.push((key, reply)),
            }
        }
        job.in_flight = still;
        let plan = &job.plan;
        let marker = Marker {
            producer_id: plan.producer_id,
            epoch: plan.epoch,
            commit: plan.commit,
            coordinator_epoch: job.epoch,
        };
        for (topic, partition) in std::mem::take(&mut job.left) {
            let (reply, answer) = oneshot::channel();
            let msg = ShardMsg::TxnMarker { topic: topic.clone(), partition, marker, reply };
            let sent =
                Self::leader(nodes, &topic, partition).is_some_and(|l| Self::send(nodes, l, &topic, partition, msg));
            if sent {
                job.in_flight.push(((topic, partition), answer));
            } else {
                job.left.push((topic, partition));
            }
        }
        if !job.left.is_empty() || !job.in_flight.is_empty() {
            return Some(job);
        }
        super::trace(0, format_args!("node {}: complete {:?}", job.node, job.plan));
        let msg = ShardMsg::Txn { partition: job.partition, request: TxnRequest::Complete { plan: job.plan } };
        Self::send(nodes, job.node, TXN_TOPIC, job.partition, msg);
        None
    }
}

impl TxnWorkload {
    /// The open transaction ends with an unknown outcome; the producer starts over.
    fn fail(&mut self) {
        // A client gives up on its connections with the request (it reconnects).
        self.conns.clear();
        if !self.values.is_empty() {
            self.unknown.push(std::mem::take(&mut self.values));
        }
        self.state = Producer::Start;
    }

    fn produce_step(&mut self, now: u64, nodes: &BTreeMap<i32, SimNode>, rng: &mut SimRng, ops: u64) {
        let waiting = !matches!(self.state, Producer::Start | Producer::Ready | Producer::Paused(..));
        if waiting && now.saturating_sub(self.sent_at) > 3_000 {
            // A request stuck (its node crashed, its reply lost): what it was for is unknown.
            self.fail();
        }
        match std::mem::replace(&mut self.state, Producer::Start) {
            Producer::Start if now.is_multiple_of(50) => self.init(now, nodes),
            Producer::Start => {}
            Producer::Initing(mut answer, Some(mut written)) => match written.try_recv() {
                Ok(0) => self.state = Producer::Ready,
                Err(oneshot::error::TryRecvError::Empty) => self.state = Producer::Initing(answer, Some(written)),
                _ => {
                    let _ = answer.try_recv();
                }
            },
            Producer::Initing(mut answer, None) => match answer.try_recv() {
                Ok(TxnInit::NeedProducerId) => {
                    let (reply, id) = oneshot::channel();
                    let node = nodes.values().find(|n| n.serving());
                    if node.is_some_and(|n| n.send(0, ShardMsg::ProducerId { reply })) {
                        self.state = Producer::GettingId(id);
                    }
                }
                Ok(TxnInit::Answer(Ok((producer_id, epoch)), written)) => {
                    self.producer = (producer_id, epoch);
                    self.sequences.clear();
                    super::trace(now, format_args!("txn producer {producer_id} epoch {epoch}"));
                    self.state = match written {
                        Some(w) => Producer::Initing(answer, Some(w)),
                        None => Producer::Ready,
                    };
                }
                Ok(TxnInit::Answer(Err(_), _)) | Err(oneshot::error::TryRecvError::Closed) => {}
                Err(oneshot::error::TryRecvError::Empty) => self.state = Producer::Initing(answer, None),
            },
            Producer::GettingId(mut id) => match id.try_recv() {
                Ok(Ok(id)) => self.new_id = Some(id),
                Err(oneshot::error::TryRecvError::Empty) => self.state = Producer::GettingId(id),
                _ => {}
            },
            Producer::Paused(i, until) if now >= until => self.produce(now, nodes, i),
            paused @ Producer::Paused(..) => self.state = paused,
            Producer::Ready if rng.chance(ops, 1000) => self.begin(now, nodes),
            Producer::Ready => self.state = Producer::Ready,
            Producer::Adding(mut reply) => match reply.try_recv() {
                Ok(0) => self.produce(now, nodes, 0),
                Err(oneshot::error::TryRecvError::Empty) => self.state = Producer::Adding(reply),
                _ => self.fail(),
            },
            Producer::Producing(i, mut reply) => match reply.try_recv() {
                // The stalled EndTxn is read now, the client's next batch a little later.
                Ok(outcome) if outcome.error == 0 && i + 1 < self.values.len() && self.deliver_late(nodes) => {
                    self.state = Producer::Paused(i + 1, now + 100)
                }
                Ok(outcome) if outcome.error == 0 && i + 1 < self.values.len() => self.produce(now, nodes, i + 1),
                Ok(outcome) if outcome.error == 0 => {
                    let commit = rng.chance(2, 3);
                    self.end(now, nodes, rng, commit)
                }
                Err(oneshot::error::TryRecvError::Empty) => self.state = Producer::Producing(i, reply),
                _ => self.fail(),
            },
            Producer::Ending(commit, mut reply) => match reply.try_recv() {
                Ok(0) => {
                    let values = std::mem::take(&mut self.values);
                    super::trace(now, format_args!("txn {} {values:?}", if commit { "committed" } else { "aborted" }));
                    if commit {
                        self.committed.push(values)
                    } else {
                        self.aborted.push(values)
                    }
                    self.state = Producer::Ready;
                }
                Err(oneshot::error::TryRecvError::Empty) => self.state = Producer::Ending(commit, reply),
                _ => self.fail(),
            },
        }
    }

    /// Sends a request for transactional id `ID` to its coordinator's leader, on the producer's
    /// connection to it (a new one if it has none).
    fn ask_coordinator(
        &mut self,
        now: u64,
        nodes: &BTreeMap<i32, SimNode>,
        request: impl FnOnce(Option<u64>) -> TxnRequest,
    ) -> bool {
        let partition = partition_for(ID);
        self.sent_at = now;
        let Some(leader) = Self::leader(nodes, TXN_TOPIC, partition) else { return false };
        let Some(node) = nodes.get(&leader) else { return false };
        let conn = Self::connection(&mut self.conns, leader, node);
        Self::send(nodes, leader, TXN_TOPIC, partition, ShardMsg::Txn { partition, request: request(Some(conn)) })
    }

    /// The producer's connection to `node` (a new one if it has none, or if the node restarted
    /// since: a process's connections end with it).
    fn connection(conns: &mut BTreeMap<i32, (u64, u64)>, id: i32, node: &SimNode) -> u64 {
        let process = node.process;
        let accept = || (process, node.shared.connections_accepted.fetch_add(1, Relaxed));
        let conn = conns.entry(id).or_insert_with(accept);
        if conn.0 != process {
            *conn = accept();
        }
        conn.1
    }

    /// The stalled EndTxn is read once the producer has written the first half of its next
    /// transaction (or never, if its node went down); true if it was.
    fn deliver_late(&mut self, nodes: &BTreeMap<i32, SimNode>) -> bool {
        if self.late.as_ref().is_none_or(|(_, txn, _)| self.next_value <= *txn) {
            return false;
        }
        let ((node, process), _, request) = self.late.take().expect("due");
        if nodes.get(&node).is_none_or(|n| n.process != process) {
            return false;
        }
        let partition = partition_for(ID);
        super::trace(0, format_args!("a stalled EndTxn read by node {node}"));
        Self::send(nodes, node, TXN_TOPIC, partition, ShardMsg::Txn { partition, request })
    }

    fn init(&mut self, now: u64, nodes: &BTreeMap<i32, SimNode>) {
        let (reply, answer) = oneshot::channel();
        let new_id = self.new_id.take();
        let request = |conn| TxnRequest::Init { id: ID.into(), timeout_ms: 1_000, expected: None, new_id, conn, reply };
        if self.ask_coordinator(now, nodes, request) {
            self.state = Producer::Initing(answer, None);
        }
    }

    fn begin(&mut self, now: u64, nodes: &BTreeMap<i32, SimNode>) {
        self.next_value += 1;
        self.values = (0..2).map(|p| (p, format!("t{}-{p}", self.next_value))).collect();
        let (reply, answer) = oneshot::channel();
        let partitions = vec![(TOPIC.to_owned(), 0), (TOPIC.to_owned(), 1)];
        let producer = self.producer;
        let request = |conn| TxnRequest::AddPartitions { id: ID.into(), producer, partitions, conn, reply };
        if self.ask_coordinator(now, nodes, request) {
            self.state = Producer::Adding(answer);
        } else {
            self.values.clear();
            self.state = Producer::Ready;
        }
    }

    fn produce(&mut self, now: u64, nodes: &BTreeMap<i32, SimNode>, i: usize) {
        let (partition, value) = self.values[i].clone();
        let time = 1_700_000_000_000 + now as i64;
        let mut bytes = batch::build_keyed_batch(time, &[(None, Some(value.as_bytes()))]);
        let (producer_id, epoch) = self.producer;
        batch::set_producer(&mut bytes, producer_id, epoch, TRANSACTIONAL_ATTRIBUTE, time);
        let sequence = self.sequences.entry(partition).or_insert(0);
        batch::set_base_sequence(&mut bytes, *sequence);
        *sequence += 1;
        let (reply, answer) = oneshot::channel();
        let msg = ShardMsg::Produce {
            topic: TOPIC.into(),
            partition,
            records: Some(Bytes::from(bytes)),
            acks: -1,
            transactional_id: Some(ID.into()),
            reply,
        };
        self.sent_at = now;
        let sent = Self::leader(nodes, TOPIC, partition).is_some_and(|l| Self::send(nodes, l, TOPIC, partition, msg));
        if sent {
            self.state = Producer::Producing(i, answer);
        } else {
            self.fail();
        }
    }

    fn end(&mut self, now: u64, nodes: &BTreeMap<i32, SimNode>, rng: &mut SimRng, commit: bool) {
        let producer = self.producer;
        let leader = Self::leader(nodes, TXN_TOPIC, partition_for(ID));
        if let (Some(leader), true, None) = (leader, rng.chance(1, 4), &self.late) {
            // Stalled in the node's socket: the client times out, reconnects and sends it again.
            let conn = nodes.get(&leader).map(|n| Self::connection(&mut self.conns, leader, n));
            self.conns.remove(&leader);
            let (reply, _) = oneshot::channel();
            let request = TxnRequest::End { id: ID.into(), producer, commit, conn, reply };
            super::trace(now, format_args!("EndTxn stalls on connection {conn:?} to node {leader}"));
            let process = nodes.get(&leader).map_or(0, |n| n.process);
            self.late = Some(((leader, process), self.next_value, request));
        }
        let (reply, answer) = oneshot::channel();
        let request = |conn| TxnRequest::End { id: ID.into(), producer, commit, conn, reply };
        if self.ask_coordinator(now, nodes, request) {
            self.state = Producer::Ending(commit, answer);
        } else {
            self.fail();
        }
    }

    /// Reads both partitions with read_committed at their leaders and checks the outcomes.
    pub fn check_final(&self, nodes: &mut BTreeMap<i32, SimNode>) -> Result<(), String> {
        if !self.ready {
            return Ok(());
        }
        let mut read = BTreeSet::new();
        for partition in 0..2 {
            let Some(leader) = Self::leader(nodes, TOPIC, partition) else {
                let states: Vec<String> =
                    nodes.values().map(|n| format!("node {}: {:?}", n.id, n.raft_status(TOPIC, partition))).collect();
                return Err(format!("{TOPIC}-{partition} has no leader after settling: {}", states.join("; ")));
            };
            let node = nodes.get_mut(&leader).expect("up");
            for value in super::kafka::read_partition(node, TOPIC, partition, true)?.into_values() {
                read.insert((partition, value));
            }
        }
        for values in &self.committed {
            if let Some(missing) = values.iter().find(|v| !read.contains(*v)) {
                let leader = Self::leader(nodes, TOPIC, missing.0).expect("read above");
                let node = nodes.get_mut(&leader).expect("up");
                let all = super::kafka::read_partition(node, TOPIC, missing.0, false)?;
                let at = all.iter().find(|(_, v)| **v == missing.1).map(|(o, _)| *o);
                let from = at.unwrap_or(0);
                let read = super::kafka::fetch_at(node, (TOPIC, missing.0), from, true)
                    .map(|o| (o.high_watermark, o.last_stable_offset, o.aborted));
                let mut batches = Vec::new();
                if let Ok(FetchOutcome { records: Some(RecordsChunk::Bytes(b)), .. }) =
                    super::kafka::fetch_at(node, (TOPIC, missing.0), from, false)
                {
                    let mut at = 0;
                    while let Ok(h) = batch::BatchHeader::parse(&b[at..]) {
                        let kind = batch::marker_type(&b[at..(at + h.total_bytes()).min(b.len())]);
                        batches.push((h.base_offset, h.producer_id, h.producer_epoch, h.attributes, kind));
                        at += h.total_bytes();
                        if at >= b.len() {
                            break;
                        }
                    }
                }
                return Err(format!(
                    "the committed transaction {values:?} lost {missing:?} (read_committed; in the log at {at:?}; a read_committed fetch there: {read:?}; batches from there (offset, producer, epoch, attributes, marker): {batches:?})"
                ));
            }
        }
        for values in &self.aborted {
            if let Some(seen) = values.iter().find(|v| read.contains(*v)) {
                return Err(format!("the aborted transaction {values:?} is read: {seen:?}"));
            }
        }
        for values in &self.unknown {
            let seen = values.iter().filter(|v| read.contains(*v)).count();
            if seen != 0 && seen != values.len() {
                return Err(format!("the transaction {values:?} of unknown outcome is read in part"));
            }
        }
        Ok(())
    }
}
