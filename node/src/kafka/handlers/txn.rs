//! Transactions: InitProducerId with a transactional id, AddPartitionsToTxn, AddOffsetsToTxn and
//! EndTxn go to the id's transaction coordinator (the shard owning its `__transaction_state`
//! partition, `txn` holds the state machine); TxnOffsetCommit to the group's coordinator;
//! WriteTxnMarkers to the leaders of the partitions. Each shard also runs the marker writer of
//! the coordinators it leads ([`write_markers`]): markers to the leaders, on this node or over
//! the Kafka protocol to others, then the transaction's completion.

use super::metadata::leader_of;
use super::{new_producer_id, str_bytes};
use crate::groups::{Committed, OFFSETS_TOPIC};
use crate::kafka::ClientConn;
use crate::msg::{GroupRequest, Marker, ShardMsg, TxnInit, TxnRequest, TxnWork};
use crate::shared::{owner_shard, ShardCtx};
use crate::txn::TXN_TOPIC;
use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse as ProducersPartition, ProducerState, TopicResponse as ProducersTopic,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData as DescribedTopic, TransactionState as DescribedTransaction,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTransaction;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdResponse, ListTransactionsRequest, ListTransactionsResponse,
    ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Sends a request to the coordinator shard of transactional id `id`.
async fn ask<T>(ctx: &ShardCtx, id: &str, build: impl FnOnce(oneshot::Sender<T>) -> TxnRequest) -> Option<T> {
    let partition = crate::txn::partition_for(id);
    let shard = owner_shard(TXN_TOPIC, partition, ctx.shared.senders.len());
    let (reply, answer) = oneshot::channel();
    ctx.shared.senders[shard].send(ShardMsg::Txn { partition, request: build(reply) }).await.ok()?;
    answer.await.ok()
}

/// A coordinator's record write that failed: the client looks for the coordinator again.
fn written(code: i16) -> i16 {
    if code == 0 {
        0
    } else {
        ResponseError::NotCoordinator.code()
    }
}

fn not_coordinator() -> i16 {
    ResponseError::NotCoordinator.code()
}

/// The coordinator refused a request from a connection the client has left: that connection
/// is closed instead of answered (`txn/connections.rs`).
fn stale(answer: Option<i16>, conn: Option<&ClientConn>) {
    if answer == Some(crate::txn::STALE_CONNECTION) {
        if let Some(conn) = conn {
            tracing::info!(conn = conn.seq, "a transactional request from a connection its client has left");
            conn.closing.set(true);
        }
    }
}

/// InitProducerId with a transactional id.
pub async fn init(
    ctx: &ShardCtx,
    id: String,
    (timeout_ms, conn): (i32, Option<u64>),
    expected: Option<(i64, i16)>,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    let mut new_id = None;
    let answer = loop {
        let build = |reply| TxnRequest::Init { id: id.clone(), timeout_ms, expected, new_id, conn, reply };
        match ask(ctx, &id, build).await {
            Some(TxnInit::NeedProducerId) if new_id.is_none() => match new_producer_id(ctx).await {
                Ok(fresh) => new_id = Some(fresh),
                Err(code) => break Err(code),
            },
            Some(TxnInit::NeedProducerId) | None => break Err(not_coordinator()),
            Some(TxnInit::Answer(answer, write)) => {
                let code = match write {
                    Some(write) => written(write.await.unwrap_or(-1)),
                    None => 0,
                };
                break if code == 0 { answer } else { Err(code) };
            }
        }
    };
    match answer {
        Ok((producer_id, epoch)) => {
            response.producer_id = ProducerId(producer_id);
            response.producer_epoch = epoch;
        }
        Err(code) => response.error_code = code,
    }
    response
}

/// Adds partitions to a transaction; the error code for all of them. A client's request from
/// a connection it has left closes that connection.
async fn add(
    ctx: &ShardCtx,
    id: &str,
    producer: (i64, i16),
    partitions: Vec<(String, i32)>,
    conn: Option<&ClientConn>,
) -> i16 {
    let seq = conn.map(|c| c.seq);
    let build = |reply| TxnRequest::AddPartitions { id: id.to_owned(), producer, partitions, conn: seq, reply };
    let answer = ask(ctx, id, build).await;
    stale(answer, conn);
    match answer {
        Some(code) if code == ResponseError::NotLeaderOrFollower.code() => not_coordinator(),
        Some(code) if code == ResponseError::RequestTimedOut.code() => not_coordinator(),
        Some(code) => code,
        None => not_coordinator(),
    }
}

/// AddPartitionsToTxn: a client's (v0-v3, one transaction), or a node's (v4, several, each
/// added or, verify_only, checked).
pub async fn add_partitions(
    ctx: Rc<ShardCtx>,
    version: i16,
    conn: ClientConn,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if version < 4 {
        let id = request.v3_and_below_transactional_id.0.to_string();
        let producer = (request.v3_and_below_producer_id.0, request.v3_and_below_producer_epoch);
        let results = add_one(&ctx, (&id, Some(&conn)), producer, &request.v3_and_below_topics, false).await;
        let mut response = AddPartitionsToTxnResponse::default();
        response.results_by_topic_v3_and_below = results;
        return response;
    }
    let mut response = AddPartitionsToTxnResponse::default();
    for txn in request.transactions {
        let producer = (txn.producer_id.0, txn.producer_epoch);
        let mut result = AddPartitionsToTxnResult::default();
        let id = (&*txn.transactional_id.0, None);
        result.topic_results = add_one(&ctx, id, producer, &txn.topics, txn.verify_only).await;
        result.transactional_id = txn.transactional_id;
        response.results_by_transaction.push(result);
    }
    response
}

/// One transaction's partitions added (or verified), with each partition's error code.
async fn add_one(
    ctx: &ShardCtx,
    (id, conn): (&str, Option<&ClientConn>),
    producer: (i64, i16),
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let wanted: Vec<(String, Vec<i32>)> = topics.iter().map(|t| (t.name.0.to_string(), t.partitions.clone())).collect();
    let unknown = wanted.iter().any(|(t, ps)| ps.iter().any(|p| !ctx.has_partition(t, *p)));
    let partitions: Vec<(String, i32)> =
        wanted.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p))).collect();
    let code = if unknown {
        ResponseError::OperationNotAttempted.code()
    } else if verify_only {
        // Every partition must be in the transaction: the first that is not answers for all.
        let mut code = 0;
        for partition in partitions {
            let build = |reply| TxnRequest::Verify { id: id.to_owned(), producer, partition, reply };
            code = ask(ctx, id, build).await.unwrap_or_else(not_coordinator);
            if code != 0 {
                break;
            }
        }
        code
    } else {
        add(ctx, id, producer, partitions, conn).await
    };
    let mut results = Vec::new();
    for (topic, partitions) in wanted {
        let mut t = AddPartitionsToTxnTopicResult::default();
        for p in partitions {
            let mut r = AddPartitionsToTxnPartitionResult::default();
            r.partition_index = p;
            r.partition_error_code = match ctx.has_partition(&topic, p) {
                false => ResponseError::UnknownTopicOrPartition.code(),
                true => code,
            };
            t.results_by_partition.push(r);
        }
        t.name = TopicName(str_bytes(topic));
        results.push(t);
    }
    results
}

pub async fn add_offsets(
    ctx: Rc<ShardCtx>,
    conn: ClientConn,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.0.to_string();
    let partition = (OFFSETS_TOPIC.to_owned(), crate::groups::partition_for(&request.group_id.0));
    let mut response = AddOffsetsToTxnResponse::default();
    let producer = (request.producer_id.0, request.producer_epoch);
    response.error_code = add(&ctx, &id, producer, vec![partition], Some(&conn)).await;
    response
}

pub async fn end(ctx: Rc<ShardCtx>, conn: ClientConn, request: EndTxnRequest) -> EndTxnResponse {
    let id = request.transactional_id.0.to_string();
    let producer = (request.producer_id.0, request.producer_epoch);
    let (commit, seq) = (request.committed, Some(conn.seq));
    let build = |reply| TxnRequest::End { id: id.clone(), producer, commit, conn: seq, reply };
    let mut response = EndTxnResponse::default();
    let answer = ask(&ctx, &id, build).await;
    stale(answer, Some(&conn));
    response.error_code = answer.unwrap_or_else(not_coordinator);
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    response
}

/// TxnOffsetCommit: the offsets are written to the group's partition in the producer's
/// transaction, and apply when its commit marker does. Members are checked as OffsetCommit
/// checks them (KIP-447: generation, member id, instance id), unless the client sends none.
pub async fn offset_commit(ctx: Rc<ShardCtx>, request: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let mut offsets = Vec::new();
    for t in &request.topics {
        for p in &t.partitions {
            let committed = Committed {
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            };
            offsets.push((t.name.0.to_string(), p.partition_index, Some(committed)));
        }
    }
    let producer = Some((request.producer_id.0, request.producer_epoch));
    let code = super::groups::ask(&ctx, &group, |reply| GroupRequest::Commit {
        group: group.clone(),
        generation: request.generation_id,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        offsets,
        producer,
        reply,
    })
    .await
    .unwrap_or(ResponseError::CoordinatorNotAvailable.code());
    let mut response = TxnOffsetCommitResponse::default();
    for t in request.topics {
        let mut topic = TxnOffsetCommitResponseTopic::default();
        for p in t.partitions {
            let mut r = TxnOffsetCommitResponsePartition::default();
            r.partition_index = p.partition_index;
            r.error_code = match ctx.has_partition(&t.name.0, p.partition_index) {
                false => ResponseError::UnknownTopicOrPartition.code(),
                true => code,
            };
            topic.partitions.push(r);
        }
        topic.name = t.name;
        response.topics.push(topic);
    }
    response
}

/// Writes one marker on a partition of this node; its error code.
async fn mark(ctx: &ShardCtx, topic: &str, partition: i32, marker: Marker) -> i16 {
    let shard = owner_shard(topic, partition, ctx.shared.senders.len());
    let (reply, answer) = oneshot::channel();
    let msg = ShardMsg::TxnMarker { topic: topic.to_owned(), partition, marker, reply };
    if ctx.shared.senders[shard].send(msg).await.is_err() {
        return ResponseError::NotLeaderOrFollower.code();
    }
    answer.await.unwrap_or(ResponseError::NotLeaderOrFollower.code())
}

/// WriteTxnMarkers (sent by the transaction coordinators): each marker on each partition.
pub async fn write_txn_markers(ctx: Rc<ShardCtx>, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let mut response = WriteTxnMarkersResponse::default();
    for m in request.markers {
        let marker = Marker {
            producer_id: m.producer_id.0,
            epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = m.producer_id;
        for t in m.topics {
            let mut topic = WritableTxnMarkerTopicResult::default();
            let writes = t.partition_indexes.iter().map(|&p| mark(&ctx, &t.name.0, p, marker));
            for (&p, error_code) in t.partition_indexes.iter().zip(futures::future::join_all(writes).await) {
                let mut r = WritableTxnMarkerPartitionResult::default();
                r.partition_index = p;
                r.error_code = error_code;
                topic.partitions.push(r);
            }
            topic.name = t.name;
            result.topics.push(topic);
        }
        response.markers.push(result);
    }
    response
}

/// The transaction worker of a shard: every transaction its coordinators hand it is marked on
/// its partitions, and every verification its partition leaders ask for is asked of the
/// coordinator, concurrently.
pub async fn worker(ctx: Rc<ShardCtx>, mut work: mpsc::UnboundedReceiver<TxnWork>) {
    while let Some(work) = work.recv().await {
        match work {
            TxnWork::Markers(partition, epoch, plan) => {
                tokio::task::spawn_local(complete(Rc::clone(&ctx), (partition, epoch, plan)));
            }
            TxnWork::Verify { id, producer, partition } => {
                tokio::task::spawn_local(verify(Rc::clone(&ctx), id, producer, partition));
            }
        }
    }
}

/// Asks the coordinator of `id` whether the producer's transaction holds `partition` (here, or
/// with AddPartitionsToTxn v4 verify_only on another node) and tells the partition's shard.
/// A coordinator that cannot answer now makes the produce fail NOT_ENOUGH_REPLICAS, which
/// clients retry, as Kafka does.
async fn verify(ctx: Rc<ShardCtx>, id: String, producer: (i64, i16), partition: (String, i32)) {
    let me = ctx.shared.config.node_id;
    let error = match leader_of(&ctx, 0, TXN_TOPIC, crate::txn::partition_for(&id)) {
        Some((leader, _)) if leader == me => {
            let build = |reply| TxnRequest::Verify { id: id.clone(), producer, partition: partition.clone(), reply };
            ask(&ctx, &id, build).await.unwrap_or_else(not_coordinator)
        }
        Some((_, addr)) => remote_verify(&addr.to_string(), &id, producer, &partition).await,
        None => not_coordinator(),
    };
    let error = crate::txn::verification_error(error);
    let shard = owner_shard(&partition.0, partition.1, ctx.shared.senders.len());
    let (topic, partition) = partition;
    let msg = ShardMsg::Verified { topic, partition, producer_id: producer.0, error };
    let _ = ctx.shared.senders[shard].send(msg).await;
}

/// AddPartitionsToTxn v4 with verify_only to the coordinator on another node: its answer for
/// the partition.
async fn remote_verify(addr: &str, id: &str, producer: (i64, i16), partition: &(String, i32)) -> i16 {
    let mut topic = AddPartitionsToTxnTopic::default();
    topic.name = TopicName(str_bytes(partition.0.clone()));
    topic.partitions = vec![partition.1];
    let mut txn = AddPartitionsToTxnTransaction::default();
    txn.transactional_id = TransactionalId(str_bytes(id.to_owned()));
    txn.producer_id = ProducerId(producer.0);
    txn.producer_epoch = producer.1;
    txn.verify_only = true;
    txn.topics = vec![topic];
    let mut request = AddPartitionsToTxnRequest::default();
    request.transactions = vec![txn];
    match call(addr, request, 4).await {
        Ok(response) if response.error_code != 0 => response.error_code,
        Ok(response) => response
            .results_by_transaction
            .iter()
            .flat_map(|t| &t.topic_results)
            .flat_map(|t| &t.results_by_partition)
            .map(|p| p.partition_error_code)
            .next()
            .unwrap_or_else(not_coordinator),
        Err(e) => {
            tracing::warn!(addr, error = %e, "verifying a transaction with its coordinator failed");
            not_coordinator()
        }
    }
}

/// Longest wait between two rounds of markers for the partitions still unmarked.
const MARKER_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// A leader's address (None: no leader known) and the partitions it leads.
type Led = (Option<crate::config::HostPort>, Vec<(String, i32)>);

/// Writes a transaction's markers on every partition (retrying those whose leader is moving,
/// for as long as this node coordinates the transaction), then completes it.
async fn complete(ctx: Rc<ShardCtx>, (partition, coordinator_epoch, plan): (i32, i32, crate::txn::MarkerPlan)) {
    let me = ctx.shared.config.node_id;
    let marker = Marker { producer_id: plan.producer_id, epoch: plan.epoch, commit: plan.commit, coordinator_epoch };
    let mut left = plan.partitions.clone();
    let mut backoff = Duration::from_millis(10);
    loop {
        let mut by_leader: BTreeMap<i32, Led> = BTreeMap::new();
        for (topic, p) in left {
            let (leader, addr) = leader_of(&ctx, 0, &topic, p).map_or((-1, None), |(id, addr)| (id, Some(addr)));
            by_leader.entry(leader).or_insert((addr, Vec::new())).1.push((topic, p));
        }
        left = Vec::new();
        for (leader, (addr, partitions)) in by_leader {
            let codes = match (leader, addr) {
                (l, _) if l == me => {
                    futures::future::join_all(partitions.iter().map(|(t, p)| mark(&ctx, t, *p, marker))).await
                }
                (l, Some(addr)) if l >= 0 => remote_markers(l, &addr.to_string(), &partitions, marker).await,
                _ => vec![ResponseError::NotLeaderOrFollower.code(); partitions.len()],
            };
            if codes.contains(&ResponseError::TransactionCoordinatorFenced.code()) {
                // A newer coordinator of this transaction wrote markers: it completes it.
                return;
            }
            for (key, code) in partitions.into_iter().zip(codes) {
                // A partition deleted since needs no marker; one this node's metadata still
                // has is only not open yet where it was asked (a node starting): again.
                let deleted =
                    code == ResponseError::UnknownTopicOrPartition.code() && !ctx.has_partition(&key.0, key.1);
                if code != 0 && !deleted {
                    if backoff >= MARKER_BACKOFF_MAX {
                        tracing::info!(transactional_id = %plan.id, topic = %key.0, partition = key.1, leader, code, "transaction marker not written yet; retrying");
                    }
                    left.push(key);
                }
            }
        }
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MARKER_BACKOFF_MAX);
        if leader_of(&ctx, 0, TXN_TOPIC, partition).map(|(id, _)| id) != Some(me) {
            // The next coordinator writes them.
            return;
        }
    }
    let shard = owner_shard(TXN_TOPIC, partition, ctx.shared.senders.len());
    let _ = ctx.shared.senders[shard].send(ShardMsg::Txn { partition, request: TxnRequest::Complete { plan } }).await;
}

/// Sends markers to another node's Kafka listener (WriteTxnMarkers v1); the error code of each
/// partition.
async fn remote_markers(node: i32, addr: &str, partitions: &[(String, i32)], marker: Marker) -> Vec<i16> {
    let unreachable = vec![ResponseError::NotLeaderOrFollower.code(); partitions.len()];
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut m = WritableTxnMarker::default();
    m.producer_id = ProducerId(marker.producer_id);
    m.producer_epoch = marker.epoch;
    m.transaction_result = marker.commit;
    m.coordinator_epoch = marker.coordinator_epoch;
    for (topic, ps) in &by_topic {
        let mut t = WritableTxnMarkerTopic::default();
        t.name = TopicName(str_bytes(topic.to_string()));
        t.partition_indexes = ps.clone();
        m.topics.push(t);
    }
    let mut request = WriteTxnMarkersRequest::default();
    request.markers.push(m);
    let response = match call(addr, request, 1).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(node, error = %e, "writing transaction markers on another node failed");
            return unreachable;
        }
    };
    let mut codes: BTreeMap<(String, i32), i16> = BTreeMap::new();
    for r in response.markers {
        for t in r.topics {
            for p in t.partitions {
                codes.insert((t.name.0.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    partitions.iter().map(|k| codes.get(k).copied().unwrap_or(ResponseError::NotLeaderOrFollower.code())).collect()
}

/// Time allowed for a request to another node.
const NODE_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One request to another node, on a connection of its own.
async fn call<R: kafka_protocol::protocol::Request>(
    addr: &str,
    request: R,
    version: i16,
) -> anyhow::Result<R::Response> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let frame = crate::client::encode_request(&request, version, 1, "braid-transactions")?;
        stream.write_all(&frame).await?;
        let size = stream.read_i32().await?;
        if size < 4 || size as usize > crate::client::RESPONSE_MAX_BYTES {
            anyhow::bail!("response size {size} out of range");
        }
        let mut body = vec![0u8; size as usize];
        stream.read_exact(&mut body).await?;
        crate::client::decode_response::<R>(bytes::Bytes::from(body), version, 1)
    };
    tokio::time::timeout(NODE_REQUEST_TIMEOUT, exchange).await?
}

/// Every transactional id this node coordinates, with its state (ListTransactions; the admin
/// client asks every node). Filters: states, producer ids, running longer than (v1).
pub async fn list(ctx: Rc<ShardCtx>, request: ListTransactionsRequest) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    let known = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
        "Dead",
        "PrepareEpochFence",
    ];
    let states: Vec<String> = request.state_filters.iter().map(|s| s.to_string()).collect();
    response.unknown_state_filters =
        states.iter().filter(|s| !known.contains(&s.as_str())).map(|s| str_bytes(s.clone())).collect();
    let now = ctx.shared.env.now_ms();
    for partition in 0..crate::txn::TXN_PARTITIONS {
        let shard = owner_shard(TXN_TOPIC, partition, ctx.shared.senders.len());
        let (reply, answer) = oneshot::channel();
        let msg = ShardMsg::Txn { partition, request: TxnRequest::List { reply } };
        if ctx.shared.senders[shard].send(msg).await.is_err() {
            continue;
        }
        let Ok(Ok(ids)) = answer.await else { continue };
        for (id, m) in ids {
            let state_ok = states.is_empty() || states.iter().any(|s| s == m.state.name());
            let producer_ok = request.producer_id_filters.is_empty()
                || request.producer_id_filters.iter().any(|p| p.0 == m.producer_id);
            let running_ok =
                request.duration_filter < 0 || (m.start_ms >= 0 && now - m.start_ms >= request.duration_filter);
            if state_ok && producer_ok && running_ok {
                let mut t = ListedTransaction::default();
                t.transactional_id = TransactionalId(str_bytes(id));
                t.producer_id = ProducerId(m.producer_id);
                t.transaction_state = str_bytes(m.state.name().to_owned());
                response.transaction_states.push(t);
            }
        }
    }
    response
}

/// The state of transactional ids this node coordinates (DescribeTransactions; others get
/// NOT_COORDINATOR, TRANSACTIONAL_ID_NOT_FOUND if unknown).
pub async fn describe(ctx: Rc<ShardCtx>, request: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let mut response = DescribeTransactionsResponse::default();
    for id in request.transactional_ids {
        let mut d = DescribedTransaction::default();
        d.producer_id = ProducerId(-1);
        d.producer_epoch = -1;
        d.transaction_start_time_ms = -1;
        match ask(&ctx, &id.0, |reply| TxnRequest::List { reply }).await {
            Some(Ok(ids)) => match ids.into_iter().find(|(i, _)| *i == id.0.as_str()) {
                Some((_, m)) => {
                    d.transaction_state = str_bytes(m.state.name().to_owned());
                    d.transaction_timeout_ms = m.timeout_ms;
                    d.transaction_start_time_ms = m.start_ms;
                    d.producer_id = ProducerId(m.producer_id);
                    d.producer_epoch = m.epoch;
                    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for (topic, p) in m.partitions {
                        by_topic.entry(topic).or_default().push(p);
                    }
                    for (topic, partitions) in by_topic {
                        let mut t = DescribedTopic::default();
                        t.topic = TopicName(str_bytes(topic));
                        t.partitions = partitions;
                        d.topics.push(t);
                    }
                }
                None => d.error_code = ResponseError::TransactionalIdNotFound.code(),
            },
            Some(Err(code)) => d.error_code = code,
            None => d.error_code = not_coordinator(),
        }
        d.transactional_id = id;
        response.transaction_states.push(d);
    }
    response
}

/// DescribeProducers: each partition's leader lists the producers it knows, with the first
/// offset of each one's open transaction.
pub async fn describe_producers(ctx: Rc<ShardCtx>, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let mut response = DescribeProducersResponse::default();
    for t in request.topics {
        let mut topic = ProducersTopic::default();
        for p in t.partition_indexes {
            let mut out = ProducersPartition::default();
            out.partition_index = p;
            let build = |reply| ShardMsg::DescribeProducers { topic: t.name.0.to_string(), partition: p, reply };
            let answer = match super::ask_owner(&ctx, &t.name.0, p, build).await {
                Some(rx) => rx.await.unwrap_or(Err(ResponseError::NotLeaderOrFollower.code())),
                None => Err(ResponseError::NotLeaderOrFollower.code()),
            };
            match answer {
                Ok(producers) => {
                    for ((producer_id, epoch, last_sequence, last_timestamp), txn_start, coordinator_epoch) in producers
                    {
                        let mut s = ProducerState::default();
                        s.producer_id = ProducerId(producer_id);
                        s.producer_epoch = i32::from(epoch);
                        s.last_sequence = last_sequence;
                        s.last_timestamp = last_timestamp;
                        s.coordinator_epoch = coordinator_epoch;
                        s.current_txn_start_offset = txn_start;
                        out.active_producers.push(s);
                    }
                }
                Err(code) => out.error_code = code,
            }
            topic.partitions.push(out);
        }
        topic.name = t.name;
        response.topics.push(topic);
    }
    response
}
